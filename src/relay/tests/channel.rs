//! ChannelBind and ChannelData (RFC 8656 §12).

use super::*;

#[test]
fn channel_bind_relays_channel_data_both_ways() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:5000");
    let r = h.bind_channel(c, "bob", 0x4001, p);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    let cd = channel_data(0x4001, b"media");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert_eq!(
        act,
        ClientAction::Forward {
            relay,
            peer: p,
            payload: b"media"
        }
    );
    let act = h.server.handle_peer_packet(h.time(), relay, p, b"back");
    assert_eq!(
        act,
        PeerAction::ChannelData {
            client: c,
            channel: 0x4001
        }
    );
    // Another port of the same IP has the permission but not the channel: Data indication.
    let act = h
        .server
        .handle_peer_packet(h.time(), relay, peer("198.51.100.9:5001"), b"x");
    assert!(is_data_indication(&act, c));
    let t = h.server.counters().relayed_packets[0];
    assert_eq!(t, [1, 2]);
}

#[test]
fn channel_data_on_an_unbound_channel_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let cd = channel_data(0x4002, b"x");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
}

#[test]
fn channel_bind_rebinding_rules() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let (p1, p2) = (peer("198.51.100.9:1"), peer("198.51.100.10:1"));
    assert_success(&h.bind_channel(c, "bob", 0x4001, p1));
    // Same channel, same peer: a refresh.
    assert_success(&h.bind_channel(c, "bob", 0x4001, p1));
    // The channel to another peer, or the peer to another channel: 400.
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4001, p2)), Some(400));
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4002, p1)), Some(400));
    assert_success(&h.bind_channel(c, "bob", 0x4002, p2));
}

#[test]
fn channel_number_out_of_range_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:1");
    for ch in [0x0000, 0x3FFF, 0x7FFF, 0xFFFF] {
        assert_eq!(
            error_code(&h.bind_channel(c, "bob", ch, p)),
            Some(400),
            "{ch:#x}"
        );
    }
    // RFC 5766 clients use up to 0x7FFE: accepted unless strict.
    assert_success(&h.bind_channel(c, "bob", 0x7FFE, p));
    let mut cfg = config();
    cfg.strict_channel_numbers = true;
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob");
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x5000, p)), Some(400));
    assert_success(&h.bind_channel(c, "bob", 0x4FFF, p));
}

#[test]
fn channel_bind_to_denied_peer_gets_403() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    assert_eq!(
        error_code(&h.bind_channel(c, "bob", 0x4001, peer("127.0.0.1:1"))),
        Some(403)
    );
}

#[test]
fn channel_bind_installs_a_permission_for_the_peer() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    let si = send_indication(peer("198.51.100.9:7"), b"x");
    let act = h.server.handle_client_packet(h.time(), c, &si);
    assert!(matches!(act, ClientAction::Forward { .. }));
}

#[test]
fn channel_expires_after_600_seconds_and_cools_down_for_300() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let (p1, p2) = (peer("198.51.100.9:1"), peer("198.51.100.10:1"));
    h.bind_channel(c, "bob", 0x4001, p1);
    // Keep the allocation alive past the channel's lifetime.
    h.advance(Duration::from_secs(500));
    h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    h.advance(Duration::from_secs(101));
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
    // Cooling down: the number cannot go to another peer yet.
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4001, p2)), Some(400));
    h.advance(Duration::from_secs(300));
    h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_success(&h.bind_channel(c, "bob", 0x4001, p2));
}

#[test]
fn client_channel_data_after_permission_expiry_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    h.advance(Duration::from_secs(301));
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoPermission));
}
