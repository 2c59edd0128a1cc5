//! The wire shapes of the request bodies that sluice's parsers read key by key
//! ([`crate::openai::ChatRequest::parse`], [`crate::openai::CompletionRequest::parse`],
//! [`crate::job::RunBody::parse`]), as OpenAPI schemas for the gateway's `/openapi.json`.
//!
//! The parsers stay the authority (they give OpenAI's error for each parameter); these types
//! only describe what they accept, and the tests below hold the two together: every property
//! here is a key the parser takes, and every key the parser takes is a property here. Ranges
//! are the parsers' (see [`crate::openai::MAX_N`], [`crate::openai::MAX_STOP`],
//! [`crate::openai::logprobs::MAX_TOP_LOGPROBS`]).

use crate::job::PolicyRequest;
use crate::openai::tools::{Function, ToolCall};
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use utoipa::ToSchema;

/// A chat message as a client sends it.
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
#[derive(Debug, Deserialize, ToSchema)]
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

/// A message's content: a string or text parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text parts (`{"type": "text", "text"}`); other part types are refused.
    Parts(Vec<TextPart>),
}

/// `{"type": "text", "text": "..."}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextPart {
    /// Always `text`.
    #[serde(rename = "type")]
    #[schema(pattern = "^text$")]
    pub kind: String,
    /// The text.
    pub text: String,
}

/// `stop`: one string or up to 16 non-empty strings.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
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
    /// With `json_schema`: `{"name", "schema", "strict"}`; the output matches `schema`
    /// (constrained decoding).
    #[schema(value_type = Option<Object>)]
    pub json_schema: Option<Value>,
}

/// `response_format.type`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FormatKind {
    /// Free text.
    Text,
    /// Any JSON object.
    JsonObject,
    /// The object matching `json_schema.schema`.
    JsonSchema,
}

/// `stream_options` (only with `stream: true`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StreamOptions {
    /// Send the token counts in a last chunk without choices.
    pub include_usage: Option<bool>,
    /// With `include_usage`, every chunk carries the counts so far (vLLM's).
    pub continuous_usage_stats: Option<bool>,
}

/// One offered tool: `{"type": "function", "function": {...}}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolBody {
    /// Always `function`.
    #[serde(rename = "type")]
    #[schema(pattern = "^function$")]
    pub kind: String,
    /// The function.
    pub function: Function,
}

/// `tool_choice`: `none`, `auto`, `required`, or a named function.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
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
    #[schema(pattern = "^function$")]
    pub kind: String,
    /// `{"name": "..."}`.
    pub function: ToolName,
}

/// `{"name": "..."}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolName {
    /// The function's name.
    pub name: String,
}

/// `prompt`: a string, a list of strings, a list of token ids or a list of lists of them.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Prompt {
    /// The prompt.
    Text(String),
    /// Several prompts (1 to 64), `n` choices each.
    Many(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids.
    ManyTokens(Vec<Vec<u32>>),
}

/// Declares a request body with the parameters both OpenAI routes take after its own.
macro_rules! with_common_parameters {
    ($(#[$m:meta])* pub struct $name:ident { $($body:tt)* }) => {
        $(#[$m])*
        #[derive(Debug, Deserialize, ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($body)*
            /// The served model's name (`GET /v1/models`).
            pub model: String,
            /// Most tokens to generate per choice, at least 1; 0 only in a completion with
            /// `echo` (the prompt scored, nothing generated).
            #[schema(minimum = 0)]
            pub max_tokens: Option<u32>,
            /// Sampling temperature; 0 is greedy.
            #[schema(minimum = 0, maximum = 2)]
            pub temperature: Option<f64>,
            /// Nucleus sampling mass, above 0.
            #[schema(exclusive_minimum = 0, maximum = 1)]
            pub top_p: Option<f64>,
            /// Sample among this many most likely tokens (vLLM's).
            #[schema(minimum = 1)]
            pub top_k: Option<u32>,
            /// Drop tokens less likely than this times the most likely one (vLLM's).
            #[schema(minimum = 0, maximum = 1)]
            pub min_p: Option<f64>,
            /// Flat penalty on tokens already present.
            #[schema(minimum = -2, maximum = 2)]
            pub presence_penalty: Option<f32>,
            /// Penalty in proportion to a token's count so far.
            #[schema(minimum = -2, maximum = 2)]
            pub frequency_penalty: Option<f32>,
            /// Multiplicative penalty on tokens seen, 1 neutral (vLLM's).
            #[schema(minimum = 0.01, maximum = 10)]
            pub repetition_penalty: Option<f32>,
            /// Stop sequences.
            pub stop: Option<Stop>,
            /// Token ids that end a choice (vLLM's); their text is left out.
            #[schema(max_items = 64)]
            pub stop_token_ids: Option<Vec<u32>>,
            /// Keep the stop string that ended a choice in its text (vLLM's).
            pub include_stop_str_in_output: Option<bool>,
            /// End-of-sequence tokens do not end a choice (vLLM's).
            pub ignore_eos: Option<bool>,
            /// Tokens a choice generates before anything may end it, at most `max_tokens` (vLLM's).
            pub min_tokens: Option<u32>,
            /// Use only the last this many prompt tokens (vLLM's left truncation).
            #[schema(minimum = 1)]
            pub truncate_prompt_tokens: Option<u32>,
            /// `false`: special tokens are written in the text (vLLM's; default `true`).
            pub skip_special_tokens: Option<bool>,
            /// Only these token ids may be drawn (vLLM's).
            #[schema(min_items = 1)]
            pub allowed_token_ids: Option<Vec<u32>>,
            /// The same seed and parameters repeat the same choices (choice `i` draws from `seed + i`).
            pub seed: Option<i64>,
            /// Choices to return.
            #[schema(minimum = 1, maximum = 16)]
            pub n: Option<u32>,
            /// Token id (as a string) to a bias from -100 to 100.
            pub logit_bias: Option<HashMap<String, f32>>,
            /// Structured output (constrained decoding).
            pub response_format: Option<ResponseFormat>,
            /// vLLM's: a JSON Schema object (or its JSON text) the output must match; not
            /// with `response_format`.
            #[schema(value_type = Option<Object>)]
            pub guided_json: Option<Value>,
            /// vLLM's newer form of the above: one of `json`, `regex`, `choice`, `json_object`.
            #[schema(value_type = Option<Object>)]
            pub structured_outputs: Option<Value>,
            /// vLLM's: a regular expression the whole output matches; not with a schema.
            pub guided_regex: Option<String>,
            /// vLLM's: the output is exactly one of these (1 to 256 non-empty strings).
            #[schema(min_items = 1, max_items = 256)]
            pub guided_choice: Option<Vec<String>>,
            /// Answer as server-sent events.
            pub stream: Option<bool>,
            /// Streaming options.
            pub stream_options: Option<StreamOptions>,
            /// OpenAI's end-user id; accepted and ignored.
            pub user: Option<String>,
        }
    };
}

with_common_parameters! {
    /// The body of `POST /v1/chat/completions`. Unknown parameters are refused with a 400
    /// that names them; `null` counts as absent.
    pub struct ChatCompletionBody {
        /// The conversation; at least one message.
        #[schema(min_items = 1)]
        pub messages: Vec<MessageBody>,
        /// OpenAI's newer name for `max_tokens` (wins over it).
        #[schema(minimum = 1)]
        pub max_completion_tokens: Option<u32>,
        /// Return each token's log probability (not with `tools`).
        pub logprobs: Option<bool>,
        /// Alternatives per token, with `logprobs: true`.
        #[schema(minimum = 0, maximum = 20)]
        pub top_logprobs: Option<u32>,
        /// Functions the model may call (at most 128).
        #[schema(max_items = 128)]
        pub tools: Option<Vec<ToolBody>>,
        /// How the model uses `tools`.
        pub tool_choice: Option<ToolChoiceBody>,
        /// Whether one answer may hold several calls (default true).
        pub parallel_tool_calls: Option<bool>,
        /// Open the assistant's turn after the messages (vLLM's; default `true`).
        pub add_generation_prompt: Option<bool>,
        /// Leave the last assistant message open so the model continues it (vLLM's; needs
        /// `add_generation_prompt: false`).
        pub continue_final_message: Option<bool>,
        /// Extra variables for the model's chat template (vLLM's).
        #[schema(value_type = Option<Object>)]
        pub chat_template_kwargs: Option<Map<String, Value>>,
    }
}

with_common_parameters! {
    /// The body of `POST /v1/completions`. Unknown parameters are refused with a 400 that
    /// names them; `null` counts as absent; `max_tokens` defaults to 16.
    pub struct CompletionBody {
        /// The prompt.
        pub prompt: Prompt,
        /// Put the prompt before each choice's text. With `logprobs`, the prompt is scored:
        /// its tokens' log probabilities come first (the first token's `null`), and
        /// `max_tokens: 0` scores it without generating (llama.cpp backend).
        pub echo: Option<bool>,
        /// Generate this many and return the `n` most likely (`n` to 16; 1 when streaming).
        #[schema(minimum = 1, maximum = 16)]
        pub best_of: Option<u32>,
        /// Alternatives per token to return with each token's log probability.
        #[schema(minimum = 0, maximum = 20)]
        pub logprobs: Option<u32>,
    }
}

/// The body of `POST /v2/{endpoint}/run` and `runsync` (RunPod's). Unknown fields are refused.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// The handler's input (for an LLM endpoint, `{"prompt"}`, `{"messages"}` or
    /// `{"openai_route", "openai_input"}`): any JSON but `null`.
    pub input: Value,
    /// An http(s) URL the final status object is POSTed to; internal addresses are refused
    /// unless the gateway allows them (`gateway.webhook_allow_cidrs`).
    #[schema(pattern = "^https?://")]
    pub webhook: Option<String>,
    /// Timeouts and priority.
    pub policy: Option<PolicyRequest>,
    /// RunPod's `s3Config`, passed through to the handler.
    #[serde(rename = "s3Config")]
    #[schema(value_type = Option<Object>)]
    pub s3_config: Option<Value>,
}

/// The multipart form of `POST /v1/files`.
#[derive(Debug, ToSchema)]
pub struct FileUpload {
    /// A JSONL batch input file (one request per line).
    #[schema(value_type = String, format = Binary)]
    pub file: Vec<u8>,
    /// Must be `batch`.
    pub purpose: String,
}

/// RunPod's error body on `/v2`: `{"error": "..."}`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, Deserialize, ToSchema)]
pub struct RunpodErrorBody {
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai::{ChatRequest, CompletionRequest};
    use serde_json::{json, Map};
    use utoipa::PartialSchema;

    /// The property names of `T`'s schema.
    fn properties<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).unwrap();
        let props = schema["properties"].as_object().expect("an object schema");
        props.keys().cloned().collect()
    }

    /// A body with every property set to a value the parser takes.
    fn full_body(props: &[String], values: &Map<String, Value>) -> Value {
        let mut body = Map::new();
        for p in props {
            let v = values
                .get(p)
                .unwrap_or_else(|| panic!("no sample for `{p}`"));
            body.insert(p.clone(), v.clone());
        }
        Value::Object(body)
    }

    fn samples() -> Map<String, Value> {
        let v = json!({
            "model": "m", "messages": [{"role": "user", "content": "hi"}], "prompt": "p",
            "max_tokens": 4, "max_completion_tokens": 4, "temperature": 0.0, "top_p": 1.0,
            "top_k": 1, "min_p": 0.0, "presence_penalty": 0.0, "frequency_penalty": 0.0,
            "repetition_penalty": 1.0, "stop": "x", "seed": 1, "n": 1, "logit_bias": {"1": 1},
            "response_format": {"type": "text"}, "guided_json": null, "stream": true,
            "stream_options": {"include_usage": true, "continuous_usage_stats": true}, "user": "u",
            "logprobs": null, "top_logprobs": null, "echo": false, "best_of": 1,
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "tool_choice": "auto", "parallel_tool_calls": true,
        });
        // vLLM's extensions (a second object: one `json!` this long passes its recursion limit).
        let vllm = json!({
            "stop_token_ids": [2], "include_stop_str_in_output": true,
            "ignore_eos": true, "min_tokens": 1, "guided_regex": null, "guided_choice": null,
            "allowed_token_ids": [1], "structured_outputs": null, "skip_special_tokens": true,
            "truncate_prompt_tokens": 100, "add_generation_prompt": true,
            "continue_final_message": false, "chat_template_kwargs": {},
        });
        let mut all = v.as_object().unwrap().clone();
        all.extend(vllm.as_object().unwrap().clone());
        all
    }

    #[test]
    fn the_parsers_take_every_documented_parameter() {
        let chat = full_body(&properties::<ChatCompletionBody>(), &samples());
        ChatRequest::parse(chat.clone()).unwrap();
        serde_json::from_value::<ChatCompletionBody>(chat).unwrap();
        let completion = full_body(&properties::<CompletionBody>(), &samples());
        CompletionRequest::parse(completion.clone()).unwrap();
        serde_json::from_value::<CompletionBody>(completion).unwrap();
        let run = json!({"input": {}, "webhook": "https://example.com/h",
            "policy": {"executionTimeout": 1000, "ttl": 2000, "lowPriority": true},
            "s3Config": {}});
        assert_eq!(properties::<RunRequest>().len(), 4);
        crate::job::RunBody::parse(run.clone(), 1000).unwrap();
        serde_json::from_value::<RunRequest>(run).unwrap();
    }

    #[test]
    fn the_parsers_refuse_what_the_documents_leave_out() {
        // A parameter the schema leaves out is refused by its `additionalProperties: false`;
        // the parser must refuse it too, naming it.
        type Parse = fn(Value) -> Result<(), String>;
        let chat: Parse = |b| ChatRequest::parse(b).map(|_| ()).map_err(|e| e.message);
        let text: Parse = |b| {
            CompletionRequest::parse(b)
                .map(|_| ())
                .map_err(|e| e.message)
        };
        for (parse, props, required) in [
            (chat, properties::<ChatCompletionBody>(), "messages"),
            (text, properties::<CompletionBody>(), "prompt"),
        ] {
            for key in samples().keys().filter(|k| !props.contains(k)) {
                let mut body = full_body(&["model".into(), required.into()], &samples());
                // `null` counts as absent, so a left-out key is given a value.
                body[key.as_str()] = Some(samples()[key].clone())
                    .filter(|v| !v.is_null())
                    .unwrap_or(json!(1));
                let err = parse(body).unwrap_err();
                assert!(err.contains(key.as_str()), "`{key}`: {err}");
            }
        }
        let schema = serde_json::to_value(ChatCompletionBody::schema()).unwrap();
        assert_eq!(schema["additionalProperties"], json!(false));
    }
}
