//! The registry's keys in Redis, and the only code that talks to it.
//!
//! - `turnpike:node:<name>`: the node's record (JSON), written every heartbeat with
//!   `SET .. PX ttl`, so a node that stops writing disappears by itself.
//! - `turnpike:nodes`: a sorted set of node names scored by their last heartbeat (Unix
//!   ms); readers take the names heard from within the TTL and MGET their records.
//!   Names older than three TTLs are pruned by whoever writes next.
//! - `turnpike:sessions:<name>`: the node's live allocations (a JSON array, at most
//!   `MAX_SESSIONS`), written with its record and the same `PX ttl`.
//! - `turnpike:revocations`: a sorted set of `user:<id>` / `username:<name>` scored by
//!   the revocation's `until` (Unix seconds): readers take the scores above now, and every
//!   heartbeat prunes those at or below it, so a revocation disappears when it expires.
//! - `turnpike:quota:<user id>`: the user's allocations on every node (`quota`), a sorted
//!   set of `<node>/<boot>/<shard>/<token>` scored by when each lapses (Redis's own clock,
//!   Unix ms): claimed by a script that counts and adds atomically, refreshed every
//!   heartbeat by the node that holds it, so a dead node's slots lapse after one TTL. A
//!   handover renames a slot to the new process's member in one script (`adopt_slots`).
//! - `turnpike:commands`: the pub/sub channel of fleet commands (`bus`).

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::record::NodeRecord;
use crate::relay::revocation::{Revocation, Subject};

pub const PREFIX: &str = "turnpike:";

fn node_key(name: &str) -> String {
    format!("{PREFIX}node:{name}")
}

fn names_key() -> String {
    format!("{PREFIX}nodes")
}

fn sessions_key(name: &str) -> String {
    format!("{PREFIX}sessions:{name}")
}

fn revocations_key() -> String {
    format!("{PREFIX}revocations")
}

/// The fleet-wide allocation slots of one user id.
pub fn quota_key(user: &str) -> String {
    format!("{PREFIX}quota:{user}")
}

/// The pub/sub channel of fleet commands.
pub fn commands_channel() -> String {
    format!("{PREFIX}commands")
}

/// The most allocations one node lists under `turnpike:sessions:<name>`.
pub const MAX_SESSIONS: usize = 10_000;

/// What one heartbeat reads back: the live nodes and the revocations in force.
pub struct Fleetwide {
    pub nodes: Vec<NodeRecord>,
    pub revocations: Vec<Revocation>,
}

/// Writes `record` and `sessions` (a JSON array), both expiring after `ttl_ms`, prunes
/// expired revocations, and reads every node heard from within the TTL and every
/// revocation in force.
pub async fn heartbeat(
    conn: &mut ConnectionManager,
    record: &NodeRecord,
    sessions: &str,
    ttl_ms: u64,
) -> redis::RedisResult<Fleetwide> {
    let json = serde_json::to_string(record).unwrap_or_default();
    let now = record.unix_ms;
    let now_s = now / 1000;
    let (names, revoked): (Vec<String>, Vec<(String, u64)>) = redis::pipe()
        .cmd("SET")
        .arg(node_key(&record.name))
        .arg(json)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .cmd("SET")
        .arg(sessions_key(&record.name))
        .arg(sessions)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .zadd(names_key(), &record.name, now)
        .ignore()
        .zrembyscore(names_key(), "-inf", now.saturating_sub(3 * ttl_ms))
        .ignore()
        .zrangebyscore(names_key(), now.saturating_sub(ttl_ms), "+inf")
        .zrembyscore(revocations_key(), "-inf", now_s)
        .ignore()
        .zrangebyscore_withscores(revocations_key(), format!("({now_s}"), "+inf")
        .query_async(conn)
        .await?;
    Ok(Fleetwide {
        nodes: records(conn, &names).await?,
        revocations: revocation_list(revoked),
    })
}

fn revocation_list(raw: Vec<(String, u64)>) -> Vec<Revocation> {
    raw.into_iter()
        .filter_map(|(k, until)| {
            Some(Revocation {
                subject: Subject::from_key(&k)?,
                until,
            })
        })
        .collect()
}

/// Stores a revocation (the later `until` wins over an earlier one for the same subject)
/// and refuses when `max` others are in force.
pub async fn revoke(
    conn: &mut ConnectionManager,
    r: &Revocation,
    max: usize,
) -> redis::RedisResult<bool> {
    let count: usize = conn.zcard(revocations_key()).await?;
    if count >= max {
        return Ok(false);
    }
    redis::cmd("ZADD")
        .arg(revocations_key())
        .arg("GT")
        .arg(r.until)
        .arg(r.subject.key())
        .query_async::<()>(conn)
        .await?;
    Ok(true)
}

/// Lifts a revocation; whether there was one.
pub async fn lift(conn: &mut ConnectionManager, s: &Subject) -> redis::RedisResult<bool> {
    let n: usize = conn.zrem(revocations_key(), s.key()).await?;
    Ok(n > 0)
}

/// Sends a fleet command to every subscribed node; how many heard it.
pub async fn publish(conn: &mut ConnectionManager, json: &str) -> redis::RedisResult<usize> {
    conn.publish(commands_channel(), json).await
}

/// The session lists of `names` as they wrote them (missing ones are skipped).
pub async fn sessions(
    conn: &mut ConnectionManager,
    names: &[String],
) -> redis::RedisResult<Vec<(String, String)>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names.iter().map(|n| sessions_key(n)).collect();
    let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(conn).await?;
    Ok(names
        .iter()
        .cloned()
        .zip(raw)
        .filter_map(|(n, j)| Some((n, j?)))
        .collect())
}

/// Reads every node heard from within `ttl_ms` of `now_ms` (no write: the CLI).
pub async fn read(
    conn: &mut ConnectionManager,
    now_ms: u64,
    ttl_ms: u64,
) -> redis::RedisResult<Vec<NodeRecord>> {
    let names: Vec<String> = conn
        .zrangebyscore(names_key(), now_ms.saturating_sub(ttl_ms), "+inf")
        .await?;
    records(conn, &names).await
}

/// The records of `names` (those whose key expired are skipped).
async fn records(
    conn: &mut ConnectionManager,
    names: &[String],
) -> redis::RedisResult<Vec<NodeRecord>> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let keys: Vec<String> = names.iter().map(|n| node_key(n)).collect();
    let raw: Vec<Option<String>> = redis::cmd("MGET").arg(keys).query_async(conn).await?;
    Ok(raw
        .into_iter()
        .flatten()
        .filter_map(|j| serde_json::from_str(&j).ok())
        .collect())
}

/// Removes this node from the registry (it is exiting).
pub async fn leave(conn: &mut ConnectionManager, name: &str) -> redis::RedisResult<()> {
    redis::pipe()
        .del(node_key(name))
        .ignore()
        .del(sessions_key(name))
        .ignore()
        .zrem(names_key(), name)
        .ignore()
        .query_async::<()>(conn)
        .await
}

/// Drops the user's lapsed slots, then adds `member` (lapsing `ttl_ms` from now) if
/// fewer than `max` remain: one script, so two nodes racing cannot both take the last slot.
const CLAIM: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
";

/// Sets each KEYS[i]'s member ARGV[i + 1] to lapse ARGV[1] ms from now (adding it back if
/// it had gone: the reconcile after an outage), without checking the cap.
const REFRESH: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, k in ipairs(KEYS) do
  redis.call('ZADD', k, now + tonumber(ARGV[1]), ARGV[i + 1])
  redis.call('PEXPIRE', k, ARGV[1])
end
return #KEYS
";

/// Takes a slot of `key`'s user for `member` if fewer than `max` are live.
pub async fn claim_slot(
    conn: &mut ConnectionManager,
    key: &str,
    member: &str,
    max: usize,
    ttl_ms: u64,
) -> redis::RedisResult<bool> {
    let taken: i64 = redis::cmd("EVAL")
        .arg(CLAIM)
        .arg(1)
        .arg(key)
        .arg(max)
        .arg(ttl_ms)
        .arg(member)
        .query_async(conn)
        .await?;
    Ok(taken == 1)
}

/// Keeps `slots` (key, member) live for another `ttl_ms`, in scripts of at most 500.
pub async fn refresh_slots(
    conn: &mut ConnectionManager,
    slots: &[(&str, &str)],
    ttl_ms: u64,
) -> redis::RedisResult<()> {
    if slots.is_empty() {
        // Nothing to keep live: still learn whether Redis answers.
        return redis::cmd("PING").query_async(conn).await;
    }
    for chunk in slots.chunks(500) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(REFRESH).arg(chunk.len());
        for (key, _) in chunk {
            cmd.arg(*key);
        }
        cmd.arg(ttl_ms);
        for (_, member) in chunk {
            cmd.arg(*member);
        }
        cmd.query_async::<i64>(conn).await?;
    }
    Ok(())
}

/// A handover's slots (`quota`'s adoption): for each KEYS[i], member ARGV[2i] (if not
/// empty) lapses ARGV[1] ms from now, without checking the cap (it already counted),
/// and member ARGV[2i + 1] (the previous process's name of it, if not empty) goes: in one
/// script, so the user's count never dips nor doubles.
const ADOPT: &str = r"
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
for i, k in ipairs(KEYS) do
  local ours, previous = ARGV[2 * i], ARGV[2 * i + 1]
  if ours ~= '' then
    redis.call('ZADD', k, now + tonumber(ARGV[1]), ours)
    redis.call('PEXPIRE', k, ARGV[1])
  end
  if previous ~= '' then redis.call('ZREM', k, previous) end
end
return #KEYS
";

/// Writes `slots` (key, this process's member or "", the previous one's or ""), in
/// scripts of at most 500.
pub async fn adopt_slots(
    conn: &mut ConnectionManager,
    slots: &[(String, String, String)],
    ttl_ms: u64,
) -> redis::RedisResult<()> {
    for chunk in slots.chunks(500) {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(ADOPT).arg(chunk.len());
        for (key, _, _) in chunk {
            cmd.arg(key);
        }
        cmd.arg(ttl_ms);
        for (_, ours, previous) in chunk {
            cmd.arg(ours).arg(previous);
        }
        cmd.query_async::<i64>(conn).await?;
    }
    Ok(())
}

/// Gives a slot back.
pub async fn release_slot(
    conn: &mut ConnectionManager,
    key: &str,
    member: &str,
) -> redis::RedisResult<()> {
    conn.zrem(key, member).await
}

/// A connection manager that reconnects by itself, with every wait bounded by `limit`.
pub async fn connect(
    url: &str,
    limit: std::time::Duration,
) -> redis::RedisResult<ConnectionManager> {
    let client = redis::Client::open(url)?;
    let config = redis::aio::ConnectionManagerConfig::new()
        .set_connection_timeout(Some(limit))
        .set_response_timeout(Some(limit))
        .set_number_of_retries(1)
        .set_max_delay(limit);
    client.get_connection_manager_with_config(config).await
}
