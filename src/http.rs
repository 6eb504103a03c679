//! The operator/backend HTTP endpoint: /metrics, /healthz, /readyz, the TURN REST API
//! credential issuer GET /api/v1/credentials (bearer token, CORS for browser apps), the
//! sessions API (/api/v1/sessions), the fleet's revocations (/api/v1/revocations) and
//! the self-test page (/selftest).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

mod admin;
mod client;
mod cors;
mod nodes;
pub mod reports;
mod revocations;
mod sessions;
mod state;

use admin::constant_time_eq;
use cors::{cors_origin, preflight_answer, with_cors};
pub use state::HttpState;

use crate::auth::mint_credential;
use crate::runtime::clock::unix_now;

/// The JSON the TURN REST API draft describes, plus an `iceServers` array that can be
/// passed to `new RTCPeerConnection({iceServers})` as is.
pub fn credential_json(username: &str, password: &str, ttl: u64, uris: &[String]) -> String {
    let v = json!({
        "username": username,
        "password": password,
        "ttl": ttl,
        "uris": uris,
        "iceServers": [{"urls": uris, "username": username, "credential": password}],
    });
    format!("{v:#}")
}

pub fn router(state: Arc<HttpState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/credentials", get(credentials).options(preflight))
        .route(
            "/api/v1/sessions",
            get(sessions::list).delete(sessions::end),
        )
        .route(
            "/api/v1/revocations",
            get(revocations::list)
                .post(revocations::revoke)
                .delete(revocations::lift),
        )
        .route("/api/v1/nodes", get(nodes::list))
        .route("/selftest", get(selftest))
        .route("/client/turnpike.js", get(client::module))
        .route(
            "/api/v1/reports",
            axum::routing::post(client::report).options(client::preflight),
        )
        .with_state(state)
}

async fn metrics(State(s): State<Arc<HttpState>>) -> Response {
    let node = s.node.clone();
    // Waiting for the shards' fresh snapshots blocks briefly: keep it off the runtime.
    let text = tokio::task::spawn_blocking(move || {
        let snaps = node.snapshots();
        node.metrics.update(&snaps);
        node.metrics.render()
    })
    .await
    .unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn readyz(State(s): State<Arc<HttpState>>) -> Response {
    if s.node.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

#[derive(Deserialize)]
struct CredentialQuery {
    user: Option<String>,
    /// Seconds.
    ttl: Option<u64>,
    /// The caller's region ([cluster]): its nodes come first.
    region: Option<String>,
}

async fn preflight(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let api = s.api();
    preflight_answer(cors_origin(&api, &headers), "GET", "authorization")
}

async fn credentials(
    State(s): State<Arc<HttpState>>,
    headers: HeaderMap,
    Query(q): Query<CredentialQuery>,
) -> Response {
    let api = s.api();
    let origin = cors_origin(&api, &headers);
    let (Some(token), Some(secret)) = (&api.token, &api.secret) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(presented.as_bytes(), token.as_bytes()) {
        let r = (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "missing or wrong bearer token\n",
        );
        return with_cors(r.into_response(), origin);
    }
    let user = q.user.unwrap_or_default();
    if user.is_empty() || user.len() > 128 || !user.bytes().all(|b| b.is_ascii_graphic()) {
        let r = (
            StatusCode::BAD_REQUEST,
            "user: 1 to 128 printable ASCII characters\n",
        );
        return with_cors(r.into_response(), origin);
    }
    let ttl = q.ttl.map_or(api.ttl, Duration::from_secs);
    if ttl.is_zero() || ttl > api.max_ttl {
        let r = (StatusCode::BAD_REQUEST, "ttl out of range\n");
        return with_cors(r.into_response(), origin);
    }
    let (username, password) = mint_credential(secret, &user, ttl.as_secs(), unix_now());
    tracing::debug!(user = %user, ttl_s = ttl.as_secs(), "credential minted");
    let region = q.region.or_else(|| nodes::region_header(&headers));
    let uris = s.credential_uris(region.as_deref(), &api.uris);
    let body = credential_json(&username, &password, ttl.as_secs(), &uris);
    let r = (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    );
    with_cors(r.into_response(), origin)
}

/// The self-test page: static HTML and JavaScript, no server-side state.
const SELFTEST_PAGE: &str = include_str!("http/selftest.html");

async fn selftest(State(s): State<Arc<HttpState>>) -> Response {
    if !s.api().selftest {
        return StatusCode::NOT_FOUND.into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        SELFTEST_PAGE,
    )
        .into_response()
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<HttpState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address feeds the per-source limit on browser reports.
    let app = router(state).into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
