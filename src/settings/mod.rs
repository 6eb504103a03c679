//! What the config means on this host, computed once: at start (`Settings::new`) and at
//! reload (`Settings::reload`). Every part reads it instead of deriving its own: the
//! shards (port slices, relay families, bandwidth limits, TLS, the authenticator and peer
//! policy), the HTTP endpoint (URIs, the secret that mints credentials) and the service
//! (startup checks, drain timeout).

pub mod addresses;
pub mod cluster;
pub mod secrets;
pub mod tls;

use std::ops::RangeInclusive;
use std::sync::Arc;

use crate::auth::Authenticator;
use crate::config::Config;
use crate::relay::Alternate;
use crate::relay::RelayFamily;
use crate::relay::peer_policy::{OwnAddresses, PeerPolicy};

/// The config and what is derived from it. A reload replaces it as a whole.
pub struct Settings {
    /// The config as loaded (CLI flags applied); what needs no derivation is read here.
    pub config: Config,
    /// Each shard's disjoint slice of the relay port range; one entry per shard.
    pub port_slices: Vec<RangeInclusive<u16>>,
    /// Where IPv4 relay sockets bind and what clients are told.
    pub relay_v4: RelayFamily,
    /// The same for IPv6, when `relay.ipv6` is set.
    pub relay_v6: Option<RelayFamily>,
    /// The server's own addresses, refused as peers (listeners always).
    pub own: OwnAddresses,
    /// Relayed bytes per second per allocation (`relay.max_bps_per_allocation`), if limited.
    pub bytes_per_sec_per_allocation: Option<u64>,
    /// Relayed bytes per second per user id (`relay.max_bps_per_user`), if limited.
    pub bytes_per_sec_per_user: Option<u64>,
    /// The TURN URIs handed out with credentials.
    pub uris: Vec<String>,
    /// The REST secrets in force (see `secrets::in_force`).
    pub secrets: Vec<String>,
    /// At start, no secret was configured: the one in `secrets` was generated for this
    /// run (the service prints it once). False after a reload.
    pub secret_generated: bool,
    /// The certificate for TLS listeners, if there are any.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// `[cluster]` as this node runs it; None for a single node.
    pub cluster: Option<cluster::ClusterSettings>,
}

impl Settings {
    /// Everything derived from `config` at start. Fails when the TLS files do not load.
    pub fn new(config: Config) -> anyhow::Result<Settings> {
        let (relay_v4, relay_v6) = addresses::relay_families(&config);
        let (secrets, secret_generated) = secrets::in_force(&config, None);
        let uris = addresses::uris(&config, relay_v4.advertised);
        Ok(Settings {
            cluster: cluster::from_config(&config, &uris),
            port_slices: port_slices(&config),
            own: addresses::own_addresses(&config, [Some(relay_v4), relay_v6]),
            bytes_per_sec_per_allocation: bytes_per_sec(config.relay.max_bps_per_allocation),
            bytes_per_sec_per_user: bytes_per_sec(config.relay.max_bps_per_user),
            uris,
            tls: tls::for_listeners(&config)?,
            relay_v4,
            relay_v6,
            secrets,
            secret_generated,
            config,
        })
    }

    /// The settings after a reload to `config`: credentials, peer lists, TLS certificate,
    /// URIs and everything read from `config` change. What is bound at start (port slices,
    /// relay families, own addresses, bandwidth limits) needs a restart and stays; so do
    /// the REST secrets when `config` names none. Fails when the TLS files do not load, so
    /// a reload is all or nothing.
    pub fn reload(&self, config: Config) -> anyhow::Result<Settings> {
        let (secrets, _) = secrets::in_force(&config, Some(&self.secrets));
        let uris = addresses::uris(&config, addresses::advertised_ipv4(&config));
        Ok(Settings {
            // The registry task runs with the cluster settings it started with.
            cluster: self.cluster.clone(),
            port_slices: self.port_slices.clone(),
            relay_v4: self.relay_v4,
            relay_v6: self.relay_v6,
            own: self.own.clone(),
            bytes_per_sec_per_allocation: self.bytes_per_sec_per_allocation,
            bytes_per_sec_per_user: self.bytes_per_sec_per_user,
            uris,
            tls: tls::for_listeners(&config)?,
            secrets,
            secret_generated: false,
            config,
        })
    }

    /// `new`, with `secrets` as the REST secrets in force (tests, embedders).
    pub fn with_secrets(config: Config, secrets: Vec<String>) -> anyhow::Result<Settings> {
        let mut s = Settings::new(config)?;
        s.secrets = secrets;
        s.secret_generated = false;
        Ok(s)
    }

    /// The realm, static users, REST secrets and expiry policy every core authenticates
    /// with, signing nonces with `nonce_key`.
    pub fn authenticator(&self, nonce_key: [u8; 32]) -> Authenticator {
        let cfg = &self.config;
        let users: Vec<(String, String)> = cfg
            .auth
            .users
            .iter()
            .map(|u| (u.username.clone(), u.password.clone()))
            .collect();
        Authenticator::new(
            &cfg.server.realm,
            self.secrets.clone(),
            &users,
            nonce_key,
            cfg.auth.nonce_lifetime.as_secs(),
        )
        .with_expiry_policy(cfg.auth.expiry_policy())
    }

    /// The peer policy every core checks peers against, the server's own addresses included.
    /// Where a draining or full node sends new clients, from `server.alternate` (plain)
    /// and `server.alternate_tls` (TLS, with the certificate's name).
    pub fn alternates(&self) -> Vec<Alternate> {
        let s = &self.config.server;
        let plain = s.alternate.iter().map(|a| Alternate::plain(*a));
        let tls = s
            .alternate_tls
            .iter()
            .map(|a| Alternate::tls(a.address, &a.domain));
        plain.chain(tls).collect()
    }

    pub fn policy(&self) -> PeerPolicy {
        let peers = &self.config.peers;
        PeerPolicy::new(peers.allow.clone(), peers.deny.clone())
            .with_own_addresses(self.own.clone())
    }
}

/// A limit in bits per second (0 = off) as bytes per second.
fn bytes_per_sec(bits: u64) -> Option<u64> {
    (bits > 0).then_some(bits / 8)
}

/// The shard count (0 = one per core, never more than relay ports) and each shard's
/// disjoint slice of the relay port range, so shards never contend for a port.
fn port_slices(cfg: &Config) -> Vec<RangeInclusive<u16>> {
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
