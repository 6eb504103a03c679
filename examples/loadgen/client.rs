//! A load client's life outside the measured load: allocate with a REST credential (after
//! the 401 challenge), bind a channel or a permission towards its peer, build the frame it
//! sends, and release the allocation at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use stun::attributes::*;
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use crate::args::{Args, Transport};
use crate::leg::{Leg, exchange};

/// A request signed with (user, realm, nonce, password) when given: the test kit's.
pub fn request(
    method: Method,
    attrs: &[&dyn Setter],
    auth: Option<(&str, &str, &str, &str)>,
) -> Message {
    let sign = auth.map(
        |(username, realm, nonce, password)| turnpike::testkit::Signer {
            username,
            password,
            realm,
            nonce,
        },
    );
    turnpike::testkit::request(method, attrs, sign)
}

pub fn credential(secret: &str, i: usize) -> (String, String) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    turnpike::auth::mint_credential(secret, &format!("load{i}"), 600, now)
}

/// A client: its leg, its credentials (user, realm, nonce, password), its relayed
/// address, and the frame it sends (payload at `off`).
pub struct Client {
    pub leg: Leg,
    pub auth: (String, String, String, String),
    pub relayed: SocketAddr,
    pub frame: Vec<u8>,
    pub off: usize,
    /// In c2c mode the second of a pair echoes instead of originating.
    pub responder: bool,
}

/// The response's error code, 0 when it has none.
pub fn error_code(r: &Message) -> u16 {
    turnpike::testkit::error_code(r).unwrap_or(0)
}

pub fn allocate(a: &Args, i: usize, tls: &Option<Arc<rustls::ClientConfig>>) -> Client {
    // A fresh socket can get the port of an allocation a previous run has not yet
    // released (437): then try another socket.
    for _ in 0..5 {
        if let Some(c) = try_allocate(a, i, tls) {
            return c;
        }
    }
    panic!("allocate {i}: no challenge in 5 tries");
}

fn try_allocate(a: &Args, i: usize, tls: &Option<Arc<rustls::ClientConfig>>) -> Option<Client> {
    let mut leg = Leg::connect(a, tls);
    let (user, pass) = credential(&a.secret, i);
    let udp = RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    };
    let r = exchange(&mut leg, a.server, &request(METHOD_ALLOCATE, &[&udp], None));
    let (Ok(nonce), Ok(realm)) = (
        TextAttribute::get_from_as(&r, ATTR_NONCE),
        TextAttribute::get_from_as(&r, ATTR_REALM),
    ) else {
        eprintln!(
            "allocate {i}: error {} instead of a challenge",
            error_code(&r)
        );
        return None;
    };
    let (nonce, realm) = (nonce.text, realm.text);
    let auth = Some((user.as_str(), realm.as_str(), nonce.as_str(), pass.as_str()));
    let r = exchange(&mut leg, a.server, &request(METHOD_ALLOCATE, &[&udp], auth));
    if r.typ.class != CLASS_SUCCESS_RESPONSE {
        eprintln!("allocate {i}: error {}", error_code(&r));
        return None;
    }
    let mut ra = RelayedAddress::default();
    ra.get_from(&r).expect("XOR-RELAYED-ADDRESS");
    Some(Client {
        leg,
        auth: (user, realm, nonce, pass),
        relayed: SocketAddr::new(ra.ip, ra.port),
        frame: vec![],
        off: 0,
        responder: false,
    })
}

/// Binds channel 0x4000 (or a permission) towards `peer` and builds the frame to send.
pub fn bind(a: &Args, c: &mut Client, peer: SocketAddr) {
    let (u, r, n, p) = &c.auth;
    let auth = Some((u.as_str(), r.as_str(), n.as_str(), p.as_str()));
    let pa = PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    };
    let m = if a.indications {
        request(METHOD_CREATE_PERMISSION, &[&pa], auth)
    } else {
        request(METHOD_CHANNEL_BIND, &[&ChannelNumber(0x4000), &pa], auth)
    };
    let res = exchange(&mut c.leg, a.server, &m);
    assert_eq!(res.typ.class, CLASS_SUCCESS_RESPONSE, "bind");
    let payload = vec![0u8; a.size];
    c.frame = if a.indications {
        turnpike::testkit::send_indication(peer, &payload)
    } else {
        turnpike::testkit::channel_data(0x4000, &payload)
    };
    // The payload ends the frame (sizes are multiples of 4, so no padding follows).
    c.off = c.frame.len() - a.size;
}

/// Deletes the allocation (Refresh with LIFETIME 0), so a later round's socket that gets
/// the same port does not meet a 437. Best effort.
pub fn release(a: &Args, c: &mut Client) {
    let (u, r, n, p) = &c.auth;
    let zero = turn::proto::lifetime::Lifetime(Duration::ZERO);
    let m = request(METHOD_REFRESH, &[&zero], Some((u, r, n, p)));
    match &mut c.leg {
        Leg::Udp(s) => {
            let _ = s.send_to(&m.raw, a.server);
        }
        leg => {
            leg.stream_send(&m.raw);
            leg.stream_flush();
        }
    }
}

pub fn tls_config(a: &Args) -> Option<Arc<rustls::ClientConfig>> {
    if a.transport != Transport::Tls {
        return None;
    }
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(a.ca.as_ref().expect("--ca for --transport tls"))
        .expect("--ca")
    {
        roots.add(c.expect("--ca PEM")).unwrap();
    }
    Some(Arc::new(
        rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
