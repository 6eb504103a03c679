//! Fleet commands over Redis pub/sub (`turnpike:commands`): end a user's allocations,
//! a revocation made, a revocation lifted. Every node subscribes on a connection of its
//! own, beside the heartbeat's, and acts on what it hears: its own allocations only,
//! through the same control messages the sessions API uses.
//!
//! Pub/sub rather than a list polled with the heartbeat: a command reaches every node in
//! milliseconds instead of a heartbeat, and nothing has to be trimmed. What it does not
//! give is delivery to a node that is not subscribed at that moment (reconnecting, or
//! Redis down): a missed end-of-user is lost (the DELETE answer says how many nodes
//! heard it), while a missed revocation is still read by the next heartbeat, which ends
//! the user's allocations when it first sees it.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::registry::Registry;
use super::store;
use crate::auth::user_id;
use crate::relay::revocation::{Revocation, Revocations, Subject};
use crate::runtime::Node;
use crate::runtime::clock::{unix_ms, unix_now};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// End every allocation of this user id.
    EndUser(String),
    Revoke(Revocation),
    Lift(Subject),
}

/// A command as published: who sent it (it has already acted on it itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    pub from: String,
    #[serde(flatten)]
    pub command: Command,
}

/// The user id whose allocations a revocation of `s` ends (a username's user id: the
/// core ends allocations by user id).
pub fn user_of(s: &Subject) -> &str {
    match s {
        Subject::User(u) => u,
        Subject::Username(n) => user_id(n),
    }
}

/// Ends this node's allocations of `user` (bounded wait for the shards, off the runtime).
pub async fn end_user(node: &Arc<Node>, user: &str) -> usize {
    let (node, u) = (node.clone(), user.to_owned());
    tokio::task::spawn_blocking(move || node.end_sessions(&u))
        .await
        .unwrap_or(0)
}

/// The registry's revocations to every shard (no wait).
pub fn enforce(node: &Node, registry: &Registry) {
    let list = registry.revocations(unix_now());
    node.set_revocations(Arc::new(Revocations::new(&list)));
}

/// Carries out a command another node published.
async fn act(node: &Arc<Node>, registry: &Registry, command: Command) {
    let (ended, user) = match command {
        Command::EndUser(user) => (end_user(node, &user).await, user),
        Command::Revoke(r) => {
            registry.add_revocation(r.clone(), unix_ms());
            enforce(node, registry);
            let user = user_of(&r.subject).to_owned();
            (end_user(node, &user).await, user)
        }
        Command::Lift(s) => {
            registry.remove_revocation(&s, unix_ms());
            enforce(node, registry);
            return;
        }
    };
    tracing::info!(user = %user, ended, "cluster: allocations ended by a fleet command");
}

/// Subscribes (bounded by `limit`): the sink (for pings) and the message stream.
async fn subscribe(
    url: &str,
    limit: Duration,
) -> anyhow::Result<(redis::aio::PubSubSink, redis::aio::PubSubStream)> {
    let client = redis::Client::open(url)?;
    let mut pubsub = tokio::time::timeout(limit, client.get_async_pubsub()).await??;
    tokio::time::timeout(limit, pubsub.subscribe(store::commands_channel())).await??;
    Ok(pubsub.split())
}

/// Hears commands until the subscription fails: the stream ends, or a PING sent every
/// heartbeat gets no answer within `limit` (a connection that died without a reset, which
/// would otherwise miss every command while looking subscribed).
async fn hear(
    node: &Arc<Node>,
    registry: &Arc<Registry>,
    (mut sink, mut stream): (redis::aio::PubSubSink, redis::aio::PubSubStream),
    limit: Duration,
) {
    let own = &registry.settings.node_name;
    let mut tick = tokio::time::interval(registry.settings.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            msg = stream.next() => {
                let Some(msg) = msg else { return };
                let notice = msg
                    .get_payload::<String>()
                    .ok()
                    .and_then(|p| serde_json::from_str::<Notice>(&p).ok());
                match notice {
                    Some(n) if &n.from != own => act(node, registry, n.command).await,
                    Some(_) => {}
                    None => tracing::debug!("cluster: unreadable fleet command ignored"),
                }
            }
            _ = tick.tick() => {
                let pong = tokio::time::timeout(limit, sink.ping::<redis::Value>()).await;
                if !matches!(pong, Ok(Ok(_))) {
                    tracing::warn!("cluster: fleet command subscription not answering; subscribing again");
                    return;
                }
            }
        }
    }
}

/// The subscription task: hears commands until the connection drops, then subscribes
/// again after a heartbeat, for as long as the node runs.
pub(super) async fn listen(node: Arc<Node>, registry: Arc<Registry>) {
    let url = registry.settings.redis_url.clone();
    let pause = registry.settings.heartbeat;
    let limit = pause.min(Duration::from_secs(1));
    loop {
        match subscribe(&url, limit).await {
            Ok(sub) => {
                tracing::debug!("cluster: subscribed to fleet commands");
                hear(&node, &registry, sub, limit).await;
                tracing::debug!("cluster: fleet command subscription lost");
            }
            Err(e) => tracing::debug!(error = %e, "cluster: cannot subscribe to fleet commands"),
        }
        tokio::time::sleep(pause).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notice_names_its_sender_and_command() {
        let n = Notice {
            from: "a".into(),
            command: Command::Revoke(Revocation {
                subject: Subject::User("bob".into()),
                until: 9,
            }),
        };
        let j = serde_json::to_string(&n).unwrap();
        assert_eq!(j, r#"{"from":"a","revoke":{"user":"bob","until":9}}"#);
        assert_eq!(serde_json::from_str::<Notice>(&j).unwrap(), n);
        let end = r#"{"from":"b","end_user":"bob"}"#;
        let n: Notice = serde_json::from_str(end).unwrap();
        assert_eq!(n.command, Command::EndUser("bob".into()));
    }
}
