//! Every Prometheus metric turnpike exports, defined in one place. Shards count in plain
//! per-shard integers; a scrape asks each shard for a fresh copy and brings these families
//! up to the summed totals, so the relay path never touches an atomic or a lock.

pub mod client;
mod families;
pub mod labels;
pub mod snapshot;

use families::{self as f, Family};
use labels::{ProxyError, Refused, TlsFailure};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use snapshot::ShardSnapshot;

use crate::auth::AuthError;
use crate::relay::stats::{Direction, DropReason, EndReason, RESULTS, RequestMethod, result_label};
use crate::relay::{AddrFamily, Transport};

pub struct Metrics {
    registry: Registry,
    allocations: IntGaugeVec,
    permissions: IntGaugeVec,
    channels: IntGaugeVec,
    connections: IntGaugeVec,
    allocations_created: IntCounterVec,
    allocations_ended: IntCounterVec,
    relayed_bytes: IntCounterVec,
    relayed_packets: IntCounterVec,
    requests: IntCounterVec,
    auth_failures: IntCounterVec,
    dropped: IntCounterVec,
    peer_denied: IntCounter,
    quota_rejections: IntCounter,
    relay_ports_in_use: IntGaugeVec,
    relay_ports_total: IntGaugeVec,
    tls_handshake_failures: IntCounterVec,
    connections_refused: IntCounterVec,
    proxy_protocol_errors: IntCounterVec,
    fastpath_info: IntGaugeVec,
    fastpath_packets: IntCounterVec,
    /// Observed by the shards once per ended allocation (not per packet).
    pub allocation_lifetime: Histogram,
    /// `turnpike_handover_total{result}` (app/handover.rs).
    pub handovers: IntCounterVec,
    /// What browsers report about their calls (POST /api/v1/reports).
    pub client: client::ClientMetrics,
    /// `turnpike_cluster_up` and `turnpike_cluster_nodes`, registered with `[cluster]` only.
    cluster: std::sync::OnceLock<(IntGauge, IntGauge)>,
}

fn counter_vec(r: &Registry, f: &Family) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(f.name, f.help.concat()), f.labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, f: &Family) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(f.name, f.help.concat()), f.labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

fn counter(r: &Registry, f: &Family) -> IntCounter {
    let c = IntCounter::new(f.name, f.help.concat()).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn histogram(r: &Registry, f: &Family, buckets: &[f64]) -> Histogram {
    let opts = HistogramOpts::new(f.name, f.help.concat()).buckets(buckets.to_vec());
    let h = Histogram::with_opts(opts).expect("valid metric");
    r.register(Box::new(h.clone())).expect("unique metric");
    h
}

/// Raises a counter to `total`. Shard counters only grow, so the difference is >= 0.
fn raise(c: &IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

/// Raises one labelled series of `c` to `total`.
fn raise_series(c: &IntCounterVec, labels: &[&str], total: u64) {
    raise(&c.with_label_values(labels), total);
}

/// Sets one labelled series of `g` to `total`.
fn set_series(g: &IntGaugeVec, labels: &[&str], total: u64) {
    g.with_label_values(labels).set(total as i64);
}

/// The shards' latest snapshots, summed one value at a time.
struct Totals<'a>(&'a [ShardSnapshot]);

impl Totals<'_> {
    fn of(&self, f: impl Fn(&ShardSnapshot) -> u64) -> u64 {
        self.0.iter().map(f).sum()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let m = Metrics {
            allocations: gauge_vec(&r, &f::ALLOCATIONS),
            permissions: gauge_vec(&r, &f::PERMISSIONS),
            channels: gauge_vec(&r, &f::CHANNELS),
            connections: gauge_vec(&r, &f::CONNECTIONS),
            allocations_created: counter_vec(&r, &f::ALLOCATIONS_CREATED),
            allocations_ended: counter_vec(&r, &f::ALLOCATIONS_ENDED),
            relayed_bytes: counter_vec(&r, &f::RELAYED_BYTES),
            relayed_packets: counter_vec(&r, &f::RELAYED_PACKETS),
            requests: counter_vec(&r, &f::REQUESTS),
            auth_failures: counter_vec(&r, &f::AUTH_FAILURES),
            dropped: counter_vec(&r, &f::DROPPED),
            peer_denied: counter(&r, &f::PEER_DENIED),
            quota_rejections: counter(&r, &f::QUOTA_REJECTIONS),
            relay_ports_in_use: gauge_vec(&r, &f::RELAY_PORTS_IN_USE),
            relay_ports_total: gauge_vec(&r, &f::RELAY_PORTS_TOTAL),
            tls_handshake_failures: counter_vec(&r, &f::TLS_HANDSHAKE_FAILURES),
            connections_refused: counter_vec(&r, &f::CONNECTIONS_REFUSED),
            proxy_protocol_errors: counter_vec(&r, &f::PROXY_PROTOCOL_ERRORS),
            fastpath_info: gauge_vec(&r, &f::FASTPATH_INFO),
            fastpath_packets: counter_vec(&r, &f::FASTPATH_PACKETS),
            allocation_lifetime: histogram(&r, &f::ALLOCATION_LIFETIME, &f::LIFETIME_BUCKETS),
            handovers: counter_vec(&r, &f::HANDOVERS),
            client: client::ClientMetrics::register(&r),
            cluster: std::sync::OnceLock::new(),
            registry: r,
        };
        let info = gauge_vec(&m.registry, &f::BUILD_INFO);
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // process_* (memory, open fds, CPU, start time), which admins' dashboards expect.
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        // Create every labelled series up front, so a dashboard sees zeros, not gaps.
        for r in f::HANDOVER_RESULTS {
            m.handovers.with_label_values(&[r]);
        }
        m.update(&[ShardSnapshot::default()]);
        m.set_fastpath_mode("off");
        m
    }

    /// `turnpike_fastpath_info{mode}`: the one series of the mode in use.
    pub fn set_fastpath_mode(&self, mode: &str) {
        self.fastpath_info.reset();
        self.fastpath_info.with_label_values(&[mode]).set(1);
    }

    /// Brings every family up to the sum of the shards' latest snapshots.
    pub fn update(&self, shards: &[ShardSnapshot]) {
        let sum = Totals(shards);
        for t in Transport::ALL {
            self.update_transport(t, &sum);
        }
        self.update_outcomes(&sum);
        self.update_requests(&sum);
        for fam in AddrFamily::ALL {
            let (l, fi) = ([fam.label()], fam as usize);
            set_series(
                &self.relay_ports_in_use,
                &l,
                sum.of(|s| s.relay_ports_in_use[fi]),
            );
            set_series(
                &self.relay_ports_total,
                &l,
                sum.of(|s| s.relay_ports_total[fi]),
            );
        }
        raise(&self.peer_denied, sum.of(|s| s.counters.peer_denied));
        for d in Direction::ALL {
            let total = sum.of(|s| s.fastpath_packets[d as usize]);
            raise_series(&self.fastpath_packets, &[d.label()], total);
        }
        self.update_streams(&sum);
        raise(
            &self.quota_rejections,
            sum.of(|s| s.counters.quota_rejections),
        );
    }

    /// The gauges and counters labelled by transport.
    fn update_transport(&self, t: Transport, sum: &Totals<'_>) {
        let ti = t as usize;
        for fam in AddrFamily::ALL {
            let (l, fi) = ([t.label(), fam.label()], fam as usize);
            set_series(&self.allocations, &l, sum.of(|s| s.allocations[ti][fi]));
            set_series(&self.permissions, &l, sum.of(|s| s.permissions[ti][fi]));
            set_series(&self.channels, &l, sum.of(|s| s.channels[ti][fi]));
        }
        if t != Transport::Udp {
            set_series(
                &self.connections,
                &[t.label()],
                sum.of(|s| s.connections[ti]),
            );
        }
        let created = sum.of(|s| s.counters.allocations_created[ti]);
        raise_series(&self.allocations_created, &[t.label()], created);
        for d in Direction::ALL {
            let (l, di) = ([d.label(), t.label()], d as usize);
            let bytes = sum.of(|s| s.counters.relayed_bytes[ti][di]);
            raise_series(&self.relayed_bytes, &l, bytes);
            let packets = sum.of(|s| s.counters.relayed_packets[ti][di]);
            raise_series(&self.relayed_packets, &l, packets);
        }
    }

    /// Ended allocations, authentication failures and dropped packets, by reason.
    fn update_outcomes(&self, sum: &Totals<'_>) {
        for r in EndReason::ALL {
            let total = sum.of(|s| s.counters.allocations_ended[r as usize]);
            raise_series(&self.allocations_ended, &[r.label()], total);
        }
        for r in AuthError::ALL {
            let total = sum.of(|s| s.counters.auth_failures[r as usize]);
            raise_series(&self.auth_failures, &[r.label()], total);
        }
        for r in DropReason::ALL {
            let total = sum.of(|s| s.counters.dropped[r as usize]);
            raise_series(&self.dropped, &[r.label()], total);
        }
    }

    fn update_requests(&self, sum: &Totals<'_>) {
        for m in RequestMethod::ALL {
            for ci in 0..RESULTS {
                let total = sum.of(|s| s.counters.requests[m as usize][ci]);
                // Only series that happened: every method by every code would be mostly noise.
                if total > 0 {
                    raise_series(&self.requests, &[m.label(), result_label(ci)], total);
                }
            }
        }
    }

    /// The TLS and TCP connection counters.
    fn update_streams(&self, sum: &Totals<'_>) {
        for r in TlsFailure::ALL {
            let total = sum.of(|s| s.streams.tls_handshake_failures[r as usize]);
            raise_series(&self.tls_handshake_failures, &[r.label()], total);
        }
        for r in Refused::ALL {
            let total = sum.of(|s| s.streams.refused[r as usize]);
            raise_series(&self.connections_refused, &[r.label()], total);
        }
        for r in ProxyError::ALL {
            let total = sum.of(|s| s.streams.proxy_protocol_errors[r as usize]);
            raise_series(&self.proxy_protocol_errors, &[r.label()], total);
        }
    }

    /// The fleet registry's state: whether Redis answered the last heartbeat, and how
    /// many nodes are live. The two gauges appear at the first call.
    pub fn set_cluster(&self, up: bool, nodes: usize) {
        let (g_up, g_nodes) = self.cluster.get_or_init(|| {
            let gauge = |f: &Family| {
                let g = IntGauge::new(f.name, f.help.concat()).expect("valid metric");
                self.registry
                    .register(Box::new(g.clone()))
                    .expect("unique metric");
                g
            };
            (gauge(&f::CLUSTER_UP), gauge(&f::CLUSTER_NODES))
        });
        g_up.set(up as i64);
        g_nodes.set(nodes as i64);
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding cannot fail");
        String::from_utf8(out).expect("prometheus text is UTF-8")
    }
}

#[cfg(test)]
mod tests;
