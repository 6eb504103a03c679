//! The I/O shell: sockets, threads, signals and the clock. It owns the relay cores (one per
//! shard) and carries out what they decide.

pub mod batch;
pub mod checks;
pub mod clock;
mod conn_limiter;
pub mod connections;
mod datagrams;
mod gso;
pub mod journal;
pub mod notify;
mod read_buf;
pub mod service;
pub mod session_log;
pub mod sessions;
pub mod settings;
pub mod shard;
mod sockets;
pub mod stream;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::relay::peer_policy::OwnAddresses;
use crate::relay::quota::Quotas;
use crate::relay::{AddrFamily, Core, CoreConfig, RelayFamily, Transport};
use session_log::SessionLogger;
use shard::{Control, Limits, Listeners, Shard, ShardParts, tcp_listener, udp_socket};

pub use crate::metrics::snapshot::ShardSnapshot;
pub use settings::{advertised_ipv4, relay_families};
use settings::{authenticator, load_tls, own_addresses, policy};

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
        streams: connections::StreamCounters,
    ) {
        let mut snap = ShardSnapshot {
            counters: core.counters().clone(),
            connections,
            streams,
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

/// How the shell reaches a shard thread: its control queue, the waker that interrupts its
/// poll, and the thread to join on shutdown.
type ShardHandle = (Sender<Control>, Arc<mio::Waker>, Option<JoinHandle<()>>);

/// A running relay: its shards and how to reach them.
pub struct Relay {
    pub listen_udp: Vec<SocketAddr>,
    pub status: Vec<Arc<ShardStatus>>,
    shards: Mutex<Vec<ShardHandle>>,
    nonce_key: [u8; 32],
    /// The server's own addresses, fixed at start (listeners need a restart to change).
    own: OwnAddresses,
    pub metrics: Arc<Metrics>,
    /// Set by `drain`: /readyz says 503 and new Allocates go elsewhere.
    draining: AtomicBool,
}

/// What every shard shares: quotas, bandwidth and connection counts, the TLS config,
/// the nonce key, the server's own addresses and the relay families.
struct Shared {
    quotas: Arc<Quotas>,
    user_buckets: Arc<crate::relay::bandwidth::UserBuckets>,
    limiter: Arc<connections::ConnLimiter>,
    tls: Option<Arc<rustls::ServerConfig>>,
    nonce_key: [u8; 32],
    own: OwnAddresses,
    families: (Option<RelayFamily>, Option<RelayFamily>),
}

/// The shard count (0 = one per core, never more than relay ports) and each shard's
/// disjoint slice of the relay port range, so shards never contend for a port.
fn port_slices(cfg: &Config) -> Vec<std::ops::RangeInclusive<u16>> {
    let shards = if cfg.server.shards == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        cfg.server.shards
    };
    let (lo, hi) = cfg.relay.ports;
    let span = (hi - lo) as usize + 1;
    let shards = shards.min(span).max(1);
    (0..shards)
        .map(|i| {
            let start = lo as usize + span * i / shards;
            let end = lo as usize + span * (i + 1) / shards - 1;
            start as u16..=end as u16
        })
        .collect()
}

/// One shard's relay core, owning the relay ports `ports`.
fn shard_core(
    cfg: &Config,
    secrets: &[String],
    shared: &Shared,
    ports: std::ops::RangeInclusive<u16>,
) -> Core {
    let r = &cfg.relay;
    let per_user =
        (r.max_bps_per_user > 0).then(|| (r.max_bps_per_user / 8, shared.user_buckets.clone()));
    let mut core = Core::new(
        CoreConfig {
            auth: authenticator(cfg, secrets, shared.nonce_key),
            policy: policy(cfg, &shared.own),
            relay_v4: shared.families.0,
            relay_v6: shared.families.1,
            ports,
            default_lifetime: r.default_lifetime,
            max_lifetime: r.max_lifetime,
            quotas: shared.quotas.clone(),
            max_channels: r.max_channels_per_allocation,
            unauthenticated_rate: cfg.server.unauthenticated_rate,
            max_bytes_per_sec_per_allocation: (r.max_bps_per_allocation > 0)
                .then_some(r.max_bps_per_allocation / 8),
            max_bytes_per_sec_per_user: per_user,
            max_permissions: r.max_permissions_per_allocation,
            strict_channel_numbers: r.strict_channel_numbers,
            token_key: shared.nonce_key,
        },
        rand::random(),
    );
    core.set_alternates(cfg.server.alternate.clone());
    core
}

/// Every listener, bound for one shard (SO_REUSEPORT spreads clients over the shards).
fn bind_listeners(cfg: &Config) -> anyhow::Result<Listeners> {
    let mut listeners = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for a in &cfg.server.listen_udp {
        listeners
            .udp
            .push(udp_socket(*a, true).with_context(|| format!("binding UDP listener {a}"))?);
    }
    for (addrs, t) in [
        (&cfg.server.listen_tcp, Transport::Tcp),
        (&cfg.server.listen_tls, Transport::Tls),
    ] {
        for a in addrs {
            let l =
                tcp_listener(*a).with_context(|| format!("binding {} listener {a}", t.label()))?;
            listeners.tcp.push((l, t));
        }
    }
    Ok(listeners)
}

/// Binds shard `i`'s listeners and starts its thread around `core`.
fn spawn_shard(
    cfg: &Config,
    i: usize,
    core: Core,
    shared: &Shared,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<ShardStatus>, ShardHandle)> {
    let (tx, rx) = channel();
    let status = Arc::new(ShardStatus::default());
    status.set_running(true);
    let (shard, waker) = Shard::new(ShardParts {
        index: i,
        core,
        listeners: bind_listeners(cfg)?,
        tls: shared.tls.clone(),
        limits: Limits {
            limiter: shared.limiter.clone(),
            idle_timeout: cfg.server.idle_timeout,
            tls_handshake_timeout: cfg.server.tls_handshake_timeout,
            tls_accepts_plain: cfg.server.tls_accepts_plain,
        },
        control: rx,
        status: status.clone(),
        sessions: SessionLogger {
            redact_client_address: cfg.log.redact_client_address,
        },
        gso: cfg.relay.gso,
        metrics,
    })
    .context("creating shard event loop")?;
    let handle = std::thread::Builder::new()
        .name(format!("turnpike-shard-{i}"))
        .spawn(move || shard.run())
        .context("spawning shard thread")?;
    Ok((status, (tx, waker, Some(handle))))
}

impl Relay {
    /// Binds every listener and starts the shards. `secrets` are the effective REST secrets.
    pub fn start(cfg: &Config, secrets: &[String], metrics: Arc<Metrics>) -> anyhow::Result<Relay> {
        let slices = port_slices(cfg);
        let nonce_key: [u8; 32] = rand::random();
        let (relay_v4, relay_v6) = relay_families(cfg);
        let own = own_addresses(cfg, [relay_v4, relay_v6]);
        let opened = policy(cfg, &own).allowed_own_addresses();
        if !opened.is_empty() {
            tracing::warn!(
                addresses = ?opened,
                "peers.allow covers this server's own addresses: clients may relay to its services outside the relay port range (listeners stay refused)"
            );
        }
        let shared = Shared {
            // One count for every shard: quotas and connection limits are per server.
            quotas: Arc::new(Quotas::new(
                cfg.relay.max_allocations,
                cfg.relay.max_allocations_per_user,
            )),
            user_buckets: Arc::new(crate::relay::bandwidth::UserBuckets::default()),
            limiter: Arc::new(connections::ConnLimiter::new(
                cfg.server.max_connections,
                cfg.server.max_connections_per_ip,
            )),
            tls: load_tls(cfg)?,
            nonce_key,
            own: own.clone(),
            families: (relay_v4, relay_v6),
        };
        let mut relay = Relay {
            listen_udp: cfg.server.listen_udp.clone(),
            status: Vec::new(),
            shards: Mutex::new(Vec::new()),
            nonce_key,
            own,
            metrics: metrics.clone(),
            draining: AtomicBool::new(false),
        };
        for (i, ports) in slices.into_iter().enumerate() {
            let core = shard_core(cfg, secrets, &shared, ports);
            let (status, handle) = spawn_shard(cfg, i, core, &shared, metrics.clone())?;
            relay.status.push(status);
            relay
                .shards
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        }
        tracing::info!(
            listen_udp = ?cfg.server.listen_udp,
            listen_tcp = ?cfg.server.listen_tcp,
            listen_tls = ?cfg.server.listen_tls,
            relay_v4 = %relay_v4.map_or("none".into(), |f| f.advertised.to_string()),
            relay_v6 = %relay_v6.map_or("none".into(), |f| f.advertised.to_string()),
            shards = relay.status.len(),
            realm = %cfg.server.realm,
            "turnpike started"
        );
        Ok(relay)
    }

    fn send_all(&self, make: impl Fn() -> Control) {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for (tx, waker, _) in shards.iter() {
            let _ = tx.send(make());
            let _ = waker.wake();
        }
    }

    /// Applies a reloaded config's credentials, peer policy, TLS certificate and
    /// alternates; allocations stay up. All or nothing: a certificate that fails to load
    /// fails the whole reload, and the running configuration stays in force.
    pub fn reload(&self, cfg: &Config, secrets: &[String]) -> anyhow::Result<()> {
        let tls = load_tls(cfg)?;
        self.send_all(|| {
            Control::Reconfigure(Box::new((
                authenticator(cfg, secrets, self.nonce_key),
                policy(cfg, &self.own),
            )))
        });
        if let Some(tls) = tls {
            self.send_all(|| Control::Tls(tls.clone()));
        }
        self.send_all(|| Control::Alternates(cfg.server.alternate.clone()));
        Ok(())
    }

    /// Starts (or ends) draining: /readyz turns 503 at once and new Allocates are refused
    /// or redirected, while existing allocations keep relaying and refreshing.
    /// Returns once every running shard has applied it (bounded wait).
    pub fn drain(&self, on: bool) {
        self.draining.store(on, Ordering::Release);
        self.send_all(|| Control::Draining(on));
        // Control messages are handled in order: a fresh snapshot means it was applied.
        self.snapshots();
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Allocations alive in every shard (fresh snapshots).
    pub fn allocation_count(&self) -> u64 {
        self.snapshots()
            .iter()
            .map(|s| s.allocations.iter().flatten().sum::<u64>())
            .sum()
    }

    /// Fresh snapshots from every shard: asks each to publish and waits (bounded) for it,
    /// so a scrape right after traffic sees that traffic.
    pub fn snapshots(&self) -> Vec<ShardSnapshot> {
        let before: Vec<u64> = self.status.iter().map(|s| s.generation()).collect();
        self.send_all(|| Control::Publish);
        let deadline = clock::now() + std::time::Duration::from_millis(500);
        while clock::now() < deadline
            && self
                .status
                .iter()
                .zip(&before)
                .any(|(s, b)| s.is_running() && s.generation() == *b)
        {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        self.status.iter().map(|s| s.snapshot()).collect()
    }

    /// Every live allocation, asked of each shard (bounded wait, like `snapshots`).
    pub fn sessions(&self) -> Vec<sessions::SessionInfo> {
        let (tx, rx) = channel();
        self.send_all(|| Control::Sessions(tx.clone()));
        drop(tx);
        self.collect(rx).into_iter().flatten().collect()
    }

    /// Ends every allocation of user id `user` (sessions API); returns how many ended.
    pub fn end_sessions(&self, user: &str) -> usize {
        let (tx, rx) = channel();
        self.send_all(|| Control::EndSessions(user.to_owned(), tx.clone()));
        drop(tx);
        self.collect(rx).into_iter().sum()
    }

    /// One answer per running shard, waiting at most a second in all.
    fn collect<T>(&self, rx: std::sync::mpsc::Receiver<T>) -> Vec<T> {
        let deadline = clock::now() + std::time::Duration::from_secs(1);
        let running = self.status.iter().filter(|s| s.is_running()).count();
        let mut out = Vec::new();
        while out.len() < running {
            let left = deadline.saturating_duration_since(clock::now());
            match rx.recv_timeout(left) {
                Ok(v) => out.push(v),
                Err(_) => break,
            }
        }
        out
    }

    /// Listeners are bound, every shard is running and can bind relay sockets, and the
    /// node is not draining.
    pub fn is_ready(&self) -> bool {
        !self.status.is_empty()
            && !self.is_draining()
            && self
                .status
                .iter()
                .all(|s| s.is_running() && !s.binds_failing())
    }

    /// Ends every allocation (each gets its log line) and stops the shards.
    pub fn shutdown(&self) {
        self.send_all(|| Control::Shutdown);
        let mut shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for (_, _, h) in shards.iter_mut() {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}
