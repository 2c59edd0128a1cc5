//! Request bodies as JSON, whatever the content type (the RunPod SDK posts JSON labelled as a
//! form), with size and syntax errors turned into [`GatewayError`]s.

use crate::error::GatewayError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

pub struct JsonBody(pub Value);

/// The body limit of a route: RunPod's 10 MB for `run`, 20 MB for `runsync`, the configured
/// limit elsewhere. The router applies it (`crate::router`); errors quote it.
pub fn body_limit(path: &str, default: usize) -> usize {
    if path.ends_with("/runsync") {
        crate::queue_api::RUNSYNC_LIMIT
    } else if path.ends_with("/run") {
        crate::queue_api::RUN_LIMIT
    } else {
        default
    }
}

impl FromRequest<AppState> for JsonBody {
    type Rejection = GatewayError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = body_limit(req.uri().path(), state.settings.max_body_bytes);
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::PayloadTooLarge(limit)
            } else {
                GatewayError::bad_request(r.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            GatewayError::bad_request(format!(
                "We could not parse the JSON body of your request: {e}. The body must be valid JSON."
            ))
        })
    }
}
