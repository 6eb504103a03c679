//! A per-source-prefix rate limit for the answers the server gives without authentication
//! (401 challenges, 400/420/438, Binding): a spoofed source must not be able to turn the
//! server into a reflector. A fixed table of token buckets indexed by a keyed hash of the
//! source's /24 (IPv4) or /56 (IPv6): memory is the same whatever the number of sources,
//! and nothing is kept per client.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::time::Instant;

const BUCKETS: usize = 4096;

#[derive(Clone, Copy, Default)]
struct Bucket {
    /// Thousandths of a token, so refill needs no division.
    millitokens: u64,
    /// Milliseconds since `epoch` at the last refill.
    last_ms: u64,
}

pub struct PrefixLimiter {
    buckets: Box<[Bucket]>,
    hasher: foldhash::fast::RandomState,
    /// The first time it was asked (the core never reads the clock).
    epoch: Option<Instant>,
    /// Answers per second per prefix; 0 turns the limit off.
    rate: u64,
    burst: u64,
}

impl PrefixLimiter {
    pub fn new(rate_per_sec: u32) -> Self {
        let rate = rate_per_sec as u64;
        PrefixLimiter {
            buckets: vec![
                Bucket {
                    millitokens: 2 * rate * 1000,
                    last_ms: 0,
                };
                BUCKETS
            ]
            .into_boxed_slice(),
            hasher: foldhash::fast::RandomState::default(),
            epoch: None,
            rate,
            burst: 2 * rate,
        }
    }

    /// Takes one answer from `ip`'s prefix budget; false when it is spent.
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        if self.rate == 0 {
            return true;
        }
        let prefix: u128 = match ip.to_canonical() {
            IpAddr::V4(v4) => u32::from(v4) as u128 >> 8,
            IpAddr::V6(v6) => (u128::from(v6) >> 72) | (1 << 127),
        };
        self.allow_key(now, prefix)
    }

    /// Takes one from the budget of whatever `key` names (a user id, say). Keys share a
    /// bucket only when their keyed hashes collide.
    pub fn allow_key(&mut self, now: Instant, key: impl std::hash::Hash) -> bool {
        if self.rate == 0 {
            return true;
        }
        let i = self.hasher.hash_one(key) as usize % BUCKETS;
        let epoch = *self.epoch.get_or_insert(now);
        let now_ms = now.saturating_duration_since(epoch).as_millis() as u64;
        let b = &mut self.buckets[i];
        let refill = now_ms.saturating_sub(b.last_ms) * self.rate;
        b.millitokens = (b.millitokens + refill).min(self.burst * 1000);
        b.last_ms = now_ms;
        if b.millitokens >= 1000 {
            b.millitokens -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_prefix_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let t0 = crate::testkit::start_time();
        let mut l = PrefixLimiter::new(10);
        let a: IpAddr = "198.51.100.7".parse().unwrap();
        let same_prefix: IpAddr = "198.51.100.200".parse().unwrap();
        let allowed = (0..100).filter(|_| l.allow(t0, a)).count();
        assert_eq!(allowed, 20, "burst of two seconds' worth");
        assert!(!l.allow(t0, same_prefix), "the /24 shares one budget");
        // Another prefix (unless the keyed hash put it in the same bucket, 1 in 4096).
        let other: IpAddr = "203.0.113.9".parse().unwrap();
        assert!(l.allow(t0, other));
        let later = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| l.allow(later, a)).count(), 5);
    }

    #[test]
    fn ipv6_sources_are_limited_per_56() {
        let t0 = crate::testkit::start_time();
        let mut l = PrefixLimiter::new(1);
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:ff::2".parse().unwrap();
        assert!(l.allow(t0, a) && l.allow(t0, a));
        assert!(!l.allow(t0, b), "same /56");
    }

    #[test]
    fn zero_rate_is_off() {
        let t0 = crate::testkit::start_time();
        let mut l = PrefixLimiter::new(0);
        assert!((0..10_000).all(|_| l.allow(t0, "192.0.2.1".parse().unwrap())));
    }
}
