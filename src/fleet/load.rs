//! This node's own record, from the shards' snapshots (the numbers /metrics shows).

use crate::metrics::snapshot::ShardSnapshot;
use crate::settings::cluster::ClusterSettings;

use super::record::NodeRecord;

/// Relayed bytes between heartbeats, for bit/s.
#[derive(Default)]
pub struct Rate {
    last: Option<(u64, u64)>,
}

impl Rate {
    /// Bits per second since the previous call, given the byte total at `now_ms`.
    fn bits_per_second(&mut self, bytes: u64, now_ms: u64) -> u64 {
        let bps = match self.last {
            Some((b, t)) if now_ms > t => bytes.saturating_sub(b) * 8 * 1000 / (now_ms - t),
            _ => 0,
        };
        self.last = Some((bytes, now_ms));
        bps
    }
}

/// The record this node writes at `now_ms`.
pub fn own_record(
    s: &ClusterSettings,
    snaps: &[ShardSnapshot],
    draining: bool,
    rate: &mut Rate,
    now_ms: u64,
) -> NodeRecord {
    let sum = |f: &dyn Fn(&ShardSnapshot) -> u64| snaps.iter().map(f).sum::<u64>();
    let allocations = sum(&|s| s.allocations.iter().flatten().sum());
    let ports_in_use = sum(&|s| s.relay_ports_in_use.iter().sum());
    let ports_total = sum(&|s| s.relay_ports_total.iter().sum());
    let bytes = sum(&|s| s.counters.relayed_bytes.iter().flatten().sum());
    NodeRecord {
        name: s.node_name.clone(),
        region: s.region.clone(),
        uris: s.uris.clone(),
        allocations,
        max_allocations: s.max_allocations,
        relay_ports_in_use: ports_in_use,
        relay_ports_total: ports_total,
        bits_per_second: rate.bits_per_second(bytes, now_ms),
        draining,
        full: allocations >= s.max_allocations || (ports_total > 0 && ports_in_use >= ports_total),
        version: env!("CARGO_PKG_VERSION").into(),
        unix_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bit_rate_is_the_byte_delta_over_the_heartbeat() {
        let mut r = Rate::default();
        assert_eq!(r.bits_per_second(1000, 10_000), 0);
        assert_eq!(r.bits_per_second(3000, 12_000), 8000);
    }
}
