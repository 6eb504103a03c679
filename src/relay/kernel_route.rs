//! A route: one channel binding as the kernel fast path forwards it (`Command::FastPathAdd`).
//! The decisions are in `fastpath_binding`.

use std::net::SocketAddr;

use super::client::ClientId;

/// One channel binding as the kernel forwards it. `relay` is the relay socket's bound
/// address; the shell maps `client.listener` to its listener's own address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KernelRoute {
    /// Unique among this core's routes (the shell makes it unique among shards).
    pub id: u64,
    pub client: ClientId,
    pub channel: u16,
    pub relay: SocketAddr,
    pub peer: SocketAddr,
}
