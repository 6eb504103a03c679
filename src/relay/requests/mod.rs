//! STUN/TURN requests (RFC 8489, RFC 8656): Binding, Allocate, Refresh, CreatePermission,
//! ChannelBind. Decoding and encoding go through `stun::message` and `turn::proto`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

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
use super::client::{ClientId, Transport};
use super::command::Command;
use super::core_state::Core;
use super::ports::{PortParity, pick_port};
use super::stats::{DropReason, EndReason, RequestMethod, result_index};
use super::time::Time;
use crate::auth::{AuthError, Key, user_id};
use crate::proto::FAMILY_IPV6;
use crate::proto::channel_data::{MAX_CHANNEL, MAX_CHANNEL_RFC5766};
use crate::proto::error_code::StunError;
use crate::proto::reject::Reject;
use crate::proto::request::{
    AllocateRequest, ChannelBindRequest, CreatePermissionRequest, Credentials, EvenPort, Family,
    RefreshRequest, Request, RequestedFamily, Unreadable,
};
use crate::proto::response::AddressErrorCode;

const PROTO_UDP: u8 = 17;
/// Port choices tried before an Allocate gives up with 508.
const BIND_ATTEMPTS: u32 = 16;

/// A request that passed authentication: who signed it, with which key, and when the
/// credential expires (unix seconds; None for static users).
struct Authenticated {
    username: String,
    key: Key,
    expiry: Option<u64>,
}

/// When and from whom a request came, and what its response needs.
#[derive(Clone, Copy)]
struct Arrival {
    now: Instant,
    unix: u64,
    client: ClientId,
    req: RequestInfo,
}

/// A request of a TURN method before its credentials are checked: the message (its
/// MESSAGE-INTEGRITY is checked over the raw bytes) and its credential attributes, read.
struct Unverified {
    at: Arrival,
    msg: Message,
    credentials: Credentials,
    /// A Refresh with LIFETIME 0, which a stale nonce does not stop (`authenticate`).
    deletes: bool,
}

/// An authenticated request as the method handlers see it: its arrival and who signed
/// it. The method's fields come beside it, typed (`proto::request`).
struct Ctx<'a> {
    at: Arrival,
    who: &'a Authenticated,
}

type Attrs = Vec<Box<dyn Setter>>;

mod allocate;
mod auth;
mod binding;
mod channel_bind;
mod fleet_slot;
pub(super) mod pending;
mod permission;
mod redirect;
mod refresh;
mod request_info;
pub(super) mod reservation;

use pending::PendingAllocate;
use request_info::RequestInfo;
use reservation::{RESERVATION_LIFETIME, Reservation};

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
        let Some((msg, req)) = self.decode_request(packet) else {
            return;
        };
        let request = match Request::parse(&msg, self.max_channel()) {
            Ok(request) => request,
            Err(unreadable) => return self.refuse_unreadable(client, req, unreadable),
        };
        let signed = Unverified {
            at: Arrival {
                now,
                unix,
                client,
                req,
            },
            credentials: Credentials::parse(&msg),
            deletes: matches!(&request, Request::Refresh(r) if r.deletes()),
            msg,
        };
        match request {
            Request::Binding => self.binding(client, req),
            Request::Allocate(r) => {
                if !self.redirected_unsigned(client, req, &signed.credentials) {
                    self.answer_signed(signed, |core, ctx| core.allocate(ctx, r));
                }
            }
            Request::Refresh(r) => self.answer_signed(signed, |core, ctx| core.refresh(ctx, r)),
            Request::CreatePermission(r) => {
                self.answer_signed(signed, |core, ctx| core.create_permission(ctx, r))
            }
            Request::ChannelBind(r) => {
                self.answer_signed(signed, |core, ctx| core.channel_bind(ctx, r))
            }
        }
    }

    /// 420 (naming the attributes) or 400, unsigned: nothing was authenticated yet.
    fn refuse_unreadable(&mut self, client: ClientId, req: RequestInfo, unreadable: Unreadable) {
        let reject = unreadable.reject();
        let extra: Attrs = match unreadable {
            Unreadable::UnknownAttributes(types) => vec![Box::new(UnknownAttributes(types))],
            Unreadable::UnknownMethod => vec![],
        };
        self.respond_error(client, req, reject, None, extra);
    }

    /// Authenticates a request of a TURN method and hands it to its handler; what the
    /// handler rejects is answered signed with the request's key.
    fn answer_signed(
        &mut self,
        request: Unverified,
        handler: impl FnOnce(&mut Self, &Ctx) -> Result<(), Reject>,
    ) {
        let at = request.at;
        let Some(who) = self.authenticate(request) else {
            return;
        };
        if let Err(reject) = handler(self, &Ctx { at, who: &who }) {
            self.respond_error(at.client, at.req, reject, Some(&who.key), vec![]);
        }
    }

    /// The highest channel number ChannelBind accepts: RFC 8656's, or RFC 5766's.
    fn max_channel(&self) -> u16 {
        if self.cfg.strict_channel_numbers {
            MAX_CHANNEL
        } else {
            MAX_CHANNEL_RFC5766
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
        let udp = client.transport == Transport::Udp;
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

    /// A success answer to an authenticated request, signed with its key.
    fn respond_signed(&mut self, ctx: &Ctx, attrs: Attrs) {
        self.respond(ctx.at.client, ctx.at.req, attrs, Some(&ctx.who.key));
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
