//! Long-term authentication (RFC 8489 §9.2): 401/438, nonces, REST and static credentials.

use super::*;

#[test]
fn allocate_without_integrity_gets_401_with_realm_and_nonce() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        TextAttribute::get_from_as(&r, ATTR_REALM).unwrap().text,
        REALM
    );
    assert!(
        !TextAttribute::get_from_as(&r, ATTR_NONCE)
            .unwrap()
            .text
            .is_empty()
    );
    assert!(!r.contains(ATTR_MESSAGE_INTEGRITY));
}

#[test]
fn unauthenticated_requests_leave_no_state() {
    let mut h = harness();
    for i in 0..2000u16 {
        let c = h.client(i);
        let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
        assert_eq!(error_code(&r), Some(401));
    }
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.server.pending.is_empty() && h.server.by_client.is_empty());
    assert!(h.server.held.is_empty() && h.server.reservations.is_empty());
    assert_eq!(h.server.cfg.quotas.in_use(), 0);
    assert_eq!(h.server.counters().auth_failures[0], 2000);
}

#[test]
fn allocate_with_wrong_password_gets_401() {
    let mut h = harness();
    let c = h.client(1);
    let mut creds = h.creds("bob");
    creds.password = rest_password("another-secret", &creds.username);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert!(TextAttribute::get_from_as(&r, ATTR_NONCE).is_ok());
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn allocate_with_expired_rest_credential_gets_401() {
    let mut h = harness();
    let c = h.client(1);
    let username = format!("{}:bob", h.unix - 1);
    let creds = Creds {
        password: rest_password(SECRET, &username),
        username,
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        h.server.counters().auth_failures[AuthError::Expired as usize],
        1,
        "counted as expired"
    );
}

#[test]
fn allocate_with_unknown_static_user_gets_401_and_static_user_works() {
    let mut h = harness();
    let c = h.client(1);
    let bad = Creds {
        username: "mallory".into(),
        password: "x".into(),
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&bad));
    assert_eq!(error_code(&r), Some(401));
    let good = Creds {
        username: "alice".into(),
        password: "alice-pw".into(),
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&good));
    assert_success(&r);
}

#[test]
fn allocate_with_stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = harness();
    let c = h.client(1);
    let nonce = h.nonce(c);
    h.now += Duration::from_secs(601);
    h.unix += 601;
    let creds = h.creds("bob");
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(nonce.clone()),
    );
    let r = h.exchange(c, &m);
    assert_eq!(error_code(&r), Some(438));
    let fresh = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
    assert_ne!(fresh, nonce);
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(fresh),
    );
    assert_success(&h.exchange(c, &m));
}

#[test]
fn nonce_from_another_client_address_is_stale() {
    let mut h = harness();
    let (a, b) = (h.client(1), h.client(2));
    let nonce = h.nonce(a);
    let creds = h.creds("bob");
    let m = h.build(
        b,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(nonce),
    );
    assert_eq!(error_code(&h.exchange(b, &m)), Some(438));
}

#[test]
fn integrity_without_username_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
    m.new_transaction_id().unwrap();
    m.write_header();
    MessageIntegrity::new_short_term_integrity("x".into())
        .add_to(&mut m)
        .unwrap();
    assert_eq!(error_code(&h.exchange(c, &m)), Some(400));
}

#[test]
fn credential_minted_with_a_rotated_out_secret_still_works_while_listed() {
    let mut cfg = config();
    cfg.auth = Authenticator::new(
        REALM,
        vec!["new-secret-1".into(), SECRET.into()],
        &[],
        [9; 32],
        600,
    );
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob"); // creds() mints with SECRET, now the second secret
}

#[test]
fn malformed_method_fields_are_answered_after_the_credential_and_allocation_checks() {
    let mut h = harness();
    let c = h.client(1);
    // No REQUESTED-TRANSPORT: unsigned, the challenge comes first; signed, the 400.
    let r = h.request(c, METHOD_ALLOCATE, vec![], None);
    assert_eq!(error_code(&r), Some(401));
    let creds = h.creds("u1");
    let r = h.request(c, METHOD_ALLOCATE, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(400));
    // A channel out of range on a 5-tuple without an allocation: 437 before the 400.
    let bad_channel: Vec<Box<dyn Setter>> = vec![Box::new(ChannelNumber(0x0001))];
    let r = h.request(c, METHOD_CHANNEL_BIND, bad_channel, Some(&creds));
    assert_eq!(error_code(&r), Some(437));
}
