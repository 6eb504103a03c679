//! Live allocations as the sessions API shows them (GET /api/v1/sessions): each shard
//! describes its own on request, so nothing is shared on the relay path.

use std::time::Instant;

use serde::Serialize;

use crate::auth::user_id;
use crate::relay::Core;

#[derive(Debug, Clone, Serialize)]
pub struct ChannelInfo {
    pub number: u16,
    pub peer: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SessionInfo {
    /// The user id (after the expiry in a REST username); DELETE takes this.
    pub user: String,
    pub username: String,
    /// The client's address, or "redacted" under log.redact_client_address.
    pub client: String,
    pub transport: &'static str,
    pub relay: Vec<String>,
    pub age_s: u64,
    pub expires_in_s: u64,
    pub bytes_to_peer: u64,
    pub packets_to_peer: u64,
    pub bytes_to_client: u64,
    pub packets_to_client: u64,
    /// Peer IPs with a live permission.
    pub permissions: Vec<String>,
    pub channels: Vec<ChannelInfo>,
}

/// The live allocations of one shard's core.
pub fn describe(core: &Core, now: Instant, redact_client_address: bool) -> Vec<SessionInfo> {
    core.allocations()
        .map(|a| {
            let mut permissions: Vec<String> = a
                .permissions
                .iter()
                .filter(|(_, e)| **e > now)
                .map(|(ip, _)| ip.to_string())
                .collect();
            permissions.sort();
            let mut channels: Vec<ChannelInfo> = a
                .channels
                .iter()
                .filter(|(_, b)| b.expires > now)
                .map(|(n, b)| ChannelInfo {
                    number: *n,
                    peer: b.peer.to_string(),
                })
                .collect();
            channels.sort_by_key(|c| c.number);
            SessionInfo {
                user: user_id(&a.username).to_owned(),
                username: a.username.clone(),
                client: if redact_client_address {
                    "redacted".into()
                } else {
                    a.client.addr.to_string()
                },
                transport: a.client.transport.label(),
                relay: [a.relay_v4, a.relay_v6]
                    .iter()
                    .flatten()
                    .map(|r| r.to_string())
                    .collect(),
                age_s: now.saturating_duration_since(a.created).as_secs(),
                expires_in_s: a.expires.saturating_duration_since(now).as_secs(),
                bytes_to_peer: a.traffic.bytes_to_peer,
                packets_to_peer: a.traffic.packets_to_peer,
                bytes_to_client: a.traffic.bytes_to_client,
                packets_to_client: a.traffic.packets_to_client,
                permissions,
                channels,
            }
        })
        .collect()
}
