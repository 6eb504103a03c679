//! The admin gate: the bearer token of the sessions, nodes and revocations APIs, compared
//! in constant time; and their JSON answers.

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::HttpState;

pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

/// The sessions API's gate: the refusal (404 when no admin token is configured, 401
/// without the right one), or None to go on. Only `http.admin_token` opens it: the
/// credentials token is made to be handed to browser apps (CORS), and must not list
/// everyone's sessions or end them.
pub(super) fn sessions_refusal(s: &HttpState, headers: &HeaderMap) -> Option<Response> {
    let api = s.api();
    let Some(token) = &api.admin_token else {
        return Some(StatusCode::NOT_FOUND.into_response());
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let ok = constant_time_eq(presented.as_bytes(), token.as_bytes());
    (!ok).then(|| {
        (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        )
            .into_response()
    })
}

/// A JSON answer that no cache keeps.
pub(super) fn json_answer(status: StatusCode, body: &serde_json::Value) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("{body:#}"),
    )
        .into_response()
}

/// The fleet APIs' answer on a node without `[cluster]`.
pub(super) fn no_cluster() -> Response {
    (StatusCode::NOT_FOUND, "no [cluster] configured\n").into_response()
}
