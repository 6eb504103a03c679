//! TURN over TCP and TLS (RFC 8656 §3.1 stream framing) over real sockets: allocation,
//! ChannelData with padding both ways, allocation ended with the connection, idle and
//! garbage connections closed.

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
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

fn allocations(relay: &turnpike::runtime::Relay) -> u64 {
    relay
        .snapshots()
        .iter()
        .map(|s| s.allocations.iter().flatten().sum::<u64>())
        .sum()
}

fn tcp_connections(relay: &turnpike::runtime::Relay) -> u64 {
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
    let dir = std::env::temp_dir().join(format!("turnpike-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
    let _ = std::fs::remove_dir_all(&dir);
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
