//! The HTTP endpoint over real sockets: exact relayed totals in /metrics, gauges back to
//! zero when allocations end, health/readiness, and the credential API.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::ATTR_XOR_RELAYED_ADDRESS;
use stun::message::*;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turnpike::runtime::Node;

#[test]
fn metrics_show_exact_relayed_totals_and_gauges_return_to_zero() {
    let (relay, server, cfg) = start_with(true, "53000-53099", "", "");
    let http = start_http(relay.clone(), &cfg);
    let echo = echo_peer();
    let (user, pass) = turnpike::auth::mint_credential(SECRET, "m", 600, unix_now());
    let mut c = RawClient::new(server, user, pass);
    let r = c.allocate();
    assert!(r.contains(ATTR_XOR_RELAYED_ADDRESS));
    let r = c.exchange(
        METHOD_CHANNEL_BIND,
        vec![
            Box::new(ChannelNumber(0x4000)),
            Box::new(PeerAddress {
                ip: echo.ip(),
                port: echo.port(),
            }),
        ],
        true,
    );
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);

    // 40 ChannelData messages of 1..=40 bytes: 820 payload bytes each way.
    let (packets, bytes) = (40u64, (1..=40u64).sum::<u64>());
    let mut buf = [0u8; 1500];
    for i in 1..=packets as usize {
        let mut cd = vec![0x40, 0x00, 0, i as u8];
        cd.extend(std::iter::repeat_n(7u8, i));
        c.sock.send_to(&cd, server).unwrap();
        let (n, _) = c
            .sock
            .recv_from(&mut buf)
            .expect("echo back as ChannelData");
        assert_eq!(&buf[..n], &cd[..], "echo {i}");
    }

    let (status, head, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/plain"));
    for dir in ["client_to_peer", "peer_to_client"] {
        let l = format!("{{direction=\"{dir}\",transport=\"udp\"}}");
        assert_eq!(
            metric(&text, &format!("turnpike_relayed_packets_total{l}")),
            packets as f64
        );
        assert_eq!(
            metric(&text, &format!("turnpike_relayed_bytes_total{l}")),
            bytes as f64
        );
    }
    let udp4 = "{family=\"ipv4\",transport=\"udp\"}";
    assert_eq!(metric(&text, &format!("turnpike_allocations{udp4}")), 1.0);
    assert_eq!(
        metric(&text, &format!("turnpike_channel_bindings{udp4}")),
        1.0
    );
    assert_eq!(metric(&text, &format!("turnpike_permissions{udp4}")), 1.0);
    assert_eq!(
        metric(
            &text,
            "turnpike_allocations_created_total{transport=\"udp\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "turnpike_requests_total{code=\"200\",method=\"allocate\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "turnpike_requests_total{code=\"401\",method=\"allocate\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &text,
            "turnpike_auth_failures_total{reason=\"no_integrity\"}"
        ),
        1.0
    );

    // Delete the allocation: gauges back to zero, the end counted with its reason.
    let r = c.exchange(
        METHOD_REFRESH,
        vec![Box::new(Lifetime(Duration::ZERO))],
        true,
    );
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (_, _, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(metric(&text, &format!("turnpike_allocations{udp4}")), 0.0);
    assert_eq!(
        metric(&text, &format!("turnpike_channel_bindings{udp4}")),
        0.0
    );
    assert_eq!(metric(&text, &format!("turnpike_permissions{udp4}")), 0.0);
    assert_eq!(
        metric(
            &text,
            "turnpike_allocations_ended_total{reason=\"deleted\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(&text, "turnpike_allocation_lifetime_seconds_count"),
        1.0
    );
    relay.shutdown();
}

#[test]
fn health_and_readiness() {
    let (relay, _server, cfg) = start_with(true, "53100-53199", "", "");
    let http = start_http(relay.clone(), &cfg);
    assert_eq!(http_get(http, "GET", "/healthz", &[]).0, 200);
    assert_eq!(http_get(http, "GET", "/readyz", &[]).0, 200);
    relay.shutdown();
    assert_eq!(http_get(http, "GET", "/readyz", &[]).0, 503);
}

const TOKEN: &str = "bearer-token-for-tests";

fn credential_server() -> (Arc<Node>, SocketAddr, SocketAddr) {
    let (relay, server, cfg) = start_with(
        true,
        "53200-53299",
        "",
        &format!(
            "[http]\ncredentials_token = \"{TOKEN}\"\ncors_origins = [\"https://app.example\"]\n"
        ),
    );
    let http = start_http(relay.clone(), &cfg);
    (relay, server, http)
}

fn json_field(body: &str, key: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v[key].clone()
}

#[test]
fn minted_credential_works_for_a_real_allocate() {
    let (relay, server, http) = credential_server();
    let auth = format!("Bearer {TOKEN}");
    let (status, head, body) = http_get(
        http,
        "GET",
        "/api/v1/credentials?user=carol",
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 200, "{body}");
    assert!(head.contains("cache-control: no-store"));
    let username = json_field(&body, "username").as_str().unwrap().to_owned();
    let password = json_field(&body, "password").as_str().unwrap().to_owned();
    assert!(username.ends_with(":carol"));
    assert_eq!(json_field(&body, "ttl"), 3600);
    let ice = json_field(&body, "iceServers");
    assert_eq!(ice[0]["username"], username.as_str());
    assert_eq!(ice[0]["credential"], password.as_str());
    assert_eq!(
        ice[0]["urls"][0],
        format!("turn:{server}?transport=udp").as_str()
    );
    let mut c = RawClient::new(server, username, password);
    let r = c.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    relay.shutdown();
}

#[test]
fn wrong_or_missing_token_gets_401_and_mints_nothing() {
    let (relay, _server, http) = credential_server();
    for headers in [
        vec![],
        vec![("Authorization", "Bearer wrong-token-wrong-token")],
        vec![("Authorization", TOKEN)],
    ] {
        let (status, head, body) = http_get(http, "GET", "/api/v1/credentials?user=x", &headers);
        assert_eq!(status, 401, "{headers:?}");
        assert!(head.contains("www-authenticate: bearer"));
        assert!(!body.contains("password"));
    }
    relay.shutdown();
}

#[test]
fn expired_minted_credential_is_refused_by_the_relay() {
    let (relay, server, http) = credential_server();
    let auth = format!("Bearer {TOKEN}");
    let (status, _, body) = http_get(
        http,
        "GET",
        "/api/v1/credentials?user=dave&ttl=1",
        &[("Authorization", &auth)],
    );
    assert_eq!(status, 200);
    let username = json_field(&body, "username").as_str().unwrap().to_owned();
    let password = json_field(&body, "password").as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(2100));
    let mut c = RawClient::new(server, username, password);
    assert_eq!(error_code(&c.allocate()), Some(401));
    relay.shutdown();
}

#[test]
fn credential_api_cors_and_input_checks() {
    let (relay, _server, http) = credential_server();
    let auth = format!("Bearer {TOKEN}");
    let (status, head, _) = http_get(
        http,
        "OPTIONS",
        "/api/v1/credentials",
        &[("Origin", "https://app.example")],
    );
    assert_eq!(status, 204);
    assert!(head.contains("access-control-allow-origin: https://app.example"));
    assert!(head.contains("access-control-allow-headers: authorization"));
    let (status, _, _) = http_get(
        http,
        "OPTIONS",
        "/api/v1/credentials",
        &[("Origin", "https://evil.example")],
    );
    assert_eq!(status, 403);
    let (status, head, _) = http_get(
        http,
        "GET",
        "/api/v1/credentials?user=erin",
        &[("Authorization", &auth), ("Origin", "https://app.example")],
    );
    assert_eq!(status, 200);
    assert!(head.contains("access-control-allow-origin: https://app.example"));
    for q in [
        "",
        "?user=",
        "?user=a%20b",
        "?user=x&ttl=0",
        "?user=x&ttl=999999999",
    ] {
        let path = format!("/api/v1/credentials{q}");
        let (status, _, _) = http_get(http, "GET", &path, &[("Authorization", &auth)]);
        assert_eq!(status, 400, "{q}");
    }
    relay.shutdown();
}

#[test]
fn credential_api_is_off_without_a_token() {
    let (relay, _server, cfg) = start_with(true, "53300-53399", "", "");
    let http = start_http(relay.clone(), &cfg);
    assert_eq!(
        http_get(http, "GET", "/api/v1/credentials?user=x", &[]).0,
        404
    );
    relay.shutdown();
}

#[test]
fn relay_port_pool_and_process_metrics_are_exported() {
    // 10 relay ports over 2 shards; no IPv6 relay, so its pool is empty.
    let (relay, server, cfg) = start_with(true, "53900-53909", "", "");
    let http = start_http(relay.clone(), &cfg);
    let (user, pass) = turnpike::auth::mint_credential(SECRET, "p", 600, unix_now());
    let mut c = RawClient::new(server, user, pass);
    assert!(c.allocate().contains(ATTR_XOR_RELAYED_ADDRESS));
    let (_, _, text) = http_get(http, "GET", "/metrics", &[]);
    let v4 = "{family=\"ipv4\"}";
    let v6 = "{family=\"ipv6\"}";
    assert_eq!(
        metric(&text, &format!("turnpike_relay_ports_total{v4}")),
        10.0
    );
    assert_eq!(
        metric(&text, &format!("turnpike_relay_ports_total{v6}")),
        0.0
    );
    assert_eq!(
        metric(&text, &format!("turnpike_relay_ports_in_use{v4}")),
        1.0
    );
    assert_eq!(
        metric(&text, &format!("turnpike_relay_ports_in_use{v6}")),
        0.0
    );
    // The process collector reads /proc/self: a live process has memory and open fds.
    assert!(metric(&text, "process_resident_memory_bytes") > 0.0);
    assert!(metric(&text, "process_open_fds") > 2.0);
    assert!(metric(&text, "process_max_fds") > 0.0);
    assert!(text.contains("\nprocess_cpu_seconds_total "), "{text}");
    assert!(metric(&text, "process_start_time_seconds") > 1.0e9);

    let r = c.exchange(
        METHOD_REFRESH,
        vec![Box::new(Lifetime(Duration::ZERO))],
        true,
    );
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let (_, _, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(
        metric(&text, &format!("turnpike_relay_ports_in_use{v4}")),
        0.0
    );
    relay.shutdown();
}

#[test]
fn a_request_with_an_unknown_method_is_counted_as_other_not_as_a_real_method() {
    let (relay, server, cfg) = start_with(true, "53100-53149", "", "");
    let http = start_http(relay.clone(), &cfg);
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .unwrap();
    // CONNECT (RFC 6062): a method this server does not serve.
    let m = build_request(METHOD_CONNECT, &[], None);
    s.send_to(&m.raw, server).unwrap();
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).unwrap();
    let mut r = Message::new();
    r.raw = buf[..n].to_vec();
    r.decode().unwrap();
    assert_eq!(error_code(&r), Some(400));
    let (status, _, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &text,
            "turnpike_requests_total{code=\"400\",method=\"other\"}"
        ),
        1.0
    );
    assert!(
        !text.contains("method=\"channel_bind\""),
        "no ChannelBind was ever sent:\n{text}"
    );
    relay.shutdown();
}
