//! TURN over TCP and TLS (RFC 8656 §3.1 stream framing) over real sockets: allocation,
//! ChannelData with padding both ways, allocation ended with the connection, idle and
//! garbage connections closed; plain STUN on a TLS listener, failed handshakes counted in
//! /metrics, the handshake deadline, trickling clients and the per-IP connection limit.

mod support;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

/// Frames STUN and ChannelData over any byte stream.
struct StreamClient<S: Read + Write> {
    s: S,
    nonce: String,
    username: String,
    password: String,
}

impl<S: Read + Write> StreamClient<S> {
    fn read_frame(&mut self) -> Vec<u8> {
        let mut head = [0u8; 4];
        self.s.read_exact(&mut head).unwrap();
        let body = u16::from_be_bytes([head[2], head[3]]) as usize;
        let rest = if head[0] & 0xC0 == 0x40 {
            body.div_ceil(4) * 4
        } else {
            16 + body
        };
        let mut v = head.to_vec();
        v.resize(4 + rest, 0);
        self.s.read_exact(&mut v[4..]).unwrap();
        v
    }

    fn request(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>, sign: bool) -> Message {
        let auth = sign.then_some((
            self.username.as_str(),
            self.nonce.as_str(),
            self.password.as_str(),
        ));
        let m = build_request(method, &attrs, auth);
        self.s.write_all(&m.raw).unwrap();
        let mut r = Message::new();
        r.raw = self.read_frame();
        r.decode().unwrap();
        assert_eq!(r.transaction_id, m.transaction_id);
        r
    }

    /// Allocate (with the 401 round trip) and bind channel 0x4000 to `peer`.
    fn allocate_and_bind(&mut self, peer: SocketAddr) {
        let udp: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })];
        let r = self.request(METHOD_ALLOCATE, udp, false);
        assert_eq!(error_code(&r), Some(401));
        self.nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
        let udp: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })];
        let r = self.request(METHOD_ALLOCATE, udp, true);
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
        let bind: Vec<Box<dyn Setter>> = vec![
            Box::new(ChannelNumber(0x4000)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
        ];
        let r = self.request(METHOD_CHANNEL_BIND, bind, true);
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    }

    /// Sends odd-sized payloads as padded ChannelData and checks each echo.
    fn echo_channel_data(&mut self, count: usize) {
        for i in 1..=count {
            let payload: Vec<u8> = (0..i as u8).collect();
            let mut cd = vec![0x40, 0x00, 0, i as u8];
            cd.extend_from_slice(&payload);
            cd.resize(4 + i.div_ceil(4) * 4, 0);
            self.s.write_all(&cd).unwrap();
            let back = self.read_frame();
            assert_eq!(back, cd, "echo {i} with padding");
        }
    }
}

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
    let mut c = StreamClient {
        s: stream,
        nonce: String::new(),
        username,
        password,
    };
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
    let dir = Scratch::new("tls");
    let ck =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "turn.test".into()]).unwrap();
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let port = free_udp_port();
    let (relay, _, _) = start_with(
        true,
        "55100-55199",
        &format!("listen_tls = [\"127.0.0.1:{port}\"]"),
        &format!("[tls]\ncert = {cert_path:?}\nkey = {key_path:?}\n"),
    );
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("turn.test").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let tls = rustls::StreamOwned::new(conn, tcp);
    let echo = echo_peer();
    let (username, password) = creds();
    let mut c = StreamClient {
        s: tls,
        nonce: String::new(),
        username,
        password,
    };
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

/// A self-signed certificate for 127.0.0.1 / turn.test in a fresh directory.
struct TestCert {
    dir: Scratch,
    ck: rcgen::CertifiedKey<rcgen::KeyPair>,
}

impl TestCert {
    fn new(tag: &str) -> TestCert {
        let dir = Scratch::new(tag);
        let ck = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "turn.test".into()])
            .unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        TestCert { dir, ck }
    }

    fn config(&self) -> String {
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            self.dir.join("cert.pem"),
            self.dir.join("key.pem")
        )
    }

    /// A TLS client that trusts this certificate (or nothing, when `trust` is false).
    fn client(
        &self,
        port: u16,
        trust: bool,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let mut roots = rustls::RootCertStore::empty();
        if trust {
            roots.add(self.ck.cert.der().clone()).unwrap();
        }
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("turn.test").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// `turnpike_tls_handshake_failures_total{reason}` as scraped from /metrics.
fn tls_failures(http: SocketAddr, reason: &str) -> u64 {
    let (status, _, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    let series = format!("turnpike_tls_handshake_failures_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}

/// True when the server closes `s` (EOF or reset) within its read timeout.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
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
    let mut plain = StreamClient {
        s: stream,
        nonce: String::new(),
        username,
        password,
    };
    plain.allocate_and_bind(echo_peer());
    plain.echo_channel_data(20);
    // Counted as what it is: a TCP connection.
    assert_eq!(tcp_connections(&relay), 1);

    // A TLS client on the same port still gets TLS.
    let (username, password) = creds();
    let mut tls = StreamClient {
        s: cert.client(port, true),
        nonce: String::new(),
        username,
        password,
    };
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
