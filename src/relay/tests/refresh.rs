//! Refresh (RFC 8656 §8).

use super::*;

#[test]
fn refresh_with_zero_lifetime_deletes_allocation() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    let r = h.request(c, METHOD_REFRESH, attrs, Some(&creds));
    assert_success(&r);
    assert_eq!(lifetime(&r), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended[0].reason, EndReason::Deleted);
    assert!(h.shell.bound.is_empty());
}

#[test]
fn refresh_extends_the_lifetime() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.advance(Duration::from_secs(500));
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(lifetime(&r), 600);
    h.advance(Duration::from_secs(500));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(101));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn refresh_by_another_user_gets_441() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("mallory");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    let r = h.request(c, METHOD_REFRESH, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(441));
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn refresh_without_allocation_gets_437() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(437));
}

#[test]
fn refresh_with_expired_credential_gets_401_and_allocation_runs_out() {
    // The strict policy: today's lenient default is tested in tests/expiry.rs.
    let mut cfg = config();
    cfg.auth = Authenticator::new(REALM, vec![SECRET.into()], &[], [9; 32], 600)
        .with_expiry_policy(crate::auth::ExpiryPolicy {
            strict: true,
            ..Default::default()
        });
    let mut h = harness_with(cfg);
    let c = h.client(1);
    let username = format!("{}:bob", h.unix + 100);
    let creds = Creds {
        password: rest_password(SECRET, &username),
        username,
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    h.advance(Duration::from_secs(200));
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(401));
}
