//! Typed TURN requests: what a handler needs from a decoded message, with malformed or
//! conflicting attributes turned into the error response they deserve. The core's method
//! handlers decide on these values; they do not read attributes themselves.

use std::net::SocketAddr;
use std::time::Duration;

use stun::attributes::{
    ATTR_EVEN_PORT, ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_RESERVATION_TOKEN, ATTR_XOR_PEER_ADDRESS,
};
use stun::message::{Getter, Message};
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::reqfamily::RequestedAddressFamily;
use turn::proto::reqtrans::RequestedTransport;

use super::channel_data::MIN_CHANNEL;
use super::error_code::StunError;
use super::reject::Reject;
use super::{ATTR_ADDITIONAL_ADDRESS_FAMILY, FAMILY_IPV4, FAMILY_IPV6, decode_xor_address};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// An Allocate request (RFC 8656 §7.2, RFC 6156 for the address families).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// REQUESTED-TRANSPORT's protocol number (17 = UDP).
    pub transport: u8,
    /// EVEN-PORT, with its R bit (reserve the next port too).
    pub even_port: Option<bool>,
    pub reservation_token: Option<[u8; 8]>,
    pub family: Option<Family>,
    /// ADDITIONAL-ADDRESS-FAMILY (always IPv6): a dual-stack allocation.
    pub additional_v6: bool,
    pub lifetime: Option<Duration>,
}

impl AllocateRequest {
    pub fn parse(msg: &Message) -> Result<Self, Reject> {
        let mut transport = RequestedTransport::default();
        if transport.get_from(msg).is_err() {
            return Err(Reject::new(
                StunError::BadRequest,
                "Missing REQUESTED-TRANSPORT",
            ));
        }
        let even_port = match msg.get(ATTR_EVEN_PORT) {
            Ok(v) if v.len() == 1 => Some(v[0] & 0x80 != 0),
            Ok(_) => return Err(Reject::new(StunError::BadRequest, "Bad EVEN-PORT")),
            Err(_) => None,
        };
        let reservation_token = match msg.get(ATTR_RESERVATION_TOKEN) {
            Ok(v) => Some(
                <[u8; 8]>::try_from(v.as_slice())
                    .map_err(|_| Reject::new(StunError::BadRequest, "Bad RESERVATION-TOKEN"))?,
            ),
            Err(_) => None,
        };
        let family = if msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let mut f = RequestedAddressFamily::default();
            let not_supported = Reject::of(StunError::AddressFamilyNotSupported);
            f.get_from(msg).map_err(|_| not_supported)?;
            match f.0 {
                FAMILY_IPV4 => Some(Family::V4),
                FAMILY_IPV6 => Some(Family::V6),
                _ => return Err(not_supported),
            }
        } else {
            None
        };
        let additional_v6 = match msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY) {
            Ok(v) if v.len() == 4 && v[0] == FAMILY_IPV6 => true,
            Ok(v) if v.len() == 4 => {
                return Err(Reject::new(
                    StunError::BadRequest,
                    "ADDITIONAL-ADDRESS-FAMILY must be IPv6",
                ));
            }
            Ok(_) => {
                return Err(Reject::new(
                    StunError::BadRequest,
                    "Bad ADDITIONAL-ADDRESS-FAMILY",
                ));
            }
            Err(_) => false,
        };
        // RFC 8656 §7.2: a token excludes EVEN-PORT and both address-family attributes
        // (the reserved port has one family); REQUESTED-ADDRESS-FAMILY excludes
        // ADDITIONAL-ADDRESS-FAMILY.
        if (reservation_token.is_some()
            && (even_port.is_some() || family.is_some() || additional_v6))
            || (family.is_some() && additional_v6)
        {
            return Err(Reject::new(StunError::BadRequest, "Conflicting attributes"));
        }
        Ok(AllocateRequest {
            transport: transport.protocol.0,
            even_port,
            reservation_token,
            family,
            additional_v6,
            lifetime: lifetime(msg),
        })
    }
}

/// A Refresh request (RFC 8656 §8, RFC 6156 §4.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRequest {
    pub lifetime: Option<Duration>,
    /// REQUESTED-ADDRESS-FAMILY: None when absent, Err(()) when unreadable or unknown.
    pub family: Option<Result<Family, ()>>,
}

impl RefreshRequest {
    pub fn parse(msg: &Message) -> Self {
        let family = msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY).then(|| {
            let mut f = RequestedAddressFamily::default();
            match (f.get_from(msg), f.0) {
                (Ok(()), FAMILY_IPV4) => Ok(Family::V4),
                (Ok(()), FAMILY_IPV6) => Ok(Family::V6),
                _ => Err(()),
            }
        });
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

/// Every XOR-PEER-ADDRESS in a request, in order (CreatePermission may name several).
pub fn peer_addresses(msg: &Message) -> Result<Vec<SocketAddr>, Reject> {
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

/// LIFETIME, when present.
pub fn lifetime(msg: &Message) -> Option<Duration> {
    let mut l = Lifetime::default();
    l.get_from(msg).ok().map(|_| l.0)
}
