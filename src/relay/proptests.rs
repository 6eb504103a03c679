//! Properties of the relay core over generated sessions (proptest): relay ports never
//! leak or double up, a permission never outlives its lifetime, counters add up, and any
//! bytes from a client or peer are answered or dropped without a panic. Driven through the
//! test kit's harness (`testkit::harness::Harness`), whose fake shell's `bound` set is the
//! sockets it holds and which fails a test on a release of a socket it does not hold.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use stun::attributes::ATTR_DATA;
use stun::message::*;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;

use super::stats::{Direction, DropReason};
use super::*;
use crate::auth::user_id;
use crate::proto::indication;
use crate::testkit::harness::{Creds, Harness, config, harness_with};
use crate::testkit::{assert_success, channel_data, error_code, peer, send_indication};

/// Few cases with short sessions: the whole module runs in a few seconds. A failure's
/// seed is saved in `proptest-regressions/relay/proptests.txt` (beside `src/`) and
/// replayed first from then on: commit that file to keep a failure found in CI as a
/// regression test.
fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        failure_persistence: Some(Box::new(FileFailurePersistence::SourceParallel(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

/// A small port range and quotas, so sessions run into exhaustion and 486/508.
fn small_config() -> CoreConfig {
    CoreConfig {
        ports: 50000..=50007,
        quotas: std::sync::Arc::new(quota::Quotas::new(6, 3)),
        ..config()
    }
}

const USERS: [&str; 3] = ["bob", "carol", "dave"];

/// Refresh with the given LIFETIME (0 deletes the allocation).
fn refresh(h: &mut Harness, c: ClientId, creds: &Creds, secs: u64) -> Message {
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::from_secs(secs)))];
    h.request(c, METHOD_REFRESH, attrs, Some(creds))
}

/// The relay addresses of the live allocations; fails if two share one.
fn live_relays(h: &Harness) -> HashSet<SocketAddr> {
    let mut seen = HashSet::new();
    for a in h.server.allocations() {
        for r in [a.relay_v4, a.relay_v6].into_iter().flatten() {
            assert!(seen.insert(r), "relay address {r} held by two allocations");
        }
    }
    seen
}

#[derive(Debug, Clone)]
enum PortOp {
    Allocate { client: u16, user: usize },
    Delete { client: u16, user: usize },
    Disconnect { client: u16 },
    Advance { secs: u64 },
    Busy { offset: u16 },
}

fn port_op() -> impl Strategy<Value = PortOp> {
    prop_oneof![
        4 => (0..10u16, 0..3usize).prop_map(|(client, user)| PortOp::Allocate { client, user }),
        2 => (0..10u16, 0..3usize).prop_map(|(client, user)| PortOp::Delete { client, user }),
        1 => (0..10u16).prop_map(|client| PortOp::Disconnect { client }),
        2 => (0..900u64).prop_map(|secs| PortOp::Advance { secs }),
        1 => (0..8u16).prop_map(|offset| PortOp::Busy { offset }),
    ]
}

proptest! {
    #![proptest_config(cases(48))]

    /// Whatever clients do, the sockets the shell holds are exactly the live allocations'
    /// relay addresses (none shared, none left behind), quotas hold, and once every
    /// allocation has ended (deleted, disconnected or expired) nothing is bound.
    #[test]
    fn allocations_never_leak_relay_ports(ops in prop::collection::vec(port_op(), 1..40)) {
        let mut h = harness_with(small_config());
        for op in ops {
            match op {
                PortOp::Allocate { client, user } => {
                    let (c, creds) = (h.client(client), h.creds(USERS[user]));
                    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
                    if r.typ.class == CLASS_ERROR_RESPONSE {
                        // Only the refusals this session can cause.
                        prop_assert!(matches!(error_code(&r), Some(437 | 486 | 508)), "{:?}", error_code(&r));
                    }
                }
                PortOp::Delete { client, user } => {
                    let (c, creds) = (h.client(client), h.creds(USERS[user]));
                    refresh(&mut h, c, &creds, 0);
                }
                PortOp::Disconnect { client } => {
                    let (time, c) = (h.time(), h.client(client));
                    h.server.client_disconnected(time, c, true);
                    h.take_responses();
                }
                PortOp::Advance { secs } => h.advance(Duration::from_secs(secs)),
                PortOp::Busy { offset } => {
                    h.shell.busy_ports.insert(50000 + offset);
                }
            }
            prop_assert_eq!(&live_relays(&h), &h.shell.bound);
            prop_assert!(h.server.allocation_count() <= 6);
            let mut per_user = std::collections::HashMap::<&str, usize>::new();
            for a in h.server.allocations() {
                *per_user.entry(user_id(&a.username)).or_default() += 1;
            }
            prop_assert!(per_user.values().all(|&n| n <= 3), "{:?}", per_user);
        }
        // Past the longest lifetime everything has expired and been released.
        h.advance(Duration::from_secs(3601));
        h.advance(Duration::from_secs(1));
        prop_assert_eq!(h.server.allocation_count(), 0);
        prop_assert!(h.shell.bound.is_empty(), "leaked: {:?}", h.shell.bound);
        let c = h.server.counters();
        let created: u64 = c.allocations_created.iter().sum();
        let ended: u64 = c.allocations_ended.iter().sum();
        prop_assert_eq!(created, ended);
        prop_assert_eq!(ended, h.shell.ended.len() as u64);
    }

    /// A permission lets traffic through for exactly 300 s after it was last installed or
    /// refreshed, in both directions, however time moves in between; the allocation itself
    /// is kept alive meanwhile, so only the permission decides.
    #[test]
    fn a_permission_never_outlives_its_lifetime(
        steps in prop::collection::vec((any::<bool>(), 1..200u64, -1..=1i64, any::<bool>()), 1..20),
    ) {
        let mut h = harness_with(config());
        let c = h.client(1);
        let creds = h.creds("bob");
        h.allocate(c, "bob");
        let p = peer("198.51.100.9:1000");
        assert_success(&h.permit(c, "bob", &[p]));
        let relay = h.relay_bind_addr(c);
        let mut since_refresh = 0;
        for (to_edge, secs, off, renew) in steps {
            // Either any step, or one that lands next to the 300 s edge (299, 300 or 301).
            let secs = if to_edge {
                ((300 + off) as u64).saturating_sub(since_refresh).max(1)
            } else {
                secs
            };
            h.advance(Duration::from_secs(secs));
            since_refresh += secs;
            assert_success(&refresh(&mut h, c, &creds, 3600));
            let live = since_refresh < 300;
            let si = send_indication(p, b"x");
            let to_peer = h.server.handle_client_packet(h.time(), c, &si);
            let from_peer = h.server.handle_peer_packet(h.time(), relay, p, b"y");
            h.take_responses();
            if live {
                prop_assert!(matches!(to_peer, ClientAction::Forward { .. }), "{since_refresh}s: {to_peer:?}");
                let PeerAction::DataIndication { client, transaction_id } = from_peer else {
                    panic!("{since_refresh}s: {from_peer:?}");
                };
                prop_assert_eq!(client, c);
                // What the shell sends: the payload framed in place, a valid Data indication.
                let mut buf = [0u8; indication::DATA_INDICATION_HEADROOM + 4];
                buf[indication::DATA_INDICATION_HEADROOM] = b'y';
                let at = indication::DATA_INDICATION_HEADROOM;
                let range = indication::frame_data_indication(&mut buf, at, 1, p, &transaction_id);
                let mut m = Message::new();
                m.raw = buf[range].to_vec();
                m.decode().unwrap();
                prop_assert_eq!(m.get(ATTR_DATA).unwrap(), b"y".to_vec());
            } else {
                prop_assert_eq!(to_peer, ClientAction::Drop(DropReason::NoPermission));
                prop_assert_eq!(from_peer, PeerAction::Drop(DropReason::NoPermission));
            }
            if renew {
                assert_success(&h.permit(c, "bob", &[p]));
                since_refresh = 0;
            }
        }
    }
}

#[derive(Debug, Clone)]
enum TrafficOp {
    Send { peer: usize, len: usize },
    ChannelData { channel: u16, len: usize },
    FromPeer { peer: usize, len: usize },
    Permit { peer: usize },
    Bind { channel: u16, peer: usize },
    Binding,
    Advance { secs: u64 },
}

/// What the counters of `counters_add_up` must say, tallied from the decisions the core
/// returned and the responses it sent.
#[derive(Default)]
struct Tally {
    forwarded: u64,
    to_client: u64,
    bytes_out: u64,
    bytes_in: u64,
    drops: [u64; DropReason::ALL.len()],
    responses: u64,
}

impl Tally {
    /// The core's counters since `before` and the allocation's traffic agree with the tally.
    fn matches(&self, h: &Harness, before: &stats::Counters) -> Result<(), TestCaseError> {
        let now = h.server.counters();
        let udp = Transport::Udp as usize;
        // (packets, bytes) relayed in one direction since `before`.
        let relayed = |d: Direction| {
            let d = d as usize;
            let packets = now.relayed_packets[udp][d] - before.relayed_packets[udp][d];
            let bytes = now.relayed_bytes[udp][d] - before.relayed_bytes[udp][d];
            (packets, bytes)
        };
        let to_peer = (self.forwarded, self.bytes_out);
        let to_client = (self.to_client, self.bytes_in);
        prop_assert_eq!(relayed(Direction::ClientToPeer), to_peer);
        prop_assert_eq!(relayed(Direction::PeerToClient), to_client);
        for r in DropReason::ALL {
            let i = r as usize;
            prop_assert_eq!(now.dropped[i] - before.dropped[i], self.drops[i], "{:?}", r);
        }
        let requests = |c: &stats::Counters| c.requests.iter().flatten().sum::<u64>();
        prop_assert_eq!(requests(now) - requests(before), self.responses);
        let traffic = h.server.allocations().next().unwrap().traffic;
        let to_peer_seen = (traffic.packets_to_peer, traffic.bytes_to_peer);
        prop_assert_eq!(to_peer_seen, to_peer);
        let to_client_seen = (traffic.packets_to_client, traffic.bytes_to_client);
        prop_assert_eq!(to_client_seen, to_client);
        Ok(())
    }
}

/// Permitted-able, unpermitted and denied peers, so every drop reason shows up.
const PEERS: [&str; 5] = [
    "198.51.100.9:1000",
    "198.51.100.9:2000",
    "203.0.113.77:5000",
    "127.0.0.1:9",
    "10.1.2.3:53",
];

fn traffic_op() -> impl Strategy<Value = TrafficOp> {
    let peer = 0..PEERS.len();
    let channel = 0x4000..0x4004u16;
    prop_oneof![
        3 => (peer.clone(), 0..64usize).prop_map(|(peer, len)| TrafficOp::Send { peer, len }),
        3 => (channel.clone(), 0..64usize).prop_map(|(channel, len)| TrafficOp::ChannelData { channel, len }),
        3 => (peer.clone(), 0..64usize).prop_map(|(peer, len)| TrafficOp::FromPeer { peer, len }),
        1 => peer.clone().prop_map(|peer| TrafficOp::Permit { peer }),
        1 => (channel, peer).prop_map(|(channel, peer)| TrafficOp::Bind { channel, peer }),
        1 => Just(TrafficOp::Binding),
        1 => (0..60u64).prop_map(|secs| TrafficOp::Advance { secs }),
    ]
}

proptest! {
    #![proptest_config(cases(48))]

    /// Relayed packets and bytes counted = the Forward / to-client decisions returned;
    /// drops counted per reason = drops returned; requests counted = responses sent.
    #[test]
    fn counters_add_up(ops in prop::collection::vec(traffic_op(), 1..60)) {
        // Lifetime long enough that the allocation outlives any session here.
        let long = Duration::from_secs(100_000);
        let mut h = harness_with(CoreConfig { default_lifetime: long, max_lifetime: long, ..config() });
        let c = h.client(1);
        let creds = h.creds("bob");
        h.allocate(c, "bob");
        let relay = h.relay_bind_addr(c);
        let before = h.server.counters().clone();
        let mut want = Tally::default();
        let payload = [0xabu8; 64];
        for op in ops {
            let op = &op;
            // A packet from the client, or None when the step was something else.
            let from_client = match op {
                &TrafficOp::Send { peer: i, len } => {
                    Some((send_indication(peer(PEERS[i]), &payload[..len]), len))
                }
                &TrafficOp::ChannelData { channel, len } => {
                    Some((channel_data(channel, &payload[..len]), len))
                }
                &TrafficOp::FromPeer { peer: i, len } => {
                    match h.server.handle_peer_packet(h.time(), relay, peer(PEERS[i]), &payload[..len]) {
                        PeerAction::Drop(r) => want.drops[r as usize] += 1,
                        _ => {
                            want.to_client += 1;
                            want.bytes_in += len as u64;
                        }
                    }
                    None
                }
                &TrafficOp::Permit { peer: i } => {
                    let p = peer(PEERS[i]);
                    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(PeerAddress { ip: p.ip(), port: p.port() })];
                    Some((h.build(c, METHOD_CREATE_PERMISSION, attrs, Some(&creds), None).raw, 0))
                }
                &TrafficOp::Bind { channel, peer: i } => {
                    let p = peer(PEERS[i]);
                    let attrs: Vec<Box<dyn Setter>> = vec![
                        Box::new(ChannelNumber(channel)),
                        Box::new(PeerAddress { ip: p.ip(), port: p.port() }),
                    ];
                    Some((h.build(c, METHOD_CHANNEL_BIND, attrs, Some(&creds), None).raw, 0))
                }
                TrafficOp::Binding => Some((h.build(c, METHOD_BINDING, vec![], None, None).raw, 0)),
                &TrafficOp::Advance { secs } => {
                    h.advance(Duration::from_secs(secs));
                    None
                }
            };
            if let Some((m, len)) = from_client {
                match h.server.handle_client_packet(h.time(), c, &m) {
                    // Requests: their answers are counted below.
                    ClientAction::Handled if !matches!(op, TrafficOp::Send { .. } | TrafficOp::ChannelData { .. }) => {}
                    ClientAction::Forward { payload: p, .. } => {
                        prop_assert_eq!(p.len(), len);
                        want.forwarded += 1;
                        want.bytes_out += len as u64;
                    }
                    ClientAction::Drop(r) => want.drops[r as usize] += 1,
                    ClientAction::Handled => prop_assert!(false, "relay path answered Handled"),
                }
            }
            // Everything the core sends through the command queue is a response.
            want.responses += h.take_responses().len() as u64;
        }
        want.matches(&h, &before)?;
    }
}

/// Attributes as a client could send them: known types (and any other) with values of
/// any length, padded to 4 bytes as STUN requires.
fn attributes() -> impl Strategy<Value = Vec<u8>> {
    let typ = prop_oneof![
        // XOR-PEER-ADDRESS, DATA, CHANNEL-NUMBER, LIFETIME, REQUESTED-TRANSPORT, USERNAME,
        // MESSAGE-INTEGRITY, FINGERPRINT, EVEN-PORT, RESERVATION-TOKEN, then anything.
        prop::sample::select(vec![
            0x0012u16, 0x0013, 0x000C, 0x000D, 0x0019, 0x0006, 0x0008, 0x8028, 0x0018, 0x0022
        ]),
        any::<u16>(),
    ];
    prop::collection::vec((typ, prop::collection::vec(any::<u8>(), 0..24)), 0..6).prop_map(
        |attrs| {
            let mut v = Vec::new();
            for (t, value) in attrs {
                v.extend_from_slice(&t.to_be_bytes());
                v.extend_from_slice(&(value.len() as u16).to_be_bytes());
                v.extend_from_slice(&value);
                v.resize(v.len().next_multiple_of(4), 0);
            }
            v
        },
    )
}

/// Arbitrary bytes, and bytes shaped to get past the first checks: a ChannelData header, or
/// a STUN header (magic cookie, right length; Send, Binding, Allocate, ChannelBind or any
/// type) over arbitrary bytes or attributes.
fn packet() -> impl Strategy<Value = Vec<u8>> {
    let raw = prop::collection::vec(any::<u8>(), 0..200);
    let typ = prop_oneof![
        3 => prop::sample::select(vec![0x0016u16, 0x0001, 0x0003, 0x0009]),
        1 => any::<u16>(),
    ];
    let body = prop_oneof![
        raw.clone().prop_map(|b| b[..b.len() & !3].to_vec()),
        attributes()
    ];
    prop_oneof![
        1 => raw.clone(),
        1 => (0x4000..0x8000u16, raw).prop_map(|(ch, body)| {
            let mut v = ch.to_be_bytes().to_vec();
            let len = body.len() as u16;
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&body);
            v
        }),
        2 => (typ, any::<[u8; 12]>(), body, prop_oneof![3 => Just(0), 1 => 1..4usize]).prop_map(|(typ, tid, body, cut)| {
            let mut v = (typ & 0x3FFF).to_be_bytes().to_vec();
            v.extend_from_slice(&(body.len() as u16).to_be_bytes());
            v.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
            v.extend_from_slice(&tid);
            v.extend_from_slice(&body);
            // Sometimes truncated: the header then promises more than came.
            v.truncate(v.len() - cut.min(body.len()));
            v
        }),
    ]
}

proptest! {
    #![proptest_config(cases(512))]

    /// Any bytes from a client (with or without an allocation) or a peer get a decision,
    /// never a panic: at most one reply, a decodable STUN response to the sender with the
    /// packet's transaction id; a relayed payload is a slice of the packet.
    #[test]
    fn any_bytes_are_answered_or_dropped(pkt in packet()) {
        let mut h = harness_with(config());
        let c = h.client(1);
        h.allocate(c, "bob");
        let p = peer("198.51.100.9:1000");
        assert_success(&h.bind_channel(c, "bob", 0x4000, p));
        let relay = h.relay_bind_addr(c);
        // From the bound peer: relayed to the client (as ChannelData), whatever the bytes.
        let act = h.server.handle_peer_packet(h.time(), relay, p, &pkt);
        prop_assert_eq!(act, PeerAction::ChannelData { client: c, channel: 0x4000 });
        prop_assert!(h.take_responses().is_empty());
        for client in [c, h.client(2)] {
            let act = h.server.handle_client_packet(h.time(), client, &pkt);
            if let ClientAction::Forward { payload, .. } = act {
                prop_assert!(payload.is_empty() || pkt.as_ptr_range().contains(&payload.as_ptr()));
            }
            // take_responses decodes every message the core sent (and fails if it cannot).
            let replies = h.take_responses();
            prop_assert!(replies.len() <= 1, "{} replies", replies.len());
            for (to, m) in replies {
                prop_assert!(matches!(act, ClientAction::Handled));
                prop_assert_eq!(to, client);
                prop_assert_eq!(&m.transaction_id.0[..], &pkt[8..20]);
                prop_assert!(m.typ.class == CLASS_SUCCESS_RESPONSE || m.typ.class == CLASS_ERROR_RESPONSE);
            }
        }
        prop_assert_eq!(h.server.allocation_count(), 1);
    }
}
