//! What the HTTP API asks of the fleet (`[cluster]`): publish an end-of-user, make or
//! lift a revocation, read the other nodes' session lists. Each call is one bounded
//! exchange with Redis (at most a second) on a connection of its own, made on first use;
//! an HTTP handler waits for it, the relay never does.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::Mutex;

use super::bus::{self, Command, Notice};
use super::registry::Registry;
use super::store;
use crate::relay::revocation::{Revocation, Subject};
use crate::runtime::Node;
use crate::runtime::clock::unix_ms;

/// The longest one API exchange with Redis may take.
const LIMIT: Duration = Duration::from_secs(1);
/// The most revocations in force at once, fleet-wide.
pub const MAX_REVOCATIONS: usize = 10_000;

pub struct FleetAdmin {
    pub registry: Arc<Registry>,
    node: Arc<Node>,
    conn: Mutex<Option<ConnectionManager>>,
}

/// Why a revocation was not stored.
#[derive(Debug)]
pub enum RevokeError {
    /// `MAX_REVOCATIONS` are in force.
    Full,
    /// Redis did not answer in time.
    Unreachable(anyhow::Error),
}

impl FleetAdmin {
    pub fn new(registry: Arc<Registry>, node: Arc<Node>) -> FleetAdmin {
        FleetAdmin {
            registry,
            node,
            conn: Mutex::new(None),
        }
    }

    /// Runs `f` on the connection (made now if there is none), within `LIMIT`; a failure
    /// drops the connection so the next call makes a fresh one.
    async fn with_conn<T, F, Fut>(&self, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let mut slot = self.conn.lock().await;
        let result = tokio::time::timeout(LIMIT, async {
            let conn = match slot.as_ref() {
                Some(c) => c.clone(),
                None => {
                    let c = store::connect(&self.registry.settings.redis_url, LIMIT).await?;
                    *slot = Some(c.clone());
                    c
                }
            };
            f(conn).await
        })
        .await;
        let err = match result {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => anyhow::Error::from(e),
            Err(_) => anyhow::anyhow!("Redis did not answer within {LIMIT:?}"),
        };
        *slot = None;
        Err(err)
    }

    /// Publishes `command` to the other nodes; how many subscribers heard it.
    async fn publish(&self, command: Command) -> anyhow::Result<usize> {
        let notice = Notice {
            from: self.registry.settings.node_name.clone(),
            command,
        };
        let json = serde_json::to_string(&notice)?;
        self.with_conn(|mut c| async move { store::publish(&mut c, &json).await })
            .await
    }

    /// Ends `user`'s allocations here, then tells the fleet: (ended here, the fleet's
    /// answer: how many subscribers heard it).
    pub async fn end_user(&self, user: &str) -> (usize, anyhow::Result<usize>) {
        let ended = bus::end_user(&self.node, user).await;
        let heard = self.publish(Command::EndUser(user.to_owned())).await;
        (ended, heard)
    }

    /// Stores `r` in Redis, enforces it here and ends its user's allocations here, then
    /// tells the fleet: (ended here, how many subscribers heard it).
    pub async fn revoke(&self, r: Revocation) -> Result<(usize, usize), RevokeError> {
        let stored = r.clone();
        let ok = self
            .with_conn(|mut c| async move { store::revoke(&mut c, &stored, MAX_REVOCATIONS).await })
            .await
            .map_err(RevokeError::Unreachable)?;
        if !ok {
            return Err(RevokeError::Full);
        }
        self.registry.add_revocation(r.clone(), unix_ms());
        bus::enforce(&self.node, &self.registry);
        let ended = bus::end_user(&self.node, bus::user_of(&r.subject)).await;
        // Stored: the other nodes read it at their next heartbeat if they miss this.
        let heard = self.publish(Command::Revoke(r)).await.unwrap_or(0);
        Ok((ended, heard))
    }

    /// Lifts the revocation of `s` fleet-wide; whether there was one.
    pub async fn lift(&self, s: Subject) -> anyhow::Result<bool> {
        let key = s.clone();
        let had = self
            .with_conn(|mut c| async move { store::lift(&mut c, &key).await })
            .await?;
        self.registry.remove_revocation(&s, unix_ms());
        bus::enforce(&self.node, &self.registry);
        let _ = self.publish(Command::Lift(s)).await;
        Ok(had)
    }

    /// The session lists the other live nodes last wrote: (node name, JSON array).
    pub async fn other_sessions(&self) -> anyhow::Result<Vec<(String, String)>> {
        let own = &self.registry.settings.node_name;
        let names: Vec<String> = self
            .registry
            .live(unix_ms())
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n != own)
            .collect();
        self.with_conn(|mut c| async move { store::sessions(&mut c, &names).await })
            .await
    }
}
