//! TURN over byte streams for the TCP/TLS tests: a client that frames STUN and
//! ChannelData over any stream, a self-signed test certificate with its TLS client, and
//! what the server did to a connection or counted in /metrics.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::testkit::error_code;

use super::client::build_request;
use super::http::http_get;
use super::scratch::Scratch;

/// Frames STUN and ChannelData over any byte stream.
pub struct StreamClient<S: Read + Write> {
    pub s: S,
    pub nonce: String,
    username: String,
    password: String,
}

impl<S: Read + Write> StreamClient<S> {
    pub fn new(s: S, username: String, password: String) -> StreamClient<S> {
        StreamClient {
            s,
            nonce: String::new(),
            username,
            password,
        }
    }

    pub fn read_frame(&mut self) -> Vec<u8> {
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

    pub fn request(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>, sign: bool) -> Message {
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
    pub fn allocate_and_bind(&mut self, peer: SocketAddr) {
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
    pub fn echo_channel_data(&mut self, count: usize) {
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

/// A self-signed certificate for 127.0.0.1 / turn.test in a fresh directory.
pub struct TestCert {
    pub dir: Scratch,
    pub ck: rcgen::CertifiedKey<rcgen::KeyPair>,
}

impl TestCert {
    pub fn new(tag: &str) -> TestCert {
        Self::for_names(tag, &["127.0.0.1", "turn.test"])
    }

    /// A self-signed certificate for exactly `names`.
    pub fn for_names(tag: &str, names: &[&str]) -> TestCert {
        let dir = Scratch::new(tag);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let ck = rcgen::generate_simple_self_signed(names).unwrap();
        std::fs::write(dir.join("cert.pem"), ck.cert.pem()).unwrap();
        std::fs::write(dir.join("key.pem"), ck.signing_key.serialize_pem()).unwrap();
        TestCert { dir, ck }
    }

    pub fn config(&self) -> String {
        format!(
            "[tls]\ncert = {:?}\nkey = {:?}\n",
            self.dir.join("cert.pem"),
            self.dir.join("key.pem")
        )
    }

    /// A TLS client that trusts this certificate (or nothing, when `trust` is false).
    pub fn client(
        &self,
        port: u16,
        trust: bool,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.client_for(addr, if trust { "turn.test" } else { "" })
    }

    /// A TLS client to `addr` that trusts this certificate and verifies it for `name`
    /// (an empty name: trusts nothing, verifying "turn.test").
    pub fn client_for(
        &self,
        addr: SocketAddr,
        name: &str,
    ) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        let trust = !name.is_empty();
        let name = if trust { name } else { "turn.test" };
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
        let name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }
}

/// True when the server closes `s` (EOF or reset) within its read timeout.
pub fn closed_by_server(s: &mut TcpStream) -> bool {
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

/// The value of one series (`name{labels}`) as scraped from /metrics.
pub fn scrape(http: SocketAddr, series: &str) -> u64 {
    let (status, _, text) = http_get(http, "GET", "/metrics", &[]);
    assert_eq!(status, 200);
    let prefix = format!("{series} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
        .parse()
        .unwrap()
}
