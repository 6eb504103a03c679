//! Startup checks that only the host can answer: can the relay bind its address and ports,
//! are the listener ports free (the TLS files were loaded with the settings). Each error
//! names its config key, so a misconfigured node refuses to start instead of answering
//! every Allocate with 508.

use std::io::ErrorKind;
use std::net::SocketAddr;

use anyhow::bail;

use crate::config::Config;
use crate::runtime::shard::io::sockets::udp_socket;
use crate::settings::Settings;

fn why(e: &std::io::Error, port: u16) -> &'static str {
    match e.kind() {
        ErrorKind::PermissionDenied if port < 1024 => {
            " (ports below 1024 need root or CAP_NET_BIND_SERVICE)"
        }
        ErrorKind::AddrNotAvailable => " (not an address of this host)",
        ErrorKind::AddrInUse => " (already in use by another process)",
        _ => "",
    }
}

/// Proves each relay family can bind a port of `relay.ports`: tries ports spread over the
/// range until one binds. A port in use moves on; any other error is the answer.
pub fn relay_range(s: &Settings) -> anyhow::Result<()> {
    let (lo, hi) = s.config.relay.ports;
    let span = (hi - lo) as u32 + 1;
    let v6 = s.relay_v6.map(|f| f.bind);
    for (key, ip) in [("relay.ipv4", Some(s.relay_v4.bind)), ("relay.ipv6", v6)] {
        let Some(ip) = ip else { continue };
        let mut bound = false;
        for i in 0..32u32.min(span) {
            // Spread over the range: a busy start of the range says nothing about the rest.
            let port = lo + ((i as u64 * 7919) % span as u64) as u16;
            match udp_socket(SocketAddr::new(ip, port), false) {
                Ok(_) => {
                    bound = true;
                    break;
                }
                Err(e) if e.kind() == ErrorKind::AddrInUse => continue,
                Err(e) if e.kind() == ErrorKind::AddrNotAvailable => bail!(
                    "{key}: {ip} is not an address of this host ({e}); behind a 1:1 NAT \
                     put the public address in relay.advertised_{} and a local one here",
                    if ip.is_ipv4() { "ipv4" } else { "ipv6" }
                ),
                Err(e) => bail!(
                    "relay.ports: cannot bind a relay socket at {}: {e}{}",
                    SocketAddr::new(ip, port),
                    why(&e, port)
                ),
            }
        }
        if !bound {
            bail!(
                "relay.ports: every port tried in {lo}-{hi} on {ip} is in use by another process"
            );
        }
    }
    Ok(())
}

/// A TCP bind without SO_REUSEPORT: fails while another socket holds the port.
fn tcp_test_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    // A previous instance's TIME_WAIT connections must not count as "in use".
    s.set_reuse_address(true)?;
    s.bind(&addr.into())
}

/// Every listener port is free. The server binds with SO_REUSEPORT (one socket per shard),
/// which would silently share a port with a second instance: test-bind without it first.
pub fn listeners_free(cfg: &Config) -> anyhow::Result<()> {
    let s = &cfg.server;
    for a in &s.listen_udp {
        if let Err(e) = udp_socket(*a, false) {
            bail!(
                "server.listen_udp: cannot bind {a}: {e}{}",
                why(&e, a.port())
            );
        }
    }
    for (key, addrs) in [
        ("server.listen_tcp", &s.listen_tcp),
        ("server.listen_tls", &s.listen_tls),
    ] {
        for a in addrs {
            if let Err(e) = tcp_test_bind(*a) {
                bail!("{key}: cannot bind {a}: {e}{}", why(&e, a.port()));
            }
        }
    }
    Ok(())
}

/// Everything `turnpike check-config` can prove without the running server's sockets
/// (settings that loaded have readable, matching TLS files).
pub fn check_config(s: &Settings) -> anyhow::Result<()> {
    relay_range(s)
}

/// Before binding for real: the checks above plus free listener ports.
pub fn startup(s: &Settings) -> anyhow::Result<()> {
    check_config(s)?;
    listeners_free(&s.config)
}
