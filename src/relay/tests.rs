//! Unit tests of the relay core, one per protocol rule, with injected time: no sockets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqfamily::RequestedAddressFamily;
use turn::proto::reqtrans::RequestedTransport;

use super::peer_policy::PeerPolicy;
use super::stats::{DropReason, EndReason};
use super::*;
use crate::auth::{AuthError, Authenticator, mint_credential, rest_password};
use crate::proto::{ATTR_ADDITIONAL_ADDRESS_FAMILY, ATTR_ADDRESS_ERROR_CODE, decode_xor_address};

pub const SECRET: &str = "test-secret-1";
pub const REALM: &str = "turnpike.test";

pub struct Harness {
    pub server: Server,
    pub now: Instant,
    pub unix: u64,
    /// Ports the fake shell refuses to bind (already in use by another process).
    pub busy_ports: HashSet<u16>,
    pub bound: HashSet<SocketAddr>,
    pub ended: Vec<SessionSummary>,
    nonces: std::collections::HashMap<ClientId, String>,
}

pub fn config() -> CoreConfig {
    CoreConfig {
        auth: Authenticator::new(
            REALM,
            vec![SECRET.into()],
            &[("alice".into(), "alice-pw".into())],
            [9; 32],
            600,
        ),
        policy: PeerPolicy::default(),
        relay_v4: Some(RelayFamily {
            bind: "10.0.0.5".parse().unwrap(),
            advertised: "203.0.113.5".parse().unwrap(),
        }),
        relay_v6: None,
        ports: 50000..=50099,
        default_lifetime: Duration::from_secs(600),
        max_lifetime: Duration::from_secs(3600),
        quotas: std::sync::Arc::new(super::quota::Quotas::new(100, 5)),
        max_channels: 16,
        // Off here: these tests send thousands of requests from one /24 at one instant.
        unauthenticated_rate: 0,
        max_bytes_per_sec_per_allocation: None,
        max_bytes_per_sec_per_user: None,
        max_permissions: 8,
        strict_channel_numbers: false,
        token_key: [5; 32],
    }
}

pub fn harness() -> Harness {
    harness_with(config())
}

pub fn harness_with(cfg: CoreConfig) -> Harness {
    Harness {
        server: Server::new(cfg, 1234),
        // The shell's clock gives a starting point; from there time moves only by hand.
        now: crate::runtime::clock::now(),
        unix: 1_800_000_000,
        busy_ports: HashSet::new(),
        bound: HashSet::new(),
        ended: Vec::new(),
        nonces: Default::default(),
    }
}

pub fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Asserts a success response, showing the error code otherwise.
#[track_caller]
pub fn assert_success(m: &Message) {
    assert_eq!(
        m.typ.class,
        CLASS_SUCCESS_RESPONSE,
        "error {:?}",
        error_code(m)
    );
}

pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}

pub struct Creds {
    pub username: String,
    pub password: String,
}

impl Harness {
    pub fn client(&self, n: u16) -> ClientId {
        ClientId {
            transport: Transport::Udp,
            listener: 0,
            addr: SocketAddr::new("198.51.100.20".parse().unwrap(), 40000 + n),
        }
    }

    pub fn creds(&self, user: &str) -> Creds {
        // A fixed expiry, so the same user keeps the same username as test time advances.
        let (username, password) = mint_credential(SECRET, user, 86_400, 1_800_000_000);
        Creds { username, password }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
        self.server.handle_timeout(self.now);
        self.run_shell();
    }

    /// Plays the shell: binds relay sockets (failing on busy ports) and collects responses.
    fn run_shell(&mut self) -> Vec<(ClientId, Vec<u8>)> {
        let mut out = Vec::new();
        while let Some(cmd) = self.server.poll_command() {
            match cmd {
                Command::SendToClient { client, data } => out.push((client, data)),
                Command::BindRelay { token, addr } => {
                    let ok = !self.busy_ports.contains(&addr.port()) && self.bound.insert(addr);
                    self.server.relay_bound(self.now, token, addr, ok);
                }
                Command::ReleaseRelay { addr } => {
                    assert!(self.bound.remove(&addr), "released {addr} twice");
                }
                Command::AllocationEnded(s) => self.ended.push(*s),
            }
        }
        out
    }

    pub fn take_responses(&mut self) -> Vec<(ClientId, Message)> {
        self.run_shell()
            .into_iter()
            .map(|(c, data)| {
                let mut m = Message::new();
                m.raw = data;
                m.decode().expect("server sent a decodable message");
                (c, m)
            })
            .collect()
    }

    pub fn take_response(&mut self) -> (ClientId, Message) {
        let mut r = self.take_responses();
        assert_eq!(r.len(), 1, "expected exactly one message");
        r.pop().unwrap()
    }

    pub fn send_raw(&mut self, client: ClientId, data: &[u8]) -> Vec<(ClientId, Message)> {
        let (now, unix) = (self.now, self.unix);
        let _ = self.server.handle_client_packet(now, unix, client, data);
        self.take_responses()
    }

    /// Builds a request of `method` with `attrs`; signed with `creds` (after fetching a
    /// nonce with an unauthenticated attempt) when given.
    pub fn request(
        &mut self,
        client: ClientId,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        creds: Option<&Creds>,
    ) -> Message {
        let m = self.build(client, method, attrs, creds, None);
        let r = self.exchange(client, &m);
        if error_code(&r) != Some(438) || creds.is_none() {
            return r;
        }
        // Like a real client: take the fresh nonce from the 438 and sign again.
        let fresh = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
        self.nonces.insert(client, fresh.clone());
        let mut again = Message::new();
        again.raw = m.raw.clone();
        again.decode().unwrap();
        let attrs: Vec<Box<dyn Setter>> = again
            .attributes
            .0
            .iter()
            .filter(|a| {
                ![
                    ATTR_USERNAME,
                    ATTR_REALM,
                    ATTR_NONCE,
                    ATTR_MESSAGE_INTEGRITY,
                    ATTR_FINGERPRINT,
                ]
                .contains(&a.typ)
            })
            .map(|a| Box::new(RawAttr(a.typ, a.value.clone())) as Box<dyn Setter>)
            .collect();
        let m = self.build(client, method, attrs, creds, Some(fresh));
        self.exchange(client, &m)
    }

    pub fn exchange(&mut self, client: ClientId, m: &Message) -> Message {
        let mut r = self.send_raw(client, &m.raw);
        assert_eq!(r.len(), 1, "expected one response");
        let (to, resp) = r.pop().unwrap();
        assert_eq!(to, client);
        assert_eq!(resp.transaction_id, m.transaction_id);
        resp
    }

    pub fn nonce(&mut self, client: ClientId) -> String {
        if let Some(n) = self.nonces.get(&client) {
            return n.clone();
        }
        let m = self.build(client, METHOD_ALLOCATE, vec![], None, None);
        let r = self.exchange(client, &m);
        assert_eq!(error_code(&r), Some(401));
        let n = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
        self.nonces.insert(client, n.clone());
        n
    }

    pub fn build(
        &mut self,
        client: ClientId,
        method: Method,
        attrs: Vec<Box<dyn Setter>>,
        creds: Option<&Creds>,
        nonce: Option<String>,
    ) -> Message {
        let mut m = Message::new();
        m.set_type(MessageType::new(method, CLASS_REQUEST));
        m.new_transaction_id().unwrap();
        m.write_header();
        for a in &attrs {
            a.add_to(&mut m).unwrap();
        }
        if let Some(c) = creds {
            let nonce = nonce.unwrap_or_else(|| self.nonce(client));
            TextAttribute::new(ATTR_USERNAME, c.username.clone())
                .add_to(&mut m)
                .unwrap();
            TextAttribute::new(ATTR_REALM, REALM.into())
                .add_to(&mut m)
                .unwrap();
            TextAttribute::new(ATTR_NONCE, nonce)
                .add_to(&mut m)
                .unwrap();
            MessageIntegrity::new_long_term_integrity(
                c.username.clone(),
                REALM.into(),
                c.password.clone(),
            )
            .add_to(&mut m)
            .unwrap();
        }
        FINGERPRINT.add_to(&mut m).unwrap();
        m
    }

    pub fn allocate_attrs() -> Vec<Box<dyn Setter>> {
        vec![Box::new(RequestedTransport {
            protocol: turn::proto::PROTO_UDP,
        })]
    }

    /// Allocates for `client` as `user`; returns the advertised relayed address.
    pub fn allocate(&mut self, client: ClientId, user: &str) -> SocketAddr {
        let c = self.creds(user);
        let r = self.request(client, METHOD_ALLOCATE, Self::allocate_attrs(), Some(&c));
        assert_eq!(r.typ.class, CLASS_SUCCESS_RESPONSE, "{:?}", error_code(&r));
        relayed(&r)[0]
    }

    pub fn permit(&mut self, client: ClientId, user: &str, peers: &[SocketAddr]) -> Message {
        let c = self.creds(user);
        let attrs: Vec<Box<dyn Setter>> = peers
            .iter()
            .map(|p| {
                Box::new(PeerAddress {
                    ip: p.ip(),
                    port: p.port(),
                }) as Box<dyn Setter>
            })
            .collect();
        self.request(client, METHOD_CREATE_PERMISSION, attrs, Some(&c))
    }

    pub fn bind_channel(
        &mut self,
        client: ClientId,
        user: &str,
        channel: u16,
        peer: SocketAddr,
    ) -> Message {
        let c = self.creds(user);
        self.bind_channel_with(client, &c, channel, peer)
    }

    pub fn bind_channel_with(
        &mut self,
        client: ClientId,
        c: &Creds,
        channel: u16,
        peer: SocketAddr,
    ) -> Message {
        let attrs: Vec<Box<dyn Setter>> = vec![
            Box::new(ChannelNumber(channel)),
            Box::new(PeerAddress {
                ip: peer.ip(),
                port: peer.port(),
            }),
        ];
        self.request(client, METHOD_CHANNEL_BIND, attrs, Some(c))
    }

    /// The local (bound) relay address of `client`'s allocation.
    pub fn relay_bind_addr(&self, client: ClientId) -> SocketAddr {
        let a = self
            .server
            .allocations()
            .find(|a| a.client == client)
            .expect("allocation");
        a.relay_v4.or(a.relay_v6).unwrap()
    }
}

struct RawAttr(AttrType, Vec<u8>);
impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}

/// Whether the core told the shell to send `c` a Data indication.
pub fn is_data_indication(act: &PeerAction, c: ClientId) -> bool {
    matches!(act, PeerAction::DataIndication { client, .. } if *client == c)
}

/// Frames a Data indication the way the shell does, and decodes it.
pub fn framed(act: PeerAction, from: SocketAddr, payload: &[u8]) -> (ClientId, Message) {
    let PeerAction::DataIndication {
        client,
        transaction_id,
    } = act
    else {
        panic!("expected a Data indication, got {act:?}");
    };
    let at = crate::proto::indication::DATA_INDICATION_HEADROOM;
    let mut buf = vec![0u8; at + payload.len() + 3];
    buf[at..at + payload.len()].copy_from_slice(payload);
    let r = crate::proto::indication::frame_data_indication(
        &mut buf,
        at,
        payload.len(),
        from,
        &transaction_id,
    );
    let mut m = Message::new();
    m.raw = buf[r].to_vec();
    m.decode().expect("a decodable Data indication");
    (client, m)
}

pub fn relayed(m: &Message) -> Vec<SocketAddr> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .map(|a| decode_xor_address(&a.value, &m.transaction_id.0).unwrap())
        .collect()
}

fn lifetime(m: &Message) -> u64 {
    let mut l = Lifetime::default();
    l.get_from(m).unwrap();
    l.0.as_secs()
}

pub fn channel_data(ch: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![0; 4];
    v[0..2].copy_from_slice(&ch.to_be_bytes());
    v[2..4].copy_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

fn send_indication(p: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
    m.new_transaction_id().unwrap();
    m.write_header();
    PeerAddress {
        ip: p.ip(),
        port: p.port(),
    }
    .add_to(&mut m)
    .unwrap();
    Data(data.to_vec()).add_to(&mut m).unwrap();
    m.raw
}

// ---------------------------------------------------------------- STUN Binding

#[test]
fn binding_request_gets_xor_mapped_address_without_auth() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    let r = h.exchange(c, &m);
    assert_eq!(r.typ, BINDING_SUCCESS);
    let raw = r.get(ATTR_XORMAPPED_ADDRESS).unwrap();
    assert_eq!(decode_xor_address(&raw, &r.transaction_id.0), Some(c.addr));
    assert!(
        !r.contains(ATTR_FINGERPRINT),
        "no FINGERPRINT unless the request had one"
    );
    assert!(!r.contains(ATTR_MESSAGE_INTEGRITY));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn binding_response_has_fingerprint_when_request_had_one() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.request(c, METHOD_BINDING, vec![], None);
    assert_eq!(r.typ, BINDING_SUCCESS);
    FINGERPRINT.check(&r).unwrap();
}

#[test]
fn request_with_corrupt_fingerprint_is_dropped_silently() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = h.build(c, METHOD_BINDING, vec![], None, None);
    let n = m.raw.len();
    m.raw[n - 1] ^= 0xff;
    assert!(h.send_raw(c, &m.raw).is_empty());
}

#[test]
fn unknown_comprehension_required_attribute_gets_420() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(BINDING_REQUEST);
    m.new_transaction_id().unwrap();
    m.write_header();
    m.add(AttrType(0x0033), &[1, 2, 3, 4]);
    m.add(AttrType(0x8077), &[1, 2, 3, 4]); // comprehension-optional: ignored
    let r = h.exchange(c, &m);
    assert_eq!(error_code(&r), Some(420));
    let raw = r.get(ATTR_UNKNOWN_ATTRIBUTES).unwrap();
    assert_eq!(raw, vec![0x00, 0x33]);
}

#[test]
fn unknown_request_method_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    // CONNECT (RFC 6062) belongs to TCP allocations, which this server does not offer.
    let r = h.request(c, METHOD_CONNECT, vec![], None);
    assert_eq!(error_code(&r), Some(400));
}

#[test]
fn malformed_and_truncated_packets_never_panic_or_answer() {
    let mut h = harness();
    let c = h.client(1);
    let good = h.build(c, METHOD_BINDING, vec![], None, None).raw;
    for cut in 0..good.len() {
        assert!(h.send_raw(c, &good[..cut]).is_empty(), "cut {cut}");
    }
    // Pseudo-random garbage, including ChannelData- and STUN-looking prefixes.
    let mut x: u32 = 0x1234_5678;
    for i in 0..5000 {
        let len = (i % 90) as usize;
        let mut pkt: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        if len >= 8 && i % 3 == 0 {
            pkt[0] &= 0x3f;
            pkt[4..8].copy_from_slice(&0x2112A442u32.to_be_bytes());
            let body = (len as u16 - 20.min(len as u16)) & !3;
            pkt[2..4].copy_from_slice(&body.to_be_bytes());
        }
        let _ = h.send_raw(c, &pkt);
    }
    assert_eq!(h.server.allocation_count(), 0);
}

// ---------------------------------------------------------------- authentication

#[test]
fn allocate_without_integrity_gets_401_with_realm_and_nonce() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        TextAttribute::get_from_as(&r, ATTR_REALM).unwrap().text,
        REALM
    );
    assert!(
        !TextAttribute::get_from_as(&r, ATTR_NONCE)
            .unwrap()
            .text
            .is_empty()
    );
    assert!(!r.contains(ATTR_MESSAGE_INTEGRITY));
}

#[test]
fn unauthenticated_requests_leave_no_state() {
    let mut h = harness();
    for i in 0..2000u16 {
        let c = h.client(i);
        let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), None);
        assert_eq!(error_code(&r), Some(401));
    }
    assert_eq!(h.server.allocation_count(), 0);
    assert!(h.server.pending.is_empty() && h.server.by_client.is_empty());
    assert!(h.server.held.is_empty() && h.server.reservations.is_empty());
    assert_eq!(h.server.cfg.quotas.in_use(), 0);
    assert_eq!(h.server.counters().auth_failures[0], 2000);
}

#[test]
fn allocate_with_wrong_password_gets_401() {
    let mut h = harness();
    let c = h.client(1);
    let mut creds = h.creds("bob");
    creds.password = rest_password("another-secret", &creds.username);
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert!(TextAttribute::get_from_as(&r, ATTR_NONCE).is_ok());
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn allocate_with_expired_rest_credential_gets_401() {
    let mut h = harness();
    let c = h.client(1);
    let username = format!("{}:bob", h.unix - 1);
    let creds = Creds {
        password: rest_password(SECRET, &username),
        username,
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(401));
    assert_eq!(
        h.server.counters().auth_failures[AuthError::Expired as usize],
        1,
        "counted as expired"
    );
}

#[test]
fn allocate_with_unknown_static_user_gets_401_and_static_user_works() {
    let mut h = harness();
    let c = h.client(1);
    let bad = Creds {
        username: "mallory".into(),
        password: "x".into(),
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&bad));
    assert_eq!(error_code(&r), Some(401));
    let good = Creds {
        username: "alice".into(),
        password: "alice-pw".into(),
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&good));
    assert_success(&r);
}

#[test]
fn allocate_with_stale_nonce_gets_438_with_a_fresh_nonce() {
    let mut h = harness();
    let c = h.client(1);
    let nonce = h.nonce(c);
    h.now += Duration::from_secs(601);
    h.unix += 601;
    let creds = h.creds("bob");
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(nonce.clone()),
    );
    let r = h.exchange(c, &m);
    assert_eq!(error_code(&r), Some(438));
    let fresh = TextAttribute::get_from_as(&r, ATTR_NONCE).unwrap().text;
    assert_ne!(fresh, nonce);
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(fresh),
    );
    assert_success(&h.exchange(c, &m));
}

#[test]
fn nonce_from_another_client_address_is_stale() {
    let mut h = harness();
    let (a, b) = (h.client(1), h.client(2));
    let nonce = h.nonce(a);
    let creds = h.creds("bob");
    let m = h.build(
        b,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        Some(nonce),
    );
    assert_eq!(error_code(&h.exchange(b, &m)), Some(438));
}

#[test]
fn integrity_without_username_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_ALLOCATE, CLASS_REQUEST));
    m.new_transaction_id().unwrap();
    m.write_header();
    MessageIntegrity::new_short_term_integrity("x".into())
        .add_to(&mut m)
        .unwrap();
    assert_eq!(error_code(&h.exchange(c, &m)), Some(400));
}

#[test]
fn credential_minted_with_a_rotated_out_secret_still_works_while_listed() {
    let mut cfg = config();
    cfg.auth = Authenticator::new(
        REALM,
        vec!["new-secret-1".into(), SECRET.into()],
        &[],
        [9; 32],
        600,
    );
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob"); // creds() mints with SECRET, now the second secret
}

// ---------------------------------------------------------------- Allocate

#[test]
fn allocate_success_has_advertised_relay_mapped_address_lifetime_and_integrity() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    let relay = relayed(&r)[0];
    assert_eq!(
        relay.ip().to_string(),
        "203.0.113.5",
        "advertised, not bind address"
    );
    assert!((50000..=50099).contains(&relay.port()));
    assert_eq!(h.relay_bind_addr(c).ip().to_string(), "10.0.0.5");
    assert_eq!(lifetime(&r), 600);
    let raw = r.get(ATTR_XORMAPPED_ADDRESS).unwrap();
    assert_eq!(decode_xor_address(&raw, &r.transaction_id.0), Some(c.addr));
    MessageIntegrity::new_long_term_integrity(creds.username, REALM.into(), creds.password)
        .check(&mut r)
        .expect("response is signed with the client's key");
    FINGERPRINT.check(&r).unwrap();
}

#[test]
fn allocate_without_requested_transport_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(400));
    assert!(
        r.contains(ATTR_MESSAGE_INTEGRITY),
        "errors to authenticated requests are signed"
    );
}

#[test]
fn allocate_with_tcp_transport_gets_442() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_TCP,
    })];
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(442));
}

#[test]
fn retransmitted_allocate_gets_the_cached_success_not_437() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let m = h.build(
        c,
        METHOD_ALLOCATE,
        Harness::allocate_attrs(),
        Some(&creds),
        None,
    );
    let first = h.exchange(c, &m);
    let again = h.exchange(c, &m);
    assert_success(&first);
    assert_eq!(first.raw, again.raw);
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn second_allocate_on_same_five_tuple_gets_437() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(437));
}

#[test]
fn allocate_lifetime_is_capped_at_the_maximum_and_floored_at_the_default() {
    let mut h = harness();
    for (i, (asked, granted)) in [(7200, 3600), (60, 600), (1200, 1200)]
        .into_iter()
        .enumerate()
    {
        let c = h.client(i as u16);
        let creds = h.creds("bob");
        let mut attrs = Harness::allocate_attrs();
        attrs.push(Box::new(Lifetime(Duration::from_secs(asked))));
        let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
        assert_eq!(lifetime(&r), granted, "asked {asked}");
    }
}

#[test]
fn allocation_expires_when_its_lifetime_ends() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.advance(Duration::from_secs(599));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(2));
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.ended.len(), 1);
    assert_eq!(h.ended[0].reason, EndReason::Expired);
    assert!(h.bound.is_empty(), "relay socket released");
    assert_eq!(h.server.poll_timeout(), None, "idle core wants no timer");
}

#[test]
fn requested_family_ipv6_without_ipv6_relay_gets_440() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(440));
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x07)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(440));
}

fn dual_stack() -> CoreConfig {
    let mut cfg = config();
    cfg.relay_v6 = Some(RelayFamily {
        bind: "2001:db8::5".parse().unwrap(),
        advertised: "2001:db8::5".parse().unwrap(),
    });
    cfg
}

#[test]
fn ipv6_allocation_relays_to_ipv6_peers_only() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(RequestedAddressFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relays = relayed(&r);
    assert_eq!(relays.len(), 1);
    assert!(relays[0].is_ipv6());
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1000")]);
    assert_eq!(error_code(&r), Some(443));
    let r = h.permit(c, "bob", &[peer("[2001:db8:1::9]:1000")]);
    assert_success(&r);
}

#[test]
fn additional_address_family_gives_a_dual_allocation() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relays = relayed(&r);
    assert_eq!(relays.len(), 2);
    assert!(relays[0].is_ipv4() && relays[1].is_ipv6());
    let r = h.permit(
        c,
        "bob",
        &[peer("198.51.100.9:1"), peer("[2001:db8:1::9]:1")],
    );
    assert_success(&r);
    h.advance(Duration::from_secs(601));
    assert!(h.bound.is_empty(), "both relay sockets released");
}

#[test]
fn additional_family_without_ipv6_relay_gives_ipv4_and_address_error_code() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_success(&r);
    assert_eq!(relayed(&r).len(), 1);
    let aec = r.get(ATTR_ADDRESS_ERROR_CODE).unwrap();
    assert_eq!((aec[0], aec[2], aec[3]), (0x02, 4, 40));
}

#[test]
fn additional_family_ipv4_or_with_requested_family_gets_400() {
    let mut h = harness_with(dual_stack());
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x01)));
    assert_eq!(
        error_code(&h.request(c, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(400)
    );
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(AdditionalFamily(0x02)));
    attrs.push(Box::new(RequestedAddressFamily(0x01)));
    assert_eq!(
        error_code(&h.request(c, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(400)
    );
}

struct AdditionalFamily(u8);
impl Setter for AdditionalFamily {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_ADDITIONAL_ADDRESS_FAMILY, &[self.0, 0, 0, 0]);
        Ok(())
    }
}

#[test]
fn per_user_quota_gets_486() {
    let mut h = harness();
    for i in 0..5 {
        h.allocate(h.client(i), "bob");
    }
    let c = h.client(9);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(486));
    h.allocate(c, "carol"); // another user is unaffected
    assert_eq!(h.server.counters().quota_rejections, 1);
}

#[test]
fn server_wide_quota_gets_486() {
    let mut cfg = config();
    cfg.quotas = std::sync::Arc::new(super::quota::Quotas::new(2, 5));
    let mut h = harness_with(cfg);
    h.allocate(h.client(1), "a");
    h.allocate(h.client(2), "b");
    let c = h.client(3);
    let creds = h.creds("c");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(486));
}

#[test]
fn relay_port_that_cannot_be_bound_is_retried_then_508() {
    let mut cfg = config();
    cfg.ports = 50000..=50003;
    let mut h = harness_with(cfg);
    h.busy_ports.extend([50000, 50001, 50002]);
    let relay = h.allocate(h.client(1), "bob");
    assert_eq!(
        relay.port(),
        50003,
        "skipped the ports another process holds"
    );
    let c = h.client(2);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_eq!(error_code(&r), Some(508));
    assert_eq!(h.server.allocation_count(), 1);
    assert!(h.server.pending.is_empty());
}

#[test]
fn even_port_with_reservation_gives_a_token_for_the_next_port() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(EvenPortR));
    let r = h.request(c, METHOD_ALLOCATE, attrs, Some(&creds));
    let relay = relayed(&r)[0];
    assert_eq!(relay.port() % 2, 0);
    let token = r.get(ATTR_RESERVATION_TOKEN).unwrap();
    let c2 = h.client(2);
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(
        token.clone(),
    )));
    let r = h.request(c2, METHOD_ALLOCATE, attrs, Some(&creds));
    assert_eq!(relayed(&r)[0].port(), relay.port() + 1);
    // A token is good once, and a forged one not at all.
    let c3 = h.client(3);
    let mut attrs = Harness::allocate_attrs();
    attrs.push(Box::new(turn::proto::rsrvtoken::ReservationToken(vec![
        0;
        8
    ])));
    assert_eq!(
        error_code(&h.request(c3, METHOD_ALLOCATE, attrs, Some(&creds))),
        Some(508)
    );
}

pub struct EvenPortR;
impl Setter for EvenPortR {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_EVEN_PORT, &[0x80]);
        Ok(())
    }
}

// ---------------------------------------------------------------- Refresh

#[test]
fn refresh_with_zero_lifetime_deletes_allocation() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    let r = h.request(c, METHOD_REFRESH, attrs, Some(&creds));
    assert_success(&r);
    assert_eq!(lifetime(&r), 0);
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.ended[0].reason, EndReason::Deleted);
    assert!(h.bound.is_empty());
}

#[test]
fn refresh_extends_the_lifetime() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.advance(Duration::from_secs(500));
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(lifetime(&r), 600);
    h.advance(Duration::from_secs(500));
    assert_eq!(h.server.allocation_count(), 1);
    h.advance(Duration::from_secs(101));
    assert_eq!(h.server.allocation_count(), 0);
}

#[test]
fn refresh_by_another_user_gets_441() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("mallory");
    let attrs: Vec<Box<dyn Setter>> = vec![Box::new(Lifetime(Duration::ZERO))];
    let r = h.request(c, METHOD_REFRESH, attrs, Some(&creds));
    assert_eq!(error_code(&r), Some(441));
    assert_eq!(h.server.allocation_count(), 1);
}

#[test]
fn refresh_without_allocation_gets_437() {
    let mut h = harness();
    let c = h.client(1);
    let creds = h.creds("bob");
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(437));
}

#[test]
fn refresh_with_expired_credential_gets_401_and_allocation_runs_out() {
    // The strict policy: today's lenient default is tested in tests/expiry.rs.
    let mut cfg = config();
    cfg.auth = Authenticator::new(REALM, vec![SECRET.into()], &[], [9; 32], 600)
        .with_expiry_policy(crate::auth::ExpiryPolicy {
            strict: true,
            ..Default::default()
        });
    let mut h = harness_with(cfg);
    let c = h.client(1);
    let username = format!("{}:bob", h.unix + 100);
    let creds = Creds {
        password: rest_password(SECRET, &username),
        username,
    };
    let r = h.request(c, METHOD_ALLOCATE, Harness::allocate_attrs(), Some(&creds));
    assert_success(&r);
    h.advance(Duration::from_secs(200));
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(401));
}

// ---------------------------------------------------------------- permissions

#[test]
fn create_permission_is_per_ip_and_any_port() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1000")]);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    let (now, unix) = (h.now, h.unix);
    // Data from another port of the permitted IP reaches the client.
    let act = h
        .server
        .handle_peer_packet(now, relay, peer("198.51.100.9:2222"), b"hi");
    let (to, ind) = framed(act, peer("198.51.100.9:2222"), b"hi");
    assert_eq!(to, c);
    assert_eq!(ind.typ, MessageType::new(METHOD_DATA, CLASS_INDICATION));
    let mut d = Data::default();
    d.get_from(&ind).unwrap();
    assert_eq!(d.0, b"hi");
    // And the client can send to any port of it.
    let si = send_indication(peer("198.51.100.9:3333"), b"yo");
    let act = h.server.handle_client_packet(now, unix, c, &si);
    assert_eq!(
        act,
        ClientAction::Forward {
            relay,
            peer: peer("198.51.100.9:3333"),
            payload: b"yo"
        }
    );
}

#[test]
fn create_permission_with_several_peers_installs_all() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let peers = [
        peer("198.51.100.9:1"),
        peer("198.51.100.10:1"),
        peer("203.0.113.77:1"),
    ];
    let r = h.permit(c, "bob", &peers);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    for p in peers {
        let act = h.server.handle_peer_packet(h.now, relay, p, b"x");
        assert!(is_data_indication(&act, c), "{p}");
    }
}

#[test]
fn create_permission_for_a_denied_peer_gets_403_and_installs_nothing() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    for bad in [
        "127.0.0.1:9",
        "10.1.2.3:9",
        "[::ffff:192.168.1.1]:9",
        "169.254.169.254:80",
    ] {
        let r = h.permit(c, "bob", &[peer("198.51.100.9:1"), peer(bad)]);
        assert_eq!(error_code(&r), Some(403), "{bad}");
    }
    let relay = h.relay_bind_addr(c);
    let act = h
        .server
        .handle_peer_packet(h.now, relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(
        act,
        PeerAction::Drop(DropReason::NoPermission),
        "all or nothing"
    );
    assert_eq!(h.server.counters().peer_denied, 4);
}

#[test]
fn admin_allow_list_lets_a_private_peer_through() {
    let mut cfg = config();
    cfg.policy = PeerPolicy::new(vec!["10.0.0.0/8".parse().unwrap()], vec![]);
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[peer("10.1.2.3:9")]);
    assert_success(&r);
}

#[test]
fn create_permission_without_peer_address_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let r = h.permit(c, "bob", &[]);
    assert_eq!(error_code(&r), Some(400));
}

#[test]
fn create_permission_by_another_user_gets_441_and_without_allocation_437() {
    let mut h = harness();
    let c = h.client(1);
    let r = h.permit(c, "bob", &[peer("198.51.100.9:1")]);
    assert_eq!(error_code(&r), Some(437));
    h.allocate(c, "bob");
    let r = h.permit(c, "eve", &[peer("198.51.100.9:1")]);
    assert_eq!(error_code(&r), Some(441));
}

#[test]
fn too_many_permissions_gets_508() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let peers: Vec<SocketAddr> = (1..=8)
        .map(|i| peer(&format!("198.51.100.{i}:1")))
        .collect();
    assert_success(&h.permit(c, "bob", &peers));
    let r = h.permit(c, "bob", &[peer("198.51.100.99:1")]);
    assert_eq!(error_code(&r), Some(508));
    // Refreshing existing ones is still fine.
    assert_success(&h.permit(c, "bob", &peers[..2]));
}

#[test]
fn permission_expires_after_300_seconds() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.permit(c, "bob", &[peer("198.51.100.9:1")]);
    let relay = h.relay_bind_addr(c);
    h.advance(Duration::from_secs(299));
    let act = h
        .server
        .handle_peer_packet(h.now, relay, peer("198.51.100.9:1"), b"x");
    assert!(is_data_indication(&act, c));
    h.advance(Duration::from_secs(2));
    let act = h
        .server
        .handle_peer_packet(h.now, relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
}

#[test]
fn peer_data_without_permission_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let relay = h.relay_bind_addr(c);
    let act = h
        .server
        .handle_peer_packet(h.now, relay, peer("198.51.100.9:1"), b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
    assert!(h.take_responses().is_empty());
}

#[test]
fn send_indication_without_permission_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let si = send_indication(peer("198.51.100.9:1"), b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::NoPermission));
}

#[test]
fn send_indication_to_a_denied_peer_is_dropped_as_denied() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let si = send_indication(peer("127.0.0.1:9"), b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::DeniedPeer));
    assert_eq!(
        h.server.counters().dropped[DropReason::DeniedPeer as usize],
        1
    );
}

#[test]
fn send_indication_without_allocation_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    let si = send_indication(peer("198.51.100.9:1"), b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &si);
    assert_eq!(act, ClientAction::Drop(DropReason::NoAllocation));
}

// ---------------------------------------------------------------- channels

#[test]
fn channel_bind_relays_channel_data_both_ways() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:5000");
    let r = h.bind_channel(c, "bob", 0x4001, p);
    assert_success(&r);
    let relay = h.relay_bind_addr(c);
    let cd = channel_data(0x4001, b"media");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &cd);
    assert_eq!(
        act,
        ClientAction::Forward {
            relay,
            peer: p,
            payload: b"media"
        }
    );
    let act = h.server.handle_peer_packet(h.now, relay, p, b"back");
    assert_eq!(
        act,
        PeerAction::ChannelData {
            client: c,
            channel: 0x4001
        }
    );
    // Another port of the same IP has the permission but not the channel: Data indication.
    let act = h
        .server
        .handle_peer_packet(h.now, relay, peer("198.51.100.9:5001"), b"x");
    assert!(is_data_indication(&act, c));
    let t = h.server.counters().relayed_packets[0];
    assert_eq!(t, [1, 2]);
}

#[test]
fn channel_data_on_an_unbound_channel_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let cd = channel_data(0x4002, b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
}

#[test]
fn channel_bind_rebinding_rules() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let (p1, p2) = (peer("198.51.100.9:1"), peer("198.51.100.10:1"));
    assert_success(&h.bind_channel(c, "bob", 0x4001, p1));
    // Same channel, same peer: a refresh.
    assert_success(&h.bind_channel(c, "bob", 0x4001, p1));
    // The channel to another peer, or the peer to another channel: 400.
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4001, p2)), Some(400));
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4002, p1)), Some(400));
    assert_success(&h.bind_channel(c, "bob", 0x4002, p2));
}

#[test]
fn channel_number_out_of_range_gets_400() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let p = peer("198.51.100.9:1");
    for ch in [0x0000, 0x3FFF, 0x7FFF, 0xFFFF] {
        assert_eq!(
            error_code(&h.bind_channel(c, "bob", ch, p)),
            Some(400),
            "{ch:#x}"
        );
    }
    // RFC 5766 clients use up to 0x7FFE: accepted unless strict.
    assert_success(&h.bind_channel(c, "bob", 0x7FFE, p));
    let mut cfg = config();
    cfg.strict_channel_numbers = true;
    let mut h = harness_with(cfg);
    let c = h.client(1);
    h.allocate(c, "bob");
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x5000, p)), Some(400));
    assert_success(&h.bind_channel(c, "bob", 0x4FFF, p));
}

#[test]
fn channel_bind_to_denied_peer_gets_403() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    assert_eq!(
        error_code(&h.bind_channel(c, "bob", 0x4001, peer("127.0.0.1:1"))),
        Some(403)
    );
}

#[test]
fn channel_bind_installs_a_permission_for_the_peer() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    let si = send_indication(peer("198.51.100.9:7"), b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &si);
    assert!(matches!(act, ClientAction::Forward { .. }));
}

#[test]
fn channel_expires_after_600_seconds_and_cools_down_for_300() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let creds = h.creds("bob");
    let (p1, p2) = (peer("198.51.100.9:1"), peer("198.51.100.10:1"));
    h.bind_channel(c, "bob", 0x4001, p1);
    // Keep the allocation alive past the channel's lifetime.
    h.advance(Duration::from_secs(500));
    h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    h.advance(Duration::from_secs(101));
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
    // Cooling down: the number cannot go to another peer yet.
    assert_eq!(error_code(&h.bind_channel(c, "bob", 0x4001, p2)), Some(400));
    h.advance(Duration::from_secs(300));
    h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_success(&h.bind_channel(c, "bob", 0x4001, p2));
}

#[test]
fn client_channel_data_after_permission_expiry_is_dropped() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    h.advance(Duration::from_secs(301));
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoPermission));
}

// ---------------------------------------------------------------- lifecycle

#[test]
fn send_failure_towards_a_peer_keeps_the_allocation() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.server.record_send_failure(DropReason::SendError);
    assert_eq!(h.server.allocation_count(), 1);
    assert_eq!(
        h.server.counters().dropped[DropReason::SendError as usize],
        1
    );
}

#[test]
fn shutdown_ends_every_allocation_with_its_totals() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.bind_channel(c, "bob", 0x4001, peer("198.51.100.9:1"));
    let _ = h
        .server
        .handle_client_packet(h.now, h.unix, c, &channel_data(0x4001, b"12345"));
    h.server.shutdown(h.now);
    h.take_responses();
    assert_eq!(h.ended.len(), 1);
    let s = &h.ended[0];
    assert_eq!(s.reason, EndReason::Shutdown);
    assert_eq!((s.traffic.bytes_to_peer, s.traffic.packets_to_peer), (5, 1));
    assert_eq!((s.peers_used, s.channels_used), (1, 1));
    assert_eq!(s.username, h.creds("bob").username);
}

#[test]
fn reconfigure_with_a_new_secret_keeps_allocations_and_rejects_old_credentials() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    h.server.reconfigure(
        Authenticator::new(REALM, vec!["brand-new-secret".into()], &[], [9; 32], 600),
        PeerPolicy::default(),
    );
    assert_eq!(h.server.allocation_count(), 1);
    let creds = h.creds("bob"); // minted with the old secret
    let r = h.request(c, METHOD_REFRESH, vec![], Some(&creds));
    assert_eq!(error_code(&r), Some(401));
}

#[test]
fn closing_a_stream_connection_deletes_its_allocation() {
    let mut h = harness();
    let mut c = h.client(1);
    c.transport = Transport::Tcp;
    h.allocate(c, "bob");
    assert!(h.server.has_allocation(&c));
    h.server.client_disconnected(h.now, c, true);
    h.take_responses();
    assert_eq!(h.server.allocation_count(), 0);
    assert_eq!(h.ended[0].reason, EndReason::Deleted);
    assert!(h.bound.is_empty());
    // A UDP client at the same address is a different 5-tuple and is untouched.
    let u = h.client(1);
    h.allocate(u, "bob");
    h.server.client_disconnected(h.now, c, false);
    assert_eq!(h.server.allocation_count(), 1);
}

/// Not a test: the cost of the relay path through the core alone, for before/after
/// comparisons of core changes. Built only with the `probes` feature:
/// `cargo test --release --features probes --lib relay_path_cost -- --nocapture`.
#[cfg(feature = "probes")]
#[test]
fn relay_path_cost() {
    let mut cfg = config();
    cfg.quotas = std::sync::Arc::new(super::quota::Quotas::new(5000, 5000));
    cfg.ports = 10000..=60000;
    let mut h = harness_with(cfg);
    let n = 2000u16;
    let peers: Vec<SocketAddr> = (0..n)
        .map(|i| {
            peer(&format!(
                "198.51.{}.{}:{}",
                100 + i / 250,
                i % 250 + 1,
                7000 + i
            ))
        })
        .collect();
    let clients: Vec<ClientId> = (0..n).map(|i| h.client(i)).collect();
    for (i, c) in clients.iter().enumerate() {
        h.allocate(*c, "bench");
        assert_success(&h.bind_channel(*c, "bench", 0x4001, peers[i]));
    }
    let relays: Vec<SocketAddr> = clients.iter().map(|c| h.relay_bind_addr(*c)).collect();
    let packets: Vec<Vec<u8>> = (0..n).map(|_| channel_data(0x4001, &[0u8; 160])).collect();
    let rounds = 500usize;
    let t = crate::runtime::clock::now();
    for _ in 0..rounds {
        for i in 0..n as usize {
            let a = h
                .server
                .handle_client_packet(h.now, h.unix, clients[i], &packets[i]);
            std::hint::black_box(&a);
            let b = h
                .server
                .handle_peer_packet(h.now, relays[i], peers[i], &packets[i][4..]);
            std::hint::black_box(&b);
        }
    }
    let per = t.elapsed().as_nanos() as f64 / (rounds * n as usize * 2) as f64;
    println!("relay path through the core: {per:.1} ns per packet ({n} allocations)");
}

#[test]
fn reload_with_a_new_deny_entry_ends_permissions_and_channels_to_it_at_once() {
    let mut h = harness();
    let c = h.client(1);
    h.allocate(c, "bob");
    let (bad, good) = (peer("198.51.100.66:1"), peer("198.51.100.9:1"));
    assert_success(&h.bind_channel(c, "bob", 0x4001, bad));
    assert_success(&h.permit(c, "bob", &[good]));
    h.server.reconfigure(
        Authenticator::new(REALM, vec![SECRET.into()], &[], [9; 32], 600),
        PeerPolicy::new(vec![], vec!["198.51.100.66/32".parse().unwrap()]),
    );
    let relay = h.relay_bind_addr(c);
    let cd = channel_data(0x4001, b"x");
    let act = h.server.handle_client_packet(h.now, h.unix, c, &cd);
    assert_eq!(act, ClientAction::Drop(DropReason::NoChannel));
    let act = h.server.handle_peer_packet(h.now, relay, bad, b"x");
    assert_eq!(act, PeerAction::Drop(DropReason::NoPermission));
    let act = h.server.handle_peer_packet(h.now, relay, good, b"x");
    assert!(is_data_indication(&act, c), "other peers are untouched");
    assert_eq!(h.server.allocation_count(), 1);
}

mod expiry;
mod limits;
mod timers;
