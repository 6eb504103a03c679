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
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::rsrvtoken::ReservationToken;

use super::allocation::Allocation;
use super::bandwidth::{Bucket, Limits};
use super::ports::{PortParity, pick_port};
use super::stats::{DropReason, EndReason, RequestMethod, result_index};
use super::{ClientId, Command, Core, Time};
use crate::auth::{AuthError, Key, user_id};
use crate::proto::FAMILY_IPV6;
use crate::proto::channel_data::{MAX_CHANNEL, MAX_CHANNEL_RFC5766};
use crate::proto::error_code::StunError;
use crate::proto::reject::Reject;
use crate::proto::request::{self, AllocateRequest, ChannelBindRequest, Family, RefreshRequest};
use crate::proto::response::AddressErrorCode;

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

/// An authenticated request as the method handlers see it: when and from whom it came,
/// the decoded message, what its response needs, and who signed it.
struct Ctx<'a> {
    now: Instant,
    unix: u64,
    client: ClientId,
    msg: &'a Message,
    req: RequestInfo,
    who: &'a Authenticated,
}

/// What a response needs from its request.
#[derive(Clone, Copy)]
struct RequestInfo {
    method: Method,
    transaction_id: TransactionId,
    fingerprint: bool,
}

type Attrs = Vec<Box<dyn Setter>>;

mod allocate;
mod auth;
mod channel_bind;
mod permission;
mod refresh;

impl Core {
    /// A STUN message that is a request, decoded, with what its response needs; None
    /// (counted as malformed where it is) for anything else. Attributes after
    /// MESSAGE-INTEGRITY are cut off here, so no handler can see them.
    fn decode_request(&mut self, packet: &[u8]) -> Option<(Message, RequestInfo)> {
        if !is_message(packet) {
            self.counters.drop(DropReason::Malformed);
            return None;
        }
        let mut msg = Message::new();
        msg.raw.clear();
        msg.raw.extend_from_slice(packet);
        if msg.decode().is_err() {
            self.counters.drop(DropReason::Malformed);
            return None;
        }
        // A corrupt FINGERPRINT means this is not a STUN message at all: drop silently.
        if msg.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&msg).is_err() {
            self.counters.drop(DropReason::Malformed);
            return None;
        }
        if msg.typ.class != CLASS_REQUEST {
            // Responses and unknown indications from clients are ignored (RFC 8489 §6.3).
            return None;
        }
        let req = RequestInfo {
            method: msg.typ.method,
            transaction_id: msg.transaction_id,
            fingerprint: msg.contains(ATTR_FINGERPRINT),
        };
        crate::proto::ignore_after_integrity(&mut msg);
        Some((msg, req))
    }

    pub(in crate::relay) fn handle_stun(
        &mut self,
        now: Instant,
        unix: u64,
        client: ClientId,
        packet: &[u8],
    ) {
        self.clock = Some(now);
        let Some((mut msg, req)) = self.decode_request(packet) else {
            return;
        };
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
                Reject::of(StunError::UnknownAttribute),
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
                if req.method == METHOD_ALLOCATE && self.redirected_unsigned(client, req, &msg) {
                    return;
                }
                let Some(who) = self.authenticate(now, &mut msg, req, unix, client) else {
                    return;
                };
                let ctx = Ctx {
                    now,
                    unix,
                    client,
                    msg: &msg,
                    req,
                    who: &who,
                };
                let result = match req.method {
                    METHOD_ALLOCATE => self.allocate(&ctx),
                    METHOD_REFRESH => self.refresh(&ctx),
                    METHOD_CREATE_PERMISSION => self.create_permission(&ctx),
                    _ => self.channel_bind(&ctx),
                };
                if let Err(reject) = result {
                    self.respond_error(client, req, reject, Some(&who.key), vec![]);
                }
            }
            _ => self.respond_error(client, req, Reject::of(StunError::BadRequest), None, vec![]),
        }
    }

    /// Counts an answer: a success (None) or an error.
    fn count_request(&mut self, method: Method, error: Option<StunError>) {
        self.counters.requests[RequestMethod::of(method) as usize][result_index(error)] += 1;
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
        self.count_request(req.method, None);
        let data = self.encode(req, CLASS_SUCCESS_RESPONSE, attrs, key);
        self.commands
            .push_back(Command::SendToClient { client, data });
    }

    fn respond_error(
        &mut self,
        client: ClientId,
        req: RequestInfo,
        reject: Reject,
        key: Option<&Key>,
        mut extra: Attrs,
    ) {
        if !self.unauthenticated_budget(client, key) {
            return;
        }
        let (code, reason) = (reject.code.code(), reject.reason);
        self.count_request(req.method, Some(reject.code));
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
        crate::proto::response::encode(
            MessageType::new(req.method, class),
            req.transaction_id,
            &attrs,
            key.map(|k| k.as_slice()),
            req.fingerprint,
        )
    }
}
