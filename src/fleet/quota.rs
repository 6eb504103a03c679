//! The fleet-wide per-user quota: `relay.max_allocations_per_user` counted across every
//! node. Each Allocate's slot is claimed in Redis by one script that counts the user's live
//! slots and adds its own atomically (`store::claim_slot`), so racing nodes never overshoot
//! while Redis answers. A node refreshes the slots it holds every heartbeat; a dead node's
//! lapse after one TTL, with no cleanup. What this task granted is also kept here, so
//! after an outage the next refresh writes every live slot back (the reconcile).
//!
//! A handover (issue 18) moves slots without a count that dips or doubles: the new
//! process adopts each imported allocation's slot (`SlotRequest::Adopt`) under its own
//! name in one script that also removes the previous process's name of it (`Adopting`),
//! before it says it took over. The previous process then gives its names back (an exec
//! handover: a refresh of its own may have written one back in between) or, when the
//! next process starts only after it exits (systemd's store), just stops refreshing.
//!
//! The shards' cores never wait on Redis: they ask through a queue and the answer comes
//! back on their control queue. A claim waits at most `CLAIM_LIMIT` for Redis; past that,
//! or while Redis is down, `cluster.on_redis_down` answers: "open" grants (the node's own
//! per-user quota, which the core checked first, still holds), "closed" refuses (508).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;

use super::store;
use crate::relay::FleetSlot;
use crate::runtime::Node;
use crate::runtime::fleet_slots::{SlotReceiver, SlotRequest};
use crate::settings::cluster::ClusterSettings;

/// The longest an Allocate waits for Redis to count its user's slots.
pub const CLAIM_LIMIT: Duration = Duration::from_millis(200);

struct Slots {
    node: Arc<Node>,
    settings: ClusterSettings,
    conn: Option<ConnectionManager>,
    /// Redis failed: claims are answered by the policy at once until a refresh gets through.
    down: bool,
    /// The slots this node holds, by (shard, token): the user's key and this slot's member.
    held: HashMap<(usize, u64), (String, String)>,
    /// `<node>/<boot>`, the start of this process's members; the boot tells them from
    /// those a previous run of the node left to lapse.
    prefix: String,
    adopting: Adopting,
}

/// A queued adoption's key, this process's member ("": given back) and the previous
/// process's ("": unknown).
type Names = (String, String, String);

/// A handover's slots on their way to Redis: the previous process's member prefix, what
/// is still to be written, and who waits for all `expect` of them.
pub struct Adopting {
    previous: Option<String>,
    expect: usize,
    done: Option<tokio::sync::oneshot::Sender<()>>,
    /// Not written yet: the slot as held here (None: given back) and its names.
    queued: Vec<(Option<(usize, u64)>, Names)>,
    seen: usize,
}

impl Adopting {
    pub fn new(
        previous: Option<String>,
        expect: usize,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Adopting {
        Adopting {
            previous,
            expect,
            done: Some(done),
            queued: Vec::new(),
            seen: 0,
        }
    }
}

pub(super) async fn run(
    node: Arc<Node>,
    settings: ClusterSettings,
    prefix: String,
    adopting: Adopting,
    mut rx: SlotReceiver,
) {
    let mut tick = tokio::time::interval(settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut s = Slots {
        node,
        settings,
        conn: None,
        down: false,
        held: HashMap::new(),
        prefix,
        adopting,
    };
    s.flush_adopted().await;
    loop {
        tokio::select! {
            req = rx.recv() => match req {
                // In batches, and written before anything else touches a slot.
                Some(SlotRequest::Adopt { shard, token, was, user }) => {
                    s.adopt(shard, token, was, &user);
                    if rx.is_empty() || s.adopting.queued.len() >= ADOPT_BATCH {
                        s.flush_adopted().await;
                    }
                }
                Some(SlotRequest::Claim { shard, token, user }) => {
                    s.flush_adopted().await;
                    let answer = s.claim(shard, token, &user).await;
                    s.node.answer_fleet_slot(shard, token, answer);
                }
                Some(SlotRequest::Release { shard, token }) => {
                    s.flush_adopted().await;
                    s.release(shard, token).await
                }
                None => return s.flush_adopted().await,
            },
            _ = tick.tick() => {
                s.flush_adopted().await;
                s.refresh().await;
                // Adoptions held back by an outage the refresh just saw end.
                s.flush_adopted().await;
            }
        }
    }
}

/// Adopted slots written to Redis in one script.
const ADOPT_BATCH: usize = 500;

/// `fut` within `limit`, a timeout counting as a Redis error.
async fn bounded<T>(
    limit: Duration,
    fut: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> redis::RedisResult<T> {
    tokio::time::timeout(limit, fut).await.unwrap_or_else(|_| {
        Err(redis::RedisError::from(std::io::Error::from(
            std::io::ErrorKind::TimedOut,
        )))
    })
}

impl Slots {
    async fn claim(&mut self, shard: usize, token: u64, user: &str) -> FleetSlot {
        let key = store::quota_key(user);
        let member = format!("{}/{shard}/{token}", self.prefix);
        if !self.down {
            let (max, ttl) = (self.settings.max_per_user, self.ttl_ms());
            let url = self.settings.redis_url.clone();
            let result = bounded(CLAIM_LIMIT, async {
                let conn = connection(&mut self.conn, &url).await?;
                store::claim_slot(conn, &key, &member, max, ttl).await
            })
            .await;
            match result {
                Ok(true) => {
                    self.held.insert((shard, token), (key, member));
                    return FleetSlot::Granted;
                }
                Ok(false) => return FleetSlot::Full,
                Err(e) => self.went_down(&e),
            }
        }
        if self.settings.fail_closed {
            return FleetSlot::Unavailable;
        }
        // Granted on this node's count alone; written to Redis by the next refresh.
        self.held.insert((shard, token), (key, member));
        FleetSlot::Granted
    }

    async fn release(&mut self, shard: usize, token: u64) {
        let Some((key, member)) = self.held.remove(&(shard, token)) else {
            return;
        };
        if self.down {
            return; // It lapses in Redis after one TTL.
        }
        let url = self.settings.redis_url.clone();
        let result = bounded(CLAIM_LIMIT, async {
            let conn = connection(&mut self.conn, &url).await?;
            store::release_slot(conn, &key, &member).await
        })
        .await;
        if let Err(e) = result {
            self.went_down(&e);
        }
    }

    /// A slot of a handover's allocation: held from now on under this process's name
    /// (`token`), unless it was not imported; written to Redis by `flush_adopted`.
    fn adopt(&mut self, shard: usize, token: Option<u64>, was: u64, user: &str) {
        let key = store::quota_key(user);
        let ours = token.map(|t| {
            let member = format!("{}/{shard}/{t}", self.prefix);
            self.held.insert((shard, t), (key.clone(), member.clone()));
            member
        });
        let previous = (self.adopting.previous.as_ref()).map(|p| format!("{p}/{shard}/{was}"));
        self.adopting.seen += 1;
        let names = (key, ours.unwrap_or_default(), previous.unwrap_or_default());
        let slot = token.map(|t| (shard, t));
        self.adopting.queued.push((slot, names));
    }

    /// Writes the queued adoptions; once all a handover brought are written, says so.
    /// While Redis fails they stay queued (tried again after each refresh), so that the
    /// previous process's names are removed by the rename, never left to lapse.
    async fn flush_adopted(&mut self) {
        if self.adopting.queued.is_empty() || self.down {
            return self.adopted_all();
        }
        // A slot given back since it was queued is not written (it would leak).
        let names: Vec<Names> = (self.adopting.queued.iter())
            .map(|(slot, (key, ours, previous))| {
                let held = slot.is_some_and(|s| self.held.contains_key(&s));
                let ours = if held { ours.clone() } else { String::new() };
                (key.clone(), ours, previous.clone())
            })
            .collect();
        let (ttl, url) = (self.ttl_ms(), self.settings.redis_url.clone());
        let result = bounded(CLAIM_LIMIT.max(self.settings.heartbeat), async {
            let conn = connection(&mut self.conn, &url).await?;
            store::adopt_slots(conn, &names, ttl).await
        })
        .await;
        match result {
            Ok(()) => self.adopting.queued.clear(),
            Err(e) => self.went_down(&e),
        }
        self.adopted_all();
    }

    /// Tells whoever waits once every slot a handover brought is written.
    fn adopted_all(&mut self) {
        if self.adopting.seen >= self.adopting.expect
            && self.adopting.queued.is_empty()
            && let Some(done) = self.adopting.done.take()
        {
            if self.adopting.expect > 0 {
                tracing::info!(
                    slots = self.adopting.seen,
                    "cluster: the fleet quota slots of the handed-over allocations are this process's"
                );
            }
            let _ = done.send(());
        }
    }

    /// Every heartbeat: keeps this node's slots live, and after an outage writes them all
    /// back (counts reconcile) before claims go to Redis again.
    async fn refresh(&mut self) {
        let slots: Vec<(&str, &str)> = self
            .held
            .values()
            .map(|(k, m)| (k.as_str(), m.as_str()))
            .collect();
        let (ttl, url) = (self.ttl_ms(), &self.settings.redis_url);
        let limit = self.settings.heartbeat.min(Duration::from_secs(1));
        let result = bounded(limit, async {
            let conn = connection(&mut self.conn, url).await?;
            store::refresh_slots(conn, &slots, ttl).await
        })
        .await;
        match result {
            Ok(()) if self.down => {
                self.down = false;
                tracing::info!(
                    slots = self.held.len(),
                    "cluster: Redis reachable again; this node's allocations recounted in the fleet quota"
                );
            }
            Ok(()) => {}
            Err(e) => self.went_down(&e),
        }
    }

    fn went_down(&mut self, e: &redis::RedisError) {
        self.conn = None;
        if !self.down {
            self.down = true;
            let policy = if self.settings.fail_closed {
                "closed: new Allocates get 508 until it is back"
            } else {
                "open: new Allocates count against this node's quota only"
            };
            tracing::warn!(error = %e, policy, "cluster: Redis cannot count the fleet-wide per-user quota");
        }
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.ttl.as_millis() as u64
    }
}

async fn connection<'a>(
    conn: &'a mut Option<ConnectionManager>,
    url: &str,
) -> redis::RedisResult<&'a mut ConnectionManager> {
    if conn.is_none() {
        *conn = Some(store::connect(url, CLAIM_LIMIT).await?);
    }
    Ok(conn.as_mut().expect("just connected"))
}
