//! `turnpike import-coturn`: turns a coturn `turnserver.conf` into an equivalent
//! `turnserver.toml`, and lists every option it could not carry over and why, so an admin
//! moving from coturn reviews a short list instead of the whole manual.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use ipnet::{IpNet, Ipv4Subnets, Ipv6Subnets};
use toml::{Table, Value};

use crate::config::Config;

/// A coturn option that has no turnpike equivalent (or a value that cannot be used).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmapped {
    /// 1-based line in the coturn file; 0 for a default coturn applies without a line.
    pub line: usize,
    pub option: String,
    pub reason: String,
}

impl std::fmt::Display for Unmapped {
    // The option's value is never shown: it may be a password or a secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "`{}`: {}", self.option, self.reason)
        } else {
            write!(f, "line {} `{}`: {}", self.line, self.option, self.reason)
        }
    }
}

#[derive(Debug)]
pub struct Import {
    /// The turnserver.toml text; parses with `Config::from_toml`.
    pub toml: String,
    /// The parsed result, for callers that want the values.
    pub config: Config,
    pub unmapped: Vec<Unmapped>,
    /// Options converted with a difference in meaning the admin should know about.
    pub notes: Vec<Unmapped>,
}

/// Options that need no setting in turnpike: it always behaves this way.
const NO_OP: &[(&str, &str)] = &[
    ("lt-cred-mech", "long-term credentials are always on"),
    ("fingerprint", "FINGERPRINT is always accepted"),
    ("no-dtls", "turnpike has no DTLS listener"),
    ("no-tcp-relay", "turnpike relays over UDP only"),
    (
        "no-multicast-peers",
        "multicast peers are refused by default",
    ),
    ("no-loopback-peers", "loopback peers are refused by default"),
    ("verbose", "log.level \"info\" is the default"),
    ("no-stdout-log", "turnpike logs to stderr"),
    ("no-cli", "turnpike has no admin CLI"),
    ("no-tlsv1", "TLS 1.0 is never offered"),
    ("no-tlsv1_1", "TLS 1.1 is never offered"),
];

/// Options turnpike cannot express, with the reason given to the admin.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "no-auth",
        "turnpike always requires authentication (open relays get abused)",
    ),
    (
        "userdb",
        "no user database: export the users to [[auth.users]] or use REST secrets",
    ),
    ("psql-userdb", "no user database (PostgreSQL)"),
    ("mysql-userdb", "no user database (MySQL)"),
    ("mongo-userdb", "no user database (MongoDB)"),
    ("redis-userdb", "no user database (Redis)"),
    ("redis-statsdb", "no Redis statistics: scrape /metrics"),
    (
        "oauth",
        "third-party (OAuth) authorization is not supported",
    ),
    (
        "server-name",
        "no per-server-name settings; realm is in server.realm",
    ),
    (
        "alt-listening-port",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "alt-tls-listening-port",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "rfc5780",
        "RFC 5780 NAT behaviour discovery is not supported",
    ),
    (
        "aux-server",
        "no auxiliary listeners: add the address to server.listen_udp",
    ),
    ("udp-self-balance", "not needed: shards share each UDP port"),
    (
        "tls-alternate-server",
        "server.alternate names STUN/TURN addresses only, not TLS ones",
    ),
    (
        "listening-device",
        "binding to a device is not supported: use listening addresses",
    ),
    (
        "relay-device",
        "binding to a device is not supported: use relay.ipv4/ipv6",
    ),
    ("no-udp-relay", "turnpike relays over UDP only"),
    ("bps-capacity", "no server-wide bandwidth limit"),
    (
        "channel-lifetime",
        "channel lifetime is fixed at RFC 8656's 10 minutes",
    ),
    (
        "permission-lifetime",
        "permission lifetime is fixed at RFC 8656's 5 minutes",
    ),
    (
        "pkey-pwd",
        "encrypted private keys are not supported: decrypt the key file",
    ),
    (
        "cipher-list",
        "TLS uses rustls's fixed modern cipher suites (TLS 1.2 and 1.3)",
    ),
    (
        "ec-curve-name",
        "TLS uses rustls's fixed modern key exchange groups",
    ),
    ("dh-file", "no finite-field Diffie-Hellman in rustls"),
    ("dh566", "no finite-field Diffie-Hellman in rustls"),
    ("dh1066", "no finite-field Diffie-Hellman in rustls"),
    (
        "no-tlsv1_2",
        "TLS 1.2 stays on (rustls offers only 1.2 and 1.3)",
    ),
    (
        "CA-file",
        "no client certificate checks: clients authenticate with TURN credentials",
    ),
    (
        "log-file",
        "turnpike logs to stderr (the journal under systemd)",
    ),
    (
        "syslog",
        "turnpike logs to stderr (the journal under systemd)",
    ),
    (
        "simple-log",
        "turnpike logs to stderr; no log file rotation",
    ),
    ("new-log-timestamp", "log format is set by log.format"),
    (
        "new-log-timestamp-format",
        "log format is set by log.format",
    ),
    ("pidfile", "no PID file: systemd tracks the process"),
    ("proc-user", "run under the service unit's user instead"),
    ("proc-group", "run under the service unit's group instead"),
    ("cli-ip", "turnpike has no telnet admin CLI"),
    ("cli-port", "turnpike has no telnet admin CLI"),
    ("cli-password", "turnpike has no telnet admin CLI"),
    (
        "cli-max-output-sessions",
        "turnpike has no telnet admin CLI",
    ),
    ("web-admin", "no web admin: use /metrics and SIGHUP reload"),
    (
        "web-admin-ip",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "web-admin-port",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "web-admin-listen-on-workers",
        "no web admin: use /metrics and SIGHUP reload",
    ),
    (
        "mobility",
        "ICE mobility (MOBILITY-TICKET) is not supported",
    ),
    (
        "secure-stun",
        "STUN Binding is always answered without auth",
    ),
    ("no-stun", "STUN Binding is always answered"),
    ("stun-only", "turnpike always offers TURN"),
    (
        "no-software-attribute",
        "SOFTWARE is not configurable in turnpike",
    ),
    (
        "check-origin-consistency",
        "ORIGIN attributes are not checked",
    ),
    ("keep-address-family", "address families follow RFC 8656"),
    (
        "allocation-default-address-family",
        "IPv4 is the default family (RFC 8656)",
    ),
    ("dtls-listening-port", "turnpike has no DTLS listener"),
    ("no-rfc5780", "RFC 5780 is not offered anyway"),
    (
        "response-origin-only-with-rfc5780",
        "RFC 5780 is not offered anyway",
    ),
    (
        "prometheus-username-labels",
        "per-user metric labels are not exported (unbounded series)",
    ),
    ("mobility-ticket", "ICE mobility is not supported"),
    ("sha256", "only SHA-1 message integrity keys are supported"),
    ("sha384", "only SHA-1 message integrity keys are supported"),
    ("sha512", "only SHA-1 message integrity keys are supported"),
    (
        "max-allocate-timeout",
        "relay sockets are bound at once; no timeout to tune",
    ),
    (
        "db",
        "no user database: export the users to [[auth.users]] or use REST secrets",
    ),
];

fn is_true(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "" | "1" | "true" | "yes" | "on"
    )
}

/// One `name[=value]` or `name value` line, comments and blanks skipped.
fn parse_line(raw: &str) -> Option<(String, String)> {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let line = line.trim_start_matches("--");
    let (name, value) = match line.find(['=', ' ', '\t']) {
        Some(i) => (&line[..i], line[i + 1..].trim()),
        None => (line, ""),
    };
    let value = value.trim_start_matches('=').trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name.trim().to_owned(), value.to_owned()))
}

/// coturn peer ranges: a single address, "first-last" (inclusive), or a CIDR.
pub fn peer_range_to_cidrs(v: &str) -> Result<Vec<IpNet>, String> {
    if let Ok(net) = v.parse::<IpNet>() {
        return Ok(vec![net.trunc()]);
    }
    let (a, b) = match v.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (v.trim(), v.trim()),
    };
    let bad = || format!("{v:?} is not an address, CIDR or \"first-last\" range");
    let a: IpAddr = a.parse().map_err(|_| bad())?;
    let b: IpAddr = b.parse().map_err(|_| bad())?;
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) if a <= b => {
            Ok(Ipv4Subnets::new(a, b, 0).map(IpNet::V4).collect())
        }
        (IpAddr::V6(a), IpAddr::V6(b)) if a <= b => {
            Ok(Ipv6Subnets::new(a, b, 0).map(IpNet::V6).collect())
        }
        _ => Err(format!(
            "{v:?}: both ends must be of one family, first <= last"
        )),
    }
}

/// `nets` without the addresses in `holes`. coturn's allowed-peer-ip overrides its
/// denied-peer-ip, while in turnpike deny wins; cutting the allowed ranges out of the deny
/// list keeps coturn's meaning.
pub fn subtract(nets: &[IpNet], holes: &[IpNet]) -> Vec<IpNet> {
    let span = |n: &IpNet| -> (u128, u128) {
        match n {
            IpNet::V4(n) => (
                u32::from(n.network()) as u128,
                u32::from(n.broadcast()) as u128,
            ),
            IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
        }
    };
    let mut out = Vec::new();
    for net in nets {
        let mut pieces = vec![span(net)];
        for hole in holes
            .iter()
            .filter(|h| h.addr().is_ipv4() == net.addr().is_ipv4())
        {
            let (hs, he) = span(hole);
            pieces = pieces
                .into_iter()
                .flat_map(|(s, e)| {
                    if he < s || hs > e {
                        return vec![(s, e)];
                    }
                    let mut keep = vec![];
                    if hs > s {
                        keep.push((s, hs - 1));
                    }
                    if he < e {
                        keep.push((he + 1, e));
                    }
                    keep
                })
                .collect();
        }
        for (s, e) in pieces {
            match net {
                IpNet::V4(_) => out.extend(
                    Ipv4Subnets::new((s as u32).into(), (e as u32).into(), 0).map(IpNet::V4),
                ),
                IpNet::V6(_) => out.extend(Ipv6Subnets::new(s.into(), e.into(), 0).map(IpNet::V6)),
            }
        }
    }
    out
}

#[derive(Default)]
struct State {
    listening_ips: Vec<IpAddr>,
    port: Option<u16>,
    tls_port: Option<u16>,
    relay_v4: Option<IpAddr>,
    relay_v6: Option<IpAddr>,
    advertised_v4: Option<IpAddr>,
    advertised_v6: Option<IpAddr>,
    min_port: Option<u16>,
    max_port: Option<u16>,
    realm: Option<String>,
    secrets: Vec<String>,
    use_auth_secret: Option<usize>,
    users: Vec<(String, String)>,
    deny: Vec<IpNet>,
    allow: Vec<IpNet>,
    cert: Option<String>,
    pkey: Option<String>,
    total_quota: Option<usize>,
    user_quota: Option<usize>,
    max_bps: Option<u64>,
    alternate: Vec<SocketAddr>,
    max_lifetime: Option<u64>,
    nonce_lifetime: Option<u64>,
    shards: Option<usize>,
    no_udp: bool,
    no_tcp: bool,
    no_tls: bool,
    no_dtls: bool,
    log_level: Option<&'static str>,
    metrics_port: Option<u16>,
    prometheus: bool,
}

/// Converts coturn config text. Never fails on odd input: each line it cannot use lands in
/// `unmapped`. Fails only if the result would not be a valid turnpike config.
pub fn convert(text: &str, source: &str) -> anyhow::Result<Import> {
    let mut st = State::default();
    let mut unmapped = Vec::new();
    let mut notes = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let Some((name, v)) = parse_line(raw) else {
            continue;
        };
        let line = i + 1;
        let mut skip = |reason: String| {
            unmapped.push(Unmapped {
                line,
                option: name.clone(),
                reason,
            })
        };
        let mut note = |reason: &str| {
            notes.push(Unmapped {
                line,
                option: name.clone(),
                reason: reason.into(),
            })
        };
        let port = |v: &str| v.parse::<u16>().ok().filter(|p| *p > 0);
        let count = |v: &str| v.parse::<usize>().ok();
        match name.as_str() {
            "listening-ip" => match v.parse::<IpAddr>() {
                Ok(ip) if !st.listening_ips.contains(&ip) => st.listening_ips.push(ip),
                Ok(_) => skip("listed twice".into()),
                Err(_) => skip(format!("{v:?} is not an IP address")),
            },
            "listening-port" | "tls-listening-port" => match port(&v) {
                Some(p) if name == "listening-port" => st.port = Some(p),
                Some(p) => st.tls_port = Some(p),
                None => skip(format!("{v:?} is not a port number")),
            },
            "relay-ip" => match v.parse::<IpAddr>() {
                Ok(ip) => {
                    let slot = if ip.is_ipv4() {
                        &mut st.relay_v4
                    } else {
                        &mut st.relay_v6
                    };
                    if slot.is_some() {
                        skip(format!(
                            "turnpike relays from one address per family; kept the first, dropped {ip}"
                        ));
                    } else {
                        *slot = Some(ip);
                    }
                }
                Err(_) => skip(format!("{v:?} is not an IP address")),
            },
            "external-ip" => {
                // "public" or "public/private": the private half is the local relay address.
                let (public, private) = match v.split_once('/') {
                    Some((a, b)) => (a.trim(), Some(b.trim())),
                    None => (v.as_str(), None),
                };
                let (Ok(public), Ok(private)) = (
                    public.parse::<IpAddr>(),
                    private.map(|p| p.parse::<IpAddr>()).transpose(),
                ) else {
                    skip(format!(
                        "{v:?} is not \"public\" or \"public/private\" addresses (host names are not resolved)"
                    ));
                    continue;
                };
                if private.is_some_and(|p| p.is_ipv4() != public.is_ipv4()) {
                    skip(format!("{v:?}: both addresses must be of one family"));
                    continue;
                }
                let (adv, relay) = if public.is_ipv4() {
                    (&mut st.advertised_v4, &mut st.relay_v4)
                } else {
                    (&mut st.advertised_v6, &mut st.relay_v6)
                };
                if adv.is_some() {
                    skip(format!(
                        "one advertised address per family; kept the first, dropped {public}"
                    ));
                    continue;
                }
                *adv = Some(public);
                if let Some(p) = private {
                    match relay {
                        Some(r) if *r != p => skip(format!(
                            "private address {p} differs from relay-ip {r}; kept relay-ip"
                        )),
                        _ => *relay = Some(p),
                    }
                }
            }
            "min-port" | "max-port" => match port(&v) {
                Some(p) if name == "min-port" => st.min_port = Some(p),
                Some(p) => st.max_port = Some(p),
                None => skip(format!("{v:?} is not a port number")),
            },
            "realm" => {
                if v.is_empty() || v.len() > 763 {
                    skip("a realm must be 1 to 763 bytes".into());
                } else if st.realm.is_some() {
                    skip("one realm per server; kept the first".into());
                } else {
                    st.realm = Some(v);
                }
            }
            "static-auth-secret" => {
                if v.len() < 8 {
                    skip(
                        "turnpike needs a secret of at least 8 bytes; generate a longer one".into(),
                    );
                } else if !st.secrets.contains(&v) {
                    st.secrets.push(v);
                }
            }
            "use-auth-secret" | "rest-api" => st.use_auth_secret = Some(line),
            "rest-api-separator" if v != ":" => {
                skip("turnpike's REST user names use \":\" only".into())
            }
            "rest-api-separator" => {}
            "user" => match v.split_once(':') {
                Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                    if p.starts_with("0x") || p.starts_with("0X") {
                        skip(format!(
                            "user {u:?} has a hashed key (0x...); turnpike needs the plain password"
                        ));
                    } else {
                        st.users.push((u.to_owned(), p.to_owned()));
                    }
                }
                _ => skip("expected user=name:password".into()),
            },
            "denied-peer-ip" | "allowed-peer-ip" => match peer_range_to_cidrs(&v) {
                Ok(nets) if name == "denied-peer-ip" => st.deny.extend(nets),
                Ok(nets) => st.allow.extend(nets),
                Err(e) => skip(e),
            },
            "allow-loopback-peers" => {
                st.allow
                    .extend(["127.0.0.0/8", "::1/128"].map(|n| n.parse::<IpNet>().unwrap()));
            }
            "cert" => st.cert = Some(v),
            "pkey" => st.pkey = Some(v),
            "total-quota" | "user-quota" => match count(&v) {
                Some(0) => {
                    skip("0 (no limit) has no equivalent; turnpike's default limit stays".into())
                }
                Some(n) if name == "total-quota" => st.total_quota = Some(n),
                Some(n) => st.user_quota = Some(n),
                None => skip(format!("{v:?} is not a number")),
            },
            "max-allocate-lifetime" => match v.parse::<u64>() {
                Ok(s) if s > 0 => st.max_lifetime = Some(s),
                _ => skip(format!("{v:?} is not a number of seconds above 0")),
            },
            "stale-nonce" => match v.parse::<u64>() {
                _ if v.is_empty() => st.nonce_lifetime = Some(600),
                Ok(s) if s >= 30 => st.nonce_lifetime = Some(s),
                _ => skip("turnpike needs a nonce lifetime of at least 30 seconds".into()),
            },
            "relay-threads" => match count(&v) {
                Some(n) if n > 0 => st.shards = Some(n),
                Some(_) => {} // coturn's 0 = one thread per CPU, turnpike's default.
                None => skip(format!("{v:?} is not a number")),
            },
            "no-udp" if is_true(&v) => st.no_udp = true,
            "no-tcp" if is_true(&v) => st.no_tcp = true,
            "no-tls" if is_true(&v) => st.no_tls = true,
            "no-dtls" if is_true(&v) => st.no_dtls = true,
            "no-udp" | "no-tcp" | "no-tls" | "no-dtls" => {}
            "Verbose" => st.log_level = Some("debug"),
            "prometheus" => st.prometheus = true,
            "prometheus-port" => match port(&v) {
                Some(p) => st.metrics_port = Some(p),
                None => skip(format!("{v:?} is not a port number")),
            },
            // 0 = no limit, which is what turnpike does.
            "max-bps" | "bps-capacity" if v == "0" => {}
            // coturn: bytes per second, each direction on its own; turnpike: bits per
            // second, both directions together. Twice the bytes, times 8, lets the same
            // symmetric traffic through.
            "max-bps" => match v.parse::<u64>() {
                Ok(b) => {
                    st.max_bps = Some(b.saturating_mul(16));
                    note("bytes/s per direction became bits/s of both directions together (x16)");
                }
                Err(_) => skip(format!("{v:?} is not a number of bytes per second")),
            },
            "alternate-server" => match parse_alternate(&v) {
                Some(a) => {
                    if st.alternate.is_empty() {
                        note(
                            "coturn redirects every Allocate to its alternates; turnpike \
                             (server.alternate) redirects new clients only while draining or full",
                        );
                    }
                    if !st.alternate.contains(&a) {
                        st.alternate.push(a);
                    }
                }
                None => skip(format!(
                    "{v:?} is not an address with an optional port (host names are not resolved)"
                )),
            },
            "general-threads" | "cpus" => {
                skip("turnpike runs one shard per core; see server.shards".into())
            }
            n => {
                if NO_OP.iter().any(|(o, _)| *o == n) {
                    continue;
                }
                match UNSUPPORTED.iter().find(|(o, _)| *o == n) {
                    Some((_, why)) => skip((*why).into()),
                    None => skip("unknown coturn option".into()),
                }
            }
        }
    }
    let toml = render(&st, &mut unmapped, source);
    let config = Config::from_toml(&toml)
        .map_err(|e| anyhow::anyhow!("the converted configuration is not valid: {e:#}"))?;
    Ok(Import {
        toml,
        config,
        unmapped,
        notes,
    })
}

/// coturn's alternate-server value: "ip", "ip:port" or "[ipv6]:port"; 3478 when no port.
fn parse_alternate(v: &str) -> Option<SocketAddr> {
    if let Ok(a) = v.parse::<SocketAddr>() {
        return Some(a).filter(|a| a.port() != 0 && !a.ip().is_unspecified());
    }
    let ip = v.trim_start_matches('[').trim_end_matches(']');
    let ip: IpAddr = ip.parse().ok().filter(|ip: &IpAddr| !ip.is_unspecified())?;
    Some(SocketAddr::new(ip, 3478))
}

fn strings<T: ToString>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|i| Value::String(i.to_string()))
            .collect(),
    )
}

/// Writes the turnpike config; notes defaults coturn applies that turnpike does not.
fn render(st: &State, unmapped: &mut Vec<Unmapped>, source: &str) -> String {
    let note = |unmapped: &mut Vec<Unmapped>, option: &str, reason: &str| {
        unmapped.push(Unmapped {
            line: 0,
            option: option.into(),
            reason: reason.into(),
        })
    };
    // coturn listens on every address by default; 0.0.0.0 only, because a [::] socket
    // beside it may clash on hosts where IPv6 sockets accept IPv4 too.
    let ips: Vec<IpAddr> = if st.listening_ips.is_empty() {
        vec!["0.0.0.0".parse().unwrap()]
    } else {
        st.listening_ips.clone()
    };
    let at = |port: u16| -> Vec<SocketAddr> {
        ips.iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect()
    };
    let port = st.port.unwrap_or(3478);
    let mut server = Table::new();
    if let Some(r) = &st.realm {
        server.insert("realm".into(), Value::String(r.clone()));
    }
    let udp = if st.no_udp { vec![] } else { at(port) };
    let tcp = if st.no_tcp { vec![] } else { at(port) };
    let tls_files = st.cert.is_some() && st.pkey.is_some();
    let tls = if st.no_tls || !tls_files {
        vec![]
    } else {
        at(st.tls_port.unwrap_or(5349))
    };
    if !st.no_tls && !tls_files && (st.tls_port.is_some() || st.cert.is_some()) {
        note(
            unmapped,
            "tls-listening-port",
            "no TLS listener written: turnpike needs both cert and pkey",
        );
    }
    if !tls.is_empty() && !st.no_dtls && !st.no_udp {
        note(
            unmapped,
            "DTLS",
            "coturn also serves DTLS on the TLS port; turnpike has no DTLS listener",
        );
    }
    server.insert("listen_udp".into(), strings(&udp));
    server.insert("listen_tcp".into(), strings(&tcp));
    server.insert("listen_tls".into(), strings(&tls));
    if let Some(n) = st.shards {
        server.insert("shards".into(), Value::Integer(n as i64));
    }
    if !st.alternate.is_empty() {
        server.insert("alternate".into(), strings(&st.alternate));
    }

    let mut tls_t = Table::new();
    if tls_files && !st.no_tls {
        tls_t.insert("cert".into(), Value::String(st.cert.clone().unwrap()));
        tls_t.insert("key".into(), Value::String(st.pkey.clone().unwrap()));
    } else if tls_files {
        note(
            unmapped,
            "cert",
            "no-tls is set: the certificate and key are not used",
        );
    }

    let mut relay = Table::new();
    for (key, ip) in [
        ("ipv4", st.relay_v4),
        ("ipv6", st.relay_v6),
        ("advertised_ipv4", st.advertised_v4),
        ("advertised_ipv6", st.advertised_v6),
    ] {
        if let Some(ip) = ip {
            relay.insert(key.into(), Value::String(ip.to_string()));
        }
    }
    if st.relay_v6.is_none() && st.advertised_v6.is_some() {
        note(
            unmapped,
            "external-ip",
            "an IPv6 advertised address needs an IPv6 relay-ip: set relay.ipv6",
        );
    }
    if st.min_port.is_some() || st.max_port.is_some() {
        let (lo, hi) = (st.min_port.unwrap_or(49152), st.max_port.unwrap_or(65535));
        if lo <= hi {
            relay.insert("ports".into(), Value::String(format!("{lo}-{hi}")));
        } else {
            note(
                unmapped,
                "min-port",
                "min-port is above max-port; turnpike's default range stays",
            );
        }
    }
    if let Some(s) = st.max_lifetime {
        // Keep the default lifetime inside the new maximum.
        relay.insert("max_lifetime".into(), Value::String(format!("{s}s")));
        relay.insert(
            "default_lifetime".into(),
            Value::String(format!("{}s", s.min(600))),
        );
    }
    if let Some(n) = st.total_quota {
        relay.insert("max_allocations".into(), Value::Integer(n as i64));
    }
    if let Some(n) = st.user_quota {
        relay.insert("max_allocations_per_user".into(), Value::Integer(n as i64));
    }
    if let Some(b) = st.max_bps {
        relay.insert(
            "max_bps_per_allocation".into(),
            Value::Integer(b.min(i64::MAX as u64) as i64),
        );
    }

    let mut auth = Table::new();
    if st.use_auth_secret.is_some() && st.secrets.is_empty() {
        note(
            unmapped,
            "use-auth-secret",
            "no static-auth-secret: coturn reads REST secrets from its database; put them in auth.secrets",
        );
    }
    auth.insert("secrets".into(), strings(&st.secrets));
    if let Some(s) = st.nonce_lifetime {
        auth.insert("nonce_lifetime".into(), Value::String(format!("{s}s")));
    }
    if !st.users.is_empty() {
        let users = st
            .users
            .iter()
            .map(|(u, p)| {
                let mut t = Table::new();
                t.insert("username".into(), Value::String(u.clone()));
                t.insert("password".into(), Value::String(p.clone()));
                Value::Table(t)
            })
            .collect();
        auth.insert("users".into(), Value::Array(users));
    }

    let mut peers = Table::new();
    peers.insert("allow".into(), strings(&st.allow));
    peers.insert("deny".into(), strings(subtract(&st.deny, &st.allow)));

    let mut http = Table::new();
    if let Some(p) = st.metrics_port {
        // coturn's exporter listens on every address; keep turnpike's loopback default.
        http.insert(
            "listen".into(),
            Value::String(SocketAddr::from(([127, 0, 0, 1], p)).to_string()),
        );
    }
    let _ = st.prometheus; // /metrics is always served by turnpike's HTTP endpoint.

    let mut log = Table::new();
    if let Some(l) = st.log_level {
        log.insert("level".into(), Value::String(l.into()));
    }

    let mut out = format!(
        "# turnpike configuration converted by `turnpike import-coturn` from {source}.\n\
         # Review it: options that could not be converted were listed on stderr.\n\
         # Unlike coturn, turnpike refuses to relay to private, loopback and link-local\n\
         # peers unless [peers] allow lists them.\n"
    );
    for (name, t) in [
        ("server", server),
        ("tls", tls_t),
        ("relay", relay),
        ("auth", auth),
        ("peers", peers),
        ("http", http),
        ("log", log),
    ] {
        if t.is_empty() {
            continue;
        }
        let mut doc = Table::new();
        doc.insert(name.into(), Value::Table(t));
        out.push('\n');
        out.push_str(&toml::to_string(&doc).expect("a TOML table always serializes"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coturn_ranges_become_exact_cidrs() {
        let cidrs = |v: &str| -> Vec<String> {
            peer_range_to_cidrs(v)
                .unwrap()
                .iter()
                .map(|n| n.to_string())
                .collect()
        };
        assert_eq!(cidrs("10.0.0.0-10.255.255.255"), ["10.0.0.0/8"]);
        assert_eq!(cidrs("192.0.2.7"), ["192.0.2.7/32"]);
        assert_eq!(
            cidrs("172.16.0.0-172.31.255.255 "),
            ["172.16.0.0/12"],
            "trailing space"
        );
        assert_eq!(
            cidrs("192.168.1.3-192.168.1.9"),
            ["192.168.1.3/32", "192.168.1.4/30", "192.168.1.8/31"]
        );
        assert_eq!(
            cidrs("fc00::-fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ["fc00::/7"]
        );
        assert_eq!(cidrs("100.64.0.0/10"), ["100.64.0.0/10"]);
        for bad in [
            "10.0.0.9-10.0.0.1",
            "10.0.0.1-::1",
            "example.com",
            "1.2.3.4-",
        ] {
            assert!(peer_range_to_cidrs(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allowed_ranges_are_cut_out_of_denied_ones() {
        let nets = |v: &[&str]| -> Vec<IpNet> { v.iter().map(|n| n.parse().unwrap()).collect() };
        let got = subtract(
            &nets(&["10.0.0.0/8", "192.168.0.0/16", "fc00::/7"]),
            &nets(&["10.0.0.20/32", "10.0.1.0/26", "fd00::/8"]),
        );
        let got: Vec<String> = got.iter().map(|n| n.to_string()).collect();
        assert_eq!(
            got,
            [
                "10.0.0.0/28",
                "10.0.0.16/30",
                "10.0.0.21/32",
                "10.0.0.22/31",
                "10.0.0.24/29",
                "10.0.0.32/27",
                "10.0.0.64/26",
                "10.0.0.128/25",
                "10.0.1.64/26",
                "10.0.1.128/25",
                "10.0.2.0/23",
                "10.0.4.0/22",
                "10.0.8.0/21",
                "10.0.16.0/20",
                "10.0.32.0/19",
                "10.0.64.0/18",
                "10.0.128.0/17",
                "10.1.0.0/16",
                "10.2.0.0/15",
                "10.4.0.0/14",
                "10.8.0.0/13",
                "10.16.0.0/12",
                "10.32.0.0/11",
                "10.64.0.0/10",
                "10.128.0.0/9",
                "192.168.0.0/16",
                "fc00::/8",
            ]
        );
        // A hole covering the whole net removes it.
        assert!(subtract(&nets(&["10.0.0.0/24"]), &nets(&["10.0.0.0/8"])).is_empty());
    }

    #[test]
    fn alternate_server_forms() {
        let p = |v: &str| parse_alternate(v).map(|a| a.to_string());
        assert_eq!(p("203.0.113.8:3479").as_deref(), Some("203.0.113.8:3479"));
        assert_eq!(p("203.0.113.8").as_deref(), Some("203.0.113.8:3478"));
        assert_eq!(
            p("[2001:db8::8]:5000").as_deref(),
            Some("[2001:db8::8]:5000")
        );
        assert_eq!(p("2001:db8::8").as_deref(), Some("[2001:db8::8]:3478"));
        for bad in ["turn.example.com:3478", "0.0.0.0:3478", "1.2.3.4:0", ""] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }

    #[test]
    fn line_forms_and_flags() {
        assert_eq!(
            parse_line("  realm=\"example.org\" "),
            Some(("realm".into(), "example.org".into()))
        );
        assert_eq!(
            parse_line("--listening-port 3479"),
            Some(("listening-port".into(), "3479".into()))
        );
        assert_eq!(
            parse_line("fingerprint"),
            Some(("fingerprint".into(), "".into()))
        );
        assert_eq!(parse_line("# user=a:b"), None);
        assert_eq!(parse_line(""), None);
    }

    #[test]
    fn empty_input_is_coturns_defaults_and_valid() {
        let imp = convert("", "test").unwrap();
        let s = &imp.config.server;
        assert_eq!(s.listen_udp, ["0.0.0.0:3478".parse().unwrap()]);
        assert_eq!(s.listen_tcp, ["0.0.0.0:3478".parse().unwrap()]);
        assert!(s.listen_tls.is_empty());
        assert!(imp.unmapped.is_empty(), "{:?}", imp.unmapped);
    }

    #[test]
    fn bad_values_are_listed_not_fatal_and_never_echo_secrets() {
        let imp = convert(
            "listening-port=abc\nstatic-auth-secret=short\nuser=bob:0xdeadbeefcafe\n\
             denied-peer-ip=10.0.0.9-10.0.0.1\nmin-port=60000\nmax-port=50000\nbogus-option=1\n",
            "t",
        )
        .unwrap();
        let listed: Vec<String> = imp.unmapped.iter().map(|u| u.to_string()).collect();
        let all = listed.join("\n");
        for needle in [
            "line 1 `listening-port`",
            "line 2 `static-auth-secret`",
            "line 3 `user`: user \"bob\" has a hashed key",
            "line 4 `denied-peer-ip`",
            "`min-port`: min-port is above max-port",
            "line 7 `bogus-option`: unknown coturn option",
        ] {
            assert!(all.contains(needle), "{needle} missing from:\n{all}");
        }
        assert!(!all.contains("short") && !all.contains("deadbeef"), "{all}");
        assert_eq!(imp.config.relay.ports, (49152, 65535));
        assert!(imp.config.auth.secrets.is_empty());
    }
}
