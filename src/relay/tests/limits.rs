//! Caps that keep one authenticated client from filling the server: channels per
//! allocation, and quota slots held by EVEN-PORT reservations.

use super::*;
use crate::relay::bandwidth::Bucket;

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
    h.shell.busy_ports.extend(50000..=50099);
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
    assert!(h.server.held.is_empty() && h.shell.bound.is_empty());
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

#[test]
fn unauthenticated_answers_are_rate_limited_per_source_prefix_over_udp_only() {
    let mut cfg = config();
    cfg.unauthenticated_rate = 10;
    let mut h = harness_with(cfg);
    let bare = |h: &mut Harness, c: ClientId| {
        let m = h.build(c, METHOD_ALLOCATE, vec![], None, None);
        h.send_raw(c, &m.raw).len()
    };
    // Every client below is in 198.51.100.0/24: one budget of 20 (two seconds' worth).
    let answered: usize = (0..50)
        .map(|i| {
            let c = h.client(i);
            bare(&mut h, c)
        })
        .sum();
    assert_eq!(answered, 20);
    assert_eq!(
        h.server.counters().dropped[DropReason::RateLimit as usize],
        30
    );
    // Another prefix has its own budget.
    let mut other = h.client(1);
    other.addr = "203.0.113.9:5000".parse().unwrap();
    assert_eq!(bare(&mut h, other), 1);
    // A stream client completed a handshake: it cannot be spoofed, so it is not limited.
    let mut tcp = h.client(2);
    tcp.transport = Transport::Tcp;
    assert_eq!((0..50).map(|_| bare(&mut h, tcp)).sum::<usize>(), 50);
    // The budget refills at the rate.
    h.advance(Duration::from_secs(1));
    let answered: usize = (0..50)
        .map(|i| {
            let c = h.client(i);
            bare(&mut h, c)
        })
        .sum();
    assert_eq!(answered, 10);
}

fn forwarded(h: &mut Harness, c: ClientId, n: usize, len: usize) -> usize {
    let cd = channel_data(0x4001, &vec![0u8; len]);
    (0..n)
        .filter(|_| {
            matches!(
                h.server.handle_client_packet(h.time(), c, &cd),
                ClientAction::Forward { .. }
            )
        })
        .count()
}

#[test]
fn allocation_bandwidth_cap_drops_the_excess_both_ways() {
    let mut cfg = config();
    cfg.max_bytes_per_sec_per_allocation = Some(10_000);
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:5000");
    assert_success(&h.bind_channel(c, "bob", 0x4001, p));
    assert_eq!(forwarded(&mut h, c, 20, 1000), 10, "a second's worth");
    let relay = h.relay_bind_addr(c);
    assert_eq!(
        h.server
            .handle_peer_packet(h.time(), relay, p, &[0u8; 1000]),
        PeerAction::Drop(DropReason::RateLimit),
        "one budget for both directions"
    );
    assert_eq!(
        h.server.counters().dropped[DropReason::RateLimit as usize],
        11
    );
    h.advance(Duration::from_millis(500));
    assert_eq!(forwarded(&mut h, c, 20, 1000), 5);
}

#[test]
fn user_bandwidth_cap_is_shared_by_the_users_allocations() {
    let mut cfg = config();
    let users = std::sync::Arc::new(super::super::bandwidth::UserBuckets::default());
    cfg.max_bytes_per_sec_per_user = Some((10_000, users));
    let mut h = harness_with(cfg);
    let (a, b, other) = (h.client(1), h.client(2), h.client(3));
    let p = peer("198.51.100.9:5000");
    for (c, user) in [(a, "bob"), (b, "bob"), (other, "carol")] {
        h.allocate(c, user);
        assert_success(&h.bind_channel(c, user, 0x4001, p));
    }
    let sent = forwarded(&mut h, a, 6, 1000) + forwarded(&mut h, b, 6, 1000);
    assert_eq!(sent, 10, "bob's two allocations share 10 kB/s");
    assert_eq!(
        forwarded(&mut h, other, 6, 1000),
        6,
        "carol has her own budget"
    );
}

#[test]
fn without_a_cap_nothing_is_limited() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    assert_success(&h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:5000")));
    assert_eq!(forwarded(&mut h, c, 1000, 1200), 1000);
    assert!(h.server.allocations().next().unwrap().limits.is_none());
}

/// Bucket::take floors elapsed*rate/1e6 and then moves `last`: the remainder is lost on
/// every call, so frequent small packets never refill a low-rate bucket.
#[test]
fn bandwidth_bucket_refills_at_its_rate_under_frequent_packets() {
    let t0 = crate::testkit::start_time();
    let mut b = Bucket::new(12_500, t0); // 100 kbit/s
    assert!(b.take(t0, 12_500)); // burst spent
    let mut passed = 0u64;
    for i in 1..=20_000u64 {
        // One second of 100-byte packets, one every 50 us.
        if b.take(t0 + Duration::from_micros(50 * i), 100) {
            passed += 100;
        }
    }
    assert!(
        passed >= 12_000,
        "only {passed} bytes passed in 1 s at 12500 B/s"
    );
}

/// A token redeemed on another shard (the RTCP Allocate comes from another source port)
/// does not give back the reservation's quota slot: with 2 per user, RTP + RTCP fails.
#[test]
fn reservation_redeemed_on_another_shard_transfers_its_quota_slot() {
    let quotas = std::sync::Arc::new(super::quota::Quotas::new(100, 2));
    let mut a = config();
    a.quotas = quotas.clone();
    a.ports = 50000..=50049;
    let mut b = config();
    b.quotas = quotas.clone();
    b.ports = 50050..=50099;
    let (mut ha, mut hb) = (harness_with(a), harness_with(b));
    let creds = ha.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = ha.request(ha.client(1), METHOD_ALLOCATE, attrs, Some(&creds));
    assert_success(&r);
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(token)));
    let r = hb.request(hb.client(2), METHOD_ALLOCATE, attrs, Some(&creds));
    assert_success(&r);
}

/// Limits::take spends the user's shared budget before asking the allocation's own: a
/// packet the allocation's cap refuses still drains the user's budget, so one capped
/// allocation (or a peer flooding it) starves the user's other allocations.
#[test]
fn packets_refused_by_the_allocation_cap_do_not_spend_the_users_budget() {
    use crate::relay::bandwidth::{Limits, UserBuckets};
    let t0 = crate::testkit::start_time();
    let users = UserBuckets::default();
    let mut flooded = Limits {
        own: Some(Bucket::new(1_000, t0)),
        user: Some(users.get("bob", 10_000, t0)),
    };
    let mut other = Limits {
        own: None,
        user: Some(users.get("bob", 10_000, t0)),
    };
    let passed = (0..10).filter(|_| flooded.take(t0, 1_000)).count();
    assert_eq!(passed, 1, "the allocation's own cap");
    assert!(
        other.take(t0, 9_000),
        "9 kB of bob's 10 kB were never relayed"
    );
}
