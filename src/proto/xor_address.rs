//! XOR-MAPPED-ADDRESS, XOR-PEER-ADDRESS and XOR-RELAYED-ADDRESS values (RFC 8489 §14.2),
//! read and written by hand for the relay path, and the address family byte they carry.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use stun::message::MAGIC_COOKIE;

pub const FAMILY_IPV4: u8 = 0x01;
pub const FAMILY_IPV6: u8 = 0x02;

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
