//! The core harness: one relay core (`relay::Core`) inside the fake shell, with time
//! that moves only by hand and a client that signs requests like a real one (it fetches a
//! nonce, and signs again with the fresh one after a 438). The core's unit tests, the RFC
//! 5769 vectors and the proptests drive the core through it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::shell::FakeShell;
use super::wire::{RawAttr, Signer, error_code, relayed, request};
use crate::auth::{Authenticator, mint_credential};
use crate::relay::peer_policy::PeerPolicy;
use crate::relay::quota::Quotas;
use crate::relay::{ClientId, Core, CoreConfig, RelayFamily, Time, Transport};

pub const SECRET: &str = "test-secret-1";
pub const REALM: &str = "turnpike.test";

pub struct Harness {
    pub server: Core,
    pub now: Instant,
    pub unix: u64,
    pub shell: FakeShell,
    nonces: HashMap<ClientId, String>,
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
        quotas: std::sync::Arc::new(Quotas::new(100, 5)),
        max_channels: 16,
        // Off here: these tests send thousands of requests from one /24 at one instant.
        unauthenticated_rate: 0,
        max_bytes_per_sec_per_allocation: None,
        max_bytes_per_sec_per_user: None,
        max_permissions: 8,
        strict_channel_numbers: false,
        token_key: [5; 32],
        fleet_quota: false,
        fastpath: false,
    }
}

pub fn harness() -> Harness {
    harness_with(config())
}

pub fn harness_with(cfg: CoreConfig) -> Harness {
    Harness {
        server: Core::new(cfg, 1234),
        // The shell's clock gives a starting point; from there time moves only by hand.
        now: crate::testkit::start_time(),
        unix: 1_800_000_000,
        shell: FakeShell::default(),
        nonces: HashMap::new(),
    }
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

    /// Lets the fake shell carry out what the core queued.
    fn run_shell(&mut self) -> Vec<(ClientId, Vec<u8>)> {
        let time = self.time();
        self.shell.run(&mut self.server, time)
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
        let sign = creds.zip(nonce.as_deref()).map(|(c, nonce)| Signer {
            username: &c.username,
            password: &c.password,
            realm: REALM,
            nonce,
        });
        let refs: Vec<&dyn Setter> = attrs.iter().map(|a| a.as_ref()).collect();
        let mut m = request(method, &refs, sign);
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
