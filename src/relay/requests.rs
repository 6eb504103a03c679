//! STUN/TURN requests (RFC 8489, RFC 8656): Binding, Allocate, Refresh, CreatePermission,
//! ChannelBind. Decoding and encoding go through `stun::message` and `turn::proto`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqfamily::RequestedAddressFamily;
use turn::proto::reqtrans::RequestedTransport;
use turn::proto::rsrvtoken::ReservationToken;

use super::allocation::Allocation;
use super::bandwidth::{Bucket, Limits};
use super::ports::{PortParity, pick_port};
use super::quota::quota_key;
use super::stats::{DropReason, EndReason, code_index};
use super::{ClientId, Command, Server};
use crate::auth::{AuthError, Key};
use crate::proto::channel_data::{MAX_CHANNEL, MAX_CHANNEL_RFC5766, MIN_CHANNEL};
use crate::proto::{
    ATTR_ADDITIONAL_ADDRESS_FAMILY, ATTR_ADDRESS_ERROR_CODE, FAMILY_IPV4, FAMILY_IPV6,
    STUN_HEADER_LEN, decode_xor_address,
};

const SEND_INDICATION: u16 = 0x0016;
const PROTO_UDP: u8 = 17;
/// How long a port reserved by EVEN-PORT's R bit waits for its RESERVATION-TOKEN.
pub const RESERVATION_LIFETIME: Duration = Duration::from_secs(30);
/// Port choices tried before an Allocate gives up with 508.
const BIND_ATTEMPTS: u32 = 16;

/// Comprehension-required attributes this server understands; any other one in a request
/// gets 420 (RFC 8489 §7.3.1).
const KNOWN_REQUIRED: &[AttrType] = &[
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_RESERVATION_TOKEN,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_PRIORITY,
    ATTR_USE_CANDIDATE,
    // MESSAGE-INTEGRITY-SHA256 and USERHASH: understood well enough to ignore, since a
    // client sending them also sends the classic attributes.
    AttrType(0x001C),
    AttrType(0x001D),
];

pub fn is_send_indication(packet: &[u8]) -> bool {
    packet.len() >= STUN_HEADER_LEN
        && u16::from_be_bytes([packet[0], packet[1]]) == SEND_INDICATION
        && is_message(packet)
}

/// An Allocate waiting for the shell to bind its relay socket(s).
pub struct PendingAllocate {
    client: ClientId,
    request: RequestInfo,
    username: String,
    key: Key,
    /// Unix seconds the credential expires at (REST), for the expiry policy.
    credential_expiry: Option<u64>,
    /// A second quota slot is held for the port an EVEN-PORT R bit reserves.
    reserve_slot: bool,
    lifetime: Duration,
    want_v4: bool,
    want_v6: bool,
    /// The IPv6 half was asked for with ADDITIONAL-ADDRESS-FAMILY but this server has no
    /// IPv6 relay: reported with ADDRESS-ERROR-CODE instead of failing the whole Allocate.
    v6_unavailable: bool,
    parity: PortParity,
    unix: u64,
    /// A port reserved by an earlier Allocate's EVEN-PORT R bit, redeemed by its token.
    reserved: Option<SocketAddr>,
    bound_v4: Option<SocketAddr>,
    bound_v6: Option<SocketAddr>,
    attempts: u32,
}

impl PendingAllocate {
    pub fn client(&self) -> ClientId {
        self.client
    }
}

/// A port held for an RTCP allocation by an EVEN-PORT R bit (RFC 8656 §7.1.2).
pub struct Reservation {
    pub addr: SocketAddr,
    /// Whose quota slot it holds.
    pub username: String,
}

/// RFC 8489 §14.3: USERNAME is a UTF-8 string under 513 bytes.
const MAX_USERNAME_LEN: usize = 513;

/// A request that passed authentication: who signed it, with which key, and when the
/// credential expires (unix seconds; None for static users).
struct Authenticated {
    username: String,
    key: Key,
    expiry: Option<u64>,
}

/// What a response needs from its request.
#[derive(Clone, Copy)]
struct RequestInfo {
    method: Method,
    transaction_id: TransactionId,
    fingerprint: bool,
}

/// A rejection: its code, and whether the response must be signed (authenticated requests).
struct Reject(u16, &'static str);

type Attrs = Vec<Box<dyn Setter>>;

fn method_index(m: Method) -> usize {
    match m {
        METHOD_BINDING => 0,
        METHOD_ALLOCATE => 1,
        METHOD_REFRESH => 2,
        METHOD_CREATE_PERMISSION => 3,
        _ => 4,
    }
}

impl Server {
    pub(super) fn handle_stun(&mut self, now: Instant, unix: u64, client: ClientId, packet: &[u8]) {
        self.clock = Some(now);
        if !is_message(packet) {
            self.counters.drop(DropReason::Malformed);
            return;
        }
        let mut msg = Message::new();
        msg.raw.clear();
        msg.raw.extend_from_slice(packet);
        if msg.decode().is_err() {
            self.counters.drop(DropReason::Malformed);
            return;
        }
        // A corrupt FINGERPRINT means this is not a STUN message at all: drop silently.
        if msg.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&msg).is_err() {
            self.counters.drop(DropReason::Malformed);
            return;
        }
        if msg.typ.class != CLASS_REQUEST {
            // Responses and unknown indications from clients are ignored (RFC 8489 §6.3).
            return;
        }
        let req = RequestInfo {
            method: msg.typ.method,
            transaction_id: msg.transaction_id,
            fingerprint: msg.contains(ATTR_FINGERPRINT),
        };
        crate::proto::ignore_after_integrity(&mut msg);
        let unknown: Vec<AttrType> = msg
            .attributes
            .0
            .iter()
            .map(|a| a.typ)
            .filter(|t| t.required() && !KNOWN_REQUIRED.contains(t))
            .collect();
        if !unknown.is_empty() {
            self.respond_error(
                client,
                req,
                420,
                "Unknown Attribute",
                None,
                vec![Box::new(UnknownAttributes(unknown))],
            );
            return;
        }
        match req.method {
            METHOD_BINDING => {
                let attrs: Attrs = vec![Box::new(XorMappedAddress {
                    ip: client.addr.ip(),
                    port: client.addr.port(),
                })];
                self.respond(client, req, attrs, None);
            }
            METHOD_ALLOCATE | METHOD_REFRESH | METHOD_CREATE_PERMISSION | METHOD_CHANNEL_BIND => {
                let Some(Authenticated {
                    username,
                    key,
                    expiry,
                }) = self.authenticate(now, &mut msg, req, unix, client)
                else {
                    return;
                };
                let result = match req.method {
                    METHOD_ALLOCATE => {
                        let who = Authenticated {
                            username,
                            key: key.clone(),
                            expiry,
                        };
                        self.allocate(now, unix, client, &msg, req, who)
                    }
                    METHOD_REFRESH => self.refresh(now, client, &msg, req, &username, &key),
                    METHOD_CREATE_PERMISSION => {
                        self.create_permission(now, client, &msg, req, &username, &key)
                    }
                    _ => self.channel_bind(now, client, &msg, req, &username, &key),
                };
                if let Err(Reject(code, reason)) = result {
                    self.respond_error(client, req, code, reason, Some(&key), vec![]);
                }
            }
            _ => self.respond_error(client, req, 400, "Bad Request", None, vec![]),
        }
    }

    /// The long-term credential check (RFC 8489 §9.2.4) and the credential-expiry policy.
    /// Sends the 400/401/438 itself and returns None on failure. Nothing is stored for a
    /// client that fails.
    fn authenticate(
        &mut self,
        now: Instant,
        msg: &mut Message,
        req: RequestInfo,
        unix: u64,
        client: ClientId,
    ) -> Option<Authenticated> {
        if !msg.contains(ATTR_MESSAGE_INTEGRITY) {
            self.auth_failure(client, req, unix, AuthError::NoIntegrity);
            return None;
        }
        let text = |m: &Message, t| TextAttribute::get_from_as(m, t).ok().map(|a| a.text);
        let (Some(username), Some(_realm), Some(nonce)) = (
            text(msg, ATTR_USERNAME),
            text(msg, ATTR_REALM),
            text(msg, ATTR_NONCE),
        ) else {
            self.respond_error(client, req, 400, "Bad Request", None, vec![]);
            return None;
        };
        // RFC 8489 §14.3: USERNAME is under 513 bytes.
        if username.len() > MAX_USERNAME_LEN {
            self.respond_error(client, req, 400, "USERNAME too long", None, vec![]);
            return None;
        }
        let nonce_ok = self.cfg.auth.check_nonce(&nonce, unix, client.addr);
        // A stale nonce is answered before any HMAC work, except for a deletion: a
        // Refresh(0) signed with the allocation's key is honoured, since answering 438 to a
        // client that is leaving only makes its allocation linger (browsers do not retry).
        if !nonce_ok && !self.is_own_deletion(msg, req, client, &username) {
            self.auth_failure(client, req, unix, AuthError::StaleNonce);
            return None;
        }
        let cred = match self.cfg.auth.keys_for(&username, unix) {
            Ok(c) => c,
            Err(e) => {
                self.auth_failure(client, req, unix, e);
                return None;
            }
        };
        let Some(key) = cred
            .keys
            .into_iter()
            .find(|k| MessageIntegrity(k.clone()).check(msg).is_ok())
        else {
            let e = if nonce_ok {
                AuthError::BadIntegrity
            } else {
                AuthError::StaleNonce
            };
            self.auth_failure(client, req, unix, e);
            return None;
        };
        if cred.expiry.is_some_and(|e| e < unix)
            && !self.may_outlive_credential(now, req, client, &username)
        {
            self.auth_failure(client, req, unix, AuthError::Expired);
            return None;
        }
        Some(Authenticated {
            username,
            key,
            expiry: cred.expiry,
        })
    }

    /// Whether this request deletes the caller's own allocation (Refresh, LIFETIME 0).
    fn is_own_deletion(
        &self,
        msg: &Message,
        req: RequestInfo,
        client: ClientId,
        username: &str,
    ) -> bool {
        let mut l = Lifetime::default();
        req.method == METHOD_REFRESH
            && l.get_from(msg).is_ok()
            && l.0.is_zero()
            && self
                .by_client
                .get(&client)
                .is_some_and(|&i| self.allocations[i].username == username)
    }

    /// The lenient expiry policy: an expired credential still works for requests on the
    /// allocation it created, from that allocation's own 5-tuple, until the session limit.
    fn may_outlive_credential(
        &self,
        now: Instant,
        req: RequestInfo,
        client: ClientId,
        username: &str,
    ) -> bool {
        if self.cfg.auth.expiry_policy().strict || req.method == METHOD_ALLOCATE {
            return false;
        }
        self.by_client.get(&client).is_some_and(|&i| {
            let a = &self.allocations[i];
            a.username == username && a.session_end.is_none_or(|(end, _)| now < end)
        })
    }

    fn auth_failure(&mut self, client: ClientId, req: RequestInfo, unix: u64, e: AuthError) {
        self.counters.auth_failures[e as usize] += 1;
        tracing::debug!(client = %client.addr, reason = e.label(), "authentication failed");
        // No reason phrase on the challenge: the code says it all, and this is the answer
        // every unauthenticated request gets, so every byte is amplification.
        let (code, reason) = match e {
            AuthError::StaleNonce => (438, "Stale Nonce"),
            AuthError::NoIntegrity => (401, ""),
            _ => (401, "Unauthorized"),
        };
        let attrs: Attrs = vec![
            Box::new(TextAttribute::new(
                ATTR_REALM,
                self.cfg.auth.realm().to_owned(),
            )),
            Box::new(TextAttribute::new(
                ATTR_NONCE,
                self.cfg.auth.mint_nonce(unix, client.addr),
            )),
        ];
        self.respond_error(client, req, code, reason, None, attrs);
    }

    fn allocate(
        &mut self,
        now: Instant,
        unix: u64,
        client: ClientId,
        msg: &Message,
        req: RequestInfo,
        who: Authenticated,
    ) -> Result<(), Reject> {
        let Authenticated {
            username,
            key,
            expiry,
        } = who;
        if let Some(&idx) = self.by_client.get(&client) {
            let a = &self.allocations[idx];
            // A retransmission whose response was lost gets the same response again.
            if a.allocate_transaction == req.transaction_id.0 {
                let data = a.allocate_response.clone();
                self.count_request(req.method, 200);
                self.commands
                    .push_back(Command::SendToClient { client, data });
                return Ok(());
            }
            return Err(Reject(437, "Allocation Mismatch"));
        }
        if self.pending.values().any(|p| p.client == client) {
            return Ok(()); // a retransmission while the relay socket is being bound
        }
        let mut transport = RequestedTransport::default();
        if transport.get_from(msg).is_err() {
            return Err(Reject(400, "Missing REQUESTED-TRANSPORT"));
        }
        if transport.protocol.0 != PROTO_UDP {
            return Err(Reject(442, "Unsupported Transport Protocol"));
        }
        let has_token = msg.contains(ATTR_RESERVATION_TOKEN);
        let has_family = msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY);
        let has_additional = msg.contains(ATTR_ADDITIONAL_ADDRESS_FAMILY);
        // EVEN-PORT's R bit asks us to reserve the next port, which we do not do.
        let even = match msg.get(ATTR_EVEN_PORT) {
            Ok(v) if v.len() == 1 => Some(v[0] & 0x80 != 0),
            Ok(_) => return Err(Reject(400, "Bad EVEN-PORT")),
            Err(_) => None,
        };
        if (has_token && (even.is_some() || has_family)) || (has_family && has_additional) {
            return Err(Reject(400, "Conflicting attributes"));
        }
        let reserved = if has_token {
            let v = msg
                .get(ATTR_RESERVATION_TOKEN)
                .map_err(|_| Reject(400, "Bad RESERVATION-TOKEN"))?;
            let token = <[u8; 8]>::try_from(v.as_slice())
                .map_err(|_| Reject(400, "Bad RESERVATION-TOKEN"))?;
            // Stateless (like nonces): the RTCP Allocate may come from another source port
            // and so land on another shard than the one that reserved the port.
            let addr = self
                .reservation_port(&token, unix)
                .ok_or(Reject(508, "Unknown or expired RESERVATION-TOKEN"))?;
            // Redeemed: the new allocation takes a quota slot of its own.
            self.end_reservation(&token);
            Some(addr)
        } else {
            None
        };
        let parity = match even {
            None => PortParity::Any,
            Some(false) => PortParity::Even,
            Some(true) => PortParity::EvenPair,
        };
        let (mut want_v4, mut want_v6, mut v6_optional) = (true, false, false);
        if let Some(r) = reserved {
            (want_v4, want_v6) = (r.is_ipv4(), r.is_ipv6());
        }
        if has_family {
            let mut f = RequestedAddressFamily::default();
            f.get_from(msg)
                .map_err(|_| Reject(440, "Address Family not Supported"))?;
            match f.0 {
                FAMILY_IPV4 => {}
                FAMILY_IPV6 => (want_v4, want_v6) = (false, true),
                _ => return Err(Reject(440, "Address Family not Supported")),
            }
        }
        if has_additional {
            let v = msg
                .get(ATTR_ADDITIONAL_ADDRESS_FAMILY)
                .map_err(|_| Reject(400, "Bad ADDITIONAL-ADDRESS-FAMILY"))?;
            if v.len() != 4 || v[0] != FAMILY_IPV6 {
                return Err(Reject(400, "ADDITIONAL-ADDRESS-FAMILY must be IPv6"));
            }
            (want_v6, v6_optional) = (true, true);
        }
        if want_v4 && self.cfg.relay_v4.is_none() {
            return Err(Reject(440, "Address Family not Supported"));
        }
        let v6_unavailable = want_v6 && self.cfg.relay_v6.is_none();
        if v6_unavailable && !v6_optional {
            return Err(Reject(440, "Address Family not Supported"));
        }
        // Last check before the pending entry: every slot taken here is given back by
        // fail_pending / drop_pending / remove_allocation / end_reservation. An EVEN-PORT
        // R bit takes a second slot for the port it reserves.
        self.take_quota(&username)?;
        let reserve_slot = parity == PortParity::EvenPair;
        if reserve_slot && let Err(e) = self.take_quota(&username) {
            self.cfg.quotas.release(&username);
            return Err(e);
        }
        let lifetime = self.granted_lifetime(msg);
        let token = self.next_token;
        self.next_token += 1;
        self.pending.insert(
            token,
            PendingAllocate {
                client,
                request: req,
                username,
                key,
                credential_expiry: expiry,
                reserve_slot,
                lifetime,
                want_v4,
                want_v6: want_v6 && !v6_unavailable,
                v6_unavailable,
                parity,
                unix,
                reserved,
                bound_v4: None,
                bound_v6: None,
                attempts: 0,
            },
        );
        self.request_next_bind(now, token);
        Ok(())
    }

    /// Asks the shell to bind the next relay socket the pending Allocate needs, or
    /// completes it when all are bound.
    fn request_next_bind(&mut self, now: Instant, token: u64) {
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
    pub fn relay_bound(&mut self, now: Instant, token: u64, addr: SocketAddr, ok: bool) {
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
    pub(super) fn drop_pending(&mut self, token: u64) {
        if let Some(p) = self.pending.remove(&token) {
            self.abandon_pending(&p);
        }
    }

    /// Gives back what a pending Allocate held: its relay sockets and quota slots.
    fn abandon_pending(&mut self, p: &PendingAllocate) {
        for addr in [p.bound_v4, p.bound_v6].into_iter().flatten() {
            self.held.remove(&addr);
            self.commands.push_back(Command::ReleaseRelay { addr });
        }
        self.cfg.quotas.release(&p.username);
        if p.reserve_slot {
            self.cfg.quotas.release(&p.username);
        }
    }

    /// One quota slot for `username`, or 486.
    fn take_quota(&mut self, username: &str) -> Result<(), Reject> {
        self.cfg.quotas.acquire(username).map_err(|_| {
            self.counters.quota_rejections += 1;
            Reject(486, "Allocation Quota Reached")
        })
    }

    /// Ends an EVEN-PORT reservation (expired or redeemed), giving back its slot.
    pub(super) fn end_reservation(&mut self, token: &[u8; 8]) {
        if let Some(r) = self.reservations.remove(token) {
            self.held.remove(&r.addr);
            self.cfg.quotas.release(&r.username);
        }
    }

    fn fail_pending(&mut self, token: u64) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        self.abandon_pending(&p);
        self.respond_error(
            p.client,
            p.request,
            508,
            "Insufficient Capacity",
            Some(&p.key),
            vec![],
        );
    }

    fn complete_allocate(&mut self, now: Instant, token: u64) {
        let Some(p) = self.pending.remove(&token) else {
            return;
        };
        let advertise = |addr: SocketAddr, fam: Option<super::RelayFamily>| {
            SocketAddr::new(fam.map_or(addr.ip(), |f| f.advertised), addr.port())
        };
        let mut attrs: Attrs = Vec::new();
        for (bound, fam) in [
            (p.bound_v4, self.cfg.relay_v4),
            (p.bound_v6, self.cfg.relay_v6),
        ] {
            if let Some(addr) = bound {
                let a = advertise(addr, fam);
                attrs.push(Box::new(RelayedAddress {
                    ip: a.ip(),
                    port: a.port(),
                }));
            }
        }
        if p.v6_unavailable {
            attrs.push(Box::new(AddressErrorCode {
                family: FAMILY_IPV6,
                code: 440,
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
            self.reservations.insert(
                token,
                Reservation {
                    addr: next,
                    username: p.username.clone(),
                },
            );
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
        let data = self.encode(p.request, CLASS_SUCCESS_RESPONSE, attrs, Some(&p.key));
        let alloc = Allocation {
            client: p.client,
            username: p.username.clone(),
            relay_v4: p.bound_v4,
            relay_v6: p.bound_v6,
            created: now,
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
        self.count_request(p.request.method, 200);
        let relay: Vec<String> = [p.bound_v4, p.bound_v6]
            .iter()
            .flatten()
            .map(|a| a.to_string())
            .collect();
        tracing::info!(
            user = %p.username,
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

    /// The bandwidth budgets a new allocation of `username` relays under, if any.
    fn bandwidth_limits(&self, now: Instant, username: &str) -> Option<Box<Limits>> {
        let own = self
            .cfg
            .max_bytes_per_sec_per_allocation
            .map(|r| Bucket::new(r, now));
        let user = self
            .cfg
            .max_bytes_per_sec_per_user
            .as_ref()
            .map(|(r, users)| users.get(quota_key(username), *r, now));
        (own.is_some() || user.is_some()).then(|| Box::new(Limits { own, user }))
    }

    /// When an allocation made now with a credential expiring at `expiry` must end, and
    /// why: at the expiry under the strict policy, else once it has outlived its
    /// credential by the session limit. Static users' allocations only expire.
    fn session_end(
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
    fn reservation_token(&self, addr: SocketAddr, expiry: u64) -> [u8; 8] {
        let mut t = [0u8; 8];
        t[0..2].copy_from_slice(&addr.port().to_be_bytes());
        t[2..4].copy_from_slice(&(expiry as u16).to_be_bytes());
        let mac = self.token_mac(&t[..4], addr.ip());
        t[4..].copy_from_slice(&mac);
        t
    }

    fn reservation_port(&self, t: &[u8; 8], unix: u64) -> Option<SocketAddr> {
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

    fn token_mac(&self, data: &[u8], ip: std::net::IpAddr) -> [u8; 4] {
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&self.cfg.token_key).expect("any key");
        mac.update(data);
        mac.update(ip.to_string().as_bytes());
        let out = mac.finalize().into_bytes();
        [out[0], out[1], out[2], out[3]]
    }

    /// RFC 8656 §7.2/§7.3: the client's LIFETIME, capped at the maximum; never below the
    /// default (short lifetimes only cost the client refreshes).
    fn granted_lifetime(&self, msg: &Message) -> Duration {
        let mut l = Lifetime::default();
        let requested = if l.get_from(msg).is_ok() {
            l.0
        } else {
            self.cfg.default_lifetime
        };
        requested
            .max(self.cfg.default_lifetime.min(self.cfg.max_lifetime))
            .min(self.cfg.max_lifetime)
    }

    /// The caller's allocation, or 437 / 441.
    fn own_allocation(&self, client: ClientId, username: &str) -> Result<usize, Reject> {
        let &idx = self
            .by_client
            .get(&client)
            .ok_or(Reject(437, "Allocation Mismatch"))?;
        if self.allocations[idx].username != username {
            return Err(Reject(441, "Wrong Credentials"));
        }
        Ok(idx)
    }

    fn refresh(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        req: RequestInfo,
        username: &str,
        key: &Key,
    ) -> Result<(), Reject> {
        let idx = self.own_allocation(client, username)?;
        let mut requested = Lifetime::default();
        let zero = requested.get_from(msg).is_ok() && requested.0.is_zero();
        if msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let mut f = RequestedAddressFamily::default();
            let a = &self.allocations[idx];
            let matches = f.get_from(msg).is_ok()
                && match f.0 {
                    FAMILY_IPV4 => a.relay_v4.is_some(),
                    FAMILY_IPV6 => a.relay_v6.is_some(),
                    _ => false,
                };
            if !matches {
                return Err(Reject(443, "Peer Address Family Mismatch"));
            }
        }
        let lifetime = if zero {
            self.remove_allocation(now, idx, EndReason::Deleted);
            Duration::ZERO
        } else {
            let l = self.granted_lifetime(msg);
            self.allocations[idx].expires = now + l;
            self.schedule(idx, now + l);
            l
        };
        self.respond(client, req, vec![Box::new(Lifetime(lifetime))], Some(key));
        Ok(())
    }

    /// Every XOR-PEER-ADDRESS in the request, in order.
    fn peer_addresses(msg: &Message) -> Result<Vec<SocketAddr>, Reject> {
        let peers: Option<Vec<SocketAddr>> = msg
            .attributes
            .0
            .iter()
            .filter(|a| a.typ == ATTR_XOR_PEER_ADDRESS)
            .map(|a| decode_xor_address(&a.value, &msg.transaction_id.0))
            .collect();
        match peers {
            Some(p) if !p.is_empty() => Ok(p),
            _ => Err(Reject(400, "Missing or bad XOR-PEER-ADDRESS")),
        }
    }

    /// Family and policy checks for a peer (RFC 8656 §9.1; our peer policy). Permissions
    /// are per IP, so CreatePermission checks the IP; ChannelBind names the peer's port
    /// too, and the server's own services are refused there (`with_port`).
    fn check_peer(
        &mut self,
        alloc_idx: usize,
        peer: &SocketAddr,
        with_port: bool,
    ) -> Result<(), Reject> {
        // Policy first, so every attempt at a forbidden address is counted as one.
        let permitted = if with_port {
            self.cfg.policy.permits_peer(*peer)
        } else {
            self.cfg.policy.permits(peer.ip())
        };
        if !permitted {
            self.counters.peer_denied += 1;
            tracing::debug!(peer = %peer, "peer address denied by policy");
            return Err(Reject(403, "Forbidden"));
        }
        if self.allocations[alloc_idx].relay_for(peer).is_none() {
            return Err(Reject(443, "Peer Address Family Mismatch"));
        }
        Ok(())
    }

    fn create_permission(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        req: RequestInfo,
        username: &str,
        key: &Key,
    ) -> Result<(), Reject> {
        let idx = self.own_allocation(client, username)?;
        let peers = Self::peer_addresses(msg)?;
        // All or nothing (RFC 8656 §9.2): check every peer before installing any.
        for p in &peers {
            self.check_peer(idx, p, false)?;
        }
        let a = &mut self.allocations[idx];
        let new = peers
            .iter()
            .filter(|p| !a.permissions.contains_key(&p.ip()))
            .count();
        if a.permissions.len() + new > self.cfg.max_permissions {
            return Err(Reject(508, "Too many permissions"));
        }
        for p in &peers {
            a.permit(now, p.ip());
        }
        self.schedule(idx, now + super::allocation::PERMISSION_LIFETIME);
        self.respond(client, req, vec![], Some(key));
        Ok(())
    }

    fn channel_bind(
        &mut self,
        now: Instant,
        client: ClientId,
        msg: &Message,
        req: RequestInfo,
        username: &str,
        key: &Key,
    ) -> Result<(), Reject> {
        let idx = self.own_allocation(client, username)?;
        let mut ch = ChannelNumber::default();
        let max = if self.cfg.strict_channel_numbers {
            MAX_CHANNEL
        } else {
            MAX_CHANNEL_RFC5766
        };
        if ch.get_from(msg).is_err() || !(MIN_CHANNEL..=max).contains(&ch.0) {
            return Err(Reject(400, "Bad CHANNEL-NUMBER"));
        }
        let peers = Self::peer_addresses(msg)?;
        let peer = peers[0];
        self.check_peer(idx, &peer, true)?;
        let a = &mut self.allocations[idx];
        if !a.permissions.contains_key(&peer.ip())
            && a.permissions.len() >= self.cfg.max_permissions
        {
            return Err(Reject(508, "Too many permissions"));
        }
        if !a.channels.contains_key(&ch.0) && a.channels.len() >= self.cfg.max_channels {
            return Err(Reject(508, "Too many channels"));
        }
        if !a.bind_channel(now, ch.0, peer) {
            return Err(Reject(400, "Channel already bound differently"));
        }
        // The permission it installs is due first.
        self.schedule(idx, now + super::allocation::PERMISSION_LIFETIME);
        self.respond(client, req, vec![], Some(key));
        Ok(())
    }

    fn count_request(&mut self, method: Method, code: u16) {
        self.counters.requests[method_index(method)][code_index(code)] += 1;
    }

    /// Whether an answer without MESSAGE-INTEGRITY may go to `client` now: such answers
    /// are what a spoofed UDP source would reflect, so each source prefix has a budget.
    /// A TCP/TLS client completed a handshake, so it cannot be spoofed: no limit.
    fn unauthenticated_budget(&mut self, client: ClientId, key: Option<&Key>) -> bool {
        let udp = client.transport == super::Transport::Udp;
        let Some(now) = self.clock.filter(|_| key.is_none() && udp) else {
            return true;
        };
        if self.limiter.allow(now, client.addr.ip()) {
            return true;
        }
        self.counters.drop(DropReason::RateLimit);
        false
    }

    fn respond(&mut self, client: ClientId, req: RequestInfo, attrs: Attrs, key: Option<&Key>) {
        if !self.unauthenticated_budget(client, key) {
            return;
        }
        self.count_request(req.method, 200);
        let data = self.encode(req, CLASS_SUCCESS_RESPONSE, attrs, key);
        self.commands
            .push_back(Command::SendToClient { client, data });
    }

    fn respond_error(
        &mut self,
        client: ClientId,
        req: RequestInfo,
        code: u16,
        reason: &'static str,
        key: Option<&Key>,
        mut extra: Attrs,
    ) {
        if !self.unauthenticated_budget(client, key) {
            return;
        }
        self.count_request(req.method, code);
        tracing::debug!(client = %client.addr, code, reason, "request rejected");
        let mut attrs: Attrs = vec![Box::new(ErrorCodeAttribute {
            code: ErrorCode(code),
            reason: reason.as_bytes().to_vec(),
        })];
        attrs.append(&mut extra);
        let data = self.encode(req, CLASS_ERROR_RESPONSE, attrs, key);
        self.commands
            .push_back(Command::SendToClient { client, data });
    }

    fn encode(
        &self,
        req: RequestInfo,
        class: MessageClass,
        attrs: Attrs,
        key: Option<&Key>,
    ) -> Vec<u8> {
        let mut m = Message::new();
        m.set_type(MessageType::new(req.method, class));
        m.transaction_id = req.transaction_id;
        m.write_header();
        for a in &attrs {
            let _ = a.add_to(&mut m);
        }
        if let Some(k) = key {
            let _ = MessageIntegrity(k.clone()).add_to(&mut m);
        }
        if req.fingerprint {
            let _ = FINGERPRINT.add_to(&mut m);
        }
        m.raw
    }
}

/// ADDRESS-ERROR-CODE (RFC 8656 §18.12), which `turn::proto` does not have.
struct AddressErrorCode {
    family: u8,
    code: u16,
}

impl Setter for AddressErrorCode {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        let reason = b"Address Family not Supported";
        let mut v = vec![
            self.family,
            0,
            (self.code / 100) as u8,
            (self.code % 100) as u8,
        ];
        v.extend_from_slice(reason);
        m.add(ATTR_ADDRESS_ERROR_CODE, &v);
        Ok(())
    }
}
