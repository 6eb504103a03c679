//! `Request::parse` and `Credentials::parse`, one rule each.

use std::time::Duration;

use stun::integrity::MessageIntegrity;
use stun::message::{CLASS_REQUEST, METHOD_SEND, MessageType, Method, Setter};
use turn::proto::peeraddr::PeerAddress;

use super::*;
use crate::proto::ATTR_ADDITIONAL_ADDRESS_FAMILY;

const UDP: [u8; 4] = [17, 0, 0, 0];

/// A request of `method` with these raw attributes, as the core receives it: encoded,
/// decoded again, and cut after MESSAGE-INTEGRITY.
fn message(method: Method, attrs: &[(AttrType, &[u8])]) -> Message {
    let mut m = Message::new();
    m.set_type(MessageType::new(method, CLASS_REQUEST));
    m.transaction_id.0 = [7; 12];
    m.write_header();
    for (t, v) in attrs {
        if *t == ATTR_MESSAGE_INTEGRITY {
            MessageIntegrity::new_short_term_integrity("key".into())
                .add_to(&mut m)
                .unwrap();
        } else {
            m.add(*t, v);
        }
    }
    let mut d = Message::new();
    d.raw = m.raw.clone();
    d.decode().unwrap();
    crate::proto::ignore_after_integrity(&mut d);
    d
}

fn parse(method: Method, attrs: &[(AttrType, &[u8])]) -> Request {
    Request::parse(&message(method, attrs), 0x4FFF).unwrap()
}

fn allocate(attrs: &[(AttrType, &[u8])]) -> Result<AllocateRequest, Reject> {
    let mut all = vec![(ATTR_REQUESTED_TRANSPORT, &UDP[..])];
    all.extend_from_slice(attrs);
    match parse(METHOD_ALLOCATE, &all) {
        Request::Allocate(r) => r,
        other => panic!("not an Allocate: {other:?}"),
    }
}

fn refresh(attrs: &[(AttrType, &[u8])]) -> RefreshRequest {
    match parse(METHOD_REFRESH, attrs) {
        Request::Refresh(r) => r,
        other => panic!("not a Refresh: {other:?}"),
    }
}

fn bad_request(reason: &'static str) -> Reject {
    Reject::new(StunError::BadRequest, reason)
}

#[test]
fn even_port_with_reserve_bit_asks_for_a_pair() {
    let r = allocate(&[(ATTR_EVEN_PORT, &[0x80])]).unwrap();
    assert_eq!(r.even_port, EvenPort::EvenAndReserveNext);
}

#[test]
fn even_port_without_reserve_bit_asks_for_an_even_port() {
    let r = allocate(&[(ATTR_EVEN_PORT, &[0x00])]).unwrap();
    assert_eq!(r.even_port, EvenPort::Even);
    assert_eq!(allocate(&[]).unwrap().even_port, EvenPort::NotAsked);
    let long = allocate(&[(ATTR_EVEN_PORT, &[0x80, 0])]);
    assert_eq!(long, Err(bad_request("Bad EVEN-PORT")));
}

#[test]
fn unknown_address_family_is_its_own_case() {
    assert_eq!(refresh(&[]).family, RequestedFamily::Absent);
    let v6 = refresh(&[(ATTR_REQUESTED_ADDRESS_FAMILY, &[2, 0, 0, 0])]);
    assert_eq!(v6.family, RequestedFamily::Asked(Family::V6));
    let unknown = refresh(&[(ATTR_REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0])]);
    assert_eq!(unknown.family, RequestedFamily::Unsupported);
    let unreadable = refresh(&[(ATTR_REQUESTED_ADDRESS_FAMILY, &[1])]);
    assert_eq!(unreadable.family, RequestedFamily::Unsupported);
}

#[test]
fn allocate_with_unknown_address_family_is_440() {
    let r = allocate(&[(ATTR_REQUESTED_ADDRESS_FAMILY, &[3, 0, 0, 0])]);
    assert_eq!(r, Err(Reject::of(StunError::AddressFamilyNotSupported)));
    let v4 = allocate(&[(ATTR_REQUESTED_ADDRESS_FAMILY, &[1, 0, 0, 0])]).unwrap();
    assert_eq!(v4.family, Some(Family::V4));
}

#[test]
fn allocate_without_requested_transport_is_400() {
    let Request::Allocate(r) = parse(METHOD_ALLOCATE, &[]) else {
        panic!("not an Allocate");
    };
    assert_eq!(r, Err(bad_request("Missing REQUESTED-TRANSPORT")));
}

#[test]
fn reservation_token_excludes_even_port_and_address_families() {
    let token = (ATTR_RESERVATION_TOKEN, &[1u8; 8][..]);
    assert_eq!(allocate(&[token]).unwrap().reservation_token, Some([1; 8]));
    let conflicting = bad_request("Conflicting attributes");
    assert_eq!(allocate(&[token, (ATTR_EVEN_PORT, &[0])]), Err(conflicting));
    let additional = (ATTR_ADDITIONAL_ADDRESS_FAMILY, &[2u8, 0, 0, 0][..]);
    assert_eq!(allocate(&[token, additional]), Err(conflicting));
    let family = (ATTR_REQUESTED_ADDRESS_FAMILY, &[1u8, 0, 0, 0][..]);
    assert_eq!(allocate(&[family, additional]), Err(conflicting));
    assert!(allocate(&[additional]).unwrap().additional_v6);
}

#[test]
fn additional_address_family_must_be_ipv6() {
    let v4 = allocate(&[(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[1, 0, 0, 0])]);
    assert_eq!(
        v4,
        Err(bad_request("ADDITIONAL-ADDRESS-FAMILY must be IPv6"))
    );
}

#[test]
fn refresh_with_zero_lifetime_deletes() {
    let zero = refresh(&[(ATTR_LIFETIME, &[0, 0, 0, 0])]);
    assert!(zero.deletes());
    let ten = refresh(&[(ATTR_LIFETIME, &[0, 0, 0, 10])]);
    assert_eq!(ten.lifetime, Some(Duration::from_secs(10)));
    assert!(!ten.deletes());
    assert!(!refresh(&[]).deletes());
}

fn xor_peer(addr: &str) -> Vec<u8> {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut m = Message::new();
    m.transaction_id.0 = [7; 12];
    let (ip, port) = (addr.ip(), addr.port());
    PeerAddress { ip, port }.add_to(&mut m).unwrap();
    m.attributes.0[0].value.clone()
}

#[test]
fn create_permission_keeps_every_peer_in_order() {
    let (a, b) = (
        xor_peer("198.51.100.1:1000"),
        xor_peer("[2001:db8::1]:2000"),
    );
    let peers = [
        (ATTR_XOR_PEER_ADDRESS, &a[..]),
        (ATTR_XOR_PEER_ADDRESS, &b[..]),
    ];
    let Request::CreatePermission(Ok(r)) = parse(METHOD_CREATE_PERMISSION, &peers) else {
        panic!("not a valid CreatePermission");
    };
    let want: Vec<SocketAddr> = ["198.51.100.1:1000", "[2001:db8::1]:2000"]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
    assert_eq!(r.peers, want);
    let none = parse(METHOD_CREATE_PERMISSION, &[]);
    let missing = bad_request("Missing or bad XOR-PEER-ADDRESS");
    assert_eq!(none, Request::CreatePermission(Err(missing)));
}

#[test]
fn channel_number_outside_the_range_is_400() {
    let peer = xor_peer("198.51.100.1:1000");
    let bind = |channel: u16, max| {
        let number = [channel.to_be_bytes()[0], channel.to_be_bytes()[1], 0, 0];
        let attrs = [
            (ATTR_CHANNEL_NUMBER, &number[..]),
            (ATTR_XOR_PEER_ADDRESS, &peer[..]),
        ];
        Request::parse(&message(METHOD_CHANNEL_BIND, &attrs), max).unwrap()
    };
    let bad = Request::ChannelBind(Err(bad_request("Bad CHANNEL-NUMBER")));
    assert_eq!(bind(0x3FFF, 0x4FFF), bad);
    assert_eq!(bind(0x5000, 0x4FFF), bad);
    let Request::ChannelBind(Ok(r)) = bind(0x5000, 0x7FFE) else {
        panic!("RFC 5766 numbers accepted when allowed");
    };
    assert_eq!(
        (r.channel, r.peer),
        (0x5000, "198.51.100.1:1000".parse().unwrap())
    );
}

#[test]
fn unknown_comprehension_required_attribute_is_420_before_the_method() {
    let odd = AttrType(0x0031);
    let m = message(METHOD_SEND, &[(odd, &[1, 2, 3, 4])]);
    let e = Request::parse(&m, 0x4FFF).unwrap_err();
    assert_eq!(e, Unreadable::UnknownAttributes(vec![odd]));
    assert_eq!(e.reject().code, StunError::UnknownAttribute);
    // Comprehension-optional ones (0x8000 and up) are ignored.
    assert_eq!(
        parse(METHOD_BINDING, &[(AttrType(0x8031), &[0; 4])]),
        Request::Binding
    );
}

#[test]
fn unknown_method_is_400() {
    let e = Request::parse(&message(METHOD_SEND, &[]), 0x4FFF).unwrap_err();
    assert_eq!(e, Unreadable::UnknownMethod);
    assert_eq!(e.reject(), Reject::of(StunError::BadRequest));
}

const INTEGRITY: (AttrType, &[u8]) = (ATTR_MESSAGE_INTEGRITY, &[]);

fn credentials(attrs: &[(AttrType, &[u8])]) -> Credentials {
    Credentials::parse(&message(METHOD_REFRESH, attrs))
}

#[test]
fn request_without_message_integrity_is_unsigned_whatever_else_it_carries() {
    assert_eq!(credentials(&[]), Credentials::Unsigned);
    let long = [b'u'; 600];
    assert_eq!(
        credentials(&[(ATTR_USERNAME, &long)]),
        Credentials::Unsigned
    );
    assert!(!Credentials::Unsigned.is_signed());
}

const ALICE: [(AttrType, &[u8]); 3] = [
    (ATTR_USERNAME, b"alice"),
    (ATTR_REALM, b"example.org"),
    (ATTR_NONCE, b"n0nce"),
];

#[test]
fn signed_request_carries_username_realm_and_nonce() {
    let c = credentials(&[&ALICE[..], &[INTEGRITY]].concat());
    assert!(c.is_signed());
    let want = Credentials::Signed {
        username: "alice".into(),
        realm: "example.org".into(),
        nonce: "n0nce".into(),
    };
    assert_eq!(c, want);
}

#[test]
fn signed_request_missing_username_realm_or_nonce_is_400() {
    for left_out in 0..ALICE.len() {
        let mut attrs: Vec<_> = ALICE.to_vec();
        attrs.remove(left_out);
        attrs.push(INTEGRITY);
        let c = credentials(&attrs);
        assert_eq!(c, Credentials::Malformed(Reject::of(StunError::BadRequest)));
        assert!(c.is_signed());
    }
}

#[test]
fn username_over_513_bytes_is_400() {
    let signed = |username: &[u8]| {
        credentials(&[
            (ATTR_USERNAME, username),
            (ATTR_REALM, b"r"),
            (ATTR_NONCE, b"n"),
            INTEGRITY,
        ])
    };
    assert!(matches!(signed(&[b'u'; 513]), Credentials::Signed { .. }));
    let too_long = Credentials::Malformed(bad_request("USERNAME too long"));
    assert_eq!(signed(&[b'u'; 514]), too_long);
}

#[test]
fn credentials_after_message_integrity_are_ignored() {
    let attrs = [
        (ATTR_REALM, &b"r"[..]),
        (ATTR_NONCE, b"n"),
        INTEGRITY,
        (ATTR_USERNAME, b"mallory"),
    ];
    let c = credentials(&attrs);
    assert_eq!(c, Credentials::Malformed(Reject::of(StunError::BadRequest)));
}
