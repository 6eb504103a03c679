//! One shard: a thread that owns a relay core, its listener sockets (SO_REUSEPORT, so the
//! kernel spreads clients over shards by 5-tuple) and the relay sockets of its port slice.
//! It is the only place that reads the clock for the core. Nothing here decides protocol.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::auth::Authenticator;
use crate::metrics::Metrics;
use crate::proto::channel_data;
use crate::relay::peer_policy::PeerPolicy;
use crate::relay::stats::DropReason;
use crate::relay::{ClientAction, ClientId, Command, PeerAction, Server, Transport};

use super::ShardStatus;
use super::session_log::SessionLogger;

const WAKER: Token = Token(usize::MAX);
/// Tokens below this are listeners; relay sockets are RELAY_BASE + slab key.
const RELAY_BASE: usize = 1 << 16;
/// Packets read from one socket before the loop looks at the others: fairness between a
/// busy relay and the listener that carries everyone's control traffic.
const BUDGET: usize = 64;
/// Largest UDP payload plus the ChannelData header written in front of it.
const BUF_LEN: usize = 65536 + channel_data::HEADER_LEN;
const SOCKET_BUFFER: usize = 4 << 20;

pub enum Control {
    Reconfigure(Box<(Authenticator, PeerPolicy)>),
    /// Publish a fresh snapshot now (a scrape is waiting for it).
    Publish,
    Shutdown,
}

struct RelaySocket {
    socket: UdpSocket,
    addr: SocketAddr,
}

pub struct Shard {
    pub index: usize,
    core: Server,
    poll: Poll,
    listeners: Vec<UdpSocket>,
    relays: Slab<RelaySocket>,
    /// Relay port -> slab key, per family: a direct index instead of a hash per packet.
    relay_v4: Vec<u32>,
    relay_v6: Vec<u32>,
    control: Receiver<Control>,
    status: Arc<ShardStatus>,
    sessions: SessionLogger,
    metrics: Arc<Metrics>,
}

const NONE: u32 = u32::MAX;

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

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Shard {
    pub fn new(
        index: usize,
        core: Server,
        listeners: Vec<std::net::UdpSocket>,
        control: Receiver<Control>,
        status: Arc<ShardStatus>,
        sessions: SessionLogger,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Shard, Arc<Waker>)> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut mio_listeners = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let mut l = UdpSocket::from_std(l);
            poll.registry()
                .register(&mut l, Token(i), Interest::READABLE)?;
            mio_listeners.push(l);
        }
        Ok((
            Shard {
                index,
                core,
                poll,
                listeners: mio_listeners,
                relays: Slab::new(),
                relay_v4: vec![NONE; 65536],
                relay_v6: vec![NONE; 65536],
                control,
                status,
                sessions,
                metrics,
            },
            waker,
        ))
    }

    pub fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut buf = vec![0u8; BUF_LEN];
        // Sockets that still had packets when their budget ran out.
        let mut ready: Vec<Token> = Vec::new();
        let mut next_publish = Instant::now();
        loop {
            let now = Instant::now();
            let timeout = if !ready.is_empty() {
                Duration::ZERO
            } else {
                let wake = self
                    .core
                    .poll_timeout()
                    .map_or(next_publish, |t| t.min(next_publish));
                wake.saturating_duration_since(now)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != ErrorKind::Interrupted
            {
                tracing::error!(shard = self.index, error = %e, "poll failed");
                self.status.set_running(false);
                return;
            }
            for ev in events.iter() {
                if ev.token() != WAKER && !ready.contains(&ev.token()) {
                    ready.push(ev.token());
                }
            }
            let now = Instant::now();
            let unix = unix_now();
            let mut i = 0;
            while i < ready.len() {
                let more = self.drain(ready[i], now, unix, &mut buf);
                if more {
                    i += 1;
                } else {
                    ready.swap_remove(i);
                }
            }
            match self.handle_control(now) {
                Ok(()) => {}
                Err(()) => return,
            }
            if self.core.poll_timeout().is_some_and(|t| t <= now) {
                self.core.handle_timeout(now);
                self.run_commands(now);
            }
            if now >= next_publish {
                self.status.publish(&self.core, now);
                next_publish = now + Duration::from_secs(1);
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
                Ok(Control::Publish) => self.status.publish(&self.core, now),
                Ok(Control::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.core.shutdown(now);
                    self.run_commands(now);
                    self.status.publish(&self.core, now);
                    self.status.set_running(false);
                    return Err(());
                }
                Err(TryRecvError::Empty) => return Ok(()),
            }
        }
    }

    /// Reads up to BUDGET packets from one socket. True when it may have more.
    fn drain(&mut self, token: Token, now: Instant, unix: u64, buf: &mut [u8]) -> bool {
        for _ in 0..BUDGET {
            let got = if token.0 < RELAY_BASE {
                self.listener_packet(token.0, now, unix, buf)
            } else {
                self.relay_packet(token.0 - RELAY_BASE, now, buf)
            };
            if !got {
                return false;
            }
        }
        true
    }

    /// One packet from a client. False when the socket is drained.
    fn listener_packet(&mut self, li: usize, now: Instant, unix: u64, buf: &mut [u8]) -> bool {
        let Some(listener) = self.listeners.get(li) else {
            return false;
        };
        let (n, from) = match listener.recv_from(buf) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            // ICMP errors surface here on some kernels; they concern one datagram only.
            Err(_) => return true,
        };
        let client = ClientId {
            transport: Transport::Udp,
            listener: li as u16,
            addr: from,
        };
        match self.core.handle_client_packet(now, unix, client, &buf[..n]) {
            ClientAction::Forward {
                relay,
                peer,
                payload,
            } => {
                let table = if relay.is_ipv4() {
                    &self.relay_v4
                } else {
                    &self.relay_v6
                };
                let key = table[relay.port() as usize];
                if key != NONE {
                    let sock = &self.relays[key as usize].socket;
                    if let Err(e) = sock.send_to(payload, peer) {
                        self.core.record_send_failure(send_drop_reason(&e));
                    }
                }
            }
            ClientAction::Handled => self.run_commands(now),
            ClientAction::Drop(_) => {}
        }
        true
    }

    /// One packet from a peer, read 4 bytes into `buf` so the ChannelData header can be
    /// written in front of it without a copy.
    fn relay_packet(&mut self, key: usize, now: Instant, buf: &mut [u8]) -> bool {
        let Some(relay) = self.relays.get(key) else {
            return false;
        };
        let h = channel_data::HEADER_LEN;
        let (n, from) = match relay.socket.recv_from(&mut buf[h..]) {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        };
        let relay_addr = relay.addr;
        match self
            .core
            .handle_peer_packet(now, relay_addr, from, &buf[h..h + n])
        {
            PeerAction::ChannelData { client, channel } => {
                channel_data::write_header(buf, channel, n);
                if let Some(l) = self.listeners.get(client.listener as usize)
                    && let Err(e) = l.send_to(&buf[..h + n], client.addr)
                {
                    self.core.record_send_failure(send_drop_reason(&e));
                }
            }
            PeerAction::Handled => self.run_commands(now),
            PeerAction::Drop(_) => {}
        }
        true
    }

    fn run_commands(&mut self, now: Instant) {
        while let Some(cmd) = self.core.poll_command() {
            match cmd {
                Command::SendToClient { client, data } => {
                    if let Some(l) = self.listeners.get(client.listener as usize)
                        && let Err(e) = l.send_to(&data, client.addr)
                    {
                        self.core.record_send_failure(send_drop_reason(&e));
                    }
                }
                Command::BindRelay { token, addr } => {
                    let ok = self.bind_relay(addr).is_ok();
                    self.core.relay_bound(now, token, addr, ok);
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
        let entry = self.relays.vacant_entry();
        let token = Token(RELAY_BASE + entry.key());
        self.poll
            .registry()
            .register(&mut socket, token, Interest::READABLE)?;
        let key = entry.key() as u32;
        entry.insert(RelaySocket { socket, addr });
        let table = if addr.is_ipv4() {
            &mut self.relay_v4
        } else {
            &mut self.relay_v6
        };
        table[addr.port() as usize] = key;
        Ok(())
    }

    fn release_relay(&mut self, addr: SocketAddr) {
        let table = if addr.is_ipv4() {
            &mut self.relay_v4
        } else {
            &mut self.relay_v6
        };
        let key = std::mem::replace(&mut table[addr.port() as usize], NONE);
        if key != NONE {
            let mut r = self.relays.remove(key as usize);
            let _ = self.poll.registry().deregister(&mut r.socket);
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
