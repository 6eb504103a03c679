//! The kernel fast path's routes (issue 19): the core alone decides when a channel binding
//! enters or leaves the kernel, and the kernel's counters land in its accounting.

use std::time::Duration;

use super::*;
use crate::relay::allocation::Traffic;

const MS: Duration = Duration::from_millis(1);

fn enabled() -> Harness {
    harness_with(CoreConfig {
        fastpath: true,
        ..config()
    })
}

/// An allocation with channel 0x4001 bound to a peer; the route the kernel got.
fn bound(h: &mut Harness) -> (ClientId, SocketAddr) {
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:5000");
    assert_success(&h.bind_channel(c, "bob", 0x4001, p));
    (c, p)
}

#[test]
fn channel_bind_installs_a_kernel_route_for_a_udp_client() {
    let mut h = enabled();
    let (c, p) = bound(&mut h);
    let relay = h.relay_bind_addr(c);
    assert_eq!(h.shell.kernel.len(), 1);
    let (r, _) = h.shell.kernel.values().next().unwrap();
    assert_eq!(
        (r.client, r.channel, r.relay, r.peer),
        (c, 0x4001, relay, p)
    );
    // A channel refresh moves the userspace deadline only: no second add.
    assert_success(&h.bind_channel(c, "bob", 0x4001, p));
    assert_eq!(h.shell.kernel_added.len(), 1);
}

#[test]
fn kernel_route_leaves_exactly_at_channel_expiry() {
    let mut h = enabled();
    let (c, p) = bound(&mut h);
    // Keep the allocation and the permission alive past the channel's expiry (600 s), so
    // that only the channel's own deadline can remove the route.
    let creds = h.creds("bob");
    let long: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(3600)))];
    assert_success(&h.request(c, METHOD_REFRESH, long, Some(&creds)));
    h.advance(Duration::from_secs(290));
    assert_success(&h.permit(c, "bob", &[p]));
    h.advance(Duration::from_secs(290));
    assert_success(&h.permit(c, "bob", &[p]));
    h.advance(Duration::from_secs(20) - MS);
    assert_eq!(h.shell.kernel.len(), 1, "1 ms before the channel expires");
    h.advance(2 * MS);
    assert!(h.shell.kernel.is_empty(), "1 ms after it expired");
    assert_eq!(h.server.fastpath_routes(), 0);
}

#[test]
fn kernel_route_leaves_at_permission_expiry_and_returns_with_a_new_permission() {
    let mut h = enabled();
    let (c, p) = bound(&mut h);
    h.advance(Duration::from_secs(300) - MS);
    assert_eq!(h.shell.kernel.len(), 1);
    h.advance(2 * MS);
    assert!(
        h.shell.kernel.is_empty(),
        "the permission expired; the channel lives"
    );
    assert_success(&h.permit(c, "bob", &[p]));
    assert_eq!(h.shell.kernel.len(), 1);
    assert_eq!(h.shell.kernel_added.len(), 2);
}

#[test]
fn kernel_route_leaves_with_its_allocation_for_every_end_reason() {
    type End = fn(&mut Harness, ClientId);
    let ends: [(EndReason, End); 5] = [
        (EndReason::Expired, |h, _| {
            h.advance(Duration::from_secs(600))
        }),
        (EndReason::Deleted, |h, c| {
            let creds = h.creds("bob");
            let r = h.request(
                c,
                METHOD_REFRESH,
                vec![Box::new(Lifetime(Duration::ZERO))],
                Some(&creds),
            );
            assert_success(&r);
        }),
        (EndReason::Admin, |h, _| {
            assert_eq!(h.server.end_user_allocations(h.time(), "bob"), 1);
            h.advance(Duration::ZERO);
        }),
        (EndReason::Shutdown, |h, _| {
            h.server.shutdown(h.time());
            h.advance(Duration::ZERO);
        }),
        (EndReason::Error, |h, c| {
            h.server.client_disconnected(h.time(), c, false);
            h.advance(Duration::ZERO);
        }),
    ];
    for (reason, end) in ends {
        let mut h = enabled();
        let (c, _) = bound(&mut h);
        assert_eq!(h.shell.kernel.len(), 1);
        end(&mut h, c);
        assert!(h.shell.kernel.is_empty(), "{reason:?}");
        assert_eq!(h.shell.ended.len(), 1, "{reason:?}");
        assert_eq!(h.shell.ended[0].reason, reason);
    }
}

#[test]
fn no_kernel_route_for_tcp_clients_when_off_under_a_cap_or_relay_to_relay() {
    let mut tcp = enabled();
    let c = ClientId {
        transport: Transport::Tcp,
        ..tcp.client(1)
    };
    tcp.allocate(c, "bob");
    assert_success(&tcp.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:5000")));
    assert!(tcp.shell.kernel_added.is_empty(), "TCP");

    let mut off = harness();
    bound(&mut off);
    assert!(off.shell.kernel_added.is_empty(), "disabled");

    // The kernel does not meter: a capped allocation stays on the socket path.
    let mut capped = harness_with(CoreConfig {
        fastpath: true,
        max_bytes_per_sec_per_allocation: Some(1_000_000),
        ..config()
    });
    bound(&mut capped);
    assert!(capped.shell.kernel_added.is_empty(), "bandwidth cap");

    // XDP_TX would send a relay-to-relay packet to the wire, not back into this host.
    let mut own = harness_with(CoreConfig {
        fastpath: true,
        policy: PeerPolicy::new(vec!["0.0.0.0/0".parse().unwrap()], vec![]),
        ..config()
    });
    let c = own.client(1);
    own.allocate(c, "bob");
    assert_success(&own.bind_channel(c, "bob", 0x4001, peer("203.0.113.5:50010")));
    assert!(own.shell.kernel_added.is_empty(), "relay to relay");
}

#[test]
fn kernel_counters_are_added_once_to_the_allocation_and_the_relayed_totals() {
    let mut h = enabled();
    let (c, p) = bound(&mut h);
    let relay = h.relay_bind_addr(c);
    // One packet each way on the socket path, as before the route or beside it.
    let cd = channel_data(0x4001, b"12345");
    let act = h.server.handle_client_packet(h.time(), c, &cd);
    assert!(matches!(act, ClientAction::Forward { .. }));
    h.server.handle_peer_packet(h.time(), relay, p, b"123");
    let id = *h.shell.kernel.keys().next().unwrap();
    let totals = |up: u64, down: u64| Traffic {
        bytes_to_peer: 100 * up,
        packets_to_peer: up,
        bytes_to_client: 10 * down,
        packets_to_client: down,
    };
    h.shell.kernel.get_mut(&id).unwrap().1 = totals(3, 2);
    h.shell.read_kernel(&mut h.server);
    // Read twice without new packets: counted once.
    h.shell.read_kernel(&mut h.server);
    assert_eq!(h.server.counters().relayed_packets[0], [4, 3]);
    assert_eq!(h.server.counters().relayed_bytes[0], [305, 23]);
    assert_eq!(h.server.fastpath_packets(), [3, 2]);
    // Packets the kernel took after the last read arrive with the removal's final read.
    h.shell.kernel.get_mut(&id).unwrap().1 = totals(5, 2);
    h.server.end_user_allocations(h.time(), "bob");
    h.advance(Duration::ZERO);
    let s = &h.shell.ended[0];
    assert_eq!(
        s.traffic,
        Traffic {
            bytes_to_peer: 505,
            packets_to_peer: 6,
            bytes_to_client: 23,
            packets_to_client: 3,
        }
    );
    assert_eq!(h.server.counters().relayed_bytes[0], [505, 23]);
    assert_eq!(h.server.fastpath_packets(), [5, 2]);
}

#[test]
fn a_reload_that_denies_the_peer_removes_its_route() {
    let mut h = enabled();
    bound(&mut h);
    assert_eq!(h.shell.kernel.len(), 1);
    let deny = PeerPolicy::new(vec![], vec!["198.51.100.0/24".parse().unwrap()]);
    h.server.reconfigure(config().auth, deny);
    h.advance(Duration::ZERO);
    assert!(h.shell.kernel.is_empty());
}

#[test]
fn an_imported_allocation_puts_its_live_channels_back_into_the_kernel() {
    let mut a = enabled();
    let (c, p) = bound(&mut a);
    a.advance(Duration::from_secs(10));
    let state = a.server.export_state(a.time());
    let mut b = enabled();
    b.now = a.now + Duration::from_secs(1);
    b.unix = a.unix + 1;
    let report = b.server.import_state(b.time(), state);
    b.shell.bound.extend(report.relays.iter().copied());
    b.advance(Duration::ZERO);
    let routes: Vec<_> = b
        .shell
        .kernel
        .values()
        .map(|(r, _)| (r.client, r.peer))
        .collect();
    assert_eq!(routes, [(c, p)]);
}

#[test]
fn a_handed_over_allocation_leaves_this_processs_kernel_without_ending() {
    let mut a = enabled();
    bound(&mut a);
    let id = *a.shell.kernel.keys().next().unwrap();
    a.shell.kernel.get_mut(&id).unwrap().1 = Traffic {
        bytes_to_peer: 40,
        packets_to_peer: 4,
        ..Traffic::default()
    };
    // The shell reads the detached program's final counters, then the shard exports.
    a.shell.read_kernel(&mut a.server);
    let state = a.server.export_state(a.time());
    assert_eq!(state.allocations[0].traffic.packets_to_peer, 4);
    let serials: Vec<u64> = state.allocations.iter().map(|s| s.serial).collect();
    assert_eq!(a.server.forget_handed_over(&serials, false), 1);
    a.advance(Duration::ZERO);
    assert!(
        a.shell.kernel.is_empty(),
        "the route left this process's maps"
    );
    assert!(
        a.shell.ended.is_empty(),
        "no session line: the call goes on elsewhere"
    );
    assert_eq!(a.server.fastpath_routes(), 0);
}
