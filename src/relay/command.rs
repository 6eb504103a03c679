//! The core's control-path outputs, queued for the shell (`Core::poll_command`).

use std::net::SocketAddr;
use std::time::Duration;

use super::allocation::Traffic;
use super::client::ClientId;
use super::kernel_route::KernelRoute;
use super::stats::EndReason;

/// What the shell must do. Control traffic only: the relay path returns its decision
/// directly (`ClientAction`, `PeerAction`) so that it allocates nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum Command {
    /// Send a STUN message to a client.
    SendToClient { client: ClientId, data: Vec<u8> },
    /// Bind a UDP relay socket at `addr`, then call `Core::relay_bound`.
    BindRelay { token: u64, addr: SocketAddr },
    /// Close the relay socket at `addr`.
    ReleaseRelay { addr: SocketAddr },
    /// Count an Allocate of `user` (a user id) against the fleet-wide per-user quota, then
    /// call `Core::fleet_slot_answered` (`[cluster]` only).
    ClaimFleetSlot { token: u64, user: String },
    /// Give back the fleet slot claimed under `token` (its Allocate failed or ended).
    ReleaseFleetSlot { token: u64 },
    /// A handover brought an allocation whose fleet slot the previous process named by
    /// serial `was` (same shard): count it as this process's under `token` without a cap
    /// check (it already counts), taking the previous name's place; `token` None: it was
    /// not imported (it ended), give that slot back (`[cluster]` only).
    AdoptFleetSlot {
        token: Option<u64>,
        was: u64,
        user: String,
    },
    /// Let the kernel fast path forward this channel binding (`[fastpath]`).
    FastPathAdd(KernelRoute),
    /// Stop forwarding it in the kernel, read its counters once more, and answer with
    /// `Core::fastpath_removed` (the allocation's session line waits for it).
    FastPathRemove(KernelRoute),
    /// An allocation ended: log it.
    AllocationEnded(Box<SessionSummary>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSummary {
    pub username: String,
    pub client: ClientId,
    pub relay_v4: Option<SocketAddr>,
    pub relay_v6: Option<SocketAddr>,
    pub duration: Duration,
    pub traffic: Traffic,
    pub peers_used: u32,
    pub channels_used: u32,
    pub reason: EndReason,
}

/// The fleet's answer to `Command::ClaimFleetSlot`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetSlot {
    /// Counted: the Allocate goes on.
    Granted,
    /// The user holds `max_allocations_per_user` across the fleet: 486.
    Full,
    /// The fleet could not count and `cluster.on_redis_down = "closed"`: 508.
    Unavailable,
}
