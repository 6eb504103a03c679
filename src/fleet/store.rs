//! The registry's keys in Redis, and the only code that talks to it.
//!
//! - `turnpike:node:<name>`: the node's record (JSON), written every heartbeat with
//!   `SET .. PX ttl`, so a node that stops writing disappears by itself.
//! - `turnpike:nodes`: a sorted set of node names scored by their last heartbeat (Unix
//!   ms); readers take the names heard from within the TTL and MGET their records.
//!   Names older than three TTLs are pruned by whoever writes next.

use redis::AsyncCommands;
use redis::aio::ConnectionManager;

use super::record::NodeRecord;

pub const PREFIX: &str = "turnpike:";

fn node_key(name: &str) -> String {
    format!("{PREFIX}node:{name}")
}

fn names_key() -> String {
    format!("{PREFIX}nodes")
}

/// Writes `record` (expiring after `ttl_ms`) and reads every node heard from within it.
pub async fn heartbeat(
    conn: &mut ConnectionManager,
    record: &NodeRecord,
    ttl_ms: u64,
) -> redis::RedisResult<Vec<NodeRecord>> {
    let json = serde_json::to_string(record).unwrap_or_default();
    let now = record.unix_ms;
    let (names,): (Vec<String>,) = redis::pipe()
        .cmd("SET")
        .arg(node_key(&record.name))
        .arg(json)
        .arg("PX")
        .arg(ttl_ms)
        .ignore()
        .zadd(names_key(), &record.name, now)
        .ignore()
        .zrembyscore(names_key(), "-inf", now.saturating_sub(3 * ttl_ms))
        .ignore()
        .zrangebyscore(names_key(), now.saturating_sub(ttl_ms), "+inf")
        .query_async(conn)
        .await?;
    records(conn, &names).await
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
        .zrem(names_key(), name)
        .ignore()
        .query_async::<()>(conn)
        .await
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
