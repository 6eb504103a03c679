//! Fleet state in Redis (`[cluster]`): an adapter beside the shell, never on the relay
//! path. A tokio task (`task`) writes this node's record every heartbeat and reads every
//! node's into an in-memory `Registry`; HTTP reads the registry (GET /api/v1/nodes,
//! load-aware credentials) and the task pushes ALTERNATE-SERVER candidates to the shards'
//! cores through their control queues. Nothing waits on Redis except that task, and each
//! of its waits is bounded by min(heartbeat, 1 s).
//!
//! Read top-down: `Fleet` here; `record` (what a node writes), `select` (which nodes new
//! clients go to), `registry` (the in-memory view, revocations included), `store` (the
//! keys in Redis, the only code that talks to it), `load` (this node's record from its
//! snapshots), `task` (the heartbeat), `bus` (fleet commands over pub/sub, on a
//! connection of their own) and `admin` (what the HTTP API asks of the fleet).
//!
//! Revocations reach the cores as a control message carrying the whole small set; the
//! cores check it with each request's own time, never asking Redis. The fleet-wide
//! per-user quota (`quota`) is the one thing an Allocate waits for, at most
//! `quota::CLAIM_LIMIT`, through a queue and the shard's control queue.

pub mod admin;
pub mod bus;
pub mod load;
pub mod quota;
pub mod record;
pub mod registry;
pub mod select;
pub mod store;
mod task;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::runtime::Node;
use crate::settings::cluster::ClusterSettings;
use registry::Registry;
use task::Cmd;

/// The running registry task and the view it keeps.
pub struct Fleet {
    pub registry: Arc<Registry>,
    /// What the HTTP API asks of the fleet.
    pub admin: Arc<admin::FleetAdmin>,
    cmds: mpsc::UnboundedSender<Cmd>,
    task: tokio::task::JoinHandle<()>,
    /// The fleet commands subscription (`bus`).
    listener: tokio::task::JoinHandle<()>,
    /// The fleet-wide per-user quota (`quota`).
    slots: Option<tokio::task::JoinHandle<()>>,
    /// `<node>/<boot>`: how this process's quota slots are named (the next process of a
    /// handover takes them over by it).
    pub slot_prefix: String,
    /// Fires once the slots of a handover's allocations are this process's.
    adopted: Option<oneshot::Receiver<()>>,
    /// Fires once the first heartbeat has read the fleet (or failed to).
    first_beat: Option<oneshot::Receiver<()>>,
}

impl Fleet {
    /// Starts the heartbeat task for `node` (on the current tokio runtime). `previous`:
    /// the slot prefix of the process this one took over from (a handover).
    pub fn start(node: Arc<Node>, settings: ClusterSettings, previous: Option<String>) -> Fleet {
        tracing::info!(
            node = %settings.node_name,
            region = %settings.region,
            uris = ?settings.uris,
            heartbeat_ms = settings.heartbeat.as_millis() as u64,
            ttl_ms = settings.ttl.as_millis() as u64,
            "cluster: joining the fleet registry"
        );
        let boot: u32 = rand::random();
        let slot_prefix = format!("{}/{boot:08x}", settings.node_name);
        let (done, adopted) = oneshot::channel();
        let slots = node.take_slot_requests().map(|(rx, expect)| {
            let adopting = quota::Adopting::new(previous, expect, done);
            let prefix = slot_prefix.clone();
            tokio::spawn(quota::run(
                node.clone(),
                settings.clone(),
                prefix,
                adopting,
                rx,
            ))
        });
        let registry = Arc::new(Registry::new(settings));
        let (cmds, rx) = mpsc::unbounded_channel();
        let (first, first_beat) = oneshot::channel();
        let task = tokio::spawn(task::run(node.clone(), registry.clone(), rx, first));
        let listener = tokio::spawn(bus::listen(node.clone(), registry.clone()));
        Fleet {
            admin: Arc::new(admin::FleetAdmin::new(registry.clone(), node)),
            registry,
            cmds,
            task,
            listener,
            slots,
            slot_prefix,
            adopted: Some(adopted),
            first_beat: Some(first_beat),
        }
    }

    /// Waits until the first heartbeat has read the fleet (it gives up on Redis within a
    /// second). Until then the view is empty: GET /api/v1/nodes would list no node, not
    /// even this one (a process that a handover had just started answered so), and
    /// credentials would name only this node.
    pub async fn first_beat(&mut self) {
        if let Some(rx) = self.first_beat.take() {
            let _ = tokio::time::timeout(Duration::from_secs(2), rx).await;
        }
    }

    /// Waits (at most `limit`) until the fleet quota slots of the allocations a handover
    /// brought are this process's: only then may the previous process give its names of
    /// them back.
    pub async fn slots_adopted(&mut self, limit: Duration) {
        if let Some(rx) = self.adopted.take()
            && tokio::time::timeout(limit, rx).await.is_err()
        {
            tracing::warn!("cluster: the handed-over fleet quota slots were not adopted in time");
        }
    }

    /// A handover is done: the new process (same node name) writes the node's record
    /// now, so this one stops its heartbeat without deleting the record. The quota
    /// task goes on for the allocations this process still serves.
    pub fn hand_over(&self) {
        let _ = self.cmds.send(Cmd::Stop);
    }

    /// Writes the record now rather than at the next heartbeat (draining changed).
    pub fn beat_now(&self) {
        let _ = self.cmds.send(Cmd::Beat);
    }

    /// Deletes this node's record (unless `hand_over` stopped the heartbeat: then it is
    /// the new process's) and stops the tasks (at most a few seconds). After the
    /// shards stopped, the quota task gives back the slots they released, then ends (its
    /// queue closes); what it cannot give back in time lapses after the TTL.
    pub async fn leave(self) {
        let (done, wait) = oneshot::channel();
        if self.cmds.send(Cmd::Leave(done)).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(3), wait).await;
        }
        self.task.abort();
        self.listener.abort();
        if let Some(mut s) = self.slots
            && tokio::time::timeout(Duration::from_secs(3), &mut s)
                .await
                .is_err()
        {
            s.abort();
        }
    }
}

/// The fleet's URIs for a credential, read once (the `turnpike credentials` command):
/// Err when Redis does not answer within `limit`.
pub async fn credential_uris_once(
    settings: ClusterSettings,
    region: Option<&str>,
    limit: Duration,
) -> anyhow::Result<Vec<String>> {
    let now = crate::runtime::clock::unix_ms();
    let ttl = settings.ttl.as_millis() as u64;
    let nodes = tokio::time::timeout(limit, async {
        let mut conn = store::connect(&settings.redis_url, limit).await?;
        store::read(&mut conn, now, ttl).await
    })
    .await
    .map_err(|_| anyhow::anyhow!("no answer from {} within {limit:?}", settings.redis_url))??;
    let registry = Registry::new(settings);
    registry.replace(nodes);
    Ok(registry.credential_uris(region, now))
}
