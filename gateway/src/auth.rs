//! Client API keys on the public API. Health, readiness and the worker API (which has its own
//! worker token) are exempt.

use crate::error::{GatewayError, OpenAiError, RunpodError};
use crate::AppState;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

const WORKER_ROUTES: &[&str] = &[
    "job-take",
    "job-take-batch",
    "job-done",
    "job-stream",
    "ping",
    "job-stop",
];

fn is_public(path: &str) -> bool {
    if path == "/health" || path == "/ready" {
        return false;
    }
    // /v2/{endpoint}/{route}/...
    let route = path.split('/').nth(3).unwrap_or("");
    !(path.starts_with("/v2/") && WORKER_ROUTES.contains(&route))
}

/// The key in `Authorization: Bearer KEY` (or the bare key, as RunPod's docs send it).
pub fn bearer(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v))
}

pub async fn client_key(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    let keys = &gw.settings.api_keys;
    let path = req.uri().path();
    if keys.is_empty() || !is_public(path) {
        return next.run(req).await;
    }
    let given = bearer(req.headers()).map(str::trim);
    if given.is_some_and(|k| keys.iter().any(|key| key == k)) {
        return next.run(req).await;
    }
    let err = GatewayError::Unauthorized(
        "a valid API key is required (Authorization: Bearer KEY)".into(),
    );
    if path.starts_with("/v2/") && !path.contains("/openai/") {
        RunpodError(err).into_response()
    } else {
        OpenAiError(err).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_routes_and_probes_are_exempt() {
        assert!(is_public("/v1/chat/completions"));
        assert!(is_public("/v2/ep/run"));
        assert!(is_public("/v2/ep/openai/v1/models"));
        assert!(!is_public("/v2/ep/job-take/w1"));
        assert!(!is_public("/v2/ep/ping/w1"));
        assert!(!is_public("/health"));
    }
}
