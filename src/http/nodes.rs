//! GET /api/v1/nodes (admin token, like the sessions API): the fleet registry as this
//! node sees it. 404 without `[cluster]`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::admin::{json_answer, no_cluster, sessions_refusal};
use super::state::HttpState;
use crate::runtime::clock::unix_ms;

/// The header a backend sets to name its caller's region.
pub(super) const REGION_HEADER: &str = "x-turnpike-region";

/// The caller's region from `X-Turnpike-Region`, when it is set and printable.
pub(super) fn region_header(headers: &HeaderMap) -> Option<String> {
    headers
        .get(REGION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= 64)
        .map(str::to_owned)
}

pub(super) async fn list(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    if let Some(r) = sessions_refusal(&s, &headers) {
        return r;
    }
    let Some(fleet) = &s.fleet else {
        return no_cluster();
    };
    json_answer(StatusCode::OK, &fleet.registry.to_json(unix_ms()))
}
