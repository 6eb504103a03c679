//! A shard's TCP/TLS client connections: accepting (within `ConnLimiter`'s global and
//! per-source limits), reading in bounded turns, the first-byte sniff on TLS listeners,
//! deadlines for handshakes and idle connections, and batched writes.
//!
//! Fairness: a readable connection handles at most FRAME_BUDGET frames and READ_BUDGET
//! reads per loop turn, then waits in `ready` for the next turn, so one client sending
//! megabytes of pipelined requests shares the shard with everyone else.

pub mod connection;
pub mod limiter;
pub mod proxy_header;
mod read_buf;
pub mod table;
pub mod tls;

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use mio::{Interest, Token};

use super::Shard;
use super::relay_sockets::client_packet;
use super::tokens::{CONN_BASE, TCP_LISTENER_BASE};
use crate::metrics::labels::{ProxyError, TlsFailure};
use crate::relay::stats::DropReason;
use crate::relay::{ClientId, Transport};
use connection::{Closed, Conn, Fill};

/// Frames one connection may hand to the core per loop turn.
const FRAME_BUDGET: usize = 64;
/// Reads (of up to 16 kB each) one connection may do per loop turn.
const READ_BUDGET: usize = 4;
/// How soon to try accepting again after running out of file descriptors: the listener
/// reports no new readiness for connections already waiting.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

impl Shard {
    /// Accepts one connection from TCP listener `li`. False when the listener has no more
    /// or must wait (out of file descriptors: retried on a timer).
    pub(super) fn accept(&mut self, li: usize, now: Instant) -> bool {
        let Some((listener, transport)) = self.tcp.get(li) else {
            return false;
        };
        let transport = *transport;
        let (mut stream, addr) = match listener.accept() {
            Ok(r) => r,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            // One connection went away before we took it; others may wait.
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionAborted
                        | ErrorKind::ConnectionReset
                        | ErrorKind::Interrupted
                ) =>
            {
                return true;
            }
            Err(e) => {
                // EMFILE, ENFILE, ENOBUFS...: the waiting connections stay queued and the
                // listener will not signal them again, so look again soon.
                if !self.streams.accept_failing {
                    tracing::warn!(shard = self.index, error = %e, "accept failed; retrying every 100 ms");
                    self.streams.accept_failing = true;
                }
                self.streams.accept_retry = Some(now + ACCEPT_RETRY);
                return false;
            }
        };
        self.streams.accept_failing = false;
        let Some(proxied) = self.streams.admit(addr) else {
            return true; // dropping the stream closes it
        };
        let _ = stream.set_nodelay(true);
        let client = ClientId {
            transport,
            listener: li as u16,
            addr,
        };
        let tls = if transport == Transport::Tls {
            self.streams.tls.as_ref()
        } else {
            None
        };
        if transport == Transport::Tls && tls.is_none() {
            self.streams.release(proxied, addr.ip());
            return true;
        }
        let entry = self.streams.conns.vacant_entry();
        let key = entry.key();
        if self
            .poll
            .registry()
            .register(&mut stream, Token(CONN_BASE + key), Interest::READABLE)
            .is_err()
        {
            self.streams.release(proxied, addr.ip());
            return true;
        }
        entry.insert(Conn::new(stream, client, tls, proxied, now));
        if !proxied {
            // A proxied connection gets its client id from its header.
            self.streams.by_client.insert(client, key);
        }
        // Bytes may have arrived with the handshake: edge-triggered, so look now.
        self.streams.mark_ready(key);
        true
    }

    /// A readiness event: writes go out at once, reads wait for this turn's service.
    pub(super) fn conn_event(&mut self, key: usize, readable: bool, writable: bool) {
        if writable {
            self.flush_conn(key);
        }
        if readable && let Some(c) = self.streams.conns.get_mut(key) {
            c.readable = true;
            self.streams.mark_ready(key);
        }
    }

    /// Gives each ready connection one turn.
    pub(super) fn serve_connections(&mut self, now: Instant) {
        let mut i = 0;
        while i < self.streams.ready.len() {
            let key = self.streams.ready[i];
            if self.serve_conn(key, now) {
                i += 1;
            } else {
                self.streams.ready.swap_remove(i);
                if let Some(c) = self.streams.conns.get_mut(key) {
                    c.queued = false;
                }
            }
        }
    }

    /// One turn of a connection: frames to the core, reads when it needs bytes, within
    /// the budgets. True when it has more to do.
    fn serve_conn(&mut self, key: usize, now: Instant) -> bool {
        let (mut frames, mut reads) = (0, 0);
        let outcome = loop {
            let Some(conn) = self.streams.conns.get_mut(key) else {
                return false;
            };
            if conn.awaiting_proxy_header() || conn.sniffing() {
                match self.streams.open(key) {
                    // Decided: the next pass reads the TLS sniff, or serves it as TLS or
                    // plain TCP.
                    Ok(true) => continue,
                    Ok(false) => break Ok(false),
                    Err(c) => break Err(c),
                }
            }
            // ChannelData from a client without an allocation is not TURN (an HTTP request
            // looks like one): close now instead of waiting for a 20 kB "payload".
            if conn.starts_with_channel_data() && !self.core.has_allocation(&conn.client) {
                break Err(Closed::Error);
            }
            match conn.next_frame() {
                Err(c) => break Err(c),
                Ok(Some(_)) if frames == FRAME_BUDGET => break Ok(true),
                Ok(Some(frame)) => {
                    frames += 1;
                    let (len, client) = (frame.len(), conn.client);
                    let packet = conn.frame_in_buffer(len);
                    let (core, relays, run) = (&mut self.core, &self.relays, &mut self.gso_run);
                    let commands = client_packet(core, relays, run, self.time, client, packet);
                    let conn = &mut self.streams.conns[key];
                    conn.consume(len);
                    // Only whole frames count as activity: a trickle of bytes does not.
                    conn.last_active = now;
                    if commands {
                        self.run_commands();
                    }
                    continue;
                }
                Ok(None) => {}
            }
            if conn.eof {
                break Err(Closed::Clean);
            }
            if !conn.readable {
                break Ok(false);
            }
            if reads == READ_BUDGET {
                break Ok(true);
            }
            reads += 1;
            // A read may move the buffer the run points into.
            self.relays
                .send_run(&mut self.core, &mut self.gso_run, conn.read_buffer());
            match conn.fill() {
                Ok(Fill::Data) => {}
                Ok(Fill::Blocked | Fill::Emptied) => conn.readable = false,
                Ok(Fill::Eof) => conn.eof = true,
                Err(c) => break Err(c),
            }
            if conn.wants_flush() {
                // TLS handshake output.
                self.streams.mark_dirty(key);
            }
        };
        if let Some(conn) = self.streams.conns.get(key) {
            self.relays
                .send_run(&mut self.core, &mut self.gso_run, conn.read_buffer());
        }
        match outcome {
            Ok(more) => more,
            Err(c) => {
                self.close_conn(key, c);
                false
            }
        }
    }

    /// Writes every connection's queued output (once per loop turn, not per message).
    pub(super) fn flush_streams(&mut self) {
        while let Some(key) = self.streams.dirty.pop() {
            if let Some(c) = self.streams.conns.get_mut(key) {
                c.dirty = false;
                self.flush_conn(key);
            }
        }
    }

    fn flush_conn(&mut self, key: usize) {
        let Some(conn) = self.streams.conns.get_mut(key) else {
            return;
        };
        match conn.flush() {
            Ok(done) => self.set_write_interest(key, !done),
            Err(c) => self.close_conn(key, c),
        }
    }

    fn set_write_interest(&mut self, key: usize, on: bool) {
        let Some(conn) = self.streams.conns.get_mut(key) else {
            return;
        };
        if conn.write_interest == on {
            return;
        }
        let interest = if on {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        if self
            .poll
            .registry()
            .reregister(&mut conn.stream, Token(CONN_BASE + key), interest)
            .is_ok()
        {
            conn.write_interest = on;
        }
    }

    /// Queues a message on a stream client's connection, written at the end of the turn;
    /// a full queue drops it.
    pub(super) fn send_stream(&mut self, client: ClientId, parts: &[&[u8]]) {
        let Some(&key) = self.streams.by_client.get(&client) else {
            self.core.record_send_failure(DropReason::SendError);
            return;
        };
        if !self.streams.conns[key].queue(parts) {
            self.core.record_send_failure(DropReason::BufferFull);
        }
        self.streams.mark_dirty(key);
    }

    pub(super) fn close_conn(&mut self, key: usize, how: Closed) {
        let Some(mut conn) = self.streams.conns.try_remove(key) else {
            return;
        };
        let _ = self.poll.registry().deregister(&mut conn.stream);
        if self.streams.closed(&conn, &how) {
            self.core
                .client_disconnected(self.time, conn.client, how == Closed::Clean);
            self.run_commands();
        }
    }

    /// Once a second: a PROXY header and a TLS handshake get `tls_handshake_timeout` to
    /// finish, and a connection with no allocation gets `idle_timeout` between complete
    /// frames.
    pub(super) fn close_idle_connections(&mut self, now: Instant) {
        let limits = &self.streams.limits;
        let expired: Vec<(usize, Closed)> = self
            .streams
            .conns
            .iter()
            .filter_map(|(k, c)| {
                let late = now.saturating_duration_since(c.accepted) > limits.tls_handshake_timeout;
                let how = if c.awaiting_proxy_header() {
                    late.then_some(Closed::Proxy(ProxyError::Timeout))
                } else if c.handshaking() && late {
                    Some(Closed::Tls {
                        reason: TlsFailure::Timeout,
                        detail: "handshake not finished in time".into(),
                    })
                } else {
                    let idle = !self.core.has_allocation(&c.client)
                        && now.saturating_duration_since(c.last_active) > limits.idle_timeout;
                    idle.then_some(Closed::Clean)
                };
                how.map(|how| (k, how))
            })
            .collect();
        for (k, how) in expired {
            self.close_conn(k, how);
        }
    }

    /// After an accept failed for lack of resources, puts the listeners back on the
    /// ready list when the retry is due.
    pub(super) fn retry_accepts(&mut self, now: Instant, ready: &mut Vec<Token>) {
        if self.streams.accept_retry.is_some_and(|t| t <= now) {
            self.streams.accept_retry = None;
            for i in 0..self.tcp.len() {
                let t = Token(TCP_LISTENER_BASE + i);
                if !ready.contains(&t) {
                    ready.push(t);
                }
            }
        }
    }
}
