//! The connection steps: a UDP socket, or TCP connect (and a TLS handshake for `turns:`),
//! and fresh connections for the later steps that need their own.

use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::Instant;

use serde_json::json;

use super::clock_skew::unix_now;
use super::ctx::Ctx;
use super::outcome::{TURN_STEPS, skip_rest, step};
use crate::probe::client::{Client, Conn};
use crate::probe::report::{Report, Verdict};
use crate::probe::tls;
use crate::probe::uri::Transport;

impl Ctx<'_> {
    /// Opens a connection to the server (TCP connect and TLS handshake for streams).
    pub(super) fn connect(&self) -> Result<Client, String> {
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

/// The probe's main connection, with the TCP connect and TLS steps reported for stream
/// transports; `None` (the rest skipped) when there is none. A UDP socket that cannot be
/// opened is reported as a failed Binding, timed from `started`.
pub(super) fn open(ctx: &Ctx, started: Instant, rep: &mut Report) -> Option<Client> {
    match ctx.uri.transport {
        Transport::Udp => match ctx.connect() {
            Ok(c) => Some(c),
            Err(e) => {
                rep.push(step(
                    "Binding",
                    started,
                    Verdict::Fail,
                    format!("cannot open a UDP socket: {e}"),
                    Some("local_error"),
                    json!(null),
                ));
                skip_rest(rep, &TURN_STEPS[1..], "no socket");
                None
            }
        },
        Transport::Tcp => {
            let tcp = tcp_connect(ctx, rep)?;
            Some(Client::new(Conn::Tcp(tcp), ctx.opts.timeout))
        }
        Transport::Tls => {
            let mut tcp = tcp_connect(ctx, rep)?;
            tls_handshake(ctx, &mut tcp, rep)
                .map(|conn| Conn::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))))
                .map(|conn| Client::new(conn, ctx.opts.timeout))
        }
    }
}

/// The TCP connect step.
fn tcp_connect(ctx: &Ctx, rep: &mut Report) -> Option<TcpStream> {
    let t = Instant::now();
    let server = ctx.server;
    let tcp = match TcpStream::connect_timeout(&server, ctx.opts.timeout) {
        Ok(s) => s,
        Err(e) => {
            let (problem, detail) = tcp_failure(server, &e);
            rep.push(step(
                "TCP connect",
                t,
                Verdict::Fail,
                detail,
                Some(problem),
                json!(null),
            ));
            if ctx.uri.transport == Transport::Tls {
                rep.skip("TLS", "no connection");
            }
            skip_rest(rep, &TURN_STEPS, "no connection");
            return None;
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
    let _ = tcp.set_read_timeout(Some(ctx.opts.timeout));
    // Small messages one at a time: Nagle would add delay to every timing.
    let _ = tcp.set_nodelay(true);
    Some(tcp)
}

/// (problem, detail) of a failed TCP connect: refused (nothing listens) or no answer.
fn tcp_failure(server: SocketAddr, e: &std::io::Error) -> (&'static str, String) {
    if e.kind() == std::io::ErrorKind::ConnectionRefused {
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
    }
}

/// The TLS step: the handshake and what the certificate says, or why it failed.
fn tls_handshake(
    ctx: &Ctx,
    tcp: &mut TcpStream,
    rep: &mut Report,
) -> Option<rustls::ClientConnection> {
    let t = Instant::now();
    let host = &ctx.uri.host;
    let (result, facts) = tls::handshake(tcp, host, ctx.roots);
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
            let detail =
                format!("chain trusted, valid for {host} ({names}), expires in {days} days{note}");
            rep.push(step("TLS", t, verdict, detail, problem, data));
            Some(conn)
        }
        Err(e) => {
            let (problem, detail) = match &facts.error {
                Some(err) => tls::explain(err, host, info.as_ref()),
                None => ("tls_handshake_failed", format!("TLS handshake failed: {e}")),
            };
            rep.push(step("TLS", t, Verdict::Fail, detail, Some(problem), data));
            skip_rest(rep, &TURN_STEPS, "no TLS session");
            None
        }
    }
}
