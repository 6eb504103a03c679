//! Bandwidth limits on the relay path: a token bucket per allocation (owned by its shard,
//! plain integers) and one per user id shared by every shard (atomics). Both are absent
//! when not configured, so an unlimited server pays one untaken branch per packet.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Budgets count in byte-microseconds: a byte costs 1,000,000 units and every
/// microsecond adds `rate` units, so refills are exact (no remainder lost between
/// frequent packets). The burst is one second's worth.
const UNIT: u64 = 1_000_000;

/// One allocation's budget.
#[derive(Debug, Clone)]
pub struct Bucket {
    rate: u64,
    units: u64,
    last: Instant,
}

impl Bucket {
    pub fn new(bytes_per_sec: u64, now: Instant) -> Self {
        Bucket {
            rate: bytes_per_sec,
            units: bytes_per_sec.saturating_mul(UNIT),
            last: now,
        }
    }

    /// A bucket at a level carried over from another process (handover), capped at this
    /// rate's burst.
    pub fn restored(bytes_per_sec: u64, units: u64, now: Instant) -> Self {
        Bucket {
            rate: bytes_per_sec,
            units: units.min(bytes_per_sec.saturating_mul(UNIT)),
            last: now,
        }
    }

    /// Its rate and its level at `now` (refilled up to then), in byte-microseconds.
    pub fn level(&self, now: Instant) -> (u64, u64) {
        let mut b = self.clone();
        b.refill(now);
        (b.rate, b.units)
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_micros() as u64;
        self.units = self
            .units
            .saturating_add(elapsed.saturating_mul(self.rate))
            .min(self.rate.saturating_mul(UNIT));
        self.last = now;
    }

    /// Takes `len` bytes from the budget; false when there are not that many left.
    pub fn take(&mut self, now: Instant, len: usize) -> bool {
        self.refill(now);
        let cost = (len as u64).saturating_mul(UNIT);
        if self.units >= cost {
            self.units -= cost;
            true
        } else {
            false
        }
    }

    /// Gives back what `take` took (the user's budget refused the packet after all).
    fn refund(&mut self, len: usize) {
        self.units = self
            .units
            .saturating_add((len as u64).saturating_mul(UNIT))
            .min(self.rate.saturating_mul(UNIT));
    }
}

/// One user id's budget, shared by the shards its allocations live on.
#[derive(Debug)]
pub struct SharedBucket {
    rate: u64,
    epoch: Instant,
    units: AtomicU64,
    /// Microseconds since `epoch` at the last refill.
    last_us: AtomicU64,
}

impl SharedBucket {
    fn new(bytes_per_sec: u64, now: Instant) -> Self {
        SharedBucket {
            rate: bytes_per_sec,
            epoch: now,
            units: AtomicU64::new(bytes_per_sec.saturating_mul(UNIT)),
            last_us: AtomicU64::new(0),
        }
    }

    pub fn take(&self, now: Instant, len: usize) -> bool {
        let now_us = now.saturating_duration_since(self.epoch).as_micros() as u64;
        let last = self.last_us.load(Ordering::Relaxed);
        let cap = self.rate.saturating_mul(UNIT);
        // Whoever moves the refill mark adds the units for that interval, exactly once.
        if now_us > last
            && self
                .last_us
                .compare_exchange(last, now_us, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let add = (now_us - last).saturating_mul(self.rate);
            let _ = self
                .units
                .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| {
                    Some(u.saturating_add(add).min(cap))
                });
        }
        let cost = (len as u64).saturating_mul(UNIT);
        self.units
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |u| u.checked_sub(cost))
            .is_ok()
    }
}

/// What limits one allocation: its own budget and its user's, either or both.
#[derive(Debug)]
pub struct Limits {
    pub own: Option<Bucket>,
    pub user: Option<Arc<SharedBucket>>,
}

impl Limits {
    /// Both budgets must have room. The allocation's own (a plain integer) is asked first
    /// and refunded if the user's refuses, so a packet one budget refuses spends neither:
    /// a capped allocation being flooded must not drain its user's other allocations.
    pub fn take(&mut self, now: Instant, len: usize) -> bool {
        if let Some(own) = &mut self.own
            && !own.take(now, len)
        {
            return false;
        }
        if let Some(u) = &self.user
            && !u.take(now, len)
        {
            if let Some(own) = &mut self.own {
                own.refund(len);
            }
            return false;
        }
        true
    }
}

/// The per-user buckets, by quota key (user id). Looked up once per allocation.
#[derive(Debug, Default)]
pub struct UserBuckets {
    buckets: Mutex<HashMap<String, Arc<SharedBucket>>>,
}

impl UserBuckets {
    pub fn get(&self, user: &str, bytes_per_sec: u64, now: Instant) -> Arc<SharedBucket> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        // Buckets nobody holds any more are dropped here, so the map tracks live users.
        map.retain(|_, b| Arc::strong_count(b) > 1);
        map.entry(user.to_owned())
            .or_insert_with(|| Arc::new(SharedBucket::new(bytes_per_sec, now)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_passes_a_burst_of_one_second_then_the_rate() {
        let t0 = crate::testkit::start_time();
        let mut b = Bucket::new(10_000, t0);
        assert_eq!((0..20).filter(|_| b.take(t0, 1000)).count(), 10);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..20).filter(|_| b.take(t1, 1000)).count(), 5);
    }

    #[test]
    fn shared_bucket_is_one_budget_for_every_holder() {
        let t0 = crate::testkit::start_time();
        let users = UserBuckets::default();
        let a = users.get("bob", 10_000, t0);
        let b = users.get("bob", 10_000, t0);
        let passed = (0..20)
            .filter(|i| {
                if i % 2 == 0 {
                    a.take(t0, 1000)
                } else {
                    b.take(t0, 1000)
                }
            })
            .count();
        assert_eq!(passed, 10);
        let t1 = t0 + Duration::from_millis(300);
        assert_eq!((0..20).filter(|_| a.take(t1, 1000)).count(), 3);
    }
}
