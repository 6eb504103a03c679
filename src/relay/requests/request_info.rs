//! What every response needs from its request, read once when the request is decoded.

use stun::agent::TransactionId;
use stun::message::Method;

/// What a response needs from its request.
#[derive(Clone, Copy)]
pub(super) struct RequestInfo {
    pub(super) method: Method,
    pub(super) transaction_id: TransactionId,
    pub(super) fingerprint: bool,
}
