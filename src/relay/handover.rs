//! Handover (issue 18, the core's part): a core's state as plain data that a new process
//! imports, so that its calls go on through the same relay addresses and channels.
//!
//! - `Core::export_state(time)` copies everything an allocation needs to go on
//!   (`format::CoreState`); it changes nothing, so if the new process fails the old one
//!   just keeps serving. `format::encode` / `format::decode` make it bytes, versioned.
//! - `Core::import_state(time, state)` re-creates them in a core (normally fresh) and
//!   says in an `ImportReport` what it took, what it did not and why, and which relay
//!   addresses the core now owns: the shell must hold a socket for each (phase 2 passes
//!   the old process's file descriptors, keyed by address). Deadlines travel as remaining
//!   durations from `exported_unix`; the import subtracts the wall-clock time since.
//! - `split::by_port_slice` maps the states of N shards onto M.
//!
//! Not carried, and why:
//! - Pending Allocates (waiting for BindRelay or a fleet slot): in flight. The client
//!   retransmits (same transaction id) and the new process allocates afresh; the old
//!   process's sockets bound for it are not in the state, so the shell closes them.
//! - The per-user bandwidth buckets (`UserBuckets`, shared by the shards): restart full,
//!   so a user may get one extra second's burst. The allocation's own bucket is carried.
//! - The unauthenticated-answer rate limiter, the port RNG, Data indication ids: start
//!   afresh (short windows or random by design). Nonces are stateless: with REST secrets
//!   they stay valid; static users' depend on `token_key` (see `ImportReport`).
//! - Draining, alternates, revocations: the shell sets them from config and the fleet.
//!
//! Left to the shell (phase 2): which allocations to offer. A TCP/TLS allocation lives as
//! long as its connection; if the connection is not handed over, leave it out of the
//! state (`state.allocations.retain(..)`) and let the old process serve it. A `listener`
//! index means the same only with the same listeners in the same order.
//!
//! Fleet slots (`[cluster]`): every allocation holds one, named by (shard, serial). The
//! import asks the shell to adopt each (`Command::AdoptFleetSlot`: under its serial here,
//! or given back when not imported), and `forget_handed_over` says whether the old
//! process gives its names back; fleet/quota.rs does both in Redis.
//!
//! Metrics continue: the core's counters travel (by name, `counters.rs`) and are added to
//! the importing core's, so the Prometheus counters (sums over shards) keep counting.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub mod counters;
mod export;
mod forget;
pub mod format;
mod import;
pub mod split;

#[cfg(test)]
mod proptests;

pub use format::{CoreState, HandoverError, decode, encode};

use super::client::ClientId;

crate::label_table::label_table! {
    /// Why an allocation (or reservation) in a state was not imported.
    pub enum NotImportedReason {
        /// Its relay port is outside this core's port slice (the range changed).
        PortOutsideSlice = "port_outside_slice",
        /// This server has no relay address of that family any more.
        FamilyNotConfigured = "family_not_configured",
        /// This server's relay address of that family is another IP now.
        RelayAddressChanged = "relay_address_changed",
        /// The core already holds that relay port (a state imported twice).
        PortTaken = "port_taken",
        /// The core already has an allocation for that 5-tuple.
        DuplicateClient = "duplicate_client",
    }
}

/// An allocation of the state that ended at the handover instead of going on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotImported {
    pub client: ClientId,
    pub username: String,
    pub relays: Vec<SocketAddr>,
    pub reason: NotImportedReason,
}

/// What `Core::import_state` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Allocations now in the core.
    pub imported: usize,
    /// Relay addresses those allocations own: the shell must hold a socket bound to each
    /// (adopt the passed descriptor, or bind). Reservations own no socket.
    pub relays: Vec<SocketAddr>,
    /// Allocations that ended instead, and why (also logged at info).
    pub not_imported: Vec<NotImported>,
    pub reservations: usize,
    pub reservations_not_imported: Vec<(SocketAddr, NotImportedReason)>,
    /// Serials already used in this core (states of two shards merged), given new ones:
    /// (old, new). Their fleet slots (`[cluster]`) are adopted under the new ones.
    pub renumbered: Vec<(u64, u64)>,
    /// Counters this version no longer has, whose counts were not carried.
    pub unknown_counters: Vec<String>,
    /// The state was signed with another `token_key`: RESERVATION-TOKENs handed out
    /// before are refused, and static users get one 438 (then sign with a fresh nonce).
    pub token_key_changed: bool,
    /// Wall-clock time between export and import, taken off every deadline.
    pub gap: Duration,
}

impl ImportReport {
    /// How many allocations ended at the handover, by reason label.
    pub fn not_imported_counts(&self) -> Vec<(&'static str, usize)> {
        NotImportedReason::ALL
            .iter()
            .map(|r| {
                let n = self.not_imported.iter().filter(|n| n.reason == *r).count();
                (r.label(), n)
            })
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Milliseconds from `now` until `at` (0 if it has passed).
fn ms_until(now: Instant, at: Instant) -> u64 {
    at.saturating_duration_since(now).as_millis() as u64
}

/// Milliseconds from `now` until `at`, negative if it has passed.
fn signed_ms_until(now: Instant, at: Instant) -> i64 {
    if at >= now {
        (at - now).as_millis() as i64
    } else {
        -((now - at).as_millis() as i64)
    }
}

/// `now` moved by `ms` (negative: back). An instant before the clock's origin (only
/// right after boot) is taken as `now`.
fn at_ms(now: Instant, ms: i64) -> Instant {
    let d = Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        now + d
    } else {
        now.checked_sub(d).unwrap_or(now)
    }
}
