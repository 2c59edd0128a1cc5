//! The nested objects of chat and text completions bodies as clients send them (messages,
//! `stop`, `response_format`, `stream_options`, tools, vLLM's `structured_outputs`). Each is
//! deserialized as it is written here and described by the same type in `/openapi.json`;
//! what cannot be said in a type (ranges, lengths, which role may carry what) is checked
//! where the body is read ([`super::ChatRequest::parse`]).

use super::tools::{Function, ToolCall};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

/// A chat message as a client sends it; a field sent as `null` counts as absent, whatever its
/// name (see `ChatParams::prepare`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageBody {
    /// `system`, `user`, `assistant` or `tool` (`developer` is read as `system`).
    pub role: Role,
    /// Text, or a list of text parts (joined without separator); may be absent or `null`
    /// only in an assistant message.
    pub content: Option<Content>,
    /// OpenAI's participant name; accepted and ignored.
    pub name: Option<String>,
    /// An assistant message's tool calls.
    pub tool_calls: Option<Vec<ToolCall>>,
    /// A `tool` message's answer to this call (required there).
    pub tool_call_id: Option<String>,
}

/// A chat message's author.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Instructions.
    System,
    /// OpenAI's newer name for `system`.
    Developer,
    /// The user.
    User,
    /// The model.
    Assistant,
    /// A tool's result.
    Tool,
}

impl Role {
    /// The role as the engine's templates name it (`developer` is `system`).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System | Role::Developer => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::Tool => "tool",
        }
    }
}

/// A message's content: a string or text parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "a string or a list of text parts (only text content is supported here)"
)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text parts (`{"type": "text", "text"}`).
    Parts(Vec<TextPart>),
}

impl Content {
    /// The text, parts joined without separator.
    pub fn into_text(self) -> String {
        match self {
            Content::Text(s) => s,
            Content::Parts(parts) => parts.into_iter().map(|p| p.text).collect(),
        }
    }
}

/// `{"type": "text", "text": "..."}`; other fields of a part (another API's, such as
/// `cache_control`) are left alone, as before this type.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TextPart {
    /// Always `text`.
    #[serde(rename = "type")]
    pub kind: TextKind,
    /// The text.
    pub text: String,
}

/// The one content part type taken: `text`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TextKind {
    /// Text.
    Text,
}

/// `stop`: one string or up to 16 non-empty strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged, expecting = "a string or a list of strings")]
pub enum Stop {
    /// One stop sequence (non-empty).
    One(String),
    /// Several (1 to 16, each non-empty).
    Many(Vec<String>),
}

/// OpenAI's `response_format`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponseFormat {
    /// `text` (free text), `json_object` (any JSON object) or `json_schema`.
    #[serde(rename = "type")]
    pub kind: FormatKind,
    /// With `json_schema` (required there): the schema the output matches (constrained
    /// decoding).
    pub json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.type`.
#[derive(Debug, PartialEq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// The object matching `json_schema.schema`.
    JsonSchema,
}

/// `response_format.json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonSchemaFormat {
    /// 1 to 64 of `a-z`, `A-Z`, `0-9`, `_` and `-`.
    #[schema(min_length = 1, max_length = 64, pattern = "^[a-zA-Z0-9_-]+$")]
    pub name: String,
    /// The JSON Schema (an object) the output matches.
    #[schema(value_type = Object, required = true)]
    pub schema: Option<Value>,
    /// Exact adherence, which constrained decoding gives either way.
    pub strict: Option<bool>,
    /// What the format is for.
    pub description: Option<String>,
}

/// `stream_options` (only with `stream: true`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send the token counts in a last chunk without choices.
    pub include_usage: Option<bool>,
    /// With `include_usage`, every chunk carries the counts so far (vLLM's).
    pub continuous_usage_stats: Option<bool>,
}

/// One offered tool: `{"type": "function", "function": {...}}`; other fields (another API's,
/// such as `cache_control`) are left alone, as before this type.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolBody {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    /// The function (required).
    #[schema(value_type = Function, required = true)]
    pub function: Option<Function>,
}

/// The one tool type taken: `function`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FunctionKind {
    /// A function the model may call.
    Function,
}

/// `tool_choice`: `none`, `auto`, `required`, or a named function.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(
    untagged,
    expecting = "`none`, `auto`, `required` or {\"type\": \"function\", \"function\": {\"name\": ...}}"
)]
pub enum ToolChoiceBody {
    /// `none`, `auto` or `required`.
    Mode(ToolMode),
    /// `{"type": "function", "function": {"name"}}`: call this function.
    Named(NamedTool),
}

/// The word forms of `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ToolMode {
    /// Leave the tools out.
    None,
    /// The model chooses.
    Auto,
    /// At least one call.
    Required,
}

/// A named `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NamedTool {
    /// Always `function`.
    #[serde(rename = "type")]
    pub kind: FunctionKind,
    /// `{"name": "..."}`.
    pub function: ToolName,
}

/// `{"name": "..."}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolName {
    /// The function's name.
    pub name: String,
}

/// vLLM's `structured_outputs`: one of `json`, `regex`, `choice`, `grammar`, `json_object`,
/// read as the older key it replaces (`guided_json`, `guided_regex`, `guided_choice`,
/// `guided_grammar`, `response_format`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StructuredOutputs {
    /// A JSON Schema object (or its JSON text) the output matches.
    #[schema(value_type = Option<Object>)]
    pub json: Option<Value>,
    /// A regular expression the whole output matches.
    pub regex: Option<String>,
    /// The output is exactly one of these.
    #[schema(min_items = 1, max_items = 256)]
    pub choice: Option<Vec<String>>,
    /// `true`: any JSON object.
    pub json_object: Option<bool>,
    /// A grammar in llguidance's Lark syntax the whole output matches.
    pub grammar: Option<String>,
    /// Refused: structural tags are not enforced here.
    #[schema(value_type = Option<Object>)]
    pub structural_tag: Option<Value>,
}
