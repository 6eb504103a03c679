//! The sans-IO relay core: every STUN/TURN decision, no sockets and no clock reads. The
//! shell feeds it packets with the current time and carries out the commands it queues.

pub mod allocation;
pub mod peer_policy;
pub mod ports;
mod requests;
pub mod stats;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::time::{Duration, Instant};

use slab::Slab;

use crate::auth::Authenticator;
use crate::proto::{channel_data, indication};
use allocation::{Allocation, Traffic};
use peer_policy::PeerPolicy;
use ports::Rng;
use stats::{Counters, Direction, DropReason, EndReason};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
    Tls = 2,
}

impl Transport {
    pub const COUNT: usize = 3;
    pub const ALL: [Transport; 3] = [Transport::Udp, Transport::Tcp, Transport::Tls];
    pub fn label(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
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
    pub max_allocations: usize,
    pub max_allocations_per_user: usize,
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
    /// Bind a UDP relay socket at `addr`, then call `Server::relay_bound`.
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
    /// A Data indication was queued (no channel bound to this peer yet).
    Handled,
    Drop(DropReason),
}

/// Hash maps on the relay path. foldhash with a per-map random seed: several times faster
/// than SipHash for these small keys, and entries are only ever inserted for
/// authenticated clients within their quotas, which is the exposure a minimally
/// DoS-resistant hash is fit for.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// How often timers are swept. Permissions and bindings live for minutes, so a second of
/// slack costs nothing and keeps expiry O(allocations) per second.
const SWEEP_INTERVAL: Duration = Duration::from_secs(1);

pub struct Server {
    cfg: CoreConfig,
    allocations: Slab<Allocation>,
    by_client: FastMap<ClientId, usize>,
    /// Relay port -> allocation, one table per family.
    by_relay_v4: FastMap<u16, usize>,
    by_relay_v6: FastMap<u16, usize>,
    per_user: HashMap<String, usize>,
    pending: HashMap<u64, requests::PendingAllocate>,
    /// EVEN-PORT reservations: token -> (reserved relay address, expiry).
    reservations: HashMap<[u8; 8], (SocketAddr, Instant)>,
    next_token: u64,
    rng: Rng,
    commands: VecDeque<Command>,
    next_sweep: Option<Instant>,
    counters: Counters,
}

impl Server {
    pub fn new(cfg: CoreConfig, seed: u64) -> Self {
        Server {
            cfg,
            allocations: Slab::new(),
            by_client: FastMap::default(),
            by_relay_v4: FastMap::default(),
            by_relay_v6: FastMap::default(),
            per_user: HashMap::new(),
            pending: HashMap::new(),
            reservations: HashMap::new(),
            next_token: 1,
            rng: Rng::new(seed),
            commands: VecDeque::new(),
            next_sweep: None,
            counters: Counters::default(),
        }
    }

    /// Swaps credentials and peer policy (config reload). Allocations are kept, but
    /// permissions and channels to peers the new policy denies end now: a deny-list entry
    /// added to stop abuse must not wait for them to expire.
    pub fn reconfigure(&mut self, auth: Authenticator, policy: PeerPolicy) {
        self.cfg.auth = auth;
        for (_, a) in self.allocations.iter_mut() {
            a.permissions.retain(|ip, _| policy.permits(*ip));
            a.channels.retain(|_, b| policy.permits(b.peer.ip()));
            a.channel_by_peer.retain(|p, _| policy.permits(p.ip()));
        }
        self.cfg.policy = policy;
    }

    pub fn poll_command(&mut self) -> Option<Command> {
        self.commands.pop_front()
    }

    /// When `handle_timeout` next wants to run.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_sweep
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

    /// A packet from a client. ChannelData and Send indications are answered with a
    /// routing decision and nothing allocated; everything else goes through the STUN path.
    pub fn handle_client_packet<'a>(
        &mut self,
        now: Instant,
        unix: u64,
        client: ClientId,
        packet: &'a [u8],
    ) -> ClientAction<'a> {
        if channel_data::is_channel_data(packet) {
            let Some(cd) = channel_data::parse(packet) else {
                self.counters.drop(DropReason::Malformed);
                return ClientAction::Drop(DropReason::Malformed);
            };
            return self.relay_to_peer(now, client, cd.channel, None, cd.payload);
        }
        if requests::is_send_indication(packet) {
            let Some(s) = indication::parse_send(packet) else {
                self.counters.drop(DropReason::Malformed);
                return ClientAction::Drop(DropReason::Malformed);
            };
            return self.relay_to_peer(now, client, 0, Some(s.peer), s.data);
        }
        self.handle_stun(now, unix, client, packet);
        ClientAction::Handled
    }

    /// `channel` is used when `peer` is None (ChannelData); otherwise a Send indication.
    fn relay_to_peer<'a>(
        &mut self,
        now: Instant,
        client: ClientId,
        channel: u16,
        peer: Option<SocketAddr>,
        payload: &'a [u8],
    ) -> ClientAction<'a> {
        let Some(&idx) = self.by_client.get(&client) else {
            self.counters.drop(DropReason::NoAllocation);
            return ClientAction::Drop(DropReason::NoAllocation);
        };
        let alloc = &mut self.allocations[idx];
        let peer = match peer {
            Some(p) => p,
            None => match alloc.channel_peer(now, channel) {
                Some(p) => p,
                None => {
                    self.counters.drop(DropReason::NoChannel);
                    return ClientAction::Drop(DropReason::NoChannel);
                }
            },
        };
        // Permissions are checked against the policy when installed, so one check here.
        let relay = match alloc.relay_for(&peer) {
            Some(r) if alloc.has_permission(now, peer.ip()) => r,
            _ => {
                // Only on the drop path: say whether policy is why no permission exists.
                let reason = if self.cfg.policy.permits(peer.ip()) {
                    DropReason::NoPermission
                } else {
                    DropReason::DeniedPeer
                };
                self.counters.drop(reason);
                return ClientAction::Drop(reason);
            }
        };
        alloc.traffic.bytes_to_peer += payload.len() as u64;
        alloc.traffic.packets_to_peer += 1;
        self.counters
            .relayed(client.transport, Direction::ClientToPeer, payload.len());
        ClientAction::Forward {
            relay,
            peer,
            payload,
        }
    }

    /// A packet that arrived on relay socket `relay` from `peer`.
    pub fn handle_peer_packet(
        &mut self,
        now: Instant,
        relay: SocketAddr,
        peer: SocketAddr,
        payload: &[u8],
    ) -> PeerAction {
        let table = if relay.is_ipv4() {
            &self.by_relay_v4
        } else {
            &self.by_relay_v6
        };
        let Some(&idx) = table.get(&relay.port()) else {
            self.counters.drop(DropReason::NoAllocation);
            return PeerAction::Drop(DropReason::NoAllocation);
        };
        let alloc = &mut self.allocations[idx];
        if !alloc.has_permission(now, peer.ip()) {
            self.counters.drop(DropReason::NoPermission);
            return PeerAction::Drop(DropReason::NoPermission);
        }
        alloc.traffic.bytes_to_client += payload.len() as u64;
        alloc.traffic.packets_to_client += 1;
        let client = alloc.client;
        self.counters
            .relayed(client.transport, Direction::PeerToClient, payload.len());
        if let Some(channel) = alloc.peer_channel(now, &peer) {
            return PeerAction::ChannelData { client, channel };
        }
        let data = requests::data_indication(peer, payload);
        self.commands
            .push_back(Command::SendToClient { client, data });
        PeerAction::Handled
    }

    /// Count a packet the shell could not send (full buffer, unreachable peer). The
    /// allocation stays: one bad peer must not end a call.
    pub fn record_send_failure(&mut self, reason: DropReason) {
        self.counters.drop(reason);
    }

    /// Expires allocations, permissions and channel bindings.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_sweep.is_some_and(|t| t > now) {
            return;
        }
        let expired: Vec<usize> = self
            .allocations
            .iter_mut()
            .filter_map(|(idx, a)| {
                a.expire(now);
                (a.expires <= now).then_some(idx)
            })
            .collect();
        for idx in expired {
            self.remove_allocation(now, idx, EndReason::Expired);
        }
        self.reservations.retain(|_, (_, exp)| *exp > now);
        let idle = self.allocations.is_empty() && self.reservations.is_empty();
        self.next_sweep = (!idle).then_some(now + SWEEP_INTERVAL);
    }

    /// A stream client's connection closed: its allocation goes with it (RFC 8656 §3.1).
    /// `clean` is false when the connection failed (I/O or framing error).
    pub fn client_disconnected(&mut self, now: Instant, client: ClientId, clean: bool) {
        if let Some(&idx) = self.by_client.get(&client) {
            let reason = if clean {
                EndReason::Deleted
            } else {
                EndReason::Error
            };
            self.remove_allocation(now, idx, reason);
        }
        let tokens: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.client() == client)
            .map(|(t, _)| *t)
            .collect();
        for t in tokens {
            self.drop_pending(t);
        }
    }

    pub fn has_allocation(&self, client: &ClientId) -> bool {
        self.by_client.contains_key(client)
    }

    /// Ends every allocation (server shutdown), so each gets its log line.
    pub fn shutdown(&mut self, now: Instant) {
        let all: Vec<usize> = self.allocations.iter().map(|(i, _)| i).collect();
        for idx in all {
            self.remove_allocation(now, idx, EndReason::Shutdown);
        }
    }

    fn remove_allocation(&mut self, now: Instant, idx: usize, reason: EndReason) {
        let a = self.allocations.remove(idx);
        self.by_client.remove(&a.client);
        if let Some(r) = a.relay_v4 {
            self.by_relay_v4.remove(&r.port());
            self.commands.push_back(Command::ReleaseRelay { addr: r });
        }
        if let Some(r) = a.relay_v6 {
            self.by_relay_v6.remove(&r.port());
            self.commands.push_back(Command::ReleaseRelay { addr: r });
        }
        if let Some(n) = self.per_user.get_mut(&a.username) {
            *n -= 1;
            if *n == 0 {
                self.per_user.remove(&a.username);
            }
        }
        self.counters.allocations_ended[reason as usize] += 1;
        self.commands
            .push_back(Command::AllocationEnded(Box::new(SessionSummary {
                username: a.username,
                client: a.client,
                relay_v4: a.relay_v4,
                relay_v6: a.relay_v6,
                duration: now.saturating_duration_since(a.created),
                traffic: a.traffic,
                peers_used: a.peers_used,
                channels_used: a.channels_used,
                reason,
            })));
    }
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod tests;
