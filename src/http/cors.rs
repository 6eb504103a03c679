//! CORS for the browser-facing endpoints: an origin listed in `http.cors_origins` (or
//! "*") is echoed back; anything else gets no CORS headers.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::state::Api;

/// The Access-Control-Allow-Origin value for this request, if its origin is allowed.
pub(super) fn cors_origin(api: &Api, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let o = origin.to_str().ok()?;
    api.cors_origins
        .iter()
        .any(|a| a == "*" || a == o)
        .then(|| origin.clone())
}

pub(super) fn with_cors(mut r: Response, origin: Option<HeaderValue>) -> Response {
    if let Some(o) = origin {
        let h = r.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, o);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    r
}

/// The answer to a CORS preflight: 403 for an origin not listed, else what may be sent.
pub(super) fn preflight_answer(
    origin: Option<HeaderValue>,
    methods: &'static str,
    headers: &'static str,
) -> Response {
    let Some(origin) = origin else {
        return StatusCode::FORBIDDEN.into_response();
    };
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(headers),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    with_cors(r, Some(origin))
}
