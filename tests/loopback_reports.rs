//! Browser call reports (POST /api/v1/reports) and the module (GET /client/turnpike.js)
//! over real HTTP on loopback: accepted reports are counted with their labels, and every
//! kind of bad report is refused, counted by reason, and moves no connection count.

mod support;

use std::net::SocketAddr;

use support::{SECRET, http_get, http_request, metric, start_http, start_with, unix_now};
use turnpike::auth::rest_password;
use turnpike::http::reports::sign;

fn server(client: bool) -> SocketAddr {
    let (relay, _, cfg) = start_with(
        false,
        "58600-58609",
        "",
        &format!("[http]\nclient = {client}\ncors_origins = [\"https://app.example\"]"),
    );
    start_http(relay, &cfg)
}

fn body(username: &str, outcome: &str, path: &str) -> Vec<u8> {
    format!(
        r#"{{"v":1,"username":"{username}","outcome":"{outcome}","path":"{path}","browser":"firefox","connect_ms":420,"gathered":["host","relay_udp"]}}"#
    )
    .into_bytes()
}

fn post(http: SocketAddr, body: &[u8], signature: Option<&str>) -> u16 {
    let mut headers = vec![("Content-Type", "application/json")];
    if let Some(s) = signature {
        headers.push(("X-Turnpike-Signature", s));
    }
    http_request(http, "POST", "/api/v1/reports", &headers, body).0
}

fn scrape(http: SocketAddr) -> String {
    http_get(http, "GET", "/metrics", &[]).2
}

fn connections(text: &str, outcome: &str, path: &str) -> f64 {
    metric(
        text,
        &format!(
            "turnpike_client_connections_total{{browser=\"firefox\",outcome=\"{outcome}\",path=\"{path}\"}}"
        ),
    )
}

fn refused(text: &str, reason: &str) -> f64 {
    metric(
        text,
        &format!("turnpike_client_reports_refused_total{{reason=\"{reason}\"}}"),
    )
}

fn live_user(id: &str) -> String {
    format!("{}:{id}", unix_now() + 600)
}

#[test]
fn module_is_served_with_its_type_cache_and_cors_only_when_client_is_on() {
    let http = server(true);
    let origin = [("Origin", "https://app.example")];
    let (status, head, js) = http_get(http, "GET", "/client/turnpike.js", &origin);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/javascript"), "{head}");
    assert!(
        head.contains("cache-control: public, max-age=3600"),
        "{head}"
    );
    assert!(
        head.contains("access-control-allow-origin: https://app.example"),
        "{head}"
    );
    assert_eq!(js, include_str!("../client/turnpike.js"));
    let (status, head, _) = http_get(
        http,
        "OPTIONS",
        "/api/v1/reports",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
    );
    assert_eq!(status, 204);
    assert!(head.contains("x-turnpike-signature"), "{head}");
    let off = server(false);
    assert_eq!(http_get(off, "GET", "/client/turnpike.js", &[]).0, 404);
    assert_eq!(post(off, b"{}", Some("x")), 404);
}

#[test]
fn signed_report_is_counted_with_its_labels_and_time_to_connect() {
    let http = server(true);
    let u = live_user("alice");
    let b = body(&u, "connected", "relay_udp");
    assert_eq!(
        post(http, &b, Some(&sign(&b, &rest_password(SECRET, &u)))),
        204
    );
    // An unknown label value is counted, as `other`.
    let u = live_user("bob");
    let b = body(&u, "connected", "relay_quic");
    assert_eq!(
        post(http, &b, Some(&sign(&b, &rest_password(SECRET, &u)))),
        204
    );
    let m = scrape(http);
    assert_eq!(connections(&m, "connected", "relay_udp"), 1.0);
    assert_eq!(connections(&m, "connected", "other"), 1.0);
    assert_eq!(
        metric(
            &m,
            "turnpike_client_connect_seconds_count{path=\"relay_udp\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &m,
            "turnpike_client_connect_seconds_sum{path=\"relay_udp\"}"
        ),
        0.42
    );
}

#[test]
fn bad_reports_are_refused_counted_and_move_no_connection_count() {
    let http = server(true);
    let u = live_user("carol");
    let good = body(&u, "failed", "srflx");
    let key = rest_password(SECRET, &u);
    let expired = format!("{}:carol", unix_now() - 5);
    let stale = body(&expired, "failed", "srflx");
    let big = vec![b' '; 5000];
    let cases: [(&str, &[u8], Option<String>, u16); 5] = [
        ("unsigned", &good, None, 401),
        ("bad_signature", &good, Some(sign(&good, "wrong-key")), 401),
        (
            "expired",
            &stale,
            Some(sign(&stale, &rest_password(SECRET, &expired))),
            401,
        ),
        ("too_large", &big, Some(sign(&big, &key)), 413),
        ("malformed", b"{\"v\":1}", Some("eA==".into()), 400),
    ];
    for (reason, b, sig, status) in &cases {
        assert_eq!(post(http, b, sig.as_deref()), *status, "{reason}");
        assert_eq!(refused(&scrape(http), reason), 1.0, "{reason}");
    }
    let m = scrape(http);
    assert_eq!(connections(&m, "failed", "srflx"), 0.0);
    // Over one user's rate: its burst (4) is counted, the rest refused with 429.
    let statuses: Vec<u16> = (0..6)
        .map(|_| post(http, &good, Some(&sign(&good, &key))))
        .collect();
    assert_eq!(statuses, [204, 204, 204, 204, 429, 429]);
    let m = scrape(http);
    assert_eq!(connections(&m, "failed", "srflx"), 4.0);
    assert_eq!(refused(&m, "rate_limited"), 2.0);
}
