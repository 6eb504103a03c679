//! The TURN exchanges every step shares: reading attributes off responses, the nonce
//! dance, and setting or testing a credential.

use std::net::SocketAddr;
use std::time::Duration;

use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use turn::proto::lifetime::Lifetime;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::ctx::Ctx;
use crate::probe::client::{Client, ReqError, error_of, is_success};

pub(super) fn relayed(m: &Message) -> Option<SocketAddr> {
    let mut r = RelayedAddress::default();
    r.get_from(m).ok()?;
    Some(SocketAddr::new(r.ip, r.port))
}

pub(super) fn mapped(m: &Message) -> Option<SocketAddr> {
    let mut x = XorMappedAddress::default();
    x.get_from(m).ok()?;
    Some(SocketAddr::new(x.ip, x.port))
}

pub(super) fn lifetime(m: &Message) -> Option<u64> {
    let mut l = Lifetime::default();
    l.get_from(m).ok()?;
    Some(l.0.as_secs())
}

pub(super) fn requested_transport() -> Vec<Box<dyn Setter>> {
    vec![Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })]
}

/// Whether a response is a 401 (the credential was refused).
pub(super) fn refused(r: &Result<Message, ReqError>) -> bool {
    r.as_ref()
        .ok()
        .and_then(error_of)
        .is_some_and(|(c, _)| c == 401)
}

/// The first unauthenticated Allocate, answered with 401 + REALM + NONCE.
pub(super) fn fetch_nonce(c: &mut Client) -> Result<(), String> {
    let r = c
        .transact(&c.build(METHOD_ALLOCATE, &requested_transport(), false))
        .map_err(|e| e.to_string())?;
    match error_of(&r) {
        Some((401, _)) => {
            c.learn_nonce(&r);
            Ok(())
        }
        Some((code, reason)) => Err(format!("unexpected error {code} {reason}")),
        None => Err("the server allocated without asking for a credential".into()),
    }
}

pub(super) fn set_credential(c: &mut Client, creds: &(String, String)) {
    c.username = creds.0.clone();
    c.password = creds.1.clone();
}

/// An authenticated Allocate with the credential set on `c`.
pub(super) fn allocate(c: &mut Client) -> Result<Message, ReqError> {
    c.signed(METHOD_ALLOCATE, &requested_transport())
}

/// Deletes the allocation on `c` (Refresh with lifetime 0), leaving nothing behind.
pub(super) fn release(c: &mut Client) {
    let _ = c.signed(METHOD_REFRESH, &[Box::new(Lifetime(Duration::ZERO))]);
}

/// Whether the server accepts `creds`, asked on a fresh connection with an Allocate that
/// is deleted at once: the only question every server answers after authenticating.
pub(super) fn accepted(ctx: &Ctx, creds: &(String, String)) -> Option<bool> {
    let mut c = ctx.connect().ok()?;
    fetch_nonce(&mut c).ok()?;
    set_credential(&mut c, creds);
    let r = allocate(&mut c).ok()?;
    if is_success(&r) {
        release(&mut c);
        return Some(true);
    }
    error_of(&r).map(|(code, _)| code != 401)
}
