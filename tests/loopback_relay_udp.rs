//! Integration tests over real UDP sockets on 127.0.0.1: turnpike runs in-process, the
//! clients are the webrtc-rs `turn` crate's client and a small raw STUN client.

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::message::*;
use support::*;
use turn::proto::peeraddr::PeerAddress;
use turnpike::auth::{mint_credential, rest_password};
use webrtc_util::Conn;

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

#[test]
fn two_nodes_sharing_a_secret_accept_the_same_credential() {
    // Scale-out: nodes share nothing but the secret.
    let (a, server_a) = start(true, "52500-52599");
    let (b, server_b) = start(true, "52600-52699");
    let (username, password) = mint_credential(SECRET, "roamer", 600, unix_now());
    for server in [server_a, server_b] {
        let mut c = RawClient::new(server, username.clone(), password.clone());
        let r = c.allocate();
        assert_eq!(
            r.typ.class,
            CLASS_SUCCESS_RESPONSE,
            "{server}: {:?}",
            error_code(&r)
        );
    }
    // Nodes sharing a secret accept each other's nonces (a redirected browser signs its
    // Allocate to the alternate with the nonce the first node gave it); the message
    // integrity is checked all the same, and the nonce is still bound to the client's
    // address (auth::nonce has the unit tests, a node with another secret among them).
    let mut c = RawClient::new(server_a, username, password);
    c.server = server_b;
    assert_eq!(error_code(&c.allocate()), None);
    a.shutdown();
    b.shutdown();
}

/// ADDITIONAL-ADDRESS-FAMILY, the attribute for it (turn::proto has none).
struct AdditionalFamilyIpv6;
impl stun::message::Setter for AdditionalFamilyIpv6 {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(
            turnpike::proto::ATTR_ADDITIONAL_ADDRESS_FAMILY,
            &[0x02, 0, 0, 0],
        );
        Ok(())
    }
}

#[test]
fn dual_stack_allocation_relays_to_ipv4_and_ipv6_peers() {
    let port = std::net::UdpSocket::bind("[::1]:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = turnpike::config::Config::from_toml(&format!(
        "[server]\nlisten_udp = [\"[::1]:{port}\"]\nshards = 1\n\
         [relay]\nipv4 = \"127.0.0.1\"\nipv6 = \"::1\"\nports = \"52700-52799\"\n\
         [auth]\nsecrets = [\"{SECRET}\"]\n\
         [peers]\nallow = [\"127.0.0.0/8\", \"::1/128\"]\n[http]\nenabled = false\n"
    ))
    .unwrap();
    let relay = turnpike::runtime::Node::start(
        &turnpike::settings::Settings::with_secrets(cfg.clone(), vec![SECRET.to_owned()]).unwrap(),
        Default::default(),
    )
    .unwrap();
    let server: SocketAddr = format!("[::1]:{port}").parse().unwrap();
    let (username, password) = mint_credential(SECRET, "dual", 600, unix_now());
    let mut c = RawClient::new(server, username, password);
    let r = c.exchange(
        METHOD_ALLOCATE,
        vec![
            Box::new(turn::proto::reqtrans::RequestedTransport {
                protocol: turn::proto::PROTO_UDP,
            }),
            Box::new(AdditionalFamilyIpv6),
        ],
        true,
    );
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    let relayed: Vec<SocketAddr> = r
        .attributes
        .0
        .iter()
        .filter(|a| a.typ == stun::attributes::ATTR_XOR_RELAYED_ADDRESS)
        .map(|a| turnpike::proto::decode_xor_address(&a.value, &r.transaction_id.0).unwrap())
        .collect();
    assert_eq!(relayed.len(), 2, "{relayed:?}");
    assert!(relayed[0].ip().to_string() == "127.0.0.1" && relayed[1].ip().to_string() == "::1");
    for peer in [echo_peer(), echo_peer_at("[::1]:0")] {
        let p = PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        };
        let r = c.exchange(METHOD_CREATE_PERMISSION, vec![Box::new(p)], true);
        assert_eq!(
            r.typ.class,
            CLASS_SUCCESS_RESPONSE,
            "{peer}: {:?}",
            error_code(&r)
        );
        // A Send indication out through the relay of the peer's family; the echo comes
        // back as a Data indication from that peer.
        let mut m = Message::new();
        m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        m.new_transaction_id().unwrap();
        m.write_header();
        PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to(&mut m)
        .unwrap();
        turn::proto::data::Data(b"dual-stack".to_vec())
            .add_to(&mut m)
            .unwrap();
        c.sock.send_to(&m.raw, server).unwrap();
        let mut buf = [0u8; 1500];
        let (n, _) = c.sock.recv_from(&mut buf).expect("Data indication");
        let mut d = Message::new();
        d.raw = buf[..n].to_vec();
        d.decode().unwrap();
        assert_eq!(d.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
        let from = d.get(stun::attributes::ATTR_XOR_PEER_ADDRESS).unwrap();
        assert_eq!(
            turnpike::proto::decode_xor_address(&from, &d.transaction_id.0),
            Some(peer)
        );
        assert_eq!(d.get(stun::attributes::ATTR_DATA).unwrap(), b"dual-stack");
    }
    relay.shutdown();
}
