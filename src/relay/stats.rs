//! Plain per-shard counters. A shard owns its core, so these are ordinary integers: no
//! atomics or shared cache lines on the relay path. The shell publishes them to Prometheus.

use super::client::Transport;
use crate::auth::AuthError;
use crate::label_table::label_table;
use crate::proto::error_code::StunError;

label_table! {
    /// Which way a relayed packet went.
    pub enum Direction {
        ClientToPeer = "client_to_peer",
        PeerToClient = "peer_to_client",
    }
}

label_table! {
    /// Why a packet was not relayed.
    pub enum DropReason {
        NoAllocation = "no_allocation",
        NoPermission = "no_permission",
        NoChannel = "no_channel",
        DeniedPeer = "denied_peer",
        Malformed = "malformed",
        BufferFull = "buffer_full",
        SendError = "send_error",
        /// Over a rate limit (unauthenticated answers per source prefix, bandwidth).
        RateLimit = "rate_limit",
    }
}

label_table! {
    /// Why an allocation ended.
    pub enum EndReason {
        Expired = "expired",
        Deleted = "deleted",
        Error = "error",
        Shutdown = "shutdown",
        /// Strict expiry: the REST credential that created it expired.
        CredentialExpired = "credential_expired",
        /// It outlived its credential by `auth.max_session_duration`.
        MaxSession = "max_session",
        /// Ended through the sessions API (DELETE /api/v1/sessions).
        Admin = "admin",
    }
}

label_table! {
    /// STUN/TURN methods counted in request metrics. A method this server does not know
    /// gets its own label, so a 400 for it is not counted under a real method.
    pub enum RequestMethod {
        Binding = "binding",
        Allocate = "allocate",
        Refresh = "refresh",
        CreatePermission = "create_permission",
        ChannelBind = "channel_bind",
        Other = "other",
    }
}

impl RequestMethod {
    pub fn of(m: stun::message::Method) -> Self {
        use stun::message::*;
        match m {
            METHOD_BINDING => RequestMethod::Binding,
            METHOD_ALLOCATE => RequestMethod::Allocate,
            METHOD_REFRESH => RequestMethod::Refresh,
            METHOD_CREATE_PERMISSION => RequestMethod::CreatePermission,
            METHOD_CHANNEL_BIND => RequestMethod::ChannelBind,
            _ => RequestMethod::Other,
        }
    }
}

/// Request outcomes counted in metrics: index 0 is success (code 200), then one slot per
/// `StunError`, in its order.
pub const RESULTS: usize = 1 + StunError::COUNT;

pub fn result_index(error: Option<StunError>) -> usize {
    error.map_or(0, |e| 1 + e as usize)
}

/// The `code` label of a result slot: "200", or the `StunError`'s label (its code).
pub fn result_label(index: usize) -> &'static str {
    index.checked_sub(1).map_or("200", |i| StunError::LABELS[i])
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// [transport][direction]
    pub relayed_bytes: [[u64; Direction::COUNT]; Transport::COUNT],
    pub relayed_packets: [[u64; Direction::COUNT]; Transport::COUNT],
    pub dropped: [u64; DropReason::COUNT],
    /// [method][code]
    pub requests: [[u64; RESULTS]; RequestMethod::COUNT],
    /// Indexed by `AuthError as usize`.
    pub auth_failures: [u64; AuthError::COUNT],
    /// [transport]
    pub allocations_created: [u64; Transport::COUNT],
    pub allocations_ended: [u64; EndReason::COUNT],
    pub peer_denied: u64,
    pub quota_rejections: u64,
}

impl Counters {
    #[inline]
    pub fn relayed(&mut self, t: Transport, d: Direction, bytes: usize) {
        self.relayed_bytes[t as usize][d as usize] += bytes as u64;
        self.relayed_packets[t as usize][d as usize] += 1;
    }

    #[inline]
    pub fn drop(&mut self, r: DropReason) {
        self.dropped[r as usize] += 1;
    }
}
