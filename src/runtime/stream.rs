//! A TCP or TLS client connection (RFC 8656 §3.1 stream framing): reads STUN messages and
//! padded ChannelData from a byte stream, and queues what goes back with a bound, so a
//! slow client loses packets instead of growing the server's memory.

use std::io::{ErrorKind, Read, Write};
use std::sync::Arc;
use std::time::Instant;

use mio::net::TcpStream;
use rustls::{ServerConfig, ServerConnection};

use crate::proto::{STUN_HEADER_LEN, channel_data};
use crate::relay::ClientId;

/// Most bytes queued towards one client before new packets are dropped.
const MAX_QUEUED: usize = 1 << 20;
/// How much to read at a time.
const READ_CHUNK: usize = 16 * 1024;

pub struct Conn {
    pub stream: TcpStream,
    pub client: ClientId,
    tls: Option<Box<ServerConnection>>,
    /// Plaintext received and not yet framed.
    rbuf: Vec<u8>,
    /// Plain TCP: bytes not yet written. (rustls keeps its own buffer for TLS.)
    wbuf: Vec<u8>,
    /// TLS: plaintext bytes handed to rustls since its buffer was last empty.
    tls_unsent: usize,
    pub last_active: Instant,
    pub write_interest: bool,
}

/// Why a connection ends.
#[derive(Debug, PartialEq, Eq)]
pub enum Closed {
    /// The client closed it.
    Clean,
    /// I/O, TLS or framing error.
    Error,
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

impl Conn {
    pub fn new(
        stream: TcpStream,
        client: ClientId,
        tls: Option<&Arc<ServerConfig>>,
        now: Instant,
    ) -> Result<Conn, rustls::Error> {
        let tls = match tls {
            Some(cfg) => {
                let mut c = ServerConnection::new(cfg.clone())?;
                // Bounded by `tls_unsent` instead, which never splits a message.
                c.set_buffer_limit(None);
                Some(Box::new(c))
            }
            None => None,
        };
        Ok(Conn {
            stream,
            client,
            tls,
            rbuf: Vec::new(),
            wbuf: Vec::new(),
            tls_unsent: 0,
            last_active: now,
            write_interest: false,
        })
    }

    /// Reads everything the socket has into the frame buffer.
    pub fn read(&mut self, now: Instant) -> Result<(), Closed> {
        let mut eof = false;
        match &mut self.tls {
            None => loop {
                let start = self.rbuf.len();
                self.rbuf.resize(start + READ_CHUNK, 0);
                match self.stream.read(&mut self.rbuf[start..]) {
                    Ok(0) => {
                        self.rbuf.truncate(start);
                        eof = true;
                        break;
                    }
                    Ok(n) => self.rbuf.truncate(start + n),
                    Err(e) => {
                        self.rbuf.truncate(start);
                        match e.kind() {
                            ErrorKind::WouldBlock => break,
                            ErrorKind::Interrupted => continue,
                            _ => return Err(Closed::Error),
                        }
                    }
                }
            },
            Some(tls) => {
                // Ciphertext in, records processed, plaintext out, in turns: rustls
                // refuses more ciphertext while its plaintext buffer is full.
                loop {
                    let mut drained = false;
                    match tls.read_tls(&mut self.stream) {
                        Ok(0) => eof = true,
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => drained = true,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(_) => return Err(Closed::Error),
                    }
                    if tls.process_new_packets().is_err() {
                        // Best effort: tell the client why (an alert) before closing.
                        let _ = tls.write_tls(&mut self.stream);
                        return Err(Closed::Error);
                    }
                    loop {
                        let start = self.rbuf.len();
                        self.rbuf.resize(start + READ_CHUNK, 0);
                        match tls.reader().read(&mut self.rbuf[start..]) {
                            Ok(n) => {
                                self.rbuf.truncate(start + n);
                                if n == 0 {
                                    // close_notify: the client ended the session.
                                    eof = true;
                                    break;
                                }
                            }
                            Err(e) => {
                                self.rbuf.truncate(start);
                                if e.kind() == ErrorKind::WouldBlock {
                                    break;
                                }
                                return Err(Closed::Error);
                            }
                        }
                    }
                    if eof || drained {
                        break;
                    }
                }
                // The handshake itself produces bytes to send.
                if self.flush().is_err() {
                    return Err(Closed::Error);
                }
            }
        }
        self.last_active = now;
        if eof {
            return Err(Closed::Clean);
        }
        Ok(())
    }

    /// The next complete frame, if the buffer holds one.
    pub fn next_frame(&self) -> Result<Option<&[u8]>, Closed> {
        Ok(frame_len(&self.rbuf)?.map(|len| &self.rbuf[..len]))
    }

    /// The buffer starts with a (possibly incomplete) ChannelData message.
    pub fn starts_with_channel_data(&self) -> bool {
        self.rbuf.len() >= channel_data::HEADER_LEN && channel_data::is_channel_data(&self.rbuf)
    }

    pub fn consume(&mut self, len: usize) {
        self.rbuf.drain(..len);
    }

    /// Queues `parts` (written back to back) whole, or not at all: false when the queue
    /// is full and the message was dropped. `flush` writes it.
    pub fn queue(&mut self, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match &mut self.tls {
            None => {
                if self.wbuf.len() + len > MAX_QUEUED {
                    return false;
                }
                for p in parts {
                    self.wbuf.extend_from_slice(p);
                }
            }
            Some(tls) => {
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
        }
        true
    }

    /// Writes what is queued. Ok(true) when everything went out.
    pub fn flush(&mut self) -> Result<bool, Closed> {
        match &mut self.tls {
            None => {
                while !self.wbuf.is_empty() {
                    match self.stream.write(&self.wbuf) {
                        Ok(0) => return Err(Closed::Error),
                        Ok(n) => {
                            self.wbuf.drain(..n);
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Err(Closed::Error),
                    }
                }
                Ok(true)
            }
            Some(tls) => {
                while tls.wants_write() {
                    match tls.write_tls(&mut self.stream) {
                        Ok(0) => return Err(Closed::Error),
                        Ok(_) => {}
                        Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(_) => return Err(Closed::Error),
                    }
                }
                self.tls_unsent = 0;
                Ok(true)
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
