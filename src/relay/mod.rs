//! The sans-IO relay core: every STUN/TURN decision, no sockets and no clock reads. The
//! shell feeds it packets with the current time and carries out what it decides.
//!
//! The drive loop (one per shard, in `runtime::shard`):
//!
//! 1. A client packet: `handle_client_packet(time, client, bytes)`. ChannelData and
//!    Send indications come back at once as `ClientAction::Forward { relay, peer, payload }`
//!    (a borrowed slice: the shell sends it from that relay socket) or `Drop(reason)`.
//!    Everything else is a STUN request; its answers and side effects are queued as
//!    `Command`s and the call returns `Handled`.
//! 2. A peer packet on a relay socket: `handle_peer_packet(time, relay, peer, payload)`
//!    answers `PeerAction::ChannelData` or `DataIndication` (the shell frames it in place
//!    with `proto`, no allocation) or `Drop`.
//! 3. After either, and after timers: drain `poll_command()` until it is empty. Commands
//!    send a STUN message, bind a relay socket (answer with `relay_bound`, which may queue
//!    further commands: keep draining), release one, or report an ended session.
//! 4. Timers: sleep until `poll_timeout()`, then call `handle_timeout(time)`; it expires
//!    only what is due (a deadline heap), never walks every allocation.
//! 5. A TCP/TLS connection closed: `client_disconnected` (its allocation ends with it).
//!
//! Every input carries one `Time` (the shell's monotonic clock and its wall clock in
//! seconds, read once per event); the core never reads a clock, so tests move time by
//! hand.

pub mod admission;
pub mod allocation;
pub mod bandwidth;
mod lifecycle;
mod path;
pub mod peer_policy;
pub mod ports;
pub mod quota;
pub mod rate_limit;
mod requests;
pub mod stats;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::auth::Authenticator;
use allocation::{Allocation, Traffic};
use peer_policy::PeerPolicy;
use ports::Rng;
use stats::{Counters, Direction, DropReason, EndReason};

crate::label_table::label_table! {
    /// How a client reaches this server: the `transport` metric label.
    pub enum Transport {
        Udp = "udp",
        Tcp = "tcp",
        Tls = "tls",
    }
}

crate::label_table::label_table! {
    /// An IP address family: the `family` metric label, and the index of per-family arrays.
    pub enum AddrFamily {
        Ipv4 = "ipv4",
        Ipv6 = "ipv6",
    }
}

impl AddrFamily {
    pub fn of(ip: std::net::IpAddr) -> AddrFamily {
        if ip.is_ipv4() {
            AddrFamily::Ipv4
        } else {
            AddrFamily::Ipv6
        }
    }
}

/// The time, as the shell reads it once per event: monotonic for timers and unix
/// seconds for credential and nonce expiry. The core never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub mono: Instant,
    pub unix: u64,
}

/// A client's 5-tuple as the shell knows it: the transport, which listener (or accepted
/// connection's listener) it came in on, and its source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientId {
    pub transport: Transport,
    pub listener: u16,
    pub addr: SocketAddr,
}

/// Where relay sockets bind for one address family, and what is advertised to clients.
#[derive(Debug, Clone, Copy)]
pub struct RelayFamily {
    pub bind: std::net::IpAddr,
    pub advertised: std::net::IpAddr,
}

pub struct CoreConfig {
    pub auth: Authenticator,
    pub policy: PeerPolicy,
    pub relay_v4: Option<RelayFamily>,
    pub relay_v6: Option<RelayFamily>,
    /// This shard's slice of the relay port range.
    pub ports: RangeInclusive<u16>,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// `relay.max_allocations` and `max_allocations_per_user`, shared by every shard.
    pub quotas: std::sync::Arc<quota::Quotas>,
    /// Most channel bindings one allocation may hold (508 beyond).
    pub max_channels: usize,
    /// Answers without authentication per second per source prefix (0 = no limit).
    pub unauthenticated_rate: u32,
    /// Relayed bytes per second per allocation, both directions together (None = off).
    pub max_bytes_per_sec_per_allocation: Option<u64>,
    /// Relayed bytes per second per user id, over all its allocations on every shard.
    pub max_bytes_per_sec_per_user: Option<(u64, std::sync::Arc<bandwidth::UserBuckets>)>,
    pub max_permissions: usize,
    /// Accept only RFC 8656 channel numbers (0x4000-0x4FFF), not RFC 5766's up to 0x7FFE.
    pub strict_channel_numbers: bool,
    /// MAC key for RESERVATION-TOKENs, the same in every shard.
    pub token_key: [u8; 32],
}

/// What the shell must do. Control traffic only: the relay path returns its decision
/// directly (`ClientAction`, `PeerAction`) so that it allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a STUN message to a client.
    SendToClient { client: ClientId, data: Vec<u8> },
    /// Bind a UDP relay socket at `addr`, then call `Core::relay_bound`.
    BindRelay { token: u64, addr: SocketAddr },
    /// Close the relay socket at `addr`.
    ReleaseRelay { addr: SocketAddr },
    /// An allocation ended: log it.
    AllocationEnded(Box<SessionSummary>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub username: String,
    pub client: ClientId,
    pub relay_v4: Option<SocketAddr>,
    pub relay_v6: Option<SocketAddr>,
    pub duration: Duration,
    pub traffic: Traffic,
    pub peers_used: u32,
    pub channels_used: u32,
    pub reason: EndReason,
}

/// The relay path's answer to a client packet.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientAction<'a> {
    /// Send `payload` from the relay socket `relay` to `peer`.
    Forward {
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &'a [u8],
    },
    /// A control message: whatever it needs is in the command queue.
    Handled,
    Drop(DropReason),
}

/// The relay path's answer to a packet from a peer.
#[derive(Debug, PartialEq, Eq)]
pub enum PeerAction {
    /// Prefix the payload with a ChannelData header for `channel` and send it to `client`.
    ChannelData {
        client: ClientId,
        channel: u16,
    },
    /// No channel is bound to this peer: frame the payload as a Data indication
    /// (`proto::indication::frame_data_indication`) with this transaction id and send it
    /// to `client`.
    DataIndication {
        client: ClientId,
        transaction_id: [u8; 12],
    },
    Drop(DropReason),
}

/// Hash maps on the relay path. foldhash with a per-map random seed: several times faster
/// than SipHash for these small keys, and entries are only ever inserted for
/// authenticated clients within their quotas, which is the exposure a minimally
/// DoS-resistant hash is fit for.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

pub struct Core {
    cfg: CoreConfig,
    allocations: Slab<Allocation>,
    by_client: FastMap<ClientId, usize>,
    /// Relay port -> allocation, one table per family.
    by_relay_v4: FastMap<u16, usize>,
    by_relay_v6: FastMap<u16, usize>,
    pending: HashMap<u64, requests::PendingAllocate>,
    /// EVEN-PORT reservations by token. Each holds a quota slot of its user.
    reservations: HashMap<[u8; 8], requests::Reservation>,
    /// Relay addresses held outside `by_relay_*`: reserved ones and those bound for a
    /// pending Allocate, so that port picking asks one set instead of scanning both.
    held: FastMap<SocketAddr, ()>,
    next_token: u64,
    rng: Rng,
    commands: VecDeque<Command>,
    /// Deadline heap: (when, allocation slot, allocation serial). Each allocation has one
    /// live entry, at its earliest deadline; refreshes leave superseded entries behind,
    /// which are skipped when they come up.
    timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Reservations in expiry order (they all live RESERVATION_LIFETIME).
    reservation_timers: VecDeque<(Instant, [u8; 8])>,
    counters: Counters,
    admission: admission::Admission,
    /// Budget for answers sent without authentication (see `rate_limit`).
    limiter: rate_limit::PrefixLimiter,
    /// The time of the request being handled, for code deep in the answer path.
    clock: Option<Instant>,
    /// Data indication transaction ids: a random prefix and a count.
    indication_prefix: [u8; 12],
    indications: u64,
}

impl Core {
    pub fn new(cfg: CoreConfig, seed: u64) -> Self {
        let limiter = rate_limit::PrefixLimiter::new(cfg.unauthenticated_rate);
        let mut rng = Rng::new(seed);
        let mut indication_prefix = [0u8; 12];
        indication_prefix[..4].copy_from_slice(&rng.next_u64().to_be_bytes()[..4]);
        Core {
            indication_prefix,
            indications: 0,
            limiter,
            clock: None,
            cfg,
            allocations: Slab::new(),
            by_client: FastMap::default(),
            by_relay_v4: FastMap::default(),
            by_relay_v6: FastMap::default(),
            pending: HashMap::new(),
            reservations: HashMap::new(),
            held: FastMap::default(),
            next_token: 1,
            rng,
            commands: VecDeque::new(),
            timers: BinaryHeap::new(),
            reservation_timers: VecDeque::new(),
            counters: Counters::default(),
            admission: Default::default(),
        }
    }

    /// Swaps credentials and peer policy (config reload). Allocations are kept, but
    /// permissions and channels to peers the new policy denies end now: a deny-list entry
    /// added to stop abuse must not wait for them to expire.
    pub fn reconfigure(&mut self, auth: Authenticator, policy: PeerPolicy) {
        self.cfg.auth = auth;
        for (_, a) in self.allocations.iter_mut() {
            a.permissions.retain(|ip, _| policy.permits(*ip));
            a.channels.retain(|_, b| policy.permits_peer(b.peer));
            a.channel_by_peer.retain(|p, _| policy.permits_peer(*p));
        }
        self.cfg.policy = policy;
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When `handle_timeout` next wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let alloc = self.timers.peek().map(|Reverse((at, _, _))| *at);
        let reservation = self.reservation_timers.front().map(|(at, _)| *at);
        alloc.into_iter().chain(reservation).min()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    pub fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.allocations.iter().map(|(_, a)| a)
    }

    /// Relay ports this shard holds per family, indexed by `AddrFamily` (bound to an
    /// allocation, reserved by EVEN-PORT or being bound), and the size of its slice (0 for
    /// a family that is off).
    pub fn relay_port_usage(&self) -> [(u64, u64); AddrFamily::COUNT] {
        let slice = self.cfg.ports.clone().count() as u64;
        AddrFamily::ALL.map(|fam| {
            let (bound, on) = match fam {
                AddrFamily::Ipv4 => (self.by_relay_v4.len(), self.cfg.relay_v4.is_some()),
                AddrFamily::Ipv6 => (self.by_relay_v6.len(), self.cfg.relay_v6.is_some()),
            };
            let reserved = self.held.keys().filter(|a| AddrFamily::of(a.ip()) == fam);
            (
                (bound + reserved.count()) as u64,
                if on { slice } else { 0 },
            )
        })
    }

    /// Count a packet the shell could not send (full buffer, unreachable peer). The
    /// allocation stays: one bad peer must not end a call.
    pub fn record_send_failure(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
