//! What a shard publishes for the metrics: plain copies of its counters and gauges. It
//! lives here, not in the shell, so that metrics depend on no runtime type.

use super::labels::{ProxyError, Refused, TlsFailure};
use crate::relay::stats::{Counters, Direction};
use crate::relay::{AddrFamily, Transport};

/// What a shard last published: its counters and gauges, copied on request and once a
/// second, so that the relay path never touches shared state.
#[derive(Debug, Default, Clone)]
pub struct ShardSnapshot {
    pub counters: Counters,
    /// Gauges, [transport][family].
    pub allocations: [[u64; AddrFamily::COUNT]; Transport::COUNT],
    pub permissions: [[u64; AddrFamily::COUNT]; Transport::COUNT],
    pub channels: [[u64; AddrFamily::COUNT]; Transport::COUNT],
    /// Open client connections, by transport (TCP, TLS).
    pub connections: [u64; Transport::COUNT],
    /// Relay ports held and the shard's slice size, by family.
    pub relay_ports_in_use: [u64; AddrFamily::COUNT],
    pub relay_ports_total: [u64; AddrFamily::COUNT],
    /// Failed TLS handshakes and refused connections.
    pub streams: StreamCounters,
    /// Packets the kernel fast path relayed, by `Direction`.
    pub fastpath_packets: [u64; Direction::COUNT],
}

/// A shard's connection counters, published with its snapshot.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamCounters {
    /// Failed TLS handshakes, by `TlsFailure`.
    pub tls_handshake_failures: [u64; TlsFailure::COUNT],
    /// Connections closed at accept, by `Refused`.
    pub refused: [u64; Refused::COUNT],
    /// Connections closed for their PROXY v2 header, by `ProxyError`.
    pub proxy_protocol_errors: [u64; ProxyError::COUNT],
}
