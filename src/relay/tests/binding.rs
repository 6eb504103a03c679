//! STUN Binding (RFC 8489 §5): answered without authentication.

use super::*;

#[test]
fn binding_request_gets_xor_mapped_address_without_auth() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    let r = h.exchange(c, &m);
    assert_eq!(r.typ, BINDING_SUCCESS);
    let raw = r.get(ATTR_XORMAPPED_ADDRESS).unwrap();
    assert_eq!(decode_xor_address(&raw, &r.transaction_id.0), Some(c.addr));
    assert!(
        !r.contains(ATTR_FINGERPRINT),
        "no FINGERPRINT unless the request had one"
    );
    assert!(!r.contains(ATTR_MESSAGE_INTEGRITY));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn binding_response_has_fingerprint_when_request_had_one() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.request(c, METHOD_BINDING, vec![], None);
    assert_eq!(r.typ, BINDING_SUCCESS);
    FINGERPRINT.check(&r).unwrap();
}

#[test]
fn request_with_corrupt_fingerprint_is_dropped_silently() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = h.build(c, METHOD_BINDING, vec![], None, None);
    let n = m.raw.len();
    m.raw[n - 1] ^= 0xff;
    assert!(h.send_raw(c, &m.raw).is_empty());
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    m.add(AttrType(0x0033), &[1, 2, 3, 4]);
    m.add(AttrType(0x8077), &[1, 2, 3, 4]); // comprehension-optional: ignored
    let r = h.exchange(c, &m);
    assert_eq!(error_code(&r), Some(420));
    let raw = r.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap();
    assert_eq!(raw, vec![0x00, 0x33]);
}

#[test]
fn unknown_request_method_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    // CONNECT (RFC 6062) belongs to TCP allocations, which this server does not offer.
    let r = h.request(c, METHOD_CONNECT, vec![], None);
    assert_eq!(error_code(&r), Some(400));
}

#[test]
fn malformed_and_truncated_packets_never_panic_or_answer() {
    let mut h = harness();
    let c = h.client(1);
    let good = h.build(c, METHOD_BINDING, vec![], None, None).raw;
    for cut in 0..good.len() {
        assert!(h.send_raw(c, &good[..cut]).is_empty(), "cut {cut}");
    }
    // Arbitrary bytes are the proptest property `any_bytes_are_answered_or_dropped`
    // (src/relay/proptests.rs) and the `decode` fuzz target.
    assert_eq!(h.server.allocation_count(), 0);
}
