//! `Core::export_state`: the core's allocations, reservations and counters as plain data,
//! every deadline as the time remaining at export.

use std::time::Instant;

use super::format::*;
use super::{counters, ms_until, signed_ms_until};
use crate::relay::allocation::{Allocation, CHANNEL_COOLDOWN};
use crate::relay::client::Transport;
use crate::relay::core_state::Core;
use crate::relay::stats::EndReason;
use crate::relay::time::Time;

impl Core {
    /// Everything the core's allocations need to go on in another process. Read-only:
    /// the old process keeps serving until the new one has taken over. Lists are sorted,
    /// so the same state exports the same bytes.
    pub fn export_state(&self, time: Time) -> CoreState {
        let now = time.mono;
        let mut allocations: Vec<AllocationState> = self
            .allocations
            .iter()
            .map(|(_, a)| export_allocation(now, a))
            .collect();
        allocations.sort_by_key(|a| a.serial);
        let mut reservations: Vec<ReservationState> = self
            .reservation_timers
            .iter()
            .filter_map(|(at, token)| {
                let r = self.reservations.get(token)?;
                Some(ReservationState {
                    token: *token,
                    addr: r.addr,
                    remaining_ms: ms_until(now, *at),
                    user: self.cfg.quotas.reservation_user(token),
                })
            })
            .collect();
        reservations.sort_by_key(|r| (r.remaining_ms, r.token));
        CoreState {
            exported_unix: time.unix,
            token_key: SecretKey(self.cfg.token_key),
            allocations,
            reservations,
            counters: counters::export(&self.counters),
        }
    }
}

fn export_allocation(now: Instant, a: &Allocation) -> AllocationState {
    // Only what is still in force: an expired permission is gone in all but name, and a
    // binding past its cool-down frees its number (both wait for the next timer here).
    let mut permissions: Vec<PermissionState> = a
        .permissions
        .iter()
        .filter(|(_, exp)| **exp > now)
        .map(|(ip, exp)| PermissionState {
            peer_ip: *ip,
            remaining_ms: ms_until(now, *exp),
        })
        .collect();
    permissions.sort_by_key(|p| p.peer_ip);
    let mut channels: Vec<ChannelState> = a
        .channels
        .iter()
        .filter(|(_, b)| b.expires + CHANNEL_COOLDOWN > now)
        .map(|(n, b)| ChannelState {
            number: *n,
            peer: b.peer,
            remaining_ms: signed_ms_until(now, b.expires),
        })
        .collect();
    channels.sort_by_key(|c| c.number);
    AllocationState {
        client: ClientState {
            transport: match a.client.transport {
                Transport::Udp => TransportState::Udp,
                Transport::Tcp => TransportState::Tcp,
                Transport::Tls => TransportState::Tls,
            },
            listener: a.client.listener,
            addr: a.client.addr,
        },
        username: a.username.clone(),
        relay_v4: a.relay_v4,
        relay_v6: a.relay_v6,
        created_unix: a.created_unix,
        age_ms: now.saturating_duration_since(a.created).as_millis() as u64,
        lifetime_remaining_ms: ms_until(now, a.expires),
        session_end: a.session_end.map(|(at, reason)| SessionEndState {
            remaining_ms: ms_until(now, at),
            reason: match reason {
                EndReason::CredentialExpired => SessionEndReason::CredentialExpired,
                // The policy sets no other reason (`Core::session_end`).
                _ => SessionEndReason::MaxSession,
            },
        }),
        serial: a.serial,
        permissions,
        channels,
        allocate_transaction: a.allocate_transaction,
        allocate_response: a.allocate_response.clone(),
        traffic: TrafficState {
            bytes_to_peer: a.traffic.bytes_to_peer,
            packets_to_peer: a.traffic.packets_to_peer,
            bytes_to_client: a.traffic.bytes_to_client,
            packets_to_client: a.traffic.packets_to_client,
        },
        peers_used: a.peers_used,
        channels_used: a.channels_used,
        bandwidth: a.limits.as_ref().and_then(|l| l.own.as_ref()).map(|b| {
            let (rate_bytes_per_sec, units) = b.level(now);
            BucketState {
                rate_bytes_per_sec,
                units,
            }
        }),
    }
}
