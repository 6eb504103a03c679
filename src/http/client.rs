//! The browser module and its reports, when `http.client` is on: GET /client/turnpike.js
//! serves the module (CORS per `http.cors_origins`: a module script is fetched in CORS
//! mode), POST /api/v1/reports takes one signed call outcome (src/http/reports.rs).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::cors::{cors_origin, preflight_answer, with_cors};
use super::reports::{MAX_BODY, Refusal, Report, Signers};
use super::state::HttpState;
use crate::runtime::clock::{now, unix_now};

const MODULE: &str = include_str!("../../client/turnpike.js");

pub(super) async fn module(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let api = s.api();
    if !api.client {
        return StatusCode::NOT_FOUND.into_response();
    }
    let r = (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            // An hour: a new turnpike version reaches pages within one, and a page load
            // does not ask again in between.
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        MODULE,
    );
    with_cors(r.into_response(), cors_origin(&api, &headers))
}

pub(super) async fn preflight(State(s): State<Arc<HttpState>>, headers: HeaderMap) -> Response {
    let api = s.api();
    let origin = cors_origin(&api, &headers).filter(|_| api.client);
    preflight_answer(origin, "POST", "content-type, x-turnpike-signature")
}

pub(super) async fn report(State(s): State<Arc<HttpState>>, req: Request) -> Response {
    let (origin, client) = {
        let api = s.api();
        (cors_origin(&api, req.headers()), api.client)
    };
    if !client {
        return StatusCode::NOT_FOUND.into_response();
    }
    let status = match accept(&s, req).await {
        Ok(r) => {
            s.node()
                .metrics
                .client
                .report(r.outcome, r.path, r.browser, r.connect_secs);
            log(&r);
            StatusCode::NO_CONTENT
        }
        Err(why) => {
            s.node().metrics.client.refused(why);
            tracing::debug!(reason = why.label(), "browser report refused");
            StatusCode::from_u16(why.status()).unwrap_or(StatusCode::BAD_REQUEST)
        }
    };
    with_cors(status.into_response(), origin)
}

async fn accept(s: &HttpState, req: Request) -> Result<Report, Refusal> {
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let signature = req
        .headers()
        .get("x-turnpike-signature")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Read at most one byte past the limit: a larger body is refused unread.
    let body = axum::body::to_bytes(Body::new(req.into_body()), MAX_BODY + 1)
        .await
        .map_err(|_| Refusal::TooLarge)?;
    let api = s.api();
    let signers = Signers {
        secrets: &api.secrets,
        users: &api.users,
        max_ttl_secs: api.max_credential_ttl_secs,
    };
    s.reports.check(
        &body,
        signature.as_deref(),
        &signers,
        source,
        now(),
        unix_now(),
    )
}

/// One line per report: who, how it ended, which way it went, what it had gathered.
fn log(r: &Report) {
    let gathered: Vec<&str> = r.gathered.iter().map(|p| p.label()).collect();
    tracing::info!(
        target: "turnpike::report",
        user = crate::auth::user_id(&r.username),
        outcome = r.outcome.label(),
        path = r.path.label(),
        browser = r.browser.label(),
        gathered = gathered.join(","),
        connect_ms = r.connect_secs.map(|s| (s * 1000.0).round() as u64),
        "browser report"
    );
}
