//! The STUN header (RFC 8489 §5): its length and the transaction id in it.

/// STUN header length.
pub const STUN_HEADER_LEN: usize = 20;

/// The 12-byte transaction id of a STUN message (caller checked the length).
pub fn transaction_id(packet: &[u8]) -> [u8; 12] {
    let mut id = [0u8; 12];
    id.copy_from_slice(&packet[8..20]);
    id
}
