//! The core's invariants, checked after every step: quotas, one allocation per client,
//! unique relay addresses that are exactly the sockets the shell holds, and counters that
//! match what the driver saw.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use turnpike::auth::user_id;
use turnpike::relay::stats::{Direction, DropReason};

use crate::Driver;

impl Driver {
    /// Invariants that hold between any two steps.
    pub fn check(&self) {
        let n = self.allocation_count();
        assert!(
            n <= self.max_allocations,
            "{n} allocations > max {}",
            self.max_allocations
        );
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        let mut relays = HashSet::new();
        let mut clients = HashSet::new();
        let all = (self.shards.iter().enumerate())
            .flat_map(|(k, s)| s.allocations().map(move |a| (k, a)));
        for (k, a) in all {
            *per_user.entry(user_id(&a.username)).or_default() += 1;
            assert!(
                clients.insert(a.client),
                "two allocations for {:?}",
                a.client
            );
            assert!(
                a.relay_v4.is_some() || a.relay_v6.is_some(),
                "allocation without relay"
            );
            for r in [a.relay_v4, a.relay_v6].into_iter().flatten() {
                assert!(
                    relays.insert(r),
                    "relay address {r} shared by two allocations"
                );
                assert_eq!(
                    self.bound.get(&r),
                    Some(&k),
                    "shard {k}'s allocation uses {r}, which it did not bind"
                );
            }
        }
        for (u, c) in per_user {
            assert!(
                c <= self.max_per_user,
                "user {u} has {c} > {}",
                self.max_per_user
            );
        }
        if self.deferred.is_empty() {
            // With every bind answered, the only sockets bound are live allocations'.
            let bound: HashSet<SocketAddr> = self.bound.keys().copied().collect();
            assert_eq!(
                relays, bound,
                "bound sockets != allocations' relay addresses"
            );
        }
        self.check_counters();
    }

    pub(crate) fn check_counters(&self) {
        let all = || self.shards.iter().map(|s| s.counters());
        let relayed = |d: Direction| -> u64 {
            all()
                .flat_map(|c| c.relayed_packets.iter().map(move |t| t[d as usize]))
                .sum()
        };
        assert_eq!(relayed(Direction::ClientToPeer), self.tally.forwarded);
        assert_eq!(relayed(Direction::PeerToClient), self.tally.to_client);
        for r in DropReason::ALL {
            let got: u64 = all().map(|c| c.dropped[r as usize]).sum();
            let seen = self.tally.drops[r as usize];
            // Malformed STUN and rate-limited answers are also dropped inside the STUN
            // path, which returns Handled.
            if matches!(r, DropReason::Malformed | DropReason::RateLimit) {
                assert!(got >= seen, "{r:?}: counted {got} < seen {seen}");
            } else {
                assert_eq!(got, seen, "{r:?} drops");
            }
        }
        let requests: u64 = all().flat_map(|c| c.requests.iter().flatten()).sum();
        assert_eq!(
            requests, self.tally.responses,
            "requests counted != responses sent"
        );
        let created: u64 = all().flat_map(|c| c.allocations_created.iter()).sum();
        let ended: u64 = all().flat_map(|c| c.allocations_ended.iter()).sum();
        assert_eq!(ended, self.tally.ended);
        assert_eq!(created - ended, self.allocation_count() as u64);
    }
}
