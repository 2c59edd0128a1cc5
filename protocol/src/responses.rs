//! OpenAI's Responses API (`POST /v1/responses`), which the `openai-agents` SDK and recent
//! LangChain and LiteLLM paths use by default. Like [`crate::anthropic`], a request is carried
//! to the engine as the chat request it means ([`ResponsesRequest::to_chat`]) and the answer
//! translated back ([`reply`]).
//!
//! Responses are stored (`store`, default on, see [`stored`]) in the job store for the
//! gateway's `response_retention_secs`: `GET`/`DELETE /v1/responses/{id}`, `input_items`, and
//! `previous_response_id` to continue a conversation without sending it again.

pub mod reply;
pub mod stored;

use crate::anthropic::{parse, Refused};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The body of `POST /v1/responses`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponsesRequest {
    /// The served model's name.
    pub model: String,
    /// Text (one user message), or input items: messages, `function_call`s and
    /// `function_call_output`s.
    #[schema(value_type = Object)]
    pub input: Value,
    /// A system message put first.
    pub instructions: Option<String>,
    /// Most tokens to generate.
    pub max_output_tokens: Option<u32>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Function tools.
    pub tools: Option<Vec<Tool>>,
    /// `auto`, `none`, `required`, or `{"type": "function", "name"}`.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Whether the model may call several tools at once.
    pub parallel_tool_calls: Option<bool>,
    /// The answer's format: `{"format": {"type": "text" | "json_object" | "json_schema", ...}}`.
    pub text: Option<TextConfig>,
    /// Stream the Responses API's events.
    pub stream: Option<bool>,
    /// Keep the response (default true; answered `store: false` when the gateway keeps
    /// none: `response_retention_secs = 0`).
    pub store: Option<bool>,
    /// A stored response this request continues: its conversation comes before `input`.
    pub previous_response_id: Option<String>,
    /// Up to 16 key-value pairs, echoed in the response.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
    /// The caller's end-user id.
    pub user: Option<String>,
    /// `disabled` only: a conversation past the context is refused, never cut.
    pub truncation: Option<String>,
    /// Refused unless empty: no reasoning here.
    #[schema(value_type = Option<Object>)]
    pub reasoning: Option<Value>,
    /// Extra output to include: refused unless empty.
    pub include: Option<Vec<String>>,
    /// Refused when `true`: answers run in the request.
    pub background: Option<bool>,
}

/// A tool of a Responses request: functions only.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// `function` (built-in tools such as `web_search` are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The function's name.
    pub name: Option<String>,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of its arguments.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Strict arguments (forced calls follow the schema exactly either way).
    pub strict: Option<bool>,
}

/// `text`: the answer's format.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// `{"type": "text"}`, `{"type": "json_object"}` or `{"type": "json_schema", "name",
    /// "schema", "strict", "description"}`.
    #[schema(value_type = Option<Object>)]
    pub format: Option<Value>,
    /// Refused unless `medium` or absent: one verbosity here.
    pub verbosity: Option<String>,
}

/// A message item's text, whichever part kind carries it.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    InputText { text: String },
    OutputText { text: String },
}

/// A message item (`type` may be left out).
#[derive(Debug, Deserialize)]
struct MessageItem {
    role: String,
    content: Value,
}

/// A function call the model made, sent back in a later request's input.
#[derive(Debug, Deserialize)]
struct FunctionCallItem {
    call_id: String,
    name: String,
    arguments: String,
}

/// A function call's result.
#[derive(Debug, Deserialize)]
struct FunctionOutputItem {
    call_id: String,
    output: Value,
}

impl ResponsesRequest {
    /// The OpenAI chat body this request means, continuing `previous` (the chat messages of
    /// the stored response `previous_response_id` names; empty without one). Errors: what
    /// cannot be honoured, by field.
    pub fn to_chat(&self, previous: &[Value]) -> Result<Value, Refused> {
        self.refusals()?;
        let mut messages = Vec::new();
        if let Some(i) = &self.instructions {
            messages.push(json!({"role": "system", "content": i}));
        }
        messages.extend_from_slice(previous);
        match &self.input {
            Value::String(s) => messages.push(json!({"role": "user", "content": s})),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    input_item(item, &mut messages).map_err(|e| at(&format!("input[{i}]"), e))?;
                }
            }
            _ => return Err(Refused::new("input", "`input` is text or a list of items")),
        }
        let stream = self.stream.unwrap_or(false);
        let mut body = json!({
            "model": self.model, "messages": messages, "stream": stream,
            "max_tokens": self.max_output_tokens, "temperature": self.temperature,
            "top_p": self.top_p, "user": self.user, "tool_choice": chat_tool_choice(self.tool_choice.as_ref()),
            "parallel_tool_calls": self.parallel_tool_calls,
        });
        if let Some(tools) = &self.tools {
            body["tools"] = Value::Array(chat_tools(tools)?);
        }
        if let Some(format) = self.text.as_ref().and_then(|t| t.format.as_ref()) {
            body["response_format"] = response_format(format)?;
        }
        if stream {
            body["stream_options"] = json!({"include_usage": true});
        }
        Ok(body)
    }

    fn refusals(&self) -> Result<(), Refused> {
        let refuse = |field: &str, why: &str| Err(Refused::new(field, why));
        if self.reasoning.as_ref().is_some_and(|r| !is_empty(r)) {
            return refuse(
                "reasoning",
                "reasoning is not supported: this model does not reason",
            );
        }
        if self.include.as_ref().is_some_and(|i| !i.is_empty()) {
            return refuse("include", "no extra output can be included");
        }
        if self.background == Some(true) {
            return refuse("background", "background responses are not supported");
        }
        if self.truncation.as_deref().is_some_and(|t| t != "disabled") {
            return refuse(
                "truncation",
                "only `disabled`: a conversation past the context is refused",
            );
        }
        if self.metadata.as_ref().is_some_and(|m| m.len() > 16) {
            return refuse("metadata", "at most 16 pairs");
        }
        if self
            .text
            .as_ref()
            .and_then(|t| t.verbosity.as_deref())
            .is_some_and(|v| v != "medium")
        {
            return refuse("text.verbosity", "only `medium`");
        }
        Ok(())
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().all(Value::is_null),
        _ => false,
    }
}

fn at(prefix: &str, e: Refused) -> Refused {
    let field = if e.field.is_empty() || e.field == "." {
        prefix.to_string()
    } else {
        format!("{prefix}.{}", e.field)
    };
    Refused::new(field, e.message)
}

/// One input item as chat messages: a message, a function call (joined to the assistant
/// message before it, as one turn's calls), or a call's output (a `tool` message).
pub(crate) fn input_item(item: &Value, out: &mut Vec<Value>) -> Result<(), Refused> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    let mut item = item.clone();
    if let Some(map) = item.as_object_mut() {
        // Ids and statuses of items a previous response returned: not needed to continue.
        for k in ["type", "id", "status"] {
            map.remove(k);
        }
    }
    match kind {
        "message" => {
            let m: MessageItem = parse(item)?;
            let role = match m.role.as_str() {
                "developer" => "system",
                r @ ("system" | "user" | "assistant") => r,
                _ => return Err(Refused::new("role", "one of user, assistant, system, developer")),
            };
            out.push(json!({"role": role, "content": message_text(m.content)?}));
        }
        "function_call" => {
            let c: FunctionCallItem = parse(item)?;
            let call = json!({"id": c.call_id, "type": "function",
                "function": {"name": c.name, "arguments": c.arguments}});
            match out.last_mut() {
                Some(last) if last["role"] == "assistant" => {
                    if !last["tool_calls"].is_array() {
                        last["tool_calls"] = json!([]);
                    }
                    if let Some(calls) = last["tool_calls"].as_array_mut() {
                        calls.push(call);
                    }
                }
                _ => out.push(json!({"role": "assistant", "content": null, "tool_calls": [call]})),
            }
        }
        "function_call_output" => {
            let o: FunctionOutputItem = parse(item)?;
            let text = match o.output {
                Value::String(s) => s,
                parts => message_text(parts)?,
            };
            out.push(json!({"role": "tool", "tool_call_id": o.call_id, "content": text}));
        }
        other => {
            return Err(Refused::new(
                "type",
                format!("input items of type `{other}` are not supported (messages, function_call, function_call_output)"),
            ))
        }
    }
    Ok(())
}

/// A message's content as text: a string, or text parts joined.
fn message_text(content: Value) -> Result<String, Refused> {
    match content {
        Value::String(s) => Ok(s),
        Value::Array(parts) => {
            let mut text = String::new();
            for (i, p) in parts.into_iter().enumerate() {
                let mut p = p;
                if let Some(map) = p.as_object_mut() {
                    for k in ["annotations", "logprobs"] {
                        map.remove(k);
                    }
                }
                match parse::<Part>(p).map_err(|e| at(&format!("content[{i}]"), e))? {
                    Part::InputText { text: t } | Part::OutputText { text: t } => text.push_str(&t),
                }
            }
            Ok(text)
        }
        _ => Err(Refused::new("content", "text or a list of text parts")),
    }
}

fn chat_tools(tools: &[Tool]) -> Result<Vec<Value>, Refused> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| match (t.kind.as_str(), &t.name) {
            ("function", Some(name)) => Ok(json!({"type": "function", "function": {
                "name": name, "description": t.description,
                "parameters": t.parameters.clone().unwrap_or_else(|| json!({"type": "object", "properties": {}})),
            }})),
            ("function", None) => Err(Refused::new(format!("tools[{i}].name"), "a function needs a name")),
            (other, _) => Err(Refused::new(
                format!("tools[{i}].type"),
                format!("built-in tool `{other}` is not supported: give function tools"),
            )),
        })
        .collect()
}

/// Chat's `tool_choice` for the Responses API's: a named function is `{"type": "function",
/// "name"}` here, `{"type": "function", "function": {"name"}}` in chat; the rest is the same.
fn chat_tool_choice(choice: Option<&Value>) -> Value {
    match choice {
        Some(c) if c["type"] == "function" && c["name"].is_string() => {
            json!({"type": "function", "function": {"name": c["name"]}})
        }
        other => other.cloned().unwrap_or(Value::Null),
    }
}

/// Chat's `response_format` for `text.format`.
fn response_format(format: &Value) -> Result<Value, Refused> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text"})),
        Some("json_object") => Ok(json!({"type": "json_object"})),
        Some("json_schema") => {
            let mut schema = format.clone();
            if let Some(m) = schema.as_object_mut() {
                m.remove("type");
            }
            Ok(json!({"type": "json_schema", "json_schema": schema}))
        }
        _ => Err(Refused::new(
            "text.format.type",
            "one of text, json_object, json_schema",
        )),
    }
}

#[cfg(test)]
mod tests;
