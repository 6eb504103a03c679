//! The heartbeat task: every `cluster.heartbeat` (and at once when draining starts) it
//! writes this node's record, reads the fleet into the registry, updates the cluster
//! metrics and pushes the alternates to the shards when they changed. Every Redis wait
//! is bounded; on failure the registry keeps its last view and the task tries again at
//! the next heartbeat (a new connection if it has none).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{mpsc, oneshot};

use super::bus;
use super::load::{Rate, own_record};
use super::registry::Registry;
use super::store;
use crate::relay::revocation::Revocation;
use crate::runtime::Node;
use crate::runtime::clock::unix_ms;

pub(super) enum Cmd {
    /// Write the record now (draining started or ended).
    Beat,
    /// Delete the record and stop.
    Leave(oneshot::Sender<()>),
    /// Stop without deleting the record (a handover: the new process writes it).
    Stop,
}

struct Beat {
    node: Arc<Node>,
    registry: Arc<Registry>,
    conn: Option<ConnectionManager>,
    rate: Rate,
    /// Whether the last heartbeat reached Redis (None before the first).
    up: Option<bool>,
    /// The alternates last pushed to the shards.
    pushed: Vec<crate::relay::Alternate>,
}

/// This node's live allocations as `turnpike:sessions:<name>` holds them: a JSON array of
/// at most `store::MAX_SESSIONS` (the rest are left out).
fn sessions_json(node: &Node) -> String {
    let mut sessions = node.sessions();
    sessions.truncate(store::MAX_SESSIONS);
    serde_json::to_string(&sessions).unwrap_or_else(|_| "[]".into())
}

/// The longest any one Redis exchange may take: within a heartbeat, at most a second.
fn limit(heartbeat: Duration) -> Duration {
    heartbeat.min(Duration::from_secs(1))
}

/// `first`: fired once the first heartbeat has ended, reached Redis or not.
pub(super) async fn run(
    node: Arc<Node>,
    registry: Arc<Registry>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    first: oneshot::Sender<()>,
) {
    let mut tick = tokio::time::interval(registry.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut b = Beat {
        node,
        registry,
        conn: None,
        rate: Rate::default(),
        up: None,
        pushed: Vec::new(),
    };
    // An interval's first tick is at once.
    tick.tick().await;
    b.beat().await;
    let _ = first.send(());
    loop {
        tokio::select! {
            _ = tick.tick() => b.beat().await,
            cmd = cmds.recv() => match cmd {
                Some(Cmd::Beat) => b.beat().await,
                Some(Cmd::Leave(done)) => {
                    b.leave().await;
                    let _ = done.send(());
                    return;
                }
                Some(Cmd::Stop) | None => return,
            },
        }
    }
}

impl Beat {
    async fn beat(&mut self) {
        let node = self.node.clone();
        let (snaps, sessions) =
            tokio::task::spawn_blocking(move || (node.snapshots(), sessions_json(&node)))
                .await
                .unwrap_or_default();
        let s = &self.registry.settings;
        let now = unix_ms();
        let record = own_record(s, &snaps, self.node.is_draining(), &mut self.rate, now);
        let ttl_ms = s.ttl.as_millis() as u64;
        let result = tokio::time::timeout(limit(s.heartbeat), async {
            let conn = self.connection().await?;
            store::heartbeat(conn, &record, &sessions, ttl_ms).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::TimedOut,
            )))
        });
        match result {
            Ok(fleet) => {
                self.registry.replace(fleet.nodes);
                self.revocations(fleet.revocations, now).await;
                self.log_state(true, None);
            }
            Err(e) => {
                // A fresh connection at the next heartbeat: no reconnect backoff to wait out.
                self.conn = None;
                self.registry.mark_down();
                self.log_state(false, Some(&e));
            }
        }
        self.publish(unix_ms());
    }

    /// The revocations as read at `read_ms`: enforced by the shards, and the allocations
    /// of any user first seen revoked here ended (a missed pub/sub notice).
    async fn revocations(&self, list: Vec<Revocation>, read_ms: u64) {
        let Some(added) = self.registry.replace_revocations(list, read_ms) else {
            return;
        };
        bus::enforce(&self.node, &self.registry);
        for subject in added {
            let user = bus::user_of(&subject);
            let ended = bus::end_user(&self.node, user).await;
            if ended > 0 {
                tracing::info!(user = %user, ended, "cluster: allocations of a revoked user ended");
            }
        }
    }

    async fn connection(&mut self) -> redis::RedisResult<&mut ConnectionManager> {
        if self.conn.is_none() {
            let s = &self.registry.settings;
            self.conn = Some(store::connect(&s.redis_url, limit(s.heartbeat)).await?);
        }
        Ok(self.conn.as_mut().expect("just connected"))
    }

    /// One warn line per outage, one info line when Redis is back (or first reached).
    fn log_state(&mut self, up: bool, err: Option<&redis::RedisError>) {
        let name = &self.registry.settings.node_name;
        match (self.up, up) {
            (Some(false), true) => {
                tracing::info!(node = %name, "cluster: Redis reachable again; node re-registered")
            }
            (None, true) => tracing::info!(node = %name, "cluster: registered in Redis"),
            (Some(true) | None, false) => tracing::warn!(
                node = %name,
                error = %err.map_or(String::new(), |e| e.to_string()),
                "cluster: Redis unreachable; relaying goes on, the registry keeps its last view until entries pass their TTL"
            ),
            _ => {}
        }
        self.up = Some(up);
    }

    /// The cluster metrics, and the registry's alternates to every shard when they changed.
    fn publish(&mut self, now_ms: u64) {
        let live = self.registry.live(now_ms).len();
        self.node.metrics.set_cluster(self.registry.is_up(), live);
        let alternates = self.registry.alternates(now_ms);
        if alternates != self.pushed {
            tracing::debug!(alternates = ?alternates, "cluster: alternates changed");
            self.node.set_fleet_alternates(alternates.clone());
            self.pushed = alternates;
        }
    }

    /// Deletes this node's record (bounded); the TTL removes it if this fails.
    async fn leave(&mut self) {
        let s = &self.registry.settings;
        let name = s.node_name.clone();
        let bound = limit(s.heartbeat);
        let left = tokio::time::timeout(bound, async {
            let conn = self.connection().await?;
            store::leave(conn, &name).await
        })
        .await;
        match left {
            Ok(Ok(())) => tracing::info!(node = %name, "cluster: left the registry"),
            _ => {
                tracing::warn!(node = %name, "cluster: could not delete the record; it expires with its TTL")
            }
        }
    }
}
