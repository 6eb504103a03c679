//! Reading the kernel fast path's counters into the core before the shard publishes
//! its status or describes its sessions (`kernel_path` carries out the routes).

use super::Shard;

impl Shard {
    /// Brings the core's accounting up to the kernel's counters (before a publish or a
    /// sessions read, so metrics and the sessions API include the kernel's packets).
    pub(super) fn read_kernel(&mut self) {
        let Some(k) = &mut self.kernel else {
            return;
        };
        for (id, totals) in k.read() {
            self.core.fastpath_traffic(id, totals);
        }
    }

    /// `read_kernel`, then publish the shard's status.
    pub(super) fn publish(&mut self, now: std::time::Instant) {
        self.read_kernel();
        self.status.publish(
            &self.core,
            now,
            self.streams.counts(),
            self.streams.counters,
        );
    }
}
