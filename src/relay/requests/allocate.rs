//! Allocate (RFC 8656 §7): admission, the relay-socket binding state machine, the
//! success response, EVEN-PORT reservations and lifetimes.

use super::*;
use crate::relay::admission::Refusal;

impl Core {
    pub(super) fn allocate(
        &mut self,
        ctx: &Ctx,
        r: Result<AllocateRequest, Reject>,
    ) -> Result<(), Reject> {
        let Arrival {
            now,
            unix,
            client,
            req,
        } = ctx.at;
        let who = ctx.who;
        if self.answered_as_retransmission(client, req)? {
            return Ok(());
        }
        if let Some(refusal) = self.refuse_new_allocation(client) {
            let extra = match &refusal {
                Refusal::Redirect(alt) => self.redirect_attrs(alt, unix),
                Refusal::Refuse(_) => vec![],
            };
            self.respond_error(client, req, refusal.reject(), Some(&who.key), extra);
            return Ok(());
        }
        let r = r?;
        if r.transport != PROTO_UDP {
            return Err(Reject::of(StunError::UnsupportedTransportProtocol));
        }
        let reserved = match &r.reservation_token {
            Some(t) => Some(self.redeem_reservation(t, unix)?),
            None => None,
        };
        let families = self.families_for(&r, reserved)?;
        let parity = match r.even_port {
            EvenPort::NotAsked => PortParity::Any,
            EvenPort::Even => PortParity::Even,
            EvenPort::EvenAndReserveNext => PortParity::EvenPair,
        };
        // Last check before the pending entry: every slot taken here is given back by
        // fail_pending / drop_pending / remove_allocation / end_reservation. An EVEN-PORT
        // R bit takes a second slot for the port it reserves.
        self.take_quota(&who.username)?;
        let reserve_slot = parity == PortParity::EvenPair;
        if reserve_slot && let Err(e) = self.take_quota(&who.username) {
            self.cfg.quotas.release(&who.username);
            return Err(e);
        }
        let token = self.next_token;
        self.next_token += 1;
        let (want_v4, want_v6, v6_unavailable) = families;
        self.pending.insert(
            token,
            PendingAllocate {
                token,
                client,
                request: req,
                username: who.username.clone(),
                key: who.key.clone(),
                credential_expiry: who.expiry,
                reserve_slot,
                lifetime: self.granted_lifetime(r.lifetime),
                want_v4,
                want_v6,
                v6_unavailable,
                parity,
                unix,
                reserved,
                bound_v4: None,
                bound_v6: None,
                attempts: 0,
                fleet_slot: false,
            },
        );
        if self.cfg.fleet_quota {
            self.claim_fleet_slot(token, &who.username);
        } else {
            self.request_next_bind(now, token);
        }
        Ok(())
    }

    /// An Allocate from a 5-tuple that has one, or is getting one: a retransmission whose
    /// response was lost gets the same response again (true), one in flight is ignored
    /// (true), anything else is 437.
    fn answered_as_retransmission(
        &mut self,
        client: ClientId,
        req: RequestInfo,
    ) -> Result<bool, Reject> {
        if let Some(&idx) = self.by_client.get(&client) {
            let a = &self.allocations[idx];
            if a.allocate_transaction != req.transaction_id.0 {
                return Err(Reject::of(StunError::AllocationMismatch));
            }
            let data = a.allocate_response.clone();
            self.count_request(req.method, None);
            self.commands
                .push_back(Command::SendToClient { client, data });
            return Ok(true);
        }
        Ok(self.pending.values().any(|p| p.client == client))
    }

    /// The port a RESERVATION-TOKEN holds. Stateless (like nonces): the RTCP Allocate may
    /// come from another source port and so land on another shard than the one that
    /// reserved the port. Redeemed, the reservation's quota slot is given back: the new
    /// allocation takes one of its own.
    fn redeem_reservation(&mut self, token: &[u8; 8], unix: u64) -> Result<SocketAddr, Reject> {
        let addr = self.reservation_port(token, unix).ok_or(Reject::new(
            StunError::InsufficientCapacity,
            "Unknown or expired RESERVATION-TOKEN",
        ))?;
        self.end_reservation(token);
        Ok(addr)
    }

    /// Which relay families the Allocate gets: (IPv4, IPv6, IPv6 asked for as the optional
    /// half of a dual allocation but not configured here — reported, not refused).
    fn families_for(
        &self,
        r: &AllocateRequest,
        reserved: Option<SocketAddr>,
    ) -> Result<(bool, bool, bool), Reject> {
        let (want_v4, mut want_v6) = match (reserved, r.family) {
            (Some(a), _) => (a.is_ipv4(), a.is_ipv6()),
            (None, Some(Family::V6)) => (false, true),
            (None, _) => (true, false),
        };
        if r.additional_v6 {
            want_v6 = true;
        }
        let not_supported = Reject::of(StunError::AddressFamilyNotSupported);
        if want_v4 && self.cfg.relay_v4.is_none() {
            return Err(not_supported);
        }
        let v6_unavailable = want_v6 && self.cfg.relay_v6.is_none();
        if v6_unavailable && !r.additional_v6 {
            return Err(not_supported);
        }
        if v6_unavailable {
            want_v6 = false;
        }
        Ok((want_v4, want_v6, v6_unavailable))
    }

    /// Asks the shell to bind the next relay socket the pending Allocate needs, or
    /// completes it when all are bound.
    pub(super) fn request_next_bind(&mut self, now: Instant, token: u64) {
        let Some(p) = self.pending.get(&token) else {
            return;
        };
        let family = if p.want_v4 && p.bound_v4.is_none() {
            self.cfg.relay_v4
        } else if p.want_v6 && p.bound_v6.is_none() {
            self.cfg.relay_v6
        } else {
            return self.complete_allocate(now, token);
        };
        let family = family.expect("family checked when the request was accepted");
        if let Some(addr) = p.reserved.filter(|_| p.attempts == 0) {
            self.commands.push_back(Command::BindRelay { token, addr });
            return;
        }
        if p.reserved.is_some() {
            return self.fail_pending(token);
        }
        let taken = if family.bind.is_ipv4() {
            &self.by_relay_v4
        } else {
            &self.by_relay_v6
        };
        let held = &self.held;
        let in_use = |port: u16| {
            taken.contains_key(&port) || held.contains_key(&SocketAddr::new(family.bind, port))
        };
        let port = if p.attempts < BIND_ATTEMPTS {
            pick_port(&self.cfg.ports, &mut self.rng, p.parity, in_use)
        } else {
            None
        };
        match port {
            Some(port) => self.commands.push_back(Command::BindRelay {
                token,
                addr: SocketAddr::new(family.bind, port),
            }),
            None => self.fail_pending(token),
        }
    }

    /// The shell's answer to `Command::BindRelay`.
    pub fn relay_bound(&mut self, time: Time, token: u64, addr: SocketAddr, ok: bool) {
        let now = time.mono;
        let Some(p) = self.pending.get_mut(&token) else {
            if ok {
                self.commands.push_back(Command::ReleaseRelay { addr });
            }
            return;
        };
        if ok {
            if addr.is_ipv4() {
                p.bound_v4 = Some(addr);
            } else {
                p.bound_v6 = Some(addr);
            }
            self.held.insert(addr, ());
        } else {
            p.attempts += 1;
        }
        self.request_next_bind(now, token);
    }

    /// Forgets a pending Allocate whose client went away, releasing what it bound.
    pub(in crate::relay) fn drop_pending(&mut self, token: u64) {
        if let Some(p) = self.pending.remove(&token) {
            self.abandon_pending(&p);
        }
    }

    /// Gives back what a pending Allocate held: its relay sockets and quota slots.
    pub(super) fn abandon_pending(&mut self, p: &PendingAllocate) {
        for addr in [p.bound_v4, p.bound_v6].into_iter().flatten() {
            self.held.remove(&addr);
            self.commands.push_back(Command::ReleaseRelay { addr });
        }
        self.cfg.quotas.release(&p.username);
        if p.reserve_slot {
            self.cfg.quotas.release(&p.username);
        }
        if p.fleet_slot {
            self.commands
                .push_back(Command::ReleaseFleetSlot { token: p.token });
        }
    }

    /// One quota slot for `username`, or 486.
    pub(super) fn take_quota(&mut self, username: &str) -> Result<(), Reject> {
        self.cfg.quotas.acquire(username).map_err(|_| {
            self.counters.quota_rejections += 1;
            Reject::of(StunError::AllocationQuotaReached)
        })
    }

    /// Ends an EVEN-PORT reservation (expired, or redeemed on this or another shard),
    /// giving back its slot.
    pub(in crate::relay) fn end_reservation(&mut self, token: &[u8; 8]) {
        if let Some(r) = self.reservations.remove(token) {
            self.held.remove(&r.addr);
        }
        self.cfg.quotas.end_reservation(token);
    }

    pub(super) fn fail_pending(&mut self, token: u64) {
        self.refuse_pending(token, Reject::of(StunError::InsufficientCapacity));
    }

    /// Ends a pending Allocate with an error response, giving back what it held.
    pub(super) fn refuse_pending(&mut self, token: u64, reject: Reject) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        self.abandon_pending(&p);
        self.respond_error(p.client, p.request, reject, Some(&p.key), vec![]);
    }

    pub(super) fn complete_allocate(&mut self, now: Instant, token: u64) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let data = self.allocate_success(now, &p);
        let alloc = Allocation {
            client: p.client,
            username: p.username.clone(),
            relay_v4: p.bound_v4,
            relay_v6: p.bound_v6,
            created: now,
            created_unix: p.unix,
            expires: now + p.lifetime,
            session_end: self.session_end(now, p.unix, p.credential_expiry),
            serial: token,
            limits: self.bandwidth_limits(now, &p.username),
            // Far off, so that `schedule` below files its first real deadline.
            scheduled: now + Duration::from_secs(u32::MAX as u64),
            permissions: Default::default(),
            channels: Default::default(),
            channel_by_peer: Default::default(),
            allocate_transaction: p.request.transaction_id.0,
            allocate_response: data.clone(),
            traffic: Default::default(),
            peers_used: 0,
            channels_used: 0,
        };
        let idx = self.allocations.insert(alloc);
        self.by_client.insert(p.client, idx);
        if let Some(a) = p.bound_v4 {
            self.held.remove(&a);
            self.by_relay_v4.insert(a.port(), idx);
        }
        if let Some(a) = p.bound_v6 {
            self.held.remove(&a);
            self.by_relay_v6.insert(a.port(), idx);
        }
        self.counters.allocations_created[p.client.transport as usize] += 1;
        self.count_request(p.request.method, None);
        let relay: Vec<String> = [p.bound_v4, p.bound_v6]
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        tracing::info!(
            user = user_id(&p.username),
            relay = %relay.join(","),
            lifetime_s = p.lifetime.as_secs(),
            "allocation created"
        );
        self.commands.push_back(Command::SendToClient {
            client: p.client,
            data,
        });
        let due = self.allocations[idx].next_deadline();
        self.schedule(idx, due);
    }

    /// The success response for a completed Allocate: the advertised relayed addresses,
    /// the family that could not be had, a RESERVATION-TOKEN for the port an R bit
    /// reserved (reserving it now), LIFETIME and XOR-MAPPED-ADDRESS.
    fn allocate_success(&mut self, now: Instant, p: &PendingAllocate) -> Vec<u8> {
        let mut attrs: Attrs = Vec::new();
        for (bound, fam) in [
            (p.bound_v4, self.cfg.relay_v4),
            (p.bound_v6, self.cfg.relay_v6),
        ] {
            if let Some(addr) = bound {
                let ip = fam.map_or(addr.ip(), |f| f.advertised);
                attrs.push(Box::new(RelayedAddress {
                    ip,
                    port: addr.port(),
                }));
            }
        }
        if p.v6_unavailable {
            attrs.push(Box::new(AddressErrorCode {
                family: FAMILY_IPV6,
                error: StunError::AddressFamilyNotSupported,
            }));
        }
        if p.parity == PortParity::EvenPair
            && let Some(addr) = p.bound_v4.or(p.bound_v6)
        {
            let next = SocketAddr::new(addr.ip(), addr.port() + 1);
            let token = self.reservation_token(next, p.unix + RESERVATION_LIFETIME.as_secs());
            self.held.insert(next, ());
            self.reservation_timers
                .push_back((now + RESERVATION_LIFETIME, token));
            self.reservations.insert(token, Reservation { addr: next });
            self.cfg.quotas.hold_reservation(token, &p.username);
            attrs.push(Box::new(ReservationToken(token.to_vec())));
        } else if p.reserve_slot {
            // No port to reserve after all (no relay bound): give the slot back.
            self.cfg.quotas.release(&p.username);
        }
        attrs.push(Box::new(Lifetime(p.lifetime)));
        attrs.push(Box::new(XorMappedAddress {
            ip: p.client.addr.ip(),
            port: p.client.addr.port(),
        }));
        self.encode(p.request, CLASS_SUCCESS_RESPONSE, attrs, Some(&p.key))
    }

    /// The bandwidth budgets a new allocation of `username` relays under, if any.
    pub(in crate::relay) fn bandwidth_limits(
        &self,
        now: Instant,
        username: &str,
    ) -> Option<Box<Limits>> {
        let own = self
            .cfg
            .max_bytes_per_sec_per_allocation
            .map(|r| Bucket::new(r, now));
        let user = self
            .cfg
            .max_bytes_per_sec_per_user
            .as_ref()
            .map(|(r, users)| users.get(user_id(username), *r, now));
        (own.is_some() || user.is_some()).then(|| Box::new(Limits { own, user }))
    }

    /// When an allocation made now with a credential expiring at `expiry` must end, and
    /// why: at the expiry under the strict policy, else once it has outlived its
    /// credential by the session limit. Static users' allocations only expire.
    pub(super) fn session_end(
        &self,
        now: Instant,
        unix: u64,
        expiry: Option<u64>,
    ) -> Option<(Instant, EndReason)> {
        let policy = self.cfg.auth.expiry_policy();
        let credential_end = now + Duration::from_secs(expiry?.saturating_sub(unix));
        Some(if policy.strict {
            (credential_end, EndReason::CredentialExpired)
        } else {
            let limit = now + Duration::from_secs(policy.max_session_secs);
            (credential_end.max(limit), EndReason::MaxSession)
        })
    }

    /// RESERVATION-TOKEN: the reserved port (2 bytes), the expiry's low 16 bits of unix
    /// seconds (2 bytes) and a 32-bit MAC over both and the relay IP.
    pub(super) fn reservation_token(&self, addr: SocketAddr, expiry: u64) -> [u8; 8] {
        let mut t = [0u8; 8];
        t[0..2].copy_from_slice(&addr.port().to_be_bytes());
        t[2..4].copy_from_slice(&(expiry as u16).to_be_bytes());
        let mac = self.token_mac(&t[..4], addr.ip());
        t[4..].copy_from_slice(&mac);
        t
    }

    pub(super) fn reservation_port(&self, t: &[u8; 8], unix: u64) -> Option<SocketAddr> {
        let port = u16::from_be_bytes([t[0], t[1]]);
        let expiry = u16::from_be_bytes([t[2], t[3]]);
        let left = expiry.wrapping_sub(unix as u16);
        if left as u64 > RESERVATION_LIFETIME.as_secs() {
            return None;
        }
        [self.cfg.relay_v4, self.cfg.relay_v6]
            .into_iter()
            .flatten()
            .map(|f| SocketAddr::new(f.bind, port))
            .find(|a| self.token_mac(&t[..4], a.ip()) == t[4..])
    }

    pub(super) fn token_mac(&self, data: &[u8], ip: std::net::IpAddr) -> [u8; 4] {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&self.cfg.token_key).expect("any key");
        mac.update(data);
        mac.update(ip.to_string().as_bytes());
        let out = mac.finalize().into_bytes();
        [out[0], out[1], out[2], out[3]]
    }

    /// RFC 8656 §7.2/§7.3: the client's LIFETIME, capped at the maximum; never below the
    /// default (short lifetimes only cost the client refreshes).
    pub(super) fn granted_lifetime(&self, asked: Option<Duration>) -> Duration {
        let requested = asked.unwrap_or(self.cfg.default_lifetime);
        requested
            .max(self.cfg.default_lifetime.min(self.cfg.max_lifetime))
            .min(self.cfg.max_lifetime)
    }
}
