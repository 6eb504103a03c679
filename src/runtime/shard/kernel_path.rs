//! A shard's side of the kernel fast path (its drive is in `fastpath.rs`): it carries out the core's `FastPathAdd` /
//! `FastPathRemove` in the shared BPF maps and reads the kernel's counters back into the
//! core (at each status publish and sessions read, and once more at removal). It decides
//! nothing: which bindings go in is the core's call (`relay::fastpath_binding`).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::fastpath::{ChannelRoute, Counters, FastPath};
use crate::relay::KernelRoute;
use crate::relay::allocation::Traffic;

/// Route ids are the core's, per shard; the maps are shared, so the shard's index goes in
/// the top bits.
const SHARD_SHIFT: u32 = 48;

pub struct KernelPath {
    fastpath: Arc<Mutex<FastPath>>,
    shard: u64,
    /// Each UDP listener's address as clients' packets name it (None: not installable).
    listeners: Vec<Option<SocketAddr>>,
    /// What this shard installed, by the core's route id.
    routes: HashMap<u64, ChannelRoute>,
    /// Whether a failed map update was logged already (once per shard, not per binding).
    warned: bool,
}

fn traffic(c: Counters) -> Traffic {
    Traffic {
        bytes_to_peer: c.client_to_peer_bytes,
        packets_to_peer: c.client_to_peer_packets,
        bytes_to_client: c.peer_to_client_bytes,
        packets_to_client: c.peer_to_client_packets,
    }
}

impl KernelPath {
    pub fn new(
        fastpath: Arc<Mutex<FastPath>>,
        shard: usize,
        listeners: Vec<Option<SocketAddr>>,
    ) -> Self {
        KernelPath {
            fastpath,
            shard: shard as u64,
            listeners,
            routes: HashMap::new(),
            warned: false,
        }
    }

    fn lock(&self) -> MutexGuard<'_, FastPath> {
        self.fastpath.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn warn_once(&mut self, what: &str, e: &dyn std::fmt::Display) {
        if !std::mem::replace(&mut self.warned, true) {
            tracing::warn!(shard = self.shard, error = %e, "kernel fast path: {what} failed; those bindings stay on the socket path");
        }
    }

    /// Installs a route. One that cannot be installed (a listener without a specific
    /// address, a full map) stays on the socket path, which counts its packets itself.
    pub fn add(&mut self, r: &KernelRoute) {
        let Some(listener) = self
            .listeners
            .get(r.client.listener as usize)
            .copied()
            .flatten()
        else {
            return;
        };
        let route = ChannelRoute {
            id: (self.shard << SHARD_SHIFT) | r.id,
            client: r.client.addr,
            listener,
            channel: r.channel,
            relay: r.relay,
            peer: r.peer,
            client_next_hop: None,
            peer_next_hop: None,
        };
        let added = self.lock().add(&route);
        match added {
            Ok(()) => {
                self.routes.insert(r.id, route);
            }
            Err(e) => {
                // Take back whatever half of it went in.
                let _ = self.lock().remove(&route);
                self.warn_once("adding a binding", &e);
            }
        }
    }

    /// Removes a route; its counters as read after the removal (zero if never installed).
    pub fn remove(&mut self, id: u64) -> Traffic {
        let Some(route) = self.routes.remove(&id) else {
            return Traffic::default();
        };
        let removed = self.lock().remove(&route);
        match removed {
            Ok(c) => traffic(c),
            Err(e) => {
                self.warn_once("removing a binding", &e);
                Traffic::default()
            }
        }
    }

    /// The running totals of every route this shard installed.
    pub fn read(&mut self) -> Vec<(u64, Traffic)> {
        let mut fp = self.fastpath.lock().unwrap_or_else(|e| e.into_inner());
        (self.routes.iter())
            .filter_map(|(id, r)| fp.counters(r.id).ok().map(|c| (*id, traffic(c))))
            .collect()
    }
}
