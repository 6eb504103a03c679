//! The core's record of the routes it put in the kernel fast path (`fastpath_binding`
//! decides; this is the state).

use super::allocation::Traffic;
use super::command::SessionSummary;
use super::fast_map::FastMap;
use super::kernel_route::KernelRoute;
use super::stats::Direction;

pub(super) struct Installed {
    pub(super) route: KernelRoute,
    /// The allocation's serial.
    pub(super) serial: u64,
    /// The kernel's totals already counted.
    pub(super) seen: Traffic,
}

/// The core's view of the kernel maps.
#[derive(Default)]
pub struct KernelBindings {
    pub(super) next_id: u64,
    pub(super) routes: FastMap<u64, Installed>,
    /// Route ids by allocation serial.
    pub(super) by_alloc: FastMap<u64, Vec<u64>>,
    /// Ended allocations' summaries waiting for their routes' last counters, and how many.
    pub(super) closing: FastMap<u64, (Box<SessionSummary>, usize)>,
    /// Packets the kernel relayed, by `Direction`.
    pub packets: [u64; Direction::COUNT],
}

impl KernelBindings {
    pub fn installed(&self) -> usize {
        self.routes.len()
    }
}
