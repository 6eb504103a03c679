//! `Core::forget_handed_over`: the old process's side once the new one has taken over.

use crate::relay::command::Command;
use crate::relay::core_state::Core;

impl Core {
    /// Drops the allocations with these serials without ending them: another process
    /// serves them now, so there is no log line and no counter (the allocation goes on).
    /// Their relay sockets are released here (the new process holds its own descriptors
    /// for them). Returns how many were dropped.
    ///
    /// Fleet slots (`[cluster]`): the importing core's shell takes each over under its own
    /// name and removes this one's (`Command::AdoptFleetSlot`). `slots_adopted`: that is
    /// done already, so this core's names are given back too, in case this shell's
    /// refresh wrote one back meanwhile. Not adopted yet (the importer does not run yet):
    /// leave them, or the user's count would dip until the importer adopts them.
    pub fn forget_handed_over(&mut self, serials: &[u64], slots_adopted: bool) -> usize {
        let serials: std::collections::HashSet<u64> = serials.iter().copied().collect();
        let idxs: Vec<usize> = self
            .allocations
            .iter()
            .filter(|(_, a)| serials.contains(&a.serial))
            .map(|(i, _)| i)
            .collect();
        for &idx in &idxs {
            let a = self.allocations.remove(idx);
            self.by_client.remove(&a.client);
            for r in [a.relay_v4, a.relay_v6].into_iter().flatten() {
                if r.is_ipv4() {
                    self.by_relay_v4.remove(&r.port());
                } else {
                    self.by_relay_v6.remove(&r.port());
                }
                self.commands.push_back(Command::ReleaseRelay { addr: r });
            }
            self.cfg.quotas.release(&a.username);
            self.kernel_forget(a.serial);
            if self.cfg.fleet_quota && slots_adopted {
                self.commands
                    .push_back(Command::ReleaseFleetSlot { token: a.serial });
            }
        }
        idxs.len()
    }
}
