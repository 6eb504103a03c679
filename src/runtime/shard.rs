//! One shard: a thread that owns a relay core, its listener sockets (SO_REUSEPORT, so the
//! kernel spreads clients over shards by 5-tuple), its TCP/TLS client connections and the
//! relay sockets of its port slice. It is the only place that reads the clock for the
//! core. Nothing here decides protocol.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, UdpSocket};
use mio::{Events, Interest, Poll, Token, Waker};
use rustls::ServerConfig;
use slab::Slab;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::proto::{channel_data, indication};
use crate::relay::peer_policy::PeerPolicy;
use crate::relay::stats::DropReason;
use crate::relay::{ClientAction, ClientId, Command, PeerAction, Server, Time, Transport};

use super::batch::{BATCH, Batch};
use super::connections::Connections;
pub use super::connections::Limits;
use super::session_log::SessionLogger;
use super::sessions::{SessionInfo, describe};
use super::{ShardStatus, clock};

const WAKER: Token = Token(usize::MAX);
// Token ranges: UDP listeners, TCP/TLS listeners, relay sockets, client connections.
pub(super) const TCP_LISTENER_BASE: usize = 1 << 12;
const RELAY_BASE: usize = 1 << 16;
pub(super) const CONN_BASE: usize = 1 << 32;
/// Packets read from one socket before the loop looks at the others: fairness between a
/// busy relay and the listener that carries everyone's control traffic.
const BUDGET: usize = 64;
/// Room in front of a peer's payload for the largest header it may get (a Data
/// indication from an IPv6 peer). A batch slot leaves room for the padding after it.
const HEADROOM: usize = indication::DATA_INDICATION_HEADROOM;
const SOCKET_BUFFER: usize = 4 << 20;
const PADDING: [u8; 3] = [0; 3];
const NONE: u32 = u32::MAX;

pub enum Control {
    Reconfigure(Box<(Authenticator, PeerPolicy)>),
    /// New certificate for connections accepted from now on.
    Tls(Arc<ServerConfig>),
    /// Publish a fresh snapshot now (a scrape is waiting for it).
    Publish,
    /// Start or stop draining (see `Server::set_draining`).
    Draining(bool),
    /// Nodes for ALTERNATE-SERVER (reload).
    Alternates(Vec<SocketAddr>),
    /// Describe the live allocations (sessions API).
    Sessions(Sender<Vec<SessionInfo>>),
    /// End every allocation of this user id and say how many (sessions API).
    EndSessions(String, Sender<usize>),
    Shutdown,
}

/// The sockets a shard listens on, bound by the caller.
pub struct Listeners {
    pub udp: Vec<std::net::UdpSocket>,
    /// TCP listeners and whether each speaks TLS.
    pub tcp: Vec<(std::net::TcpListener, Transport)>,
}

struct RelaySocket {
    socket: UdpSocket,
    addr: SocketAddr,
}

/// This shard's relay sockets, found by port without hashing on the relay path.
pub(super) struct RelaySockets {
    sockets: Slab<RelaySocket>,
    /// Relay port -> slab key, per family.
    v4: Vec<u32>,
    v6: Vec<u32>,
}

impl RelaySockets {
    fn table(&mut self, addr: SocketAddr) -> &mut Vec<u32> {
        if addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Sends `payload` from relay socket `relay` to `peer`. A failure drops this packet
    /// only and is counted; the allocation stays. (Queuing a client's run of packets for
    /// one sendmmsg was measured: fewer syscalls, no less CPU per packet, so it is not
    /// done.)
    fn forward(&self, core: &mut Server, relay: SocketAddr, peer: SocketAddr, payload: &[u8]) {
        let table = if relay.is_ipv4() { &self.v4 } else { &self.v6 };
        let key = table[relay.port() as usize];
        if key != NONE
            && let Err(e) = self.sockets[key as usize].socket.send_to(payload, peer)
        {
            core.record_send_failure(send_drop_reason(&e));
        }
    }
}

/// Feeds one client packet to the core and forwards it when the core says so. True when
/// the core queued commands (responses, relay binds) for the caller to run.
pub(super) fn client_packet(
    core: &mut Server,
    relays: &RelaySockets,
    time: Time,
    client: ClientId,
    packet: &[u8],
) -> bool {
    match core.handle_client_packet(time, client, packet) {
        ClientAction::Forward {
            relay,
            peer,
            payload,
        } => {
            relays.forward(core, relay, peer, payload);
            false
        }
        ClientAction::Handled => true,
        ClientAction::Drop(_) => false,
    }
}

pub struct Shard {
    pub index: usize,
    pub(super) core: Server,
    pub(super) poll: Poll,
    udp: Vec<UdpSocket>,
    pub(super) tcp: Vec<(TcpListener, Transport)>,
    pub(super) relays: RelaySockets,
    /// TCP/TLS client connections (connections.rs).
    pub(super) streams: Connections,
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
    /// The time as read once per loop turn: every call into the core passes this value.
    pub(super) time: Time,
    /// Reused buffer of relay binds carried out, to be reported to the core.
    bind_results: Vec<(u64, SocketAddr, bool)>,
}

pub fn udp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<std::net::UdpSocket> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if reuse_port {
        s.set_reuse_port(true)?;
    }
    // Best effort: the kernel caps these at net.core.[rw]mem_max.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

pub fn tcp_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    Ok(s.into())
}

/// After a receive/accept error: true when it concerned one datagram or connection (an
/// ICMP error, a connection reset before accept) and the socket may hold more; false
/// otherwise (e.g. out of file descriptors), so the loop does not spin on it.
fn keep_draining(e: &std::io::Error) -> bool {
    match e.kind() {
        ErrorKind::ConnectionRefused
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::Interrupted => true,
        _ => {
            tracing::debug!(error = %e, "socket error");
            false
        }
    }
}

fn send_drop_reason(e: &std::io::Error) -> DropReason {
    if e.kind() == ErrorKind::WouldBlock {
        DropReason::BufferFull
    } else {
        DropReason::SendError
    }
}

impl Shard {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        index: usize,
        core: Server,
        listeners: Listeners,
        tls: Option<Arc<ServerConfig>>,
        limits: Limits,
        control: Receiver<Control>,
        status: Arc<ShardStatus>,
        sessions: SessionLogger,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Shard, Arc<Waker>)> {
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
                relays: RelaySockets {
                    sockets: Slab::new(),
                    v4: vec![NONE; 65536],
                    v6: vec![NONE; 65536],
                },
                streams: Connections::new(tls, limits),
                control,
                status,
                sessions,
                metrics,
                inbound: Batch::default(),
                relay_in: Some(Box::default()),
                outbound: (0..listener_count).map(|_| Batch::default()).collect(),
                time: clock::time(),
                bind_results: Vec::new(),
            },
            waker,
        ))
    }

    pub fn run(mut self) {
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
                if self.drain(ready[i], now) {
                    i += 1;
                } else {
                    ready.swap_remove(i);
                }
            }
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
                self.status.publish(
                    &self.core,
                    now,
                    self.streams.counts(),
                    self.streams.counters,
                );
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
                Ok(Control::Publish) => self.status.publish(
                    &self.core,
                    now,
                    self.streams.counts(),
                    self.streams.counters,
                ),
                Ok(Control::Sessions(reply)) => {
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
                Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.core.shutdown(self.time);
                    self.run_commands();
                    self.status.publish(
                        &self.core,
                        now,
                        self.streams.counts(),
                        self.streams.counters,
                    );
                    self.status.set_running(false);
                    return Err(());
                }
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// Reads up to BUDGET packets (or connections) from one socket. True when it may
    /// have more.
    fn drain(&mut self, token: Token, now: Instant) -> bool {
        if token.0 < TCP_LISTENER_BASE {
            return (0..BUDGET / BATCH).all(|_| self.listener_batch(token.0));
        }
        if token.0 >= RELAY_BASE {
            return (0..BUDGET / BATCH).all(|_| self.relay_batch(token.0 - RELAY_BASE));
        }
        (0..BUDGET).all(|_| self.accept(token.0 - TCP_LISTENER_BASE, now))
    }

    /// Up to BATCH datagrams from UDP clients in one recvmmsg. False when the socket is
    /// drained.
    fn listener_batch(&mut self, li: usize) -> bool {
        let Some(listener) = self.udp.get(li) else {
            return false;
        };
        let n = match self.inbound.recv(listener.as_raw_fd(), 0) {
            Ok(n) => n,
            Err(e) => return keep_draining(&e),
        };
        for i in 0..n {
            let (slot, len, from) = self.inbound.slot(i);
            let Some(addr) = from else { continue };
            let client = ClientId {
                transport: Transport::Udp,
                listener: li as u16,
                addr,
            };
            let commands = client_packet(
                &mut self.core,
                &self.relays,
                self.time,
                client,
                &slot[..len],
            );
            if commands {
                self.run_commands();
            }
        }
        n == BATCH
    }

    /// Sends the queued ChannelData to UDP clients.
    fn flush_outbound(&mut self) {
        for (li, batch) in self.outbound.iter_mut().enumerate() {
            if batch.count > 0 {
                let (failed, blocked) = batch.flush(self.udp[li].as_raw_fd());
                for _ in 0..failed {
                    self.core.record_send_failure(DropReason::SendError);
                }
                for _ in 0..blocked {
                    self.core.record_send_failure(DropReason::BufferFull);
                }
            }
        }
    }

    /// Up to BATCH packets from one relay socket in one recvmmsg (a socket drained in
    /// fewer needs no extra read that would block: the poll is edge-triggered), each read
    /// `HEADROOM` bytes into its slot so that the ChannelData or Data indication header is
    /// written in front of it, and the padding after it, in place: no copy and no
    /// allocation on either framing. False when the socket is drained.
    fn relay_batch(&mut self, key: usize) -> bool {
        let Some(relay) = self.relays.sockets.get(key) else {
            return false;
        };
        let (fd, relay_addr) = (relay.socket.as_raw_fd(), relay.addr);
        let Some(mut batch) = self.relay_in.take() else {
            return false;
        };
        let n = match batch.recv(fd, HEADROOM) {
            Ok(n) => n,
            Err(e) => {
                self.relay_in = Some(batch);
                return keep_draining(&e);
            }
        };
        let h = HEADROOM;
        for i in 0..n {
            let (buf, len, from) = batch.slot(i);
            let Some(from) = from else { continue };
            match self
                .core
                .handle_peer_packet(self.time, relay_addr, from, &buf[h..h + len])
            {
                PeerAction::ChannelData { client, channel } => {
                    let start = h - channel_data::HEADER_LEN;
                    channel_data::write_header(&mut buf[start..], channel, len);
                    // Streams need the padding to 4 bytes (RFC 8656 §12.5); datagrams do not.
                    let pad = channel_data::padded_len(len) - channel_data::HEADER_LEN - len;
                    self.send_to_client(client, &buf[start..h + len], pad);
                }
                PeerAction::DataIndication {
                    client,
                    transaction_id,
                } => {
                    let r = indication::frame_data_indication(buf, h, len, from, &transaction_id);
                    self.send_to_client(client, &buf[r], 0);
                }
                PeerAction::Drop(_) => {}
            }
        }
        self.relay_in = Some(batch);
        n == BATCH
    }

    /// A framed message for a client: UDP ones join the sendmmsg batch, stream ones the
    /// connection's queue (with `pad` zero bytes after it).
    fn send_to_client(&mut self, client: ClientId, msg: &[u8], pad: usize) {
        if client.transport == Transport::Udp {
            if let Some(batch) = self.outbound.get_mut(client.listener as usize) {
                batch.push(&[msg], client.addr);
                if batch.is_full() {
                    self.flush_outbound();
                }
            }
        } else {
            self.send_stream(client, &[msg, &PADDING[..pad]]);
        }
    }

    /// Carries out everything the core queued. Bind results go back to the core only once
    /// the queue is empty (never from inside the loop that drains it); what they queue in
    /// turn is carried out by the next round.
    pub(super) fn run_commands(&mut self) {
        let mut binds = std::mem::take(&mut self.bind_results);
        loop {
            self.run_queued(&mut binds);
            if binds.is_empty() {
                break;
            }
            for (token, addr, ok) in binds.drain(..) {
                self.core.relay_bound(self.time, token, addr, ok);
            }
        }
        self.bind_results = binds;
    }

    /// One round of `run_commands`: drains the core's queue, collecting bind results.
    fn run_queued(&mut self, binds: &mut Vec<(u64, SocketAddr, bool)>) {
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
                    let result = self.bind_relay(addr);
                    self.status.note_bind(self.index, addr, &result);
                    binds.push((token, addr, result.is_ok()));
                }
                Command::ReleaseRelay { addr } => self.release_relay(addr),
                Command::AllocationEnded(summary) => {
                    self.metrics
                        .allocation_lifetime
                        .observe(summary.duration.as_secs_f64());
                    self.sessions.log(&summary);
                }
            }
        }
    }

    fn bind_relay(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let std_sock = udp_socket(addr, false)?;
        let mut socket = UdpSocket::from_std(std_sock);
        let entry = self.relays.sockets.vacant_entry();
        let token = Token(RELAY_BASE + entry.key());
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)?;
        let key = entry.key() as u32;
        entry.insert(RelaySocket { socket, addr });
        self.relays.table(addr)[addr.port() as usize] = key;
        Ok(())
    }

    fn release_relay(&mut self, addr: SocketAddr) {
        let key = std::mem::replace(&mut self.relays.table(addr)[addr.port() as usize], NONE);
        if key != NONE {
            let mut r = self.relays.sockets.remove(key as usize);
            let _ = self.poll.registry().deregister(&mut r.socket);
        }
    }
}
