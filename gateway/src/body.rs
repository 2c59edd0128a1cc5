//! Request bodies as JSON, whatever the content type (the RunPod SDK posts JSON labelled as a
//! form), read up to the route's size limit, with size and syntax errors turned into
//! [`GatewayError`]s. The limit is part of the extractor's type, so each route states it once.

use crate::error::GatewayError;
use crate::AppState;
use axum::extract::{FromRequest, Request};
use serde_json::Value;
use std::marker::PhantomData;

/// A route's body size limit, bytes.
pub trait BodyLimit {
    fn bytes(state: &AppState) -> usize;
}

/// The configured `gateway.max_body_bytes` (10 MiB by default): `/v1`, worker routes.
pub struct Configured;
/// RunPod's 10 MB for `run`.
pub struct RunLimit;
/// RunPod's 20 MB for `runsync`.
pub struct RunsyncLimit;

impl BodyLimit for Configured {
    fn bytes(state: &AppState) -> usize {
        state.settings.max_body_bytes
    }
}

impl BodyLimit for RunLimit {
    fn bytes(_: &AppState) -> usize {
        10 * 1024 * 1024
    }
}

impl BodyLimit for RunsyncLimit {
    fn bytes(_: &AppState) -> usize {
        20 * 1024 * 1024
    }
}

/// A JSON body of at most `L::bytes` bytes. (The router disables axum's own default limit:
/// this extractor is where the limit applies.)
pub struct JsonBody<L: BodyLimit = Configured>(pub Value, PhantomData<L>);

impl<L: BodyLimit> JsonBody<L> {
    pub fn into_value(self) -> Value {
        self.0
    }
}

impl<L: BodyLimit + Send> FromRequest<AppState> for JsonBody<L> {
    type Rejection = GatewayError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let limit = L::bytes(state);
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|e| {
                let too_large = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if too_large {
                    GatewayError::PayloadTooLarge(limit)
                } else {
                    GatewayError::bad_request(format!("could not read the request body: {e}"))
                }
            })?;
        serde_json::from_slice(&bytes)
            .map(|v| JsonBody(v, PhantomData))
            .map_err(|e| {
                GatewayError::bad_request(format!(
                    "We could not parse the JSON body of your request: {e}. The body must be valid JSON."
                ))
            })
    }
}
