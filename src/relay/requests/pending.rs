//! An Allocate between its request and the shell's answer to BindRelay: held by the
//! core (`Core::pending`) until its relay sockets are bound.

use std::net::SocketAddr;
use std::time::Duration;

use super::request_info::RequestInfo;
use crate::auth::Key;
use crate::relay::client::ClientId;
use crate::relay::ports::PortParity;

/// An Allocate waiting for the shell to bind its relay socket(s).
pub struct PendingAllocate {
    /// The Allocate's token: its binds, its fleet slot and, once created, its serial.
    pub(super) token: u64,
    pub(super) client: ClientId,
    pub(super) request: RequestInfo,
    pub(super) username: String,
    pub(super) key: Key,
    /// Unix seconds the credential expires at (REST), for the expiry policy.
    pub(super) credential_expiry: Option<u64>,
    /// A second quota slot is held for the port an EVEN-PORT R bit reserves.
    pub(super) reserve_slot: bool,
    pub(super) lifetime: Duration,
    pub(super) want_v4: bool,
    pub(super) want_v6: bool,
    /// The IPv6 half was asked for with ADDITIONAL-ADDRESS-FAMILY but this server has no
    /// IPv6 relay: reported with ADDRESS-ERROR-CODE instead of failing the whole Allocate.
    pub(super) v6_unavailable: bool,
    pub(super) parity: PortParity,
    pub(super) unix: u64,
    /// A port reserved by an earlier Allocate's EVEN-PORT R bit, redeemed by its token.
    pub(super) reserved: Option<SocketAddr>,
    pub(super) bound_v4: Option<SocketAddr>,
    pub(super) bound_v6: Option<SocketAddr>,
    pub(super) attempts: u32,
    /// The fleet granted a slot (`fleet_slot`) that must be given back if this fails.
    pub(super) fleet_slot: bool,
}

impl PendingAllocate {
    pub fn client(&self) -> ClientId {
        self.client
    }
}
