//! A new process's side of a handover (issue 18): the listeners, relay sockets and states
//! it was given (`Adopted`, for `Node::start_adopting`), imported into each shard's core.

use std::net::SocketAddr;

use crate::relay::handover::{CoreState, ImportReport};
use crate::relay::{Core, Transport};

use super::clock;
use super::shard::Listeners;

/// What a new process takes over for one shard.
pub struct AdoptedShard {
    pub listeners: Listeners,
    pub relays: Vec<(SocketAddr, std::net::UdpSocket)>,
    /// None: the state could not be read, the shard starts empty.
    pub state: Option<CoreState>,
}

pub struct Adopted {
    pub shards: Vec<AdoptedShard>,
    /// The old process's nonce and token key, so that its nonces stay valid.
    pub token_key: Option<[u8; 32]>,
}

/// Imports one shard's state into its fresh core. Returns what the shard must hold: the
/// relay sockets passed for the imported allocations (the others are closed here) and
/// the addresses the core owns; and how many allocations the state had, imported or not
/// (with `[cluster]`, the core asks to adopt a fleet slot for each).
pub(super) fn adopt(
    core: &mut Core,
    a: AdoptedShard,
) -> (
    Listeners,
    Vec<(SocketAddr, std::net::UdpSocket)>,
    Vec<SocketAddr>,
    usize,
) {
    let Some(state) = a.state else {
        return (a.listeners, Vec::new(), Vec::new(), 0);
    };
    let report: ImportReport = core.import_state(clock::time(), state);
    let owned: std::collections::HashSet<SocketAddr> = report.relays.iter().copied().collect();
    // A passed socket dropped here is closed: its allocation did not fit this config.
    let relays = a
        .relays
        .into_iter()
        .filter(|(addr, _)| owned.contains(addr))
        .collect();
    let slots = report.imported + report.not_imported.len();
    (a.listeners, relays, report.relays, slots)
}

/// The listener list as the config names it, in the shell's order: UDP, then TCP, then TLS.
pub fn listener_order(s: &crate::settings::Settings) -> Vec<(Transport, SocketAddr)> {
    let server = &s.config.server;
    let mut out: Vec<(Transport, SocketAddr)> = server
        .listen_udp
        .iter()
        .map(|a| (Transport::Udp, *a))
        .collect();
    out.extend(server.listen_tcp.iter().map(|a| (Transport::Tcp, *a)));
    out.extend(server.listen_tls.iter().map(|a| (Transport::Tls, *a)));
    out
}
