//! Credentials, as layers on route groups (see `crate::router`): client API keys on the public
//! OpenAI and queue routes, the worker token on the worker protocol's routes; probes need
//! neither. Keys are compared in constant time.

use crate::error::{GatewayError, OpenAiError, RunpodError};
use crate::AppState;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

/// The key in `Authorization: Bearer KEY` (or the bare key, as RunPod's docs send it).
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim())
}

/// Whether `given` equals `key`, in time that does not depend on where they differ.
fn same(given: &str, key: &str) -> bool {
    given.as_bytes().ct_eq(key.as_bytes()).into()
}

/// Whether the request carries one of the configured client keys (any request, when none are
/// configured).
fn client_allowed(gw: &AppState, headers: &HeaderMap) -> bool {
    let keys = &gw.settings.api_keys;
    if keys.is_empty() {
        return true;
    }
    let given = bearer(headers).unwrap_or("");
    // Every key is compared, so the time does not tell which one matched.
    keys.iter().fold(false, |ok, key| ok | same(given, key))
}

fn missing_key() -> GatewayError {
    GatewayError::Unauthorized("a valid API key is required (Authorization: Bearer KEY)".into())
}

/// Client keys on the OpenAI routes (`/v1`, `/v2/{endpoint}/openai/v1`): OpenAI's error shape.
pub async fn openai_client(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    if client_allowed(&gw, req.headers()) {
        next.run(req).await
    } else {
        OpenAiError(missing_key()).into_response()
    }
}

/// Client keys on the queue routes (`/v2/{endpoint}/run`, ...): RunPod's error shape.
pub async fn queue_client(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    if client_allowed(&gw, req.headers()) {
        next.run(req).await
    } else {
        RunpodError(missing_key()).into_response()
    }
}

/// The worker token on the worker protocol's routes (RunPod's SDK sends it raw).
pub async fn worker_token(State(gw): State<AppState>, req: Request, next: Next) -> Response {
    if bearer(req.headers()).is_some_and(|t| same(t, &gw.worker_token)) {
        next.run(req).await
    } else {
        RunpodError(GatewayError::Unauthorized(
            "invalid or missing worker token".into(),
        ))
        .into_response()
    }
}
