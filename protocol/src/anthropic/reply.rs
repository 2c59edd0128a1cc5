//! The Messages API's answers, translated from the OpenAI chat answers the engine writes: the
//! whole message ([`message`]) and Anthropic's stream of events ([`EventStream`]), and its
//! error shape ([`ErrorBody`]).
//!
//! `finish_reason` maps as vLLM's Anthropic endpoint maps it: `stop` is `end_turn`, or
//! `stop_sequence` with the string in `stop_sequence` when one of `stop_sequences` ended the
//! answer (the chat answer's `stop_reason`), `length` is `max_tokens`, `tool_calls` is
//! `tool_use`.

use crate::openai::response::{ChatCompletion, StopReason, StreamEvent, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// A message, the answer of `POST /v1/messages`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageReply {
    /// The message's id (`msg_` and the engine's response id).
    pub id: String,
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `assistant`.
    pub role: String,
    /// The model that answered.
    pub model: String,
    /// Text and tool-use blocks, in order.
    pub content: Vec<ReplyBlock>,
    /// `end_turn`, `stop_sequence`, `max_tokens` or `tool_use`.
    pub stop_reason: Option<String>,
    /// The stop sequence that ended the answer (with `stop_reason: stop_sequence`), else
    /// `null`.
    pub stop_sequence: Option<String>,
    /// Token counts.
    pub usage: ReplyUsage,
}

/// A block of an answer.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ReplyBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// The call's id, quoted by its `tool_result`.
        id: String,
        /// The tool called.
        name: String,
        /// Its input (a JSON object).
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// Anthropic's `usage`.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct ReplyUsage {
    /// Prompt tokens.
    pub input_tokens: usize,
    /// Generated tokens.
    pub output_tokens: usize,
}

impl From<Usage> for ReplyUsage {
    fn from(u: Usage) -> Self {
        ReplyUsage {
            input_tokens: u.prompt_tokens,
            output_tokens: u.completion_tokens,
        }
    }
}

/// Anthropic's error body: `{"type": "error", "error": {"type", "message"}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The `error` of an [`ErrorBody`].
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// `invalid_request_error`, `authentication_error`, `not_found_error`,
    /// `rate_limit_error`, `overloaded_error`, `api_error`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// A sentence for a person.
    pub message: String,
}

impl ErrorBody {
    /// An error of Anthropic's `kind`.
    pub fn new(kind: &str, message: String) -> Self {
        ErrorBody {
            kind: "error".into(),
            error: ErrorDetail {
                kind: kind.into(),
                message,
            },
        }
    }
}

/// One streamed event's data, as documented: every event is an object naming its `type`
/// (`message_start`, `content_block_start`, `content_block_delta`, `content_block_stop`,
/// `message_delta`, `message_stop`, or `error`), the event's name too.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct StreamedEvent {
    /// The event's kind.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Anthropic's `stop_reason` and `stop_sequence` for OpenAI's `finish_reason` and vLLM's
/// `stop_reason`.
fn stop_reason(finish: &str, stop: Option<&StopReason>) -> (&'static str, Option<String>) {
    match (finish, stop) {
        ("length", _) => ("max_tokens", None),
        ("tool_calls", _) => ("tool_use", None),
        (_, Some(StopReason::Text(s))) => ("stop_sequence", Some(s.clone())),
        _ => ("end_turn", None),
    }
}

fn message_id(openai_id: &str) -> String {
    format!("msg_{}", openai_id.trim_start_matches("chatcmpl-"))
}

/// The message of a (non-streamed) chat completion. Errors: the output is not one.
pub fn message(output: Value) -> Result<MessageReply, serde_json::Error> {
    let c: ChatCompletion = serde_json::from_value(output)?;
    let choice = c.choices.into_iter().next();
    let mut content = Vec::new();
    let (mut finish, mut stop) = (None, None);
    if let Some(choice) = choice {
        if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
            content.push(ReplyBlock::Text { text });
        }
        for call in choice.message.tool_calls.unwrap_or_default() {
            content.push(ReplyBlock::ToolUse {
                id: call.id,
                name: call.function.name,
                input: tool_input(&call.function.arguments),
            });
        }
        finish = choice.finish_reason;
        stop = choice.stop_reason;
    }
    let (stop_reason, stop_sequence) =
        stop_reason(finish.as_deref().unwrap_or("stop"), stop.as_ref());
    Ok(MessageReply {
        id: message_id(&c.id),
        kind: "message".into(),
        role: "assistant".into(),
        model: c.model,
        content,
        stop_reason: Some(stop_reason.into()),
        stop_sequence,
        usage: c.usage.flatten().unwrap_or_default().into(),
    })
}

/// A call's input object from its arguments' JSON text (a call cut by `max_tokens` may not
/// parse: its text is kept under `_partial`, so nothing the model wrote is lost).
fn tool_input(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"_partial": arguments}),
    }
}

/// Which block is open in a stream.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Open {
    Text,
    /// A tool call: its OpenAI index.
    Tool(usize),
}

/// Translates a streamed chat completion, chunk by chunk, into Anthropic's events:
/// `message_start`, then per block `content_block_start`, `content_block_delta`s and
/// `content_block_stop`, then `message_delta` (stop reason, output tokens) and `message_stop`.
#[derive(Debug, Default)]
pub struct EventStream {
    started: bool,
    /// The open block and its Anthropic index.
    open: Option<(usize, Open)>,
    blocks: usize,
    finish: Option<String>,
    stop: Option<StopReason>,
    usage: Usage,
}

/// One event: its name and data.
pub type Event = (&'static str, Value);

impl EventStream {
    /// The events of one OpenAI chunk (`chunk`, as the engine streamed it).
    pub fn chunk(&mut self, chunk: &Value) -> Vec<Event> {
        let mut out = Vec::new();
        let Ok(event) = StreamEvent::deserialize(chunk) else {
            return out;
        };
        if let Some(u) = event.usage {
            self.usage = u;
        }
        if !self.started {
            self.started = true;
            let id = chunk.get("id").and_then(Value::as_str).unwrap_or_default();
            let model = chunk.get("model").cloned().unwrap_or(Value::Null);
            out.push((
                "message_start",
                json!({"type": "message_start", "message": {
                    "id": message_id(id), "type": "message", "role": "assistant", "model": model,
                    "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": self.usage.prompt_tokens, "output_tokens": 0},
                }}),
            ));
        }
        for choice in event.choices.iter().filter(|c| c.index == 0) {
            let delta = choice.delta.clone().unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.open_block(Open::Text, json!({"type": "text", "text": ""}), &mut out);
                out.push(self.delta(json!({"type": "text_delta", "text": text})));
            }
            for call in delta.tool_calls.unwrap_or_default() {
                if let (Some(id), Some(name)) = (&call.id, &call.function.name) {
                    let start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
                    self.open_block(Open::Tool(call.index), start, &mut out);
                }
                if !call.function.arguments.is_empty() {
                    let piece = call.function.arguments;
                    out.push(
                        self.delta(json!({"type": "input_json_delta", "partial_json": piece})),
                    );
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.clone());
                self.stop.clone_from(&choice.stop_reason);
                self.close_block(&mut out);
            }
        }
        out
    }

    /// The events that end the stream: the last block closed, `message_delta` and
    /// `message_stop`.
    pub fn end(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.close_block(&mut out);
        let (reason, sequence) =
            stop_reason(self.finish.as_deref().unwrap_or("stop"), self.stop.as_ref());
        out.push((
            "message_delta",
            json!({"type": "message_delta",
                "delta": {"stop_reason": reason, "stop_sequence": sequence},
                "usage": {"output_tokens": self.usage.completion_tokens},
            }),
        ));
        out.push(("message_stop", json!({"type": "message_stop"})));
        out
    }

    fn open_block(&mut self, kind: Open, start: Value, out: &mut Vec<Event>) {
        if self.open.is_some_and(|(_, k)| k == kind) {
            return;
        }
        self.close_block(out);
        let index = self.blocks;
        self.blocks += 1;
        self.open = Some((index, kind));
        out.push((
            "content_block_start",
            json!({"type": "content_block_start",
            "index": index, "content_block": start}),
        ));
    }

    fn close_block(&mut self, out: &mut Vec<Event>) {
        if let Some((index, _)) = self.open.take() {
            out.push((
                "content_block_stop",
                json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn delta(&self, delta: Value) -> Event {
        let index = self.open.map_or(0, |(i, _)| i);
        (
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        )
    }
}
