//! The fuzz targets' shared driver: a fake shell around `turnpike::relay::Core` that
//! signs requests like a real client (so fuzzed attributes reach the authenticated
//! handlers), binds relay "sockets" in a set, and checks the core's invariants after every
//! step. A failed check panics, which libFuzzer reports as a crash with its input.
//!
//! `input`: what the fuzzer chooses; `messages`: what a client sends; `shell`: the fake
//! shell around the shards; `invariants`: the checks between steps.

mod input;
mod invariants;
mod messages;
mod shell;

use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use turnpike::auth::Authenticator;
use turnpike::relay::allocation::Allocation;
use turnpike::relay::bandwidth::UserBuckets;
use turnpike::relay::peer_policy::PeerPolicy;
use turnpike::relay::quota::Quotas;
use turnpike::relay::stats::DropReason;
use turnpike::relay::{ClientId, Core, CoreConfig, RelayFamily, Transport};
use turnpike::testkit::channel_data;

pub use input::{Op, PeerSel, Setup};
pub use messages::{Attr, Request, req, request_of, xor_peer_tid};

pub const SECRET: &str = "fuzz-secret";
pub const REALM: &str = "fuzz.test";
const NONCE_KEY: [u8; 32] = [7; 32];
const NONCE_LIFETIME: u64 = 600;
const PORT_BASE: u16 = 50000;

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
    pub shards: Vec<Core>,
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
    /// Fleet slots granted and not given back, by (shard, token).
    fleet_slots: HashSet<(usize, u64)>,
    /// Kernel fast path routes installed and not removed, by (shard, route id).
    kernel: HashSet<(usize, u64)>,
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
            // The fleet-wide quota's wait (answered at once, granted) on every run.
            fleet_quota: true,
            // Kernel routes follow the core's decisions on every run (the shell checks
            // no double add or remove and none left at the end).
            fastpath: true,
        };
        Driver {
            shards: (port_ranges.iter())
                .map(|r| Core::new(cfg(*r), setup.seed ^ r.0 as u64))
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
            fleet_slots: HashSet::new(),
            kernel: HashSet::new(),
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
        assert!(
            self.fleet_slots.is_empty(),
            "fleet slots never given back: {:?}",
            self.fleet_slots
        );
        assert!(
            self.kernel.is_empty(),
            "kernel routes left: {:?}",
            self.kernel
        );
        self.check_counters();
    }

    pub fn step(&mut self, op: &Op) {
        if let Some(r) = request_of(op, self.last_token.as_deref()) {
            return self.request(r.client, r.user, r.typ, &r.attrs);
        }
        match op {
            // Sent above.
            Op::Allocate { .. }
            | Op::Refresh { .. }
            | Op::Permit { .. }
            | Op::ChannelBind { .. }
            | Op::Signed { .. } => {}
            Op::ChannelData {
                client,
                channel,
                payload,
            } => self.client_packet(Self::client(*client), &channel_data(*channel, payload)),
            Op::Send {
                client,
                peer,
                payload,
            } => {
                let m = self.send_indication(peer.addr(), payload);
                self.client_packet(Self::client(*client), &m);
            }
            Op::Raw { client, bytes } => self.client_packet(Self::client(*client), bytes),
            Op::Peer {
                relay,
                any_port,
                peer,
                payload,
            } => self.peer_packet(self.peer_target(*relay, *any_port), peer.addr(), payload),
            Op::Advance { secs, millis } => self.advance(
                Duration::from_secs(*secs as u64) + Duration::from_millis(*millis as u64 % 1000),
            ),
            Op::UnixJump { secs } => {
                self.unix = self.unix.saturating_add_signed(*secs as i64);
            }
            Op::Timeout => {
                // To the earliest deadline of any shard (or no time at all).
                let next = self.shards.iter().filter_map(|s| s.poll_timeout()).min();
                self.advance(
                    next.map_or(Duration::ZERO, |t| t.saturating_duration_since(self.now)),
                );
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
}
