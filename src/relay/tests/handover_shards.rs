//! Handover across shards (the states of N cores onto M port slices) and of what the
//! relay path meters (bandwidth buckets).

use super::*;
use crate::relay::handover::{self, CoreState, split};

const SEC: Duration = Duration::from_secs(1);

/// A core owning `ports`, counting against the shared `quotas` (as shards do).
fn shard(ports: std::ops::RangeInclusive<u16>, quotas: &std::sync::Arc<quota::Quotas>) -> Harness {
    harness_with(CoreConfig {
        ports,
        quotas: quotas.clone(),
        ..config()
    })
}

/// Two shards (ports 50000-50049 and 50050-50099) with one allocation each, bob's on
/// client 1 and carol's on client 2, both exported; the second 4 s after the first.
fn two_shard_states() -> (Harness, [CoreState; 2]) {
    let q = std::sync::Arc::new(quota::Quotas::new(100, 5));
    let (mut a0, mut a1) = (shard(50000..=50049, &q), shard(50050..=50099, &q));
    a1.now = a0.now;
    let (c1, c2) = (a0.client(1), a0.client(2));
    a0.allocate(c1, "bob");
    a1.allocate(c2, "carol");
    let s0 = a0.server.export_state(a0.time());
    a1.advance(4 * SEC);
    let s1 = a1.server.export_state(a1.time());
    (a1, [s0, s1])
}

#[test]
fn handover_split_onto_the_same_slices_is_the_identity() {
    let (_, [s0, s1]) = two_shard_states();
    let slices = [50000..=50049, 50050..=50099];
    let out = split::by_port_slice(vec![s0.clone(), s1.clone()], &slices);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1].allocations, s1.allocations);
    assert_eq!(out[1].exported_unix, s1.exported_unix);
    // The first state is re-based to the later export: 4 s less of everything.
    let (before, after) = (&s0.allocations[0], &out[0].allocations[0]);
    assert_eq!(
        after.lifetime_remaining_ms,
        before.lifetime_remaining_ms - 4000
    );
    assert_eq!(after.age_ms, before.age_ms + 4000);
    // Counters are summed into shard 0, so their total (what Prometheus sees) holds.
    assert_eq!(out[0].counters["allocations_created.udp"], 2);
    assert!(out[1].counters.is_empty());
}

#[test]
fn handover_merges_two_shards_into_one() {
    let (a1, states) = two_shard_states();
    let merged = split::by_port_slice(states.to_vec(), &[50000..=50099]);
    let mut b = harness_with(config());
    b.now = a1.now + SEC;
    b.unix = a1.unix + 1;
    let report = b
        .server
        .import_state(b.time(), merged.into_iter().next().unwrap());
    b.shell.bound.extend(report.relays.iter().copied());
    assert_eq!(report.imported, 2);
    // Both shards numbered their first allocation 1: one gets a new serial.
    assert_eq!(report.renumbered.len(), 1);
    assert_eq!(b.server.counters().allocations_created[0], 2);
    assert_eq!(b.server.cfg.quotas.in_use(), 2);
    let mut serials: Vec<u64> = b.server.allocations().map(|a| a.serial).collect();
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 2);
    // Both end on time, each releasing its own relay socket.
    b.advance(Duration::from_secs(600));
    assert_eq!(b.shell.ended.len(), 2);
    assert!(b.shell.bound.is_empty());
}

#[test]
fn handover_allocation_in_no_new_slice_is_reported_by_shard_0() {
    let (_, states) = two_shard_states();
    let out = split::by_port_slice(states.to_vec(), &[50000..=50049, 50200..=50299]);
    assert_eq!(out[0].allocations.len(), 2);
    let mut b = harness_with(CoreConfig {
        ports: 50000..=50049,
        ..config()
    });
    b.unix = out[0].exported_unix;
    let report = b.server.import_state(b.time(), out[0].clone());
    assert_eq!(report.imported, 1);
    assert_eq!(
        report.not_imported_counts(),
        vec![("port_outside_slice", 1)]
    );
}

#[test]
fn handover_keeps_the_bandwidth_bucket_level() {
    let cfg = || CoreConfig {
        max_bytes_per_sec_per_allocation: Some(10_000),
        ..config()
    };
    let mut a = harness_with(cfg());
    let c = a.client(1);
    let p = peer("198.51.100.9:5000");
    a.allocate(c, "bob");
    assert_success(&a.bind_channel(c, "bob", 0x4001, p));
    let payload = [0u8; 1000];
    let send = |h: &mut Harness| {
        let cd = channel_data(0x4001, &payload);
        matches!(
            h.server.handle_client_packet(h.time(), c, &cd),
            ClientAction::Forward { .. }
        )
    };
    // A second's burst is 10 packets: 8 now, 2 left for after the handover.
    assert_eq!((0..8).filter(|_| send(&mut a)).count(), 8);
    let state = handover::decode(&handover::encode(&a.server.export_state(a.time()))).unwrap();
    assert_eq!(
        state.allocations[0].bandwidth.unwrap().units,
        2000 * 1_000_000
    );
    let mut b = harness_with(cfg());
    (b.now, b.unix) = (a.now, a.unix);
    b.server.import_state(b.time(), state.clone());
    assert_eq!((0..5).filter(|_| send(&mut b)).count(), 2);
    // A gap of 0.3 s refills 3000 bytes on top of the 2000.
    let mut late = harness_with(cfg());
    (late.now, late.unix) = (a.now, a.unix);
    let mut aged = state;
    split::age(&mut aged, Duration::from_millis(300));
    late.server.import_state(late.time(), aged);
    assert_eq!((0..10).filter(|_| send(&mut late)).count(), 5);
}
