//! The sessions API (admin token): GET /api/v1/sessions lists this node's allocations,
//! or with `scope=fleet` ([cluster]) every live node's, each with its `node`; DELETE
//! /api/v1/sessions?user=ID ends a user's allocations here and, with [cluster], on every
//! node (published on `turnpike:commands`).

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::{json_answer, no_cluster, sessions_refusal};
use super::state::HttpState;
use crate::fleet::admin::FleetAdmin;
use crate::fleet::bus;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    /// `fleet`: every node's allocations.
    scope: Option<String>,
}

pub(super) async fn list(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    if let Some(r) = sessions_refusal(&s, &headers) {
        return r;
    }
    let node = s.node.clone();
    // Waits (bounded) for every shard's answer: off the runtime.
    let own = tokio::task::spawn_blocking(move || node.sessions())
        .await
        .unwrap_or_default();
    match q.scope.as_deref() {
        None | Some("node") => json_answer(StatusCode::OK, &json!({ "sessions": own })),
        Some("fleet") => match &s.fleet {
            Some(fleet) => json_answer(StatusCode::OK, &fleet_sessions(fleet, own).await),
            None => no_cluster(),
        },
        Some(_) => (StatusCode::BAD_REQUEST, "scope: node or fleet\n").into_response(),
    }
}

/// Each session of `list`, with `"node": node`.
fn tagged(node: &str, list: Vec<Value>) -> impl Iterator<Item = Value> + '_ {
    list.into_iter().map(move |mut v| {
        v["node"] = json!(node);
        v
    })
}

/// This node's sessions (fresh) and the other live nodes' (as of their last heartbeat),
/// each with `node`; `complete` is false when Redis did not answer.
async fn fleet_sessions(fleet: &FleetAdmin, own: Vec<impl serde::Serialize>) -> Value {
    let own_name = fleet.registry.settings.node_name.clone();
    let own: Vec<Value> = own
        .iter()
        .filter_map(|v| serde_json::to_value(v).ok())
        .collect();
    let mut sessions: Vec<Value> = tagged(&own_name, own).collect();
    let mut nodes = vec![own_name.clone()];
    let others = fleet.other_sessions().await;
    let error = others.as_ref().err().map(|e| e.to_string());
    for (name, list) in others.unwrap_or_default() {
        let list: Vec<Value> = serde_json::from_str(&list).unwrap_or_default();
        sessions.extend(tagged(&name, list));
        nodes.push(name);
    }
    json!({
        "scope": "fleet",
        "nodes": nodes,
        "complete": error.is_none(),
        "error": error,
        "sessions": sessions,
    })
}

#[derive(Deserialize)]
pub(super) struct EndQuery {
    user: Option<String>,
}

pub(super) async fn end(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<EndQuery>,
) -> Response {
    if let Some(r) = sessions_refusal(&s, &headers) {
        return r;
    }
    let user = q.user.unwrap_or_default();
    if user.is_empty() || user.len() > 128 {
        return (
            StatusCode::BAD_REQUEST,
            "user: the user id to end, 1 to 128 bytes\n",
        )
            .into_response();
    }
    let Some(fleet) = &s.fleet else {
        let ended = bus::end_user(&s.node, &user).await;
        tracing::info!(user = %user, ended, "sessions ended through the API");
        return json_answer(StatusCode::OK, &json!({ "user": user, "ended": ended }));
    };
    let (ended, heard) = fleet.end_user(&user).await;
    tracing::info!(user = %user, ended, fleet = ?heard.as_ref().map_err(|e| e.to_string()), "sessions ended through the API");
    let (status, fleet) = match heard {
        Ok(n) => (
            StatusCode::OK,
            json!({ "published": true, "nodes_heard": n }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({ "published": false, "error": e.to_string() }),
        ),
    };
    json_answer(
        status,
        &json!({ "user": user, "ended": ended, "fleet": fleet }),
    )
}
