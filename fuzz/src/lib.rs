//! The fuzz targets' shared driver: a fake shell around `turnpike::relay::Server` that
//! signs requests like a real client (so fuzzed attributes reach the authenticated
//! handlers), binds relay "sockets" in a set, and checks the core's invariants after every
//! step. A failed check panics, which libFuzzer reports as a crash with its input.

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turnpike::auth::{Authenticator, mint_credential};
use turnpike::proto::indication;
use turnpike::relay::allocation::Allocation;
use turnpike::relay::bandwidth::UserBuckets;
use turnpike::relay::peer_policy::PeerPolicy;
use turnpike::relay::quota::Quotas;
use turnpike::relay::stats::{Direction, DropReason};
use turnpike::relay::{
    ClientAction, ClientId, Command, CoreConfig, PeerAction, RelayFamily, Server, Transport,
    user_id,
};

pub const SECRET: &str = "fuzz-secret";
pub const REALM: &str = "fuzz.test";
const NONCE_KEY: [u8; 32] = [7; 32];
const NONCE_LIFETIME: u64 = 600;
const PORT_BASE: u16 = 50000;

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

/// A request attribute; peers are XOR-encoded once the transaction id is known.
pub enum Attr {
    Raw(u16, Vec<u8>),
    Peer(SocketAddr),
}

pub fn req(method: Method) -> MessageType {
    MessageType::new(method, CLASS_REQUEST)
}

fn relay_ip(i: u8) -> IpAddr {
    if i.is_multiple_of(2) {
        "10.0.0.5".parse().unwrap()
    } else {
        "2001:db8::5".parse().unwrap()
    }
}

#[derive(Default, Debug)]
pub struct Tally {
    pub forwarded: u64,
    pub to_client: u64,
    pub drops: [u64; DropReason::ALL.len()],
    pub responses: u64,
    pub ended: u64,
}

pub struct Driver {
    /// The shards: a client and a relay port each belong to exactly one.
    pub shards: Vec<Server>,
    pub setup: Setup,
    max_allocations: usize,
    max_per_user: usize,
    port_ranges: Vec<(u16, u16)>,
    auth: Authenticator,
    pub now: Instant,
    pub unix: u64,
    busy: HashSet<u16>,
    /// The relay sockets the shell holds, and the shard that bound each one.
    pub bound: HashMap<SocketAddr, usize>,
    defer: bool,
    deferred: VecDeque<(usize, u64, SocketAddr)>,
    last_token: Option<Vec<u8>>,
    /// The last signed request, for retransmissions.
    last_request: Option<(ClientId, Vec<u8>)>,
    transactions: Cell<u64>,
    pub tally: Tally,
}

pub fn clients() -> [ClientId; 5] {
    let c = |t, l, a: &str| ClientId {
        transport: t,
        listener: l,
        addr: a.parse().unwrap(),
    };
    [
        c(Transport::Udp, 0, "198.51.100.20:40001"),
        c(Transport::Udp, 0, "198.51.100.20:40002"),
        c(Transport::Tcp, 1, "198.51.100.21:40001"),
        c(Transport::Tls, 2, "[2001:db8::20]:40003"),
        c(Transport::Udp, 3, "[2001:db8::21]:40004"),
    ]
}

impl Driver {
    /// The driver's time as the one value the core takes.
    fn time(&self) -> turnpike::relay::Time {
        turnpike::relay::Time {
            mono: self.now,
            unix: self.unix,
        }
    }

    pub fn new(setup: Setup) -> Self {
        let ports = 1 + setup.ports % 16;
        // Each shard its own slice of the port range, as the runtime splits it.
        let port_ranges: Vec<(u16, u16)> = (0..1 + setup.two_shards as u16)
            .map(|k| (PORT_BASE + 100 * k, PORT_BASE + 100 * k + ports as u16 - 1))
            .collect();
        let max_allocations = 1 + setup.max_allocations as usize % 8;
        let max_per_user = 1 + setup.max_per_user as usize % 4;
        // Shared by the shards, as in the runtime.
        let quotas = Arc::new(Quotas::new(max_allocations, max_per_user));
        let buckets = Arc::new(UserBuckets::default());
        let users = [("alice".to_string(), "alice-pw".to_string())];
        let auth = || {
            Authenticator::new(
                REALM,
                vec![SECRET.into()],
                &users,
                NONCE_KEY,
                NONCE_LIFETIME,
            )
        };
        let cfg = |port_range: (u16, u16)| CoreConfig {
            auth: auth(),
            policy: PeerPolicy::default(),
            relay_v4: Some(RelayFamily {
                bind: "10.0.0.5".parse().unwrap(),
                advertised: "203.0.113.5".parse().unwrap(),
            }),
            relay_v6: setup.ipv6.then(|| RelayFamily {
                bind: "2001:db8::5".parse().unwrap(),
                advertised: "2001:db8::5".parse().unwrap(),
            }),
            ports: port_range.0..=port_range.1,
            default_lifetime: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(3600),
            quotas: quotas.clone(),
            max_channels: 1 + setup.max_channels as usize % 8,
            unauthenticated_rate: setup.unauthenticated_rate as u32 % 8,
            max_bytes_per_sec_per_allocation: (setup.bps_per_allocation > 0)
                .then_some(setup.bps_per_allocation as u64),
            max_bytes_per_sec_per_user: (setup.bps_per_user > 0)
                .then(|| (setup.bps_per_user as u64, buckets.clone())),
            max_permissions: 1 + setup.max_permissions as usize % 6,
            strict_channel_numbers: setup.strict_channels,
            token_key: [5; 32],
        };
        Driver {
            shards: (port_ranges.iter())
                .map(|r| Server::new(cfg(*r), setup.seed ^ r.0 as u64))
                .collect(),
            setup,
            max_allocations,
            max_per_user,
            port_ranges,
            auth: auth(),
            now: Instant::now(),
            unix: 1_800_000_000,
            busy: HashSet::new(),
            bound: HashMap::new(),
            defer: false,
            deferred: VecDeque::new(),
            last_token: None,
            last_request: None,
            transactions: Cell::new(0),
            tally: Tally::default(),
        }
    }

    fn client(i: u8) -> ClientId {
        let all = clients();
        all[i as usize % all.len()]
    }

    /// The shard a client's packets go to (the runtime hashes the 5-tuple).
    fn shard_of(&self, c: ClientId) -> usize {
        c.addr.port() as usize % self.shards.len()
    }

    /// The shard whose socket a relay address is (else the one owning the port's slice,
    /// else shard 0).
    fn shard_of_relay(&self, relay: SocketAddr) -> usize {
        self.bound.get(&relay).copied().unwrap_or_else(|| {
            (self.port_ranges.iter())
                .position(|r| (r.0..=r.1).contains(&relay.port()))
                .unwrap_or(0)
        })
    }

    pub fn allocation_count(&self) -> usize {
        self.shards.iter().map(|s| s.allocation_count()).sum()
    }

    fn allocations(&self) -> impl Iterator<Item = &Allocation> {
        self.shards.iter().flat_map(|s| s.allocations())
    }

    fn has_allocation(&self, c: &ClientId) -> bool {
        self.shards.iter().any(|s| s.has_allocation(c))
    }

    /// (username, password): alice is the static user; the others are REST credentials,
    /// the last one already expired.
    fn creds(&self, user: u8) -> (String, String) {
        match user % 4 {
            0 => ("alice".into(), "alice-pw".into()),
            1 => mint_credential(SECRET, "bob", 86_400, 1_800_000_000),
            2 => mint_credential(SECRET, "carol", 86_400, 1_800_000_000),
            _ => mint_credential(SECRET, "mallory", 10, 1_700_000_000),
        }
    }

    /// A fresh transaction id; counted, not random, so a crash replays exactly.
    fn transaction_id(&self) -> TransactionId {
        let n = self.transactions.get() + 1;
        self.transactions.set(n);
        let mut t = [0u8; 12];
        t[4..].copy_from_slice(&n.to_be_bytes());
        TransactionId(t)
    }

    pub fn signed(&self, client: ClientId, user: u8, typ: MessageType, attrs: &[Attr]) -> Vec<u8> {
        let mut m = Message::new();
        m.set_type(typ);
        m.transaction_id = self.transaction_id();
        m.write_header();
        for a in attrs {
            match a {
                // STUN attribute values are at most 65535 bytes; keep arbitrary ones small.
                Attr::Raw(t, v) => m.add(AttrType(*t), &v[..v.len().min(512)]),
                Attr::Peer(p) => {
                    let (t, v) = xor_peer_tid(*p, &m.transaction_id.0);
                    m.add(AttrType(t), &v);
                }
            }
        }
        let (username, password) = self.creds(user);
        let nonce = self.auth.mint_nonce(self.unix, client.addr);
        let _ = TextAttribute::new(ATTR_USERNAME, username.clone()).add_to(&mut m);
        let _ = TextAttribute::new(ATTR_REALM, REALM.into()).add_to(&mut m);
        let _ = TextAttribute::new(ATTR_NONCE, nonce).add_to(&mut m);
        let _ = MessageIntegrity::new_long_term_integrity(username, REALM.into(), password)
            .add_to(&mut m);
        let _ = FINGERPRINT.add_to(&mut m);
        m.raw
    }

    /// Client 0 (alice) gets an allocation, a permission for known peer 0 and channel
    /// 0x4000 bound to it.
    pub fn establish(&mut self) {
        let peer = PeerSel::Known(0);
        let allocate = Op::Allocate {
            client: 0,
            user: 0,
            lifetime: None,
            even_port: None,
            family: None,
            additional: false,
            token: false,
        };
        self.step(&allocate);
        self.step(&Op::ChannelBind {
            client: 0,
            user: 0,
            channel: 0x4000,
            peer,
        });
        assert_eq!(self.allocation_count(), 1);
    }

    pub fn run(&mut self, ops: &[Op]) {
        for op in ops {
            self.step(op);
            self.check();
        }
        // Everything ends: nothing may stay bound.
        self.defer = false;
        self.answer_deferred();
        let time = self.time();
        for s in &mut self.shards {
            s.shutdown(time);
        }
        self.drain();
        assert_eq!(self.allocation_count(), 0);
        assert!(
            self.bound.is_empty(),
            "relay sockets leaked: {:?}",
            self.bound
        );
        self.check_counters();
    }

    pub fn step(&mut self, op: &Op) {
        match op {
            Op::Allocate {
                client,
                user,
                lifetime,
                even_port,
                family,
                additional,
                token,
            } => {
                let mut attrs = vec![Attr::Raw(ATTR_REQUESTED_TRANSPORT.0, vec![17, 0, 0, 0])];
                if let Some(l) = lifetime {
                    attrs.push(Attr::Raw(ATTR_LIFETIME.0, l.to_be_bytes().to_vec()));
                }
                if let Some(r) = even_port {
                    attrs.push(Attr::Raw(ATTR_EVEN_PORT.0, vec![if *r { 0x80 } else { 0 }]));
                }
                if let Some(f) = family {
                    attrs.push(Attr::Raw(
                        ATTR_REQUESTED_ADDRESS_FAMILY.0,
                        vec![*f % 3, 0, 0, 0],
                    ));
                }
                if *additional {
                    attrs.push(Attr::Raw(0x8000, vec![2, 0, 0, 0]));
                }
                if *token && let Some(t) = &self.last_token {
                    attrs.push(Attr::Raw(ATTR_RESERVATION_TOKEN.0, t.clone()));
                }
                self.request(*client, *user, req(METHOD_ALLOCATE), &attrs);
            }
            Op::Refresh {
                client,
                user,
                lifetime,
            } => {
                let attrs: Vec<_> = lifetime
                    .iter()
                    .map(|l| Attr::Raw(ATTR_LIFETIME.0, l.to_be_bytes().to_vec()))
                    .collect();
                self.request(*client, *user, req(METHOD_REFRESH), &attrs);
            }
            Op::Permit {
                client,
                user,
                peers,
            } => {
                let attrs: Vec<_> = peers.iter().take(8).map(|p| Attr::Peer(p.addr())).collect();
                self.request(*client, *user, req(METHOD_CREATE_PERMISSION), &attrs);
            }
            Op::ChannelBind {
                client,
                user,
                channel,
                peer,
            } => {
                let attrs = vec![
                    Attr::Raw(
                        ATTR_CHANNEL_NUMBER.0,
                        [channel.to_be_bytes(), [0, 0]].concat(),
                    ),
                    Attr::Peer(peer.addr()),
                ];
                self.request(*client, *user, req(METHOD_CHANNEL_BIND), &attrs);
            }
            Op::Signed {
                client,
                user,
                method,
                attrs,
            } => {
                let attrs: Vec<_> = attrs
                    .iter()
                    .take(16)
                    .map(|(t, v)| Attr::Raw(*t, v.clone()))
                    .collect();
                // Any message type: unknown methods, and indications or responses signed as well.
                let mut typ = MessageType::default();
                typ.read_value(*method & 0x3FFF);
                self.request(*client, *user, typ, &attrs);
            }
            Op::ChannelData {
                client,
                channel,
                payload,
            } => {
                let mut p = Vec::with_capacity(payload.len() + 4);
                p.extend_from_slice(&channel.to_be_bytes());
                p.extend_from_slice(&(payload.len() as u16).to_be_bytes());
                p.extend_from_slice(payload);
                self.client_packet(Self::client(*client), &p);
            }
            Op::Send {
                client,
                peer,
                payload,
            } => {
                let mut m = Message::new();
                m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
                m.transaction_id = self.transaction_id();
                m.write_header();
                let (t, v) = xor_peer_tid(peer.addr(), &m.transaction_id.0);
                m.add(AttrType(t), &v);
                m.add(ATTR_DATA, payload);
                self.client_packet(Self::client(*client), &m.raw);
            }
            Op::Raw { client, bytes } => self.client_packet(Self::client(*client), bytes),
            Op::Peer {
                relay,
                any_port,
                peer,
                payload,
            } => {
                let relays: Vec<SocketAddr> = self
                    .allocations()
                    .flat_map(|a| [a.relay_v4, a.relay_v6])
                    .flatten()
                    .collect();
                let to = match any_port {
                    Some(port) => SocketAddr::new(relay_ip(*relay), *port),
                    None if relays.is_empty() => SocketAddr::new(relay_ip(*relay), PORT_BASE),
                    None => relays[*relay as usize % relays.len()],
                };
                self.peer_packet(to, peer.addr(), payload);
            }
            Op::Advance { secs, millis } => {
                let d = Duration::from_secs(*secs as u64)
                    + Duration::from_millis(*millis as u64 % 1000);
                self.now += d;
                self.unix += d.as_secs();
                self.timeout();
            }
            Op::UnixJump { secs } => {
                self.unix = self.unix.saturating_add_signed(*secs as i64);
            }
            Op::Timeout => {
                if let Some(t) = self.shards.iter().filter_map(|s| s.poll_timeout()).min()
                    && t > self.now
                {
                    self.unix += (t - self.now).as_secs();
                    self.now = t;
                }
                self.timeout();
            }
            Op::Disconnect { client, clean } => {
                let c = Self::client(*client);
                let s = self.shard_of(c);
                let time = self.time();
                self.shards[s].client_disconnected(time, c, *clean);
                self.drain();
            }
            Op::BusyPort { offset } => {
                let r = self.port_ranges[*offset as usize % self.port_ranges.len()];
                self.busy.insert(r.0 + *offset as u16 % (r.1 - r.0 + 1));
            }
            Op::DeferBinds(on) => {
                self.defer = *on;
                if !on {
                    self.answer_deferred();
                }
            }
            Op::Retransmit => {
                if let Some((c, p)) = self.last_request.clone() {
                    self.client_packet(c, &p);
                }
            }
            Op::Shutdown => {
                let time = self.time();
                for s in &mut self.shards {
                    s.shutdown(time);
                }
                self.drain();
            }
        }
    }

    /// A sweep leaves no allocation more than one sweep interval past its lifetime.
    fn timeout(&mut self) {
        let time = self.time();
        for s in &mut self.shards {
            s.handle_timeout(time);
        }
        self.drain();
        for a in self.allocations() {
            assert!(
                a.expires + Duration::from_secs(1) > self.now,
                "allocation outlived its lifetime"
            );
        }
    }

    fn request(&mut self, client: u8, user: u8, typ: MessageType, attrs: &[Attr]) {
        let c = Self::client(client);
        let p = self.signed(c, user, typ, attrs);
        self.client_packet(c, &p);
        self.last_request = Some((c, p));
    }

    pub fn client_packet(&mut self, client: ClientId, packet: &[u8]) {
        let (now, unix) = (self.now, self.unix);
        let s = self.shard_of(client);
        match self.shards[s].handle_client_packet(
            turnpike::relay::Time { mono: now, unix },
            client,
            packet,
        ) {
            ClientAction::Forward {
                relay,
                peer,
                payload,
            } => {
                self.tally.forwarded += 1;
                assert_eq!(
                    self.bound.get(&relay),
                    Some(&s),
                    "forwarded from {relay}, not a socket of shard {s}"
                );
                assert_eq!(
                    relay.is_ipv4(),
                    peer.is_ipv4(),
                    "relay family != peer family"
                );
                assert!(
                    PeerPolicy::default().permits(peer.ip()),
                    "forwarded to denied peer {peer}"
                );
                // Zero-copy: the payload is a slice of the packet, never more.
                let range = packet.as_ptr_range();
                assert!(
                    payload.is_empty() || range.contains(&payload.as_ptr()),
                    "payload is not a slice of the packet"
                );
            }
            ClientAction::Handled => {}
            ClientAction::Drop(r) => self.tally.drops[r as usize] += 1,
        }
        self.drain();
    }

    pub fn peer_packet(&mut self, relay: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        let s = self.shard_of_relay(relay);
        let time = self.time();
        match self.shards[s].handle_peer_packet(time, relay, peer, payload) {
            PeerAction::ChannelData { client, channel } => {
                self.tally.to_client += 1;
                assert!(
                    (0x4000..=0x7FFE).contains(&channel),
                    "bad channel {channel:#x}"
                );
                assert!(self.has_allocation(&client));
            }
            PeerAction::DataIndication {
                client,
                transaction_id,
            } => {
                self.tally.to_client += 1;
                assert!(self.has_allocation(&client));
                // The shell frames the payload in place; the result must be a valid Data
                // indication carrying exactly the payload.
                let at = indication::DATA_INDICATION_HEADROOM;
                let mut buf = vec![0u8; at + payload.len() + 3];
                buf[at..at + payload.len()].copy_from_slice(payload);
                let r = indication::frame_data_indication(
                    &mut buf,
                    at,
                    payload.len(),
                    peer,
                    &transaction_id,
                );
                let mut m = Message::new();
                m.raw = buf[r].to_vec();
                m.decode().expect("a decodable Data indication");
                assert_eq!(m.get(ATTR_DATA).unwrap(), payload);
            }
            PeerAction::Drop(r) => self.tally.drops[r as usize] += 1,
        }
        self.drain();
    }

    /// Plays the shell: carries out every queued command.
    pub fn drain(&mut self) {
        // A bind answered may queue more commands on its shard: go round until all are idle.
        while let Some((shard, cmd)) =
            (0..self.shards.len()).find_map(|i| self.shards[i].poll_command().map(|c| (i, c)))
        {
            match cmd {
                Command::SendToClient { client: _, data } => {
                    let mut m = Message::new();
                    m.raw = data;
                    m.decode().expect("the server sends only decodable STUN");
                    if m.typ.class == CLASS_SUCCESS_RESPONSE || m.typ.class == CLASS_ERROR_RESPONSE
                    {
                        self.tally.responses += 1;
                    }
                    if let Ok(t) = m.get(ATTR_RESERVATION_TOKEN) {
                        self.last_token = Some(t);
                    }
                }
                Command::BindRelay { token, addr } => {
                    // A shard picks from its own slice, but a RESERVATION-TOKEN is redeemed
                    // by whichever shard the Allocate lands on: any slice then.
                    assert!(
                        (self.port_ranges.iter()).any(|r| (r.0..=r.1).contains(&addr.port())),
                        "bind outside the port range: {addr}"
                    );
                    if self.defer {
                        self.deferred.push_back((shard, token, addr));
                    } else {
                        self.bind(shard, token, addr);
                    }
                }
                Command::ReleaseRelay { addr } => {
                    let owner = self.bound.remove(&addr);
                    assert_eq!(owner, Some(shard), "shard {shard} released {addr}");
                }
                Command::AllocationEnded(_) => self.tally.ended += 1,
            }
        }
    }

    fn bind(&mut self, shard: usize, token: u64, addr: SocketAddr) {
        // Like the OS: a port held by another socket, or one marked busy, fails to bind.
        let ok = !self.busy.remove(&addr.port()) && !self.bound.contains_key(&addr);
        if ok {
            self.bound.insert(addr, shard);
        }
        let time = self.time();
        self.shards[shard].relay_bound(time, token, addr, ok);
    }

    fn answer_deferred(&mut self) {
        while let Some((shard, token, addr)) = self.deferred.pop_front() {
            self.bind(shard, token, addr);
            self.drain();
        }
    }

    /// Invariants that hold between any two steps.
    pub fn check(&self) {
        let n = self.allocation_count();
        assert!(
            n <= self.max_allocations,
            "{n} allocations > max {}",
            self.max_allocations
        );
        let mut per_user: HashMap<&str, usize> = HashMap::new();
        let mut relays = HashSet::new();
        let mut clients = HashSet::new();
        let all = (self.shards.iter().enumerate())
            .flat_map(|(k, s)| s.allocations().map(move |a| (k, a)));
        for (k, a) in all {
            *per_user.entry(user_id(&a.username)).or_default() += 1;
            assert!(
                clients.insert(a.client),
                "two allocations for {:?}",
                a.client
            );
            assert!(
                a.relay_v4.is_some() || a.relay_v6.is_some(),
                "allocation without relay"
            );
            for r in [a.relay_v4, a.relay_v6].into_iter().flatten() {
                assert!(
                    relays.insert(r),
                    "relay address {r} shared by two allocations"
                );
                assert_eq!(
                    self.bound.get(&r),
                    Some(&k),
                    "shard {k}'s allocation uses {r}, which it did not bind"
                );
            }
        }
        for (u, c) in per_user {
            assert!(
                c <= self.max_per_user,
                "user {u} has {c} > {}",
                self.max_per_user
            );
        }
        if self.deferred.is_empty() {
            // With every bind answered, the only sockets bound are live allocations'.
            let bound: HashSet<SocketAddr> = self.bound.keys().copied().collect();
            assert_eq!(
                relays, bound,
                "bound sockets != allocations' relay addresses"
            );
        }
        self.check_counters();
    }

    fn check_counters(&self) {
        let all = || self.shards.iter().map(|s| s.counters());
        let relayed = |d: Direction| -> u64 {
            all()
                .flat_map(|c| c.relayed_packets.iter().map(move |t| t[d as usize]))
                .sum()
        };
        assert_eq!(relayed(Direction::ClientToPeer), self.tally.forwarded);
        assert_eq!(relayed(Direction::PeerToClient), self.tally.to_client);
        for r in DropReason::ALL {
            let got: u64 = all().map(|c| c.dropped[r as usize]).sum();
            let seen = self.tally.drops[r as usize];
            // Malformed STUN and rate-limited answers are also dropped inside the STUN
            // path, which returns Handled.
            if matches!(r, DropReason::Malformed | DropReason::RateLimit) {
                assert!(got >= seen, "{r:?}: counted {got} < seen {seen}");
            } else {
                assert_eq!(got, seen, "{r:?} drops");
            }
        }
        let requests: u64 = all().flat_map(|c| c.requests.iter().flatten()).sum();
        assert_eq!(
            requests, self.tally.responses,
            "requests counted != responses sent"
        );
        let created: u64 = all().flat_map(|c| c.allocations_created.iter()).sum();
        let ended: u64 = all().flat_map(|c| c.allocations_ended.iter()).sum();
        assert_eq!(ended, self.tally.ended);
        assert_eq!(created - ended, self.allocation_count() as u64);
    }
}

/// XOR-PEER-ADDRESS for `p` in a message with transaction id `tid` (RFC 8489 §14.2).
pub fn xor_peer_tid(p: SocketAddr, tid: &[u8; 12]) -> (u16, Vec<u8>) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let mut v = vec![0, if p.is_ipv4() { 1 } else { 2 }];
    v.extend_from_slice(&(p.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    let key: Vec<u8> = cookie.iter().chain(tid).copied().collect();
    let ip = match p.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend(ip.iter().zip(&key).map(|(a, k)| a ^ k));
    (ATTR_XOR_PEER_ADDRESS.0, v)
}
