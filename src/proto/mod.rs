//! Wire formats. STUN/TURN control messages go through webrtc-rs `stun::message` and the
//! `turn::proto` attribute types; this module adds the few pieces those crates lack and the
//! zero-copy readers the relay path needs.

pub mod channel_data;
pub mod error_code;
pub mod indication;
pub mod reject;
pub mod request;
pub mod response;
#[cfg(test)]
mod rfc5769;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::attributes::AttrType;
use stun::message::MAGIC_COOKIE;

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): asks for an IPv6 relay beside the IPv4 one.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12): why one family of a dual allocation failed.
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);

pub const FAMILY_IPV4: u8 = 0x01;
pub const FAMILY_IPV6: u8 = 0x02;

/// STUN header length.
pub const STUN_HEADER_LEN: usize = 20;

/// What a client sent, told apart by its first bytes. The relay path's two messages are
/// borrowed views of the packet (no copy); everything else is STUN for the control path,
/// which decodes it with `stun::message` and reads it through `request`'s typed structs.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    ChannelData(channel_data::ChannelData<'a>),
    Send(indication::SendIndication<'a>),
    Stun,
    /// Looked like ChannelData or a Send indication but is not a valid one.
    Malformed,
}

/// Classifies and, for the relay path, parses a client's packet.
pub fn decode(packet: &[u8]) -> ClientMessage<'_> {
    if channel_data::is_channel_data(packet) {
        return channel_data::parse(packet)
            .map_or(ClientMessage::Malformed, ClientMessage::ChannelData);
    }
    if indication::is_send_indication(packet) {
        return indication::parse_send(packet)
            .map_or(ClientMessage::Malformed, ClientMessage::Send);
    }
    ClientMessage::Stun
}

/// RFC 8489 §14.5: attributes after MESSAGE-INTEGRITY (but FINGERPRINT, already checked)
/// are ignored. Cuts the decoded message right after MESSAGE-INTEGRITY, so no handler can
/// read an attribute that an on-path attacker appended outside the integrity check. The
/// integrity check still verifies: its HMAC covers exactly the kept bytes.
pub fn ignore_after_integrity(m: &mut stun::message::Message) {
    let Some(i) = m
        .attributes
        .0
        .iter()
        .position(|a| a.typ == stun::attributes::ATTR_MESSAGE_INTEGRITY)
    else {
        return;
    };
    let end = STUN_HEADER_LEN
        + m.attributes.0[..=i]
            .iter()
            .map(|a| 4 + (a.length as usize).div_ceil(4) * 4)
            .sum::<usize>();
    if end >= m.raw.len() {
        return;
    }
    m.attributes.0.truncate(i + 1);
    m.raw.truncate(end);
    m.length = (end - STUN_HEADER_LEN) as u32;
    m.write_length();
}

/// Decodes an XOR-*-ADDRESS value (RFC 8489 §14.2) given the message's transaction id.
pub fn decode_xor_address(value: &[u8], transaction_id: &[u8; 12]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    match (value[1], value.len()) {
        (FAMILY_IPV4, 8) => {
            let mut ip = [0u8; 4];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = value[4 + i] ^ cookie[i];
            }
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(ip)), port))
        }
        (FAMILY_IPV6, 20) => {
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                let key = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                *b = value[4 + i] ^ key;
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Writes an XOR-*-ADDRESS value (RFC 8489 §14.2) into `out` (8 bytes for IPv4, 20 for
/// IPv6): the inverse of `decode_xor_address`.
pub fn encode_xor_address(out: &mut [u8], addr: SocketAddr, transaction_id: &[u8; 12]) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = FAMILY_IPV4;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ cookie[i];
            }
        }
        IpAddr::V6(ip) => {
            out[1] = FAMILY_IPV6;
            for (i, b) in ip.octets().iter().enumerate() {
                let key = if i < 4 {
                    cookie[i]
                } else {
                    transaction_id[i - 4]
                };
                out[4 + i] = b ^ key;
            }
        }
    }
}

/// The 12-byte transaction id of a STUN message (caller checked the length).
pub fn transaction_id(packet: &[u8]) -> [u8; 12] {
    let mut id = [0u8; 12];
    id.copy_from_slice(&packet[8..20]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::message::{Getter, Message, Setter};
    use stun::xoraddr::XorMappedAddress;

    #[test]
    fn xor_address_decodes_what_the_stun_crate_encodes() {
        for addr in ["198.51.100.7:40000", "[2001:db8::1]:3478"] {
            let addr: SocketAddr = addr.parse().unwrap();
            let mut m = Message::new();
            m.new_transaction_id().unwrap();
            XorMappedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }
            .add_to(&mut m)
            .unwrap();
            let raw = &m.attributes.0[0].value;
            assert_eq!(
                decode_xor_address(raw, &m.transaction_id.0),
                Some(addr),
                "{addr}"
            );
            let mut back = XorMappedAddress::default();
            back.get_from(&m).unwrap();
            assert_eq!(SocketAddr::new(back.ip, back.port), addr);
        }
        assert_eq!(decode_xor_address(&[0, 1, 0], &[0; 12]), None);
        assert_eq!(
            decode_xor_address(&[0, 3, 0, 0, 1, 2, 3, 4], &[0; 12]),
            None
        );
    }
}
