//! A shard's relay sockets: the table the relay path finds them in by port (no hashing),
//! binding and releasing them as the core asks, and the client->peer path that queues a
//! client's payload on the right one (as a GSO run).

use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;

use mio::net::UdpSocket;
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::relay::{ClientAction, ClientId, Core, Time};

use super::io::gso::Run;
use super::io::sockets::udp_socket;
use super::socket_errors::record_dropped;
use super::tokens::RELAY_BASE;

/// No relay socket on this port.
const NONE: u32 = u32::MAX;

pub(super) struct RelaySocket {
    pub(super) socket: UdpSocket,
    pub(super) addr: SocketAddr,
}

/// This shard's relay sockets, found by port without hashing on the relay path.
pub(super) struct RelaySockets {
    pub(super) sockets: Slab<RelaySocket>,
    /// Relay port -> slab key, per family.
    v4: Vec<u32>,
    v6: Vec<u32>,
}

impl RelaySockets {
    pub(super) fn new() -> RelaySockets {
        RelaySockets {
            sockets: Slab::new(),
            v4: vec![NONE; 65536],
            v6: vec![NONE; 65536],
        }
    }

    fn table(&mut self, addr: SocketAddr) -> &mut Vec<u32> {
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

    /// Binds a relay socket at `addr` and registers it with the shard's poll.
    pub(super) fn bind(&mut self, registry: &Registry, addr: SocketAddr) -> std::io::Result<()> {
        self.adopt(registry, addr, udp_socket(addr, false)?)
    }

    /// The descriptor of the relay socket at `addr` (handover).
    pub(super) fn fd(&self, addr: SocketAddr) -> Option<std::os::fd::RawFd> {
        let key = self.key(addr);
        (key != NONE).then(|| self.sockets[key as usize].socket.as_raw_fd())
    }

    /// Registers a socket bound at `addr` (here, or by the previous process).
    pub(super) fn adopt(
        &mut self,
        registry: &Registry,
        addr: SocketAddr,
        std_sock: std::net::UdpSocket,
    ) -> std::io::Result<()> {
        let mut socket = UdpSocket::from_std(std_sock);
        let entry = self.sockets.vacant_entry();
        let token = Token(RELAY_BASE + entry.key());
        registry.register(&mut socket, token, Interest::READABLE)?;
        let key = entry.key() as u32;
        entry.insert(RelaySocket { socket, addr });
        self.table(addr)[addr.port() as usize] = key;
        Ok(())
    }

    pub(super) fn release(&mut self, registry: &Registry, addr: SocketAddr) {
        let key = std::mem::replace(&mut self.table(addr)[addr.port() as usize], NONE);
        if key != NONE {
            let mut r = self.sockets.remove(key as usize);
            let _ = registry.deregister(&mut r.socket);
        }
    }
}

/// Feeds the client packet at `buf[range]` to the core. A payload for a peer joins the
/// run (`buf` must stay as it is until the run is sent: the caller sends it before it
/// reuses or moves the buffer). True when the core queued commands (responses, relay
/// binds) for the caller to run; the run is sent before that, since a command may close
/// its relay socket.
pub(super) fn client_packet(
    core: &mut Core,
    relays: &RelaySockets,
    run: &mut Run,
    time: Time,
    client: ClientId,
    (buf, range): (&[u8], Range<usize>),
) -> bool {
    match core.handle_client_packet(time, client, &buf[range]) {
        ClientAction::Forward {
            relay,
            peer,
            payload,
        } => {
            let offset = payload.as_ptr() as usize - buf.as_ptr() as usize;
            relays.queue(core, run, buf, relay, peer, (offset, payload.len()));
            false
        }
        ClientAction::Handled => {
            relays.send_run(core, run, buf);
            true
        }
        ClientAction::Drop(_) => false,
    }
}
