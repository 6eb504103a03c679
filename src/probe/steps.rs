//! The probe's steps for one URI, in order: DNS, TCP connect, TLS, Binding, Allocate
//! (with the clock-skew diagnosis of a refused credential), the relayed round trip
//! through two allocations of its own, and Refresh.

use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};

use serde_json::json;
use stun::message::*;
use stun::xoraddr::XorMappedAddress;
use turn::proto::channum::ChannelNumber;
use turn::proto::lifetime::Lifetime;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turn::proto::reqtrans::RequestedTransport;

use super::client::{Client, Conn, Frame, ReqError, error_of, is_success};
use super::report::{Report, Step, Verdict};
use super::tls;
use super::uri::{Transport, TurnUri};
use super::{Credentials, Options};
use crate::auth::{mint_credential, rest_expiry};
use crate::relay::peer_policy::PeerPolicy;

fn ms(t: Instant) -> u64 {
    t.elapsed().as_millis() as u64
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
        ms: ms(t),
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

/// An address reachable from the whole internet (not private, loopback, CGNAT, ...).
fn is_public(ip: IpAddr) -> bool {
    PeerPolicy::default().permits(ip)
}

fn human_secs(s: u64) -> String {
    if s >= 86400 {
        format!("{}d {}h", s / 86400, s % 86400 / 3600)
    } else if s >= 3600 {
        match s % 3600 / 60 {
            0 => format!("{}h", s / 3600),
            m => format!("{}h {m}m", s / 3600),
        }
    } else if s >= 60 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Per URI: everything learned so far that later steps need.
struct Ctx<'a> {
    uri: &'a TurnUri,
    opts: &'a Options,
    roots: &'a rustls::RootCertStore,
    server: SocketAddr,
}

impl Ctx<'_> {
    /// Opens a connection to the server (TCP connect and TLS handshake for streams).
    fn connect(&self) -> Result<Client, String> {
        let conn = match self.uri.transport {
            Transport::Udp => {
                let local: SocketAddr = if self.server.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let sock = UdpSocket::bind(local).map_err(|e| e.to_string())?;
                Conn::Udp {
                    sock,
                    server: self.server,
                }
            }
            Transport::Tcp => {
                let tcp = TcpStream::connect_timeout(&self.server, self.opts.timeout)
                    .map_err(|e| e.to_string())?;
                let _ = tcp.set_nodelay(true);
                Conn::Tcp(tcp)
            }
            Transport::Tls => {
                let mut tcp = TcpStream::connect_timeout(&self.server, self.opts.timeout)
                    .map_err(|e| e.to_string())?;
                let _ = tcp.set_read_timeout(Some(self.opts.timeout));
                let _ = tcp.set_nodelay(true);
                let (conn, _) = tls::handshake(&mut tcp, &self.uri.host, self.roots);
                Conn::Tls(Box::new(rustls::StreamOwned::new(conn?, tcp)))
            }
        };
        Ok(Client::new(conn, self.opts.timeout))
    }
}

fn relayed(m: &Message) -> Option<SocketAddr> {
    let mut r = RelayedAddress::default();
    r.get_from(m).ok()?;
    Some(SocketAddr::new(r.ip, r.port))
}

fn mapped(m: &Message) -> Option<SocketAddr> {
    let mut x = XorMappedAddress::default();
    x.get_from(m).ok()?;
    Some(SocketAddr::new(x.ip, x.port))
}

fn lifetime(m: &Message) -> Option<u64> {
    let mut l = Lifetime::default();
    l.get_from(m).ok()?;
    Some(l.0.as_secs())
}

fn requested_transport() -> Vec<Box<dyn Setter>> {
    vec![Box::new(RequestedTransport {
        protocol: turn::proto::PROTO_UDP,
    })]
}

/// The first unauthenticated Allocate, answered with 401 + REALM + NONCE.
fn fetch_nonce(c: &mut Client) -> Result<(), String> {
    let r = c
        .transact(&c.build(METHOD_ALLOCATE, &requested_transport(), false))
        .map_err(|e| e.to_string())?;
    match error_of(&r) {
        Some((401, _)) => {
            c.learn_nonce(&r);
            Ok(())
        }
        Some((code, reason)) => Err(format!("unexpected error {code} {reason}")),
        None => Err("the server allocated without asking for a credential".into()),
    }
}

fn set_credential(c: &mut Client, creds: &(String, String)) {
    c.username = creds.0.clone();
    c.password = creds.1.clone();
}

/// Whether the server accepts `creds`, asked on a fresh connection with an Allocate that
/// is deleted at once: the only question every server answers after authenticating.
fn accepted(ctx: &Ctx, creds: &(String, String)) -> Option<bool> {
    let mut c = ctx.connect().ok()?;
    fetch_nonce(&mut c).ok()?;
    set_credential(&mut c, creds);
    let r = c.signed(METHOD_ALLOCATE, &requested_transport()).ok()?;
    if is_success(&r) {
        let _ = c.signed(METHOD_REFRESH, &[Box::new(Lifetime(Duration::ZERO))]);
        return Some(true);
    }
    error_of(&r).map(|(code, _)| code != 401)
}

pub fn probe(uri: &TurnUri, opts: &Options, roots: &rustls::RootCertStore) -> Report {
    let mut rep = Report::new(&uri.text, uri.transport.label());
    let later = [
        "Binding",
        "Allocate",
        "Clock skew",
        "Relayed round trip",
        "Refresh",
    ];
    let skip_rest = |rep: &mut Report, from: usize, why: &str| {
        for name in &later[from..] {
            rep.skip(name, why);
        }
    };

    // DNS.
    let t = Instant::now();
    let addrs: Vec<SocketAddr> = match (uri.host.as_str(), uri.port).to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => {
            rep.push(step(
                "DNS",
                t,
                Verdict::Fail,
                format!("{} does not resolve: {e}", uri.host),
                Some("dns_failed"),
                json!(null),
            ));
            skip_rest(&mut rep, 0, "no address");
            return rep;
        }
    };
    let Some(server) = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
    else {
        rep.push(step(
            "DNS",
            t,
            Verdict::Fail,
            format!("{} has no address", uri.host),
            Some("dns_failed"),
            json!(null),
        ));
        skip_rest(&mut rep, 0, "no address");
        return rep;
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
    let ctx = Ctx {
        uri,
        opts,
        roots,
        server,
    };

    // TCP connect and TLS, for stream transports.
    let conn = match uri.transport {
        Transport::Udp => match ctx.connect() {
            Ok(c) => c,
            Err(e) => {
                rep.push(step(
                    "Binding",
                    t,
                    Verdict::Fail,
                    format!("cannot open a UDP socket: {e}"),
                    Some("local_error"),
                    json!(null),
                ));
                skip_rest(&mut rep, 1, "no socket");
                return rep;
            }
        },
        Transport::Tcp | Transport::Tls => {
            let t = Instant::now();
            let mut tcp = match TcpStream::connect_timeout(&server, opts.timeout) {
                Ok(s) => s,
                Err(e) => {
                    let (problem, detail) = if e.kind() == std::io::ErrorKind::ConnectionRefused {
                        (
                            "tcp_refused",
                            format!(
                                "connection refused on {}/tcp at {}: nothing listens there (TCP/TLS listener not configured or down) or a firewall rejects it",
                                server.port(),
                                server.ip()
                            ),
                        )
                    } else {
                        (
                            "tcp_blocked",
                            format!(
                                "no TCP connection to {server} ({e}): a firewall drops {}/tcp?",
                                server.port()
                            ),
                        )
                    };
                    rep.push(step(
                        "TCP connect",
                        t,
                        Verdict::Fail,
                        detail,
                        Some(problem),
                        json!(null),
                    ));
                    if uri.transport == Transport::Tls {
                        rep.skip("TLS", "no connection");
                    }
                    skip_rest(&mut rep, 0, "no connection");
                    return rep;
                }
            };
            rep.push(step(
                "TCP connect",
                t,
                Verdict::Pass,
                format!("connected to {server}"),
                None,
                json!(null),
            ));
            let _ = tcp.set_read_timeout(Some(opts.timeout));
            // Small messages one at a time: Nagle would add delay to every timing.
            let _ = tcp.set_nodelay(true);
            if uri.transport == Transport::Tcp {
                Client::new(Conn::Tcp(tcp), opts.timeout)
            } else {
                let t = Instant::now();
                let (result, facts) = tls::handshake(&mut tcp, &uri.host, roots);
                let info = facts
                    .leaf
                    .as_deref()
                    .and_then(|d| tls::leaf_info(d, unix_now() as i64));
                let data = info.as_ref().map_or(json!(null), |i| {
                    json!({"names": i.names, "days_left": i.days_left,
                           "intermediates": facts.intermediates})
                });
                match result {
                    Ok(conn) => {
                        let days = info.as_ref().map_or(0, |i| i.days_left);
                        let names = info.as_ref().map_or(String::new(), |i| i.names.join(", "));
                        let (verdict, problem, note) = if days < 14 {
                            (Verdict::Warn, Some("tls_expires_soon"), " - renew it now")
                        } else {
                            (Verdict::Pass, None, "")
                        };
                        rep.push(step(
                            "TLS",
                            t,
                            verdict,
                            format!(
                                "chain trusted, valid for {} ({names}), expires in {days} days{note}",
                                uri.host
                            ),
                            problem,
                            data,
                        ));
                        Client::new(
                            Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
                            opts.timeout,
                        )
                    }
                    Err(e) => {
                        let (problem, detail) = match &facts.error {
                            Some(err) => tls::explain(err, &uri.host, info.as_ref()),
                            None => ("tls_handshake_failed", format!("TLS handshake failed: {e}")),
                        };
                        rep.push(step("TLS", t, Verdict::Fail, detail, Some(problem), data));
                        skip_rest(&mut rep, 0, "no TLS session");
                        return rep;
                    }
                }
            }
        }
    };
    run_turn(&ctx, conn, &addrs, &mut rep);
    rep
}

/// Binding onwards, on an open connection.
fn run_turn(ctx: &Ctx, mut a: Client, addrs: &[SocketAddr], rep: &mut Report) {
    let uri = ctx.uri;
    let opts = ctx.opts;
    let server = ctx.server;
    // Binding.
    let t = Instant::now();
    let r = a.transact(&a.build(METHOD_BINDING, &[], false));
    let client_mapped = match r.as_ref().ok().and_then(mapped) {
        Some(m) => {
            rep.push(step(
                "Binding",
                t,
                Verdict::Pass,
                format!("the server sees this machine as {m}"),
                None,
                json!({"mapped": m.to_string()}),
            ));
            m
        }
        None => {
            let detail = match (&r, uri.transport) {
                (Err(ReqError::Timeout), Transport::Udp) => format!(
                    "no answer from {server} on {}/udp within {:?}: nothing listens there or a firewall drops UDP",
                    server.port(),
                    opts.timeout
                ),
                (Err(e), _) => format!("no Binding response: {e}"),
                (Ok(m), _) => format!("Binding failed: {:?}", error_of(m)),
            };
            rep.push(step(
                "Binding",
                t,
                Verdict::Fail,
                detail,
                Some("no_response"),
                json!(null),
            ));
            for name in ["Allocate", "Clock skew", "Relayed round trip", "Refresh"] {
                rep.skip(name, "the server does not answer");
            }
            return;
        }
    };

    // Allocate, with the credential diagnosis.
    let t = Instant::now();
    if let Err(e) = fetch_nonce(&mut a) {
        rep.push(step(
            "Allocate",
            t,
            Verdict::Fail,
            format!("first Allocate: {e}"),
            Some("allocate_failed"),
            json!(null),
        ));
        for name in ["Clock skew", "Relayed round trip", "Refresh"] {
            rep.skip(name, "no allocation");
        }
        return;
    }
    let now = unix_now();
    let first = match &opts.credentials {
        Credentials::Secret(s) => mint_credential(s, &opts.user, opts.ttl.as_secs(), now),
        Credentials::Fixed { username, password } => (username.clone(), password.clone()),
    };
    set_credential(&mut a, &first);
    let mut alloc = a.signed(METHOD_ALLOCATE, &requested_transport());
    let refused = |r: &Result<Message, ReqError>| {
        r.as_ref()
            .ok()
            .and_then(error_of)
            .is_some_and(|(c, _)| c == 401)
    };
    // (verdict, detail, problem) of the clock-skew step, and the credential to go on with.
    let left = rest_expiry(&first.0).map_or(0, |e| e.saturating_sub(now));
    let mut skew: (Verdict, String, Option<&'static str>) = (
        Verdict::Pass,
        match &opts.credentials {
            Credentials::Secret(_) => format!(
                "a credential valid for {} from this machine's clock was accepted: the server's clock is less than that ahead",
                human_secs(opts.ttl.as_secs())
            ),
            Credentials::Fixed { .. } if left > 0 => format!(
                "the credential, valid for {} more by this machine's clock, was accepted: the server's clock is less than that ahead",
                human_secs(left)
            ),
            Credentials::Fixed { .. } => "the credential was accepted".to_owned(),
        },
        None,
    );
    let mut creds = first.clone();
    if refused(&alloc) {
        let t_auth = Instant::now();
        match &opts.credentials {
            Credentials::Secret(secret) => {
                // A fresh credential was refused: either the secret differs or the
                // server's clock is so far ahead that it has already expired there.
                // Longer-lived credentials tell them apart. Servers may also refuse a
                // credential that lives too long (turnpike: auth.max_credential_ttl, 30
                // days by default), so the lifetimes double from the fresh one: the first
                // accepted is at most twice the skew, within any such cap for skews up to
                // a month; a few long steps cover bigger ones on uncapped servers. Then
                // halving finds the skew to the minute.
                let mint = |ttl: u64| mint_credential(secret, &opts.user, ttl, now);
                let mut ladder = Vec::new();
                let mut ttl = opts.ttl.as_secs().max(60) * 2;
                while ttl < 29 * 86400 {
                    ladder.push(ttl);
                    ttl *= 2;
                }
                ladder.extend([29, 90, 365, 3 * 365, 10 * 365].map(|d| d * 86400));
                let mut lo = opts.ttl.as_secs();
                let mut first_accepted = None;
                for ttl in ladder {
                    match accepted(ctx, &mint(ttl)) {
                        Some(true) => {
                            first_accepted = Some(ttl);
                            break;
                        }
                        Some(false) => lo = ttl,
                        None => break,
                    }
                }
                if let Some(mut hi) = first_accepted {
                    for _ in 0..30 {
                        if hi - lo <= 60 {
                            break;
                        }
                        let mid = lo + (hi - lo) / 2;
                        match accepted(ctx, &mint(mid)) {
                            Some(true) => hi = mid,
                            Some(false) => lo = mid,
                            None => break,
                        }
                    }
                    skew = (
                        Verdict::Fail,
                        format!(
                            "the server's clock is about {} ahead of this machine's: a credential valid for {} is already expired there, one valid for {} works. Fix the time (NTP) on the server or the credential issuer",
                            // The skew lies in (lo, hi]: the middle, to the minute.
                            human_secs(((lo + hi) / 2 + 30) / 60 * 60),
                            human_secs(opts.ttl.as_secs()),
                            human_secs(hi)
                        ),
                        Some("clock_skew"),
                    );
                    // Go on with a credential the server takes, to check the rest.
                    // Ten minutes past the skew when it was found to the minute (a
                    // lifetime cap leaves room for that), else the one known to work.
                    creds = mint(if hi - lo <= 60 { hi + 600 } else { hi });
                    set_credential(&mut a, &creds);
                    alloc = a.signed(METHOD_ALLOCATE, &requested_transport());
                } else {
                    rep.push(step(
                        "Allocate",
                        t,
                        Verdict::Fail,
                        "401 Unauthorized: the secret is wrong - the server refused a fresh credential and longer-lived ones (up to ten years) too, so its clock is not the cause. The secret in the app backend (or --secret) differs from the server's (turnpike: auth.secrets, coturn: static-auth-secret)".into(),
                        Some("wrong_secret"),
                        json!(null),
                    ));
                    rep.push(step(
                        "Clock skew",
                        t_auth,
                        Verdict::Skip,
                        "not the cause of the 401 (longer-lived credentials were refused too)"
                            .into(),
                        None,
                        json!(null),
                    ));
                    for name in ["Relayed round trip", "Refresh"] {
                        rep.skip(name, "no allocation");
                    }
                    return;
                }
            }
            Credentials::Fixed { username, .. } => {
                let (problem, detail) = match rest_expiry(username) {
                    Some(exp) if exp <= now => (
                        "credential_expired",
                        format!(
                            "401 Unauthorized: this credential expired {} ago by this machine's clock",
                            human_secs(now - exp)
                        ),
                    ),
                    _ => (
                        "wrong_secret",
                        "401 Unauthorized: wrong password, or the secret that minted it differs from the server's, or the server's clock is ahead of the issuer's (use --secret to tell these apart)".to_owned(),
                    ),
                };
                rep.push(step(
                    "Allocate",
                    t,
                    Verdict::Fail,
                    detail,
                    Some(problem),
                    json!(null),
                ));
                for name in ["Clock skew", "Relayed round trip", "Refresh"] {
                    rep.skip(name, "no allocation");
                }
                return;
            }
        }
    }
    let alloc = match alloc {
        Ok(m) if is_success(&m) => m,
        other => {
            let detail = match &other {
                Ok(m) => match error_of(m) {
                    Some((403, r)) => format!("403 {r}: the server refuses this user or address"),
                    Some((486, r)) => format!("486 {r}: this user's allocation quota is full"),
                    Some((508, r)) => format!("508 {r}: the server has no relay port free"),
                    Some((c, r)) => format!("error {c} {r}"),
                    None => "unexpected response".into(),
                },
                Err(e) => format!("no Allocate response: {e}"),
            };
            rep.push(step(
                "Allocate",
                t,
                Verdict::Fail,
                detail,
                Some("allocate_failed"),
                json!(null),
            ));
            for name in ["Clock skew", "Relayed round trip", "Refresh"] {
                rep.skip(name, "no allocation");
            }
            return;
        }
    };
    let Some(relay_a) = relayed(&alloc) else {
        rep.push(step(
            "Allocate",
            t,
            Verdict::Fail,
            "success without XOR-RELAYED-ADDRESS".into(),
            Some("allocate_failed"),
            json!(null),
        ));
        return;
    };
    let life = lifetime(&alloc).unwrap_or(0);
    let server_ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
    let own_ips: Vec<IpAddr> = [Some(client_mapped.ip()), a.local_addr().map(|l| l.ip())]
        .into_iter()
        .flatten()
        .collect();
    let rip = relay_a.ip();
    let (verdict, problem, note) = if !is_public(rip) && is_public(server.ip()) {
        (
            Verdict::Warn,
            Some("relay_address_private"),
            format!(
                " - a private address: clients outside the server's network cannot reach it. Behind a 1:1 NAT set relay.advertised_ipv4 (coturn: external-ip) to the public address {}",
                server.ip()
            ),
        )
    } else if own_ips.contains(&rip) && !own_ips.contains(&server.ip()) {
        (
            Verdict::Warn,
            Some("relay_address_is_client"),
            " - that is this machine's own address: the server advertises a wrong relay address"
                .into(),
        )
    } else if !server_ips.contains(&rip) {
        (
            Verdict::Warn,
            Some("relay_address_differs"),
            format!(
                " - differs from {}, the address {} resolves to: right only if the relay really uses a separate address; behind a 1:1 NAT it must be the public one",
                server.ip(),
                uri.host
            ),
        )
    } else {
        (Verdict::Pass, None, String::new())
    };
    rep.push(step(
        "Allocate",
        t,
        verdict,
        format!("relayed address {relay_a}, lifetime {life} s{note}"),
        problem,
        json!({"relayed": relay_a.to_string(), "mapped": mapped(&alloc).map(|m| m.to_string()), "lifetime_s": life}),
    ));
    rep.push(step("Clock skew", t, skew.0, skew.1, skew.2, json!(null)));

    // The relayed round trip through a second allocation of our own.
    let t = Instant::now();
    let rt = round_trip(ctx, &mut a, relay_a, &creds, server_ips.contains(&rip));
    match rt {
        Ok((rtt, relay_b)) => rep.push(step(
            "Relayed round trip",
            t,
            Verdict::Pass,
            format!(
                "permission, channel and data both ways between {relay_a} and {relay_b}: round trip {:.1} ms",
                rtt.as_secs_f64() * 1000.0
            ),
            None,
            json!({"rtt_ms": rtt.as_secs_f64() * 1000.0, "relay_a": relay_a.to_string(), "relay_b": relay_b.to_string()}),
        )),
        Err((problem, detail)) => rep.push(step(
            "Relayed round trip",
            t,
            Verdict::Fail,
            detail,
            Some(problem),
            json!(null),
        )),
    }

    // Refresh.
    let t = Instant::now();
    let r = a.signed(
        METHOD_REFRESH,
        &[Box::new(Lifetime(Duration::from_secs(600)))],
    );
    match r {
        Ok(m) if is_success(&m) => rep.push(step(
            "Refresh",
            t,
            Verdict::Pass,
            format!(
                "allocation refreshed, lifetime {} s",
                lifetime(&m).unwrap_or(0)
            ),
            None,
            json!({"lifetime_s": lifetime(&m)}),
        )),
        other => rep.push(step(
            "Refresh",
            t,
            Verdict::Fail,
            match other {
                Ok(m) => format!("Refresh refused: {:?}", error_of(&m)),
                Err(e) => format!("no Refresh response: {e}"),
            },
            Some("refresh_failed"),
            json!(null),
        )),
    }
    // Leave nothing behind on the server.
    let _ = a.signed(METHOD_REFRESH, &[Box::new(Lifetime(Duration::ZERO))]);
}

const PING: &[u8] = b"turnpike-probe ping";
const PONG: &[u8] = b"turnpike-probe pong";

/// Waits for ChannelData `want` on `c` until `deadline`.
fn wait_data(c: &mut Client, want: &[u8], deadline: Instant) -> bool {
    loop {
        match c.recv(deadline) {
            Ok(Frame::ChannelData { payload, .. }) if payload == want => return true,
            Ok(_) => continue,
            Err(_) => return false,
        }
    }
}

/// A second allocation B; A and B permit and bind channels to each other's relayed
/// address, then data goes A -> B and back, through the real relay ports.
fn round_trip(
    ctx: &Ctx,
    a: &mut Client,
    relay_a: SocketAddr,
    creds: &(String, String),
    relay_is_server_address: bool,
) -> Result<(Duration, SocketAddr), (&'static str, String)> {
    let fail = |what: String| ("relay_failed", what);
    let mut b = ctx
        .connect()
        .map_err(|e| fail(format!("second connection: {e}")))?;
    fetch_nonce(&mut b).map_err(|e| fail(format!("second allocation: {e}")))?;
    set_credential(&mut b, creds);
    let r = b
        .signed(METHOD_ALLOCATE, &requested_transport())
        .map_err(|e| fail(format!("second allocation: {e}")))?;
    let relay_b = relayed(&r).ok_or_else(|| {
        fail(format!(
            "second allocation refused: {:?}",
            error_of(&r).unwrap_or_default()
        ))
    })?;
    let result = (|| {
        for (c, peer, ch, who) in [
            (&mut *a, relay_b, 0x4000u16, "A"),
            (&mut b, relay_a, 0x4001u16, "B"),
        ] {
            let peer_attr = || -> Box<dyn Setter> {
                Box::new(PeerAddress {
                    ip: peer.ip(),
                    port: peer.port(),
                })
            };
            for (method, attrs) in [
                (METHOD_CREATE_PERMISSION, vec![peer_attr()]),
                (
                    METHOD_CHANNEL_BIND,
                    vec![Box::new(ChannelNumber(ch)) as Box<dyn Setter>, peer_attr()],
                ),
            ] {
                let name = if method == METHOD_CREATE_PERMISSION {
                    "CreatePermission"
                } else {
                    "ChannelBind"
                };
                match c.signed(method, &attrs) {
                    Ok(m) if is_success(&m) => {}
                    Ok(m) => {
                        let (code, reason) = error_of(&m).unwrap_or_default();
                        return Err(if code == 403 {
                            (
                                "peer_denied",
                                format!(
                                    "{name} for {peer} on allocation {who}: 403 {reason} - the server refuses its own relay address as a peer, so two clients of this server cannot relay to each other (check the peer deny list)"
                                ),
                            )
                        } else {
                            fail(format!("{name} on allocation {who}: error {code} {reason}"))
                        });
                    }
                    Err(e) => return Err(fail(format!("{name} on allocation {who}: {e}"))),
                }
            }
        }
        let lost = |dir: &str| {
            if relay_is_server_address {
                (
                    "relay_ports_blocked",
                    format!(
                        "data {dir} never arrived although the server answers on its listener: the relay port range (here {} and {}) is closed - open the relay ports (udp) in the firewall",
                        relay_a.port(),
                        relay_b.port()
                    ),
                )
            } else {
                (
                    "relay_address_unreachable",
                    format!(
                        "data {dir} never arrived: the advertised relay address {} does not lead back to this server - relay.advertised_ipv4 (coturn: external-ip) is wrong, or the relay ports are closed",
                        relay_a.ip()
                    ),
                )
            }
        };
        let t0 = Instant::now();
        let mut got = false;
        for _ in 0..3 {
            let sent = Instant::now();
            a.send_channel_data(0x4000, PING)
                .map_err(|e| fail(e.to_string()))?;
            if wait_data(&mut b, PING, sent + Duration::from_millis(1000)) {
                got = true;
                break;
            }
        }
        if !got {
            return Err(lost("from allocation A to B"));
        }
        let _ = t0;
        let mut rtt = None;
        for _ in 0..3 {
            let sent = Instant::now();
            b.send_channel_data(0x4001, PONG)
                .map_err(|e| fail(e.to_string()))?;
            if wait_data(a, PONG, sent + Duration::from_millis(1000)) {
                rtt = Some(sent.elapsed());
                break;
            }
        }
        let one_way = rtt.ok_or_else(|| lost("from allocation B to A"))?;
        // One more ping for a true round trip A -> B -> A.
        let sent = Instant::now();
        a.send_channel_data(0x4000, PING)
            .map_err(|e| fail(e.to_string()))?;
        let rtt = if wait_data(&mut b, PING, sent + Duration::from_millis(1000)) {
            let _ = b.send_channel_data(0x4001, PONG);
            if wait_data(a, PONG, sent + Duration::from_millis(1000)) {
                sent.elapsed()
            } else {
                one_way * 2
            }
        } else {
            one_way * 2
        };
        Ok((rtt, relay_b))
    })();
    let _ = b.signed(METHOD_REFRESH, &[Box::new(Lifetime(Duration::ZERO))]);
    result
}
