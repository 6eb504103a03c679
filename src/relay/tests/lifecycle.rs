//! Lifecycle: send failures, shutdown, reload, stream disconnects, and the relay-path cost probe.

use super::*;

#[test]
fn send_failure_towards_a_peer_keeps_the_allocation() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.server.record_send_failure(DropReason::SendError);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(
        h.server.counters().dropped[DropReason::SendError as usize],
        1
    );
}

#[test]
fn shutdown_ends_every_allocation_with_its_totals() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    let _ = h
        .server
        .handle_client_packet(h.time(), c, &channel_data(0x4001, b"12345"));
    h.server.shutdown(h.time());
    h.take_responses();
    assert_eq!(h.shell.ended.len(), 1);
    let s = &h.shell.ended[0];
    assert_eq!(s.reason, EndReason::Shutdown);
    assert_eq!((s.traffic.bytes_to_peer, s.traffic.packets_to_peer), (5, 1));
    assert_eq!((s.peers_used, s.channels_used), (1, 1));
    assert_eq!(s.username, h.creds("bob").username);
}

#[test]
fn reconfigure_with_a_new_secret_keeps_allocations_and_rejects_old_credentials() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.server.reconfigure(
        Authenticator::new(REALM, vec!["brand-new-secret".into()], &[], [9; 32], 600),
        PeerPolicy::default(),
    );
    assert_eq!(h.server.allocation_count(), 1);
    let creds = h.creds("bob"); // minted with the old secret
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(401));
}

#[test]
fn closing_a_stream_connection_deletes_its_allocation() {
    let mut h = harness();
    let mut c = h.client(1);
    c.transport = Transport::Tcp;
    h.allocate(c, "bob");
    assert!(h.server.has_allocation(&c));
    h.server.client_disconnected(h.time(), c, true);
    h.take_responses();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.shell.ended[0].reason, EndReason::Deleted);
    assert!(h.shell.bound.is_empty());
    // A UDP client at the same address is a different 5-tuple and is untouched.
    let u = h.client(1);
    h.allocate(u, "bob");
    h.server.client_disconnected(h.time(), c, false);
    assert_eq!(h.server.allocation_count(), 1);
}

/// Not a test: the cost of the relay path through the core alone, for before/after
/// comparisons of core changes. Built only with the `probes` feature:
/// `cargo test --release --features probes --lib relay_path_cost -- --nocapture`.
#[cfg(feature = "probes")]
#[test]
fn relay_path_cost() {
    let mut cfg = config();
    cfg.quotas = std::sync::Arc::new(super::quota::Quotas::new(5000, 5000));
    cfg.ports = 10000..=60000;
    let mut h = harness_with(cfg);
    let n = 2000u16;
    let peers: Vec<SocketAddr> = (0..n)
        .map(|i| {
            peer(&format!(
                "198.51.{}.{}:{}",
                100 + i / 250,
                i % 250 + 1,
                7000 + i
            ))
        })
        .collect();
    let clients: Vec<ClientId> = (0..n).map(|i| h.client(i)).collect();
    for (i, c) in clients.iter().enumerate() {
        h.allocate(*c, "bench");
        assert_success(&h.bind_channel(*c, "bench", 0x4001, peers[i]));
    }
    let relays: Vec<SocketAddr> = clients.iter().map(|c| h.relay_bind_addr(*c)).collect();
    let packets: Vec<Vec<u8>> = (0..n).map(|_| channel_data(0x4001, &[0u8; 160])).collect();
    let rounds = 500usize;
    let t = crate::testkit::start_time();
    for _ in 0..rounds {
        for i in 0..n as usize {
            let a = h
                .server
                .handle_client_packet(h.time(), clients[i], &packets[i]);
            std::hint::black_box(&a);
            let b = h
                .server
                .handle_peer_packet(h.time(), relays[i], peers[i], &packets[i][4..]);
            std::hint::black_box(&b);
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * n as usize * 2) as f64;
    println!("relay path through the core: {per:.1} ns per packet ({n} allocations)");
}

#[test]
fn reload_with_a_new_deny_entry_ends_permissions_and_channels_to_it_at_once() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let (bad, good) = (peer("198.51.100.66:1"), peer("198.51.100.9:1"));
    assert_success(&h.bind_channel(c, "bob", 0x4001, bad));
    assert_success(&h.permit(c, "bob", &[good]));
    h.server.reconfigure(
        Authenticator::new(REALM, vec![SECRET.into()], &[], [9; 32], 600),
        PeerPolicy::new(vec![], vec!["198.51.100.66/32".parse().unwrap()]),
    );
    let relay = h.relay_bind_addr(c);
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
    let act = h.server.handle_peer_packet(h.time(), relay, bad, b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
    let act = h.server.handle_peer_packet(h.time(), relay, good, b"x");
    assert!(is_data_indication(&act, c), "other peers are untouched");
    assert_eq!(h.server.allocation_count(), 1);
}
