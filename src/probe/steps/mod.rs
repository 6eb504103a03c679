//! The probe's steps for one URI, in order, one module each: DNS, TCP connect and TLS
//! (`connect`), Binding, Allocate (with the clock-skew diagnosis of a refused credential,
//! `clock_skew`), the relayed round trip through two allocations of its own, and Refresh.
//! `wire` holds the TURN exchanges they share.

mod allocate;
mod binding;
mod clock_skew;
mod connect;
mod dns;
mod refresh;
mod round_trip;
mod wire;

use std::net::SocketAddr;
use std::time::Instant;

use super::Options;
use super::client::Client;
use super::report::{Report, Step, Verdict};
use super::uri::TurnUri;

/// The steps after the connection, in order; a failed step skips those after it.
const TURN_STEPS: [&str; 5] = [
    "Binding",
    "Allocate",
    "Clock skew",
    "Relayed round trip",
    "Refresh",
];

fn skip_rest(rep: &mut Report, names: &[&'static str], why: &str) {
    for name in names {
        rep.skip(name, why);
    }
}

fn step(
    name: &'static str,
    t: Instant,
    verdict: Verdict,
    detail: String,
    problem: Option<&'static str>,
    data: serde_json::Value,
) -> Step {
    Step {
        name,
        verdict,
        ms: t.elapsed().as_millis() as u64,
        detail,
        problem,
        data,
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Per URI: everything learned so far that later steps need.
struct Ctx<'a> {
    uri: &'a TurnUri,
    opts: &'a Options,
    roots: &'a rustls::RootCertStore,
    server: SocketAddr,
}

/// Runs every step against `uri`, skipping those an earlier failure makes pointless.
pub fn probe(uri: &TurnUri, opts: &Options, roots: &rustls::RootCertStore) -> Report {
    let mut rep = Report::new(&uri.text, uri.transport.label());
    let started = Instant::now();
    let Some((addrs, server)) = dns::resolve(uri, &mut rep) else {
        return rep;
    };
    let ctx = Ctx {
        uri,
        opts,
        roots,
        server,
    };
    if let Some(conn) = connect::open(&ctx, started, &mut rep) {
        run_turn(&ctx, conn, &addrs, &mut rep);
    }
    rep
}

/// Binding onwards, on an open connection.
fn run_turn(ctx: &Ctx, mut a: Client, addrs: &[SocketAddr], rep: &mut Report) {
    let Some(client_mapped) = binding::run(ctx, &mut a, rep) else {
        return;
    };
    let Some(alloc) = allocate::run(ctx, &mut a, client_mapped, addrs, rep) else {
        return;
    };
    round_trip::run(ctx, &mut a, &alloc, rep);
    refresh::run(&mut a, rep);
    // Leave nothing behind on the server.
    wire::release(&mut a);
}
