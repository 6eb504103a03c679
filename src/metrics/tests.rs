//! The metrics' tests. The two snapshots were taken from the code before the label
//! tables: a metric's name, label names and label values are what dashboards
//! (deploy/grafana) and alerts (deploy/prometheus) query, so they must not move.

use super::*;

/// A render's series: every TYPE line and every sample's name and labels, without the
/// HELP text, the values, the `process_*` families or the build's version.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with("# HELP") && !l.contains("process_"))
        .map(|l| match l.starts_with('#') {
            true => l,
            false => l.rsplit_once(' ').expect("a sample has a value").0,
        })
        .map(|l| l.replace(env!("CARGO_PKG_VERSION"), "VERSION"))
        .collect()
}

#[test]
fn a_fresh_registry_exports_the_series_it_always_did() {
    let want: Vec<&str> = include_str!("snapshots/fresh_series.txt").lines().collect();
    // The browser report families came later (tests/loopback_reports.rs pins them), and
    // the fast path's (pinned below) and the handover's (tests/ext_handover.rs).
    let all = series(&Metrics::new().render());
    let got: Vec<&String> = (all.iter())
        .filter(|l| {
            !l.contains("turnpike_client_")
                && !l.contains("turnpike_fastpath_")
                && !l.contains("turnpike_handover_")
        })
        .collect();
    assert_eq!(got, want);
    let fastpath: Vec<&String> = (all.iter())
        .filter(|l| l.starts_with("turnpike_fastpath_"))
        .collect();
    assert_eq!(
        fastpath,
        [
            "turnpike_fastpath_info{mode=\"off\"}",
            "turnpike_fastpath_packets_total{direction=\"client_to_peer\"}",
            "turnpike_fastpath_packets_total{direction=\"peer_to_client\"}",
        ]
    );
}

#[test]
fn every_method_and_result_code_keeps_its_label() {
    let m = Metrics::new();
    let mut s = ShardSnapshot::default();
    s.counters.requests = [[1; RESULTS]; RequestMethod::COUNT];
    m.update(&[s]);
    let requests: Vec<String> = series(&m.render())
        .into_iter()
        .filter(|l| l.starts_with("turnpike_requests_total{"))
        .collect();
    let want: Vec<&str> = include_str!("snapshots/request_series.txt")
        .lines()
        .collect();
    assert_eq!(requests, want);
}

#[test]
fn help_text_lists_the_labels_of_its_table() {
    let text = Metrics::new().render();
    let help = "# HELP turnpike_allocations_ended_total Allocations ended, by reason \
                (expired, deleted, error, shutdown, credential_expired, max_session, admin).";
    assert!(text.contains(help), "{text}");
    let help = "# HELP turnpike_connections_refused_total TCP/TLS connections closed at \
                accept, by the limit they hit (max_connections, max_connections_per_ip).";
    assert!(text.contains(help), "{text}");
}

#[test]
fn readme_metrics_table_lists_every_label_value() {
    let readme = include_str!("../../README.md");
    let tables: [(&Family, &[&str]); 6] = [
        (&f::ALLOCATIONS_ENDED, &EndReason::LABELS),
        (&f::AUTH_FAILURES, &AuthError::LABELS),
        (&f::DROPPED, &DropReason::LABELS),
        (&f::TLS_HANDSHAKE_FAILURES, &TlsFailure::LABELS),
        (&f::CONNECTIONS_REFUSED, &Refused::LABELS),
        (&f::PROXY_PROTOCOL_ERRORS, &ProxyError::LABELS),
    ];
    for (family, labels) in tables {
        let start = format!("| `{}` |", family.name);
        let row = readme.lines().find(|l| l.starts_with(&start));
        let row = row.unwrap_or_else(|| panic!("README has no row for {}", family.name));
        for l in labels {
            assert!(
                row.contains(&format!("`{l}`")),
                "README {}: {l}",
                family.name
            );
        }
    }
}

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
        text.contains("turnpike_connections_refused_total{reason=\"max_connections_per_ip\"} 0")
    );
}
