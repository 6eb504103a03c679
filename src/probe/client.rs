//! A small blocking TURN client over UDP, TCP or TLS with timeouts: just what the probe
//! sends, encoded and decoded with the `stun` crate. It speaks only the public protocol, so
//! it works against any TURN server.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;

pub enum Conn {
    Udp { sock: UdpSocket, server: SocketAddr },
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

/// What arrives from the server.
pub enum Frame {
    Stun(Message),
    ChannelData { channel: u16, payload: Vec<u8> },
}

#[derive(Debug)]
pub enum ReqError {
    /// No answer before the deadline.
    Timeout,
    /// The connection failed or the server closed it.
    Io(String),
}

impl std::fmt::Display for ReqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqError::Timeout => f.write_str("no answer"),
            ReqError::Io(e) => f.write_str(e),
        }
    }
}

pub struct Client {
    conn: Conn,
    /// Bytes read from a stream and not yet framed.
    rbuf: Vec<u8>,
    /// Frames that arrived while waiting for something else.
    pending: VecDeque<Frame>,
    pub timeout: Duration,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
}

/// The error code and reason of an error response.
pub fn error_of(m: &Message) -> Option<(u16, String)> {
    let mut e = ErrorCodeAttribute::default();
    e.get_from(m).ok()?;
    Some((e.code.0, String::from_utf8_lossy(&e.reason).into_owned()))
}

pub fn is_success(m: &Message) -> bool {
    m.typ.class == CLASS_SUCCESS_RESPONSE
}

fn io(e: std::io::Error) -> ReqError {
    match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ReqError::Timeout,
        _ => ReqError::Io(e.to_string()),
    }
}

impl Client {
    pub fn new(conn: Conn, timeout: Duration) -> Client {
        Client {
            conn,
            rbuf: Vec::new(),
            pending: VecDeque::new(),
            timeout,
            username: String::new(),
            password: String::new(),
            realm: String::new(),
            nonce: String::new(),
        }
    }

    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.conn {
            Conn::Udp { sock, .. } => sock.local_addr().ok(),
            Conn::Tcp(s) => s.local_addr().ok(),
            Conn::Tls(s) => s.sock.local_addr().ok(),
        }
    }

    fn send_raw(&mut self, b: &[u8]) -> Result<(), ReqError> {
        match &mut self.conn {
            Conn::Udp { sock, server } => sock.send_to(b, *server).map(|_| ()).map_err(io),
            Conn::Tcp(s) => s.write_all(b).map_err(io),
            Conn::Tls(s) => s.write_all(b).and_then(|_| s.flush()).map_err(io),
        }
    }

    /// Sends ChannelData on `channel` (padded to 4 bytes on streams, RFC 8656 §12.5).
    pub fn send_channel_data(&mut self, channel: u16, payload: &[u8]) -> Result<(), ReqError> {
        let mut b = Vec::with_capacity(payload.len() + 8);
        b.extend_from_slice(&channel.to_be_bytes());
        b.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        b.extend_from_slice(payload);
        if !matches!(self.conn, Conn::Udp { .. }) {
            b.resize(b.len().div_ceil(4) * 4, 0);
        }
        self.send_raw(&b)
    }

    /// One whole frame from a datagram or the stream buffer, if there is one.
    fn parse_frame(b: &[u8], stream: bool) -> Option<(Frame, usize)> {
        if b.len() < 4 {
            return None;
        }
        let len = u16::from_be_bytes([b[2], b[3]]) as usize;
        if b[0] & 0xC0 == 0x40 {
            let total = if stream {
                (4 + len).div_ceil(4) * 4
            } else {
                4 + len
            };
            if b.len() < 4 + len || (stream && b.len() < total) {
                return None;
            }
            let channel = u16::from_be_bytes([b[0], b[1]]);
            let frame = Frame::ChannelData {
                channel,
                payload: b[4..4 + len].to_vec(),
            };
            return Some((frame, if stream { total } else { b.len() }));
        }
        let total = 20 + len;
        if b.len() < total {
            return None;
        }
        let mut m = Message::new();
        m.raw = b[..total].to_vec();
        // An undecodable message is skipped rather than ending the probe.
        let frame = match m.decode() {
            Ok(()) => Frame::Stun(m),
            Err(_) => Frame::ChannelData {
                channel: 0,
                payload: Vec::new(),
            },
        };
        Some((frame, total))
    }

    /// The next frame from the server before `deadline`.
    pub fn recv(&mut self, deadline: Instant) -> Result<Frame, ReqError> {
        if let Some(f) = self.pending.pop_front() {
            return Ok(f);
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReqError::Timeout);
            }
            let left = left.max(Duration::from_millis(1));
            let mut buf = [0u8; 4096];
            match &mut self.conn {
                Conn::Udp { sock, server } => {
                    sock.set_read_timeout(Some(left)).map_err(io)?;
                    let (n, from) = sock.recv_from(&mut buf).map_err(io)?;
                    if from != *server {
                        continue;
                    }
                    if let Some((f, _)) = Self::parse_frame(&buf[..n], false) {
                        return Ok(f);
                    }
                    continue;
                }
                Conn::Tcp(s) => {
                    if let Some((f, used)) = Self::parse_frame(&self.rbuf, true) {
                        self.rbuf.drain(..used);
                        return Ok(f);
                    }
                    s.set_read_timeout(Some(left)).map_err(io)?;
                    let n = s.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        return Err(ReqError::Io("the server closed the connection".into()));
                    }
                    self.rbuf.extend_from_slice(&buf[..n]);
                }
                Conn::Tls(s) => {
                    if let Some((f, used)) = Self::parse_frame(&self.rbuf, true) {
                        self.rbuf.drain(..used);
                        return Ok(f);
                    }
                    s.sock.set_read_timeout(Some(left)).map_err(io)?;
                    let n = s.read(&mut buf).map_err(io)?;
                    if n == 0 {
                        return Err(ReqError::Io("the server closed the connection".into()));
                    }
                    self.rbuf.extend_from_slice(&buf[..n]);
                }
            }
        }
    }

    /// A request with `attrs`; signed with the long-term credential when `signed`.
    pub fn build(&self, method: Method, attrs: &[Box<dyn Setter>], signed: bool) -> Message {
        let mut m = Message::new();
        m.set_type(MessageType::new(method, CLASS_REQUEST));
        let _ = m.new_transaction_id();
        m.write_header();
        for a in attrs {
            let _ = a.add_to(&mut m);
        }
        if signed {
            for (t, v) in [
                (ATTR_USERNAME, &self.username),
                (ATTR_REALM, &self.realm),
                (ATTR_NONCE, &self.nonce),
            ] {
                let _ = TextAttribute::new(t, v.clone()).add_to(&mut m);
            }
            let _ = MessageIntegrity::new_long_term_integrity(
                self.username.clone(),
                self.realm.clone(),
                self.password.clone(),
            )
            .add_to(&mut m);
        }
        let _ = FINGERPRINT.add_to(&mut m);
        m
    }

    /// Sends `m` and waits for its response, retransmitting over UDP (RFC 8489 §6.2.1:
    /// 500 ms doubling). Other frames that arrive meanwhile are kept for `recv`.
    pub fn transact(&mut self, m: &Message) -> Result<Message, ReqError> {
        let deadline = Instant::now() + self.timeout;
        let udp = matches!(self.conn, Conn::Udp { .. });
        let mut rto = Duration::from_millis(500);
        let mut held = Vec::new();
        let result = loop {
            if let Err(e) = self.send_raw(&m.raw) {
                break Err(e);
            }
            let wait_until = if udp {
                (Instant::now() + rto).min(deadline)
            } else {
                deadline
            };
            rto *= 2;
            let got = loop {
                match self.recv(wait_until) {
                    Ok(Frame::Stun(r)) if r.transaction_id == m.transaction_id => break Ok(r),
                    Ok(other) => held.push(other),
                    Err(e) => break Err(e),
                }
            };
            match got {
                Ok(r) => break Ok(r),
                Err(ReqError::Timeout) if Instant::now() < deadline => continue,
                Err(e) => break Err(e),
            }
        };
        self.pending.extend(held);
        result
    }

    /// Remembers the REALM and NONCE a 401/438 carries.
    pub fn learn_nonce(&mut self, r: &Message) {
        if let Ok(realm) = TextAttribute::get_from_as(r, ATTR_REALM) {
            self.realm = realm.text;
        }
        if let Ok(nonce) = TextAttribute::get_from_as(r, ATTR_NONCE) {
            self.nonce = nonce.text;
        }
    }

    /// A signed request; a stale nonce (438) is renewed and the request sent once more.
    pub fn signed(
        &mut self,
        method: Method,
        attrs: &[Box<dyn Setter>],
    ) -> Result<Message, ReqError> {
        let r = self.transact(&self.build(method, attrs, true))?;
        if error_of(&r).is_some_and(|(c, _)| c == 438) {
            self.learn_nonce(&r);
            return self.transact(&self.build(method, attrs, true));
        }
        Ok(r)
    }
}
