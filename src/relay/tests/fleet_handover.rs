//! The fleet-wide per-user quota across a handover (`[cluster]`): the new process takes
//! every handed-over allocation's slot over without a cap check, so the user's count
//! neither dips nor doubles, and the old one gives its names back only once they are
//! adopted (an exec handover), never when the next process is still to start (systemd's
//! store).

use std::sync::{Arc, Mutex};

use super::*;
use crate::relay::handover;
use crate::testkit::shell::FakeFleet;

/// A node of a fleet allowing `max` allocations per user, as node `n`.
fn node(f: &Arc<Mutex<FakeFleet>>, n: usize, cfg: CoreConfig) -> Harness {
    let mut h = harness_with(CoreConfig {
        fleet_quota: true,
        ..cfg
    });
    h.shell.fleet = Some((f.clone(), n));
    h
}

fn fleet(max: usize) -> Arc<Mutex<FakeFleet>> {
    Arc::new(Mutex::new(FakeFleet {
        max_per_user: max,
        ..Default::default()
    }))
}

/// Node 1 (`cfg`) imports node 0's state a second later, through the byte format; its
/// shell runs the commands the import queued. Returns it and the exported serials.
fn take_over(a: &Harness, f: &Arc<Mutex<FakeFleet>>, cfg: CoreConfig) -> (Harness, Vec<u64>) {
    let state = a.server.export_state(a.time());
    let serials = state.allocations.iter().map(|x| x.serial).collect();
    let state = handover::decode(&handover::encode(&state)).expect("decodes");
    let mut b = node(f, 1, cfg);
    b.shell.fleet_previous = Some(0);
    b.now = a.now + Duration::from_secs(1);
    b.unix = a.unix + 1;
    let report = b.server.import_state(b.time(), state);
    b.shell.bound.extend(report.relays.iter().copied());
    let t = b.time();
    b.shell.run(&mut b.server, t);
    (b, serials)
}

fn allocate_code(h: &mut Harness, n: u16, user: &str) -> Option<u16> {
    let (c, creds) = (h.client(n), h.creds(user));
    error_code(&h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds)))
}

fn users_slots(f: &Arc<Mutex<FakeFleet>>, node: usize) -> usize {
    f.lock()
        .unwrap()
        .slots
        .keys()
        .filter(|(n, _)| *n == node)
        .count()
}

#[test]
fn imported_allocations_keep_their_fleet_slots_without_a_cap_check() {
    let f = fleet(2);
    let mut a = node(&f, 0, config());
    for n in [1, 2] {
        let c = a.client(n);
        a.allocate(c, "bob");
    }
    // bob is at the cap: adopting must not ask for room, and must not count him twice.
    let (mut b, serials) = take_over(&a, &f, config());
    assert_eq!((users_slots(&f, 0), users_slots(&f, 1)), (0, 2));
    // The old process gives its names back once told the new one took over: no-ops now.
    assert_eq!(a.server.forget_handed_over(&serials, true), 2);
    let t = a.time();
    a.shell.run(&mut a.server, t);
    assert_eq!(f.lock().unwrap().slots.len(), 2, "neither lost nor doubled");

    assert_eq!(
        allocate_code(&mut b, 3, "bob"),
        Some(486),
        "still at the cap"
    );
    let (c, creds) = (b.client(1), b.creds("bob"));
    let zero: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    assert_eq!(
        error_code(&b.request(c, METHOD_REFRESH, zero, Some(&creds))),
        None
    );
    assert_eq!(
        users_slots(&f, 1),
        1,
        "an adopted slot goes back when it ends"
    );
    assert_eq!(allocate_code(&mut b, 3, "bob"), None);
    b.advance(Duration::from_secs(3600));
    assert!(f.lock().unwrap().slots.is_empty(), "every slot back");
}

#[test]
fn handing_over_to_systemds_store_leaves_the_fleet_slots_for_the_next_process() {
    let f = fleet(5);
    let mut a = node(&f, 0, config());
    let c = a.client(1);
    a.allocate(c, "bob");
    let serials: Vec<u64> = (a.server.export_state(a.time()).allocations.iter())
        .map(|x| x.serial)
        .collect();
    // The next process is not running yet: giving the slot back now would dip the count.
    assert_eq!(a.server.forget_handed_over(&serials, false), 1);
    let mut released = Vec::new();
    while let Some(cmd) = a.server.poll_command() {
        released.push(matches!(cmd, Command::ReleaseFleetSlot { .. }));
    }
    assert!(!released.contains(&true));
    assert_eq!(users_slots(&f, 0), 1);
}

#[test]
fn an_allocation_that_is_not_imported_gives_its_fleet_slot_back() {
    let f = fleet(5);
    let mut a = node(&f, 0, config());
    let (c1, c2) = (a.client(1), a.client(2));
    a.allocate(c1, "bob");
    a.allocate(c2, "bob");
    let r1 = a.relay_bind_addr(c1);
    // The new range holds only the first one's port: the second ends at the handover.
    let cfg = CoreConfig {
        ports: r1.port()..=r1.port(),
        ..config()
    };
    let (mut b, _) = take_over(&a, &f, cfg);
    assert_eq!((users_slots(&f, 0), users_slots(&f, 1)), (0, 1));
    b.advance(Duration::from_secs(3600));
    assert!(f.lock().unwrap().slots.is_empty());
}

#[test]
fn a_renumbered_allocation_adopts_its_slot_under_the_new_serial() {
    let f = fleet(5);
    let mut a = node(&f, 0, config());
    let c = a.client(1);
    a.allocate(c, "bob");
    let state = a.server.export_state(a.time());
    let was = state.allocations[0].serial;
    // A core that already uses that serial (two shards' states merged): renumbered.
    let mut b = node(&f, 1, config());
    b.shell.fleet_previous = Some(0);
    b.server.next_token = was;
    let bobs = a.relay_bind_addr(c).port();
    b.shell.busy_ports.insert(bobs);
    let c9 = b.client(9);
    b.allocate(c9, "carol");
    b.shell.busy_ports.remove(&bobs);
    let report = b.server.import_state(b.time(), state);
    let t = b.time();
    b.shell.run(&mut b.server, t);
    assert_eq!(report.imported, 1);
    let (old, now) = report.renumbered[0];
    assert_eq!(old, was);
    assert!(f.lock().unwrap().slots.contains_key(&(1, now)));
    assert!(!f.lock().unwrap().slots.contains_key(&(0, was)));
}
