//! The Allocate step (and, after it, the Clock skew step that authenticating found): an
//! allocation, and whether its relayed address is one clients can reach.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use serde_json::json;
use stun::message::Message;

use super::clock_skew::{self, Credential};
use super::ctx::Ctx;
use super::outcome::{TURN_STEPS, skip_rest, step};
use super::wire::{fetch_nonce, lifetime, mapped, relayed};
use crate::probe::client::{Client, ReqError, error_of, is_success};
use crate::probe::report::{Report, Verdict};
use crate::relay::peer_policy::PeerPolicy;

/// What the later steps need of the probe's allocation.
pub(super) struct Allocation {
    pub relay: SocketAddr,
    /// A credential the server accepts.
    pub creds: Credential,
    /// The relayed address is one the server's name resolves to.
    pub relay_is_server_address: bool,
}

/// Allocates on `a`, reporting the Allocate and Clock skew steps; `None` when there is no
/// allocation.
pub(super) fn run(
    ctx: &Ctx,
    a: &mut Client,
    client_mapped: SocketAddr,
    addrs: &[SocketAddr],
    rep: &mut Report,
) -> Option<Allocation> {
    let t = Instant::now();
    if let Err(e) = fetch_nonce(a) {
        fail(rep, t, format!("first Allocate: {e}"));
        return None;
    }
    let auth = clock_skew::authenticate(ctx, a, t, rep)?;
    let alloc = success(auth.alloc, t, rep)?;
    let Some(relay) = relayed(&alloc) else {
        rep.push(step(
            "Allocate",
            t,
            Verdict::Fail,
            "success without XOR-RELAYED-ADDRESS".into(),
            Some("allocate_failed"),
            json!(null),
        ));
        return None;
    };
    let life = lifetime(&alloc).unwrap_or(0);
    let server_ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    let own_ips: Vec<IpAddr> = [Some(client_mapped.ip()), a.local_addr().map(|l| l.ip())]
        .into_iter()
        .flatten()
        .collect();
    let (verdict, problem, note) = relay_address_verdict(ctx, relay.ip(), &server_ips, &own_ips);
    rep.push(step(
        "Allocate",
        t,
        verdict,
        format!("relayed address {relay}, lifetime {life} s{note}"),
        problem,
        json!({"relayed": relay.to_string(), "mapped": mapped(&alloc).map(|m| m.to_string()), "lifetime_s": life}),
    ));
    let skew = auth.skew;
    rep.push(step(
        "Clock skew",
        t,
        skew.verdict,
        skew.detail,
        skew.problem,
        json!(null),
    ));
    Some(Allocation {
        relay,
        creds: auth.creds,
        relay_is_server_address: server_ips.contains(&relay.ip()),
    })
}

fn fail(rep: &mut Report, t: Instant, detail: String) {
    rep.push(step(
        "Allocate",
        t,
        Verdict::Fail,
        detail,
        Some("allocate_failed"),
        json!(null),
    ));
    skip_rest(rep, &TURN_STEPS[2..], "no allocation");
}

/// The successful Allocate response, or a failed step that names the refusal.
fn success(alloc: Result<Message, ReqError>, t: Instant, rep: &mut Report) -> Option<Message> {
    let detail = match &alloc {
        Ok(m) if is_success(m) => return alloc.ok(),
        Ok(m) => match error_of(m) {
            Some((403, r)) => format!("403 {r}: the server refuses this user or address"),
            Some((486, r)) => format!("486 {r}: this user's allocation quota is full"),
            Some((508, r)) => format!("508 {r}: the server has no relay port free"),
            Some((c, r)) => format!("error {c} {r}"),
            None => "unexpected response".into(),
        },
        Err(e) => format!("no Allocate response: {e}"),
    };
    fail(rep, t, detail);
    None
}

/// An address reachable from the whole internet (not private, loopback, CGNAT, ...).
fn is_public(ip: IpAddr) -> bool {
    PeerPolicy::default().permits(ip)
}

/// (verdict, problem, note) of the relayed address `rip`: private behind a public
/// server, this machine's own, or not one of the server's.
fn relay_address_verdict(
    ctx: &Ctx,
    rip: IpAddr,
    server_ips: &[IpAddr],
    own_ips: &[IpAddr],
) -> (Verdict, Option<&'static str>, String) {
    let server = ctx.server;
    if !is_public(rip) && is_public(server.ip()) {
        (
            Verdict::Warn,
            Some("relay_address_private"),
            format!(
                " - a private address: clients outside the server's network cannot reach it. Behind a 1:1 NAT set relay.advertised_ipv4 (coturn: external-ip) to the public address {}",
                server.ip()
            ),
        )
    } else if own_ips.contains(&rip) && !own_ips.contains(&server.ip()) {
        (
            Verdict::Warn,
            Some("relay_address_is_client"),
            " - that is this machine's own address: the server advertises a wrong relay address"
                .into(),
        )
    } else if !server_ips.contains(&rip) {
        (
            Verdict::Warn,
            Some("relay_address_differs"),
            format!(
                " - differs from {}, the address {} resolves to: right only if the relay really uses a separate address; behind a 1:1 NAT it must be the public one",
                server.ip(),
                ctx.uri.host
            ),
        )
    } else {
        (Verdict::Pass, None, String::new())
    }
}
