//! Writing the turnpike config, one TOML table per section, and noting the defaults
//! coturn applies that turnpike does not.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use toml::{Table, Value};

use super::options::State;
use super::ranges::subtract;
use super::unmapped::Unmapped;

/// Writes the turnpike config; notes defaults coturn applies that turnpike does not.
pub(super) fn render(st: &State, unmapped: &mut Vec<Unmapped>, source: &str) -> String {
    // In file order, which is also the order of the notes each section adds.
    let sections = [
        ("server", server(st, unmapped)),
        ("tls", tls(st, unmapped)),
        ("relay", relay(st, unmapped)),
        ("auth", auth(st, unmapped)),
        ("peers", peers(st)),
        ("http", http(st)),
        ("log", log(st)),
    ];
    let mut out = format!(
        "# turnpike configuration converted by `turnpike import-coturn` from {source}.\n\
         # Review it: options that could not be converted were listed on stderr.\n\
         # Unlike coturn, turnpike refuses to relay to private, loopback and link-local\n\
         # peers unless [peers] allow lists them.\n"
    );
    for (name, t) in sections {
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

/// A default coturn applies (no line in its file) that the converted config does not.
fn note(unmapped: &mut Vec<Unmapped>, option: &str, reason: &str) {
    unmapped.push(Unmapped {
        line: 0,
        option: option.into(),
        reason: reason.into(),
    })
}

fn strings<T: ToString>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Array(
        items
            .into_iter()
            .map(|i| Value::String(i.to_string()))
            .collect(),
    )
}

/// `port` on every listening address, sorted and once each.
fn listen_at(st: &State, port: u16) -> Vec<SocketAddr> {
    // coturn listens on every address by default; 0.0.0.0 only, because a [::] socket
    // beside it may clash on hosts where IPv6 sockets accept IPv4 too.
    let ips: Vec<IpAddr> = if st.listening_ips.is_empty() {
        vec!["0.0.0.0".parse().unwrap()]
    } else {
        st.listening_ips.clone()
    };
    ips.iter()
        .map(|ip| SocketAddr::new(*ip, port))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

fn has_tls_files(st: &State) -> bool {
    st.cert.is_some() && st.pkey.is_some()
}

/// TLS listeners need both files; coturn's DTLS beside them has no equivalent.
fn tls_listeners(st: &State, unmapped: &mut Vec<Unmapped>) -> Vec<SocketAddr> {
    let tls_files = has_tls_files(st);
    let tls = if st.no_tls || !tls_files {
        vec![]
    } else {
        listen_at(st, st.tls_port.unwrap_or(5349))
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
    tls
}

fn server(st: &State, unmapped: &mut Vec<Unmapped>) -> Table {
    let port = st.port.unwrap_or(3478);
    let mut server = Table::new();
    if let Some(r) = &st.realm {
        server.insert("realm".into(), Value::String(r.clone()));
    }
    let udp = if st.no_udp {
        vec![]
    } else {
        listen_at(st, port)
    };
    let tcp = if st.no_tcp {
        vec![]
    } else {
        listen_at(st, port)
    };
    let tls = tls_listeners(st, unmapped);
    server.insert("listen_udp".into(), strings(&udp));
    server.insert("listen_tcp".into(), strings(&tcp));
    server.insert("listen_tls".into(), strings(&tls));
    if let Some(n) = st.shards {
        server.insert("shards".into(), Value::Integer(n as i64));
    }
    if !st.alternate.is_empty() {
        server.insert("alternate".into(), strings(&st.alternate));
    }
    server
}

fn tls(st: &State, unmapped: &mut Vec<Unmapped>) -> Table {
    let mut tls = Table::new();
    if has_tls_files(st) && !st.no_tls {
        tls.insert("cert".into(), Value::String(st.cert.clone().unwrap()));
        tls.insert("key".into(), Value::String(st.pkey.clone().unwrap()));
    } else if has_tls_files(st) {
        note(
            unmapped,
            "cert",
            "no-tls is set: the certificate and key are not used",
        );
    }
    tls
}

fn relay(st: &State, unmapped: &mut Vec<Unmapped>) -> Table {
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
    relay_ports(st, &mut relay, unmapped);
    relay_limits(st, &mut relay);
    relay
}

fn relay_ports(st: &State, relay: &mut Table, unmapped: &mut Vec<Unmapped>) {
    if st.min_port.is_none() && st.max_port.is_none() {
        return;
    }
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

fn relay_limits(st: &State, relay: &mut Table) {
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
}

fn auth(st: &State, unmapped: &mut Vec<Unmapped>) -> Table {
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
    auth
}

fn peers(st: &State) -> Table {
    let mut peers = Table::new();
    peers.insert("allow".into(), strings(&st.allow));
    peers.insert("deny".into(), strings(subtract(&st.deny, &st.allow)));
    peers
}

fn http(st: &State) -> Table {
    let mut http = Table::new();
    if let Some(p) = st.metrics_port {
        // coturn's exporter listens on every address; keep turnpike's loopback default.
        http.insert(
            "listen".into(),
            Value::String(SocketAddr::from(([127, 0, 0, 1], p)).to_string()),
        );
    }
    let _ = st.prometheus; // /metrics is always served by turnpike's HTTP endpoint.
    http
}

fn log(st: &State) -> Table {
    let mut log = Table::new();
    if let Some(l) = st.log_level {
        log.insert("level".into(), Value::String(l.into()));
    }
    log
}
