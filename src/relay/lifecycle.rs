//! How allocations end: timers from the deadline heap, disconnected stream clients,
//! shutdown, an admin's delete, and the bookkeeping of removal.

use std::cmp::Reverse;
use std::time::Instant;

use super::client::ClientId;
use super::command::{Command, SessionSummary};
use super::core_state::Core;
use super::stats::EndReason;
use super::time::Time;
use crate::auth::user_id;

impl Core {
    /// Expires allocations, permissions, channel bindings and reservations that are due:
    /// only those, found through the deadline heap, never a walk over every allocation.
    pub fn handle_timeout(&mut self, time: Time) {
        let now = time.mono;
        while let Some(&Reverse((at, idx, serial))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(a) = self.allocations.get_mut(idx) else {
                continue;
            };
            // An entry for an allocation that is gone (slot reused) or superseded.
            if a.serial != serial || a.scheduled != at {
                continue;
            }
            a.expire(now);
            let end = match a.session_end {
                Some((end, reason)) if end <= now => Some(reason),
                _ => (a.expires <= now).then_some(EndReason::Expired),
            };
            match end {
                Some(reason) => self.remove_allocation(now, idx, reason),
                None => {
                    self.kernel_sync(idx, Some(now));
                    let kernel = self.kernel_deadline(idx);
                    let a = &mut self.allocations[idx];
                    let next = kernel.map_or(a.next_deadline(), |k| k.min(a.next_deadline()));
                    a.scheduled = next;
                    self.timers.push(Reverse((next, idx, serial)));
                }
            }
        }
        while let Some(&(at, token)) = self.reservation_timers.front() {
            if at > now {
                break;
            }
            self.reservation_timers.pop_front();
            self.end_reservation(&token);
        }
    }

    /// Makes sure allocation `idx` is looked at by `at` (something in it is due then).
    pub(super) fn schedule(&mut self, idx: usize, at: Instant) {
        let a = &mut self.allocations[idx];
        if at < a.scheduled {
            a.scheduled = at;
            self.timers.push(Reverse((at, idx, a.serial)));
        }
    }

    /// A stream client's connection closed: its allocation goes with it (RFC 8656 §3.1).
    /// `clean` is false when the connection failed (I/O or framing error).
    pub fn client_disconnected(&mut self, time: Time, client: ClientId, clean: bool) {
        let now = time.mono;
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
    pub fn shutdown(&mut self, time: Time) {
        let now = time.mono;
        let all: Vec<usize> = self.allocations.iter().map(|(i, _)| i).collect();
        for idx in all {
            self.remove_allocation(now, idx, EndReason::Shutdown);
        }
    }

    /// Ends every allocation of user id `user` (the part after the expiry in a REST
    /// username, or a static username) for the sessions API. Returns how many.
    pub fn end_user_allocations(&mut self, time: Time, user: &str) -> usize {
        let now = time.mono;
        let idxs: Vec<usize> = self
            .allocations
            .iter()
            .filter(|(_, a)| user_id(&a.username) == user)
            .map(|(i, _)| i)
            .collect();
        for &idx in &idxs {
            self.remove_allocation(now, idx, EndReason::Admin);
        }
        idxs.len()
    }

    pub(super) fn remove_allocation(&mut self, now: Instant, idx: usize, reason: EndReason) {
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
        self.cfg.quotas.release(&a.username);
        if self.cfg.fleet_quota {
            self.commands
                .push_back(Command::ReleaseFleetSlot { token: a.serial });
        }
        self.counters.allocations_ended[reason as usize] += 1;
        let serial = a.serial;
        self.kernel_end(
            serial,
            Box::new(SessionSummary {
                username: a.username,
                client: a.client,
                relay_v4: a.relay_v4,
                relay_v6: a.relay_v6,
                duration: now.saturating_duration_since(a.created),
                traffic: a.traffic,
                peers_used: a.peers_used,
                channels_used: a.channels_used,
                reason,
            }),
        );
    }
}
