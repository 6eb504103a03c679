//! Mapping each coturn option onto turnpike's settings, one function per option group.
//! What a line cannot carry over is listed with the reason; the value is never echoed.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::parse::{is_true, parse_alternate};
use super::ranges::peer_range_to_cidrs;
use super::tables::{NO_OP, UNSUPPORTED};
use super::unmapped::Unmapped;

/// What the coturn file set, gathered line by line before the TOML is written.
#[derive(Default)]
pub(super) struct State {
    pub listening_ips: Vec<IpAddr>,
    pub port: Option<u16>,
    pub tls_port: Option<u16>,
    pub relay_v4: Option<IpAddr>,
    pub relay_v6: Option<IpAddr>,
    pub advertised_v4: Option<IpAddr>,
    pub advertised_v6: Option<IpAddr>,
    pub min_port: Option<u16>,
    pub max_port: Option<u16>,
    pub realm: Option<String>,
    pub secrets: Vec<String>,
    pub use_auth_secret: Option<usize>,
    pub users: Vec<(String, String)>,
    pub deny: Vec<IpNet>,
    pub allow: Vec<IpNet>,
    pub cert: Option<String>,
    pub pkey: Option<String>,
    pub total_quota: Option<usize>,
    pub user_quota: Option<usize>,
    pub max_bps: Option<u64>,
    pub alternate: Vec<SocketAddr>,
    pub max_lifetime: Option<u64>,
    pub nonce_lifetime: Option<u64>,
    pub shards: Option<usize>,
    pub no_udp: bool,
    pub no_tcp: bool,
    pub no_tls: bool,
    pub no_dtls: bool,
    pub log_level: Option<&'static str>,
    pub metrics_port: Option<u16>,
    pub prometheus: bool,
}

/// The option being mapped: its line, its name, and the lists its findings go to.
pub(super) struct Line<'a> {
    pub no: usize,
    pub name: &'a str,
    pub unmapped: &'a mut Vec<Unmapped>,
    pub notes: &'a mut Vec<Unmapped>,
}

impl Line<'_> {
    fn finding(&self, reason: String) -> Unmapped {
        Unmapped {
            line: self.no,
            option: self.name.to_owned(),
            reason,
        }
    }

    /// Lists the option as not converted.
    fn skip(&mut self, reason: impl Into<String>) {
        let f = self.finding(reason.into());
        self.unmapped.push(f);
    }

    /// Notes a difference in meaning of a converted option.
    fn note(&mut self, reason: &str) {
        let f = self.finding(reason.into());
        self.notes.push(f);
    }
}

fn port(v: &str) -> Option<u16> {
    v.parse::<u16>().ok().filter(|p| *p > 0)
}

fn count(v: &str) -> Option<usize> {
    v.parse::<usize>().ok()
}

impl State {
    /// Takes one option in. Never fails: what it cannot use is listed on `l`.
    pub(super) fn apply(&mut self, l: &mut Line<'_>, v: &str) {
        let mapped = self.map_listeners(l, v)
            || self.map_relay_addresses(l, v)
            || self.map_auth(l, v)
            || self.map_peers(l, v)
            || self.map_limits(l, v)
            || self.map_switches(l, v);
        if !mapped {
            without_mapping(l);
        }
    }

    /// listening-ip, listening-port, tls-listening-port, cert, pkey.
    fn map_listeners(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        let name = l.name;
        match name {
            "listening-ip" => match v.parse::<IpAddr>() {
                Ok(ip) if !self.listening_ips.contains(&ip) => self.listening_ips.push(ip),
                Ok(_) => l.skip("listed twice"),
                Err(_) => l.skip(format!("{v:?} is not an IP address")),
            },
            "listening-port" | "tls-listening-port" => match port(v) {
                Some(p) if name == "listening-port" => self.port = Some(p),
                Some(p) => self.tls_port = Some(p),
                None => l.skip(format!("{v:?} is not a port number")),
            },
            "cert" => self.cert = Some(v.to_owned()),
            "pkey" => self.pkey = Some(v.to_owned()),
            _ => return false,
        }
        true
    }

    /// relay-ip, external-ip, min-port, max-port.
    fn map_relay_addresses(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        let name = l.name;
        match name {
            "relay-ip" => self.relay_ip(l, v),
            "external-ip" => self.external_ip(l, v),
            "min-port" | "max-port" => match port(v) {
                Some(p) if name == "min-port" => self.min_port = Some(p),
                Some(p) => self.max_port = Some(p),
                None => l.skip(format!("{v:?} is not a port number")),
            },
            _ => return false,
        }
        true
    }

    fn relay_ip(&mut self, l: &mut Line<'_>, v: &str) {
        let Ok(ip) = v.parse::<IpAddr>() else {
            return l.skip(format!("{v:?} is not an IP address"));
        };
        let slot = if ip.is_ipv4() {
            &mut self.relay_v4
        } else {
            &mut self.relay_v6
        };
        if slot.is_some() {
            l.skip(format!(
                "turnpike relays from one address per family; kept the first, dropped {ip}"
            ));
        } else {
            *slot = Some(ip);
        }
    }

    fn external_ip(&mut self, l: &mut Line<'_>, v: &str) {
        // "public" or "public/private": the private half is the local relay address.
        let (public, private) = match v.split_once('/') {
            Some((a, b)) => (a.trim(), Some(b.trim())),
            None => (v, None),
        };
        let (Ok(public), Ok(private)) = (
            public.parse::<IpAddr>(),
            private.map(|p| p.parse::<IpAddr>()).transpose(),
        ) else {
            return l.skip(format!(
                "{v:?} is not \"public\" or \"public/private\" addresses (host names are not resolved)"
            ));
        };
        if private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
            return l.skip(format!("{v:?}: both addresses must be of one family"));
        }
        let (adv, relay) = if public.is_ipv4() {
            (&mut self.advertised_v4, &mut self.relay_v4)
        } else {
            (&mut self.advertised_v6, &mut self.relay_v6)
        };
        if adv.is_some() {
            return l.skip(format!(
                "one advertised address per family; kept the first, dropped {public}"
            ));
        }
        *adv = Some(public);
        if let Some(p) = private {
            match relay {
                Some(r) if *r != p => l.skip(format!(
                    "private address {p} differs from relay-ip {r}; kept relay-ip"
                )),
                _ => *relay = Some(p),
            }
        }
    }

    /// realm, static-auth-secret, use-auth-secret, rest-api, rest-api-separator, user.
    fn map_auth(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        match l.name {
            "realm" => {
                if v.is_empty() || v.len() > 763 {
                    l.skip("a realm must be 1 to 763 bytes");
                } else if self.realm.is_some() {
                    l.skip("one realm per server; kept the first");
                } else {
                    self.realm = Some(v.to_owned());
                }
            }
            "static-auth-secret" => {
                if v.len() < 8 {
                    l.skip("turnpike needs a secret of at least 8 bytes; generate a longer one");
                } else if !self.secrets.iter().any(|s| s == v) {
                    self.secrets.push(v.to_owned());
                }
            }
            "use-auth-secret" | "rest-api" => self.use_auth_secret = Some(l.no),
            "rest-api-separator" if v != ":" => l.skip("turnpike's REST user names use \":\" only"),
            "rest-api-separator" => {}
            "user" => self.user(l, v),
            _ => return false,
        }
        true
    }

    fn user(&mut self, l: &mut Line<'_>, v: &str) {
        match v.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                if p.starts_with("0x") || p.starts_with("0X") {
                    l.skip(format!(
                        "user {u:?} has a hashed key (0x...); turnpike needs the plain password"
                    ));
                } else {
                    self.users.push((u.to_owned(), p.to_owned()));
                }
            }
            _ => l.skip("expected user=name:password"),
        }
    }

    /// denied-peer-ip, allowed-peer-ip, allow-loopback-peers.
    fn map_peers(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        let name = l.name;
        match name {
            "denied-peer-ip" | "allowed-peer-ip" => match peer_range_to_cidrs(v) {
                Ok(nets) if name == "denied-peer-ip" => self.deny.extend(nets),
                Ok(nets) => self.allow.extend(nets),
                Err(e) => l.skip(e),
            },
            "allow-loopback-peers" => {
                self.allow
                    .extend(["127.0.0.0/8", "::1/128"].map(|n| n.parse::<IpNet>().unwrap()));
            }
            _ => return false,
        }
        true
    }

    /// Quotas, lifetimes, bandwidth and threads.
    fn map_limits(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        let name = l.name;
        match name {
            "total-quota" | "user-quota" => match count(v) {
                Some(0) => l.skip("0 (no limit) has no equivalent; turnpike's default limit stays"),
                Some(n) if name == "total-quota" => self.total_quota = Some(n),
                Some(n) => self.user_quota = Some(n),
                None => l.skip(format!("{v:?} is not a number")),
            },
            "max-allocate-lifetime" => match v.parse::<u64>() {
                Ok(s) if s > 0 => self.max_lifetime = Some(s),
                _ => l.skip(format!("{v:?} is not a number of seconds above 0")),
            },
            "stale-nonce" => match v.parse::<u64>() {
                _ if v.is_empty() => self.nonce_lifetime = Some(600),
                Ok(s) if s >= 30 => self.nonce_lifetime = Some(s),
                _ => l.skip("turnpike needs a nonce lifetime of at least 30 seconds"),
            },
            "relay-threads" => match count(v) {
                Some(n) if n > 0 => self.shards = Some(n),
                Some(_) => {} // coturn's 0 = one thread per CPU, turnpike's default.
                None => l.skip(format!("{v:?} is not a number")),
            },
            "general-threads" | "cpus" => {
                l.skip("turnpike runs one shard per core; see server.shards")
            }
            // 0 = no limit, which is what turnpike does.
            "max-bps" | "bps-capacity" if v == "0" => {}
            "max-bps" => self.max_bps(l, v),
            _ => return false,
        }
        true
    }

    // coturn: bytes per second, each direction on its own; turnpike: bits per second, both
    // directions together. Twice the bytes, times 8, lets the same symmetric traffic through.
    fn max_bps(&mut self, l: &mut Line<'_>, v: &str) {
        match v.parse::<u64>() {
            Ok(b) => {
                self.max_bps = Some(b.saturating_mul(16));
                l.note("bytes/s per direction became bits/s of both directions together (x16)");
            }
            Err(_) => l.skip(format!("{v:?} is not a number of bytes per second")),
        }
    }

    /// Transport switches, logging, the metrics exporter and alternate servers.
    fn map_switches(&mut self, l: &mut Line<'_>, v: &str) -> bool {
        match l.name {
            "no-udp" if is_true(v) => self.no_udp = true,
            "no-tcp" if is_true(v) => self.no_tcp = true,
            "no-tls" if is_true(v) => self.no_tls = true,
            "no-dtls" if is_true(v) => self.no_dtls = true,
            "no-udp" | "no-tcp" | "no-tls" | "no-dtls" => {}
            "Verbose" => self.log_level = Some("debug"),
            "prometheus" => self.prometheus = true,
            "prometheus-port" => match port(v) {
                Some(p) => self.metrics_port = Some(p),
                None => l.skip(format!("{v:?} is not a port number")),
            },
            "alternate-server" => self.alternate_server(l, v),
            _ => return false,
        }
        true
    }

    fn alternate_server(&mut self, l: &mut Line<'_>, v: &str) {
        let Some(a) = parse_alternate(v) else {
            return l.skip(format!(
                "{v:?} is not an address with an optional port (host names are not resolved)"
            ));
        };
        if self.alternate.is_empty() {
            l.note(
                "coturn redirects every Allocate to its alternates; turnpike \
                 (server.alternate) redirects new clients only while draining or full",
            );
        }
        if !self.alternate.contains(&a) {
            self.alternate.push(a);
        }
    }
}

/// An option no group maps: needs no setting, or is listed with why it cannot be used.
fn without_mapping(l: &mut Line<'_>) {
    if NO_OP.iter().any(|(o, _)| *o == l.name) {
        return;
    }
    match UNSUPPORTED.iter().find(|(o, _)| *o == l.name) {
        Some((_, why)) => l.skip(*why),
        None => l.skip("unknown coturn option"),
    }
}
