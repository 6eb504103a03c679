//! Settings derived from the config once, at start and on reload: the authenticator,
//! the peer policy with the server's own addresses, the relay families (bind and
//! advertised addresses), each shard's slice of the relay ports, and the TLS config.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::relay::RelayFamily;
use crate::relay::peer_policy::{OwnAddresses, PeerPolicy};

use super::tls;

/// The realm, static users, REST `secrets` and expiry policy every core authenticates
/// with; with `policy`, what a reload hands each core.
pub(super) fn authenticator(
    cfg: &Config,
    secrets: &[String],
    nonce_key: [u8; 32],
) -> Authenticator {
    let users: Vec<(String, String)> = cfg
        .auth
        .users
        .iter()
        .map(|u| (u.username.clone(), u.password.clone()))
        .collect();
    Authenticator::new(
        &cfg.server.realm,
        secrets.to_vec(),
        &users,
        nonce_key,
        cfg.auth.nonce_lifetime.as_secs(),
    )
    .with_expiry_policy(cfg.auth.expiry_policy())
}

/// The TLS server config for `server.listen_tls`, if there are TLS listeners.
pub(super) fn load_tls(cfg: &Config) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    match (
        &cfg.tls.cert,
        &cfg.tls.key,
        cfg.server.listen_tls.is_empty(),
    ) {
        (Some(c), Some(k), false) => Ok(Some(tls::load(c, k)?)),
        _ => Ok(None),
    }
}

/// The peer policy every core checks peers against, the server's own addresses included.
pub(super) fn policy(cfg: &Config, own: &OwnAddresses) -> PeerPolicy {
    PeerPolicy::new(cfg.peers.allow.clone(), cfg.peers.deny.clone()).with_own_addresses(own.clone())
}

/// The server's own addresses for the peer policy: listeners, interface addresses, relay
/// and advertised addresses, and the whole relay port range.
pub(super) fn own_addresses(cfg: &Config, relay: [Option<RelayFamily>; 2]) -> OwnAddresses {
    let s = &cfg.server;
    let listeners = [&s.listen_udp, &s.listen_tcp, &s.listen_tls]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    let mut ips: Vec<IpAddr> = if_addrs::get_if_addrs()
        .map(|v| v.into_iter().map(|i| i.ip()).collect())
        .unwrap_or_default();
    for f in relay.into_iter().flatten() {
        ips.extend(
            [f.bind, f.advertised]
                .into_iter()
                .filter(|ip| !ip.is_unspecified()),
        );
    }
    ips.sort();
    ips.dedup();
    OwnAddresses {
        listeners,
        ips,
        relay_ports: cfg.relay.ports,
    }
}

/// The IPv4 relay address when none is configured: a specific listen address if there is
/// one, else an address of the interface that carries the default route (not the first
/// interface in kernel order: a docker0 bridge must not win over eth0), else the first
/// non-loopback interface address, else loopback.
pub(super) fn default_relay_ipv4(cfg: &Config) -> IpAddr {
    if let Some(a) = cfg
        .server
        .listen_udp
        .iter()
        .find(|a| a.is_ipv4() && !a.ip().is_unspecified())
    {
        return a.ip();
    }
    let ifs = if_addrs::get_if_addrs().unwrap_or_default();
    let candidates = || {
        ifs.iter()
            .filter(|i| i.ip().is_ipv4() && !i.ip().is_loopback())
    };
    let route_if = std::fs::read_to_string("/proc/self/net/route")
        .ok()
        .and_then(|t| super::checks::default_route_interface_v4(&t));
    route_if
        .and_then(|name| candidates().find(|i| i.name == name))
        .or_else(|| candidates().next())
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |i| i.ip())
}

/// The IPv4 address clients are told to use for relays (and the server, for URIs).
pub fn advertised_ipv4(cfg: &Config) -> IpAddr {
    cfg.relay
        .advertised_ipv4
        .or(cfg.relay.ipv4)
        .unwrap_or_else(|| default_relay_ipv4(cfg))
}

pub fn relay_families(cfg: &Config) -> (Option<RelayFamily>, Option<RelayFamily>) {
    let v4_bind = cfg.relay.ipv4.unwrap_or_else(|| default_relay_ipv4(cfg));
    let v4 = RelayFamily {
        bind: v4_bind,
        advertised: cfg.relay.advertised_ipv4.unwrap_or(v4_bind),
    };
    let v6 = cfg.relay.ipv6.map(|bind| RelayFamily {
        bind,
        advertised: cfg.relay.advertised_ipv6.unwrap_or(bind),
    });
    for f in std::iter::once(v4).chain(v6) {
        if f.advertised.is_unspecified() {
            tracing::warn!(relay = %f.advertised, "relay address is unspecified: set relay.ipv4/ipv6 to a concrete address");
        } else if !PeerPolicy::default().permits(f.advertised) {
            tracing::warn!(
                relay = %f.advertised,
                "advertised relay address is private or loopback: clients outside this network cannot reach it (set relay.advertised_ipv4/ipv6 behind a 1:1 NAT)"
            );
        }
    }
    (Some(v4), v6)
}
