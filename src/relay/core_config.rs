//! What a core is built with: credentials, peer policy, relay addresses, its port slice,
//! lifetimes and limits.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::peer_policy::PeerPolicy;
use super::{bandwidth, quota};
use crate::auth::Authenticator;

/// Where relay sockets bind for one address family, and what is advertised to clients.
#[derive(Debug, Clone, Copy)]
pub struct RelayFamily {
    pub bind: std::net::IpAddr,
    pub advertised: std::net::IpAddr,
}

pub struct CoreConfig {
    pub auth: Authenticator,
    pub policy: PeerPolicy,
    pub relay_v4: Option<RelayFamily>,
    pub relay_v6: Option<RelayFamily>,
    /// This shard's slice of the relay port range.
    pub ports: RangeInclusive<u16>,
    pub default_lifetime: Duration,
    pub max_lifetime: Duration,
    /// `relay.max_allocations` and `max_allocations_per_user`, shared by every shard.
    pub quotas: std::sync::Arc<quota::Quotas>,
    /// Most channel bindings one allocation may hold (508 beyond).
    pub max_channels: usize,
    /// Answers without authentication per second per source prefix (0 = no limit).
    pub unauthenticated_rate: u32,
    /// Relayed bytes per second per allocation, both directions together (None = off).
    pub max_bytes_per_sec_per_allocation: Option<u64>,
    /// Relayed bytes per second per user id, over all its allocations on every shard.
    pub max_bytes_per_sec_per_user: Option<(u64, std::sync::Arc<bandwidth::UserBuckets>)>,
    pub max_permissions: usize,
    /// Accept only RFC 8656 channel numbers (0x4000-0x4FFF), not RFC 5766's up to 0x7FFE.
    pub strict_channel_numbers: bool,
    /// MAC key for RESERVATION-TOKENs, the same in every shard.
    pub token_key: [u8; 32],
    /// Count each Allocate against the fleet-wide per-user quota (`[cluster]`) before
    /// binding its relay sockets (`Command::ClaimFleetSlot`).
    pub fleet_quota: bool,
    /// The kernel fast path is attached: emit `Command::FastPathAdd`/`Remove` for UDP
    /// channel bindings (`fastpath_binding`). Off by default.
    pub fastpath: bool,
}
