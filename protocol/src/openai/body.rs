//! The bodies of `POST /v1/chat/completions` and `/v1/completions` as serde types. Each body
//! is both the parser ([`Body::read`]) and its schema in `/openapi.json` (utoipa), so a
//! parameter is declared once, with its type, its documented range and its doc;
//! [`super::ChatRequest`] and [`super::CompletionRequest`] are what a body means once its
//! parameters are checked together.
//!
//! A body is the route's own parameters ([`ChatParams`], [`CompletionParams`]) and those
//! both routes take ([`CommonParams`]). Keys in neither are refused by name: OpenAI's
//! parameters sluice knows but cannot honour with the reason, any other as OpenAI refuses
//! it. JSON `null` counts as absent, as in OpenAI's API. A type error names the field's
//! path (`messages[0].role`).

use super::prompt::PromptInput;
use super::wire::{MessageBody, ResponseFormat, Stop, StreamOptions, StructuredOutputs};
use super::wire::{ToolBody, ToolChoiceBody};
use super::{InvalidRequest, Result};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;
use utoipa::openapi::schema::{AdditionalProperties, Object, Schema};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// A completions body: the route's own parameters and the ones both routes take.
#[derive(Debug)]
pub struct Body<R> {
    /// The route's own parameters.
    pub route: R,
    /// The parameters both routes take.
    pub common: CommonParams,
}

/// The body of `POST /v1/chat/completions`.
pub type ChatCompletionBody = Body<ChatParams>;
/// The body of `POST /v1/completions`.
pub type CompletionBody = Body<CompletionParams>;

/// The route-specific half of a body.
pub trait RouteParams: DeserializeOwned + ToSchema {
    /// The body's name in `/openapi.json`.
    const BODY: &'static str;
    /// What the body's schema says of it.
    const DESCRIPTION: &'static str;
    /// This half's keys (its schema's properties), computed once.
    fn keys() -> &'static [String];
    /// Make this half's part of a body ready to read; by default nothing.
    fn prepare(_half: &mut Map<String, Value>) {}
}

/// The property names of `T`'s object schema.
fn property_names<T: PartialSchema>() -> Vec<String> {
    match T::schema() {
        RefOr::T(Schema::Object(o)) => o.properties.keys().cloned().collect(),
        _ => unreachable!("a body half is a struct, whose schema is an object"),
    }
}

/// OpenAI parameters sluice knows but cannot honour, with the reason given to the caller.
/// A benign value (e.g. `store: false`) is accepted; see [`benign`].
const UNSUPPORTED: &[(&str, &str)] = &[
    ("functions", "function calling is not implemented"),
    ("function_call", "function calling is not implemented"),
    ("suffix", "insertion (suffix) is not implemented"),
    ("modalities", "only text is supported"),
    ("audio", "only text is supported"),
    ("prediction", "predicted outputs are not implemented"),
    ("store", "stored completions are not implemented"),
    ("metadata", "stored completions are not implemented"),
    ("reasoning_effort", "this model has no reasoning mode"),
    ("service_tier", "there is one service tier"),
    ("web_search_options", "web search is not implemented"),
    (
        "return_tokens_as_token_ids",
        "log-probability tokens are returned as text, a character split over tokens as one entry",
    ),
];

fn benign(key: &str, v: &Value) -> bool {
    match key {
        "store" | "return_tokens_as_token_ids" => v == &Value::Bool(false),
        "modalities" => v.as_array().is_some_and(|a| a.iter().all(|m| m == "text")),
        _ => false,
    }
}

/// Why `key`, in neither half of a body, is refused (unless its value is benign).
fn refuse(key: &str, value: &Value) -> Result<()> {
    match UNSUPPORTED.iter().find(|(name, _)| *name == key) {
        Some(_) if benign(key, value) => Ok(()),
        Some((_, why)) => Err(InvalidRequest::unsupported(key, why)),
        None => Err(InvalidRequest::new(
            key,
            format!("Unrecognized request argument supplied: {key}"),
        )),
    }
}

impl<R: RouteParams> Body<R> {
    /// Read a body: each key goes to the half that declares it, nulls are left out, and
    /// each half is deserialized as its type says.
    ///
    /// Errors: [`InvalidRequest`] naming the first key that is unknown or not supported
    /// here, or the path of the first field of the wrong type.
    pub fn read(body: Value) -> Result<Self> {
        let Value::Object(map) = body else {
            return Err(InvalidRequest {
                message: "the request body must be a JSON object".into(),
                param: None,
                code: None,
            });
        };
        let (mut route, mut common) = (Map::new(), Map::new());
        for (k, v) in map {
            if v.is_null() {
                continue;
            }
            if R::keys().contains(&k) {
                route.insert(k, v);
            } else if CommonParams::keys().contains(&k) {
                common.insert(k, v);
            } else {
                refuse(&k, &v)?;
            }
        }
        R::prepare(&mut route);
        Ok(Body {
            route: typed(Value::Object(route))?,
            common: typed(Value::Object(common))?,
        })
    }
}

/// `value` as a `T`; an error names the path of the field at fault.
pub(crate) fn typed<T: DeserializeOwned>(value: Value) -> Result<T> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let param = e.path().to_string();
        InvalidRequest::new(
            param.clone(),
            format!("invalid `{param}`: {}", e.into_inner()),
        )
    })
}

impl<R: RouteParams> PartialSchema for Body<R> {
    /// One object with both halves' properties, nothing else allowed.
    fn schema() -> RefOr<Schema> {
        let mut body = Object::new();
        for half in [R::schema(), CommonParams::schema()] {
            if let RefOr::T(Schema::Object(o)) = half {
                body.properties.extend(o.properties);
                body.required.extend(o.required);
            }
        }
        body.description = Some(R::DESCRIPTION.into());
        body.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
        RefOr::T(Schema::Object(body))
    }
}

impl<R: RouteParams> ToSchema for Body<R> {
    fn name() -> std::borrow::Cow<'static, str> {
        R::BODY.into()
    }
    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        R::schemas(schemas);
        CommonParams::schemas(schemas);
    }
}

/// The parameters both OpenAI routes take.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommonParams {
    /// The served model's name (`GET /v1/models`).
    #[schema(value_type = String, required = true)]
    pub model: Option<String>,
    /// Most tokens to generate per choice, at least 1; 0 only in a completion with `echo`
    /// (the prompt scored, nothing generated).
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
    /// vLLM's: return each prompt token's log probability with this many alternatives
    /// (`prompt_logprobs` in a completion's choices, at the top of a chat completion); not
    /// when streaming (llama.cpp backend).
    #[schema(minimum = 0, maximum = 20)]
    pub prompt_logprobs: Option<u32>,
    /// Words never generated (vLLM's): each word's tokens, at the start of the text or after
    /// a space, are not completed (up to 64 words of at most 256 bytes).
    #[schema(max_items = 64)]
    pub bad_words: Option<Vec<String>>,
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
    /// vLLM's: a JSON Schema object (or its JSON text) the output must match; not with
    /// `response_format`.
    #[schema(value_type = Option<Object>)]
    pub guided_json: Option<Value>,
    /// vLLM's newer form of the `guided_*` keys: one of `json`, `regex`, `choice`,
    /// `json_object`.
    pub structured_outputs: Option<StructuredOutputs>,
    /// vLLM's: a regular expression the whole output matches; not with a schema.
    pub guided_regex: Option<String>,
    /// vLLM's: a grammar in llguidance's Lark syntax (as vLLM's `guidance` backend reads it;
    /// GBNF's `::=` rules are refused) the whole output matches; up to 64 KiB, not with a
    /// schema or pattern.
    #[schema(max_length = 65536)]
    pub guided_grammar: Option<String>,
    /// vLLM's: the output is exactly one of these (1 to 256 non-empty strings).
    #[schema(min_items = 1, max_items = 256)]
    pub guided_choice: Option<Vec<String>>,
    /// Answer as server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// OpenAI's end-user id; accepted and ignored.
    pub user: Option<String>,
    /// vLLM's scheduling priority, lower first (default 0). sluice's queue has two levels:
    /// above 0 the job is low-priority (RunPod's `lowPriority`: queued behind the others,
    /// and never the reason a worker starts); 0 and below are normal.
    pub priority: Option<i64>,
}

impl CommonParams {
    fn keys() -> &'static [String] {
        static KEYS: OnceLock<Vec<String>> = OnceLock::new();
        KEYS.get_or_init(property_names::<Self>)
    }
}

/// The parameters of chat completions besides the common ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatParams {
    /// The conversation; at least one message.
    #[schema(value_type = Vec<MessageBody>, min_items = 1, required = true)]
    pub messages: Option<Vec<MessageBody>>,
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

impl RouteParams for ChatParams {
    const BODY: &'static str = "ChatCompletionBody";
    const DESCRIPTION: &'static str = "The body of `POST /v1/chat/completions`. Unknown \
        parameters are refused with a 400 that names them; `null` counts as absent.";
    fn keys() -> &'static [String] {
        static KEYS: OnceLock<Vec<String>> = OnceLock::new();
        KEYS.get_or_init(property_names::<Self>)
    }
    /// A message's `null` fields count as absent, whatever their name: a client that sends
    /// an answer's message back as history (the `openai` SDK's `message.model_dump()`) writes
    /// `refusal: null`, `audio: null`, `function_call: null`.
    fn prepare(half: &mut Map<String, Value>) {
        if let Some(Value::Array(messages)) = half.get_mut("messages") {
            for m in messages.iter_mut().filter_map(Value::as_object_mut) {
                m.retain(|_, v| !v.is_null());
            }
        }
    }
}

/// The parameters of text completions besides the common ones.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CompletionParams {
    /// The prompt.
    #[schema(value_type = PromptInput, required = true)]
    pub prompt: Option<PromptInput>,
    /// Put the prompt before each choice's text. With `logprobs`, the prompt is scored: its
    /// tokens' log probabilities come first (the first token's `null`), and `max_tokens: 0`
    /// scores it without generating (llama.cpp backend).
    pub echo: Option<bool>,
    /// Generate this many and return the `n` most likely (`n` to 16; 1 when streaming).
    #[schema(minimum = 1, maximum = 16)]
    pub best_of: Option<u32>,
    /// Alternatives per token to return with each token's log probability.
    #[schema(minimum = 0, maximum = 20)]
    pub logprobs: Option<u32>,
}

impl RouteParams for CompletionParams {
    const BODY: &'static str = "CompletionBody";
    const DESCRIPTION: &'static str = "The body of `POST /v1/completions`. Unknown parameters \
        are refused with a 400 that names them; `null` counts as absent; `max_tokens` \
        defaults to 16.";
    fn keys() -> &'static [String] {
        static KEYS: OnceLock<Vec<String>> = OnceLock::new();
        KEYS.get_or_init(property_names::<Self>)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat_error(extra: Value) -> InvalidRequest {
        let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ChatCompletionBody::read(body).unwrap_err()
    }

    #[test]
    fn errors_name_the_key_or_the_fields_path() {
        for (extra, param, says) in [
            (
                json!({"frobnicate": 1}),
                "frobnicate",
                "Unrecognized request argument",
            ),
            (
                json!({"suffix": "x"}),
                "suffix",
                "not supported by this server",
            ),
            (
                json!({"stream_options": {"x": true}}),
                "stream_options.x",
                "unknown field",
            ),
            (
                json!({"stop": [1]}),
                "stop",
                "a string or a list of strings",
            ),
            (json!({"n": -1}), "n", "invalid value"),
            (
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "wizard"}]}),
                "messages[1].role",
                "unknown variant `wizard`",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
                "messages[0].content",
                "only text content",
            ),
        ] {
            let e = chat_error(extra.clone());
            assert_eq!(e.param.as_deref(), Some(param), "{extra}: {}", e.message);
            assert!(e.message.contains(says), "{extra}: {}", e.message);
        }
    }

    #[test]
    fn a_messages_null_fields_count_as_absent_and_text_parts_may_carry_more() {
        let body = json!({"model": "m", "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {}}]},
            {"role": "assistant", "content": "yo", "refusal": null, "audio": null,
                "function_call": null, "tool_calls": null}]});
        let b = ChatCompletionBody::read(body).unwrap();
        assert_eq!(b.route.messages.unwrap().len(), 2);
        let e =
            chat_error(json!({"messages": [{"role": "user", "content": "a", "refusal": "no"}]}));
        assert_eq!(
            e.param.as_deref(),
            Some("messages[0].refusal"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_body_schema_is_both_halves_and_nothing_else() {
        let RefOr::T(Schema::Object(o)) = ChatCompletionBody::schema() else {
            panic!("an object schema")
        };
        let props: Vec<&String> = o.properties.keys().collect();
        assert_eq!(
            props.len(),
            ChatParams::keys().len() + CommonParams::keys().len()
        );
        assert!(props.iter().any(|p| *p == "messages") && props.iter().any(|p| *p == "model"));
        assert_eq!(o.required, ["messages", "model"]);
        assert_eq!(
            serde_json::to_value(&o).unwrap()["additionalProperties"],
            json!(false)
        );
        assert_eq!(ChatCompletionBody::name(), "ChatCompletionBody");
    }
}
