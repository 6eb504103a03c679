//! What a client sends, built the way a real client builds it: requests signed with
//! MESSAGE-INTEGRITY (so fuzzed attributes reach the authenticated handlers), Send
//! indications, and XOR-PEER-ADDRESS; the signing and the Send indication are the test
//! kit's (`turnpike::testkit`), with counted transaction ids so a crash replays exactly.

use std::net::{IpAddr, SocketAddr};

use stun::agent::TransactionId;
use stun::attributes::*;
use stun::fingerprint::FINGERPRINT;
use stun::message::*;
use turnpike::auth::mint_credential;
use turnpike::relay::ClientId;
use turnpike::testkit::{Signer, send_indication_in, sign};

use crate::{Driver, Op, REALM, SECRET};

/// A request attribute; peers are XOR-encoded once the transaction id is known.
pub enum Attr {
    Raw(u16, Vec<u8>),
    Peer(SocketAddr),
}

pub fn req(method: Method) -> MessageType {
    MessageType::new(method, CLASS_REQUEST)
}

/// A client request an op stands for, signed by `Driver::signed` when sent.
pub struct Request {
    pub client: u8,
    pub user: u8,
    pub typ: MessageType,
    pub attrs: Vec<Attr>,
}

/// The request `op` sends, or None when it is not a request. `last_token`: the last
/// RESERVATION-TOKEN handed out, for an Allocate that redeems one.
pub fn request_of(op: &Op, last_token: Option<&[u8]>) -> Option<Request> {
    let (client, user, typ, attrs) = match op {
        Op::Allocate {
            client,
            user,
            lifetime,
            even_port,
            family,
            additional,
            token,
        } => {
            let token = last_token.filter(|_| *token);
            let attrs = allocate_attrs(*lifetime, *even_port, *family, *additional, token);
            (client, user, req(METHOD_ALLOCATE), attrs)
        }
        Op::Refresh {
            client,
            user,
            lifetime,
        } => {
            let attrs = (lifetime.iter())
                .map(|l| Attr::Raw(ATTR_LIFETIME.0, l.to_be_bytes().to_vec()))
                .collect();
            (client, user, req(METHOD_REFRESH), attrs)
        }
        Op::Permit {
            client,
            user,
            peers,
        } => {
            let attrs = peers.iter().take(8).map(|p| Attr::Peer(p.addr())).collect();
            (client, user, req(METHOD_CREATE_PERMISSION), attrs)
        }
        Op::ChannelBind {
            client,
            user,
            channel,
            peer,
        } => {
            let number = [channel.to_be_bytes(), [0, 0]].concat();
            let attrs = vec![
                Attr::Raw(ATTR_CHANNEL_NUMBER.0, number),
                Attr::Peer(peer.addr()),
            ];
            (client, user, req(METHOD_CHANNEL_BIND), attrs)
        }
        Op::Signed {
            client,
            user,
            method,
            attrs,
        } => {
            let attrs = (attrs.iter().take(16))
                .map(|(t, v)| Attr::Raw(*t, v.clone()))
                .collect();
            // Any message type: unknown methods, and indications or responses signed as well.
            let mut typ = MessageType::default();
            typ.read_value(*method & 0x3FFF);
            (client, user, typ, attrs)
        }
        _ => return None,
    };
    Some(Request {
        client: *client,
        user: *user,
        typ,
        attrs,
    })
}

/// An Allocate's attributes: UDP, and what the op asks for besides.
fn allocate_attrs(
    lifetime: Option<u32>,
    even_port: Option<bool>,
    family: Option<u8>,
    additional: bool,
    token: Option<&[u8]>,
) -> Vec<Attr> {
    let mut attrs = vec![Attr::Raw(ATTR_REQUESTED_TRANSPORT.0, vec![17, 0, 0, 0])];
    if let Some(l) = lifetime {
        attrs.push(Attr::Raw(ATTR_LIFETIME.0, l.to_be_bytes().to_vec()));
    }
    if let Some(r) = even_port {
        attrs.push(Attr::Raw(ATTR_EVEN_PORT.0, vec![if r { 0x80 } else { 0 }]));
    }
    if let Some(f) = family {
        attrs.push(Attr::Raw(
            ATTR_REQUESTED_ADDRESS_FAMILY.0,
            vec![f % 3, 0, 0, 0],
        ));
    }
    if additional {
        attrs.push(Attr::Raw(0x8000, vec![2, 0, 0, 0]));
    }
    if let Some(t) = token {
        attrs.push(Attr::Raw(ATTR_RESERVATION_TOKEN.0, t.to_vec()));
    }
    attrs
}

impl Driver {
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
        let signer = Signer {
            username: &username,
            password: &password,
            realm: REALM,
            nonce: &nonce,
        };
        // Fuzzed attributes may refuse what follows (a FINGERPRINT among them): send as is.
        let _ = sign(&mut m, signer);
        let _ = FINGERPRINT.add_to(&mut m);
        m.raw
    }

    /// A Send indication of `payload` to `peer` (unsigned, as clients send them).
    pub(crate) fn send_indication(&self, peer: SocketAddr, payload: &[u8]) -> Vec<u8> {
        send_indication_in(self.transaction_id(), peer, payload)
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
