//! The clock. The core never reads it: the shell (and the core's tests, for a starting
//! point) get time here and pass it in.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub fn now() -> Instant {
    Instant::now()
}

/// Seconds since the Unix epoch (REST credential expiry, nonces).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Milliseconds since the Unix epoch (the fleet registry's heartbeats).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Both clocks, read together: the one value the shell passes into the core.
pub fn time() -> crate::relay::Time {
    crate::relay::Time {
        mono: now(),
        unix: unix_now(),
    }
}
