//! Every Prometheus metric turnpike exports, defined in one place. Shards count in plain
//! per-shard integers; a scrape asks each shard for a fresh copy and brings these families
//! up to the summed totals, so the relay path never touches an atomic or a lock.

pub mod labels;
pub mod snapshot;

use labels::{Refused, TlsFailure};
use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use snapshot::ShardSnapshot;

use crate::auth::AuthError;
use crate::relay::Transport;
use crate::relay::stats::{Direction, DropReason, EndReason, RESULTS, RequestMethod, result_code};

pub const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];

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
    /// Observed by the shards once per ended allocation (not per packet).
    pub allocation_lifetime: Histogram,
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Raises a counter to `total`. Shard counters only grow, so the difference is >= 0.
fn raise(c: &IntCounter, total: u64) {
    c.inc_by(total.saturating_sub(c.get()));
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let r = Registry::new();
        let tf = &["transport", "family"];
        let m = Metrics {
            allocations: gauge_vec(&r, "turnpike_allocations", "Active allocations.", tf),
            permissions: gauge_vec(&r, "turnpike_permissions", "Active permissions.", tf),
            channels: gauge_vec(
                &r,
                "turnpike_channel_bindings",
                "Active channel bindings.",
                tf,
            ),
            connections: gauge_vec(
                &r,
                "turnpike_connections",
                "Open TCP/TLS client connections.",
                &["transport"],
            ),
            allocations_created: counter_vec(
                &r,
                "turnpike_allocations_created_total",
                "Allocations created.",
                &["transport"],
            ),
            allocations_ended: counter_vec(
                &r,
                "turnpike_allocations_ended_total",
                "Allocations ended, by reason (expired, deleted, error, shutdown).",
                &["reason"],
            ),
            relayed_bytes: counter_vec(
                &r,
                "turnpike_relayed_bytes_total",
                "Application bytes relayed (payload, without TURN framing).",
                &["direction", "transport"],
            ),
            relayed_packets: counter_vec(
                &r,
                "turnpike_relayed_packets_total",
                "Packets relayed.",
                &["direction", "transport"],
            ),
            requests: counter_vec(
                &r,
                "turnpike_requests_total",
                "STUN/TURN requests answered, by method and result code (200 = success).",
                &["method", "code"],
            ),
            auth_failures: counter_vec(
                &r,
                "turnpike_auth_failures_total",
                "Requests that failed authentication, by reason.",
                &["reason"],
            ),
            dropped: counter_vec(
                &r,
                "turnpike_dropped_packets_total",
                "Packets not relayed, by reason.",
                &["reason"],
            ),
            peer_denied: {
                let c = IntCounter::new(
                    "turnpike_peer_denied_total",
                    "CreatePermission/ChannelBind refused (403) by the peer policy.",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            quota_rejections: {
                let c = IntCounter::new(
                    "turnpike_quota_rejections_total",
                    "Allocations refused (486) by a quota.",
                )
                .expect("valid metric");
                r.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            relay_ports_in_use: gauge_vec(
                &r,
                "turnpike_relay_ports_in_use",
                "Relay ports held by allocations or EVEN-PORT reservations.",
                &["family"],
            ),
            relay_ports_total: gauge_vec(
                &r,
                "turnpike_relay_ports_total",
                "Relay ports in the configured range (0 for a family that is off).",
                &["family"],
            ),
            tls_handshake_failures: counter_vec(
                &r,
                "turnpike_tls_handshake_failures_total",
                "TLS handshakes that failed on TLS listeners, by reason (bad_client_hello, \
                 incompatible, alert, plaintext_refused, timeout, closed, other).",
                &["reason"],
            ),
            connections_refused: counter_vec(
                &r,
                "turnpike_connections_refused_total",
                "TCP/TLS connections closed at accept, by the limit they hit \
                 (max_connections, max_connections_per_ip).",
                &["reason"],
            ),
            allocation_lifetime: {
                let h = Histogram::with_opts(
                    HistogramOpts::new(
                        "turnpike_allocation_lifetime_seconds",
                        "How long ended allocations lived.",
                    )
                    .buckets(vec![
                        1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
                    ]),
                )
                .expect("valid metric");
                r.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            registry: r,
        };
        let info = gauge_vec(
            &m.registry,
            "turnpike_build_info",
            "Always 1; labels carry the build.",
            &["version"],
        );
        info.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        // process_* (memory, open fds, CPU, start time), which admins' dashboards expect.
        #[cfg(target_os = "linux")]
        m.registry
            .register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))
            .expect("unique metric");
        // Create every labelled series up front, so a dashboard sees zeros, not gaps.
        m.update(&[ShardSnapshot::default()]);
        m
    }

    /// Brings every family up to the sum of the shards' latest snapshots.
    pub fn update(&self, shards: &[ShardSnapshot]) {
        let sum = |f: &dyn Fn(&ShardSnapshot) -> u64| shards.iter().map(f).sum::<u64>();
        for t in Transport::ALL {
            let ti = t as usize;
            for (fi, fam) in FAMILIES.iter().enumerate() {
                let l = [t.label(), fam];
                self.allocations
                    .with_label_values(&l)
                    .set(sum(&|s| s.allocations[ti][fi]) as i64);
                self.permissions
                    .with_label_values(&l)
                    .set(sum(&|s| s.permissions[ti][fi]) as i64);
                self.channels
                    .with_label_values(&l)
                    .set(sum(&|s| s.channels[ti][fi]) as i64);
            }
            if t != Transport::Udp {
                self.connections
                    .with_label_values(&[t.label()])
                    .set(sum(&|s| s.connections[ti]) as i64);
            }
            raise(
                &self.allocations_created.with_label_values(&[t.label()]),
                sum(&|s| s.counters.allocations_created[ti]),
            );
            for d in Direction::ALL {
                let l = [d.label(), t.label()];
                let di = d as usize;
                raise(
                    &self.relayed_bytes.with_label_values(&l),
                    sum(&|s| s.counters.relayed_bytes[ti][di]),
                );
                raise(
                    &self.relayed_packets.with_label_values(&l),
                    sum(&|s| s.counters.relayed_packets[ti][di]),
                );
            }
        }
        for r in EndReason::ALL {
            raise(
                &self.allocations_ended.with_label_values(&[r.label()]),
                sum(&|s| s.counters.allocations_ended[r as usize]),
            );
        }
        for m in RequestMethod::ALL {
            for ci in 0..RESULTS {
                let c = result_code(ci);
                let total = sum(&|s| s.counters.requests[m as usize][ci]);
                // Only series that happened: 5 methods x 14 codes would be mostly noise.
                if total > 0 {
                    raise(
                        &self
                            .requests
                            .with_label_values(&[m.label(), c.to_string().as_str()]),
                        total,
                    );
                }
            }
        }
        for r in AuthError::ALL {
            raise(
                &self.auth_failures.with_label_values(&[r.label()]),
                sum(&|s| s.counters.auth_failures[r as usize]),
            );
        }
        for r in DropReason::ALL {
            raise(
                &self.dropped.with_label_values(&[r.label()]),
                sum(&|s| s.counters.dropped[r as usize]),
            );
        }
        for (fi, fam) in FAMILIES.iter().enumerate() {
            self.relay_ports_in_use
                .with_label_values(&[fam])
                .set(sum(&|s| s.relay_ports_in_use[fi]) as i64);
            self.relay_ports_total
                .with_label_values(&[fam])
                .set(sum(&|s| s.relay_ports_total[fi]) as i64);
        }
        raise(&self.peer_denied, sum(&|s| s.counters.peer_denied));
        for r in TlsFailure::ALL {
            raise(
                &self.tls_handshake_failures.with_label_values(&[r.label()]),
                sum(&|s| s.streams.tls_handshake_failures[r as usize]),
            );
        }
        for r in Refused::ALL {
            raise(
                &self.connections_refused.with_label_values(&[r.label()]),
                sum(&|s| s.streams.refused[r as usize]),
            );
        }
        raise(
            &self.quota_rejections,
            sum(&|s| s.counters.quota_rejections),
        );
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
mod tests {
    use super::*;

    #[test]
    fn counters_are_summed_across_shards_and_never_go_down() {
        let m = Metrics::new();
        let mut a = ShardSnapshot::default();
        a.counters.relayed_bytes[0][0] = 100;
        a.counters.relayed_packets[0][0] = 2;
        a.allocations[0][0] = 3;
        let mut b = ShardSnapshot::default();
        b.counters.relayed_bytes[0][0] = 50;
        b.counters.relayed_packets[0][0] = 1;
        b.allocations[0][0] = 1;
        m.update(&[a.clone(), b.clone()]);
        let text = m.render();
        assert!(
            text.contains(
                "turnpike_relayed_bytes_total{direction=\"client_to_peer\",transport=\"udp\"} 150"
            ),
            "{text}"
        );
        assert!(text.contains("turnpike_allocations{family=\"ipv4\",transport=\"udp\"} 4"));
        b.allocations[0][0] = 0;
        a.counters.relayed_bytes[0][0] = 110;
        m.update(&[a, b]);
        let text = m.render();
        assert!(text.contains(
            "turnpike_relayed_bytes_total{direction=\"client_to_peer\",transport=\"udp\"} 160"
        ));
        assert!(text.contains("turnpike_allocations{family=\"ipv4\",transport=\"udp\"} 3"));
        assert!(text.contains("turnpike_build_info{version="));
        assert!(text.contains("turnpike_connections{transport=\"tls\"} 0"));
        assert!(text.contains("turnpike_tls_handshake_failures_total{reason=\"timeout\"} 0"));
        assert!(
            text.contains(
                "turnpike_connections_refused_total{reason=\"max_connections_per_ip\"} 0"
            )
        );
    }
}
