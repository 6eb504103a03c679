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
use support::{
    RawClient, SECRET, StreamClient, TestCert, build_request, error_code, free_tcp_port, start_with,
};
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

/// A TLS client that a draining node redirects gets ALTERNATE-SERVER (the alternate's TLS
/// listener) and ALTERNATE-DOMAIN (the name on its certificate): verified against that
/// name the handshake passes and the Allocate succeeds; against the bare address it fails,
/// which is all a client had before ALTERNATE-DOMAIN.
#[test]
fn tls_client_redirected_by_300_verifies_the_alternate_by_alternate_domain() {
    let (cert_a, cert_b) = (
        TestCert::for_names("alt-tls-a", &["turn-a.test"]),
        TestCert::for_names("alt-tls-b", &["turn-b.test"]),
    );
    let (tls_a, tls_b) = (free_tcp_port(), free_tcp_port());
    let listen = |p: u16| format!("listen_tls = [\"127.0.0.1:{p}\"]\n");
    let (_relay_b, _, _) = start_with(false, "58700-58749", &listen(tls_b), &cert_b.config());
    let alt = format!(
        "{}alternate_tls = [{{ address = \"127.0.0.1:{tls_b}\", domain = \"turn-b.test\" }}]\n",
        listen(tls_a)
    );
    let (relay_a, _, _) = start_with(false, "58750-58799", &alt, &cert_a.config());
    relay_a.drain(true);
    let (u, p) =
        turnpike::auth::mint_credential(SECRET, "tls-redirected", 600, support::unix_now());
    let a = SocketAddr::from(([127, 0, 0, 1], tls_a));
    let mut c = StreamClient::new(cert_a.client_for(a, "turn-a.test"), u.clone(), p.clone());
    let r = c.request(METHOD_ALLOCATE, allocate_attrs(), false);
    assert_eq!(error_code(&r), Some(300));
    let to = alternate(&r);
    assert_eq!(to, SocketAddr::from(([127, 0, 0, 1], tls_b)));
    let domain = r
        .get(ATTR_ALTERNATE_DOMAIN)
        .expect("ALTERNATE-DOMAIN on a TLS redirect");
    let domain = String::from_utf8(domain).unwrap();
    assert_eq!(domain, "turn-b.test");

    // Verified against the bare address, B's certificate does not pass.
    let mut by_ip = cert_b.client_for(to, "127.0.0.1");
    assert!(
        std::io::Write::write_all(&mut by_ip, &build_request(METHOD_BINDING, &[], None).raw)
            .and_then(|_| std::io::Write::flush(&mut by_ip))
            .and_then(|_| std::io::Read::read(&mut by_ip, &mut [0u8; 64]))
            .is_err()
    );
    // Verified against ALTERNATE-DOMAIN, it does, and B allocates.
    let mut b = StreamClient::new(cert_b.client_for(to, &domain), u, p);
    let r = b.request(METHOD_ALLOCATE, allocate_attrs(), false);
    assert_eq!(error_code(&r), Some(401));
    b.nonce = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
    let r = b.request(METHOD_ALLOCATE, allocate_attrs(), true);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
}
