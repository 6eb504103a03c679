//! Zero-copy reader for Send indications (RFC 8656 §11). Browsers send these until their
//! ChannelBind succeeds, so they are a busy path: no `stun::Message` (which copies every
//! attribute) for them.

use std::net::SocketAddr;

use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};

use super::header::{STUN_HEADER_LEN, transaction_id};
use super::xor_address::{decode_xor_address, encode_xor_address};

/// Message type of a Send indication (method 0x006, class indication).
const SEND_INDICATION: u16 = 0x0016;

/// True for a STUN message whose type is Send indication.
pub fn is_send_indication(packet: &[u8]) -> bool {
    packet.len() >= STUN_HEADER_LEN
        && u16::from_be_bytes([packet[0], packet[1]]) == SEND_INDICATION
        && stun::message::is_message(packet)
}

/// Room a peer's payload needs in front of it for a Data indication header: the STUN
/// header, XOR-PEER-ADDRESS for an IPv6 peer, and the DATA attribute header.
pub const DATA_INDICATION_HEADROOM: usize = STUN_HEADER_LEN + 4 + 20 + 4;

/// The largest payload a Data indication can carry: the STUN length field is 16 bits.
pub const MAX_DATA_INDICATION_PAYLOAD: usize = 65535 - (4 + 20 + 4) - 3;

/// Frames the payload at `buf[payload_at..payload_at + len]` as a Data indication from
/// `peer` (RFC 8656 §11.4) in place: the header goes into the bytes before it, the padding
/// to 4 bytes after it. Returns where the message starts and ends in `buf`. Firefox relays
/// everything this way, so no `stun::Message` and no allocation: the caller's receive
/// buffer is the message. Needs `payload_at >= DATA_INDICATION_HEADROOM` and 3 spare bytes
/// after the payload.
pub fn frame_data_indication(
    buf: &mut [u8],
    payload_at: usize,
    len: usize,
    peer: SocketAddr,
    transaction_id: &[u8; 12],
) -> std::ops::Range<usize> {
    let addr_len = if peer.is_ipv4() { 8 } else { 20 };
    let start = payload_at - (STUN_HEADER_LEN + 4 + addr_len + 4);
    let padded = len.div_ceil(4) * 4;
    let body = 4 + addr_len + 4 + padded;
    let h = &mut buf[start..payload_at];
    h[0..2].copy_from_slice(&DATA_INDICATION.to_be_bytes());
    h[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    h[4..8].copy_from_slice(&stun::message::MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(transaction_id);
    h[20..22].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.0.to_be_bytes());
    h[22..24].copy_from_slice(&(addr_len as u16).to_be_bytes());
    encode_xor_address(&mut h[24..24 + addr_len], peer, transaction_id);
    let d = 24 + addr_len;
    h[d..d + 2].copy_from_slice(&ATTR_DATA.0.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    buf[payload_at + len..payload_at + padded].fill(0);
    start..payload_at + padded
}

/// Message type of a Data indication (method 0x007, class indication).
const DATA_INDICATION: u16 = 0x0017;

/// A Send indication's peer and payload, borrowed from the packet.
#[derive(Debug, PartialEq, Eq)]
pub struct SendIndication<'a> {
    pub peer: SocketAddr,
    pub data: &'a [u8],
}

/// Walks the attributes of a STUN message that the caller has already identified as a Send
/// indication. Returns None for malformed input or when either attribute is missing.
pub fn parse_send(packet: &[u8]) -> Option<SendIndication<'_>> {
    if packet.len() < STUN_HEADER_LEN {
        return None;
    }
    let body_len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    let body = packet.get(STUN_HEADER_LEN..STUN_HEADER_LEN + body_len)?;
    let tid = transaction_id(packet);
    let (mut peer, mut data) = (None, None);
    let mut rest = body;
    while rest.len() >= 4 {
        let typ = u16::from_be_bytes([rest[0], rest[1]]);
        let len = u16::from_be_bytes([rest[2], rest[3]]) as usize;
        let value = rest.get(4..4 + len)?;
        match typ {
            t if t == ATTR_XOR_PEER_ADDRESS.0 && peer.is_none() => {
                peer = Some(decode_xor_address(value, &tid)?)
            }
            t if t == ATTR_DATA.0 && data.is_none() => data = Some(value),
            _ => {}
        }
        let padded = 4 + len.div_ceil(4) * 4;
        rest = rest.get(padded..).unwrap_or(&[]);
    }
    Some(SendIndication {
        peer: peer?,
        data: data?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_indication_framed_in_place_decodes_as_the_stun_crate_encodes_it() {
        for peer in ["198.51.100.9:5000", "[2001:db8::9]:6000"] {
            let peer: SocketAddr = peer.parse().unwrap();
            for payload in [&b""[..], b"x", b"hello", b"exactly8"] {
                let mut buf = vec![0xAAu8; 200];
                let at = DATA_INDICATION_HEADROOM;
                buf[at..at + payload.len()].copy_from_slice(payload);
                let tid = [7u8; 12];
                let r = frame_data_indication(&mut buf, at, payload.len(), peer, &tid);
                let mut m = stun::message::Message::new();
                m.raw = buf[r.clone()].to_vec();
                m.decode().unwrap();
                assert_eq!(
                    m.typ,
                    MessageType::new(stun::message::METHOD_DATA, CLASS_INDICATION)
                );
                assert_eq!(m.transaction_id.0, tid);
                let mut d = Data::default();
                d.get_from(&m).unwrap();
                assert_eq!(d.0, payload);
                let mut p = PeerAddress::default();
                p.get_from(&m).unwrap();
                assert_eq!(SocketAddr::new(p.ip, p.port), peer);
                // The stun crate's own encoding of the same message is byte-identical.
                let mut want = stun::message::Message::new();
                want.set_type(m.typ);
                want.transaction_id = m.transaction_id;
                want.write_header();
                PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                }
                .add_to(&mut want)
                .unwrap();
                Data(payload.to_vec()).add_to(&mut want).unwrap();
                assert_eq!(&buf[r], &want.raw[..]);
            }
        }
    }
    use stun::message::{CLASS_INDICATION, Getter, METHOD_SEND, Message, MessageType, Setter};
    use turn::proto::{data::Data, peeraddr::PeerAddress};

    fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
        let mut m = Message::new();
        m.new_transaction_id().unwrap();
        m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        }
        .add_to(&mut m)
        .unwrap();
        Data(data.to_vec()).add_to(&mut m).unwrap();
        m.encode();
        m.raw
    }

    #[test]
    fn reads_peer_and_data_without_copying() {
        let peer: SocketAddr = "[2001:db8::9]:5000".parse().unwrap();
        let raw = send_indication(peer, b"hello");
        let s = parse_send(&raw).unwrap();
        assert_eq!(s.peer, peer);
        assert_eq!(s.data, b"hello");
    }

    #[test]
    fn truncated_or_incomplete_indications_are_rejected() {
        let raw = send_indication("198.51.100.1:9".parse().unwrap(), b"xyz");
        for cut in 0..raw.len() {
            assert_eq!(parse_send(&raw[..cut]), None, "cut at {cut}");
        }
        let mut m = Message::new();
        m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
        m.encode();
        assert_eq!(parse_send(&m.raw), None);
    }
}
