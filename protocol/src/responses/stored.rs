//! Stored responses (`store`, on by default as in OpenAI's API): what the job store keeps of a
//! response so that `GET /v1/responses/{id}` returns it, `input_items` lists its input, and a
//! later request continues from it with `previous_response_id`.
//!
//! A continuation is the chat it means, as every Responses request is: the stored
//! conversation (every earlier turn's input and output, without their `instructions`, which
//! OpenAI does not carry over) followed by the new input. The engine sees the whole
//! conversation again, so the model's context bounds a chain, checked like any prompt.

use super::{input_item, ResponsesRequest};
use crate::anthropic::Refused;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// A response as the job store keeps it, until its retention runs out or it is deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The tenant of the client key that created it (`None`: no tenant, as jobs); a caller of
    /// another tenant is told it does not exist.
    pub tenant: Option<String>,
    /// The response object, as it was returned.
    pub response: Value,
    /// The request's input as items, each with an `id` (`GET .../input_items`).
    pub input_items: Vec<Value>,
    /// The whole conversation as chat messages, this response's output included, without
    /// `instructions`: where a request with `previous_response_id` starts.
    pub conversation: Vec<Value>,
}

/// What a request that stores its answer keeps until the answer exists.
#[derive(Clone, Debug, PartialEq)]
pub struct Keep {
    /// The caller's tenant.
    pub tenant: Option<String>,
    /// The request's input as items (ids are added once the response's id is known).
    pub input_items: Vec<Value>,
    /// The conversation the chat job runs: the stored one continued, then this input.
    pub conversation: Vec<Value>,
}

impl Keep {
    /// What to keep of `request`, whose chat body (see [`ResponsesRequest::to_chat`]) is
    /// `chat`, for `tenant`.
    pub fn new(request: &ResponsesRequest, chat: &Value, tenant: Option<String>) -> Self {
        let messages = chat["messages"].as_array().cloned().unwrap_or_default();
        // `to_chat` puts `instructions` first, as a system message; they are not carried over.
        let skip = usize::from(request.instructions.is_some());
        Keep {
            tenant,
            input_items: request.input_items(),
            conversation: messages.into_iter().skip(skip).collect(),
        }
    }

    /// The record of `response`, the object answering the request.
    pub fn record(&self, response: Value) -> StoredResponse {
        let base = response["id"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("resp_")
            .to_string();
        let mut conversation = self.conversation.clone();
        for item in response["output"].as_array().into_iter().flatten() {
            // Output items read back as input items do (a text, or a call joined to it); the
            // gateway writes both, so one that does not read cannot occur and is left out.
            let _ = input_item(item, &mut conversation);
        }
        let input_items = self
            .input_items
            .iter()
            .enumerate()
            .map(|(i, item)| with_id(item.clone(), &base, i))
            .collect();
        StoredResponse {
            tenant: self.tenant.clone(),
            response,
            input_items,
            conversation,
        }
    }
}

/// `item` with an `id` when it has none: its kind's prefix, the response's id and its place.
fn with_id(mut item: Value, base: &str, i: usize) -> Value {
    if item.get("id").and_then(Value::as_str).is_none() {
        let prefix = match item["type"].as_str() {
            Some("function_call") => "fc",
            Some("function_call_output") => "fco",
            _ => "msg",
        };
        item["id"] = json!(format!("{prefix}_{base}_in{i}"));
    }
    item
}

impl ResponsesRequest {
    /// The input as items, as `input_items` lists them: text is one user message; a message
    /// item without `type` gets `"type": "message"`, and text content becomes one
    /// `input_text` part (`output_text` in an assistant's), as OpenAI lists them.
    pub fn input_items(&self) -> Vec<Value> {
        let items = match &self.input {
            Value::String(text) => vec![json!({"role": "user", "content": text})],
            Value::Array(items) => items.clone(),
            _ => Vec::new(),
        };
        items.into_iter().map(input_item_listed).collect()
    }
}

fn input_item_listed(mut item: Value) -> Value {
    if item.get("type").is_none() {
        item["type"] = json!("message");
    }
    if item["type"] == "message" {
        if let Some(text) = item["content"].as_str().map(str::to_string) {
            let kind = match item["role"].as_str() {
                Some("assistant") => "output_text",
                _ => "input_text",
            };
            item["content"] = json!([{"type": kind, "text": text}]);
        }
    }
    item
}

/// OpenAI's error for an unknown (expired, deleted or another tenant's) `previous_response_id`.
pub fn previous_not_found(id: &str) -> Refused {
    Refused::new(
        "previous_response_id",
        format!("Previous response with id '{id}' not found."),
    )
}
