//! CreatePermission (RFC 8656 §9), Send indications and Data to the client.

use super::*;

#[test]
fn create_permission_is_per_ip_and_any_port() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1000")]);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    let (now, unix) = (h.now, h.unix);
    // Data from another port of the permitted IP reaches the client.
    let act = h.server.handle_peer_packet(
        Time {
            mono: now,
            unix: h.unix,
        },
        relay,
        peer("198.51.100.9:2222"),
        b"hi",
    );
    let (to, ind) = framed(act, peer("198.51.100.9:2222"), b"hi");
    assert_eq!(to, c);
    assert_eq!(ind.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    let mut d = Data::default();
    d.get_from(&ind).unwrap();
    assert_eq!(d.0, b"hi");
    // And the client can send to any port of it.
    let si = send_indication(peer("198.51.100.9:3333"), b"yo");
    let act = h
        .server
        .handle_client_packet(Time { mono: now, unix }, c, &si);
    assert_eq!(
        act,
        ClientAction::Forward {
            relay,
            peer: peer("198.51.100.9:3333"),
            payload: b"yo"
        }
    );
}

#[test]
fn create_permission_with_several_peers_installs_all() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let peers = [
        peer("198.51.100.9:1"),
        peer("198.51.100.10:1"),
        peer("203.0.113.77:1"),
    ];
    let r = h.permit(c, "bob", &peers);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    for p in peers {
        let act = h.server.handle_peer_packet(h.time(), relay, p, b"x");
        assert!(is_data_indication(&act, c), "{p}");
    }
}

#[test]
fn create_permission_for_a_denied_peer_gets_403_and_installs_nothing() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    for bad in [
        "127.0.0.1:9",
        "10.1.2.3:9",
        "[::ffff:192.168.1.1]:9",
        "169.254.169.254:80",
    ] {
        let r = h.permit(c, "bob", &[peer("198.51.100.9:1"), peer(bad)]);
        assert_eq!(error_code(&r), Some(403), "{bad}");
    }
    let relay = h.relay_bind_addr(c);
    let act = h
        .server
        .handle_peer_packet(h.time(), relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(
        act,
        PeerAction::Drop(DropReason::NoPermission),
        "all or nothing"
    );
    assert_eq!(h.server.counters().peer_denied, 4);
}

#[test]
fn admin_allow_list_lets_a_private_peer_through() {
    let mut cfg = config();
    cfg.policy = PeerPolicy::new(vec!["10.0.0.0/8".parse().unwrap()], vec![]);
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[peer("10.1.2.3:9")]);
    assert_success(&r);
}

#[test]
fn create_permission_without_peer_address_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[]);
    assert_eq!(error_code(&r), Some(400));
}

#[test]
fn create_permission_by_another_user_gets_441_and_without_allocation_437() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1")]);
    assert_eq!(error_code(&r), Some(437));
    h.allocate(c, "bob");
    let r = h.permit(c, "eve", &[peer("198.51.100.9:1")]);
    assert_eq!(error_code(&r), Some(441));
}

#[test]
fn too_many_permissions_gets_508() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let peers: Vec<SocketAddr> = (1..=8)
        .map(|i| peer(&format!("198.51.100.{i}:1")))
        .collect();
    assert_success(&h.permit(c, "bob", &peers));
    let r = h.permit(c, "bob", &[peer("198.51.100.99:1")]);
    assert_eq!(error_code(&r), Some(508));
    // Refreshing existing ones is still fine.
    assert_success(&h.permit(c, "bob", &peers[..2]));
}

#[test]
fn permission_expires_after_300_seconds() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.permit(c, "bob", &[peer("198.51.100.9:1")]);
    let relay = h.relay_bind_addr(c);
    h.advance(Duration::from_secs(299));
    let act = h
        .server
        .handle_peer_packet(h.time(), relay, peer("198.51.100.9:1"), b"x");
    assert!(is_data_indication(&act, c));
    h.advance(Duration::from_secs(2));
    let act = h
        .server
        .handle_peer_packet(h.time(), relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
}

#[test]
fn peer_data_without_permission_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let relay = h.relay_bind_addr(c);
    let act = h
        .server
        .handle_peer_packet(h.time(), relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
    assert!(h.take_responses().is_empty());
}

#[test]
fn send_indication_without_permission_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let si = send_indication(peer("198.51.100.9:1"), b"x");
    let act = h.server.handle_client_packet(h.time(), c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::NoPermission));
}

#[test]
fn send_indication_to_a_denied_peer_is_dropped_as_denied() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let si = send_indication(peer("127.0.0.1:9"), b"x");
    let act = h.server.handle_client_packet(h.time(), c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::DeniedPeer));
    assert_eq!(
        h.server.counters().dropped[DropReason::DeniedPeer as usize],
        1
    );
}

#[test]
fn send_indication_without_allocation_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    let si = send_indication(peer("198.51.100.9:1"), b"x");
    let act = h.server.handle_client_packet(h.time(), c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::NoAllocation));
}
