//! The relay's addresses as this host gives them: relay families (bind and advertised
//! addresses, with the default taken from the interface of the default route), the
//! server's own addresses for the peer policy, and the URIs clients are given.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::Config;
use crate::relay::RelayFamily;
use crate::relay::peer_policy::{OwnAddresses, PeerPolicy};

/// The server's own addresses for the peer policy: listeners, interface addresses, relay
/// and advertised addresses, and the whole relay port range.
pub fn own_addresses(cfg: &Config, relay: [Option<RelayFamily>; 2]) -> OwnAddresses {
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
pub fn default_relay_ipv4(cfg: &Config) -> IpAddr {
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
        .and_then(|t| default_route_interface_v4(&t));
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

/// The relay's IPv4 family (always) and IPv6 family (when `relay.ipv6` is set): where
/// relay sockets bind and what clients are told. Warns about an address clients cannot
/// reach.
pub fn relay_families(cfg: &Config) -> (RelayFamily, Option<RelayFamily>) {
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
    (v4, v6)
}

/// The interface of the IPv4 default route in /proc/net/route's text (destination and
/// mask 0, lowest metric first).
pub fn default_route_interface_v4(route: &str) -> Option<String> {
    route
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Iface Destination Gateway Flags RefCnt Use Metric Mask ...
            let up = u32::from_str_radix(f.get(3)?, 16).ok()? & 1 == 1;
            (up && *f.get(1)? == "00000000" && *f.get(7)? == "00000000")
                .then(|| Some((f.get(6)?.parse::<u32>().ok()?, f[0].to_owned())))?
        })
        .min()
        .map(|(_, name)| name)
}

/// The TURN URIs handed out with credentials: `http.uris`, else one per listener, where a
/// wildcard listener is named by the advertised IPv4 relay address (what clients reach).
pub fn uris(cfg: &Config, advertised_ipv4: IpAddr) -> Vec<String> {
    if !cfg.http.uris.is_empty() {
        return cfg.http.uris.clone();
    }
    let named = |a: &SocketAddr| {
        let ip = if a.ip().is_unspecified() {
            advertised_ipv4
        } else {
            a.ip()
        };
        SocketAddr::new(ip, a.port())
    };
    let s = &cfg.server;
    let udp = s
        .listen_udp
        .iter()
        .map(|a| format!("turn:{}?transport=udp", named(a)));
    let tcp = s
        .listen_tcp
        .iter()
        .map(|a| format!("turn:{}?transport=tcp", named(a)));
    let tls = s
        .listen_tls
        .iter()
        .map(|a| format!("turns:{}?transport=tcp", named(a)));
    udp.chain(tcp).chain(tls).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_interface_is_the_one_with_the_zero_route_not_the_first() {
        let route = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n\
            wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
            eth0\t00000000\t010010AC\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
            eth0\t000010AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";
        assert_eq!(default_route_interface_v4(route).as_deref(), Some("eth0"));
        let none = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
            docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\n";
        assert_eq!(default_route_interface_v4(none), None);
    }
}
