//! Integration tests over real UDP sockets on 127.0.0.1: turnpike runs in-process, the
//! clients are the webrtc-rs `turn` crate's client and a small raw STUN client.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;
use turnpike::auth::{mint_credential, rest_password};
use turnpike::config::Config;
use turnpike::runtime::Relay;
use webrtc_util::Conn;

const SECRET: &str = "integration-secret";

fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts turnpike on a free loopback port. `allow_loopback` adds 127.0.0.0/8 to the
/// peer allow list, as only a test should.
fn start(allow_loopback: bool, ports: &str) -> (Relay, SocketAddr) {
    let port = free_udp_port();
    let allow = if allow_loopback {
        "allow = [\"127.0.0.0/8\"]"
    } else {
        ""
    };
    let cfg = Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"127.0.0.1:{port}\"]\nshards = 2\n\
         [relay]\nipv4 = \"127.0.0.1\"\nports = \"{ports}\"\n\
         [auth]\nsecrets = [\"{SECRET}\"]\n[peers]\n{allow}\n[http]\n"
    ))
    .unwrap();
    let relay = Relay::start(&cfg, &cfg.auth.secrets).unwrap();
    (relay, format!("127.0.0.1:{port}").parse().unwrap())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A UDP echo peer on loopback, answering every datagram, for a bounded time.
fn echo_peer() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turn_crate_client_relays_to_an_echo_peer_with_a_rest_credential() {
    let (relay, server) = start(true, "52000-52199");
    let echo = echo_peer();
    let (username, password) = mint_credential(SECRET, "itest", 600, unix_now());
    let conn = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let client = turn::client::Client::new(turn::client::ClientConfig {
        stun_serv_addr: server.to_string(),
        turn_serv_addr: server.to_string(),
        username,
        password,
        realm: "turnpike".into(),
        software: String::new(),
        rto_in_ms: 0,
        conn: Arc::new(conn),
        vnet: None,
    })
    .await
    .unwrap();
    client.listen().await.unwrap();
    let mapped = client.send_binding_request().await.unwrap();
    assert_eq!(mapped.ip().to_string(), "127.0.0.1");
    let relay_conn = client.allocate().await.expect("allocate");
    let relayed = relay_conn.local_addr().unwrap();
    assert_eq!(relayed.ip().to_string(), "127.0.0.1");
    assert!((52000..=52199).contains(&relayed.port()));

    // The first sends go as Send indications while the client's ChannelBind is in flight,
    // later ones as ChannelData: both paths must echo.
    let mut buf = vec![0u8; 1500];
    for i in 0..30u32 {
        let msg = format!("ping {i}");
        relay_conn.send_to(msg.as_bytes(), echo).await.unwrap();
        let (n, from) =
            tokio::time::timeout(Duration::from_secs(5), relay_conn.recv_from(&mut buf))
                .await
                .expect("echo within 5 s")
                .unwrap();
        assert_eq!(from, echo);
        assert_eq!(&buf[..n], msg.as_bytes());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    relay_conn.close().await.unwrap();
    client.close().await.unwrap();
    relay.shutdown();
}

/// A raw STUN client: does the 401 round trip itself so the tests can see error codes.
struct RawClient {
    sock: UdpSocket,
    server: SocketAddr,
    nonce: String,
    username: String,
    password: String,
}

fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

impl RawClient {
    fn new(server: SocketAddr, username: String, password: String) -> RawClient {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
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

    fn exchange(&mut self, method: Method, attrs: Vec<Box<dyn Setter>>, sign: bool) -> Message {
        let mut m = Message::new();
        m.set_type(MessageType::new(method, CLASS_REQUEST));
        m.new_transaction_id().unwrap();
        m.write_header();
        for a in &attrs {
            a.add_to(&mut m).unwrap();
        }
        if sign {
            for (t, v) in [
                (ATTR_USERNAME, self.username.clone()),
                (ATTR_REALM, "turnpike".to_string()),
                (ATTR_NONCE, self.nonce.clone()),
            ] {
                TextAttribute::new(t, v).add_to(&mut m).unwrap();
            }
            MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                "turnpike".into(),
                self.password.clone(),
            )
            .add_to(&mut m)
            .unwrap();
        }
        self.sock.send_to(&m.raw, self.server).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = self.sock.recv_from(&mut buf).expect("a response");
        let mut r = Message::new();
        r.raw = buf[..n].to_vec();
        r.decode().unwrap();
        assert_eq!(r.transaction_id, m.transaction_id);
        r
    }

    fn allocate(&mut self) -> Message {
        self.exchange(
            METHOD_ALLOCATE,
            vec![Box::new(RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            })],
            true,
        )
    }
}

#[test]
fn expired_credential_gets_401() {
    let (relay, server) = start(true, "52200-52299");
    let username = format!("{}:late", unix_now() - 10);
    let password = rest_password(SECRET, &username);
    let mut c = RawClient::new(server, username, password);
    assert_eq!(error_code(&c.allocate()), Some(401));
    relay.shutdown();
}

#[test]
fn wrong_password_gets_401_and_right_one_succeeds() {
    let (relay, server) = start(true, "52300-52399");
    let (username, password) = mint_credential(SECRET, "u", 600, unix_now());
    let mut bad = RawClient::new(server, username.clone(), "not-the-password".into());
    assert_eq!(error_code(&bad.allocate()), Some(401));
    let mut good = RawClient::new(server, username, password);
    let r = good.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    relay.shutdown();
}

#[test]
fn default_policy_denies_loopback_and_private_peers_with_403() {
    let (relay, server) = start(false, "52400-52499");
    let (username, password) = mint_credential(SECRET, "u", 600, unix_now());
    let mut c = RawClient::new(server, username, password);
    assert_eq!(c.allocate().typ.class, CLASS_SUCCESS_RESPONSE);
    for peer in [
        "127.0.0.1:9",
        "10.0.0.1:9",
        "192.168.1.1:9",
        "169.254.169.254:80",
    ] {
        let p: SocketAddr = peer.parse().unwrap();
        let r = c.exchange(
            METHOD_CREATE_PERMISSION,
            vec![Box::new(PeerAddress {
                ip: p.ip(),
                port: p.port(),
            })],
            true,
        );
        assert_eq!(error_code(&r), Some(403), "{peer}");
    }
    relay.shutdown();
}
