//! What a shard publishes for the rest of the process: its latest snapshot (metrics,
//! sessions), whether it runs, its heartbeat (systemd's watchdog) and whether its relay
//! binds keep failing (/readyz).

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::metrics::snapshot::{ShardSnapshot, StreamCounters};
use crate::relay::{AddrFamily, Core, Transport};

#[derive(Debug, Default)]
pub struct ShardStatus {
    snapshot: Mutex<ShardSnapshot>,
    /// Bumped by every publish, so a scrape can wait for a fresh one.
    generation: AtomicU64,
    /// False once the shard thread has stopped.
    running: AtomicBool,
    /// Bumped by every turn of the shard's loop (at least once a second): the watchdog
    /// pings systemd only while every shard's count moves.
    heartbeat: AtomicU64,
    /// Relay binds failed in a row for a reason other than a port in use (address not
    /// local, port not permitted): at the threshold every recent Allocate failed.
    bind_failures: AtomicU64,
}

/// Consecutive failed relay binds after which a shard counts as unable to relay.
pub const BIND_FAILURES_NOT_READY: u64 = 8;

impl ShardStatus {
    pub fn publish(
        &self,
        core: &Core,
        now: Instant,
        connections: [u64; Transport::COUNT],
        streams: StreamCounters,
    ) {
        let mut snap = ShardSnapshot {
            counters: core.counters().clone(),
            connections,
            streams,
            fastpath_packets: core.fastpath_packets(),
            ..Default::default()
        };
        let ports = core.relay_port_usage();
        snap.relay_ports_in_use = ports.map(|(used, _)| used);
        snap.relay_ports_total = ports.map(|(_, total)| total);
        for a in core.allocations() {
            let t = a.client.transport as usize;
            for (fam, relay) in AddrFamily::ALL.into_iter().zip([a.relay_v4, a.relay_v6]) {
                if relay.is_some() {
                    snap.allocations[t][fam as usize] += 1;
                }
            }
            for (ip, _) in a.permissions.iter().filter(|(_, e)| **e > now) {
                snap.permissions[t][AddrFamily::of(*ip) as usize] += 1;
            }
            for b in a.channels.values().filter(|b| b.expires > now) {
                snap.channels[t][AddrFamily::of(b.peer.ip()) as usize] += 1;
            }
        }
        *self.snapshot.lock().unwrap_or_else(|e| e.into_inner()) = snap;
        self.generation.fetch_add(1, Ordering::Release);
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::Release);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    pub fn beat(&self) {
        self.heartbeat.fetch_add(1, Ordering::Relaxed);
    }

    pub fn heartbeat(&self) -> u64 {
        self.heartbeat.load(Ordering::Relaxed)
    }

    /// Records a relay bind's outcome; logs once when the shard starts failing every bind.
    pub fn note_bind(&self, shard: usize, addr: SocketAddr, result: &std::io::Result<()>) {
        match result {
            Ok(()) => self.bind_failures.store(0, Ordering::Relaxed),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
            Err(e) => {
                let n = self.bind_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n == BIND_FAILURES_NOT_READY {
                    tracing::error!(shard, relay = %addr, error = %e, "relay sockets cannot be bound: Allocates fail with 508 and /readyz reports 503");
                }
            }
        }
    }

    pub fn binds_failing(&self) -> bool {
        self.bind_failures.load(Ordering::Relaxed) >= BIND_FAILURES_NOT_READY
    }
}
