//! The DNS step: the server's addresses, and the one the probe uses.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Instant;

use serde_json::json;

use super::outcome::{TURN_STEPS, skip_rest, step};
use crate::probe::report::{Report, Verdict};
use crate::probe::uri::TurnUri;

/// All addresses of the URI's host and the one to use (IPv4 first, as browsers mostly
/// do), or a failed DNS step with the rest skipped.
pub(super) fn resolve(uri: &TurnUri, rep: &mut Report) -> Option<(Vec<SocketAddr>, SocketAddr)> {
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = match (uri.host.as_str(), uri.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            fail(rep, t, format!("{} does not resolve: {e}", uri.host));
            return None;
        }
    };
    let Some(server) = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
    else {
        fail(rep, t, format!("{} has no address", uri.host));
        return None;
    };
    let ips: Vec<String> = addrs.iter().map(|a| a.ip().to_string()).collect();
    rep.push(step(
        "DNS",
        t,
        Verdict::Pass,
        format!("{} -> {}", uri.host, ips.join(", ")),
        None,
        json!({"addresses": ips, "using": server.to_string()}),
    ));
    Some((addrs, server))
}

fn fail(rep: &mut Report, t: Instant, detail: String) {
    rep.push(step(
        "DNS",
        t,
        Verdict::Fail,
        detail,
        Some("dns_failed"),
        json!(null),
    ));
    skip_rest(rep, &TURN_STEPS, "no address");
}
