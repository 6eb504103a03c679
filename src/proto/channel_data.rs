//! ChannelData framing (RFC 8656 §12.4), parsed by hand: it is the hot path and must not copy.

/// Size of the ChannelData header: channel number and length, 16 bits each.
pub const HEADER_LEN: usize = 4;

/// Channel numbers a client may bind (RFC 8656 §12: 0x4000 through 0x4FFF).
pub const MIN_CHANNEL: u16 = 0x4000;
pub const MAX_CHANNEL: u16 = 0x4FFF;
/// RFC 5766 allowed up to 0x7FFE, and its clients (coturn's among them) still pick from
/// that range; the server accepts it unless configured strict.
pub const MAX_CHANNEL_RFC5766: u16 = 0x7FFE;

/// True when the first byte marks a ChannelData message (top bits 01), as opposed to STUN (00).
pub fn is_channel_data(packet: &[u8]) -> bool {
    packet.first().is_some_and(|b| b & 0xC0 == 0x40)
}

/// A borrowed ChannelData message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChannelData<'a> {
    pub channel: u16,
    pub payload: &'a [u8],
}

/// Parses a ChannelData message. Trailing bytes past the declared length are padding (or
/// garbage on UDP) and are ignored, as the RFC asks.
pub fn parse(packet: &[u8]) -> Option<ChannelData<'_>> {
    if packet.len() < HEADER_LEN {
        return None;
    }
    let channel = u16::from_be_bytes([packet[0], packet[1]]);
    let len = u16::from_be_bytes([packet[2], packet[3]]) as usize;
    if !(MIN_CHANNEL..=MAX_CHANNEL_RFC5766).contains(&channel) {
        return None;
    }
    let payload = packet.get(HEADER_LEN..HEADER_LEN + len)?;
    Some(ChannelData { channel, payload })
}

/// Writes the 4-byte header in front of a payload that already sits at `buf[4..4 + len]`.
pub fn write_header(buf: &mut [u8], channel: u16, len: usize) {
    buf[0..2].copy_from_slice(&channel.to_be_bytes());
    buf[2..4].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Length of a framed ChannelData message on a stream transport, padded to 4 bytes.
pub fn padded_len(payload_len: usize) -> usize {
    HEADER_LEN + payload_len.div_ceil(4) * 4
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_header_and_ignores_padding() {
        let pkt = [0x40, 0x01, 0x00, 0x03, 1, 2, 3, 0];
        let cd = parse(&pkt).unwrap();
        assert_eq!(cd.channel, 0x4001);
        assert_eq!(cd.payload, &[1, 2, 3]);
    }

    #[test]
    fn rejects_truncated_payload() {
        assert_eq!(parse(&[0x40, 0x01, 0x00, 0x05, 1, 2]), None);
        assert_eq!(parse(&[0x40, 0x01, 0x00]), None);
    }

    #[test]
    fn rejects_channel_numbers_outside_the_rfc5766_range() {
        assert_eq!(parse(&[0x7F, 0xFF, 0x00, 0x00]), None);
        assert_eq!(parse(&[0x3F, 0xFF, 0x00, 0x00]), None);
        assert!(parse(&[0x4F, 0xFF, 0x00, 0x00]).is_some());
        assert!(parse(&[0x7F, 0xFE, 0x00, 0x00]).is_some());
    }

    #[test]
    fn header_round_trips() {
        let mut buf = [0u8; 8];
        buf[4..7].copy_from_slice(b"abc");
        write_header(&mut buf, 0x4abc, 3);
        let cd = parse(&buf).unwrap();
        assert_eq!((cd.channel, cd.payload), (0x4abc, &b"abc"[..]));
        assert_eq!(padded_len(3), 8);
        assert_eq!(padded_len(4), 8);
        assert!(is_channel_data(&buf) && !is_channel_data(&[0x00, 0x01]));
    }
}
