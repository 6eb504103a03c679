//! A redirect between two real nodes on loopback: a client that a draining or full node
//! sends elsewhere gets its allocation on the alternate at the first try, signed with
//! what the redirect gave it (libwebrtc's way), from a new source port (a symmetric NAT
//! maps one per destination). The browsers' side of this is tests/browser/redirect.mjs.

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use support::{RawClient, SECRET, build_request, error_code, start_with};
use turn::proto::reqtrans::RequestedTransport;

fn alternate(r: &Message) -> SocketAddr {
    let mut alt = stun::addr::MappedAddress::default();
    alt.get_from_as(r, ATTR_ALTERNATE_SERVER).unwrap();
    SocketAddr::new(alt.ip, alt.port)
}

fn allocate_attrs() -> Vec<Box<dyn Setter>> {
    vec![Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })]
}

/// One request from a fresh socket, as a redirected client sends it to the alternate.
fn from_new_port(server: SocketAddr, m: &Message) -> Message {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    sock.send_to(&m.raw, server).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("a response");
    let mut r = Message::new();
    r.raw = buf[..n].to_vec();
    r.decode().unwrap();
    r
}

#[test]
fn signed_allocate_redirected_by_a_draining_node_succeeds_on_the_alternate_with_its_nonce() {
    let (_relay_b, b, _) = start_with(false, "58400-58449", "", "");
    let (relay_a, a, _) = start_with(false, "58450-58499", &format!("alternate = [\"{b}\"]"), "");
    let (u, p) = turnpike::auth::mint_credential(SECRET, "redirected", 600, support::unix_now());
    // The client got its nonce from A before the drain began; its signed Allocate is
    // answered with a signed 300 that carries REALM and a NONCE.
    let mut c = RawClient::new(a, u.clone(), p.clone());
    relay_a.drain(true);
    let r = c.exchange(METHOD_ALLOCATE, allocate_attrs(), true);
    assert_eq!(error_code(&r), Some(300));
    assert_eq!(alternate(&r), b);
    let nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
    let realm = TextAttribute::get_from_as(&r, ATTR_REALM).unwrap().text;
    assert_eq!(realm, "turnpike");
    // libwebrtc signs its Allocate to B with that nonce at once, from a new port: B, which
    // shares A's secret, accepts it (a 438 here is fatal in Chromium).
    let m = build_request(METHOD_ALLOCATE, &allocate_attrs(), Some((&u, &nonce, &p)));
    let r = from_new_port(b, &m);
    assert_eq!(error_code(&r), None, "{r}");
}
