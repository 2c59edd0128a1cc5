//! Request bodies as JSON, whatever the content type (the RunPod SDK posts JSON labelled as a
//! form), read up to the route's size limit and [`protocol::nesting::MAX_DEPTH`], with size,
//! depth and syntax errors turned into [`GatewayError`]s. The size limit is part of the
//! extractor's type, so each route states it once.

use crate::error::GatewayError;
use crate::AppState;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use futures::StreamExt;
use serde_json::Value;
use std::marker::PhantomData;

/// A route's body limits: size in bytes, and nesting.
pub trait BodyLimit {
    fn bytes(state: &AppState) -> usize;
    /// Levels of arrays and objects: a client's limit unless the route says otherwise.
    const DEPTH: usize = protocol::nesting::MAX_DEPTH;
}

/// The configured `gateway.max_body_bytes` (10 MiB by default): `/v1`, worker routes.
pub struct Configured;
/// Worker routes: the configured size, and room for a handler's output to wrap the deepest
/// input a client may send (an echo handler's, say).
pub struct WorkerLimit;
/// RunPod's 10 MB for `run`.
pub struct RunLimit;
/// RunPod's 20 MB for `runsync`.
pub struct RunsyncLimit;

impl BodyLimit for Configured {
    fn bytes(state: &AppState) -> usize {
        state.settings.max_body_bytes
    }
}

impl BodyLimit for WorkerLimit {
    fn bytes(state: &AppState) -> usize {
        state.settings.max_body_bytes
    }
    const DEPTH: usize = protocol::nesting::MAX_DEPTH + protocol::nesting::JOB_WRAPPING;
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

/// What is read and dropped of a body over its limit before the 413 goes out, so that a client
/// still sending gets the answer instead of a broken pipe; beyond it the connection is cut.
const DRAIN_MAX: usize = 64 * 1024 * 1024;

/// The body's bytes, at most `limit`. Errors: [`GatewayError::PayloadTooLarge`] past the
/// limit (after reading up to [`DRAIN_MAX`] more), a 400 if the body cannot be read.
async fn read_limited(body: axum::body::Body, limit: usize) -> Result<Vec<u8>, GatewayError> {
    let mut frames = body.into_data_stream();
    let (mut bytes, mut over) = (Vec::new(), None::<usize>);
    while let Some(frame) = frames.next().await {
        let chunk = frame.map_err(|e| {
            GatewayError::bad_request(format!("could not read the request body: {e}"))
        })?;
        match over.as_mut() {
            Some(drained) if *drained > DRAIN_MAX => break,
            Some(drained) => *drained += chunk.len(),
            None if bytes.len() + chunk.len() > limit => over = Some(0),
            None => bytes.extend_from_slice(&chunk),
        }
    }
    match over {
        Some(_) => Err(GatewayError::PayloadTooLarge(limit)),
        None => Ok(bytes),
    }
}

/// The `code` of a body refused for nesting deeper than [`protocol::nesting::MAX_DEPTH`].
pub const TOO_DEEP: &str = "json_too_deep";

/// A JSON body of at most `L::bytes` bytes and `L::DEPTH` levels. (The router disables axum's own default limit:
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
        let bytes = read_limited(req.into_body(), L::bytes(state)).await?;
        // Measured before parsing: serde_json's own limit (128) would refuse deeper bodies only
        // as "invalid JSON", and accept some that a worker, a few levels further in, cannot read.
        protocol::nesting::check_text(&bytes, "The request body", L::DEPTH).map_err(|message| {
            GatewayError::BadRequest {
                message,
                param: None,
                code: Some(TOO_DEEP),
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

/// A query string decoded into `T`. A malformed one (`?wait=soon`) is a 400 in the route's error
/// shape: axum's own `Query` answers in plain text, which no client of either API expects.
pub struct QueryParams<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = GatewayError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, GatewayError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| QueryParams(q))
            .map_err(|e| GatewayError::bad_request(e.body_text()))
    }
}
