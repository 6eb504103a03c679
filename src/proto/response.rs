//! Encoding of the responses the control path sends (the relay path frames its
//! messages in place: see `channel_data` and `indication`).

use stun::agent::TransactionId;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::{Message, MessageType, Setter};

use super::ATTR_ADDRESS_ERROR_CODE;
use super::error_code::StunError;

/// A STUN message of `typ` answering `transaction_id`: `attrs`, then MESSAGE-INTEGRITY
/// with `key` (authenticated requests) and FINGERPRINT (when the request had one).
pub fn encode(
    typ: MessageType,
    transaction_id: TransactionId,
    attrs: &[Box<dyn Setter>],
    key: Option<&[u8]>,
    fingerprint: bool,
) -> Vec<u8> {
    let mut m = Message::new();
    m.set_type(typ);
    m.transaction_id = transaction_id;
    m.write_header();
    for a in attrs {
        let _ = a.add_to(&mut m);
    }
    if let Some(k) = key {
        let _ = MessageIntegrity(k.to_vec()).add_to(&mut m);
    }
    if fingerprint {
        let _ = FINGERPRINT.add_to(&mut m);
    }
    m.raw
}

/// ADDRESS-ERROR-CODE (RFC 8656 §18.12), which `turn::proto` does not have.
pub struct AddressErrorCode {
    pub family: u8,
    pub error: StunError,
}

impl Setter for AddressErrorCode {
    fn add_to(&self, m: &mut Message) -> Result<(), stun::Error> {
        let code = self.error.code();
        let mut v = vec![self.family, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(self.error.reason().as_bytes());
        m.add(ATTR_ADDRESS_ERROR_CODE, &v);
        Ok(())
    }
}
