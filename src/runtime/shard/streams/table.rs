//! A shard's stream connections as a table: the connections by slab key and by client,
//! the ones with work left for the next turn (`ready`) or output queued (`dirty`), the
//! limits they are held to, and the counters the shard publishes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use rustls::ServerConfig;
use slab::Slab;

use super::connection::{Closed, Conn, Sniff};
use super::limiter::ConnLimiter;
use super::proxy_header::{ProxyError, Step};
use crate::metrics::snapshot::StreamCounters;
use crate::relay::{ClientId, Transport};

/// What a stream connection is held to.
pub struct ConnLimits {
    /// Shared by every shard: the connection limits are for the whole server.
    pub limiter: Arc<ConnLimiter>,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub tls_accepts_plain: bool,
    /// Sources whose connections begin with a PROXY v2 header (`server.proxy_protocol`).
    pub proxy_protocol: Vec<IpNet>,
}

/// A shard's stream connections and the state of their turns.
pub struct Connections {
    pub(super) conns: Slab<Conn>,
    pub(super) by_client: HashMap<ClientId, usize>,
    /// Certificate for connections accepted from now on.
    pub tls: Option<Arc<ServerConfig>>,
    pub(super) limits: ConnLimits,
    pub counters: StreamCounters,
    /// Connections that may have more to read or frames to handle (slab keys; a stale key
    /// is dropped when served).
    pub(super) ready: Vec<usize>,
    /// Connections with queued output, written at the end of the loop turn.
    pub(super) dirty: Vec<usize>,
    /// When to try the listeners again after accept failed for lack of resources.
    pub(super) accept_retry: Option<Instant>,
    /// Accept is failing: warn once, not on every retry.
    pub(super) accept_failing: bool,
}

impl Connections {
    pub fn new(tls: Option<Arc<ServerConfig>>, limits: ConnLimits) -> Connections {
        Connections {
            conns: Slab::new(),
            by_client: HashMap::new(),
            tls,
            limits,
            counters: StreamCounters::default(),
            ready: Vec::new(),
            dirty: Vec::new(),
            accept_retry: None,
            accept_failing: false,
        }
    }

    /// Some connection has work left from an earlier turn (or output queued after this
    /// turn's flush, e.g. by a timer): poll without waiting.
    pub fn busy(&self) -> bool {
        !self.ready.is_empty() || !self.dirty.is_empty()
    }

    /// The earliest time the loop must wake for the connections.
    pub fn wake_at(&self, wake: Instant) -> Instant {
        self.accept_retry.map_or(wake, |t| t.min(wake))
    }

    pub fn counts(&self) -> [u64; Transport::COUNT] {
        let mut n = [0; Transport::COUNT];
        for (_, c) in self.conns.iter() {
            n[c.client.transport as usize] += 1;
        }
        n
    }

    pub(super) fn mark_dirty(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.dirty
        {
            c.dirty = true;
            self.dirty.push(key);
        }
    }

    /// The first-byte sniff of a TLS listener's connection `key`: Ok(true) once it is
    /// TLS or plain TCP, Ok(false) while nothing has arrived.
    fn sniff(&mut self, key: usize) -> Result<bool, Closed> {
        let conn = &mut self.conns[key];
        match conn.sniff(self.limits.tls_accepts_plain)? {
            Sniff::Waiting => {
                conn.readable = false;
                Ok(false)
            }
            Sniff::Tls => Ok(true),
            Sniff::Plain => {
                // Served and counted as what it is: TURN over TCP.
                tracing::debug!(client = %conn.client.addr, "plain STUN on a TLS listener");
                let old = conn.client;
                conn.client.transport = Transport::Tcp;
                let new = conn.client;
                self.by_client.remove(&old);
                self.by_client.insert(new, key);
                Ok(true)
            }
        }
    }

    /// Takes a new connection's place in the limits: for a `server.proxy_protocol` source
    /// only a place in the total, until its header names the client. Some(proxied), or
    /// None when refused (counted).
    pub(super) fn admit(&mut self, addr: SocketAddr) -> Option<bool> {
        let ip = addr.ip().to_canonical();
        let proxied = self.limits.proxy_protocol.iter().any(|n| n.contains(&ip));
        let limiter = &self.limits.limiter;
        let taken = match proxied {
            true => limiter.reserve(),
            false => limiter.acquire(addr.ip()),
        };
        if let Err(why) = taken {
            self.counters.refused[why as usize] += 1;
            tracing::debug!(client = %addr, reason = why.label(), "connection refused: too many connections");
            return None;
        }
        Some(proxied)
    }

    /// Gives back the place `admit` took for a connection from `ip` (its client's, once a
    /// PROXY header named it).
    pub(super) fn release(&self, proxied_pending: bool, ip: IpAddr) {
        match proxied_pending {
            true => self.limits.limiter.release_reserved(),
            false => self.limits.limiter.release(ip),
        }
    }

    /// Before a connection's first frame: its PROXY v2 header, then the first-byte sniff
    /// of a TLS listener. Ok(true) once it may go on, Ok(false) while bytes are missing.
    pub(super) fn open(&mut self, key: usize) -> Result<bool, Closed> {
        let conn = &mut self.conns[key];
        if conn.awaiting_proxy_header() {
            return match conn.read_proxy_header()? {
                Step::Waiting => {
                    conn.readable = false;
                    Ok(false)
                }
                Step::Closed => Err(Closed::Clean),
                Step::Done(addr) => self.take_proxy_header(key, addr).map(|()| true),
            };
        }
        self.sniff(key)
    }

    /// The header named `addr` (None: LOCAL, the socket's own peer address stays): the
    /// connection takes its client's place in the limits and its client id.
    fn take_proxy_header(&mut self, key: usize, addr: Option<SocketAddr>) -> Result<(), Closed> {
        let conn = &mut self.conns[key];
        let balancer = conn.client.addr;
        let mut client = conn.client;
        client.addr = addr.unwrap_or(balancer);
        if self.by_client.contains_key(&client) {
            return Err(Closed::Proxy(ProxyError::Duplicate));
        }
        if let Err(why) = self.limits.limiter.claim(client.addr.ip()) {
            self.counters.refused[why as usize] += 1;
            tracing::debug!(client = %client.addr, %balancer, reason = why.label(), "connection refused: too many connections");
            return Err(Closed::Clean);
        }
        tracing::debug!(client = %client.addr, %balancer, "PROXY v2 header read");
        conn.client = client;
        conn.proxy_header_taken();
        self.by_client.insert(client, key);
        Ok(())
    }

    /// Counts why a connection closed and gives back its place in the limits and its
    /// client id. True when the core knows the connection (its PROXY header, if any, was
    /// taken).
    pub(super) fn closed(&mut self, conn: &Conn, how: &Closed) -> bool {
        match how {
            Closed::Tls { reason, detail } => {
                self.counters.tls_handshake_failures[*reason as usize] += 1;
                tracing::debug!(client = %conn.client.addr, reason = reason.label(), error = %detail, "TLS handshake failed");
            }
            Closed::Proxy(reason) => {
                self.counters.proxy_protocol_errors[*reason as usize] += 1;
                tracing::debug!(balancer = %conn.client.addr, reason = reason.label(), "PROXY v2 header refused");
            }
            Closed::Clean | Closed::Error => {}
        }
        let pending = conn.awaiting_proxy_header();
        self.release(pending, conn.client.addr.ip());
        if !pending {
            self.by_client.remove(&conn.client);
        }
        !pending
    }

    pub(super) fn mark_ready(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.queued
        {
            c.queued = true;
            self.ready.push(key);
        }
    }
}
