//! The BPF maps' keys and values, field for field as `bpf/fastpath.bpf.c` declares them.
//!
//! Addresses are 16 bytes, IPv4 in its IPv4-mapped form, so one map holds both families
//! and a binding may join an IPv6 client to an IPv4 relay. Ports and the channel number
//! are in network byte order, as the program reads them off the wire. Every padding byte
//! is a named field set to zero: the kernel hashes keys byte by byte.
use std::net::{IpAddr, SocketAddr};

/// Map names in the object file.
pub const CLIENT_TO_PEER: &str = "TP_C2P";
pub const PEER_TO_CLIENT: &str = "TP_P2C";
pub const COUNTERS: &str = "TP_COUNTERS";

/// The binding's MAC is the next hop's (else the frame returns to the MAC it came from).
const FLAG_NEXT_HOP_MAC: u16 = 1;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientToPeerKey {
    pub client_ip: [u8; 16],
    pub listener_ip: [u8; 16],
    pub client_port: u16,
    pub listener_port: u16,
    pub channel: u16,
    pub pad: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClientToPeerValue {
    pub relay_ip: [u8; 16],
    pub peer_ip: [u8; 16],
    pub relay_port: u16,
    pub peer_port: u16,
    pub next_hop_mac: [u8; 6],
    pub flags: u16,
    pub pad: u32,
    pub binding_id: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerToClientKey {
    pub peer_ip: [u8; 16],
    pub relay_ip: [u8; 16],
    pub peer_port: u16,
    pub relay_port: u16,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerToClientValue {
    pub client_ip: [u8; 16],
    pub listener_ip: [u8; 16],
    pub client_port: u16,
    pub listener_port: u16,
    pub channel: u16,
    pub next_hop_mac: [u8; 6],
    pub flags: u16,
    pub pad: u16,
    pub binding_id: u64,
}

/// One binding's counters on one CPU. Bytes are payload bytes, as the core counts them.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub client_to_peer_packets: u64,
    pub client_to_peer_bytes: u64,
    pub peer_to_client_packets: u64,
    pub peer_to_client_bytes: u64,
}

impl std::ops::AddAssign for Counters {
    fn add_assign(&mut self, o: Self) {
        self.client_to_peer_packets += o.client_to_peer_packets;
        self.client_to_peer_bytes += o.client_to_peer_bytes;
        self.peer_to_client_packets += o.peer_to_client_packets;
        self.peer_to_client_bytes += o.peer_to_client_bytes;
    }
}

// SAFETY: plain `repr(C)` data without implicit padding (every gap is a named field),
// valid for any bit pattern.
unsafe impl aya::Pod for ClientToPeerKey {}
unsafe impl aya::Pod for ClientToPeerValue {}
unsafe impl aya::Pod for PeerToClientKey {}
unsafe impl aya::Pod for PeerToClientValue {}
unsafe impl aya::Pod for Counters {}

/// One channel binding as the kernel forwards it: the client's 5-tuple and channel on
/// one side, the allocation's relayed address and the peer on the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelRoute {
    /// Names the binding's counters; unique among the routes installed at once.
    pub id: u64,
    pub client: SocketAddr,
    /// The listener address the client sends to (a specific address, not 0.0.0.0).
    pub listener: SocketAddr,
    pub channel: u16,
    pub relay: SocketAddr,
    pub peer: SocketAddr,
    /// The MAC to send the client's packets to, when it is not the one they came from.
    pub client_next_hop: Option<[u8; 6]>,
    /// The MAC to send the peer's packets to, when it is not the one they came from.
    pub peer_next_hop: Option<[u8; 6]>,
}

/// The 16-byte form of an address: IPv6 as it is, IPv4 mapped.
pub fn ip16(ip: IpAddr) -> [u8; 16] {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// A port as the program compares it: the wire's bytes read as a native u16.
fn port(a: SocketAddr) -> u16 {
    u16::from_ne_bytes(a.port().to_be_bytes())
}

fn mac(next_hop: Option<[u8; 6]>) -> ([u8; 6], u16) {
    next_hop.map_or(([0; 6], 0), |m| (m, FLAG_NEXT_HOP_MAC))
}

impl ChannelRoute {
    pub fn client_to_peer(&self) -> (ClientToPeerKey, ClientToPeerValue) {
        let (next_hop_mac, flags) = mac(self.peer_next_hop);
        let key = ClientToPeerKey {
            client_ip: ip16(self.client.ip()),
            listener_ip: ip16(self.listener.ip()),
            client_port: port(self.client),
            listener_port: port(self.listener),
            channel: u16::from_ne_bytes(self.channel.to_be_bytes()),
            pad: 0,
        };
        let value = ClientToPeerValue {
            relay_ip: ip16(self.relay.ip()),
            peer_ip: ip16(self.peer.ip()),
            relay_port: port(self.relay),
            peer_port: port(self.peer),
            next_hop_mac,
            flags,
            pad: 0,
            binding_id: self.id,
        };
        (key, value)
    }

    pub fn peer_to_client(&self) -> (PeerToClientKey, PeerToClientValue) {
        let (next_hop_mac, flags) = mac(self.client_next_hop);
        let key = PeerToClientKey {
            peer_ip: ip16(self.peer.ip()),
            relay_ip: ip16(self.relay.ip()),
            peer_port: port(self.peer),
            relay_port: port(self.relay),
        };
        let value = PeerToClientValue {
            client_ip: ip16(self.client.ip()),
            listener_ip: ip16(self.listener.ip()),
            client_port: port(self.client),
            listener_port: port(self.listener),
            channel: u16::from_ne_bytes(self.channel.to_be_bytes()),
            next_hop_mac,
            flags,
            pad: 0,
            binding_id: self.id,
        };
        (key, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn structs_have_the_c_layout() {
        assert_eq!(size_of::<ClientToPeerKey>(), 40);
        assert_eq!(size_of::<ClientToPeerValue>(), 56);
        assert_eq!(size_of::<PeerToClientKey>(), 36);
        assert_eq!(size_of::<PeerToClientValue>(), 56);
        assert_eq!(size_of::<Counters>(), 32);
    }

    #[test]
    fn ipv4_is_mapped_and_ports_keep_wire_order() {
        let r = ChannelRoute {
            id: 7,
            client: "192.0.2.1:1025".parse().unwrap(),
            listener: "[2001:db8::1]:3478".parse().unwrap(),
            channel: 0x4001,
            relay: "198.51.100.1:50000".parse().unwrap(),
            peer: "203.0.113.9:9".parse().unwrap(),
            client_next_hop: None,
            peer_next_hop: Some([2, 0, 0, 0, 0, 1]),
        };
        let (k, v) = r.client_to_peer();
        assert_eq!(&k.client_ip[10..], &[0xff, 0xff, 192, 0, 2, 1]);
        assert_eq!(k.client_port.to_ne_bytes(), [0x04, 0x01]);
        assert_eq!(k.channel.to_ne_bytes(), [0x40, 0x01]);
        assert_eq!((v.flags, v.next_hop_mac), (1, [2, 0, 0, 0, 0, 1]));
        assert_eq!(r.peer_to_client().1.flags, 0);
    }
}
