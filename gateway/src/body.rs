//! Request bodies as JSON, whatever the content type (the RunPod SDK posts JSON labelled as a
//! form), with size and syntax errors turned into [`GatewayError`]s.

use crate::error::GatewayError;
use crate::AppState;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde_json::Value;

pub struct JsonBody(pub Value);

impl FromRequest<AppState> for JsonBody {
    type Rejection = GatewayError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                GatewayError::PayloadTooLarge(state.settings.max_body_bytes)
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
