//! The fuzzer's input: the core's knobs (`Setup`) and the steps of a session (`Op`), both
//! derived with `Arbitrary`. Their shape is the meaning of the bytes in every saved corpus,
//! so a change here makes old corpora mean something else.

use std::net::{IpAddr, SocketAddr};

use arbitrary::Arbitrary;

/// Knobs of the core under test, chosen by the fuzzer so small quotas and crowded port
/// ranges are reached quickly.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub struct Setup {
    pub ports: u8,
    pub max_allocations: u8,
    pub max_per_user: u8,
    pub max_permissions: u8,
    pub max_channels: u8,
    pub strict_channels: bool,
    pub ipv6: bool,
    /// Two shards sharing the quotas and per-user buckets, as the runtime runs them.
    pub two_shards: bool,
    /// Unauthenticated answers per second per source prefix (0 = no limit).
    pub unauthenticated_rate: u8,
    /// Relayed bytes per second per allocation and per user (0 = no limit).
    pub bps_per_allocation: u16,
    pub bps_per_user: u16,
    pub seed: u64,
}

/// A peer: a few fixed public and denied addresses, or any address at all.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum PeerSel {
    Known(u8),
    Any([u8; 16], u16, bool),
}

const KNOWN_PEERS: &[&str] = &[
    "198.51.100.9:1000",
    "198.51.100.9:2000",
    "203.0.113.77:5000",
    "[2001:db8:1::9]:1000",
    "127.0.0.1:3478",
    "10.1.2.3:53",
    "[::ffff:127.0.0.1]:80",
    "[2001:db8:2::1]:9",
];

impl PeerSel {
    pub fn addr(self) -> SocketAddr {
        match self {
            PeerSel::Known(i) => KNOWN_PEERS[i as usize % KNOWN_PEERS.len()].parse().unwrap(),
            PeerSel::Any(b, port, v6) => {
                let ip = if v6 {
                    IpAddr::from(b)
                } else {
                    IpAddr::from([b[0], b[1], b[2], b[3]])
                };
                SocketAddr::new(ip, port)
            }
        }
    }
}

/// One step of a session: client requests (signed by the driver), relayed data, raw bytes,
/// peer traffic, and the shell's side (time, timeouts, binds that fail or come late).
#[derive(Arbitrary, Debug, Clone)]
pub enum Op {
    Allocate {
        client: u8,
        user: u8,
        lifetime: Option<u32>,
        even_port: Option<bool>,
        family: Option<u8>,
        additional: bool,
        /// Redeem the last RESERVATION-TOKEN handed out.
        token: bool,
    },
    Refresh {
        client: u8,
        user: u8,
        lifetime: Option<u32>,
    },
    Permit {
        client: u8,
        user: u8,
        peers: Vec<PeerSel>,
    },
    ChannelBind {
        client: u8,
        user: u8,
        channel: u16,
        peer: PeerSel,
    },
    /// Any method with any attributes, correctly signed.
    Signed {
        client: u8,
        user: u8,
        method: u16,
        attrs: Vec<(u16, Vec<u8>)>,
    },
    ChannelData {
        client: u8,
        channel: u16,
        payload: Vec<u8>,
    },
    Send {
        client: u8,
        peer: PeerSel,
        payload: Vec<u8>,
    },
    Raw {
        client: u8,
        bytes: Vec<u8>,
    },
    /// Traffic arriving at the relay port of allocation `relay` (or any port).
    Peer {
        relay: u8,
        any_port: Option<u16>,
        peer: PeerSel,
        payload: Vec<u8>,
    },
    Advance {
        secs: u16,
        millis: u16,
    },
    /// The wall clock steps (NTP) while the monotonic clock does not.
    UnixJump {
        secs: i32,
    },
    Timeout,
    Disconnect {
        client: u8,
        clean: bool,
    },
    /// The next bind of this port (offset into the range) fails, as if another process
    /// held it.
    BusyPort {
        offset: u8,
    },
    /// Binds are answered later (or now), so disconnects and timeouts race them.
    DeferBinds(bool),
    /// The last request again, as a client whose answer was lost sends it.
    Retransmit,
    Shutdown,
}
