//! The probe's steps for one URI, in order, one module each: DNS, TCP connect and TLS
//! (`connect`), Binding, Allocate (with the clock-skew diagnosis of a refused credential,
//! `clock_skew`), the relayed round trip through two allocations of its own, and Refresh.
//! `wire` holds the TURN exchanges they share, `ctx` what they all read and `outcome` how
//! they enter the report.

mod allocate;
mod binding;
mod clock_skew;
mod connect;
mod ctx;
mod dns;
mod outcome;
mod refresh;
mod round_trip;
mod wire;

use std::net::SocketAddr;
use std::time::Instant;

use super::client::Client;
use super::options::Options;
use super::report::Report;
use super::uri::TurnUri;
use ctx::Ctx;

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
