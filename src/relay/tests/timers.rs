//! Timers come from a deadline heap: the core names the exact next deadline, and expiry
//! touches only what is due.

use super::*;

#[test]
fn poll_timeout_names_the_earliest_deadline_exactly() {
    let mut h = harness();
    let t0 = h.now;
    assert_eq!(h.server.poll_timeout(), None, "nothing to expire");
    for i in 0..50 {
        h.allocate(h.client(i), &format!("u{i}"));
    }
    assert_eq!(h.server.poll_timeout(), Some(t0 + Duration::from_secs(600)));
    h.advance(Duration::from_secs(10));
    let p = peer("192.0.2.50:7000");
    assert_success(&h.permit(h.client(7), "u7", &[p]));
    assert_eq!(
        h.server.poll_timeout(),
        Some(t0 + Duration::from_secs(310)),
        "the permission is due before any allocation"
    );
    // At its deadline the permission is gone from the map, not at some later sweep.
    h.advance(Duration::from_secs(300));
    let a = h
        .server
        .allocations()
        .find(|a| a.client == h.client(7))
        .unwrap();
    assert!(a.permissions.is_empty());
    assert_eq!(h.server.poll_timeout(), Some(t0 + Duration::from_secs(600)));
}

#[test]
fn a_refresh_to_a_shorter_lifetime_moves_the_deadline_earlier() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("u");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(Lifetime(Duration::from_secs(3600))));
    assert_success(&h.request(c, METHOD_ALLOCATE, attrs, Some(&creds)));
    let ask: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(600)))];
    assert_success(&h.request(c, METHOD_REFRESH, ask, Some(&creds)));
    h.advance(Duration::from_secs(599));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(1));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended[0].reason, EndReason::Expired);
}

#[test]
fn a_refresh_to_a_longer_lifetime_is_honoured_after_the_old_deadline() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "u");
    let creds = h.creds("u");
    let ask: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(3600)))];
    assert_success(&h.request(c, METHOD_REFRESH, ask, Some(&creds)));
    h.advance(Duration::from_secs(601));
    assert_eq!(
        h.server.allocation_count(),
        1,
        "the old 600 s entry was superseded"
    );
    h.advance(Duration::from_secs(3000));
    assert_eq!(h.server.allocation_count(), 0);
}
