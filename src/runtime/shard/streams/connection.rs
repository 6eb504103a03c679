//! A TCP or TLS client connection (RFC 8656 §3.1 stream framing): reads STUN messages and
//! padded ChannelData from a byte stream, and queues what goes back with a bound, so a
//! slow client loses packets instead of growing the server's memory.
//!
//! Input costs O(bytes): frames are read in place behind a consumed offset and the buffer
//! is compacted only when a read needs room, so pipelined small frames never shift the
//! rest of the buffer once per frame. The caller reads in bounded steps (`fill`) and
//! decides how much one connection may do per loop turn.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use super::proxy_header::{HeaderRead, ProxyError, Step};
use super::read_buf::ReadBuf;
use super::tls::TlsFailure;
use crate::proto::{STUN_HEADER_LEN, channel_data};
use crate::relay::ClientId;

/// Most bytes queued towards one client before new packets are dropped.
const MAX_QUEUED: usize = 1 << 20;

/// Why a connection ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it, or it idled out.
    Clean,
    /// I/O or framing error.
    Error,
    /// The TLS handshake failed; `detail` is rustls' reason, for the debug log.
    Tls { reason: TlsFailure, detail: String },
    /// A listed load balancer's connection with a PROXY v2 header that is not acceptable.
    Proxy(ProxyError),
}

impl Closed {
    fn tls(reason: TlsFailure, detail: impl Into<String>) -> Closed {
        Closed::Tls {
            reason,
            detail: detail.into(),
        }
    }
}

/// What a `fill` got.
#[derive(Debug, PartialEq, Eq)]
pub enum Fill {
    /// Some bytes (possibly none after a TLS record that carried no data).
    Data,
    /// Fewer bytes than there was room for: all the socket held. The poll is
    /// edge-triggered and reports bytes that come later, so the read that would only say
    /// "would block" is saved.
    Emptied,
    /// Nothing more until the socket is readable again.
    Blocked,
    /// The client finished sending.
    Eof,
}

/// What the first byte on a TLS listener said.
#[derive(Debug, PartialEq, Eq)]
pub enum Sniff {
    /// Nothing arrived yet.
    Waiting,
    Tls,
    /// STUN or ChannelData in the clear, accepted.
    Plain,
}

enum Mode {
    /// A TLS listener's connection before its first byte: a TLS ClientHello or plain STUN?
    Sniff(Arc<ServerConfig>),
    Plain,
    Tls(Box<ServerConnection>),
}

pub struct Conn {
    pub stream: TcpStream,
    pub client: ClientId,
    mode: Mode,
    /// From a `server.proxy_protocol` source, until its PROXY v2 header is read: the
    /// connection holds only a reserved place in the limits, and the core does not know it.
    proxy: Option<Box<HeaderRead>>,
    rbuf: ReadBuf,
    /// Plain TCP: bytes not yet written are `wbuf[wstart..]`. (rustls keeps its own
    /// buffer for TLS.)
    wbuf: Vec<u8>,
    wstart: usize,
    /// TLS: plaintext bytes handed to rustls since its buffer was last empty.
    tls_unsent: usize,
    /// TLS: the socket reached EOF; what rustls still holds is read out first.
    tls_eof: bool,
    pub accepted: Instant,
    /// When the last complete frame arrived: partial frames do not keep a connection.
    pub last_active: Instant,
    pub write_interest: bool,
    /// The socket may hold bytes: set by a readable event, cleared by a read that would
    /// block (the poll is edge-triggered, so this is the only memory of readiness).
    pub readable: bool,
    /// The client finished sending; what is buffered is still handled.
    pub eof: bool,
    /// Listed in the shard's ready / to-flush lists.
    pub queued: bool,
    pub dirty: bool,
}

/// Length of the next complete frame at the start of `buf`: Ok(None) when more bytes are
/// needed, Err when the stream cannot be TURN.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Closed> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let body = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let len = match buf[0] >> 6 {
        0 => STUN_HEADER_LEN + body,
        // Over streams ChannelData is padded to a multiple of 4 (RFC 8656 §12.5).
        1 => channel_data::padded_len(body),
        _ => return Err(Closed::Error),
    };
    Ok((buf.len() >= len).then_some(len))
}

/// Writes what rustls has to send. Ok(true) when everything went out.
fn flush_tls(tls: &mut ServerConnection, stream: &mut TcpStream) -> Result<bool, Closed> {
    while tls.wants_write() {
        match tls.write_tls(stream) {
            Ok(0) => return Err(Closed::Error),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Closed::Error),
        }
    }
    Ok(true)
}

/// `Conn::fill` on plain TCP: one read into the frame buffer.
#[inline]
fn fill_plain(stream: &mut TcpStream, rbuf: &mut ReadBuf) -> Result<Fill, Closed> {
    loop {
        let space = rbuf.space();
        let room = space.len();
        match stream.read(space) {
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) => {
                rbuf.filled(n);
                return Ok(if n < room { Fill::Emptied } else { Fill::Data });
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Fill::Blocked),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => return Err(Closed::Error),
        }
    }
}

/// `Conn::fill` on TLS: plaintext rustls already holds first; else one read of
/// ciphertext (rustls reads 4 kB at most), processed, and what it yields.
#[inline]
fn fill_tls(
    tls: &mut ServerConnection,
    stream: &mut TcpStream,
    rbuf: &mut ReadBuf,
    tls_eof: &mut bool,
) -> Result<Fill, Closed> {
    let mut fed = false;
    loop {
        match tls.reader().read(rbuf.space()) {
            // close_notify: the client ended the session.
            Ok(0) => return Ok(Fill::Eof),
            Ok(n) => {
                rbuf.filled(n);
                return Ok(Fill::Data);
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && *tls_eof => return Ok(Fill::Eof),
            // Records without application data (handshake): nothing yet.
            Err(e) if e.kind() == ErrorKind::WouldBlock && fed => return Ok(Fill::Data),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            // TCP closed without close_notify, after the last plaintext.
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(Fill::Eof),
            Err(_) => return Err(Closed::Error),
        }
        let handshaking = tls.is_handshaking();
        let eof = loop {
            match tls.read_tls(stream) {
                Ok(0) => break true,
                Ok(_) => break false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Fill::Blocked),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Closed::Error),
            }
        };
        if let Err(e) = tls.process_new_packets() {
            // Best effort: tell the client why (an alert) before closing.
            let _ = tls.write_tls(stream);
            return Err(if handshaking {
                Closed::tls(TlsFailure::of(&e), e.to_string())
            } else {
                Closed::Error
            });
        }
        if eof && tls.is_handshaking() {
            return Err(Closed::tls(
                TlsFailure::Closed,
                "connection closed during the handshake",
            ));
        }
        // The caller flushes handshake output (`wants_flush`).
        *tls_eof = eof;
        fed = true;
    }
}

impl Conn {
    /// `tls`: the listener's TLS config; the first byte decides whether it is used.
    /// `proxied`: a PROXY v2 header comes first.
    pub fn new(
        stream: TcpStream,
        client: ClientId,
        tls: Option<&Arc<ServerConfig>>,
        proxied: bool,
        now: Instant,
    ) -> Conn {
        Conn {
            stream,
            client,
            mode: tls.map_or(Mode::Plain, |c| Mode::Sniff(c.clone())),
            proxy: proxied.then(Box::default),
            rbuf: ReadBuf::default(),
            wbuf: Vec::new(),
            wstart: 0,
            tls_unsent: 0,
            tls_eof: false,
            accepted: now,
            last_active: now,
            write_interest: false,
            readable: true,
            eof: false,
            queued: false,
            dirty: false,
        }
    }

    pub fn awaiting_proxy_header(&self) -> bool {
        self.proxy.is_some()
    }

    /// Reads what it can of the PROXY v2 header, and nothing after it. Done, the header
    /// stays pending until `proxy_header_taken`.
    pub fn read_proxy_header(&mut self) -> Result<Step, Closed> {
        match &mut self.proxy {
            Some(h) => h.read(&mut self.stream).map_err(Closed::Proxy),
            None => Ok(Step::Done(None)),
        }
    }

    /// The header's address is in use: from now on the connection is served as usual.
    pub fn proxy_header_taken(&mut self) {
        self.proxy = None;
    }

    pub fn sniffing(&self) -> bool {
        matches!(self.mode, Mode::Sniff(_))
    }

    /// Still before the end of a TLS handshake (or before the first byte on a TLS
    /// listener).
    pub fn handshaking(&self) -> bool {
        match &self.mode {
            Mode::Sniff(_) => true,
            Mode::Plain => false,
            Mode::Tls(t) => t.is_handshaking(),
        }
    }

    /// Looks at (without taking) the first byte on a TLS listener: a TLS handshake record
    /// (0x16) goes to rustls; STUN (top bits 00) or ChannelData (0x40-0x7F) is served as
    /// plain TURN over TCP when `accept_plain`, as coturn does (some clients, e.g.
    /// libnice, send plaintext to a `turns:` port).
    pub fn sniff(&mut self, accept_plain: bool) -> Result<Sniff, Closed> {
        let mut b = [0u8; 1];
        loop {
            match self.stream.peek(&mut b) {
                // Closed before saying anything: a port probe, not a handshake.
                Ok(0) => return Err(Closed::Clean),
                Ok(_) => break,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(Sniff::Waiting),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Err(Closed::Error),
            }
        }
        let Mode::Sniff(cfg) = &self.mode else {
            return Ok(Sniff::Tls);
        };
        match b[0] {
            0x16 => {
                let mut c = ServerConnection::new(cfg.clone())
                    .map_err(|e| Closed::tls(TlsFailure::Other, e.to_string()))?;
                // Bounded by `tls_unsent` instead, which never splits a message.
                c.set_buffer_limit(None);
                self.mode = Mode::Tls(Box::new(c));
                Ok(Sniff::Tls)
            }
            0x00..=0x7F if accept_plain => {
                self.mode = Mode::Plain;
                Ok(Sniff::Plain)
            }
            0x00..=0x7F => Err(Closed::tls(
                TlsFailure::PlaintextRefused,
                "plain STUN on a TLS listener (server.tls_accepts_plain = false)",
            )),
            other => Err(Closed::tls(
                TlsFailure::BadClientHello,
                format!("first byte {other:#04x} is not a TLS handshake record"),
            )),
        }
    }

    /// Reads once (at most READ_CHUNK bytes of plaintext) into the frame buffer. TLS:
    /// ciphertext is fed to rustls only when its plaintext is used up, so its buffers
    /// stay bounded too.
    pub fn fill(&mut self) -> Result<Fill, Closed> {
        match &mut self.mode {
            Mode::Sniff(_) => Ok(Fill::Blocked),
            Mode::Plain => fill_plain(&mut self.stream, &mut self.rbuf),
            Mode::Tls(tls) => fill_tls(tls, &mut self.stream, &mut self.rbuf, &mut self.tls_eof),
        }
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&self) -> Result<Option<&[u8]>, Closed> {
        let data = self.rbuf.data();
        Ok(frame_len(data)?.map(|len| &data[..len]))
    }

    /// The whole read buffer, which `frame_in_buffer` ranges index.
    pub fn read_buffer(&self) -> &[u8] {
        self.rbuf.bytes()
    }

    /// The frame of `len` bytes that `next_frame` returned (always at the front of the
    /// unread data), as the read buffer and its place in it.
    pub fn frame_in_buffer(&self, len: usize) -> (&[u8], std::ops::Range<usize>) {
        (self.rbuf.bytes(), self.rbuf.front(len))
    }

    /// The buffer starts with a (possibly incomplete) ChannelData message.
    pub fn starts_with_channel_data(&self) -> bool {
        let data = self.rbuf.data();
        data.len() >= channel_data::HEADER_LEN && channel_data::is_channel_data(data)
    }

    /// Marks `len` bytes at the front as handled: an offset, not a copy.
    pub fn consume(&mut self, len: usize) {
        self.rbuf.consume(len);
    }

    /// Queues `parts` (written back to back) whole, or not at all: false when the queue
    /// is full and the message was dropped. `flush` writes it.
    pub fn queue(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match &mut self.mode {
            Mode::Tls(tls) => {
                // Our own bound, checked before writing: rustls's buffer limit would take
                // part of a message and cut the stream's framing.
                if self.tls_unsent + len > MAX_QUEUED {
                    return false;
                }
                let mut w = tls.writer();
                for p in parts {
                    if w.write_all(p).is_err() {
                        return false;
                    }
                }
                self.tls_unsent += len;
            }
            // Nothing is sent before the first byte decides the protocol.
            Mode::Sniff(_) => return false,
            Mode::Plain => {
                if self.wbuf.len() - self.wstart + len > MAX_QUEUED {
                    return false;
                }
                for p in parts {
                    self.wbuf.extend_from_slice(p);
                }
            }
        }
        true
    }

    /// Something is waiting to be written.
    pub fn wants_flush(&self) -> bool {
        match &self.mode {
            Mode::Tls(tls) => tls.wants_write(),
            Mode::Sniff(_) => false,
            Mode::Plain => self.wstart < self.wbuf.len(),
        }
    }

    /// Writes what is queued. Ok(true) when everything went out.
    pub fn flush(&mut self) -> Result<bool, Closed> {
        match &mut self.mode {
            Mode::Tls(tls) => {
                let done = flush_tls(tls, &mut self.stream)?;
                if done {
                    self.tls_unsent = 0;
                }
                Ok(done)
            }
            Mode::Sniff(_) => Ok(true),
            Mode::Plain => {
                let mut result = Ok(true);
                while self.wstart < self.wbuf.len() {
                    match self.stream.write(&self.wbuf[self.wstart..]) {
                        Ok(0) => return Err(Closed::Error),
                        Ok(n) => self.wstart += n,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {
                            result = Ok(false);
                            break;
                        }
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Err(Closed::Error),
                    }
                }
                // Reclaim the written front once it is at least half the buffer: each
                // byte is moved at most once on average.
                if self.wstart == self.wbuf.len() {
                    self.wbuf.clear();
                    self.wstart = 0;
                } else if self.wstart >= self.wbuf.len() - self.wstart {
                    self.wbuf.drain(..self.wstart);
                    self.wstart = 0;
                }
                result
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Closed, frame_len};

    #[test]
    fn stream_framing_of_stun_and_padded_channel_data() {
        assert_eq!(frame_len(&[0, 1, 0]), Ok(None));
        let stun = [0u8, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42];
        assert_eq!(frame_len(&stun), Ok(None), "needs 24 bytes");
        let mut full = vec![0u8; 24];
        full[..8].copy_from_slice(&stun);
        assert_eq!(frame_len(&full), Ok(Some(24)));
        // ChannelData with 5 payload bytes takes 4 + 8 on a stream.
        let mut cd = vec![0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0];
        assert_eq!(frame_len(&cd), Ok(None));
        cd.push(0);
        assert_eq!(frame_len(&cd), Ok(Some(12)));
        assert_eq!(frame_len(&[0x80, 0, 0, 0]), Err(Closed::Error));
        assert_eq!(frame_len(&[0xC0, 0, 0, 0]), Err(Closed::Error));
    }
}
