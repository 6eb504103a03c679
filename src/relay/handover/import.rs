//! `Core::import_state`: re-creates exported allocations and reservations in a core,
//! with their quota slots, timers and relay ports, and reports what it could not take.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::format::*;
use super::split::age;
use super::{ImportReport, NotImported, NotImportedReason, at_ms, counters};
use crate::auth::user_id;
use crate::relay::allocation::{Allocation, ChannelBinding, Traffic};
use crate::relay::bandwidth::Bucket;
use crate::relay::client::{ClientId, Transport};
use crate::relay::command::Command;
use crate::relay::core_state::Core;
use crate::relay::stats::EndReason;
use crate::relay::time::Time;

impl Core {
    /// Takes over the allocations and reservations of `state` (normally into a fresh
    /// core), adds its counters to this core's, and says what it did. Nothing fails as a
    /// whole (a state that cannot be read fails in `decode`); an allocation that does not
    /// fit this core's config is left out and reported, and its user's quota slot with it.
    pub fn import_state(&mut self, time: Time, mut state: CoreState) -> ImportReport {
        let now = time.mono;
        let gap = Duration::from_secs(time.unix.saturating_sub(state.exported_unix));
        age(&mut state, gap);
        let mut report = ImportReport {
            gap,
            token_key_changed: state.token_key.0 != self.cfg.token_key,
            unknown_counters: counters::add(&mut self.counters, &state.counters),
            ..Default::default()
        };
        let mut serials: HashSet<u64> = self.allocations.iter().map(|(_, a)| a.serial).collect();
        for a in state.allocations {
            let client = client_id(&a.client);
            let relays: Vec<SocketAddr> = [a.relay_v4, a.relay_v6].into_iter().flatten().collect();
            if let Err(reason) = self.fits(&client, &relays) {
                tracing::info!(
                    user = user_id(&a.username),
                    client = %client.addr,
                    relay = ?relays,
                    reason = reason.label(),
                    "allocation not taken over at handover: it ends"
                );
                let username = a.username.clone();
                self.adopt_fleet_slot(None, a.serial, &username);
                report.not_imported.push(NotImported {
                    client,
                    username,
                    relays,
                    reason,
                });
                continue;
            }
            let serial = if serials.insert(a.serial) {
                a.serial
            } else {
                let fresh = self.next_token;
                self.next_token += 1;
                serials.insert(fresh);
                report.renumbered.push((a.serial, fresh));
                fresh
            };
            self.next_token = self.next_token.max(serial + 1);
            self.adopt_fleet_slot(Some(serial), a.serial, &a.username);
            self.adopt_allocation(now, client, serial, a);
            report.imported += 1;
            report.relays.extend(relays);
        }
        for r in state.reservations {
            match self.adopt_reservation(now, r) {
                Ok(()) => report.reservations += 1,
                Err(e) => report.reservations_not_imported.push(e),
            }
        }
        tracing::info!(
            imported = report.imported,
            not_imported = report.not_imported.len(),
            reservations = report.reservations,
            gap_s = gap.as_secs(),
            "handover state imported"
        );
        report
    }

    /// With `[cluster]` every exported allocation held a fleet slot (a claim precedes its
    /// relay sockets), named by its serial `was`: this process takes it over as `token`
    /// (no cap check: it already counts), or gives it back when it was not imported.
    fn adopt_fleet_slot(&mut self, token: Option<u64>, was: u64, username: &str) {
        if self.cfg.fleet_quota {
            self.commands.push_back(Command::AdoptFleetSlot {
                token,
                was,
                user: user_id(username).to_owned(),
            });
        }
    }

    /// Whether an allocation of `client` on relay addresses `relays` fits this core.
    fn fits(&self, client: &ClientId, relays: &[SocketAddr]) -> Result<(), NotImportedReason> {
        if self.by_client.contains_key(client) {
            return Err(NotImportedReason::DuplicateClient);
        }
        relays.iter().try_for_each(|r| self.relay_fits(*r))
    }

    /// Whether this core could own relay address `addr`: its family is configured with
    /// that IP, the port is in this core's slice and not held already.
    fn relay_fits(&self, addr: SocketAddr) -> Result<(), NotImportedReason> {
        let (family, taken) = if addr.is_ipv4() {
            (self.cfg.relay_v4, &self.by_relay_v4)
        } else {
            (self.cfg.relay_v6, &self.by_relay_v6)
        };
        let family = family.ok_or(NotImportedReason::FamilyNotConfigured)?;
        if family.bind != addr.ip() {
            return Err(NotImportedReason::RelayAddressChanged);
        }
        if !self.cfg.ports.contains(&addr.port()) {
            return Err(NotImportedReason::PortOutsideSlice);
        }
        if taken.contains_key(&addr.port()) || self.held.contains_key(&addr) {
            return Err(NotImportedReason::PortTaken);
        }
        Ok(())
    }

    /// Files an allocation that `fits`: its quota slot, relay ports and timer.
    fn adopt_allocation(
        &mut self,
        now: Instant,
        client: ClientId,
        serial: u64,
        a: AllocationState,
    ) {
        self.cfg.quotas.restore(&a.username);
        let alloc = allocation(
            now,
            client,
            serial,
            self.bandwidth_limits(now, &a.username),
            a,
        );
        let (v4, v6) = (alloc.relay_v4, alloc.relay_v6);
        let idx = self.allocations.insert(alloc);
        self.by_client.insert(client, idx);
        if let Some(r) = v4 {
            self.by_relay_v4.insert(r.port(), idx);
        }
        if let Some(r) = v6 {
            self.by_relay_v6.insert(r.port(), idx);
        }
        let due = self.allocations[idx].next_deadline();
        self.schedule(idx, due);
        // Its live channels go into this process's kernel maps (the old one's went away).
        self.kernel_sync(idx, Some(now));
    }

    /// Files a reservation: its port held, its timer in order, its user's quota slot.
    fn adopt_reservation(
        &mut self,
        now: Instant,
        r: ReservationState,
    ) -> Result<(), (SocketAddr, NotImportedReason)> {
        self.relay_fits(r.addr).map_err(|e| (r.addr, e))?;
        if self.reservations.contains_key(&r.token) {
            return Err((r.addr, NotImportedReason::PortTaken));
        }
        if let Some(user) = &r.user {
            self.cfg.quotas.restore(user);
            self.cfg.quotas.hold_reservation(r.token, user);
        }
        let at = at_ms(now, r.remaining_ms as i64);
        let pos = self.reservation_timers.partition_point(|(t, _)| *t <= at);
        self.reservation_timers.insert(pos, (at, r.token));
        self.held.insert(r.addr, ());
        let addr = r.addr;
        self.reservations.insert(
            r.token,
            crate::relay::requests::reservation::Reservation { addr },
        );
        Ok(())
    }
}

fn client_id(c: &ClientState) -> ClientId {
    ClientId {
        transport: match c.transport {
            TransportState::Udp => Transport::Udp,
            TransportState::Tcp => Transport::Tcp,
            TransportState::Tls => Transport::Tls,
        },
        listener: c.listener,
        addr: c.addr,
    }
}

/// The core's allocation for an exported one, its deadlines counted from `now`.
fn allocation(
    now: Instant,
    client: ClientId,
    serial: u64,
    mut limits: Option<Box<crate::relay::bandwidth::Limits>>,
    a: AllocationState,
) -> Allocation {
    // The exported level under this config's rate; a fresh bucket if it had none.
    if let (Some(l), Some(b)) = (&mut limits, a.bandwidth)
        && let Some(own) = &mut l.own
    {
        let (rate, _) = own.level(now);
        *own = Bucket::restored(rate, b.units, now);
    }
    let mut channels = crate::relay::FastMap::default();
    let mut channel_by_peer = crate::relay::FastMap::default();
    for c in &a.channels {
        let expires = at_ms(now, c.remaining_ms);
        channels.insert(
            c.number,
            ChannelBinding {
                peer: c.peer,
                expires,
            },
        );
        channel_by_peer.insert(c.peer, c.number);
    }
    let t = a.traffic;
    Allocation {
        client,
        relay_v4: a.relay_v4,
        relay_v6: a.relay_v6,
        created: at_ms(now, -(a.age_ms as i64)),
        created_unix: a.created_unix,
        expires: at_ms(now, a.lifetime_remaining_ms as i64),
        session_end: a.session_end.map(|s| {
            let reason = match s.reason {
                SessionEndReason::CredentialExpired => EndReason::CredentialExpired,
                SessionEndReason::MaxSession => EndReason::MaxSession,
            };
            (at_ms(now, s.remaining_ms as i64), reason)
        }),
        serial,
        // Far off, so that `schedule` files its first real deadline.
        scheduled: now + Duration::from_secs(u32::MAX as u64),
        limits,
        permissions: a
            .permissions
            .iter()
            .map(|p| (p.peer_ip, at_ms(now, p.remaining_ms as i64)))
            .collect(),
        channels,
        channel_by_peer,
        allocate_transaction: a.allocate_transaction,
        allocate_response: a.allocate_response,
        traffic: Traffic {
            bytes_to_peer: t.bytes_to_peer,
            packets_to_peer: t.packets_to_peer,
            bytes_to_client: t.bytes_to_client,
            packets_to_client: t.packets_to_client,
        },
        peers_used: a.peers_used,
        channels_used: a.channels_used,
        username: a.username,
    }
}
