//! The Binding step: does the server answer, and how does it see this machine.

use std::net::SocketAddr;
use std::time::Instant;

use serde_json::json;
use stun::message::METHOD_BINDING;

use super::ctx::Ctx;
use super::outcome::{TURN_STEPS, skip_rest, step};
use super::wire::mapped;
use crate::probe::client::{Client, ReqError, error_of};
use crate::probe::report::{Report, Verdict};
use crate::probe::uri::Transport;

/// This machine's address as the server sees it, or a failed Binding with the rest
/// skipped.
pub(super) fn run(ctx: &Ctx, c: &mut Client, rep: &mut Report) -> Option<SocketAddr> {
    let t = Instant::now();
    let r = c.transact(&c.build(METHOD_BINDING, &[], false));
    if let Some(m) = r.as_ref().ok().and_then(mapped) {
        rep.push(step(
            "Binding",
            t,
            Verdict::Pass,
            format!("the server sees this machine as {m}"),
            None,
            json!({"mapped": m.to_string()}),
        ));
        return Some(m);
    }
    let server = ctx.server;
    let detail = match (&r, ctx.uri.transport) {
        (Err(ReqError::Timeout), Transport::Udp) => format!(
            "no answer from {server} on {}/udp within {:?}: nothing listens there or a firewall drops UDP",
            server.port(),
            ctx.opts.timeout
        ),
        (Err(e), _) => format!("no Binding response: {e}"),
        (Ok(m), _) => format!("Binding failed: {:?}", error_of(m)),
    };
    rep.push(step(
        "Binding",
        t,
        Verdict::Fail,
        detail,
        Some("no_response"),
        json!(null),
    ));
    skip_rest(rep, &TURN_STEPS[1..], "the server does not answer");
    None
}
