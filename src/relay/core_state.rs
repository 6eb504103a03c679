//! The core's state and its plain accessors; each kind of input is handled in its own
//! file (`path`, `requests`, `lifecycle`, `admission`).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

use slab::Slab;

use super::address_family::AddrFamily;
use super::allocation::Allocation;
use super::client::ClientId;
use super::command::Command;
use super::core_config::CoreConfig;
use super::fast_map::FastMap;
use super::peer_policy::PeerPolicy;
use super::ports::Rng;
use super::rate_limit;
use super::requests::pending::PendingAllocate;
use super::requests::reservation::Reservation;
use super::stats::{Counters, DropReason};
use crate::auth::Authenticator;

pub struct Core {
    pub(super) cfg: CoreConfig,
    pub(super) allocations: Slab<Allocation>,
    pub(super) by_client: FastMap<ClientId, usize>,
    /// Relay port -> allocation, one table per family.
    pub(super) by_relay_v4: FastMap<u16, usize>,
    pub(super) by_relay_v6: FastMap<u16, usize>,
    pub(super) pending: HashMap<u64, PendingAllocate>,
    /// EVEN-PORT reservations by token. Each holds a quota slot of its user.
    pub(super) reservations: HashMap<[u8; 8], Reservation>,
    /// Relay addresses held outside `by_relay_*`: reserved ones and those bound for a
    /// pending Allocate, so that port picking asks one set instead of scanning both.
    pub(super) held: FastMap<SocketAddr, ()>,
    pub(super) next_token: u64,
    pub(super) rng: Rng,
    pub(super) commands: VecDeque<Command>,
    /// Deadline heap: (when, allocation slot, allocation serial). Each allocation has one
    /// live entry, at its earliest deadline; refreshes leave superseded entries behind,
    /// which are skipped when they come up.
    pub(super) timers: BinaryHeap<Reverse<(Instant, usize, u64)>>,
    /// Reservations in expiry order (they all live RESERVATION_LIFETIME).
    pub(super) reservation_timers: VecDeque<(Instant, [u8; 8])>,
    pub(super) counters: Counters,
    pub(super) admission: Admission,
    /// Budget for answers sent without authentication (see `rate_limit`).
    pub(super) limiter: rate_limit::PrefixLimiter,
    /// The time of the request being handled, for code deep in the answer path.
    pub(super) clock: Option<Instant>,
    /// Data indication transaction ids: a random prefix and a count.
    pub(super) indication_prefix: [u8; 12],
    pub(super) indications: u64,
    /// Channel bindings in the kernel fast path (`fastpath_binding`).
    pub(super) kernel: super::kernel_bindings::KernelBindings,
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
            kernel: Default::default(),
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
        let all: Vec<usize> = self.allocations.iter().map(|(i, _)| i).collect();
        for idx in all {
            self.kernel_sync(idx, None);
        }
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

/// Whether new allocations are admitted (`admission`): kept here, beside the rest of the
/// core's state, because `admission` adds to `Core`.
#[derive(Debug, Default)]
pub struct Admission {
    pub(super) draining: bool,
    pub(super) alternates: Vec<super::alternate::Alternate>,
    /// Users refused at Allocate and past their credential's expiry (`revocation`).
    pub(super) revoked: std::sync::Arc<super::revocation::Revocations>,
}
