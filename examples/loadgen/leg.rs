//! A client's leg to the server: a UDP socket, or a TCP or TLS stream carrying STUN and
//! ChannelData back to back, with the stream framing and buffering that needs.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use stun::message::Message;

use crate::args::{Args, Transport};

/// A load socket with 4 MB buffers (what turnpike gives its own): a default 208 kB one
/// overflows whenever this process is descheduled for a few ms on a busy machine, and
/// that loss would be blamed on the server.
pub fn load_socket(ip: IpAddr) -> UdpSocket {
    load_socket_at((ip, 0).into())
}

pub fn load_socket_at(at: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind(at).expect("socket (ulimit -n? port taken?)");
    let size: libc::c_int = 4 << 20;
    for opt in [libc::SO_RCVBUFFORCE, libc::SO_SNDBUFFORCE] {
        // SAFETY: a plain int option on a socket this function owns. Without
        // CAP_NET_ADMIN it fails and the default stays (the drops are still reported).
        unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                &size as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            );
        }
    }
    s
}

/// The echo peers' sockets (`--peers`, at `--peer`), made inside `--peer-netns` when
/// given: a socket stays in the namespace it was made in, so a thread that joins it
/// makes them and this process stays in the clients' namespace.
pub fn peer_sockets(a: &Args) -> Vec<UdpSocket> {
    let port = |i: usize| match a.peer_port {
        0 => 0,
        p => p.checked_add(i as u16).expect("--peer port + --peers"),
    };
    let make = || {
        (0..a.peers)
            .map(|i| load_socket_at((a.peer_ip, port(i)).into()))
            .collect()
    };
    let Some(ns) = &a.peer_netns else {
        return make();
    };
    std::thread::scope(|s| {
        s.spawn(|| {
            let path = format!("/run/netns/{ns}");
            let fd = std::fs::File::open(&path).expect("--peer-netns");
            // SAFETY: setns on a namespace fd this thread holds; it moves only this thread.
            let rc = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", io::Error::last_os_error());
            make()
        })
        .join()
        .unwrap()
    })
}

/// The client's leg to the server. Streams carry STUN and ChannelData back to back.
pub enum Leg {
    Udp(UdpSocket),
    Stream {
        tcp: TcpStream,
        tls: Option<Box<rustls::ClientConnection>>,
        rbuf: Vec<u8>,
        wbuf: Vec<u8>,
    },
}

/// Length of the frame at the start of `b` on a stream, once it is all there.
fn frame_len(b: &[u8]) -> Option<usize> {
    if b.len() < 4 {
        return None;
    }
    let len = u16::from_be_bytes([b[2], b[3]]) as usize;
    let total = if b[0] & 0xc0 == 0x40 {
        4 + len.div_ceil(4) * 4
    } else {
        20 + len
    };
    (b.len() >= total).then_some(total)
}

impl Leg {
    pub fn connect(a: &Args, tls: &Option<Arc<rustls::ClientConfig>>) -> Leg {
        match a.transport {
            Transport::Udp => {
                let s = load_socket(a.client_ip());
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                Leg::Udp(s)
            }
            Transport::Tcp | Transport::Tls => {
                let mut tcp = TcpStream::connect(a.server).expect("connect");
                tcp.set_nodelay(true).unwrap();
                tcp.set_read_timeout(Some(Duration::from_millis(2000)))
                    .unwrap();
                let tls = tls.as_ref().map(|cfg| {
                    let name = rustls::pki_types::ServerName::IpAddress(a.server.ip().into());
                    let mut c = rustls::ClientConnection::new(cfg.clone(), name).unwrap();
                    while c.is_handshaking() {
                        c.complete_io(&mut tcp).expect("TLS handshake");
                    }
                    Box::new(c)
                });
                Leg::Stream {
                    tcp,
                    tls,
                    rbuf: Vec::with_capacity(65536),
                    wbuf: Vec::with_capacity(65536),
                }
            }
        }
    }

    pub fn set_nonblocking(&self) {
        match self {
            Leg::Udp(s) => s.set_nonblocking(true).unwrap(),
            Leg::Stream { tcp, .. } => tcp.set_nonblocking(true).unwrap(),
        }
    }

    /// Queues a frame on a stream and writes what the socket takes. False when the
    /// stream is backed up (the frame is not queued).
    pub fn stream_send(&mut self, frame: &[u8]) -> bool {
        let Leg::Stream { tcp, tls, wbuf, .. } = self else {
            unreachable!()
        };
        match tls {
            Some(c) => {
                if c.wants_write() && flush_tls(c, tcp) && c.wants_write() {
                    return false;
                }
                c.writer().write_all(frame).unwrap();
                flush_tls(c, tcp);
            }
            None => {
                if wbuf.len() > 32 * 1024 {
                    flush_tcp(tcp, wbuf);
                    if wbuf.len() > 32 * 1024 {
                        return false;
                    }
                }
                wbuf.extend_from_slice(frame);
                flush_tcp(tcp, wbuf);
            }
        }
        true
    }

    pub fn stream_flush(&mut self) {
        if let Leg::Stream { tcp, tls, wbuf, .. } = self {
            match tls {
                Some(c) => {
                    flush_tls(c, tcp);
                }
                None => flush_tcp(tcp, wbuf),
            }
        }
    }

    /// Reads what is there and calls `f` with each whole frame. Err on a blocking
    /// socket's timeout.
    pub fn stream_recv(&mut self, mut f: impl FnMut(&[u8])) -> io::Result<()> {
        let Leg::Stream { tcp, tls, rbuf, .. } = self else {
            unreachable!()
        };
        let mut tmp = [0u8; 16384];
        let res = match tls {
            Some(c) => match c.read_tls(tcp) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {
                    c.process_new_packets().map_err(io::Error::other)?;
                    loop {
                        match c.reader().read(&mut tmp) {
                            Ok(0) => break,
                            Ok(n) => rbuf.extend_from_slice(&tmp[..n]),
                            Err(_) => break,
                        }
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            },
            None => match tcp.read(&mut tmp) {
                Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => {
                    rbuf.extend_from_slice(&tmp[..n]);
                    Ok(())
                }
                Err(e) => Err(e),
            },
        };
        let mut off = 0;
        while let Some(n) = frame_len(&rbuf[off..]) {
            f(&rbuf[off..off + n]);
            off += n;
        }
        rbuf.drain(..off);
        res
    }
}

fn flush_tcp(tcp: &mut TcpStream, wbuf: &mut Vec<u8>) {
    let mut off = 0;
    while off < wbuf.len() {
        match tcp.write(&wbuf[off..]) {
            Ok(n) if n > 0 => off += n,
            _ => break,
        }
    }
    wbuf.drain(..off);
}

/// Writes rustls's pending records; true when the socket would block.
fn flush_tls(c: &mut rustls::ClientConnection, tcp: &mut TcpStream) -> bool {
    while c.wants_write() {
        match c.write_tls(tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
            Err(e) => panic!("TLS write: {e}"),
        }
    }
    false
}

/// Sends request `m` and waits for its answer (5 tries over UDP).
pub fn exchange(leg: &mut Leg, server: SocketAddr, m: &Message) -> Message {
    let matches = |b: &[u8]| {
        let mut r = Message::new();
        r.raw = b.to_vec();
        (r.decode().is_ok() && r.transaction_id == m.transaction_id).then_some(r)
    };
    for _ in 0..5 {
        match leg {
            Leg::Udp(sock) => {
                sock.send_to(&m.raw, server).unwrap();
                let mut buf = [0u8; 1500];
                if let Ok((n, _)) = sock.recv_from(&mut buf)
                    && let Some(r) = matches(&buf[..n])
                {
                    return r;
                }
            }
            Leg::Stream { .. } => {
                leg.stream_send(&m.raw);
                let mut got = None;
                while got.is_none() {
                    leg.stream_recv(|b| {
                        if got.is_none() {
                            got = matches(b);
                        }
                    })
                    .expect("stream setup");
                }
                return got.unwrap();
            }
        }
    }
    panic!("no answer from {server}");
}
