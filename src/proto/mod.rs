//! Wire formats. STUN/TURN control messages go through webrtc-rs `stun::message` and the
//! `turn::proto` attribute types; this module adds the few pieces those crates lack and the
//! zero-copy readers the relay path needs.

pub mod channel_data;
pub mod error_code;
pub mod header;
pub mod indication;
pub mod reject;
pub mod request;
pub mod response;
#[cfg(test)]
mod rfc5769;
pub mod xor_address;

use stun::attributes::AttrType;

pub use header::{STUN_HEADER_LEN, transaction_id};
pub use xor_address::{FAMILY_IPV4, FAMILY_IPV6, decode_xor_address, encode_xor_address};

/// ADDITIONAL-ADDRESS-FAMILY (RFC 8656 §18.11): asks for an IPv6 relay beside the IPv4 one.
pub const ATTR_ADDITIONAL_ADDRESS_FAMILY: AttrType = AttrType(0x8000);
/// ADDRESS-ERROR-CODE (RFC 8656 §18.12): why one family of a dual allocation failed.
pub const ATTR_ADDRESS_ERROR_CODE: AttrType = AttrType(0x8001);

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
