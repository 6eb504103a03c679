//! States of N shards onto M: by relay port slice.
//!
//! A relay socket belongs to the shard whose slice holds its port, so an allocation goes
//! to the new shard whose slice holds its relay port. With the same shard count and the
//! same port range (a restart or an upgrade that keeps the config) the slices are the
//! same and this is the identity: old shard i's state goes to new shard i.
//!
//! Clients are the other half. A UDP client's packets reach the shard whose listener
//! socket the kernel's SO_REUSEPORT hash picks; with the same listener sockets handed
//! over in the same order (phase 2) that is the same shard as before. With another shard
//! count the hash spreads clients differently, and an allocation placed by its relay port
//! may then see its client's packets arrive on another shard, which knows nothing of it:
//! so a shard count change is only safe for calls once the shell steers clients by
//! allocation (not done yet); keep the shard count for a handover. TCP/TLS connections
//! travel with their allocation, so they have no such problem.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::counters;
use super::format::CoreState;

/// Redistributes the states of N shards over M port slices (`slices[i]` is new shard i's).
/// An allocation or reservation whose port is in no slice goes to shard 0, whose import
/// reports it (`PortOutsideSlice`), so that it is logged once. Deadlines are re-based to
/// the latest export, counters summed into shard 0 (the metrics are sums over shards).
pub fn by_port_slice(states: Vec<CoreState>, slices: &[RangeInclusive<u16>]) -> Vec<CoreState> {
    let Some(first) = states.first() else {
        return Vec::new();
    };
    let latest = states.iter().map(|s| s.exported_unix).max().unwrap_or(0);
    let mut out: Vec<CoreState> = slices
        .iter()
        .map(|_| CoreState {
            exported_unix: latest,
            token_key: first.token_key.clone(),
            allocations: Vec::new(),
            reservations: Vec::new(),
            counters: Default::default(),
        })
        .collect();
    if out.is_empty() {
        return out;
    }
    let target = |port: u16| slices.iter().position(|s| s.contains(&port)).unwrap_or(0);
    for mut s in states {
        let behind = Duration::from_secs(latest - s.exported_unix);
        age(&mut s, behind);
        counters::sum(&mut out[0].counters, &s.counters);
        for a in s.allocations {
            let port = a.relay_v4.or(a.relay_v6).map_or(0, |r| r.port());
            out[target(port)].allocations.push(a);
        }
        for r in s.reservations {
            out[target(r.addr.port())].reservations.push(r);
        }
    }
    for s in &mut out {
        s.allocations.sort_by_key(|a| a.serial);
        s.reservations.sort_by_key(|r| (r.remaining_ms, r.token));
    }
    out
}

/// Moves a state `by` into the future: every remaining duration shrinks by it (to zero:
/// what was due then is due at once), every age grows, buckets refill. Exported at T, aged by d, it
/// reads as if exported at T + d.
pub fn age(state: &mut CoreState, by: Duration) {
    let ms = by.as_millis().min(i64::MAX as u128) as u64;
    state.exported_unix = state.exported_unix.saturating_add(by.as_secs());
    for a in &mut state.allocations {
        a.age_ms = a.age_ms.saturating_add(ms);
        a.lifetime_remaining_ms = a.lifetime_remaining_ms.saturating_sub(ms);
        if let Some(s) = &mut a.session_end {
            s.remaining_ms = s.remaining_ms.saturating_sub(ms);
        }
        for p in &mut a.permissions {
            p.remaining_ms = p.remaining_ms.saturating_sub(ms);
        }
        for c in &mut a.channels {
            c.remaining_ms = c.remaining_ms.saturating_sub(ms as i64);
        }
        // Nothing was relayed meanwhile: the bucket refilled (rate units per microsecond).
        if let Some(b) = &mut a.bandwidth {
            let refill = ms.saturating_mul(1000).saturating_mul(b.rate_bytes_per_sec);
            let cap = b.rate_bytes_per_sec.saturating_mul(1_000_000);
            b.units = b.units.saturating_add(refill).min(cap);
        }
    }
    for r in &mut state.reservations {
        r.remaining_ms = r.remaining_ms.saturating_sub(ms);
    }
}
