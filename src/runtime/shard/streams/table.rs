//! A shard's stream connections as a table: the connections by slab key and by client,
//! the ones with work left for the next turn (`ready`) or output queued (`dirty`), the
//! limits they are held to, and the counters the shard publishes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use slab::Slab;

use super::connection::{Closed, Conn, Sniff};
use super::limiter::ConnLimiter;
use crate::metrics::snapshot::StreamCounters;
use crate::relay::{ClientId, Transport};

/// What a stream connection is held to.
pub struct ConnLimits {
    /// Shared by every shard: the connection limits are for the whole server.
    pub limiter: Arc<ConnLimiter>,
    pub idle_timeout: Duration,
    pub tls_handshake_timeout: Duration,
    pub tls_accepts_plain: bool,
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
    pub(super) fn sniff(&mut self, key: usize) -> Result<bool, Closed> {
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

    pub(super) fn mark_ready(&mut self, key: usize) {
        if let Some(c) = self.conns.get_mut(key)
            && !c.queued
        {
            c.queued = true;
            self.ready.push(key);
        }
    }
}
