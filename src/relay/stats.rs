//! Plain per-shard counters. A shard owns its core, so these are ordinary integers: no
//! atomics or shared cache lines on the relay path. The shell publishes them to Prometheus.

use super::Transport;
use crate::auth::AuthError;
use crate::proto::error_code::StunError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    ClientToPeer = 0,
    PeerToClient = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::ClientToPeer, Direction::PeerToClient];
    pub fn label(self) -> &'static str {
        match self {
            Direction::ClientToPeer => "client_to_peer",
            Direction::PeerToClient => "peer_to_client",
        }
    }
}

/// Why a packet was not relayed. The label is the metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    NoAllocation = 0,
    NoPermission,
    NoChannel,
    DeniedPeer,
    Malformed,
    BufferFull,
    SendError,
    /// Over a rate limit (unauthenticated answers per source prefix, bandwidth).
    RateLimit,
}

impl DropReason {
    pub const ALL: [DropReason; 8] = [
        DropReason::NoAllocation,
        DropReason::NoPermission,
        DropReason::NoChannel,
        DropReason::DeniedPeer,
        DropReason::Malformed,
        DropReason::BufferFull,
        DropReason::SendError,
        DropReason::RateLimit,
    ];
    pub fn label(self) -> &'static str {
        match self {
            DropReason::NoAllocation => "no_allocation",
            DropReason::NoPermission => "no_permission",
            DropReason::NoChannel => "no_channel",
            DropReason::DeniedPeer => "denied_peer",
            DropReason::Malformed => "malformed",
            DropReason::BufferFull => "buffer_full",
            DropReason::SendError => "send_error",
            DropReason::RateLimit => "rate_limit",
        }
    }
}

/// Why an allocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Expired = 0,
    Deleted,
    Error,
    Shutdown,
    /// Strict expiry: the REST credential that created it expired.
    CredentialExpired,
    /// It outlived its credential by `auth.max_session_duration`.
    MaxSession,
    /// Ended through the sessions API (DELETE /api/v1/sessions).
    Admin,
}

impl EndReason {
    pub const ALL: [EndReason; 7] = [
        EndReason::Expired,
        EndReason::Deleted,
        EndReason::Error,
        EndReason::Shutdown,
        EndReason::CredentialExpired,
        EndReason::MaxSession,
        EndReason::Admin,
    ];
    pub fn label(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Deleted => "deleted",
            EndReason::Error => "error",
            EndReason::Shutdown => "shutdown",
            EndReason::CredentialExpired => "credential_expired",
            EndReason::MaxSession => "max_session",
            EndReason::Admin => "admin",
        }
    }
}

/// STUN/TURN methods counted in request metrics. A method this server does not know gets
/// its own label, so a 400 for it is not counted under a real method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestMethod {
    Binding = 0,
    Allocate,
    Refresh,
    CreatePermission,
    ChannelBind,
    Other,
}

impl RequestMethod {
    pub const ALL: [RequestMethod; 6] = [
        RequestMethod::Binding,
        RequestMethod::Allocate,
        RequestMethod::Refresh,
        RequestMethod::CreatePermission,
        RequestMethod::ChannelBind,
        RequestMethod::Other,
    ];

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

    pub fn label(self) -> &'static str {
        match self {
            RequestMethod::Binding => "binding",
            RequestMethod::Allocate => "allocate",
            RequestMethod::Refresh => "refresh",
            RequestMethod::CreatePermission => "create_permission",
            RequestMethod::ChannelBind => "channel_bind",
            RequestMethod::Other => "other",
        }
    }
}
/// Request outcomes counted in metrics: index 0 is success (code 200), then one slot per
/// `StunError`, in its order.
pub const RESULTS: usize = 1 + StunError::ALL.len();

pub fn result_index(error: Option<StunError>) -> usize {
    error.map_or(0, |e| 1 + e as usize)
}

/// The `code` label of a result slot.
pub fn result_code(index: usize) -> u16 {
    index
        .checked_sub(1)
        .map_or(200, |i| StunError::ALL[i].code())
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counters {
    /// [transport][direction]
    pub relayed_bytes: [[u64; 2]; Transport::COUNT],
    pub relayed_packets: [[u64; 2]; Transport::COUNT],
    pub dropped: [u64; DropReason::ALL.len()],
    /// [method][code]
    pub requests: [[u64; RESULTS]; RequestMethod::ALL.len()],
    /// Indexed by `AuthError as usize`.
    pub auth_failures: [u64; AuthError::ALL.len()],
    /// [transport]
    pub allocations_created: [u64; Transport::COUNT],
    pub allocations_ended: [u64; EndReason::ALL.len()],
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
