//! TURN over TCP and TLS (RFC 8656 §3.1 stream framing) over real sockets: allocation,
//! ChannelData with padding both ways, allocation ended with the connection, idle and
//! garbage connections closed; plain STUN on a TLS listener, failed handshakes counted in
//! /metrics, the handshake deadline, trickling clients and the per-IP connection limit.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use stun::message::*;
use support::*;

fn creds() -> (String, String) {
    turnpike::auth::mint_credential(SECRET, "tcp", 600, unix_now())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn allocations(relay: &turnpike::runtime::Node) -> u64 {
    relay
        .snapshots()
        .iter()
        .map(|s| s.allocations.iter().flatten().sum::<u64>())
        .sum()
}

fn tcp_connections(relay: &turnpike::runtime::Node) -> u64 {
    let tcp = turnpike::relay::Transport::Tcp as usize;
    relay.snapshots().iter().map(|s| s.connections[tcp]).sum()
}

#[test]
fn tcp_client_relays_padded_channel_data_and_closing_ends_the_allocation() {
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55000-55099",
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]"),
        "",
    );
    let echo = echo_peer();
    let (username, password) = creds();
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut c = StreamClient::new(stream, username, password);
    c.allocate_and_bind(echo);
    c.echo_channel_data(30);
    assert_eq!(allocations(&relay), 1);
    assert_eq!(tcp_connections(&relay), 1);
    drop(c);
    wait_until("the allocation to end with its connection", || {
        allocations(&relay) == 0 && tcp_connections(&relay) == 0
    });
    relay.shutdown();
}

#[test]
fn tls_client_allocates_and_relays() {
    let cert = TestCert::new("tls");
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55100-55199",
        &format!("listen_tls = [\"127.0.0.1:{port}\"]"),
        &cert.config(),
    );
    let tls = cert.client(port, true);
    let echo = echo_peer();
    let (username, password) = creds();
    let mut c = StreamClient::new(tls, username, password);
    // A Binding answer first: STUN over TLS works before any allocation.
    let r = c.request(METHOD_BINDING, vec![], false);
    assert_eq!(r.typ, BINDING_SUCCESS);
    c.allocate_and_bind(echo);
    c.echo_channel_data(20);
    // A burst of several TLS records, written before reading anything back. (Kept under
    // the echo peer's default UDP receive buffer: 40 x 1200 B; more would be lost there,
    // not in turnpike.)
    let mut burst = Vec::new();
    for i in 0..40u16 {
        burst.extend_from_slice(&[0x40, 0x00, 0x04, 0xB0]);
        burst.extend(std::iter::repeat_n((i % 251) as u8, 1200));
    }
    c.s.write_all(&burst).unwrap();
    c.s.flush().unwrap();
    let mut back = 0;
    while back < 40 {
        let f = c.read_frame();
        assert_eq!(f.len(), 1204);
        back += 1;
    }
    relay.shutdown();
}

#[test]
fn idle_connection_without_allocation_is_closed_and_garbage_too() {
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55200-55299",
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]\nidle_timeout = \"1s\""),
        "",
    );
    let mut idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let mut b = [0u8; 1];
    assert_eq!(idle.read(&mut b).unwrap_or(0), 0, "server closes it");
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after {waited:?}"
    );

    let mut junk = TcpStream::connect(("127.0.0.1", port)).unwrap();
    junk.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    junk.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let t = Instant::now();
    assert_eq!(junk.read(&mut b).unwrap_or(0), 0);
    assert!(
        t.elapsed() < Duration::from_millis(900),
        "garbage closes at once"
    );
    relay.shutdown();
}

/// `turnpike_tls_handshake_failures_total{reason}` as scraped from /metrics.
fn tls_failures(http: SocketAddr, reason: &str) -> u64 {
    scrape(
        http,
        &format!("turnpike_tls_handshake_failures_total{{reason=\"{reason}\"}}"),
    )
}

/// A Binding over a stream, answered?
fn stream_binding(s: &mut TcpStream) -> bool {
    let m = build_request(METHOD_BINDING, &[], None);
    if s.write_all(&m.raw).is_err() {
        return false;
    }
    let mut head = [0u8; 20];
    if s.read_exact(&mut head).is_err() {
        return false;
    }
    let mut body = vec![0u8; u16::from_be_bytes([head[2], head[3]]) as usize];
    s.read_exact(&mut body).is_ok() && head[8..20] == m.raw[8..20]
}

#[test]
fn plain_stun_on_the_tls_port_relays_and_failed_handshakes_are_counted() {
    let cert = TestCert::new("tls-plain");
    let port = free_udp_port();
    let (relay, _, cfg) = start_with(
        true,
        "55300-55399",
        &format!("listen_tls = [\"127.0.0.1:{port}\"]"),
        &cert.config(),
    );
    let http = start_http(relay.clone(), &cfg);

    // A client that speaks TURN over plain TCP to the TLS port (libnice does) relays.
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let (username, password) = creds();
    let mut plain = StreamClient::new(stream, username, password);
    plain.allocate_and_bind(echo_peer());
    plain.echo_channel_data(20);
    // Counted as what it is: a TCP connection.
    assert_eq!(tcp_connections(&relay), 1);

    // A TLS client on the same port still gets TLS.
    let (username, password) = creds();
    let mut tls = StreamClient::new(cert.client(port, true), username, password);
    let r = tls.request(METHOD_BINDING, vec![], false);
    assert_eq!(r.typ, BINDING_SUCCESS);

    // Garbage: a TLS record header with a nonsense handshake, then a first byte that is
    // neither TLS nor STUN. Both closed, both counted as bad_client_hello.
    for junk in [
        &[0x16, 0x03, 0x01, 0x00, 0x04, 0xEE, 0xEE, 0xEE, 0xEE][..],
        &[0xFF, 0x00, 0x00, 0x00][..],
    ] {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(junk).unwrap();
        assert!(closed_by_server(&mut s), "{junk:02x?} closed");
    }
    // A client that does not trust the certificate: its alert is counted.
    let mut distrust = cert.client(port, false);
    assert!(
        distrust
            .write_all(b"x")
            .and_then(|_| distrust.flush())
            .is_err()
    );
    drop(distrust);
    wait_until("the failures in /metrics", || {
        tls_failures(http, "bad_client_hello") == 2 && tls_failures(http, "alert") == 1
    });
    assert_eq!(tls_failures(http, "plaintext_refused"), 0);
    assert_eq!(tls_failures(http, "timeout"), 0);
    relay.shutdown();
}

#[test]
fn plaintext_refused_when_disabled_and_slow_handshakes_time_out() {
    let cert = TestCert::new("tls-strict");
    let port = free_udp_port();
    let (relay, _, cfg) = start_with(
        true,
        "55400-55499",
        &format!(
            "listen_tls = [\"127.0.0.1:{port}\"]\ntls_accepts_plain = false\n\
             tls_handshake_timeout = \"1s\"\nidle_timeout = \"30s\""
        ),
        &cert.config(),
    );
    let http = start_http(relay.clone(), &cfg);
    let mut plain = TcpStream::connect(("127.0.0.1", port)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert!(!stream_binding(&mut plain), "plain STUN refused");

    // Half a ClientHello, then nothing: closed after the handshake deadline, not the
    // 30 s idle timeout.
    let mut slow = TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    slow.write_all(&[0x16, 0x03, 0x01, 0x01, 0x00, 0x01])
        .unwrap();
    let t = Instant::now();
    assert!(closed_by_server(&mut slow));
    let waited = t.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );
    wait_until("the failures in /metrics", || {
        tls_failures(http, "plaintext_refused") == 1 && tls_failures(http, "timeout") == 1
    });
    assert_eq!(tls_failures(http, "bad_client_hello"), 0);
    relay.shutdown();
}

#[test]
fn trickling_client_cannot_hold_a_slot_but_whole_messages_keep_one() {
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55500-55599",
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]\nidle_timeout = \"2s\""),
        "",
    );
    // One byte of a large STUN message every second.
    let trickler = std::thread::spawn(move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(950)))
            .unwrap();
        let start = Instant::now();
        let msg = [0x00, 0x01, 0x10, 0x00, 0x21, 0x12, 0xA4, 0x42];
        for i in 0..12 {
            if s.write_all(&msg[i % msg.len()..][..1]).is_err() || closed_by_server(&mut s) {
                return Some(start.elapsed());
            }
        }
        None
    });
    // A client sending a whole Binding every second outlives the idle timeout.
    let mut keeper = TcpStream::connect(("127.0.0.1", port)).unwrap();
    keeper
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    for i in 0..5 {
        assert!(stream_binding(&mut keeper), "keeper answered at {i} s");
        std::thread::sleep(Duration::from_secs(1));
    }
    let closed_after = trickler.join().unwrap();
    assert!(
        closed_after
            .is_some_and(|d| d >= Duration::from_millis(1800) && d < Duration::from_secs(6)),
        "trickler closed after {closed_after:?} (idle_timeout 2s)"
    );
    assert!(stream_binding(&mut keeper), "keeper still open");
    relay.shutdown();
}

/// A TCP connection to `port` from local address `from`.
fn connect_from(from: IpAddr, port: u16) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(from, 0).into()).unwrap();
    s.connect(&SocketAddr::from(([127, 0, 0, 1], port)).into())
        .unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

#[test]
fn one_source_over_the_per_ip_limit_is_refused_while_another_connects() {
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55600-55699",
        &format!("listen_tcp = [\"127.0.0.1:{port}\"]\nmax_connections_per_ip = 3"),
        "",
    );
    let a: IpAddr = "127.0.0.1".parse().unwrap();
    let b: IpAddr = "127.0.0.2".parse().unwrap();
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from(a, port)).collect();
    for (i, s) in held.iter_mut().enumerate() {
        assert!(stream_binding(s), "connection {i} from {a} served");
    }
    let mut over = connect_from(a, port);
    assert!(
        !stream_binding(&mut over),
        "a 4th connection from {a} is refused"
    );
    assert!(closed_by_server(&mut over));
    let per_ip = turnpike::metrics::labels::Refused::PerIp as usize;
    let refused: u64 = relay
        .snapshots()
        .iter()
        .map(|s| s.streams.refused[per_ip])
        .sum();
    assert_eq!(refused, 1, "counted in turnpike_connections_refused_total");
    let mut other = connect_from(b, port);
    assert!(stream_binding(&mut other), "{b} still connects");
    // A slot comes back when a connection closes.
    drop(held.pop());
    wait_until("the freed slot", || {
        stream_binding(&mut connect_from(a, port))
    });
    relay.shutdown();
}
