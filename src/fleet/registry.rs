//! The fleet as this node last read it from Redis: an in-memory snapshot that HTTP reads
//! and the heartbeat task replaces. Nothing here waits on Redis. While Redis is away the
//! last view stays, and each record drops out when its own timestamp passes the TTL.
//! The revocations it knows stay in force the same way, each until its own `until`.

use std::sync::RwLock;

use serde_json::{Value, json};

use super::record::NodeRecord;
use super::select;
use crate::relay::revocation::{Revocation, Subject};
use crate::settings::cluster::ClusterSettings;

#[derive(Default)]
struct View {
    nodes: Vec<NodeRecord>,
    /// The last heartbeat reached Redis.
    up: bool,
    revocations: Vec<Revocation>,
    /// When a notice (pub/sub or this node's API) last changed the revocations, in Unix
    /// ms: a heartbeat read begun before it must not undo it.
    revocations_touched_ms: u64,
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

    /// A heartbeat's read of the revocations, begun at `read_ms`: the subjects it adds,
    /// or None when it changes nothing (or a notice came since the read began).
    pub fn replace_revocations(&self, list: Vec<Revocation>, read_ms: u64) -> Option<Vec<Subject>> {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        if v.revocations_touched_ms >= read_ms || v.revocations == list {
            return None;
        }
        let added = list
            .iter()
            .filter(|r| !v.revocations.iter().any(|o| o.subject == r.subject))
            .map(|r| r.subject.clone())
            .collect();
        v.revocations = list;
        Some(added)
    }

    /// A revocation noticed now (made here or announced): whether it was new.
    pub fn add_revocation(&self, r: Revocation, now_ms: u64) -> bool {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.revocations_touched_ms = now_ms;
        match v.revocations.iter_mut().find(|o| o.subject == r.subject) {
            Some(o) => {
                o.until = o.until.max(r.until);
                false
            }
            None => {
                v.revocations.push(r);
                true
            }
        }
    }

    /// A revocation lifted now (here or announced).
    pub fn remove_revocation(&self, s: &Subject, now_ms: u64) {
        let mut v = self.view.write().unwrap_or_else(|e| e.into_inner());
        v.revocations_touched_ms = now_ms;
        v.revocations.retain(|o| &o.subject != s);
    }

    /// The revocations known here that are still in force at `now_unix`.
    pub fn revocations(&self, now_unix: u64) -> Vec<Revocation> {
        let v = self.view.read().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<Revocation> = v
            .revocations
            .iter()
            .filter(|r| r.until > now_unix)
            .cloned()
            .collect();
        out.sort_by(|a, b| a.subject.cmp(&b.subject));
        out
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
    pub fn alternates(&self, now_ms: u64) -> Vec<crate::relay::Alternate> {
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
