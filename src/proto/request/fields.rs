//! Field decoders that more than one method's request uses.

use std::time::Duration;

use stun::message::{Getter, Message};
use turn::proto::lifetime::Lifetime;

/// An address family a request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// LIFETIME, when present.
pub(super) fn lifetime(msg: &Message) -> Option<Duration> {
    let mut l = Lifetime::default();
    l.get_from(msg).ok().map(|_| l.0)
}
