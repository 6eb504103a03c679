//! A shard's sockets: creating listeners and relay sockets, the relay-socket table the
//! relay path looks ports up in, and what a socket error means for the loop.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Interest, Token};
use slab::Slab;

use crate::relay::Core;
use crate::relay::stats::DropReason;

use super::gso::Run;
use super::shard::{NONE, RELAY_BASE, SOCKET_BUFFER, Shard};

pub(super) struct RelaySocket {
    pub(super) socket: UdpSocket,
    pub(super) addr: SocketAddr,
}

/// This shard's relay sockets, found by port without hashing on the relay path.
pub(super) struct RelaySockets {
    pub(super) sockets: Slab<RelaySocket>,
    /// Relay port -> slab key, per family.
    pub(super) v4: Vec<u32>,
    pub(super) v6: Vec<u32>,
}

impl RelaySockets {
    pub(super) fn table(&mut self, addr: SocketAddr) -> &mut Vec<u32> {
        if addr.is_ipv4() {
            &mut self.v4
        } else {
            &mut self.v6
        }
    }

    /// Queues the payload at `(offset, len)` of `buf` for `peer` from relay socket
    /// `relay`, sending the run before it first when it cannot join it.
    pub(super) fn queue(
        &self,
        core: &mut Core,
        run: &mut Run,
        buf: &[u8],
        relay: SocketAddr,
        peer: SocketAddr,
        (offset, len): (usize, usize),
    ) {
        let key = self.key(relay);
        if key == NONE {
            return;
        }
        if !run.fits(key, peer, len) {
            self.send_run(core, run, buf);
        }
        run.push(key, peer, offset, len);
    }

    /// Sends the queued run (its datagrams lie in `buf`), counting what was dropped.
    pub(super) fn send_run(&self, core: &mut Core, run: &mut Run, buf: &[u8]) {
        if run.is_empty() {
            return;
        }
        let Some(relay) = self.sockets.get(run.key as usize) else {
            return run.clear();
        };
        let out = run.send(relay.socket.as_raw_fd(), buf);
        record_dropped(core, out.failed, out.blocked);
    }

    fn key(&self, relay: SocketAddr) -> u32 {
        let table = if relay.is_ipv4() { &self.v4 } else { &self.v6 };
        table[relay.port() as usize]
    }
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
pub(super) fn keep_draining(e: &std::io::Error) -> bool {
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

/// Counts the datagrams a batched send dropped: refused, or a full socket buffer.
pub(super) fn record_dropped(core: &mut Core, failed: usize, blocked: usize) {
    for _ in 0..failed {
        core.record_send_failure(DropReason::SendError);
    }
    for _ in 0..blocked {
        core.record_send_failure(DropReason::BufferFull);
    }
}

pub(super) fn send_drop_reason(e: &std::io::Error) -> DropReason {
    if e.kind() == ErrorKind::WouldBlock {
        DropReason::BufferFull
    } else {
        DropReason::SendError
    }
}

impl Shard {
    pub(super) fn bind_relay(&mut self, addr: SocketAddr) -> std::io::Result<()> {
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

    pub(super) fn release_relay(&mut self, addr: SocketAddr) {
        let key = std::mem::replace(&mut self.relays.table(addr)[addr.port() as usize], NONE);
        if key != NONE {
            let mut r = self.relays.sockets.remove(key as usize);
            let _ = self.poll.registry().deregister(&mut r.socket);
        }
    }
}
