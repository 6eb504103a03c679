//! Typed TURN requests: what a handler needs from a decoded message, with malformed or
//! conflicting attributes turned into the error response they deserve. The core's method
//! handlers decide on these values; they do not read attributes themselves.
//!
//! A method's own attributes are read before authentication, but a problem with them is
//! kept as the `Reject` it earns and answered by the handler, in the order the RFCs give
//! (after the credential check and the handler's checks on the allocation).

mod allocate;
mod credentials;
mod fields;
#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::*;
use stun::message::{
    Getter, METHOD_ALLOCATE, METHOD_BINDING, METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION,
    METHOD_REFRESH, Message,
};
use turn::proto::channum::ChannelNumber;
use turn::proto::reqfamily::RequestedAddressFamily;

use super::channel_data::MIN_CHANNEL;
use super::error_code::StunError;
use super::reject::Reject;
use super::{FAMILY_IPV4, FAMILY_IPV6, decode_xor_address};

pub use allocate::{AllocateRequest, EvenPort};
pub use credentials::Credentials;
pub use fields::Family;
use fields::lifetime;

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

/// A request, one variant per method this server serves, with its method's fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Binding,
    Allocate(Result<AllocateRequest, Reject>),
    Refresh(RefreshRequest),
    CreatePermission(Result<CreatePermissionRequest, Reject>),
    ChannelBind(Result<ChannelBindRequest, Reject>),
}

/// Why a request is refused before its method is looked at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    /// 420, naming these comprehension-required attributes in UNKNOWN-ATTRIBUTES.
    UnknownAttributes(Vec<AttrType>),
    /// 400: a method this server does not serve.
    UnknownMethod,
}

impl Unreadable {
    pub fn reject(&self) -> Reject {
        match self {
            Unreadable::UnknownAttributes(_) => Reject::of(StunError::UnknownAttribute),
            Unreadable::UnknownMethod => Reject::of(StunError::BadRequest),
        }
    }
}

impl Request {
    /// Reads a decoded request (whose attributes after MESSAGE-INTEGRITY are already cut
    /// off: `proto::ignore_after_integrity`). `max_channel` is RFC 8656's 0x4FFF or RFC
    /// 5766's 0x7FFE.
    pub fn parse(msg: &Message, max_channel: u16) -> Result<Request, Unreadable> {
        let unknown: Vec<AttrType> = msg
            .attributes
            .0
            .iter()
            .map(|a| a.typ)
            .filter(|t| t.required() && !KNOWN_REQUIRED.contains(t))
            .collect();
        if !unknown.is_empty() {
            return Err(Unreadable::UnknownAttributes(unknown));
        }
        Ok(match msg.typ.method {
            METHOD_BINDING => Request::Binding,
            METHOD_ALLOCATE => Request::Allocate(AllocateRequest::parse(msg)),
            METHOD_REFRESH => Request::Refresh(RefreshRequest::parse(msg)),
            METHOD_CREATE_PERMISSION => {
                Request::CreatePermission(CreatePermissionRequest::parse(msg))
            }
            METHOD_CHANNEL_BIND => {
                Request::ChannelBind(ChannelBindRequest::parse(msg, max_channel))
            }
            _ => return Err(Unreadable::UnknownMethod),
        })
    }
}

/// REQUESTED-ADDRESS-FAMILY in a Refresh (RFC 8656 §8, RFC 6156 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestedFamily {
    /// Not given: the Refresh is about the whole allocation.
    Absent,
    Asked(Family),
    /// Unreadable or a family this server does not know.
    Unsupported,
}

/// A Refresh request (RFC 8656 §8, RFC 6156 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefreshRequest {
    pub lifetime: Option<Duration>,
    pub family: RequestedFamily,
}

impl RefreshRequest {
    pub fn parse(msg: &Message) -> Self {
        let family = if msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let mut f = RequestedAddressFamily::default();
            match (f.get_from(msg), f.0) {
                (Ok(()), FAMILY_IPV4) => RequestedFamily::Asked(Family::V4),
                (Ok(()), FAMILY_IPV6) => RequestedFamily::Asked(Family::V6),
                _ => RequestedFamily::Unsupported,
            }
        } else {
            RequestedFamily::Absent
        };
        RefreshRequest {
            lifetime: lifetime(msg),
            family,
        }
    }

    /// A deletion: LIFETIME 0.
    pub fn deletes(&self) -> bool {
        self.lifetime.is_some_and(|l| l.is_zero())
    }
}

/// A CreatePermission request (RFC 8656 §9.1): every XOR-PEER-ADDRESS, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePermissionRequest {
    pub peers: Vec<SocketAddr>,
}

impl CreatePermissionRequest {
    pub fn parse(msg: &Message) -> Result<Self, Reject> {
        peer_addresses(msg).map(|peers| CreatePermissionRequest { peers })
    }
}

/// A ChannelBind request (RFC 8656 §11.1): the channel and the (first) peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelBindRequest {
    pub channel: u16,
    pub peer: SocketAddr,
}

impl ChannelBindRequest {
    /// `max_channel` is RFC 8656's 0x4FFF or RFC 5766's 0x7FFE.
    pub fn parse(msg: &Message, max_channel: u16) -> Result<Self, Reject> {
        let mut ch = ChannelNumber::default();
        if ch.get_from(msg).is_err() || !(MIN_CHANNEL..=max_channel).contains(&ch.0) {
            return Err(Reject::new(StunError::BadRequest, "Bad CHANNEL-NUMBER"));
        }
        let peer = peer_addresses(msg)?[0];
        Ok(ChannelBindRequest {
            channel: ch.0,
            peer,
        })
    }
}

/// Every XOR-PEER-ADDRESS in a request, in order; at least one.
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
        _ => Err(Reject::new(
            StunError::BadRequest,
            "Missing or bad XOR-PEER-ADDRESS",
        )),
    }
}
