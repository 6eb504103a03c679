//! The relay must not become a way into the server itself: a Binding relayed to our own
//! listener is refused (even with loopback allowed), while two allocations on the same
//! server still talk relay-to-relay, as two browsers relaying through it do.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use stun::message::*;
use support::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turnpike::auth::mint_credential;
use turnpike::testkit::send_indication;

fn client(server: SocketAddr, user: &str) -> (RawClient, SocketAddr) {
    let (u, p) = mint_credential(SECRET, user, 600, unix_now());
    let mut c = RawClient::new(server, u, p);
    let r = c.allocate();
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
    let mut relayed = RelayedAddress::default();
    relayed.get_from(&r).unwrap();
    (c, SocketAddr::new(relayed.ip, relayed.port))
}

fn peer(p: SocketAddr) -> Box<dyn Setter> {
    Box::new(PeerAddress {
        ip: p.ip(),
        port: p.port(),
    })
}

/// The next datagram `c` receives within `wait`, if any.
fn recv(c: &RawClient, wait: Duration) -> Option<Vec<u8>> {
    c.sock.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 2048];
    c.sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
}

#[test]
fn binding_relayed_to_our_own_listener_is_refused_but_relay_to_relay_works() {
    let (relay, server) = start(true, "53600-53699");
    let (mut a, relay_a) = client(server, "alice");
    let (mut b, relay_b) = client(server, "bob");

    // The listener's IP is loopback, which this test config allows; still refused.
    let r = a.exchange(
        METHOD_CHANNEL_BIND,
        vec![Box::new(ChannelNumber(0x4001)), peer(server)],
        true,
    );
    assert_eq!(error_code(&r), Some(403), "ChannelBind to our own listener");
    // A permission is per IP, so it is granted; the Send towards the listener port is not.
    let r = a.exchange(METHOD_CREATE_PERMISSION, vec![peer(server)], true);
    assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    let binding = build_request(METHOD_BINDING, &[], None);
    a.sock
        .send_to(&send_indication(server, &binding.raw), server)
        .unwrap();
    assert_eq!(
        recv(&a, Duration::from_millis(500)),
        None,
        "a Binding relayed to the listener must not be answered"
    );

    // Relay-to-relay: each permits the other's relayed address.
    for (c, other) in [(&mut a, relay_b), (&mut b, relay_a)] {
        let r = c.exchange(METHOD_CREATE_PERMISSION, vec![peer(other)], true);
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE);
    }
    a.sock
        .send_to(&send_indication(relay_b, b"hello b"), server)
        .unwrap();
    let got = recv(&b, Duration::from_secs(3)).expect("b receives a Data indication");
    let mut m = Message::new();
    m.raw = got;
    m.decode().unwrap();
    let mut data = Data::default();
    data.get_from(&m).unwrap();
    assert_eq!(data.0, b"hello b");
    let mut from = PeerAddress::default();
    from.get_from(&m).unwrap();
    assert_eq!(SocketAddr::new(from.ip, from.port), relay_a);
    relay.shutdown();
}
