//! Unit tests of the relay core, one per protocol rule, with injected time: no sockets.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::*;
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
    pub server: Core,
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
        server: Core::new(cfg, 1234),
        // The shell's clock gives a starting point; from there time moves only by hand.
        now: std::time::Instant::now(),
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

pub use crate::testkit::{channel_data, error_code, send_indication};

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

    /// The harness's time as the one value the core takes.
    pub fn time(&self) -> Time {
        Time {
            mono: self.now,
            unix: self.unix,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
        self.server.handle_timeout(self.time());
        self.run_shell();
    }

    /// Plays the shell as runtime::shard does: drains the queue, binding relay sockets
    /// (failing on busy ports) and collecting responses, then reports the binds.
    fn run_shell(&mut self) -> Vec<(ClientId, Vec<u8>)> {
        let mut out = Vec::new();
        loop {
            let mut binds = Vec::new();
            while let Some(cmd) = self.server.poll_command() {
                match cmd {
                    Command::SendToClient { client, data } => out.push((client, data)),
                    Command::BindRelay { token, addr } => {
                        let ok = !self.busy_ports.contains(&addr.port()) && self.bound.insert(addr);
                        binds.push((token, addr, ok));
                    }
                    Command::ReleaseRelay { addr } => {
                        assert!(self.bound.remove(&addr), "released {addr} twice");
                    }
                    Command::AllocationEnded(s) => self.ended.push(*s),
                }
            }
            if binds.is_empty() {
                return out;
            }
            for (token, addr, ok) in binds {
                self.server.relay_bound(self.time(), token, addr, ok);
            }
        }
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
        let _ = self
            .server
            .handle_client_packet(Time { mono: now, unix }, client, data);
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
        // Refresh, not Allocate: a redirecting node answers an unsigned Allocate with 300.
        let m = self.build(client, METHOD_REFRESH, vec![], None, None);
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
        let nonce = creds.map(|_| nonce.unwrap_or_else(|| self.nonce(client)));
        let sign = creds
            .zip(nonce.as_deref())
            .map(|(c, nonce)| crate::testkit::Signer {
                username: &c.username,
                password: &c.password,
                realm: REALM,
                nonce,
            });
        let refs: Vec<&dyn Setter> = attrs.iter().map(|a| a.as_ref()).collect();
        let mut m = crate::testkit::request(method, &refs, sign);
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

/// EVEN-PORT with the R bit: reserve the next port too.
pub struct EvenPortR;
impl Setter for EvenPortR {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_EVEN_PORT, &[0x80]);
        Ok(())
    }
}

mod allocate;
mod auth;
mod binding;
mod channel;
mod expiry;
mod lifecycle;
mod limits;
mod permission;
mod refresh;
mod timers;
