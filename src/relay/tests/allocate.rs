//! Allocate (RFC 8656 §7, RFC 6156): responses, lifetimes, families, quotas, EVEN-PORT.

use super::*;

#[test]
fn allocate_success_has_advertised_relay_mapped_address_lifetime_and_integrity() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    let relay = relayed(&r)[0];
    assert_eq!(
        relay.ip().to_string(),
        "203.0.113.5",
        "advertised, not bind address"
    );
    assert!((50000..=50099).contains(&relay.port()));
    assert_eq!(h.relay_bind_addr(c).ip().to_string(), "10.0.0.5");
    assert_eq!(lifetime(&r), 600);
    let raw = r.get(ATTR_XORMAPPED_ADDRESS).unwrap();
    assert_eq!(decode_xor_address(&raw, &r.transaction_id.0), Some(c.addr));
    MessageIntegrity::new_long_term_integrity(creds.username, REALM.into(), creds.password)
        .check(&mut r)
        .expect("response is signed with the client's key");
    FINGERPRINT.check(&r).unwrap();
}

#[test]
fn allocate_without_requested_transport_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(400));
    assert!(
        r.contains(ATTR_MESSAGE_INTEGRITY),
        "errors to authenticated requests are signed"
    );
}

#[test]
fn allocate_with_tcp_transport_gets_442() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_TCP,
    })];
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(442));
}

#[test]
fn retransmitted_allocate_gets_the_cached_success_not_437() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        None,
    );
    let first = h.exchange(c, &m);
    let again = h.exchange(c, &m);
    assert_success(&first);
    assert_eq!(first.raw, again.raw);
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn second_allocate_on_same_five_tuple_gets_437() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(437));
}

#[test]
fn allocate_lifetime_is_capped_at_the_maximum_and_floored_at_the_default() {
    let mut h = harness();
    for (i, (asked, granted)) in [(7200, 3600), (60, 600), (1200, 1200)]
        .into_iter()
        .enumerate()
    {
        let c = h.client(i as u16);
        let creds = h.creds("bob");
        let mut attrs = Harness::allocate_attrs();
        attrs.push(Box::new(Lifetime(Duration::from_secs(asked))));
        let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
        assert_eq!(lifetime(&r), granted, "asked {asked}");
    }
}

#[test]
fn allocation_expires_when_its_lifetime_ends() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.advance(Duration::from_secs(599));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended.len(), 1);
    assert_eq!(h.shell.ended[0].reason, EndReason::Expired);
    assert!(h.shell.bound.is_empty(), "relay socket released");
    assert_eq!(h.server.poll_timeout(), None, "idle core wants no timer");
}

#[test]
fn requested_family_ipv6_without_ipv6_relay_gets_440() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(440));
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x07)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(440));
}

fn dual_stack() -> CoreConfig {
    let mut cfg = config();
    cfg.relay_v6 = Some(RelayFamily {
        bind: "2001:db8::5".parse().unwrap(),
        advertised: "2001:db8::5".parse().unwrap(),
    });
    cfg
}

#[test]
fn ipv6_allocation_relays_to_ipv6_peers_only() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relays = relayed(&r);
    assert_eq!(relays.len(), 1);
    assert!(relays[0].is_ipv6());
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1000")]);
    assert_eq!(error_code(&r), Some(443));
    let r = h.permit(c, "bob", &[peer("[2001:db8:1::9]:1000")]);
    assert_success(&r);
}

#[test]
fn additional_address_family_gives_a_dual_allocation() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relays = relayed(&r);
    assert_eq!(relays.len(), 2);
    assert!(relays[0].is_ipv4() && relays[1].is_ipv6());
    let r = h.permit(
        c,
        "bob",
        &[peer("198.51.100.9:1"), peer("[2001:db8:1::9]:1")],
    );
    assert_success(&r);
    h.advance(Duration::from_secs(601));
    assert!(h.shell.bound.is_empty(), "both relay sockets released");
}

#[test]
fn additional_family_without_ipv6_relay_gives_ipv4_and_address_error_code() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_success(&r);
    assert_eq!(relayed(&r).len(), 1);
    let aec = r.get(ATTR_ADDRESS_ERROR_CODE).unwrap();
    assert_eq!((aec[0], aec[2], aec[3]), (0x02, 4, 40));
}

#[test]
fn additional_family_ipv4_or_with_requested_family_gets_400() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x01)));
    assert_eq!(
        error_code(&h.request(c, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(400)
    );
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    attrs.push(Box::new(RequestedAddressFamily(0x01)));
    assert_eq!(
        error_code(&h.request(c, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(400)
    );
}

struct AdditionalFamily(u8);
impl Setter for AdditionalFamily {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[self.0, 0, 0, 0]);
        Ok(())
    }
}

#[test]
fn per_user_quota_gets_486() {
    let mut h = harness();
    for i in 0..5 {
        h.allocate(h.client(i), "bob");
    }
    let c = h.client(9);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(486));
    h.allocate(c, "carol"); // another user is unaffected
    assert_eq!(h.server.counters().quota_rejections, 1);
}

#[test]
fn server_wide_quota_gets_486() {
    let mut cfg = config();
    cfg.quotas = std::sync::Arc::new(super::quota::Quotas::new(2, 5));
    let mut h = harness_with(cfg);
    h.allocate(h.client(1), "a");
    h.allocate(h.client(2), "b");
    let c = h.client(3);
    let creds = h.creds("c");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(486));
}

#[test]
fn relay_port_that_cannot_be_bound_is_retried_then_508() {
    let mut cfg = config();
    cfg.ports = 50000..=50003;
    let mut h = harness_with(cfg);
    h.shell.busy_ports.extend([50000, 50001, 50002]);
    let relay = h.allocate(h.client(1), "bob");
    assert_eq!(
        relay.port(),
        50003,
        "skipped the ports another process holds"
    );
    let c = h.client(2);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(508));
    assert_eq!(h.server.allocation_count(), 1);
    assert!(h.server.pending.is_empty());
}

#[test]
fn even_port_with_reservation_gives_a_token_for_the_next_port() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relay = relayed(&r)[0];
    assert_eq!(relay.port() % 2, 0);
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    let c2 = h.client(2);
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(
        token.clone(),
    )));
    let r = h.request(c2, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(relayed(&r)[0].port(), relay.port() + 1);
    // A token is good once, and a forged one not at all.
    let c3 = h.client(3);
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(vec![
        0;
        8
    ])));
    assert_eq!(
        error_code(&h.request(c3, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(508)
    );
}

/// RFC 8656 §7.2: RESERVATION-TOKEN with ADDITIONAL-ADDRESS-FAMILY is a 400. Here it is
/// accepted and the reserved IPv4 address is bound a second time for the IPv6 half.
#[test]
fn reservation_token_with_additional_family_is_400() {
    let mut cfg = config();
    cfg.relay_v6 = Some(RelayFamily {
        bind: "2001:db8::5".parse().unwrap(),
        advertised: "2001:db8::5".parse().unwrap(),
    });
    let mut h = harness_with(cfg);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = h.request(h.client(1), METHOD_ALLOCATE, attrs, Some(&creds));
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(token)));
    attrs.push(Box::new(RawAttr(
        ATTR_ADDITIONAL_ADDRESS_FAMILY,
        vec![2, 0, 0, 0],
    )));
    let r = h.request(h.client(2), METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(400));
}
