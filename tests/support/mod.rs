//! Shared by the in-process integration tests: start turnpike, a raw STUN/TURN client
//! that shows error codes, an echo peer, and a minimal HTTP GET.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::config::Config;
use turnpike::runtime::Node;

pub const SECRET: &str = "integration-secret";

pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts turnpike on a free loopback port; `server_extra` goes into [server], `extra`
/// (further sections) at the end. `allow_loopback` adds 127.0.0.0/8 to the peer allow
/// list, as only a test should.
pub fn start_with(
    allow_loopback: bool,
    ports: &str,
    server_extra: &str,
    extra: &str,
) -> (Arc<Node>, SocketAddr, Config) {
    let port = free_udp_port();
    let allow = if allow_loopback {
        "allow = [\"127.0.0.0/8\"]"
    } else {
        ""
    };
    let cfg = Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 2\n{server_extra}\n\
         [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\n\
         [auth]\nsecrets = [\"{SECRET}\"]\n[peers]\n{allow}\n{extra}\n"
    ))
    .unwrap();
    let relay = Node::start(
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec![SECRET.to_owned()]).unwrap(),
        Default::default(),
    )
    .unwrap();
    (
        Arc::new(relay),
        format!("127.0.0.1:{port}").parse().unwrap(),
        cfg,
    )
}

pub fn start(allow_loopback: bool, ports: &str) -> (Arc<Node>, SocketAddr) {
    let (r, a, _) = start_with(allow_loopback, ports, "", "");
    (r, a)
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A UDP echo peer on loopback, answering every datagram, for a bounded time.
pub fn echo_peer() -> SocketAddr {
    echo_peer_at("127.0.0.1:0")
}

pub fn echo_peer_at(local: &str) -> SocketAddr {
    let s = UdpSocket::bind(local).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let addr = s.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf) {
            let _ = s.send_to(&buf[..n], from);
        }
    });
    addr
}

/// GET `path` from `addr` with optional extra headers; returns (status, headers, body).
pub fn http_get(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    http_request(addr, method, path, headers, b"")
}

/// `http_get` with a request body.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before reading all of a large body.
    let _ = s.write_all(body);
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// A request of `method` with `attrs`, signed for realm "turnpike" when `auth` gives
/// (username, nonce, password).
pub fn build_request(
    method: Method,
    attrs: &[Box<dyn Setter>],
    auth: Option<(&str, &str, &str)>,
) -> Message {
    let sign = auth.map(|(username, nonce, password)| turnpike::testkit::Signer {
        username,
        password,
        realm: "turnpike",
        nonce,
    });
    let refs: Vec<&dyn Setter> = attrs.iter().map(|a| a.as_ref()).collect();
    turnpike::testkit::request(method, &refs, sign)
}

pub use turnpike::testkit::error_code;

/// A raw STUN client: does the 401 round trip itself so the tests can see error codes.
pub struct RawClient {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub nonce: String,
    username: String,
    password: String,
}

impl RawClient {
    pub fn new(server: SocketAddr, username: String, password: String) -> RawClient {
        let local = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let sock = UdpSocket::bind(local).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut c = RawClient {
            sock,
            server,
            nonce: String::new(),
            username,
            password,
        };
        let r = c.exchange(METHOD_ALLOCATE, vec![], false);
        assert_eq!(error_code(&r), Some(401));
        c.nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
        c
    }

    pub fn exchange(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>, sign: bool) -> Message {
        let auth = sign.then_some((
            self.username.as_str(),
            self.nonce.as_str(),
            self.password.as_str(),
        ));
        let m = build_request(method, &attrs, auth);
        self.sock.send_to(&m.raw, self.server).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = self.sock.recv_from(&mut buf).expect("a response");
        let mut r = Message::new();
        r.raw = buf[..n].to_vec();
        r.decode().unwrap();
        assert_eq!(r.transaction_id, m.transaction_id);
        r
    }

    pub fn allocate(&mut self) -> Message {
        self.exchange(
            METHOD_ALLOCATE,
            vec![Box::new(RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            })],
            true,
        )
    }
}

/// Starts the HTTP endpoint for `relay` on a free port, on its own runtime thread.
pub fn start_http(relay: Arc<Node>, cfg: &turnpike::config::Config) -> SocketAddr {
    let state = turnpike::http::HttpState::new(
        relay,
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec![SECRET.to_owned()]).unwrap(),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            let _ = turnpike::http::serve(l, state, std::future::pending()).await;
        });
    });
    rx.recv().unwrap()
}

/// The value of the series whose line starts with `series` (name and labels).
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
        .rsplit(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}
