//! Handover (issue 18): a core's state exported, encoded, decoded and imported into a
//! fresh core some seconds later goes on as if nothing happened.

use super::*;
use crate::relay::handover::{self, ImportReport, NotImportedReason};
use crate::testkit::EvenPortR;
use turn::proto::rsrvtoken::ReservationToken;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

/// Core B: a fresh core of `cfg`, `gap` after A's now, with A's state imported through
/// the byte format, and its shell holding the relay sockets the import says it owns (what
/// phase 2 does with the passed descriptors).
fn take_over(a: &Harness, cfg: CoreConfig, gap: Duration) -> (Harness, ImportReport) {
    let bytes = handover::encode(&a.server.export_state(a.time()));
    let state = handover::decode(&bytes).expect("decodes");
    let mut b = harness_with(cfg);
    b.now = a.now + gap;
    b.unix = a.unix + gap.as_secs();
    let report = b.server.import_state(b.time(), state);
    b.shell.bound.extend(report.relays.iter().copied());
    (b, report)
}

/// Moves `h` to `at` seconds (and `extra`) after `t0`, running its timers.
fn advance_to(h: &mut Harness, t0: std::time::Instant, at: Duration) {
    let d = (t0 + at) - h.now;
    h.advance(d);
}

/// One allocation of "bob" on client 1 with a channel (0x4001 to p1), a permission for
/// p2, and some traffic: A at t0 + 100 s.
pub(super) fn busy_core() -> (Harness, std::time::Instant, SocketAddr, SocketAddr) {
    let mut a = harness();
    let t0 = a.now;
    let c = a.client(1);
    let (p1, p2) = (peer("198.51.100.9:5000"), peer("198.51.100.10:6000"));
    a.allocate(c, "bob");
    a.advance(10 * SEC);
    assert_success(&a.permit(c, "bob", &[p2]));
    a.advance(10 * SEC);
    assert_success(&a.bind_channel(c, "bob", 0x4001, p1));
    let relay = a.relay_bind_addr(c);
    for _ in 0..3 {
        let cd = channel_data(0x4001, b"media");
        assert!(matches!(
            a.server.handle_client_packet(a.time(), c, &cd),
            ClientAction::Forward { .. }
        ));
    }
    let _ = a.server.handle_peer_packet(a.time(), relay, p1, b"back");
    advance_to(&mut a, t0, 100 * SEC);
    (a, t0, p1, p2)
}

#[test]
fn handover_keeps_relay_address_channel_and_traffic() {
    let (a, _, p1, _) = busy_core();
    let c = a.client(1);
    let relay = a.relay_bind_addr(c);
    let (mut b, report) = take_over(&a, config(), 5 * SEC);
    assert_eq!(report.imported, 1);
    assert_eq!(report.relays, vec![relay]);
    assert!(report.not_imported.is_empty() && !report.token_key_changed);
    assert_eq!(report.gap, 5 * SEC);
    let cd = channel_data(0x4001, b"after");
    assert_eq!(
        b.server.handle_client_packet(b.time(), c, &cd),
        ClientAction::Forward {
            relay,
            peer: p1,
            payload: b"after"
        }
    );
    assert_eq!(
        b.server.handle_peer_packet(b.time(), relay, p1, b"back"),
        PeerAction::ChannelData {
            client: c,
            channel: 0x4001
        }
    );
    let t = b.server.allocations().next().unwrap().traffic;
    assert_eq!((t.packets_to_peer, t.packets_to_client), (4, 2));
    assert_eq!((t.bytes_to_peer, t.bytes_to_client), (20, 8));
    // Metrics continue: A's counters plus B's own.
    assert_eq!(b.server.counters().relayed_packets[0], [4, 2]);
    assert_eq!(b.server.counters().allocations_created[0], 1);
}

#[test]
fn handover_refresh_accepts_the_nonce_and_credential_of_before() {
    let (mut a, _, _, _) = busy_core();
    let c = a.client(1);
    let nonce = a.nonce(c);
    let (mut b, _) = take_over(&a, config(), 5 * SEC);
    let creds = b.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(900)))];
    let m = b.build(c, METHOD_REFRESH, attrs, Some(&creds), Some(nonce));
    let r = b.exchange(c, &m);
    assert_success(&r);
    assert_eq!(lifetime(&r), 900);
    // Another user still gets 441 on it.
    let eve = b.creds("eve");
    let r = b.request(c, METHOD_REFRESH, vec![], Some(&eve));
    assert_eq!(error_code(&r), Some(441));
}

#[test]
fn handover_permission_channel_and_allocation_expire_on_time() {
    let (mut a, t0, _, p2) = busy_core();
    let c = a.client(1);
    // Refresh to 1200 s at t0 + 100: the allocation now ends at t0 + 1300.
    let creds = a.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(1200)))];
    assert_success(&a.request(c, METHOD_REFRESH, attrs, Some(&creds)));
    let (mut b, _) = take_over(&a, config(), 5 * SEC);
    let send = |b: &mut Harness, p: SocketAddr| {
        let s = send_indication(p, b"x");
        match b.server.handle_client_packet(b.time(), c, &s) {
            ClientAction::Forward { .. } => None,
            ClientAction::Drop(r) => Some(r),
            other => panic!("{other:?}"),
        }
    };
    let cd = |b: &mut Harness| match b.server.handle_client_packet(
        b.time(),
        c,
        &channel_data(0x4001, b"x"),
    ) {
        ClientAction::Drop(r) => r,
        other => panic!("{other:?}"),
    };
    // p2's permission: created at t0 + 10, 300 s.
    advance_to(&mut b, t0, 310 * SEC - MS);
    assert_eq!(send(&mut b, p2), None);
    b.advance(2 * MS);
    assert_eq!(send(&mut b, p2), Some(DropReason::NoPermission));
    // The channel: bound at t0 + 20, 600 s (its permission ended at t0 + 320).
    advance_to(&mut b, t0, 620 * SEC - MS);
    assert_eq!(cd(&mut b), DropReason::NoPermission);
    b.advance(2 * MS);
    assert_eq!(cd(&mut b), DropReason::NoChannel);
    // The allocation, at t0 + 1300, with its whole life as its duration.
    advance_to(&mut b, t0, 1300 * SEC - MS);
    assert!(b.server.has_allocation(&c) && b.shell.ended.is_empty());
    b.advance(2 * MS);
    assert!(!b.server.has_allocation(&c));
    let ended = &b.shell.ended[0];
    assert_eq!(ended.reason, EndReason::Expired);
    assert_eq!(ended.duration.as_secs(), 1300);
    assert_eq!(ended.traffic.packets_to_peer, 4, "3 before, 1 after");
    assert!(b.shell.bound.is_empty(), "its relay socket was released");
}

#[test]
fn handover_counts_quota_slots() {
    let mut a = harness();
    for n in 1..=3 {
        let c = a.client(n);
        a.allocate(c, "bob");
    }
    let (mut b, report) = take_over(&a, config(), SEC);
    assert_eq!(report.imported, 3);
    assert_eq!(b.server.cfg.quotas.user_in_use("bob"), 3);
    assert_eq!(b.server.cfg.quotas.in_use(), 3);
    // The harness allows 5 per user: two more, then 486, as without the handover.
    for n in 4..=5 {
        let c = b.client(n);
        b.allocate(c, "bob");
    }
    let creds = b.creds("bob");
    let c6 = b.client(6);
    let r = b.request(c6, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(486));
}

#[test]
fn handover_answers_a_retransmitted_allocate_with_the_cached_response() {
    let mut a = harness();
    let c = a.client(1);
    let creds = a.creds("bob");
    let m = a.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        None,
    );
    let first = a.exchange(c, &m);
    assert_success(&first);
    let (mut b, _) = take_over(&a, config(), 2 * SEC);
    let again = b.exchange(c, &m);
    assert_eq!(again.raw, first.raw);
    assert_eq!(b.server.allocation_count(), 1);
}

#[test]
fn handover_keeps_an_even_port_reservation() {
    let mut a = harness();
    let c = a.client(1);
    let creds = a.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = a.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relay = relayed(&r)[0];
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    let (mut b, report) = take_over(&a, config(), 3 * SEC);
    assert_eq!(report.reservations, 1);
    assert_eq!(
        b.server.cfg.quotas.user_in_use("bob"),
        2,
        "allocation + reservation"
    );
    let c2 = b.client(2);
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(ReservationToken(token)));
    let r = b.request(c2, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(relayed(&r)[0].port(), relay.port() + 1);
    assert_eq!(
        b.server.cfg.quotas.user_in_use("bob"),
        2,
        "the reservation's slot went back"
    );
}

#[test]
fn handover_reservation_expires_on_time() {
    let mut a = harness();
    let c = a.client(1);
    let creds = a.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    assert_success(&a.request(c, METHOD_ALLOCATE, attrs, Some(&creds)));
    let t0 = a.now;
    let (mut b, _) = take_over(&a, config(), 3 * SEC);
    advance_to(&mut b, t0, 30 * SEC - MS);
    assert_eq!(b.server.cfg.quotas.user_in_use("bob"), 2);
    b.advance(2 * MS);
    assert_eq!(b.server.cfg.quotas.user_in_use("bob"), 1);
    assert!(b.server.reservations.is_empty() && b.server.held.is_empty());
}

#[test]
fn handover_reports_allocations_the_new_config_cannot_hold() {
    let mut a = harness();
    let (c1, c2) = (a.client(1), a.client(2));
    a.allocate(c1, "bob");
    a.allocate(c2, "carol");
    let (r1, r2) = (a.relay_bind_addr(c1), a.relay_bind_addr(c2));
    // The new range holds only the first one's port.
    let cfg = CoreConfig {
        ports: r1.port()..=r1.port(),
        ..config()
    };
    let (mut b, report) = take_over(&a, cfg, SEC);
    assert_eq!((report.imported, report.relays.clone()), (1, vec![r1]));
    let gone = &report.not_imported[0];
    assert_eq!(
        (gone.client, gone.reason),
        (c2, NotImportedReason::PortOutsideSlice)
    );
    assert_eq!(gone.relays, vec![r2]);
    assert_eq!(
        report.not_imported_counts(),
        vec![("port_outside_slice", 1)]
    );
    assert_eq!(b.server.cfg.quotas.user_in_use("carol"), 0);
    let cd = channel_data(0x4001, b"x");
    assert_eq!(
        b.server.handle_client_packet(b.time(), c2, &cd),
        ClientAction::Drop(DropReason::NoAllocation)
    );
    // Another relay IP, or no IPv4 relay at all.
    let mut moved = config();
    moved.relay_v4.as_mut().unwrap().bind = "10.0.0.6".parse().unwrap();
    let (_, report) = take_over(&a, moved, SEC);
    assert_eq!(
        report.not_imported_counts(),
        vec![("relay_address_changed", 2)]
    );
    let v6_only = CoreConfig {
        relay_v4: None,
        relay_v6: Some(RelayFamily {
            bind: "2001:db8::5".parse().unwrap(),
            advertised: "2001:db8::5".parse().unwrap(),
        }),
        ..config()
    };
    let (_, report) = take_over(&a, v6_only, SEC);
    assert_eq!(
        report.not_imported_counts(),
        vec![("family_not_configured", 2)]
    );
}

#[test]
fn handover_state_imported_twice_is_reported_not_doubled() {
    let mut a = harness();
    let c = a.client(1);
    a.allocate(c, "bob");
    let (mut b, _) = take_over(&a, config(), SEC);
    let state = a.server.export_state(a.time());
    let report = b.server.import_state(b.time(), state);
    assert_eq!(report.imported, 0);
    assert_eq!(
        report.not_imported[0].reason,
        NotImportedReason::DuplicateClient
    );
    assert_eq!(b.server.cfg.quotas.user_in_use("bob"), 1);
}
