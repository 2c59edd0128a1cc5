//! Anthropic's Messages API on the gateway: `POST /v1/messages` (a chat job, its answer
//! translated back, streamed as Anthropic's events) and `POST /v1/messages/count_tokens`
//! (counted by the gateway's tokenizer, no job). Errors in Anthropic's shape.

use crate::auth::{Caller, Quota};
use crate::body::JsonBody;
use crate::error::{AnthropicError, GatewayError};
use crate::openai_api::{generate, Api};
use crate::relay::Dialect;
use crate::trace::JobTrace;
use crate::AppState;
use axum::extract::{Extension, State};
use axum::response::Response;
use axum::Json;
use protocol::anthropic::reply::{self, EventStream};
use protocol::anthropic::{self, CountTokensRequest, MessagesRequest, TokenCount};
use protocol::openai::{ChatRequest, CHAT_ROUTE};
use serde_json::Value;
use std::sync::Arc;

/// `POST /v1/messages`: the request as the chat job it means, answered as a message.
pub async fn messages(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, AnthropicError> {
    let req: MessagesRequest = anthropic::parse(body?.into_value())?;
    let chat = req.to_chat()?;
    let api = (CHAT_ROUTE, Api::Anthropic);
    Ok(generate(gw, (caller, quota, trace), api, chat, None).await?)
}

/// `POST /v1/messages/count_tokens`: the prompt's tokens as the model would read it.
pub async fn count_tokens(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Json<TokenCount>, AnthropicError> {
    let req: CountTokensRequest = anthropic::parse(body?.into_value())?;
    if !caller.allows(&req.model) {
        return Err(GatewayError::ModelNotFound(req.model).into());
    }
    // Rendering and tokenizing a large conversation is CPU work: off the async threads.
    let count = tokio::task::spawn_blocking(move || {
        let chat = ChatRequest::parse(req.to_chat()?)?;
        let model = gw.model(&chat.model)?;
        let tok = model.tokenizer.as_deref().ok_or_else(|| {
            GatewayError::NoCapacity(format!("`{}`'s tokenizer is not cached yet", chat.model))
        })?;
        tok.count_chat(&chat.prompt_messages(), &chat.template)
            .map_err(|e| GatewayError::BadRequest {
                message: e.to_string(),
                param: Some("messages".into()),
                code: None,
            })
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("count_tokens: {e}")))??;
    Ok(Json(TokenCount {
        input_tokens: count,
    }))
}

/// The message of a chat job's output.
pub(crate) fn message(output: Value) -> Result<Value, GatewayError> {
    reply::message(output)
        .and_then(serde_json::to_value)
        .map_err(|e| GatewayError::Internal(format!("the chat answer does not read: {e}")))
}

/// Anthropic's named events, translated from the job's chat chunks.
#[derive(Default)]
pub(crate) struct AnthropicEvents(EventStream);

fn event((name, data): reply::Event) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

impl Dialect for AnthropicEvents {
    fn chunk(&mut self, chunk: &Value) -> String {
        self.0.chunk(chunk).into_iter().map(event).collect()
    }
    fn error(&mut self, e: GatewayError) -> String {
        let body = serde_json::to_value(e.anthropic_body()).unwrap_or_default();
        event(("error", body))
    }
    fn done(&mut self) -> String {
        self.0.end().into_iter().map(event).collect()
    }
}
