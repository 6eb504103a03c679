//! The core's control-path outputs, queued for the shell (`Core::poll_command`).

use std::net::SocketAddr;
use std::time::Duration;

use super::allocation::Traffic;
use super::client::ClientId;
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
