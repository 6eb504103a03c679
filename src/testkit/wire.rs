//! What a client puts on the wire and reads back: requests (signed with a long-term
//! credential or not), Send indications and ChannelData, and the fields of a response
//! (error code, relayed addresses, lifetime).

use std::net::SocketAddr;

use stun::agent::TransactionId;
use stun::attributes::{
    ATTR_EVEN_PORT, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME, ATTR_XOR_RELAYED_ADDRESS, AttrType,
};
use stun::error_code::ErrorCodeAttribute;
use stun::integrity::MessageIntegrity;
use stun::message::{
    CLASS_INDICATION, CLASS_REQUEST, CLASS_SUCCESS_RESPONSE, Getter, METHOD_SEND, Message,
    MessageType, Method, Setter,
};
use stun::textattrs::TextAttribute;
use turn::proto::data::Data;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;

use crate::proto::decode_xor_address;

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
        self::sign(&mut m, s).expect("signed");
    }
    m
}

/// Appends USERNAME, REALM, NONCE and MESSAGE-INTEGRITY to `m`. Fails when `m` cannot
/// take them (a FINGERPRINT already in it, say).
pub fn sign(m: &mut Message, s: Signer) -> Result<(), stun::Error> {
    for (t, v) in [
        (ATTR_USERNAME, s.username),
        (ATTR_REALM, s.realm),
        (ATTR_NONCE, s.nonce),
    ] {
        TextAttribute::new(t, v.to_owned()).add_to(m)?;
    }
    MessageIntegrity::new_long_term_integrity(s.username.into(), s.realm.into(), s.password.into())
        .add_to(m)
}

/// A Send indication carrying `data` to `peer`.
pub fn send_indication(peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    send_indication_in(TransactionId::new(), peer, data)
}

/// A Send indication with transaction id `id` (fixed ids make a run replayable).
pub fn send_indication_in(id: TransactionId, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(MessageType::new(METHOD_SEND, CLASS_INDICATION));
    m.transaction_id = id;
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

/// Every XOR-RELAYED-ADDRESS of a response, in order.
pub fn relayed(m: &Message) -> Vec<SocketAddr> {
    m.attributes
        .0
        .iter()
        .filter(|a| a.typ == ATTR_XOR_RELAYED_ADDRESS)
        .map(|a| decode_xor_address(&a.value, &m.transaction_id.0).unwrap())
        .collect()
}

/// The LIFETIME of a response, in seconds.
pub fn lifetime(m: &Message) -> u64 {
    let mut l = Lifetime::default();
    l.get_from(m).unwrap();
    l.0.as_secs()
}

/// An address from its text form.
pub fn peer(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// EVEN-PORT with the R bit: reserve the next port too.
pub struct EvenPortR;
impl Setter for EvenPortR {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(ATTR_EVEN_PORT, &[0x80]);
        Ok(())
    }
}

/// Any attribute, as its type and raw value.
pub struct RawAttr(pub AttrType, pub Vec<u8>);
impl Setter for RawAttr {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        m.add(self.0, &self.1);
        Ok(())
    }
}
