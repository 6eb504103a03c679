//! One shard: a thread that owns a relay core, its listener sockets (SO_REUSEPORT, so the
//! kernel spreads clients over shards by 5-tuple), its TCP/TLS client connections and the
//! relay sockets of its port slice. It is the only place that reads the clock for the
//! core. Nothing here decides protocol.
//!
//! Read top-down: this file is the loop (`run`: poll, read each ready socket within its
//! budget, serve the connections, flush, control messages, timers) and carries out the
//! core's commands. `udp.rs` is the datagram path (recvmmsg in, sendmmsg out),
//! `relay_sockets.rs` the relay-socket table and the client->peer forward, `streams/` the
//! TCP/TLS connections, and `io/` the syscalls below them all.

pub mod export;
mod fastpath;
mod handover;
pub mod io;
pub mod kernel_path;
mod relay_sockets;
mod socket_errors;
pub mod streams;
mod tokens;
mod udp;

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConfig;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::proto::indication;
use crate::relay::peer_policy::PeerPolicy;
use crate::relay::{Command, Core, FleetSlot, Time, Transport};

use super::clock;
use super::fleet_slots::{SlotRequest, SlotSender};
use super::session_log::SessionLogger;
use super::sessions::{SessionInfo, describe};
use super::status::ShardStatus;
use io::batch::{BATCH, Batch};
use io::gso::{self, Run};
use relay_sockets::RelaySockets;
use socket_errors::send_drop_reason;
use streams::table::{ConnLimits, Connections};
use tokens::{CONN_BASE, RELAY_BASE, TCP_LISTENER_BASE, WAKER};

/// Packets read from one socket before the loop looks at the others: fairness between a
/// busy relay and the listener that carries everyone's control traffic.
const BUDGET: usize = 64;
/// Room in front of a peer's payload for the largest header it may get (a Data
/// indication from an IPv6 peer). A batch slot leaves room for the padding after it.
const HEADROOM: usize = indication::DATA_INDICATION_HEADROOM;

/// What the shell answers to a core's command, reported once the queue is empty.
enum Answer {
    Bound(u64, SocketAddr, bool),
    Slot(u64, FleetSlot),
    /// A kernel route removed, with its final counters.
    Removed(u64, crate::relay::allocation::Traffic),
}

pub enum Control {
    Reconfigure(Box<(Authenticator, PeerPolicy)>),
    /// New certificate for connections accepted from now on.
    Tls(Arc<ServerConfig>),
    /// Publish a fresh snapshot now (a scrape is waiting for it).
    Publish,
    /// Start or stop draining: stop admitting (see `Core::set_draining`).
    Draining(bool),
    /// Nodes for ALTERNATE-SERVER (reload).
    Alternates(Vec<crate::relay::Alternate>),
    /// The fleet's revocations in force (`[cluster]`).
    Revocations(Arc<crate::relay::revocation::Revocations>),
    /// The fleet's answer to a `ClaimFleetSlot` (`[cluster]`).
    FleetSlot(u64, FleetSlot),
    /// Describe the live allocations (sessions API).
    Sessions(Sender<Vec<SessionInfo>>),
    /// End every allocation of this user id and say how many (sessions API).
    EndSessions(String, Sender<usize>),
    /// Export for a process handover and stand still until the verdict (handover.rs).
    HandOver(Box<export::HandOverRequest>),
    Shutdown,
}

/// The sockets a shard listens on, bound by the caller.
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners and whether each speaks TLS.
    pub tcp: Vec<(std::net::TcpListener, Transport)>,
}

pub struct Shard {
    pub index: usize,
    core: Core,
    poll: Poll,
    udp: Vec<UdpSocket>,
    tcp: Vec<(TcpListener, Transport)>,
    relays: RelaySockets,
    /// TCP/TLS client connections (streams/).
    streams: Connections,
    control: Receiver<Control>,
    status: Arc<ShardStatus>,
    sessions: SessionLogger,
    metrics: Arc<Metrics>,
    /// recvmmsg batch for client datagrams.
    inbound: Batch,
    /// recvmmsg batch for peer datagrams (taken out while its packets are handled).
    relay_in: Option<Box<Batch>>,
    /// sendmmsg batches of ChannelData towards UDP clients, one per listener.
    outbound: Vec<Batch>,
    /// Client payloads in `inbound` queued for one peer from one relay socket (GSO).
    gso_run: Run,
    /// The time as read once per loop turn: every call into the core passes this value.
    time: Time,
    /// Reused buffer of answers to the core's commands (relay binds carried out), to be
    /// reported to the core.
    answers: Vec<Answer>,
    /// Where fleet-slot requests go (`[cluster]`).
    fleet_slots: Option<SlotSender>,
    /// The kernel fast path's maps, when attached (`[fastpath]`).
    kernel: Option<kernel_path::KernelPath>,
}

/// What a shard is made of: its core, listeners and TLS config, connection limits, the
/// control queue from the shell, where it publishes status, and how it logs sessions.
pub struct ShardParts {
    pub index: usize,
    pub core: Core,
    pub listeners: Listeners,
    pub tls: Option<Arc<ServerConfig>>,
    pub limits: ConnLimits,
    pub control: Receiver<Control>,
    pub status: Arc<ShardStatus>,
    pub sessions: SessionLogger,
    pub metrics: Arc<Metrics>,
    /// Use UDP GSO where the kernel has it (`relay.gso`).
    pub gso: bool,
    /// Where fleet-slot requests go (`[cluster]`).
    pub fleet_slots: Option<SlotSender>,
    /// The attached fast path and each UDP listener's own address (`[fastpath]`).
    pub fastpath: Option<kernel_path::KernelPath>,
}

impl Shard {
    pub fn new(parts: ShardParts) -> std::io::Result<(Shard, Arc<Waker>)> {
        let ShardParts {
            index,
            core,
            listeners,
            tls,
            limits,
            control,
            status,
            sessions,
            metrics,
            gso,
            fleet_slots,
            fastpath,
        } = parts;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut udp = Vec::new();
        for (i, l) in listeners.udp.into_iter().enumerate() {
            let mut l = UdpSocket::from_std(l);
            poll.registry()
                .register(&mut l, Token(i), Interest::READABLE)?;
            udp.push(l);
        }
        let listener_count = udp.len();
        let gso = gso && {
            let ok = gso::supported();
            if !ok && index == 0 {
                tracing::info!("UDP GSO unavailable on this kernel: one datagram per send");
            }
            ok
        };
        let mut tcp = Vec::new();
        for (i, (l, t)) in listeners.tcp.into_iter().enumerate() {
            let mut l = TcpListener::from_std(l);
            poll.registry()
                .register(&mut l, Token(TCP_LISTENER_BASE + i), Interest::READABLE)?;
            tcp.push((l, t));
        }
        Ok((
            Shard {
                index,
                core,
                poll,
                udp,
                tcp,
                relays: RelaySockets::new(),
                fleet_slots,
                kernel: fastpath,
                streams: Connections::new(tls, limits),
                control,
                status,
                sessions,
                metrics,
                inbound: Batch::default(),
                relay_in: Some(Box::new(Batch::with_headroom(HEADROOM))),
                outbound: (0..listener_count).map(|_| Batch::with_gso(gso)).collect(),
                gso_run: Run::new(gso),
                time: clock::time(),
                answers: Vec::new(),
            },
            waker,
        ))
    }

    pub fn run(mut self) {
        // What an import queued (fleet slots to adopt, kernel routes) goes out before any
        // packet: a new process answers `took-over` only once its slots are adopted.
        self.run_commands();
        let mut events = Events::with_capacity(1024);
        // Sockets that still had packets when their budget ran out.
        let mut ready: Vec<Token> = Vec::new();
        let mut next_tick = clock::now();
        loop {
            let now = clock::now();
            let timeout = if !ready.is_empty() || self.streams.busy() {
                Duration::ZERO
            } else {
                let wake = self
                    .core
                    .poll_timeout()
                    .map_or(next_tick, |t| t.min(next_tick));
                self.streams.wake_at(wake).saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(shard = self.index, error = %e, "poll failed");
                self.status.set_running(false);
                return;
            }
            self.time = clock::time();
            let now = self.time.mono;
            for ev in events.iter() {
                let t = ev.token();
                if t == WAKER {
                    continue;
                }
                if t.0 >= CONN_BASE {
                    self.conn_event(t.0 - CONN_BASE, ev.is_readable(), ev.is_writable());
                } else if !ready.contains(&t) {
                    ready.push(t);
                }
            }
            self.retry_accepts(now, &mut ready);
            let mut i = 0;
            while i < ready.len() {
                if self.read_budget(ready[i], now) {
                    i += 1;
                } else {
                    ready.swap_remove(i);
                }
            }
            // What the relay sockets brought for stream clients goes out before the
            // connections' reads: those can take the rest of the turn.
            self.flush_streams();
            // Each stream connection gets a bounded turn, like each socket above.
            self.serve_connections(now);
            self.flush_outbound();
            self.flush_streams();
            if self.handle_control(now).is_err() {
                return;
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(self.time);
                self.run_commands();
            }
            if now >= next_tick {
                self.status.beat();
                self.close_idle_connections(now);
                self.publish(now);
                next_tick = now + Duration::from_secs(1);
            }
        }
    }

    fn handle_control(&mut self, now: Instant) -> Result<(), ()> {
        loop {
            match self.control.try_recv() {
                Ok(Control::Reconfigure(b)) => {
                    let (auth, policy) = *b;
                    self.core.reconfigure(auth, policy)
                }
                Ok(Control::Tls(cfg)) => self.streams.tls = Some(cfg),
                Ok(Control::Draining(on)) => self.core.set_draining(on),
                Ok(Control::Alternates(a)) => self.core.set_alternates(a),
                Ok(Control::Revocations(r)) => self.core.set_revocations(r),
                Ok(Control::FleetSlot(token, answer)) => {
                    self.core.fleet_slot_answered(self.time, token, answer);
                    self.run_commands();
                }
                Ok(Control::Publish) => self.publish(now),
                Ok(Control::Sessions(reply)) => {
                    self.read_kernel();
                    let _ = reply.send(describe(
                        &self.core,
                        now,
                        self.sessions.redact_client_address,
                    ));
                }
                Ok(Control::EndSessions(user, reply)) => {
                    let n = self.core.end_user_allocations(self.time, &user);
                    self.run_commands();
                    let _ = reply.send(n);
                }
                Ok(Control::HandOver(req)) => self.hand_over(*req),
                Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.core.shutdown(self.time);
                    self.run_commands();
                    self.publish(now);
                    self.status.set_running(false);
                    return Err(());
                }
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// Reads up to BUDGET packets (or connections) from one socket. True when it may
    /// have more.
    fn read_budget(&mut self, token: Token, now: Instant) -> bool {
        if token.0 < TCP_LISTENER_BASE {
            return (0..BUDGET / BATCH).all(|_| self.listener_batch(token.0));
        }
        if token.0 >= RELAY_BASE {
            return (0..BUDGET / BATCH).all(|_| self.relay_batch(token.0 - RELAY_BASE));
        }
        (0..BUDGET).all(|_| self.accept(token.0 - TCP_LISTENER_BASE, now))
    }

    /// Carries out everything the core queued. Bind results go back to the core only once
    /// the queue is empty (never from inside the loop that empties it); what they queue in
    /// turn is carried out by the next round.
    fn run_commands(&mut self) {
        let mut answers = std::mem::take(&mut self.answers);
        loop {
            self.run_queued(&mut answers);
            if answers.is_empty() {
                break;
            }
            for a in answers.drain(..) {
                match a {
                    Answer::Bound(token, addr, ok) => {
                        self.core.relay_bound(self.time, token, addr, ok)
                    }
                    Answer::Slot(token, slot) => {
                        self.core.fleet_slot_answered(self.time, token, slot)
                    }
                    Answer::Removed(id, totals) => self.core.fastpath_removed(id, totals),
                }
            }
        }
        self.answers = answers;
    }

    /// One round of `run_commands`: empties the core's queue, collecting the answers.
    fn run_queued(&mut self, answers: &mut Vec<Answer>) {
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::SendToClient { client, data } => {
                    if client.transport == Transport::Udp {
                        if let Some(l) = self.udp.get(client.listener as usize)
                            && let Err(e) = l.send_to(&data, client.addr)
                        {
                            self.core.record_send_failure(send_drop_reason(&e));
                        }
                    } else {
                        self.send_stream(client, &[&data]);
                    }
                }
                Command::BindRelay { token, addr } => {
                    let result = self.relays.bind(self.poll.registry(), addr);
                    self.status.note_bind(self.index, addr, &result);
                    answers.push(Answer::Bound(token, addr, result.is_ok()));
                }
                Command::ReleaseRelay { addr } => self.relays.release(self.poll.registry(), addr),
                Command::ClaimFleetSlot { token, user } => {
                    let claim = SlotRequest::Claim {
                        shard: self.index,
                        token,
                        user,
                    };
                    // No fleet task (stopping): the Allocate is refused, not left waiting.
                    if self
                        .fleet_slots
                        .as_ref()
                        .is_none_or(|q| q.send(claim).is_err())
                    {
                        answers.push(Answer::Slot(token, FleetSlot::Unavailable));
                    }
                }
                Command::ReleaseFleetSlot { token } => {
                    if let Some(q) = &self.fleet_slots {
                        let _ = q.send(SlotRequest::Release {
                            shard: self.index,
                            token,
                        });
                    }
                }
                Command::AdoptFleetSlot { token, was, user } => {
                    if let Some(q) = &self.fleet_slots {
                        let _ = q.send(SlotRequest::Adopt {
                            shard: self.index,
                            token,
                            was,
                            user,
                        });
                    }
                }
                Command::FastPathAdd(r) => {
                    if let Some(k) = &mut self.kernel {
                        k.add(&r);
                    }
                }
                Command::FastPathRemove(r) => {
                    let totals = self.kernel.as_mut().map(|k| k.remove(r.id));
                    answers.push(Answer::Removed(r.id, totals.unwrap_or_default()));
                }
                Command::AllocationEnded(summary) => {
                    self.metrics
                        .allocation_lifetime
                        .observe(summary.duration.as_secs_f64());
                    self.sessions.log(&summary);
                }
            }
        }
    }
}
