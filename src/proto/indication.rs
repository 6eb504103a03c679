//! Zero-copy reader for Send indications (RFC 8656 §11). Browsers send these until their
//! ChannelBind succeeds, so they are a busy path: no `stun::Message` (which copies every
//! attribute) for them.

use std::net::SocketAddr;

use stun::attributes::{ATTR_DATA, ATTR_XOR_PEER_ADDRESS};

use super::{STUN_HEADER_LEN, decode_xor_address, transaction_id};

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
    use stun::message::{CLASS_INDICATION, METHOD_SEND, Message, MessageType, Setter};
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
