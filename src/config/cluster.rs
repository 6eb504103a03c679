//! `[cluster]`: several nodes that share a registry in Redis (off when the section is
//! absent; a single node needs none of it).

use std::time::Duration;

use anyhow::bail;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// The Redis (or Valkey) every node of the fleet shares, e.g. "redis://10.0.0.5:6379".
    pub redis_url: String,
    /// This node's name in the registry (default: the host name).
    #[serde(default)]
    pub node_name: Option<String>,
    /// The region credentials prefer for callers that name it.
    #[serde(default)]
    pub region: String,
    /// This node's public TURN URIs (default: the credential API's URIs).
    #[serde(default)]
    pub uris: Vec<String>,
    /// How often the node writes its record and reads everyone else's.
    #[serde(default = "default_heartbeat", with = "humantime_serde")]
    pub heartbeat: Duration,
    /// A node not heard from for this long drops out of the registry.
    #[serde(default = "default_ttl", with = "humantime_serde")]
    pub ttl: Duration,
    /// How many nodes' URIs a credential carries.
    #[serde(default = "default_credential_nodes")]
    pub credential_nodes: usize,
    /// What a new Allocate meets while Redis cannot count the user's allocations fleet-wide:
    /// "open" (the node's own `max_allocations_per_user` only) or "closed" (508).
    #[serde(default)]
    pub on_redis_down: OnRedisDown,
}

/// `cluster.on_redis_down`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnRedisDown {
    /// Relaying and admission go on with per-node quotas (an outage may overshoot).
    #[default]
    Open,
    /// New Allocates are refused until Redis answers again (calls keep relaying).
    Closed,
}

fn default_heartbeat() -> Duration {
    Duration::from_secs(2)
}

fn default_ttl() -> Duration {
    Duration::from_secs(10)
}

fn default_credential_nodes() -> usize {
    1
}

impl Cluster {
    /// The rules serde cannot express; each error names its key.
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        if let Err(e) = redis::Client::open(self.redis_url.as_str()) {
            bail!(
                "cluster.redis_url: {:?} is not a usable Redis URL: {e}",
                self.redis_url
            );
        }
        if let Some(n) = &self.node_name
            && (n.is_empty() || n.len() > 64 || !n.bytes().all(|b| b.is_ascii_graphic()))
        {
            bail!("cluster.node_name: 1 to 64 printable ASCII characters, no spaces");
        }
        if self.region.len() > 64 || !self.region.bytes().all(|b| b.is_ascii_graphic()) {
            bail!("cluster.region: at most 64 printable ASCII characters, no spaces");
        }
        for u in &self.uris {
            if !(u.starts_with("turn:") || u.starts_with("turns:") || u.starts_with("stun:")) {
                bail!("cluster.uris: {u:?} is not a turn:, turns: or stun: URI");
            }
        }
        if self.heartbeat < Duration::from_millis(100) {
            bail!("cluster.heartbeat: must be at least 100ms");
        }
        if self.ttl <= self.heartbeat {
            bail!("cluster.ttl: must be longer than cluster.heartbeat");
        }
        if self.credential_nodes == 0 {
            bail!("cluster.credential_nodes: must be above 0");
        }
        Ok(())
    }
}
