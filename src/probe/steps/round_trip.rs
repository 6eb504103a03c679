//! The Relayed round trip step: a second allocation B of the probe's own; A and B permit
//! and bind channels to each other's relayed address, then data goes A -> B and back,
//! through the real relay ports.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::json;
use stun::message::{METHOD_CHANNEL_BIND, METHOD_CREATE_PERMISSION, Method, Setter};
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;

use super::allocate::Allocation;
use super::clock_skew::Credential;
use super::ctx::Ctx;
use super::outcome::step;
use super::wire::{allocate, fetch_nonce, relayed, release, set_credential};
use crate::probe::client::{Client, Frame, error_of, is_success};
use crate::probe::report::{Report, Verdict};

const PING: &[u8] = b"turnpike-probe ping";
const PONG: &[u8] = b"turnpike-probe pong";
/// The channels A and B bind to each other's relayed address.
const CHANNEL_A: u16 = 0x4000;
const CHANNEL_B: u16 = 0x4001;
/// How long each send waits for its data to arrive.
const WAIT: Duration = Duration::from_millis(1000);

type Attrs = Vec<Box<dyn Setter>>;

/// (problem, detail) of a failed round trip.
type Problem = (&'static str, String);

fn fail(what: String) -> Problem {
    ("relay_failed", what)
}

/// Reports the Relayed round trip step for the allocation on `a`.
pub(super) fn run(ctx: &Ctx, a: &mut Client, alloc: &Allocation, rep: &mut Report) {
    let t = Instant::now();
    let relay_a = alloc.relay;
    match round_trip(ctx, a, alloc) {
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
}

/// The round trip time and B's relayed address; B is deleted again either way.
fn round_trip(
    ctx: &Ctx,
    a: &mut Client,
    alloc: &Allocation,
) -> Result<(Duration, SocketAddr), Problem> {
    let (mut b, relay_b) = second_allocation(ctx, &alloc.creds)?;
    let paths = Paths {
        relay_a: alloc.relay,
        relay_b,
        relay_is_server_address: alloc.relay_is_server_address,
    };
    let result = permit_and_bind(a, relay_b, CHANNEL_A, "A")
        .and_then(|()| permit_and_bind(&mut b, alloc.relay, CHANNEL_B, "B"))
        .and_then(|()| exchange(a, &mut b, &paths))
        .map(|rtt| (rtt, relay_b));
    release(&mut b);
    result
}

/// Allocation B on a connection of its own, with the credential A got through with.
fn second_allocation(ctx: &Ctx, creds: &Credential) -> Result<(Client, SocketAddr), Problem> {
    let mut b = ctx
        .connect()
        .map_err(|e| fail(format!("second connection: {e}")))?;
    fetch_nonce(&mut b).map_err(|e| fail(format!("second allocation: {e}")))?;
    set_credential(&mut b, creds);
    let r = allocate(&mut b).map_err(|e| fail(format!("second allocation: {e}")))?;
    let relay_b = relayed(&r).ok_or_else(|| {
        fail(format!(
            "second allocation refused: {:?}",
            error_of(&r).unwrap_or_default()
        ))
    })?;
    Ok((b, relay_b))
}

/// CreatePermission and ChannelBind (channel `ch`) for `peer` on allocation `who`.
fn permit_and_bind(c: &mut Client, peer: SocketAddr, ch: u16, who: &str) -> Result<(), Problem> {
    let peer_attr = || -> Box<dyn Setter> {
        Box::new(PeerAddress {
            ip: peer.ip(),
            port: peer.port(),
        })
    };
    let requests: [(Method, &str, Attrs); 2] = [
        (
            METHOD_CREATE_PERMISSION,
            "CreatePermission",
            vec![peer_attr()],
        ),
        (
            METHOD_CHANNEL_BIND,
            "ChannelBind",
            vec![Box::new(ChannelNumber(ch)) as Box<dyn Setter>, peer_attr()],
        ),
    ];
    for (method, name, attrs) in requests {
        match c.signed(method, &attrs) {
            Ok(m) if is_success(&m) => {}
            Ok(m) => {
                let (code, reason) = error_of(&m).unwrap_or_default();
                return Err(refused(name, peer, who, code, reason));
            }
            Err(e) => return Err(fail(format!("{name} on allocation {who}: {e}"))),
        }
    }
    Ok(())
}

/// A refused CreatePermission or ChannelBind; a 403 means the server denies its own
/// relay addresses as peers.
fn refused(name: &str, peer: SocketAddr, who: &str, code: u16, reason: String) -> Problem {
    if code == 403 {
        (
            "peer_denied",
            format!(
                "{name} for {peer} on allocation {who}: 403 {reason} - the server refuses its own relay address as a peer, so two clients of this server cannot relay to each other (check the peer deny list)"
            ),
        )
    } else {
        fail(format!("{name} on allocation {who}: error {code} {reason}"))
    }
}

/// The two relayed addresses, to explain data that never arrives.
struct Paths {
    relay_a: SocketAddr,
    relay_b: SocketAddr,
    relay_is_server_address: bool,
}

impl Paths {
    /// Data in direction `dir` never arrived: closed relay ports when the relay is the
    /// server's own address, else a relay address that does not lead back to it.
    fn lost(&self, dir: &str) -> Problem {
        if self.relay_is_server_address {
            (
                "relay_ports_blocked",
                format!(
                    "data {dir} never arrived although the server answers on its listener: the relay port range (here {} and {}) is closed - open the relay ports (udp) in the firewall",
                    self.relay_a.port(),
                    self.relay_b.port()
                ),
            )
        } else {
            (
                "relay_address_unreachable",
                format!(
                    "data {dir} never arrived: the advertised relay address {} does not lead back to this server - relay.advertised_ipv4 (coturn: external-ip) is wrong, or the relay ports are closed",
                    self.relay_a.ip()
                ),
            )
        }
    }
}

/// Data A -> B, then B -> A, then one more ping for a true round trip A -> B -> A; its
/// time, or twice the one-way time when that last exchange is lost.
fn exchange(a: &mut Client, b: &mut Client, paths: &Paths) -> Result<Duration, Problem> {
    if send_until_received(a, CHANNEL_A, PING, b)?.is_none() {
        return Err(paths.lost("from allocation A to B"));
    }
    let one_way = send_until_received(b, CHANNEL_B, PONG, a)?
        .ok_or_else(|| paths.lost("from allocation B to A"))?;
    let sent = Instant::now();
    a.send_channel_data(CHANNEL_A, PING)
        .map_err(|e| fail(e.to_string()))?;
    if !wait_data(b, PING, sent + WAIT) {
        return Ok(one_way * 2);
    }
    let _ = b.send_channel_data(CHANNEL_B, PONG);
    if wait_data(a, PONG, sent + WAIT) {
        Ok(sent.elapsed())
    } else {
        Ok(one_way * 2)
    }
}

/// Sends `payload` from `from` on `channel` up to three times until `to` receives it;
/// the time from the successful send to its arrival.
fn send_until_received(
    from: &mut Client,
    channel: u16,
    payload: &[u8],
    to: &mut Client,
) -> Result<Option<Duration>, Problem> {
    for _ in 0..3 {
        let sent = Instant::now();
        from.send_channel_data(channel, payload)
            .map_err(|e| fail(e.to_string()))?;
        if wait_data(to, payload, sent + WAIT) {
            return Ok(Some(sent.elapsed()));
        }
    }
    Ok(None)
}

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
