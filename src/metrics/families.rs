//! The name, help text and label names of every metric family, declared as one table.
//! Help text that lists a label's values quotes them from its label table (`LISTED`).

use super::labels::{ProxyError, Refused, TlsFailure};
use crate::auth::AuthError;
use crate::proto::error_code::StunError;
use crate::relay::stats::{DropReason, EndReason, RequestMethod};

/// One metric family as Prometheus shows it.
pub(super) struct Family {
    pub name: &'static str,
    /// The help text, in pieces joined without a separator.
    pub help: &'static [&'static str],
    /// Empty for a family with a single unlabelled series.
    pub labels: &'static [&'static str],
}

const TRANSPORT_FAMILY: &[&str] = &["transport", "family"];

pub(super) const HANDOVERS: Family = Family {
    name: "turnpike_handover_total",
    help: &[
        "Process handovers (restart without dropping calls), by result: took_over (counted by ",
        "the new process, carried on), declined (the new one could not read the state), ",
        "failed (it did not start or answer).",
    ],
    labels: &["result"],
};
pub(super) const HANDOVER_RESULTS: &[&str] = &["took_over", "declined", "failed"];

pub(super) const ALLOCATIONS: Family = Family {
    name: "turnpike_allocations",
    help: &["Active allocations."],
    labels: TRANSPORT_FAMILY,
};
pub(super) const PERMISSIONS: Family = Family {
    name: "turnpike_permissions",
    help: &["Active permissions."],
    labels: TRANSPORT_FAMILY,
};
pub(super) const CHANNELS: Family = Family {
    name: "turnpike_channel_bindings",
    help: &["Active channel bindings."],
    labels: TRANSPORT_FAMILY,
};
pub(super) const CONNECTIONS: Family = Family {
    name: "turnpike_connections",
    help: &["Open TCP/TLS client connections."],
    labels: &["transport"],
};
pub(super) const ALLOCATIONS_CREATED: Family = Family {
    name: "turnpike_allocations_created_total",
    help: &["Allocations created."],
    labels: &["transport"],
};
pub(super) const ALLOCATIONS_ENDED: Family = Family {
    name: "turnpike_allocations_ended_total",
    help: &["Allocations ended, by reason (", EndReason::LISTED, ")."],
    labels: &["reason"],
};
pub(super) const RELAYED_BYTES: Family = Family {
    name: "turnpike_relayed_bytes_total",
    help: &["Application bytes relayed (payload, without TURN framing)."],
    labels: &["direction", "transport"],
};
pub(super) const RELAYED_PACKETS: Family = Family {
    name: "turnpike_relayed_packets_total",
    help: &["Packets relayed."],
    labels: &["direction", "transport"],
};
pub(super) const REQUESTS: Family = Family {
    name: "turnpike_requests_total",
    help: &[
        "STUN/TURN requests answered, by method (",
        RequestMethod::LISTED,
        ") and result code (200 = success; ",
        StunError::LISTED,
        ").",
    ],
    labels: &["method", "code"],
};
pub(super) const AUTH_FAILURES: Family = Family {
    name: "turnpike_auth_failures_total",
    help: &[
        "Requests that failed authentication, by reason (",
        AuthError::LISTED,
        ").",
    ],
    labels: &["reason"],
};
pub(super) const DROPPED: Family = Family {
    name: "turnpike_dropped_packets_total",
    help: &["Packets not relayed, by reason (", DropReason::LISTED, ")."],
    labels: &["reason"],
};
pub(super) const PEER_DENIED: Family = Family {
    name: "turnpike_peer_denied_total",
    help: &["CreatePermission/ChannelBind refused (403) by the peer policy."],
    labels: &[],
};
pub(super) const QUOTA_REJECTIONS: Family = Family {
    name: "turnpike_quota_rejections_total",
    help: &["Allocations refused (486) by a quota."],
    labels: &[],
};
pub(super) const RELAY_PORTS_IN_USE: Family = Family {
    name: "turnpike_relay_ports_in_use",
    help: &["Relay ports held by allocations or EVEN-PORT reservations."],
    labels: &["family"],
};
pub(super) const RELAY_PORTS_TOTAL: Family = Family {
    name: "turnpike_relay_ports_total",
    help: &["Relay ports in the configured range (0 for a family that is off)."],
    labels: &["family"],
};
pub(super) const TLS_HANDSHAKE_FAILURES: Family = Family {
    name: "turnpike_tls_handshake_failures_total",
    help: &[
        "TLS handshakes that failed on TLS listeners, by reason (",
        TlsFailure::LISTED,
        ").",
    ],
    labels: &["reason"],
};
pub(super) const CONNECTIONS_REFUSED: Family = Family {
    name: "turnpike_connections_refused_total",
    help: &[
        "TCP/TLS connections closed at accept, by the limit they hit (",
        Refused::LISTED,
        ").",
    ],
    labels: &["reason"],
};
pub(super) const PROXY_PROTOCOL_ERRORS: Family = Family {
    name: "turnpike_proxy_protocol_errors_total",
    help: &[
        "TCP/TLS connections from a server.proxy_protocol source closed for their PROXY v2 \
         header, by reason (",
        ProxyError::LISTED,
        ").",
    ],
    labels: &["reason"],
};
pub(super) const ALLOCATION_LIFETIME: Family = Family {
    name: "turnpike_allocation_lifetime_seconds",
    help: &["How long ended allocations lived."],
    labels: &[],
};
/// Seconds, from a quick test call to a long meeting.
pub(super) const LIFETIME_BUCKETS: [f64; 10] = [
    1.0, 10.0, 30.0, 60.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];
pub(super) const BUILD_INFO: Family = Family {
    name: "turnpike_build_info",
    help: &["Always 1; labels carry the build."],
    labels: &["version"],
};
pub(super) const CLUSTER_UP: Family = Family {
    name: "turnpike_cluster_up",
    help: &["1 when the last heartbeat reached the fleet's Redis, else 0 (with [cluster] only)."],
    labels: &[],
};
pub(super) const CLUSTER_NODES: Family = Family {
    name: "turnpike_cluster_nodes",
    help: &["Nodes in this node's view of the fleet registry, heard from within cluster.ttl."],
    labels: &[],
};
pub(super) const FASTPATH_INFO: Family = Family {
    name: "turnpike_fastpath_info",
    help: &[
        "Always 1; mode is where the kernel fast path runs: xdp, xdp-generic, tc, or off (the \
         socket path only).",
    ],
    labels: &["mode"],
};
pub(super) const FASTPATH_PACKETS: Family = Family {
    name: "turnpike_fastpath_packets_total",
    help: &[
        "Packets the kernel fast path relayed (also counted in turnpike_relayed_packets_total).",
    ],
    labels: &["direction"],
};
