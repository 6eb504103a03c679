//! An Allocate request's fields (RFC 8656 §7.2, RFC 6156 for the address families).

use std::time::Duration;

use stun::attributes::{ATTR_EVEN_PORT, ATTR_REQUESTED_ADDRESS_FAMILY, ATTR_RESERVATION_TOKEN};
use stun::message::{Getter, Message};
use turn::proto::reqfamily::RequestedAddressFamily;
use turn::proto::reqtrans::RequestedTransport;

use super::fields::{Family, lifetime};
use crate::proto::error_code::StunError;
use crate::proto::reject::Reject;
use crate::proto::{ATTR_ADDITIONAL_ADDRESS_FAMILY, FAMILY_IPV4, FAMILY_IPV6};

/// EVEN-PORT (RFC 8656 §14.6): what the client asked of its relayed port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvenPort {
    /// No EVEN-PORT: any port will do.
    NotAsked,
    /// An even port.
    Even,
    /// An even port, and the next one reserved for a second Allocate (the R bit).
    EvenAndReserveNext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateRequest {
    /// REQUESTED-TRANSPORT's protocol number (17 = UDP).
    pub transport: u8,
    pub even_port: EvenPort,
    pub reservation_token: Option<[u8; 8]>,
    /// REQUESTED-ADDRESS-FAMILY, when given (an unsupported one is rejected).
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
        let even_port = even_port(msg)?;
        let reservation_token = match msg.get(ATTR_RESERVATION_TOKEN) {
            Ok(v) => Some(
                <[u8; 8]>::try_from(v.as_slice())
                    .map_err(|_| Reject::new(StunError::BadRequest, "Bad RESERVATION-TOKEN"))?,
            ),
            Err(_) => None,
        };
        let family = requested_family(msg)?;
        let additional_v6 = additional_v6(msg)?;
        // RFC 8656 §7.2: a token excludes EVEN-PORT and both address-family attributes
        // (the reserved port has one family); REQUESTED-ADDRESS-FAMILY excludes
        // ADDITIONAL-ADDRESS-FAMILY.
        let even = even_port != EvenPort::NotAsked;
        if (reservation_token.is_some() && (even || family.is_some() || additional_v6))
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

fn even_port(msg: &Message) -> Result<EvenPort, Reject> {
    match msg.get(ATTR_EVEN_PORT) {
        Ok(v) if v.len() == 1 && v[0] & 0x80 != 0 => Ok(EvenPort::EvenAndReserveNext),
        Ok(v) if v.len() == 1 => Ok(EvenPort::Even),
        Ok(_) => Err(Reject::new(StunError::BadRequest, "Bad EVEN-PORT")),
        Err(_) => Ok(EvenPort::NotAsked),
    }
}

/// REQUESTED-ADDRESS-FAMILY: an unreadable or unknown family is 440.
fn requested_family(msg: &Message) -> Result<Option<Family>, Reject> {
    if !msg.contains(ATTR_REQUESTED_ADDRESS_FAMILY) {
        return Ok(None);
    }
    let not_supported = Reject::of(StunError::AddressFamilyNotSupported);
    let mut f = RequestedAddressFamily::default();
    f.get_from(msg).map_err(|_| not_supported)?;
    match f.0 {
        FAMILY_IPV4 => Ok(Some(Family::V4)),
        FAMILY_IPV6 => Ok(Some(Family::V6)),
        _ => Err(not_supported),
    }
}

fn additional_v6(msg: &Message) -> Result<bool, Reject> {
    match msg.get(ATTR_ADDITIONAL_ADDRESS_FAMILY) {
        Ok(v) if v.len() == 4 && v[0] == FAMILY_IPV6 => Ok(true),
        Ok(v) if v.len() == 4 => Err(Reject::new(
            StunError::BadRequest,
            "ADDITIONAL-ADDRESS-FAMILY must be IPv6",
        )),
        Ok(_) => Err(Reject::new(
            StunError::BadRequest,
            "Bad ADDITIONAL-ADDRESS-FAMILY",
        )),
        Err(_) => Ok(false),
    }
}
