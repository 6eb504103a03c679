//! A shard's part of a process handover (issue 18): export its UDP allocations with the
//! descriptors they need, then stand still until the shell says whether the new process
//! took over. Standing still is what makes it safe: nothing is read twice or by nobody,
//! what arrives meanwhile waits in the socket buffers for whichever process goes on.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::relay::handover::encode;
use crate::relay::handover::format::TransportState;

use super::Shard;
use super::export::{HandOverRequest, ShardExport, Verdict};

/// The longest a shard stands still for a verdict; then it resumes on its own.
const VERDICT_TIMEOUT: Duration = Duration::from_secs(30);

impl Shard {
    pub(super) fn hand_over(&mut self, req: HandOverRequest) {
        // The fast path is detached: these are the kernel's final counts.
        self.read_kernel();
        let mut state = self.core.export_state(self.time);
        let total = state.allocations.len();
        state
            .allocations
            .retain(|a| a.client.transport == TransportState::Udp);
        let serials: Vec<u64> = state.allocations.iter().map(|a| a.serial).collect();
        let relays = state
            .allocations
            .iter()
            .flat_map(|a| [a.relay_v4, a.relay_v6])
            .flatten()
            .filter_map(|addr| self.relays.fd(addr).map(|fd| (addr, fd)))
            .collect();
        let export = ShardExport {
            index: self.index,
            state: encode(&state),
            udp: self.udp.iter().map(|l| l.as_raw_fd()).collect(),
            tcp: self.tcp.iter().map(|(l, t)| (l.as_raw_fd(), *t)).collect(),
            relays,
            allocations: serials.len(),
            kept: total - serials.len(),
        };
        if req.reply.send(export).is_err() {
            return;
        }
        match req.verdict.recv_timeout(VERDICT_TIMEOUT) {
            Ok(Verdict::TookOver) => self.handed_over(&serials, true),
            Ok(Verdict::Stored) => self.handed_over(&serials, false),
            Ok(Verdict::Resume) | Err(_) => {}
        }
    }

    /// The new process serves the listeners and the exported allocations now: drop them
    /// here without ending them, and stop reading the listeners (the descriptors stay
    /// open: they are the same sockets the new process reads).
    fn handed_over(&mut self, serials: &[u64], slots_adopted: bool) {
        self.core.forget_handed_over(serials, slots_adopted);
        self.run_commands();
        let registry = self.poll.registry();
        for l in &mut self.udp {
            let _ = registry.deregister(l);
        }
        for (l, _) in &mut self.tcp {
            let _ = registry.deregister(l);
        }
    }

    /// Takes over the relay sockets the previous process bound for the allocations this
    /// shard's core imported; binds afresh any that did not come (`relays` names all).
    pub fn adopt_relays(
        &mut self,
        mut sockets: Vec<(SocketAddr, std::net::UdpSocket)>,
        relays: &[SocketAddr],
    ) {
        for addr in relays {
            let result = match sockets.iter().position(|(a, _)| a == addr) {
                Some(i) => {
                    let (_, s) = sockets.swap_remove(i);
                    self.relays.adopt(self.poll.registry(), *addr, s)
                }
                None => self.relays.bind(self.poll.registry(), *addr),
            };
            if let Err(e) = result {
                tracing::warn!(relay = %addr, error = %e, "handover: relay socket not taken over");
            }
        }
    }
}
