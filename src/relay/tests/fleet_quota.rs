//! The fleet-wide per-user quota as the core sees it: an Allocate waits for the fleet's
//! answer before binding, a refusal gives back what the Allocate held, and every slot
//! granted is given back exactly once (the fake fleet fails a test on a double release).

use std::sync::{Arc, Mutex};

use super::*;
use crate::testkit::shell::FakeFleet;

/// Harnesses for `nodes` nodes of one fleet allowing `max` allocations per user.
fn fleet(nodes: usize, max: usize) -> (Arc<Mutex<FakeFleet>>, Vec<Harness>) {
    let f = Arc::new(Mutex::new(FakeFleet {
        max_per_user: max,
        ..Default::default()
    }));
    let hs = (0..nodes)
        .map(|n| {
            let mut h = harness_with(CoreConfig {
                fleet_quota: true,
                ..config()
            });
            h.shell.fleet = Some((f.clone(), n));
            h
        })
        .collect();
    (f, hs)
}

fn allocate_code(h: &mut Harness, n: u16, user: &str) -> Option<u16> {
    let (c, creds) = (h.client(n), h.creds(user));
    error_code(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)))
}

#[test]
fn the_per_user_quota_counts_across_nodes_and_comes_back_when_an_allocation_ends() {
    let (f, mut hs) = fleet(2, 2);
    for n in [1, 2] {
        let c = hs[0].client(n);
        hs[0].allocate(c, "bob");
    }
    // Node 1's own count of bob is 0 of 5: the fleet's says 2 of 2.
    assert_eq!(allocate_code(&mut hs[1], 1, "bob"), Some(486));
    assert_eq!(hs[1].server.counters().quota_rejections, 1);
    assert!(
        hs[1].shell.bound.is_empty(),
        "refused before any relay socket"
    );
    assert_eq!(allocate_code(&mut hs[1], 2, "carol"), None);

    let (c, creds) = (hs[0].client(1), hs[0].creds("bob"));
    let zero: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    assert_eq!(
        error_code(&hs[0].request(c, METHOD_REFRESH, zero, Some(&creds))),
        None
    );
    assert_eq!(f.lock().unwrap().slots.len(), 2, "bob's slot went back");
    assert_eq!(allocate_code(&mut hs[1], 3, "bob"), None);
    hs[1].advance(Duration::from_secs(3600));
    assert_eq!(
        f.lock().unwrap().slots.len(),
        1,
        "expired allocations give theirs back"
    );
}

#[test]
fn fleet_unavailable_when_closed_is_508_and_gives_back_the_local_slot() {
    let (f, mut hs) = fleet(1, 5);
    f.lock().unwrap().down = true;
    let h = &mut hs[0];
    let (c, creds) = (h.client(1), h.creds("bob"));
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(508));
    let mut reason = stun::error_code::ErrorCodeAttribute::default();
    reason.get_from(&r).unwrap();
    assert_eq!(reason.reason, b"Fleet Quota Unavailable");
    assert!(h.shell.bound.is_empty());
    assert_eq!(h.server.cfg.quotas.user_in_use(&creds.username), 0);
    f.lock().unwrap().down = false;
    assert_eq!(allocate_code(h, 2, "bob"), None);
}

#[test]
fn a_slot_granted_to_an_allocate_that_is_gone_goes_straight_back() {
    let (_f, mut hs) = fleet(1, 5);
    let h = &mut hs[0];
    let t = h.time();
    h.server.fleet_slot_answered(t, 4242, FleetSlot::Granted);
    assert_eq!(
        h.server.poll_command(),
        Some(Command::ReleaseFleetSlot { token: 4242 })
    );
    h.server.fleet_slot_answered(t, 4243, FleetSlot::Full);
    assert_eq!(h.server.poll_command(), None);
}
