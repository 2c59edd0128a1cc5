//! OpenAI's Responses API on the gateway: `POST /v1/responses`, a chat job whose answer is
//! the response object, or streamed as `response.*` events. Stateless (see
//! [`protocol::responses`]). Errors in OpenAI's shape.

use crate::auth::{Caller, Quota};
use crate::body::JsonBody;
use crate::error::{GatewayError, OpenAiError};
use crate::openai_api::{generate, Api};
use crate::relay::Dialect;
use crate::trace::JobTrace;
use crate::AppState;
use axum::extract::{Extension, State};
use axum::response::Response;
use protocol::anthropic::parse;
use protocol::openai::CHAT_ROUTE;
use protocol::responses::reply::{self, EventStream};
use protocol::responses::ResponsesRequest;
use protocol::sse::frame;
use serde_json::Value;
use std::sync::Arc;

/// `POST /v1/responses`.
pub async fn create(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    let req: ResponsesRequest = parse(body?.into_value())?;
    let chat = req.to_chat()?;
    let api = (CHAT_ROUTE, Api::Responses(Arc::new(req.echo())));
    generate(gw, (caller, quota, trace), api, chat, None).await
}

/// The response object of a chat job's output.
pub(crate) fn response(echo: &Value, output: Value) -> Result<Value, GatewayError> {
    reply::response(echo, output)
        .map_err(|e| GatewayError::Internal(format!("the chat answer does not read: {e}")))
}

/// The Responses API's events, translated from the job's chat chunks (each a `data:` event
/// whose `type` names it, as OpenAI streams them, also named by `event:`).
pub(crate) struct ResponseEvents(pub EventStream);

fn event(data: Value) -> String {
    let name = data["type"].as_str().unwrap_or("message").to_string();
    format!("event: {name}\n{}", frame(&data.to_string()))
}

impl Dialect for ResponseEvents {
    fn chunk(&mut self, chunk: &Value) -> String {
        self.0.chunk(chunk).into_iter().map(event).collect()
    }
    fn error(&mut self, e: GatewayError) -> String {
        let body = e.openai_body().error;
        let data = serde_json::json!({"type": "error", "code": body.code, "message": body.message, "param": body.param});
        event(data)
    }
    fn done(&mut self) -> String {
        self.0.end().into_iter().map(event).collect()
    }
}
