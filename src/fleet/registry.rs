//! The fleet as this node last read it from Redis: an in-memory snapshot that HTTP reads
//! and the heartbeat task replaces. Nothing here waits on Redis. While Redis is away the
//! last view stays, and each record drops out when its own timestamp passes the TTL.

use std::sync::RwLock;

use serde_json::{Value, json};

use super::record::NodeRecord;
use super::select;
use crate::settings::cluster::ClusterSettings;

#[derive(Default)]
struct View {
    nodes: Vec<NodeRecord>,
    /// The last heartbeat reached Redis.
    up: bool,
}

pub struct Registry {
    pub settings: ClusterSettings,
    view: RwLock<View>,
}

impl Registry {
    pub fn new(settings: ClusterSettings) -> Registry {
        Registry {
            settings,
            view: RwLock::new(View::default()),
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.ttl.as_millis() as u64
    }

    /// A successful read: the fleet as Redis has it now.
    pub fn replace(&self, nodes: Vec<NodeRecord>) {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.nodes = nodes;
        v.up = true;
    }

    /// Redis did not answer: keep the last view (records age out by their timestamps).
    pub fn mark_down(&self) {
        self.view.write().unwrap_or_else(|e| e.into_inner()).up = false;
    }

    pub fn is_up(&self) -> bool {
        self.view.read().unwrap_or_else(|e| e.into_inner()).up
    }

    /// The records heard from within the TTL.
    pub fn live(&self, now_ms: u64) -> Vec<NodeRecord> {
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        let ttl = self.ttl_ms();
        v.nodes
            .iter()
            .filter(|r| r.is_live(now_ms, ttl))
            .cloned()
            .collect()
    }

    /// The URIs a new credential carries: the best `credential_nodes` nodes for a caller
    /// in `region`, or this node's own URIs when none qualifies.
    pub fn credential_uris(&self, region: Option<&str>, now_ms: u64) -> Vec<String> {
        let s = &self.settings;
        let live = self.live(now_ms);
        select::credential_uris(
            &live,
            now_ms,
            self.ttl_ms(),
            region,
            s.credential_nodes,
            &s.uris,
        )
    }

    /// ALTERNATE-SERVER candidates from the registry (other nodes with room).
    pub fn alternates(&self, now_ms: u64) -> Vec<std::net::SocketAddr> {
        select::alternates(
            &self.live(now_ms),
            &self.settings.node_name,
            now_ms,
            self.ttl_ms(),
        )
    }

    /// GET /api/v1/nodes: every live node with its load and heartbeat age.
    pub fn to_json(&self, now_ms: u64) -> Value {
        let nodes: Vec<Value> = self
            .live(now_ms)
            .into_iter()
            .map(|r| {
                let age = r.age_ms(now_ms);
                let mut v = serde_json::to_value(&r).unwrap_or(Value::Null);
                v["last_heartbeat_age_ms"] = json!(age);
                v
            })
            .collect();
        json!({
            "node": self.settings.node_name,
            "redis_up": self.is_up(),
            "ttl_ms": self.ttl_ms(),
            "nodes": nodes,
        })
    }
}
