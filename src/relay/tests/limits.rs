//! Caps that keep one authenticated client from filling the server: channels per
//! allocation, and quota slots held by EVEN-PORT reservations.

use super::*;

#[test]
fn channel_bindings_beyond_the_cap_get_508() {
    let mut h = harness(); // max_channels = 16
    let c = h.client(1);
    h.allocate(c, "bob");
    // One peer IP, many ports: permissions (per IP) do not bound this; the channel cap does.
    for i in 0..16u16 {
        let p = peer(&format!("192.0.2.50:{}", 7000 + i));
        assert_success(&h.bind_channel(c, "bob", 0x4000 + i, p));
    }
    let r = h.bind_channel(c, "bob", 0x4010, peer("192.0.2.50:8000"));
    assert_eq!(error_code(&r), Some(508));
    // Refreshing a binding that exists is not a new one.
    assert_success(&h.bind_channel(c, "bob", 0x4003, peer("192.0.2.50:7003")));
    assert_eq!(h.server.allocations().next().unwrap().channels.len(), 16);
}

#[test]
fn even_port_reservation_holds_a_quota_slot_until_it_expires() {
    let mut h = harness(); // 5 per user
    let creds = h.creds("bob");
    for i in 0..2 {
        let mut attrs = Harness::allocate_attrs();
        attrs.push(Box::new(EvenPortR));
        assert_success(&h.request(h.client(i), METHOD_ALLOCATE, attrs, Some(&creds)));
    }
    // Two allocations and two reservations: one slot left.
    assert_eq!(h.server.cfg.quotas.user_in_use(&creds.username), 4);
    h.allocate(h.client(2), "bob");
    let r = h.request(
        h.client(3),
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
    );
    assert_eq!(error_code(&r), Some(486));
    // An R bit needs two slots: refused whole, nothing held.
    h.advance(Duration::from_secs(31));
    assert_eq!(
        h.server.cfg.quotas.user_in_use(&creds.username),
        3,
        "reservations expired"
    );
    assert!(h.server.held.is_empty());
    h.allocate(h.client(3), "bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = h.request(h.client(4), METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(486));
    assert_eq!(h.server.cfg.quotas.user_in_use(&creds.username), 4);
}

#[test]
fn every_quota_slot_comes_back_when_allocations_end() {
    let mut h = harness();
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    assert_success(&h.request(h.client(1), METHOD_ALLOCATE, attrs, Some(&creds)));
    h.allocate(h.client(2), "bob");
    h.busy_ports.extend(50000..=50099);
    let r = h.request(
        h.client(3),
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
    );
    assert_eq!(
        error_code(&r),
        Some(508),
        "no port: the pending slot is given back"
    );
    let zero: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    assert_success(&h.request(h.client(2), METHOD_REFRESH, zero, Some(&creds)));
    h.advance(Duration::from_secs(700));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.server.cfg.quotas.in_use(), 0);
    assert!(h.server.held.is_empty() && h.bound.is_empty());
}

#[test]
fn one_quota_for_every_credential_of_a_user_id() {
    let mut h = harness(); // 5 per user
    for i in 0..5u16 {
        // A fresh credential each time, as an app backend mints them per page load.
        let (username, password) = mint_credential(SECRET, "bob", 3600 + i as u64, h.unix);
        let creds = Creds { username, password };
        assert_success(&h.request(
            h.client(i),
            METHOD_ALLOCATE,
            Harness::allocate_attrs(),
            Some(&creds),
        ));
    }
    let (username, password) = mint_credential(SECRET, "bob", 7200, h.unix);
    let creds = Creds { username, password };
    let r = h.request(
        h.client(9),
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
    );
    assert_eq!(error_code(&r), Some(486));
}
