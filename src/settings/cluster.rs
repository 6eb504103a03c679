//! `[cluster]` as this node runs it: the name (default: the host name) and the URIs it
//! registers (default: the credential API's own).

use std::time::Duration;

use crate::config::Config;

/// The fleet registry's parameters, computed once from `[cluster]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterSettings {
    pub redis_url: String,
    pub node_name: String,
    pub region: String,
    /// This node's public TURN URIs, as registered and as the fallback for credentials.
    pub uris: Vec<String>,
    pub heartbeat: Duration,
    pub ttl: Duration,
    pub credential_nodes: usize,
    /// `relay.max_allocations`: what "full" and load are measured against.
    pub max_allocations: u64,
    /// `relay.max_allocations_per_user`, counted across the fleet.
    pub max_per_user: usize,
    /// `cluster.on_redis_down = "closed"`: refuse new Allocates while Redis cannot count.
    pub fail_closed: bool,
}

/// The cluster settings when `[cluster]` is present; `own_uris` are the node's
/// credential-API URIs (the default for `cluster.uris`).
pub fn from_config(cfg: &Config, own_uris: &[String]) -> Option<ClusterSettings> {
    let c = cfg.cluster.as_ref()?;
    Some(ClusterSettings {
        redis_url: c.redis_url.clone(),
        node_name: c.node_name.clone().unwrap_or_else(host_name),
        region: c.region.clone(),
        uris: if c.uris.is_empty() {
            own_uris.to_vec()
        } else {
            c.uris.clone()
        },
        heartbeat: c.heartbeat,
        ttl: c.ttl,
        credential_nodes: c.credential_nodes,
        max_allocations: cfg.relay.max_allocations as u64,
        max_per_user: cfg.relay.max_allocations_per_user,
        fail_closed: c.on_redis_down == crate::config::OnRedisDown::Closed,
    })
}

/// The kernel's host name, else "turnpike".
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "turnpike".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_defaults_to_host_name_and_own_uris() {
        let cfg = Config::from_toml("[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\n").unwrap();
        let own = vec!["turn:192.0.2.1:3478?transport=udp".to_string()];
        let c = from_config(&cfg, &own).unwrap();
        assert_eq!(c.node_name, host_name());
        assert_eq!(c.uris, own);
        assert_eq!(c.heartbeat, Duration::from_secs(2));
        assert_eq!(c.ttl, Duration::from_secs(10));
        assert_eq!(c.credential_nodes, 1);
        assert!(!c.fail_closed, "fail open by default");
        let closed =
            "[cluster]\nredis_url = \"redis://127.0.0.1:6379\"\non_redis_down = \"closed\"\n";
        assert!(
            from_config(&Config::from_toml(closed).unwrap(), &own)
                .unwrap()
                .fail_closed
        );
        let bad = closed.replace("\"closed\"", "\"shut\"");
        let e = format!("{:#}", Config::from_toml(&bad).unwrap_err());
        assert!(e.contains("on_redis_down"), "{e}");
        assert!(from_config(&Config::default(), &own).is_none());
    }
}
