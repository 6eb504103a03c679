//! The credential-expiry policy (lenient by default, strict on request), deletion with a
//! stale nonce, and the RFC 8489 limits on what a signed request may carry.

use super::*;
use crate::auth::ExpiryPolicy;

/// A core whose nonces last 60 s, with the given expiry policy.
pub(super) fn harness_with_policy(policy: ExpiryPolicy) -> Harness {
    let mut cfg = config();
    cfg.auth =
        Authenticator::new(REALM, vec![SECRET.into()], &[], [9; 32], 60).with_expiry_policy(policy);
    harness_with(cfg)
}

/// A REST credential for `user` that expires `secs` from the harness's now.
pub(super) fn expiring(h: &Harness, user: &str, secs: u64) -> Creds {
    let username = format!("{}:{user}", h.unix + secs);
    Creds {
        password: rest_password(SECRET, &username),
        username,
    }
}

pub(super) fn lifetime_attr(secs: u64) -> Vec<Box<dyn Setter>> {
    vec![Box::new(Lifetime(Duration::from_secs(secs)))]
}

pub(super) fn peer_attrs(p: SocketAddr) -> Vec<Box<dyn Setter>> {
    vec![Box::new(PeerAddress {
        ip: p.ip(),
        port: p.port(),
    })]
}

#[test]
fn expired_credential_keeps_working_on_its_own_allocation() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = expiring(&h, "bob", 20);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    // Past the credential's expiry and past a nonce lifetime: the browser gets 438, takes
    // the fresh nonce and signs again with the credential it has.
    h.advance(Duration::from_secs(90));
    assert_success(&h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds)));
    let p = peer("192.0.2.50:7000");
    assert_success(&h.request(c, METHOD_CREATE_PERMISSION, peer_attrs(p), Some(&creds)));
    assert_success(&h.bind_channel_with(c, &creds, 0x4001, p));
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(
        h.server.counters().auth_failures[AuthError::Expired as usize],
        0
    );
}

#[test]
fn expired_credential_cannot_create_an_allocation() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let (a, b) = (h.client(1), h.client(2));
    let creds = expiring(&h, "bob", 20);
    assert_success(&h.request(a, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    h.advance(Duration::from_secs(30));
    let r = h.request(b, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(
        h.server.counters().auth_failures[AuthError::Expired as usize],
        1
    );
}

#[test]
fn expired_credential_is_refused_from_another_five_tuple() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let (a, b) = (h.client(1), h.client(2));
    let creds = expiring(&h, "bob", 20);
    assert_success(&h.request(a, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    h.advance(Duration::from_secs(30));
    let p = peer("192.0.2.50:7000");
    let r = h.request(b, METHOD_CREATE_PERMISSION, peer_attrs(p), Some(&creds));
    assert_eq!(error_code(&r), Some(401), "not the owner's 5-tuple");
    let r = h.request(b, METHOD_REFRESH, lifetime_attr(0), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(h.server.allocation_count(), 1);
}

/// Allocates with a credential valid for `ttl` s under a session limit of `limit` s,
/// refreshes at 500 s, and checks the allocation is still there at 999 s, gone at 1001 s
/// with reason `max_session`.
fn session_ends_at_1000_s(limit: u64, ttl: u64) -> Harness {
    let policy = ExpiryPolicy {
        max_session_secs: limit,
        ..Default::default()
    };
    let mut h = harness_with_policy(policy);
    let c = h.client(1);
    let creds = expiring(&h, "bob", ttl);
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    h.advance(Duration::from_secs(500));
    assert_success(&h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds)));
    h.advance(Duration::from_secs(499));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(
        h.server.allocation_count(),
        0,
        "refreshed to 1100 s, ends at 1000 s"
    );
    assert_eq!(h.shell.ended[0].reason, EndReason::MaxSession);
    let r = h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    h
}

#[test]
fn allocation_outliving_its_credential_ends_at_the_max_session_duration() {
    let h = session_ends_at_1000_s(1000, 20);
    assert_eq!(
        h.server.counters().allocations_ended[EndReason::MaxSession as usize],
        1
    );
}

#[test]
fn a_valid_credential_is_not_cut_by_the_session_limit() {
    session_ends_at_1000_s(100, 1000);
}

#[test]
fn strict_expiry_refuses_the_expired_credential_and_ends_the_allocation() {
    let policy = ExpiryPolicy {
        strict: true,
        ..Default::default()
    };
    let mut h = harness_with_policy(policy);
    let c = h.client(1);
    let creds = expiring(&h, "bob", 20);
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    h.advance(Duration::from_secs(10));
    assert_success(&h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds)));
    h.advance(Duration::from_secs(11));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended[0].reason, EndReason::CredentialExpired);
    assert!(h.shell.bound.is_empty(), "relay port released");
    let r = h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
}

#[test]
fn static_users_have_no_session_limit() {
    let mut cfg = config();
    cfg.auth = Authenticator::new(
        REALM,
        vec![],
        &[("alice".into(), "alice-pw".into())],
        [9; 32],
        600,
    )
    .with_expiry_policy(ExpiryPolicy {
        strict: true,
        max_session_secs: 10,
        ..Default::default()
    });
    let mut h = harness_with(cfg);
    let c = h.client(1);
    let alice = Creds {
        username: "alice".into(),
        password: "alice-pw".into(),
    };
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&alice)));
    h.advance(Duration::from_secs(500));
    assert_success(&h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&alice)));
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn refresh_zero_with_a_stale_nonce_deletes_the_allocation() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = expiring(&h, "bob", 3600);
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    let stale = h.nonce(c);
    h.advance(Duration::from_secs(61));
    // A refresh that keeps the allocation still needs a fresh nonce.
    let m = h.build(
        c,
        METHOD_REFRESH,
        lifetime_attr(600),
        Some(&creds),
        Some(stale.clone()),
    );
    assert_eq!(error_code(&h.exchange(c, &m)), Some(438));
    // A deletion signed with another key is not honoured.
    let forged = Creds {
        username: creds.username.clone(),
        password: rest_password("another-secret", &creds.username),
    };
    let m = h.build(
        c,
        METHOD_REFRESH,
        lifetime_attr(0),
        Some(&forged),
        Some(stale.clone()),
    );
    assert_eq!(error_code(&h.exchange(c, &m)), Some(438));
    assert_eq!(h.server.allocation_count(), 1);
    let m = h.build(
        c,
        METHOD_REFRESH,
        lifetime_attr(0),
        Some(&creds),
        Some(stale),
    );
    let r = h.exchange(c, &m);
    assert_success(&r);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended[0].reason, EndReason::Deleted);
}

#[test]
fn refresh_zero_with_stale_nonce_and_expired_credential_deletes_too() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = expiring(&h, "bob", 20);
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    let stale = h.nonce(c);
    h.advance(Duration::from_secs(90));
    let m = h.build(
        c,
        METHOD_REFRESH,
        lifetime_attr(0),
        Some(&creds),
        Some(stale),
    );
    assert_success(&h.exchange(c, &m));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn attributes_after_message_integrity_are_ignored() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let mut m = h.build(c, METHOD_CREATE_PERMISSION, vec![], Some(&creds), None);
    // Move FINGERPRINT out of the way, append a peer after MESSAGE-INTEGRITY, re-add it.
    m.raw.truncate(m.raw.len() - 8);
    m.attributes.0.pop();
    m.length -= 8;
    m.write_length();
    let p = peer("192.0.2.50:7000");
    for a in peer_attrs(p) {
        a.add_to(&mut m).unwrap();
    }
    FINGERPRINT.add_to(&mut m).unwrap();
    let r = h.exchange(c, &m);
    // 400 (no peer), not 401: the integrity check passed over the part before it.
    assert_eq!(error_code(&r), Some(400));
    let a = h.server.allocations().next().unwrap();
    assert!(a.permissions.is_empty());
    assert!(
        r.contains(ATTR_FINGERPRINT),
        "answered with FINGERPRINT like the request"
    );
}

#[test]
fn username_longer_than_513_bytes_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    let username = format!("{}:{}", h.unix + 60, "u".repeat(600));
    let nonce = h.nonce(c);
    // Written raw: the stun crate refuses to encode a USERNAME this long.
    let mut m = h.build(c, METHOD_ALLOCATE, Harness::allocate_attrs(), None, None);
    m.raw.truncate(m.raw.len() - 8);
    m.attributes.0.pop();
    m.length -= 8;
    m.write_header();
    m.add(ATTR_USERNAME, username.as_bytes());
    m.add(ATTR_REALM, REALM.as_bytes());
    m.add(ATTR_NONCE, nonce.as_bytes());
    MessageIntegrity::new_long_term_integrity(
        username.clone(),
        REALM.into(),
        rest_password(SECRET, &username),
    )
    .add_to(&mut m)
    .unwrap();
    let r = h.exchange(c, &m);
    assert_eq!(error_code(&r), Some(400));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn rest_expiry_far_in_the_future_gets_401() {
    let mut h = harness();
    let c = h.client(1);
    for expiry in ["253402300799", "9223372036854775808"] {
        let username = format!("{expiry}:bob");
        let creds = Creds {
            password: rest_password(SECRET, &username),
            username,
        };
        let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
        assert_eq!(error_code(&r), Some(401));
    }
    assert_eq!(
        h.server.counters().auth_failures[AuthError::TtlTooLong as usize],
        2
    );
}

fn zero() -> Vec<Box<dyn Setter>> {
    vec![Box::new(Lifetime(Duration::ZERO))]
}

/// The stale-nonce deletion path never looks at the nonce: any string passes, and a
/// Refresh(0) recorded once deletes every later allocation of that 5-tuple + username.
#[test]
fn stale_nonce_deletion_still_needs_a_nonce_we_minted() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = h.creds("bob");
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    let m = h.build(
        c,
        METHOD_REFRESH,
        zero(),
        Some(&creds),
        Some("not-a-nonce-at-all".into()),
    );
    let r = h.exchange(c, &m);
    assert_eq!(
        error_code(&r),
        Some(438),
        "a nonce we never minted must not pass"
    );
}

#[test]
fn recorded_refresh_zero_cannot_be_replayed_against_a_later_allocation() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = h.creds("bob");
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    // The client leaves; an on-path attacker records its Refresh(0) (plain UDP).
    let n = h.nonce(c);
    let recorded = h.build(c, METHOD_REFRESH, zero(), Some(&creds), Some(n));
    assert_success(&h.exchange(c, &recorded));
    // An hour later the same 5-tuple allocates again (NAT mapping / fixed port).
    h.advance(Duration::from_secs(3600));
    assert_success(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)));
    assert_eq!(h.server.allocation_count(), 1);
    // Replayed byte for byte from a spoofed source.
    let r = h.send_raw(c, &recorded.raw);
    assert_eq!(
        h.server.allocation_count(),
        1,
        "replay deleted the allocation: {:?}",
        error_code(&r[0].1)
    );
}
