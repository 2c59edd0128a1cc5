//! Responses API answers, translated from the engine's chat answers: the response object
//! ([`response`]) and the stream of `response.*` events ([`EventStream`]). The object echoes
//! the request's settings ([`ResponsesRequest::echo`]); its output is a `message` item (the
//! text) and a `function_call` item per call. `length` makes it `incomplete` with reason
//! `max_output_tokens`.

use super::ResponsesRequest;
use crate::openai::response::{ChatCompletion, StreamEvent, Usage};
use serde_json::{json, Value};

/// The response object, as documented (the answer carries more of the request's settings:
/// see [`ResponsesRequest::echo`]).
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ResponseObject {
    /// `resp_` and the engine's response id.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Unix seconds.
    pub created_at: u64,
    /// `completed`, `incomplete` (`max_output_tokens` reached) or, while streaming,
    /// `in_progress`.
    pub status: String,
    /// The model that answered.
    pub model: String,
    /// A `message` item (`output_text` content) and a `function_call` item per call.
    #[schema(value_type = Vec<Object>)]
    pub output: Vec<Value>,
    /// Token counts (`null` until the end of a stream).
    #[schema(value_type = Option<Object>)]
    pub usage: Option<Value>,
}

/// The answer to `DELETE /v1/responses/{id}`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ResponseDeleted {
    /// The response's id.
    pub id: String,
    /// Always `response`.
    pub object: String,
    /// Always true (an unknown response is a 404).
    pub deleted: bool,
}

/// An input item as `input_items` lists it: a `message`, `function_call` or
/// `function_call_output` item, as the request sent it, with an `id`.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct InputItem {
    /// `message`, `function_call` or `function_call_output`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The item's id (given by sluice when the request had none).
    pub id: String,
    /// The rest of the item, as sent.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub rest: serde_json::Map<String, Value>,
}

impl ResponsesRequest {
    /// The request's settings as the response object repeats them; `stored`: whether the
    /// response is kept.
    pub fn echo(&self, stored: bool) -> Value {
        json!({
            "object": "response", "model": self.model, "error": null,
            "instructions": self.instructions, "max_output_tokens": self.max_output_tokens,
            "temperature": self.temperature.unwrap_or(1.0), "top_p": self.top_p.unwrap_or(1.0),
            "tools": self.tools.clone().unwrap_or_default(),
            "tool_choice": self.tool_choice.clone().unwrap_or_else(|| json!("auto")),
            "parallel_tool_calls": self.parallel_tool_calls.unwrap_or(true),
            "text": self.text.clone().map_or_else(|| json!({"format": {"type": "text"}}), |t| json!(t)),
            "metadata": self.metadata.clone().unwrap_or_default(), "user": self.user,
            "previous_response_id": self.previous_response_id, "reasoning": null, "store": stored,
            "truncation": "disabled", "background": false,
        })
    }
}

fn usage(u: Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens, "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": u.completion_tokens, "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

fn suffix(openai_id: &str) -> &str {
    openai_id.trim_start_matches("chatcmpl-")
}

/// The object with the answer so far: `status` and `incomplete_details` from `finish`.
fn object(
    echo: &Value,
    (id, created): (&str, u64),
    output: Vec<Value>,
    finish: Option<&str>,
    u: Option<Usage>,
) -> Value {
    let mut r = echo.clone();
    let (status, incomplete) = match finish {
        None => ("in_progress", Value::Null),
        Some("length") => ("incomplete", json!({"reason": "max_output_tokens"})),
        Some(_) => ("completed", Value::Null),
    };
    r["id"] = json!(format!("resp_{}", suffix(id)));
    r["created_at"] = json!(created);
    r["status"] = json!(status);
    r["incomplete_details"] = incomplete;
    r["output"] = Value::Array(output);
    r["output_text"] = Value::Null;
    r["usage"] = u.map_or(Value::Null, usage);
    r
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": format!("msg_{id}"), "status": status, "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]})
}

fn call_item(id: &str, (call_id, name, arguments): (&str, &str, &str), status: &str) -> Value {
    json!({"type": "function_call", "id": format!("fc_{id}"), "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// The response object of a (non-streamed) chat completion. Errors: the output is not one.
pub fn response(echo: &Value, output: Value) -> Result<Value, serde_json::Error> {
    let c: ChatCompletion = serde_json::from_value(output)?;
    let base = suffix(&c.id).to_string();
    let mut items = Vec::new();
    let mut finish = "stop".to_string();
    if let Some(choice) = c.choices.into_iter().next() {
        finish = choice.finish_reason.unwrap_or(finish);
        let status = if finish == "length" {
            "incomplete"
        } else {
            "completed"
        };
        // Item ids as the stream numbers them: the response's id and the item's place.
        if let Some(text) = choice.message.content.filter(|t| !t.is_empty()) {
            items.push(message_item(&format!("{base}_0"), &text, status));
        }
        for call in choice.message.tool_calls.unwrap_or_default() {
            let f = &call.function;
            let id = format!("{base}_{}", items.len());
            items.push(call_item(&id, (&call.id, &f.name, &f.arguments), status));
        }
    }
    Ok(object(
        echo,
        (&c.id, c.created),
        items,
        Some(&finish),
        c.usage.flatten(),
    ))
}

/// An output item being streamed.
#[derive(Debug)]
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Translates a streamed chat completion into the Responses API's events, each with its
/// `sequence_number`: `response.created`, `response.in_progress`, per item
/// `response.output_item.added`, the text's `content_part.added` / `output_text.delta`s /
/// `output_text.done` / `content_part.done` or a call's `function_call_arguments.delta`s /
/// `.done`, `response.output_item.done`, then `response.completed` (or
/// `response.incomplete`) with the whole object.
#[derive(Debug)]
pub struct EventStream {
    echo: Value,
    id: String,
    created: u64,
    seq: u64,
    items: Vec<Item>,
    /// Whether the last item is still open.
    open: bool,
    finish: Option<String>,
    usage: Option<Usage>,
}

/// One event's data (its `type` is its name).
pub type Event = Value;

impl EventStream {
    /// A translator echoing `echo` (see [`ResponsesRequest::echo`]).
    pub fn new(echo: Value) -> Self {
        EventStream {
            echo,
            id: String::new(),
            created: 0,
            seq: 0,
            items: Vec::new(),
            open: false,
            finish: None,
            usage: None,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Event {
        data["type"] = json!(kind);
        data["sequence_number"] = json!(self.seq);
        self.seq += 1;
        data
    }

    /// The events of one chat chunk.
    pub fn chunk(&mut self, chunk: &Value) -> Vec<Event> {
        let mut out = Vec::new();
        let Ok(event) = serde::Deserialize::deserialize(chunk).map(|e: StreamEvent| e) else {
            return out;
        };
        if event.usage.is_some() {
            self.usage = event.usage;
        }
        if self.seq == 0 {
            self.id = chunk
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            self.created = chunk
                .get("created")
                .and_then(Value::as_u64)
                .unwrap_or_default();
            let r = self.snapshot(None);
            out.push(self.event("response.created", json!({"response": r})));
            out.push(self.event("response.in_progress", json!({"response": r})));
        }
        for choice in event.choices.iter().filter(|c| c.index == 0) {
            let delta = choice.delta.clone().unwrap_or_default();
            if let Some(text) = delta.content.filter(|t| !t.is_empty()) {
                self.text(&text, &mut out);
            }
            for call in delta.tool_calls.unwrap_or_default() {
                if let (Some(id), Some(name)) = (&call.id, &call.function.name) {
                    self.open_call((id, name), &mut out);
                }
                if !call.function.arguments.is_empty() {
                    self.arguments(&call.function.arguments, &mut out);
                }
            }
            if let Some(f) = &choice.finish_reason {
                self.finish = Some(f.clone());
                self.close(&mut out);
            }
        }
        out
    }

    /// The events that end the stream: the last item closed, and the whole response.
    pub fn end(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.close(&mut out);
        let finish = self.finish.clone().unwrap_or_else(|| "stop".into());
        let r = self.snapshot(Some(&finish));
        let kind = if finish == "length" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        out.push(self.event(kind, json!({"response": r})));
        out
    }

    fn snapshot(&self, finish: Option<&str>) -> Value {
        let status = match finish {
            Some("length") => "incomplete",
            Some(_) => "completed",
            None => "in_progress",
        };
        let items = self.items.iter().map(|i| self.item(i, status)).collect();
        object(
            &self.echo,
            (&self.id, self.created),
            items,
            finish,
            self.usage,
        )
    }

    fn item(&self, item: &Item, status: &str) -> Value {
        match item {
            Item::Message { id, text } => message_item(id, text, status),
            Item::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => call_item(id, (call_id, name, arguments), status),
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<Event>) {
        if !(self.open && matches!(self.items.last(), Some(Item::Message { .. }))) {
            self.close(out);
            let id = format!("{}_{}", suffix(&self.id), self.items.len());
            self.items.push(Item::Message {
                id: id.clone(),
                text: String::new(),
            });
            self.open = true;
            let index = self.items.len() - 1;
            let item = json!({"type": "message", "id": format!("msg_{id}"), "status": "in_progress", "role": "assistant", "content": []});
            out.push(self.event(
                "response.output_item.added",
                json!({"output_index": index, "item": item}),
            ));
            let part =
                json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
            out.push(self.event("response.content_part.added", json!({"item_id": format!("msg_{id}"), "output_index": index, "content_index": 0, "part": part})));
        }
        let index = self.items.len() - 1;
        let Some(Item::Message { id, text: all }) = self.items.last_mut() else {
            return;
        };
        all.push_str(text);
        let item_id = format!("msg_{id}");
        out.push(self.event("response.output_text.delta", json!({"item_id": item_id, "output_index": index, "content_index": 0, "delta": text, "logprobs": []})));
    }

    fn open_call(&mut self, (call_id, name): (&str, &str), out: &mut Vec<Event>) {
        self.close(out);
        let id = format!("{}_{}", suffix(&self.id), self.items.len());
        let item = Item::Call {
            id,
            call_id: call_id.into(),
            name: name.into(),
            arguments: String::new(),
        };
        let added = self.item(&item, "in_progress");
        self.items.push(item);
        self.open = true;
        let output_index = self.items.len() - 1;
        out.push(self.event(
            "response.output_item.added",
            json!({"output_index": output_index, "item": added}),
        ));
    }

    fn arguments(&mut self, piece: &str, out: &mut Vec<Event>) {
        let output_index = self.items.len().saturating_sub(1);
        let Some(Item::Call { id, arguments, .. }) = self.items.last_mut() else {
            return;
        };
        arguments.push_str(piece);
        let item_id = format!("fc_{id}");
        out.push(self.event(
            "response.function_call_arguments.delta",
            json!({"item_id": item_id, "output_index": output_index, "delta": piece}),
        ));
    }

    /// Close the open item: its `.done` events.
    fn close(&mut self, out: &mut Vec<Event>) {
        if !std::mem::take(&mut self.open) {
            return;
        }
        let output_index = self.items.len() - 1;
        let status = if self.finish.as_deref() == Some("length") {
            "incomplete"
        } else {
            "completed"
        };
        let Some(last) = self.items.last() else {
            return;
        };
        let done = self.item(last, status);
        let events: Vec<(&str, Value)> = match last {
            Item::Message { id, text } => {
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                let item_id = format!("msg_{id}");
                vec![
                    (
                        "response.output_text.done",
                        json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "text": text, "logprobs": []}),
                    ),
                    (
                        "response.content_part.done",
                        json!({"item_id": item_id, "output_index": output_index, "content_index": 0, "part": part}),
                    ),
                ]
            }
            Item::Call {
                id,
                name,
                arguments,
                ..
            } => vec![(
                "response.function_call_arguments.done",
                json!({"item_id": format!("fc_{id}"), "output_index": output_index, "name": name, "arguments": arguments}),
            )],
        };
        for (kind, data) in events {
            out.push(self.event(kind, data));
        }
        out.push(self.event(
            "response.output_item.done",
            json!({"output_index": output_index, "item": done}),
        ));
    }
}
