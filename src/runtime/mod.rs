//! The I/O shell: sockets, threads, signals and the clock. It owns the relay cores (one per
//! shard) and carries out what they decide.
//!
//! Read top-down: this file is the `Node`, a running turnpike process as the rest of the
//! program sees it (start the shards, reconfigure them, drain, ask them for snapshots and
//! sessions, stop). `shard/` is one shard's event loop and everything below it; `status`
//! is what a shard publishes; `sessions` and `session_log` describe allocations for the
//! sessions API and the log; `clock` is the one place that reads the time.

pub mod adopt;
pub mod clock;
pub mod fastpath;
pub mod fleet_slots;
pub mod handover;
pub mod session_log;
pub mod sessions;
pub mod shard;
pub mod status;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use anyhow::Context;

use crate::metrics::Metrics;
use crate::metrics::snapshot::ShardSnapshot;
use crate::relay::Alternate;
use crate::relay::quota::Quotas;
use crate::relay::{Core, CoreConfig, Transport};
use crate::settings::Settings;
use session_log::SessionLogger;
use shard::io::sockets::{tcp_listener, udp_socket};
use shard::streams::limiter::ConnLimiter;
use shard::streams::table::ConnLimits;
use shard::{Control, Listeners, Shard, ShardParts};
use status::ShardStatus;

/// How the shell reaches a shard thread: its control queue, the waker that interrupts its
/// poll, and the thread to join on shutdown.
type ShardHandle = (Sender<Control>, Arc<mio::Waker>, Option<JoinHandle<()>>);

/// A running turnpike process, one node of a fleet: its shards and how to reach them.
pub struct Node {
    pub listen_udp: Vec<SocketAddr>,
    pub status: Vec<Arc<ShardStatus>>,
    shards: Mutex<Vec<ShardHandle>>,
    nonce_key: [u8; 32],
    pub metrics: Arc<Metrics>,
    /// Set by `drain`: /readyz says 503 and new Allocates go elsewhere.
    draining: AtomicBool,
    /// ALTERNATE-SERVER candidates: `server.alternate` and the fleet registry's.
    alternates: Mutex<Alternates>,
    /// The shards' fleet-slot requests, until the fleet task takes them (`[cluster]`),
    /// and how many of them adopt the slots of a handover's allocations.
    slot_requests: Mutex<Option<(fleet_slots::SlotReceiver, usize)>>,
    /// The kernel fast path, detached for the time of a handover's export.
    fastpath: Option<fastpath::Attached>,
}

/// The static alternates and the fleet registry's; for TLS clients and for the others
/// apart, the registry's win while it has any.
#[derive(Default)]
struct Alternates {
    configured: Vec<Alternate>,
    fleet: Vec<Alternate>,
}

impl Alternates {
    fn in_force(&self) -> Vec<Alternate> {
        let mut out = Vec::new();
        for tls in [false, true] {
            let of = |v: &[Alternate]| -> Vec<Alternate> {
                v.iter()
                    .filter(|a| a.domain.is_some() == tls)
                    .cloned()
                    .collect()
            };
            let fleet = of(&self.fleet);
            out.extend(if fleet.is_empty() {
                of(&self.configured)
            } else {
                fleet
            });
        }
        out
    }
}

/// What every shard shares: quotas, bandwidth and connection counts, and the nonce key.
struct Shared {
    quotas: Arc<Quotas>,
    user_buckets: Arc<crate::relay::bandwidth::UserBuckets>,
    limiter: Arc<ConnLimiter>,
    nonce_key: [u8; 32],
    /// Where the shards send fleet-slot requests (`[cluster]` only).
    slots: Option<fleet_slots::SlotSender>,
    /// The kernel fast path, when `[fastpath]` attached it.
    fastpath: Option<fastpath::Attached>,
}

/// One shard's relay core, owning the relay ports `ports`.
fn shard_core(s: &Settings, shared: &Shared, ports: std::ops::RangeInclusive<u16>) -> Core {
    let r = &s.config.relay;
    let per_user = s
        .bytes_per_sec_per_user
        .map(|b| (b, shared.user_buckets.clone()));
    let mut core = Core::new(
        CoreConfig {
            auth: s.authenticator(shared.nonce_key),
            policy: s.policy(),
            relay_v4: Some(s.relay_v4),
            relay_v6: s.relay_v6,
            ports,
            default_lifetime: r.default_lifetime,
            max_lifetime: r.max_lifetime,
            quotas: shared.quotas.clone(),
            max_channels: r.max_channels_per_allocation,
            unauthenticated_rate: s.config.server.unauthenticated_rate,
            max_bytes_per_sec_per_allocation: s.bytes_per_sec_per_allocation,
            max_bytes_per_sec_per_user: per_user,
            max_permissions: r.max_permissions_per_allocation,
            strict_channel_numbers: r.strict_channel_numbers,
            token_key: shared.nonce_key,
            fleet_quota: s.cluster.is_some(),
            fastpath: shared.fastpath.is_some(),
        },
        rand::random(),
    );
    core.set_alternates(s.alternates());
    core
}

/// Every listener, bound for one shard (SO_REUSEPORT spreads clients over the shards).
fn bind_listeners(s: &Settings) -> anyhow::Result<Listeners> {
    let server = &s.config.server;
    let mut listeners = Listeners {
        udp: Vec::new(),
        tcp: Vec::new(),
    };
    for a in &server.listen_udp {
        listeners
            .udp
            .push(udp_socket(*a, true).with_context(|| format!("binding UDP listener {a}"))?);
    }
    for (addrs, t) in [
        (&server.listen_tcp, Transport::Tcp),
        (&server.listen_tls, Transport::Tls),
    ] {
        for a in addrs {
            let l =
                tcp_listener(*a).with_context(|| format!("binding {} listener {a}", t.label()))?;
            listeners.tcp.push((l, t));
        }
    }
    Ok(listeners)
}

/// Relay sockets passed by the previous process, and every relay address the shard's
/// imported core owns (handover).
type AdoptedRelays = (Vec<(SocketAddr, std::net::UdpSocket)>, Vec<SocketAddr>);

/// The warning when `peers.allow` opens this server's own addresses.
fn warn_own_addresses(s: &Settings) {
    let opened = s.policy().allowed_own_addresses();
    if !opened.is_empty() {
        tracing::warn!(
            addresses = ?opened,
            "peers.allow covers this server's own addresses: clients may relay to its services outside the relay port range (listeners stay refused)"
        );
    }
}

/// Starts shard `i`'s thread around its core, listeners and adopted relay sockets.
fn spawn_shard(
    s: &Settings,
    i: usize,
    (core, listeners, adopted): (Core, Listeners, AdoptedRelays),
    shared: &Shared,
    metrics: Arc<Metrics>,
) -> anyhow::Result<(Arc<ShardStatus>, ShardHandle)> {
    let (tx, rx) = channel();
    let status = Arc::new(ShardStatus::default());
    status.set_running(true);
    let cfg = &s.config;
    let (shard, waker) = Shard::new(ShardParts {
        index: i,
        core,
        listeners,
        tls: s.tls.clone(),
        limits: ConnLimits {
            limiter: shared.limiter.clone(),
            idle_timeout: cfg.server.idle_timeout,
            tls_handshake_timeout: cfg.server.tls_handshake_timeout,
            tls_accepts_plain: cfg.server.tls_accepts_plain,
            proxy_protocol: cfg.server.proxy_protocol.clone(),
        },
        control: rx,
        status: status.clone(),
        sessions: SessionLogger {
            redact_client_address: cfg.log.redact_client_address,
        },
        gso: cfg.relay.gso,
        metrics,
        fleet_slots: shared.slots.clone(),
        fastpath: (shared.fastpath.as_ref()).map(|a| {
            let listeners = fastpath::listener_addresses(s);
            shard::kernel_path::KernelPath::new(a.fastpath.clone(), i, listeners)
        }),
    })
    .context("creating shard event loop")?;
    let mut shard = shard;
    shard.adopt_relays(adopted.0, &adopted.1);
    let handle = std::thread::Builder::new()
        .name(format!("turnpike-shard-{i}"))
        .spawn(move || shard.run())
        .context("spawning shard thread")?;
    Ok((status, (tx, waker, Some(handle))))
}

impl Node {
    /// Binds every listener and starts the shards.
    pub fn start(s: &Settings, metrics: Arc<Metrics>) -> anyhow::Result<Node> {
        Node::start_adopting(s, metrics, None)
    }

    /// Starts the shards on what a previous process handed over (`adopted`: listeners,
    /// relay sockets, states), else on listeners bound here.
    pub fn start_adopting(
        s: &Settings,
        metrics: Arc<Metrics>,
        adopted: Option<adopt::Adopted>,
    ) -> anyhow::Result<Node> {
        let cfg = &s.config;
        let nonce_key: [u8; 32] = adopted
            .as_ref()
            .and_then(|a| a.token_key)
            .unwrap_or_else(rand::random);
        let mut adopted = adopted.map(|a| a.shards.into_iter());
        warn_own_addresses(s);
        // Claims are queued from the first Allocate on, before the fleet task starts.
        let (slot_tx, slot_rx) = s
            .cluster
            .as_ref()
            .map(|_| tokio::sync::mpsc::unbounded_channel())
            .unzip();
        let shared = Shared {
            // One count for every shard: quotas and connection limits are per server.
            quotas: Arc::new(Quotas::new(
                cfg.relay.max_allocations,
                cfg.relay.max_allocations_per_user,
            )),
            user_buckets: Arc::new(crate::relay::bandwidth::UserBuckets::default()),
            limiter: Arc::new(ConnLimiter::new(
                cfg.server.max_connections,
                cfg.server.max_connections_per_ip,
            )),
            nonce_key,
            slots: slot_tx,
            fastpath: fastpath::start(s),
        };
        metrics.set_fastpath_mode(shared.fastpath.as_ref().map_or("off", |a| a.mode.label()));
        let mut node = Node {
            listen_udp: cfg.server.listen_udp.clone(),
            status: Vec::new(),
            shards: Mutex::new(Vec::new()),
            nonce_key,
            metrics: metrics.clone(),
            draining: AtomicBool::new(false),
            alternates: Mutex::new(Alternates {
                configured: s.alternates(),
                fleet: Vec::new(),
            }),
            slot_requests: Mutex::new(None),
            fastpath: shared.fastpath.clone(),
        };
        let mut adopts = 0;
        for (i, ports) in s.port_slices.iter().cloned().enumerate() {
            let mut core = shard_core(s, &shared, ports);
            let io = match adopted.as_mut().and_then(|a| a.next()) {
                Some(a) => {
                    let (listeners, relays, owned, slots) = adopt::adopt(&mut core, a);
                    adopts += slots;
                    (core, listeners, (relays, owned))
                }
                None => (core, bind_listeners(s)?, Default::default()),
            };
            let (status, handle) = spawn_shard(s, i, io, &shared, metrics.clone())?;
            node.status.push(status);
            node.shards
                .get_mut()
                .unwrap_or_else(|e| e.into_inner())
                .push(handle);
        }
        node.slot_requests = Mutex::new(slot_rx.map(|rx| (rx, adopts)));
        tracing::info!(
            listen_udp = ?cfg.server.listen_udp,
            listen_tcp = ?cfg.server.listen_tcp,
            listen_tls = ?cfg.server.listen_tls,
            relay_v4 = %s.relay_v4.advertised,
            relay_v6 = %s.relay_v6.map_or("none".into(), |f| f.advertised.to_string()),
            shards = node.status.len(),
            realm = %cfg.server.realm,
            "turnpike started"
        );
        Ok(node)
    }

    /// The shards' fleet-slot requests, for the fleet task (once), and how many of them
    /// are `Adopt`s of a handover (`Command::AdoptFleetSlot`, queued as the shards start).
    pub fn take_slot_requests(&self) -> Option<(fleet_slots::SlotReceiver, usize)> {
        self.slot_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The fleet's answer to shard `shard`'s claim `token`.
    pub fn answer_fleet_slot(&self, shard: usize, token: u64, answer: crate::relay::FleetSlot) {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((tx, waker, _)) = shards.get(shard) {
            let _ = tx.send(Control::FleetSlot(token, answer));
            let _ = waker.wake();
        }
    }

    fn send_all(&self, make: impl Fn() -> Control) {
        let shards = self.shards.lock().unwrap_or_else(|e| e.into_inner());
        for (tx, waker, _) in shards.iter() {
            let _ = tx.send(make());
            let _ = waker.wake();
        }
    }

    /// Applies reloaded settings' credentials, peer policy, TLS certificate and
    /// alternates; allocations stay up. `Settings::reload` loaded everything that can
    /// fail, so this cannot.
    pub fn reload(&self, s: &Settings) {
        self.send_all(|| {
            Control::Reconfigure(Box::new((s.authenticator(self.nonce_key), s.policy())))
        });
        if let Some(tls) = &s.tls {
            self.send_all(|| Control::Tls(tls.clone()));
        }
        let mut alts = self.alternates.lock().unwrap_or_else(|e| e.into_inner());
        alts.configured = s.alternates();
        let now = alts.in_force();
        drop(alts);
        self.send_all(|| Control::Alternates(now.clone()));
    }

    /// The fleet registry's alternates (other live nodes with room), ahead of
    /// `server.alternate` while there are any. Does not wait for the shards.
    pub fn set_fleet_alternates(&self, fleet: Vec<Alternate>) {
        let mut alts = self.alternates.lock().unwrap_or_else(|e| e.into_inner());
        alts.fleet = fleet;
        let now = alts.in_force();
        drop(alts);
        self.send_all(|| Control::Alternates(now.clone()));
    }

    /// The fleet's revocations (`[cluster]`), to every shard. Does not wait for them.
    pub fn set_revocations(&self, r: Arc<crate::relay::revocation::Revocations>) {
        self.send_all(|| Control::Revocations(r.clone()));
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
