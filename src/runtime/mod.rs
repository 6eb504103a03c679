//! The I/O shell: sockets, threads, signals and the clock. It owns the relay cores (one per
//! shard) and carries out what they decide.

pub mod session_log;
pub mod shard;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::relay::peer_policy::PeerPolicy;
use crate::relay::stats::Counters;
use crate::relay::{CoreConfig, RelayFamily, Server, SessionSummary};
use session_log::SessionLogger;
use shard::{Control, Shard, udp_socket};

/// What a shard last published: its counters and gauges, copied once a second so that the
/// relay path never touches shared state.
#[derive(Debug, Default, Clone)]
pub struct ShardSnapshot {
    pub counters: Counters,
    pub allocations: u64,
    pub permissions: u64,
    pub channels: u64,
    /// Lifetimes (seconds) of allocations that ended since the last read.
    pub ended_durations: Vec<f64>,
}

#[derive(Debug, Default)]
pub struct ShardStatus {
    snapshot: Mutex<ShardSnapshot>,
}

impl ShardStatus {
    pub fn publish(&self, core: &Server, now: Instant) {
        let (mut perms, mut chans) = (0u64, 0u64);
        for a in core.allocations() {
            perms += a.live_permissions(now) as u64;
            chans += a.live_channels(now) as u64;
        }
        let mut s = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        s.counters = core.counters().clone();
        s.allocations = core.allocation_count() as u64;
        s.permissions = perms;
        s.channels = chans;
    }

    pub fn record_session_end(&self, summary: &SessionSummary) {
        let mut s = self.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        s.ended_durations.push(summary.duration.as_secs_f64());
    }

    pub fn snapshot(&self) -> ShardSnapshot {
        self.snapshot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn take_ended_durations(&self) -> Vec<f64> {
        std::mem::take(
            &mut self
                .snapshot
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .ended_durations,
        )
    }
}

/// How the shell reaches a shard thread: its control queue, the waker that interrupts its
/// poll, and the thread to join on shutdown.
type ShardHandle = (Sender<Control>, Arc<mio::Waker>, Option<JoinHandle<()>>);

/// A running relay: its shards and how to reach them.
pub struct Relay {
    pub listen_udp: Vec<SocketAddr>,
    pub status: Vec<Arc<ShardStatus>>,
    shards: Vec<ShardHandle>,
    nonce_key: [u8; 32],
}

/// Everything the cores share that a reload may change.
fn authenticator(cfg: &Config, secrets: &[String], nonce_key: [u8; 32]) -> Authenticator {
    let users: Vec<(String, String)> = cfg
        .auth
        .users
        .iter()
        .map(|u| (u.username.clone(), u.password.clone()))
        .collect();
    Authenticator::new(
        &cfg.server.realm,
        secrets.to_vec(),
        &users,
        nonce_key,
        cfg.auth.nonce_lifetime.as_secs(),
    )
}

fn policy(cfg: &Config) -> PeerPolicy {
    PeerPolicy::new(cfg.peers.allow.clone(), cfg.peers.deny.clone())
}

/// The IPv4 relay address when none is configured: a specific listen address if there is
/// one, else the first non-loopback interface address, else loopback.
fn default_relay_ipv4(cfg: &Config) -> IpAddr {
    if let Some(a) = cfg
        .server
        .listen_udp
        .iter()
        .find(|a| a.is_ipv4() && !a.ip().is_unspecified())
    {
        return a.ip();
    }
    if_addrs::get_if_addrs()
        .ok()
        .and_then(|ifs| {
            ifs.into_iter()
                .map(|i| i.ip())
                .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        })
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn relay_families(cfg: &Config) -> (Option<RelayFamily>, Option<RelayFamily>) {
    let v4_bind = cfg.relay.ipv4.unwrap_or_else(|| default_relay_ipv4(cfg));
    let v4 = RelayFamily {
        bind: v4_bind,
        advertised: cfg.relay.advertised_ipv4.unwrap_or(v4_bind),
    };
    let v6 = cfg.relay.ipv6.map(|bind| RelayFamily {
        bind,
        advertised: cfg.relay.advertised_ipv6.unwrap_or(bind),
    });
    for f in std::iter::once(v4).chain(v6) {
        if f.advertised.is_unspecified() {
            tracing::warn!(relay = %f.advertised, "relay address is unspecified: set relay.ipv4/ipv6 to a concrete address");
        } else if !PeerPolicy::default().permits(f.advertised) {
            tracing::warn!(
                relay = %f.advertised,
                "advertised relay address is private or loopback: clients outside this network cannot reach it (set relay.advertised_ipv4/ipv6 behind a 1:1 NAT)"
            );
        }
    }
    (Some(v4), v6)
}

impl Relay {
    /// Binds every listener and starts the shards. `secrets` are the effective REST secrets.
    pub fn start(cfg: &Config, secrets: &[String]) -> anyhow::Result<Relay> {
        let shards = if cfg.server.shards == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            cfg.server.shards
        };
        let (lo, hi) = cfg.relay.ports;
        let span = (hi - lo) as usize + 1;
        let shards = shards.min(span).max(1);
        let nonce_key: [u8; 32] = rand::random();
        let (relay_v4, relay_v6) = relay_families(cfg);
        let sessions = SessionLogger {
            redact_client_address: cfg.log.redact_client_address,
        };
        let mut relay = Relay {
            listen_udp: cfg.server.listen_udp.clone(),
            status: Vec::new(),
            shards: Vec::new(),
            nonce_key,
        };
        for i in 0..shards {
            // Disjoint port slices: shards never contend for a relay port.
            let start = lo as usize + span * i / shards;
            let end = lo as usize + span * (i + 1) / shards - 1;
            let core = Server::new(
                CoreConfig {
                    auth: authenticator(cfg, secrets, nonce_key),
                    policy: policy(cfg),
                    relay_v4,
                    relay_v6,
                    ports: start as u16..=end as u16,
                    default_lifetime: cfg.relay.default_lifetime,
                    max_lifetime: cfg.relay.max_lifetime,
                    max_allocations: cfg.relay.max_allocations.div_ceil(shards),
                    max_allocations_per_user: cfg.relay.max_allocations_per_user,
                    max_permissions: cfg.relay.max_permissions_per_allocation,
                    strict_channel_numbers: cfg.relay.strict_channel_numbers,
                    token_key: nonce_key,
                },
                rand::random(),
            );
            let listeners = cfg
                .server
                .listen_udp
                .iter()
                .map(|a| udp_socket(*a, true).with_context(|| format!("binding UDP listener {a}")))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let (tx, rx) = channel();
            let status = Arc::new(ShardStatus::default());
            let (shard, waker) = Shard::new(i, core, listeners, rx, status.clone(), sessions)
                .context("creating shard event loop")?;
            let handle = std::thread::Builder::new()
                .name(format!("turnpike-shard-{i}"))
                .spawn(move || shard.run())
                .context("spawning shard thread")?;
            relay.status.push(status);
            relay.shards.push((tx, waker, Some(handle)));
        }
        tracing::info!(
            listen_udp = ?cfg.server.listen_udp,
            relay_v4 = ?relay_v4.map(|f| f.advertised),
            relay_v6 = ?relay_v6.map(|f| f.advertised),
            shards,
            realm = %cfg.server.realm,
            "turnpike started"
        );
        Ok(relay)
    }

    /// Applies a reloaded config's credentials and peer policy; allocations stay up.
    pub fn reload(&self, cfg: &Config, secrets: &[String]) {
        for (tx, waker, _) in &self.shards {
            let _ = tx.send(Control::Reconfigure(Box::new((
                authenticator(cfg, secrets, self.nonce_key),
                policy(cfg),
            ))));
            let _ = waker.wake();
        }
    }

    /// Ends every allocation (each gets its log line) and stops the shards.
    pub fn shutdown(mut self) {
        for (tx, waker, _) in &self.shards {
            let _ = tx.send(Control::Shutdown);
            let _ = waker.wake();
        }
        for (_, _, h) in &mut self.shards {
            if let Some(h) = h.take() {
                let _ = h.join();
            }
        }
    }
}
