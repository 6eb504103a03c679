//! A small STUN/TURN client kit shared by the unit tests, the integration tests in
//! `tests/`, the probe-free load generator and anyone scripting against turnpike: build
//! requests (signed with a long-term credential or not), Send indications and ChannelData,
//! and read error codes. Not on the server's path.

use std::net::SocketAddr;

use stun::attributes::{ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, Getter, METHOD_SEND, Message, MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use turn::proto::data::Data;
use turn::proto::peeraddr::PeerAddress;

/// What signs a request: the long-term credential and the server's realm and nonce.
#[derive(Debug, Clone, Copy)]
pub struct Signer<'a> {
    pub username: &'a str,
    pub password: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
}

/// A request of `method` with `attrs`, then USERNAME, REALM, NONCE and MESSAGE-INTEGRITY
/// when `sign` gives them.
pub fn request(method: Method, attrs: &[&dyn Setter], sign: Option<Signer>) -> Message {
    let mut m = Message::new();
    m.set_type(MessageType::new(method, CLASS_REQUEST));
    m.new_transaction_id().expect("random transaction id");
    m.write_header();
    for a in attrs {
        a.add_to(&mut m).expect("attribute fits");
    }
    if let Some(s) = sign {
        for (t, v) in [
            (ATTR_USERNAME, s.username),
            (ATTR_REALM, s.realm),
            (ATTR_NONCE, s.nonce),
        ] {
            TextAttribute::new(t, v.to_owned())
                .add_to(&mut m)
                .expect("text attribute fits");
        }
        MessageIntegrity::new_long_term_integrity(
            s.username.into(),
            s.realm.into(),
            s.password.into(),
        )
        .add_to(&mut m)
        .expect("integrity");
    }
    m
}

/// A Send indication carrying `data` to `peer`.
pub fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
    m.new_transaction_id().expect("random transaction id");
    m.write_header();
    PeerAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
    .add_to(&mut m)
    .expect("peer address");
    Data(data.to_vec()).add_to(&mut m).expect("data");
    m.raw
}

/// A ChannelData message on `channel` (unpadded, as over UDP).
pub fn channel_data(channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(4 + payload.len());
    v.extend_from_slice(&channel.to_be_bytes());
    v.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// The ERROR-CODE of a response, if it has one.
pub fn error_code(m: &Message) -> Option<u16> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok().map(|_| e.code.0)
}
