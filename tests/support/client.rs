//! A raw STUN/TURN client that shows error codes, and a UDP echo peer.

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::testkit::error_code;

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
        // Loopback servers from loopback; others (in a namespace) from any address.
        let local = match (server.is_ipv6(), server.ip().is_loopback()) {
            (true, true) => "[::1]:0",
            (true, false) => "[::]:0",
            (false, true) => "127.0.0.1:0",
            (false, false) => "0.0.0.0:0",
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

/// Permission for `peer`, then one Send indication that must come back as a Data
/// indication (the echo peer answers).
pub fn relays(c: &mut RawClient, peer: SocketAddr) -> bool {
    let r = c.exchange(
        METHOD_CREATE_PERMISSION,
        vec![Box::new(turn::proto::peeraddr::PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })],
        true,
    );
    if error_code(&r).is_some() {
        return false;
    }
    sends_through(c, peer)
}

/// One Send indication to `peer` (permission already there) that must come back as a
/// Data indication (the echo peer answers).
pub fn sends_through(c: &mut RawClient, peer: SocketAddr) -> bool {
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
    m.new_transaction_id().unwrap();
    m.write_header();
    turn::proto::peeraddr::PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
    .add_to(&mut m)
    .unwrap();
    turn::proto::data::Data(b"drain-probe".to_vec())
        .add_to(&mut m)
        .unwrap();
    c.sock.send_to(&m.raw, c.server).unwrap();
    let mut buf = [0u8; 1500];
    match c.sock.recv_from(&mut buf) {
        Ok((n, _)) => buf[..n].windows(11).any(|w| w == b"drain-probe"),
        Err(_) => false,
    }
}
