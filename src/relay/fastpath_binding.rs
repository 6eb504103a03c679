//! Which channel bindings the kernel fast path may forward (issue 19). The core decides,
//! like every other side effect, through `Command::FastPathAdd` / `FastPathRemove`; the
//! shell only mirrors them into the BPF maps and reports the kernel's counters back.
//!
//! A binding is in the kernel exactly while all of these hold (`CoreConfig::fastpath`):
//! the client came over UDP, the allocation has no bandwidth cap (the kernel does not
//! meter, so a capped allocation stays on the socket path where the buckets are), the
//! channel is live, the peer's permission is live, and the peer is not one of this
//! server's relay addresses (XDP_TX would send a relay-to-relay packet to the wire instead
//! of back into this host). It is checked after ChannelBind and CreatePermission (a
//! refreshed permission brings a binding back), at every timer of the allocation (the
//! channel's own expiry is such a timer while it is installed), at reload (a new policy)
//! and at allocation end. A channel refresh only moves the userspace deadline: the
//! kernel has no timer, userspace removes the binding when it is due.
//!
//! Counters: the shell passes the kernel's running totals per binding (`fastpath_traffic`
//! at each status publish and sessions read, `fastpath_removed` with the last read after
//! removal); the core adds what is new to the allocation's traffic and `relayed_*`. An
//! allocation that ends with bindings installed logs its session line only once every
//! removal is answered, so the line includes the kernel's last packets.

use std::time::Instant;

use super::allocation::{Allocation, Traffic};
use super::client::{ClientId, Transport};
use super::command::{Command, SessionSummary};
use super::core_state::Core;
use super::kernel_bindings::Installed;
use super::kernel_route::KernelRoute;
use super::stats::Direction;

fn delta(now: Traffic, seen: Traffic) -> Traffic {
    Traffic {
        bytes_to_peer: now.bytes_to_peer.saturating_sub(seen.bytes_to_peer),
        packets_to_peer: now.packets_to_peer.saturating_sub(seen.packets_to_peer),
        bytes_to_client: now.bytes_to_client.saturating_sub(seen.bytes_to_client),
        packets_to_client: now.packets_to_client.saturating_sub(seen.packets_to_client),
    }
}

fn add(t: &mut Traffic, d: Traffic) {
    t.bytes_to_peer += d.bytes_to_peer;
    t.packets_to_peer += d.packets_to_peer;
    t.bytes_to_client += d.bytes_to_client;
    t.packets_to_client += d.packets_to_client;
}

impl Core {
    /// Whether `a`'s channel `channel` may be forwarded by the kernel now (`None`: only
    /// whether its binding and permission still exist, for a reload, which has no time).
    fn kernel_eligible(&self, a: &Allocation, now: Option<Instant>, channel: u16) -> bool {
        let Some(b) = a.channels.get(&channel) else {
            return false;
        };
        let permission = a.permissions.get(&b.peer.ip());
        let live = match now {
            Some(now) => b.expires > now && permission.is_some_and(|&e| e > now),
            None => permission.is_some(),
        };
        let own_relay = [self.cfg.relay_v4, self.cfg.relay_v6]
            .iter()
            .flatten()
            .any(|f| f.bind == b.peer.ip() || f.advertised == b.peer.ip());
        live && !own_relay
            && a.client.transport == Transport::Udp
            && a.limits.is_none()
            && a.relay_for(&b.peer).is_some()
    }

    /// Brings the kernel's routes of allocation `idx` in line with its state: removes what
    /// is no longer eligible, adds (unless `now` is None) what became eligible.
    pub(super) fn kernel_sync(&mut self, idx: usize, now: Option<Instant>) {
        if !self.cfg.fastpath {
            return;
        }
        let a = &self.allocations[idx];
        let serial = a.serial;
        let ids = self
            .kernel
            .by_alloc
            .get(&serial)
            .cloned()
            .unwrap_or_default();
        let (mut keep, gone): (Vec<u64>, Vec<u64>) = ids.into_iter().partition(|id| {
            let r = self.kernel.routes[id].route;
            let same = a.channels.get(&r.channel).map(|b| b.peer) == Some(r.peer);
            same && self.kernel_eligible(a, now, r.channel)
        });
        let mut adds = Vec::new();
        if let Some(now) = now {
            let mut channels: Vec<u16> = a.channels.keys().copied().collect();
            channels.sort_unstable();
            for ch in channels {
                let has = keep
                    .iter()
                    .any(|id| self.kernel.routes[id].route.channel == ch);
                if !has && self.kernel_eligible(a, Some(now), ch) {
                    let peer = a.channels[&ch].peer;
                    let relay = a.relay_for(&peer).expect("checked in kernel_eligible");
                    adds.push((a.client, ch, relay, peer));
                }
            }
        }
        for id in gone {
            let r = self.kernel.routes[&id].route;
            self.commands.push_back(Command::FastPathRemove(r));
        }
        for (client, channel, relay, peer) in adds {
            self.kernel.next_id += 1;
            let route = KernelRoute {
                id: self.kernel.next_id,
                client,
                channel,
                relay,
                peer,
            };
            let seen = Traffic::default();
            self.kernel.routes.insert(
                route.id,
                Installed {
                    route,
                    serial,
                    seen,
                },
            );
            self.commands.push_back(Command::FastPathAdd(route));
            keep.push(route.id);
        }
        let due = self.kernel_deadline_of(idx, &keep);
        if keep.is_empty() {
            self.kernel.by_alloc.remove(&serial);
        } else {
            self.kernel.by_alloc.insert(serial, keep);
        }
        if let Some(due) = due {
            self.schedule(idx, due);
        }
    }

    fn kernel_deadline_of(&self, idx: usize, ids: &[u64]) -> Option<Instant> {
        let a = &self.allocations[idx];
        ids.iter()
            .filter_map(|id| a.channels.get(&self.kernel.routes[id].route.channel))
            .map(|b| b.expires)
            .min()
    }

    /// When the earliest installed channel of allocation `idx` expires: a timer, since
    /// the kernel would forward it otherwise.
    pub(super) fn kernel_deadline(&self, idx: usize) -> Option<Instant> {
        let serial = self.allocations[idx].serial;
        let ids = self.kernel.by_alloc.get(&serial)?;
        self.kernel_deadline_of(idx, ids)
    }

    /// An allocation ended: its routes leave the kernel, and its session line waits for
    /// their last counters (`fastpath_removed`).
    pub(super) fn kernel_end(&mut self, serial: u64, summary: Box<SessionSummary>) {
        let ids = self.kernel.by_alloc.remove(&serial).unwrap_or_default();
        if ids.is_empty() {
            self.commands.push_back(Command::AllocationEnded(summary));
            return;
        }
        for id in &ids {
            let r = self.kernel.routes[id].route;
            self.commands.push_back(Command::FastPathRemove(r));
        }
        self.kernel.closing.insert(serial, (summary, ids.len()));
    }

    /// An allocation was handed over to another process (with the fast path detached, its
    /// counters read): its routes leave this process's maps, with nothing more to count.
    pub(super) fn kernel_forget(&mut self, serial: u64) {
        for id in self.kernel.by_alloc.remove(&serial).unwrap_or_default() {
            if let Some(inst) = self.kernel.routes.remove(&id) {
                self.commands.push_back(Command::FastPathRemove(inst.route));
            }
        }
    }

    /// The kernel's running totals for route `id` (its per-CPU counters summed): what is
    /// new goes into the allocation's traffic and the relayed totals.
    pub fn fastpath_traffic(&mut self, id: u64, totals: Traffic) {
        let Some(inst) = self.kernel.routes.get_mut(&id) else {
            return;
        };
        let d = delta(totals, inst.seen);
        inst.seen = totals;
        let (client, serial) = (inst.route.client, inst.serial);
        self.count_kernel(client, serial, d);
    }

    /// The shell removed route `id` (`Command::FastPathRemove`) and read its counters once
    /// more: `totals` are final.
    pub fn fastpath_removed(&mut self, id: u64, totals: Traffic) {
        self.fastpath_traffic(id, totals);
        let Some(inst) = self.kernel.routes.remove(&id) else {
            return;
        };
        let Some((_, left)) = self.kernel.closing.get_mut(&inst.serial) else {
            return;
        };
        *left -= 1;
        if *left == 0 {
            let (summary, _) = self.kernel.closing.remove(&inst.serial).expect("present");
            self.commands.push_back(Command::AllocationEnded(summary));
        }
    }

    fn count_kernel(&mut self, client: ClientId, serial: u64, d: Traffic) {
        let t = client.transport as usize;
        let (up, down) = (
            Direction::ClientToPeer as usize,
            Direction::PeerToClient as usize,
        );
        self.counters.relayed_bytes[t][up] += d.bytes_to_peer;
        self.counters.relayed_packets[t][up] += d.packets_to_peer;
        self.counters.relayed_bytes[t][down] += d.bytes_to_client;
        self.counters.relayed_packets[t][down] += d.packets_to_client;
        self.kernel.packets[Direction::ClientToPeer as usize] += d.packets_to_peer;
        self.kernel.packets[Direction::PeerToClient as usize] += d.packets_to_client;
        if let Some((summary, _)) = self.kernel.closing.get_mut(&serial) {
            return add(&mut summary.traffic, d);
        }
        if let Some(&idx) = self.by_client.get(&client)
            && self.allocations[idx].serial == serial
        {
            add(&mut self.allocations[idx].traffic, d);
        }
    }

    /// Packets the kernel relayed, by `Direction`, for `turnpike_fastpath_packets_total`.
    pub fn fastpath_packets(&self) -> [u64; Direction::COUNT] {
        self.kernel.packets
    }

    /// Routes in the kernel now (tests, status).
    pub fn fastpath_routes(&self) -> usize {
        self.kernel.installed()
    }
}
