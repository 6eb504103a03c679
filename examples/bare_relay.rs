//! The floor under the benchmark's UDP ChannelData figures: a "relay" that does only the
//! socket work turnpike's relay path cannot avoid, with examples/loadgen as its load. One
//! thread, mio's edge-triggered poll, a UDP listener drained with recvmmsg, one socket
//! per allocation sending each client datagram to its peer with one sendto, relay
//! sockets drained with recvmmsg and their datagrams framed as ChannelData into one
//! sendmmsg batch towards the clients (turnpike's batch code, GSO off: the burst-free
//! pattern). TCP client legs: one read per readiness into a buffer, frames cut in place,
//! each connection's ChannelData out in one write per poll round. No authentication, no
//! permissions, no lifetimes, no metrics, no GSO runs, no TLS: it answers just enough TURN
//! (401 then success for Allocate, success for ChannelBind and Refresh) for loadgen's
//! channel mode to set up.
//! NOT a server: it relays for anyone. Loopback only; for scripts/bench_profile.sh.
//!   cargo run --release --example bare_relay -- 127.0.0.1:3478
use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use stun::attributes::*;
use stun::error_code::{CODE_UNAUTHORIZED, ErrorCodeAttribute};
use stun::message::*;
use stun::textattrs::TextAttribute;
use turn::proto::channum::ChannelNumber;
use turn::proto::peeraddr::PeerAddress;
use turn::proto::relayaddr::RelayedAddress;
use turnpike::runtime::shard::io::batch::{BATCH, Batch};

const UDP: Token = Token(0);
const TCP: Token = Token(1);
const RELAY_BASE: usize = 16;
const CONN_BASE: usize = 1 << 30;

/// A client: its UDP address, or its TCP connection's key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Client {
    Udp(SocketAddr),
    Tcp(usize),
}

struct Relay {
    socket: UdpSocket,
    client: Client,
    channel: u16,
    peer: Option<SocketAddr>,
}

struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    have: usize,
    wbuf: Vec<u8>,
}

#[derive(Default)]
struct Bare {
    relays: Vec<Option<Relay>>,
    by_client: HashMap<Client, usize>,
    conns: Vec<Option<Conn>>,
    dirty: Vec<usize>,
}

fn udp(addr: SocketAddr) -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    // As turnpike's sockets (runtime::shard::io::sockets::SOCKET_BUFFER).
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true).unwrap();
    s.bind(&addr.into()).unwrap();
    s.into()
}

fn register(poll: &Poll, fd: i32, token: Token, interest: Interest) {
    poll.registry()
        .register(&mut SourceFd(&fd), token, interest)
        .unwrap();
}

impl Bare {
    /// ChannelData from `client`: its payload goes to the peer from the relay socket.
    fn channel_data(&self, client: Client, frame: &[u8]) {
        let n = u16::from_be_bytes([frame[2], frame[3]]) as usize;
        if let Some(&key) = self.by_client.get(&client)
            && let Some(Relay {
                socket,
                peer: Some(peer),
                ..
            }) = &self.relays[key]
            && let Some(data) = frame.get(4..4 + n)
        {
            let _ = socket.send_to(data, *peer);
        }
    }

    /// The answer to a STUN request, or None for anything else.
    fn answer(&mut self, req: &[u8], client: Client, poll: &Poll) -> Option<Vec<u8>> {
        let mut m = Message::new();
        m.raw = req.to_vec();
        m.decode().ok()?;
        let mut r = Message::new();
        r.transaction_id = m.transaction_id;
        let ok = MessageType::new(m.typ.method, CLASS_SUCCESS_RESPONSE);
        if m.typ.method == METHOD_ALLOCATE {
            if TextAttribute::get_from_as(&m, ATTR_USERNAME).is_err() {
                r.set_type(MessageType::new(METHOD_ALLOCATE, CLASS_ERROR_RESPONSE));
                r.write_header();
                ErrorCodeAttribute {
                    code: CODE_UNAUTHORIZED,
                    reason: b"Unauthorized".to_vec(),
                }
                .add_to(&mut r)
                .ok()?;
                for (t, v) in [(ATTR_REALM, "bare"), (ATTR_NONCE, "0")] {
                    TextAttribute::new(t, v.into()).add_to(&mut r).ok()?;
                }
                return Some(r.raw);
            }
            let relays = &mut self.relays;
            let key = *self.by_client.entry(client).or_insert_with(|| {
                let socket = udp("127.0.0.1:0".parse().unwrap());
                let token = Token(RELAY_BASE + relays.len());
                register(poll, socket.as_raw_fd(), token, Interest::READABLE);
                relays.push(Some(Relay {
                    socket,
                    client,
                    channel: 0,
                    peer: None,
                }));
                relays.len() - 1
            });
            let addr = self.relays[key].as_ref()?.socket.local_addr().ok()?;
            r.set_type(ok);
            r.write_header();
            RelayedAddress {
                ip: addr.ip(),
                port: addr.port(),
            }
            .add_to(&mut r)
            .ok()?;
            return Some(r.raw);
        }
        let key = *self.by_client.get(&client)?;
        if m.typ.method == METHOD_CHANNEL_BIND {
            let (mut ch, mut pa) = (ChannelNumber::default(), PeerAddress::default());
            ch.get_from(&m).ok()?;
            pa.get_from(&m).ok()?;
            let relay = self.relays[key].as_mut()?;
            relay.channel = ch.0;
            relay.peer = Some(SocketAddr::new(pa.ip, pa.port));
        } else if m.typ.method == METHOD_REFRESH {
            // loadgen only refreshes to delete.
            if let Some(relay) = self.relays[key].take() {
                let _ = poll
                    .registry()
                    .deregister(&mut SourceFd(&relay.socket.as_raw_fd()));
            }
            self.by_client.remove(&client);
        } else {
            return None;
        }
        r.set_type(ok);
        r.write_header();
        Some(r.raw)
    }

    /// Reads until the socket is drained; every whole frame is served at once.
    fn read_conn(&mut self, key: usize, poll: &Poll) {
        loop {
            let Some(c) = self.conns[key].as_mut() else {
                return;
            };
            let room = c.rbuf.len() - c.have;
            let n = match c.stream.read(&mut c.rbuf[c.have..]) {
                Ok(0) => return self.close(key, poll),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return self.close(key, poll),
            };
            c.have += n;
            let mut off = 0;
            loop {
                let c = self.conns[key].as_ref().unwrap();
                let b = &c.rbuf[off..c.have];
                if b.len() < 4 {
                    break;
                }
                let len = u16::from_be_bytes([b[2], b[3]]) as usize;
                let channel = b[0] & 0xc0 == 0x40;
                let total = if channel {
                    4 + len.div_ceil(4) * 4
                } else {
                    20 + len
                };
                if b.len() < total {
                    break;
                }
                // The frame is copied out only for STUN (setup), never for ChannelData.
                if channel {
                    self.channel_data(Client::Tcp(key), b);
                } else {
                    let req = b[..total].to_vec();
                    if let Some(r) = self.answer(&req, Client::Tcp(key), poll) {
                        self.queue(key, &r);
                    }
                }
                off += total;
            }
            let c = self.conns[key].as_mut().unwrap();
            c.rbuf.copy_within(off..c.have, 0);
            c.have -= off;
            if n < room {
                return; // a short read drained the socket
            }
        }
    }

    fn queue(&mut self, key: usize, frame: &[u8]) {
        if let Some(c) = self.conns[key].as_mut() {
            if c.wbuf.is_empty() {
                self.dirty.push(key);
            }
            c.wbuf.extend_from_slice(frame);
        }
    }

    fn flush(&mut self, poll: &Poll) {
        while let Some(key) = self.dirty.pop() {
            let Some(c) = self.conns[key].as_mut() else {
                continue;
            };
            match c.stream.write(&c.wbuf) {
                Ok(n) => {
                    c.wbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => self.close(key, poll),
            }
        }
    }

    /// Accepts every waiting TCP connection.
    fn accept(&mut self, tcp: &TcpListener, poll: &Poll) {
        while let Ok((stream, _)) = tcp.accept() {
            stream.set_nonblocking(true).unwrap();
            stream.set_nodelay(true).unwrap();
            let key = self.conns.len();
            let both = Interest::READABLE | Interest::WRITABLE;
            register(poll, stream.as_raw_fd(), Token(CONN_BASE + key), both);
            self.conns.push(Some(Conn {
                stream,
                rbuf: vec![0; 16384],
                have: 0,
                wbuf: Vec::new(),
            }));
            self.read_conn(key, poll);
        }
    }

    /// Relay socket `r` is readable: its datagrams go to its client as ChannelData (UDP
    /// ones in `out`, sent at the end of the poll round).
    #[inline]
    fn relay_to_client(&mut self, r: usize, from_peer: &mut Batch, out: &mut Batch, lfd: RawFd) {
        let Some(Some(relay)) = self.relays.get(r) else {
            return;
        };
        let (fd, client, channel) = (relay.socket.as_raw_fd(), relay.client, relay.channel);
        while let Ok(n @ 1..) = from_peer.recv(fd) {
            for k in 0..n {
                let (slot, len, _) = from_peer.slot(k);
                slot[..2].copy_from_slice(&channel.to_be_bytes());
                slot[2..4].copy_from_slice(&(len as u16).to_be_bytes());
                match client {
                    Client::Udp(to) => {
                        out.push(&[&slot[..4 + len]], to);
                        if out.is_full() {
                            out.flush(lfd);
                        }
                    }
                    Client::Tcp(key) => {
                        // ChannelData over TCP is padded to 4 bytes.
                        let padded = (4 + len).div_ceil(4) * 4;
                        slot[4 + len..padded].fill(0);
                        self.queue(key, &slot[..padded]);
                    }
                }
            }
            if n < BATCH {
                break;
            }
        }
    }

    fn close(&mut self, key: usize, poll: &Poll) {
        if let Some(c) = self.conns[key].take() {
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&c.stream.as_raw_fd()));
        }
        if let Some(r) = self.by_client.remove(&Client::Tcp(key))
            && let Some(relay) = self.relays[r].take()
        {
            let _ = poll
                .registry()
                .deregister(&mut SourceFd(&relay.socket.as_raw_fd()));
        }
    }
}

fn main() {
    let addr: SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3478".into())
        .parse()
        .expect("listen address");
    assert!(
        addr.ip().is_loopback(),
        "bare_relay relays for anyone: loopback only"
    );
    let listener = udp(addr);
    let lfd = listener.as_raw_fd();
    let tcp = TcpListener::bind(addr).unwrap();
    tcp.set_nonblocking(true).unwrap();
    let mut poll = Poll::new().unwrap();
    register(&poll, lfd, UDP, Interest::READABLE);
    register(&poll, tcp.as_raw_fd(), TCP, Interest::READABLE);
    let mut bare = Bare::default();
    let (mut inb, mut out) = (Batch::default(), Batch::default());
    // Peer datagrams land 4 bytes in, behind room for the ChannelData header.
    let mut from_peer = Batch::with_headroom(4);
    let mut events = Events::with_capacity(1024);
    loop {
        poll.poll(&mut events, None).unwrap();
        for ev in events.iter() {
            let t = ev.token().0;
            if t == UDP.0 {
                while let Ok(n @ 1..) = inb.recv(lfd) {
                    for k in 0..n {
                        let (slot, len, from) = inb.slot(k);
                        let Some(from) = from else { continue };
                        let b = &slot[..len];
                        if len >= 4 && b[0] & 0xc0 == 0x40 {
                            bare.channel_data(Client::Udp(from), b);
                        } else if let Some(r) = bare.answer(b, Client::Udp(from), &poll) {
                            let _ = listener.send_to(&r, from);
                        }
                    }
                    if n < BATCH {
                        break;
                    }
                }
            } else if t == TCP.0 {
                bare.accept(&tcp, &poll);
            } else if t >= CONN_BASE {
                let key = t - CONN_BASE;
                if ev.is_writable() && !bare.dirty.contains(&key) {
                    bare.dirty.push(key);
                }
                if ev.is_readable() {
                    bare.read_conn(key, &poll);
                }
            } else {
                bare.relay_to_client(t - RELAY_BASE, &mut from_peer, &mut out, lfd);
            }
        }
        out.flush(lfd);
        bare.flush(&poll);
    }
}
