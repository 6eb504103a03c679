//! The one time value every input carries.

use std::time::Instant;

/// The time, as the shell reads it once per event: monotonic for timers and unix
/// seconds for credential and nonce expiry. The core never reads a clock itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub mono: Instant,
    pub unix: u64,
}
