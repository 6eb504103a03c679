//! Ethernet frames carrying one UDP datagram over IPv4 or IPv6, built and checked with
//! checksums computed here from first principles (RFC 1071 over the whole datagram), so
//! the fast path's incremental checksums are checked against an independent answer.
use std::net::{IpAddr, SocketAddr};

/// What goes into a frame; `Default` gives the shape of a socket's send (TTL 64, DF).
#[derive(Clone, Debug)]
pub struct Frame {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
    /// IPv4 TOS or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 identification (ignored for IPv6).
    pub ip_id: u16,
    pub ttl: u8,
    /// IPv4 flags and fragment offset.
    pub frag: u16,
}

pub const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0c];
pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x05];

impl Frame {
    pub fn new(src: &str, dst: &str, payload: &[u8]) -> Frame {
        Frame {
            src_mac: CLIENT_MAC,
            dst_mac: SERVER_MAC,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            payload: payload.to_vec(),
            tos: 0,
            ip_id: 0x1234,
            ttl: 64,
            frag: 0x4000,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let udp_len = 8 + self.payload.len();
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend(self.src.port().to_be_bytes());
        udp.extend(self.dst.port().to_be_bytes());
        udp.extend((udp_len as u16).to_be_bytes());
        udp.extend([0, 0]);
        udp.extend(&self.payload);
        let mut sum = pseudo_header(self.src.ip(), self.dst.ip(), udp_len);
        sum.extend(&udp);
        let c = match checksum(&sum) {
            0 => 0xffff,
            c => c,
        };
        udp[6..8].copy_from_slice(&c.to_be_bytes());
        let mut f = Vec::new();
        f.extend(self.dst_mac);
        f.extend(self.src_mac);
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                f.extend(0x0800u16.to_be_bytes());
                let mut ip = vec![0x45, self.tos];
                ip.extend(((20 + udp_len) as u16).to_be_bytes());
                ip.extend(self.ip_id.to_be_bytes());
                ip.extend(self.frag.to_be_bytes());
                ip.extend([self.ttl, 17, 0, 0]);
                ip.extend(s.octets());
                ip.extend(d.octets());
                let c = checksum(&ip);
                ip[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend(ip);
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => {
                f.extend(0x86ddu16.to_be_bytes());
                f.extend((0x6000_0000u32 | (self.tos as u32) << 20).to_be_bytes());
                f.extend((udp_len as u16).to_be_bytes());
                f.extend([17, self.ttl]);
                f.extend(s.octets());
                f.extend(d.octets());
            }
            _ => panic!("mixed families in one frame"),
        }
        f.extend(udp);
        f
    }
}

/// RFC 1071: the one's-complement of the one's-complement sum of 16-bit words.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    for pair in data.chunks(2) {
        let hi = pair[0] as u64;
        let lo = pair.get(1).copied().unwrap_or(0) as u64;
        sum += (hi << 8) | lo;
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn pseudo_header(src: IpAddr, dst: IpAddr, udp_len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend([0, 17]);
            p.extend((udp_len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend(s.octets());
            p.extend(d.octets());
            p.extend((udp_len as u32).to_be_bytes());
            p.extend([0, 0, 0, 17]);
        }
        _ => panic!("mixed families"),
    }
    p
}

/// Checks a frame's IP header checksum (IPv4) and UDP checksum independently, as a
/// receiver would: the sums over the received bytes must come out as 0.
pub fn assert_checksums_valid(frame: &[u8]) {
    let (src, dst, l4) = match u16::from_be_bytes([frame[12], frame[13]]) {
        0x0800 => {
            assert_eq!(checksum(&frame[14..34]), 0, "IPv4 header checksum");
            let s: [u8; 4] = frame[26..30].try_into().unwrap();
            let d: [u8; 4] = frame[30..34].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), 34)
        }
        0x86dd => {
            let s: [u8; 16] = frame[22..38].try_into().unwrap();
            let d: [u8; 16] = frame[38..54].try_into().unwrap();
            (IpAddr::from(s), IpAddr::from(d), 54)
        }
        t => panic!("ethertype {t:#x}"),
    };
    let udp = &frame[l4..];
    assert_eq!(
        u16::from_be_bytes([udp[4], udp[5]]) as usize,
        udp.len(),
        "UDP length"
    );
    let mut sum = pseudo_header(src, dst, udp.len());
    sum.extend(udp);
    assert_ne!(&udp[6..8], &[0, 0], "UDP checksum present");
    assert_eq!(checksum(&sum), 0, "UDP checksum");
}
