//! The fleet's revocations (admin token, [cluster]): POST /api/v1/revocations with
//! `{"user": ID}` or `{"username": NAME}` and `"until"` (Unix seconds) or `"ttl"`
//! (seconds) revokes on every node and ends that user's allocations fleet-wide; GET lists
//! the revocations this node enforces; DELETE ?user= or ?username= lifts one. Making or
//! lifting one needs Redis (503 without it); those already known stay in force.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::admin::{json_answer, no_cluster, sessions_refusal};
use super::state::HttpState;
use crate::fleet::admin::{FleetAdmin, RevokeError};
use crate::relay::revocation::{Revocation, Subject};
use crate::runtime::clock::unix_now;

/// The longest a revocation may last: 30 days.
pub(super) const MAX_REVOCATION_SECS: u64 = 30 * 24 * 3600;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Who {
    user: Option<String>,
    username: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    user: Option<String>,
    username: Option<String>,
    until: Option<u64>,
    ttl: Option<u64>,
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response()
}

impl Who {
    /// Exactly one of `user` and `username`, 1 to 128 bytes.
    fn subject(self) -> Result<Subject, String> {
        let s = match (self.user, self.username) {
            (Some(u), None) => Subject::User(u),
            (None, Some(n)) => Subject::Username(n),
            _ => return Err("name one of user or username".into()),
        };
        let (Subject::User(v) | Subject::Username(v)) = &s;
        if v.is_empty() || v.len() > 128 {
            return Err("user/username: 1 to 128 bytes".into());
        }
        Ok(s)
    }
}

/// The admin gate, then the fleet (404 without [cluster]).
fn gate<'a>(s: &'a HttpState, headers: &HeaderMap) -> Result<&'a Arc<FleetAdmin>, Box<Response>> {
    if let Some(r) = sessions_refusal(s, headers) {
        return Err(Box::new(r));
    }
    s.fleet.as_ref().ok_or_else(|| Box::new(no_cluster()))
}

/// The revocation a POST body asks for at `now`, or what is wrong with it.
fn parse(body: &[u8], now: u64) -> Result<Revocation, String> {
    let b: RevokeBody = serde_json::from_slice(body).map_err(|e| format!("body: {e}"))?;
    let until = match (b.until, b.ttl) {
        (Some(u), None) => u,
        (None, Some(t)) => now.saturating_add(t),
        _ => return Err("give one of until (Unix seconds) or ttl (seconds)".into()),
    };
    if until <= now || until - now > MAX_REVOCATION_SECS {
        return Err("until: after now and at most 30 days ahead".into());
    }
    Ok(Revocation {
        subject: Who {
            user: b.user,
            username: b.username,
        }
        .subject()?,
        until,
    })
}

pub(super) async fn revoke(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fleet = match gate(&s, &headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let r = match parse(&body, unix_now()) {
        Ok(r) => r,
        Err(e) => return bad(&e),
    };
    match fleet.revoke(r.clone()).await {
        Ok((ended, heard)) => {
            tracing::info!(revocation = ?r, ended, nodes_heard = heard, "revocation made through the API");
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["ended"] = json!(ended);
            v["nodes_heard"] = json!(heard);
            json_answer(StatusCode::CREATED, &v)
        }
        Err(RevokeError::Full) => (
            StatusCode::INSUFFICIENT_STORAGE,
            "too many revocations in force\n",
        )
            .into_response(),
        Err(RevokeError::Unreachable(e)) => unavailable(&e),
    }
}

fn unavailable(e: &anyhow::Error) -> Response {
    let msg = format!("Redis unreachable, nothing changed: {e}\n");
    (StatusCode::SERVICE_UNAVAILABLE, msg).into_response()
}

pub(super) async fn list(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let fleet = match gate(&s, &headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let now = unix_now();
    let list: Vec<serde_json::Value> = fleet
        .registry
        .revocations(now)
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(&r).unwrap_or_default();
            v["expires_in_s"] = json!(r.until - now);
            v
        })
        .collect();
    let body = json!({
        "node": fleet.registry.settings.node_name,
        "redis_up": fleet.registry.is_up(),
        "revocations": list,
    });
    json_answer(StatusCode::OK, &body)
}

pub(super) async fn lift(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(who): Query<Who>,
) -> Response {
    let fleet = match gate(&s, &headers) {
        Ok(f) => f,
        Err(r) => return *r,
    };
    let subject = match who.subject() {
        Ok(s) => s,
        Err(e) => return bad(&e),
    };
    match fleet.lift(subject.clone()).await {
        Ok(had) => {
            tracing::info!(subject = ?subject, had, "revocation lifted through the API");
            let mut v = serde_json::to_value(&subject).unwrap_or_default();
            v["lifted"] = json!(had);
            json_answer(StatusCode::OK, &v)
        }
        Err(e) => unavailable(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revocation_names_one_subject_and_ends_within_30_days() {
        let ok = parse(br#"{"user":"bob","ttl":60}"#, 1000).unwrap();
        assert_eq!(ok.until, 1060);
        assert_eq!(ok.subject, Subject::User("bob".into()));
        let ok = parse(br#"{"username":"9:bob","until":2000}"#, 1000).unwrap();
        assert_eq!(ok.subject, Subject::Username("9:bob".into()));
        for body in [
            r#"{"user":"bob","username":"x","ttl":60}"#,
            r#"{"ttl":60}"#,
            r#"{"user":"bob"}"#,
            r#"{"user":"bob","ttl":60,"until":2000}"#,
            r#"{"user":"","ttl":60}"#,
            r#"{"user":"bob","until":1000}"#,
            r#"{"user":"bob","ttl":2592001}"#,
            r#"{"user":"bob","ttl":60,"other":1}"#,
        ] {
            assert!(parse(body.as_bytes(), 1000).is_err(), "{body}");
        }
    }
}
