//! Anthropic's Messages API (`POST /v1/messages`, `/v1/messages/count_tokens`), which coding
//! agents speak (Claude Code and the tools that copy it), as Ollama, llama.cpp and vLLM serve
//! it. A body is one type, its parser and its schema; it is carried to the engine as the
//! OpenAI chat body it means ([`MessagesRequest::to_chat`]), so the chat route's checks and
//! both engine backends serve it unchanged, and the answer is translated back
//! ([`reply`]): the whole message, or Anthropic's stream of events.

pub mod reply;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

/// The body of `POST /v1/messages`. Fields sluice cannot honour (`thinking`, server tools,
/// images, ...) are refused by name.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagesRequest {
    /// The served model's name.
    pub model: String,
    /// Most tokens to generate (required, at least 1).
    pub max_tokens: u32,
    /// The conversation, user and assistant turns.
    pub messages: Vec<Message>,
    /// The system prompt: text, or text blocks.
    pub system: Option<System>,
    /// Strings that end the answer (its `stop_reason` is then `stop_sequence`: see [`reply`]).
    pub stop_sequences: Option<Vec<String>>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: Option<f64>,
    /// Nucleus sampling mass.
    pub top_p: Option<f64>,
    /// Sample among the `top_k` most likely tokens.
    pub top_k: Option<u32>,
    /// Stream Anthropic's server-sent events.
    pub stream: Option<bool>,
    /// Tools the model may call (client tools: name, description, JSON Schema of the input).
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool must be called.
    pub tool_choice: Option<ToolChoice>,
    /// The caller's end-user id (`metadata.user_id`).
    pub metadata: Option<Metadata>,
    /// Structured output: `format` (a JSON schema the answer's text follows, by constrained
    /// decoding); `effort` is refused (no reasoning here).
    pub output_config: Option<OutputConfig>,
    /// Prompt-caching hint (sluice's prefix cache needs none: accepted, ignored).
    #[schema(value_type = Option<Object>)]
    pub cache_control: Option<Value>,
}

/// `output_config`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputConfig {
    /// How much reasoning (refused unless `null`: this model does not reason).
    #[schema(value_type = Option<String>)]
    pub effort: Option<Value>,
    /// The answer's format.
    pub format: Option<OutputFormat>,
}

/// `output_config.format`: `{"type": "json_schema", "schema": {...}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputFormat {
    /// The text is JSON following `schema`.
    JsonSchema {
        /// The JSON Schema.
        #[schema(value_type = Object)]
        schema: Value,
    },
}

/// The body of `POST /v1/messages/count_tokens`: what a message would be given, without
/// `max_tokens`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CountTokensRequest {
    /// The served model's name.
    pub model: String,
    /// The conversation.
    pub messages: Vec<Message>,
    /// The system prompt.
    pub system: Option<System>,
    /// Tools offered.
    pub tools: Option<Vec<Tool>>,
    /// Whether and which tool must be called.
    pub tool_choice: Option<ToolChoice>,
}

/// The answer of `POST /v1/messages/count_tokens`.
#[derive(Debug, serde::Serialize, Deserialize, ToSchema)]
pub struct TokenCount {
    /// Tokens of the prompt as the model reads it (system, tools and messages templated).
    pub input_tokens: usize,
}

/// One turn of the conversation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: Role,
    /// Text, or content blocks.
    pub content: Content,
}

/// Who speaks a turn.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The user (tool results come in user turns).
    User,
    /// The model (tool calls come in assistant turns).
    Assistant,
}

/// A turn's content: a string, or blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text, tool-use and tool-result blocks.
    Blocks(Vec<Block>),
}

/// A content block of a turn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Block {
    /// Text.
    Text {
        /// The text.
        text: String,
        /// Prompt-caching hint (sluice's prefix cache needs none: accepted, ignored).
        #[schema(value_type = Option<Object>)]
        cache_control: Option<Value>,
    },
    /// A call the assistant made.
    ToolUse {
        /// The call's id, quoted by its result.
        id: String,
        /// The tool called.
        name: String,
        /// Its input (a JSON object).
        #[schema(value_type = Object)]
        input: Value,
        /// Prompt-caching hint (ignored).
        #[schema(value_type = Option<Object>)]
        cache_control: Option<Value>,
    },
    /// A call's result, in a user turn.
    ToolResult {
        /// The id of the call it answers.
        tool_use_id: String,
        /// The result: text or text blocks.
        content: Option<ToolResultContent>,
        /// Whether the call failed (the text says how).
        is_error: Option<bool>,
        /// Prompt-caching hint (ignored).
        #[schema(value_type = Option<Object>)]
        cache_control: Option<Value>,
    },
}

/// A tool result's content.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Text blocks.
    Blocks(Vec<TextBlock>),
}

/// A text block (system prompt, tool result).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextBlock {
    /// Always `text`.
    #[serde(rename = "type")]
    pub kind: TextKind,
    /// The text.
    pub text: String,
    /// Prompt-caching hint (ignored).
    #[schema(value_type = Option<Object>)]
    pub cache_control: Option<Value>,
}

/// The only block kind a system prompt or tool result takes here.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextKind {
    /// Text.
    Text,
}

/// The system prompt.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum System {
    /// Plain text.
    Text(String),
    /// Text blocks, joined.
    Blocks(Vec<TextBlock>),
}

/// A client tool.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Tool {
    /// `custom` when given; Anthropic's server tools (web search, ...) are refused.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// The tool's name.
    pub name: String,
    /// What it does (shown to the model).
    pub description: Option<String>,
    /// JSON Schema of its input.
    #[schema(value_type = Object)]
    pub input_schema: Value,
    /// Prompt-caching hint (ignored).
    #[schema(value_type = Option<Object>)]
    pub cache_control: Option<Value>,
    /// Strict input (sluice's forced calls follow the schema exactly either way; accepted).
    pub strict: Option<bool>,
}

/// Anthropic's `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ToolChoice {
    /// The model decides.
    Auto {
        /// At most one call.
        disable_parallel_tool_use: Option<bool>,
    },
    /// Some tool must be called.
    Any {
        /// At most one call.
        disable_parallel_tool_use: Option<bool>,
    },
    /// This tool must be called.
    Tool {
        /// The tool.
        name: String,
        /// At most one call.
        disable_parallel_tool_use: Option<bool>,
    },
    /// No tool is called.
    None {},
}

/// `metadata`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    /// The caller's end-user id.
    pub user_id: Option<String>,
}

/// A body that cannot be carried: the field (its path) and why.
#[derive(Debug, PartialEq)]
pub struct Refused {
    /// The field, e.g. `tools[1].type`.
    pub field: String,
    /// Why.
    pub message: String,
}

impl Refused {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Refused {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Read a body as `T`; an error names the field's path (`messages[0].content`).
pub fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refused> {
    serde_path_to_error::deserialize(body).map_err(|e| {
        let field = e.path().to_string();
        Refused::new(field, e.into_inner().to_string())
    })
}

impl MessagesRequest {
    /// The OpenAI chat body this request means: the system prompt first, tool results as
    /// `tool` messages, tool uses as `tool_calls`, `any` as `required`. Streamed, usage comes
    /// on every chunk (Anthropic's first event carries the prompt's tokens).
    pub fn to_chat(&self) -> Result<Value, Refused> {
        let mut body = chat_body(
            &self.model,
            self.system.as_ref(),
            &self.messages,
            (self.tools.as_deref(), self.tool_choice.as_ref()),
        )?;
        let stream = self.stream.unwrap_or(false);
        let fields = [
            ("max_tokens", json!(self.max_tokens)),
            ("stop", json!(self.stop_sequences)),
            ("temperature", json!(self.temperature)),
            ("top_p", json!(self.top_p)),
            ("top_k", json!(self.top_k)),
            (
                "user",
                json!(self.metadata.as_ref().and_then(|m| m.user_id.as_ref())),
            ),
            ("stream", json!(stream)),
        ];
        body.extend(fields.into_iter().map(|(k, v)| (k.to_string(), v)));
        if let Some(config) = &self.output_config {
            if config.effort.is_some() {
                return Err(Refused::new(
                    "output_config.effort",
                    "reasoning effort is not supported: this model does not reason",
                ));
            }
            if let Some(OutputFormat::JsonSchema { schema }) = &config.format {
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}),
                );
            }
        }
        if stream {
            body.insert(
                "stream_options".into(),
                json!({"include_usage": true, "continuous_usage_stats": true}),
            );
        }
        Ok(Value::Object(body))
    }
}

impl CountTokensRequest {
    /// The OpenAI chat body of the prompt to count.
    pub fn to_chat(&self) -> Result<Value, Refused> {
        let tools = (self.tools.as_deref(), self.tool_choice.as_ref());
        chat_body(&self.model, self.system.as_ref(), &self.messages, tools).map(Value::Object)
    }
}

fn chat_body(
    model: &str,
    system: Option<&System>,
    messages: &[Message],
    (tools, choice): (Option<&[Tool]>, Option<&ToolChoice>),
) -> Result<Map<String, Value>, Refused> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = system {
        let text = match system {
            System::Text(t) => t.clone(),
            System::Blocks(b) => joined(b),
        };
        out.push(json!({"role": "system", "content": text}));
    }
    for (i, m) in messages.iter().enumerate() {
        turn(m, &mut out)
            .map_err(|e| Refused::new(format!("messages[{i}].{}", e.field), e.message))?;
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(out));
    if let Some(tools) = tools {
        body.insert("tools".into(), Value::Array(openai_tools(tools)?));
    }
    if let Some(choice) = choice {
        let (choice, parallel) = openai_tool_choice(choice);
        body.insert("tool_choice".into(), choice);
        if parallel == Some(true) {
            body.insert("parallel_tool_calls".into(), json!(false));
        }
    }
    Ok(body)
}

fn joined(blocks: &[TextBlock]) -> String {
    let texts: Vec<&str> = blocks.iter().map(|b| b.text.as_str()).collect();
    texts.join("\n")
}

/// One Anthropic turn as OpenAI messages: a user turn's tool results become `tool` messages
/// (before its text, as they answer the previous turn's calls), an assistant turn's tool uses
/// its `tool_calls`.
fn turn(m: &Message, out: &mut Vec<Value>) -> Result<(), Refused> {
    let role = match m.role {
        Role::User => "user",
        Role::Assistant => "assistant",
    };
    let blocks = match &m.content {
        Content::Text(t) => {
            out.push(json!({"role": role, "content": t}));
            return Ok(());
        }
        Content::Blocks(b) => b,
    };
    let (mut text, mut calls) = (Vec::new(), Vec::new());
    for (j, b) in blocks.iter().enumerate() {
        match (b, m.role) {
            (Block::Text { text: t, .. }, _) => text.push(t.as_str()),
            (
                Block::ToolUse {
                    id, name, input, ..
                },
                Role::Assistant,
            ) => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            (
                Block::ToolResult {
                    tool_use_id,
                    content,
                    is_error,
                    ..
                },
                Role::User,
            ) => {
                let mut result = match content {
                    Some(ToolResultContent::Text(t)) => t.clone(),
                    Some(ToolResultContent::Blocks(b)) => joined(b),
                    None => String::new(),
                };
                if *is_error == Some(true) {
                    result = format!("Error: {result}");
                }
                out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": result}));
            }
            _ => return Err(Refused::new(
                format!("content[{j}]"),
                "`tool_use` blocks belong to assistant turns, `tool_result` blocks to user turns",
            )),
        }
    }
    if !text.is_empty() || !calls.is_empty() {
        let mut msg = json!({"role": role, "content": text.join("\n")});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        out.push(msg);
    }
    Ok(())
}

fn openai_tools(tools: &[Tool]) -> Result<Vec<Value>, Refused> {
    tools
        .iter()
        .enumerate()
        .map(|(i, t)| match t.kind.as_deref() {
            None | Some("custom") => Ok(json!({"type": "function", "function": {
                "name": t.name, "description": t.description, "parameters": t.input_schema,
            }})),
            Some(other) => Err(Refused::new(
                format!("tools[{i}].type"),
                format!("server tool `{other}` is not supported: give client tools (name, description, input_schema)"),
            )),
        })
        .collect()
}

/// OpenAI's `tool_choice` for Anthropic's, and whether parallel calls are off.
fn openai_tool_choice(c: &ToolChoice) -> (Value, Option<bool>) {
    match c {
        ToolChoice::Auto {
            disable_parallel_tool_use,
        } => (json!("auto"), *disable_parallel_tool_use),
        ToolChoice::Any {
            disable_parallel_tool_use,
        } => (json!("required"), *disable_parallel_tool_use),
        ToolChoice::Tool {
            name,
            disable_parallel_tool_use,
        } => (
            json!({"type": "function", "function": {"name": name}}),
            *disable_parallel_tool_use,
        ),
        ToolChoice::None {} => (json!("none"), None),
    }
}

#[cfg(test)]
mod tests;
