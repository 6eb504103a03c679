//! Who signed a request (RFC 8489 §9.2.4), read once before the method is dispatched.

use stun::attributes::{ATTR_MESSAGE_INTEGRITY, ATTR_NONCE, ATTR_REALM, ATTR_USERNAME};
use stun::message::Message;
use stun::textattrs::TextAttribute;

use crate::proto::error_code::StunError;
use crate::proto::reject::Reject;

/// RFC 8489 §14.3: USERNAME is a UTF-8 string under 513 bytes.
const MAX_USERNAME_LEN: usize = 513;

/// The long-term credential attributes of a request. MESSAGE-INTEGRITY itself is checked
/// over the raw message, with the key USERNAME names; this says only whether it is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No MESSAGE-INTEGRITY: the request is challenged (401 with REALM and NONCE).
    Unsigned,
    /// MESSAGE-INTEGRITY with USERNAME, REALM and NONCE.
    Signed {
        username: String,
        realm: String,
        nonce: String,
    },
    /// MESSAGE-INTEGRITY without a readable USERNAME, REALM or NONCE, or with a USERNAME
    /// too long: 400.
    Malformed(Reject),
}

impl Credentials {
    pub fn parse(msg: &Message) -> Self {
        if !msg.contains(ATTR_MESSAGE_INTEGRITY) {
            return Credentials::Unsigned;
        }
        let text = |t| TextAttribute::get_from_as(msg, t).ok().map(|a| a.text);
        let (Some(username), Some(realm), Some(nonce)) =
            (text(ATTR_USERNAME), text(ATTR_REALM), text(ATTR_NONCE))
        else {
            return Credentials::Malformed(Reject::of(StunError::BadRequest));
        };
        if username.len() > MAX_USERNAME_LEN {
            let reject = Reject::new(StunError::BadRequest, "USERNAME too long");
            return Credentials::Malformed(reject);
        }
        Credentials::Signed {
            username,
            realm,
            nonce,
        }
    }

    /// Whether MESSAGE-INTEGRITY is there (readable credentials or not).
    pub fn is_signed(&self) -> bool {
        !matches!(self, Credentials::Unsigned)
    }
}
