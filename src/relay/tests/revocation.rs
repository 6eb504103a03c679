//! `[cluster]` revocations as the core enforces them: a revoked user gets 401 (reason
//! `revoked`) on Allocate and on requests that lean on the lenient expiry path, until the
//! revocation's `until`; other users and unexpired requests go on.

use std::sync::Arc;

use super::expiry::{expiring, harness_with_policy, lifetime_attr, peer_attrs};
use super::*;
use crate::auth::ExpiryPolicy;
use crate::relay::revocation::{Revocation, Revocations, Subject};

fn revoke(h: &mut Harness, subject: Subject, secs: u64) {
    let until = h.unix + secs;
    let set = Revocations::new(&[Revocation { subject, until }]);
    h.server.set_revocations(Arc::new(set));
}

fn allocate_as(h: &mut Harness, client: u16, creds: &Creds) -> Message {
    let c = h.client(client);
    h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(creds))
}

fn revoked_count(h: &Harness) -> u64 {
    h.server.counters().auth_failures[AuthError::Revoked as usize]
}

#[test]
fn revoked_user_gets_401_on_allocate() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    revoke(&mut h, Subject::User("bob".into()), 60);
    let creds = expiring(&h, "bob", 600);
    let r = allocate_as(&mut h, 1, &creds);
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(revoked_count(&h), 1);
    let alice = expiring(&h, "alice", 600);
    let r = allocate_as(&mut h, 2, &alice);
    assert_success(&r);
}

#[test]
fn revoked_username_gets_401_on_allocate_and_other_names_of_its_user_do_not() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let banned = expiring(&h, "bob", 600);
    revoke(&mut h, Subject::Username(banned.username.clone()), 60);
    let r = allocate_as(&mut h, 1, &banned);
    assert_eq!(error_code(&r), Some(401));
    let other = expiring(&h, "bob", 500);
    let r = allocate_as(&mut h, 2, &other);
    assert_success(&r);
}

#[test]
fn revoked_user_cannot_refresh_past_its_credential_expiry() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    let c = h.client(1);
    let creds = expiring(&h, "bob", 20);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    // Still within its credential: a revocation does not refuse it (ending the
    // allocation is the fleet's separate, explicit step).
    revoke(&mut h, Subject::User("bob".into()), 600);
    assert_success(&h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds)));
    h.advance(Duration::from_secs(30));
    let r = h.request(c, METHOD_REFRESH, lifetime_attr(600), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    let p = peer("192.0.2.50:7000");
    let r = h.request(c, METHOD_CREATE_PERMISSION, peer_attrs(p), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        error_code(&h.bind_channel_with(c, &creds, 0x4001, p)),
        Some(401)
    );
    assert_eq!(revoked_count(&h), 3);
}

#[test]
fn revocation_ends_at_its_until() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    revoke(&mut h, Subject::User("bob".into()), 10);
    let creds = expiring(&h, "bob", 600);
    let r = allocate_as(&mut h, 1, &creds);
    assert_eq!(error_code(&r), Some(401));
    h.advance(Duration::from_secs(10));
    let r = allocate_as(&mut h, 1, &creds);
    assert_success(&r);
}

#[test]
fn lifting_a_revocation_admits_the_user_again() {
    let mut h = harness_with_policy(ExpiryPolicy::default());
    revoke(&mut h, Subject::User("bob".into()), 600);
    h.server.set_revocations(Arc::new(Revocations::default()));
    let creds = expiring(&h, "bob", 600);
    let r = allocate_as(&mut h, 1, &creds);
    assert_success(&r);
}
