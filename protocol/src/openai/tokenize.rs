//! vLLM's `POST /tokenize` and `POST /detokenize`: a model's tokenizer over HTTP, as eval
//! harnesses (lm-evaluation-harness probes `/tokenize`) and clients that budget their prompts
//! use it. Each body is one type, its parser and its schema.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// Most token ids one `/detokenize` request may give.
pub const MAX_DETOKENIZE_TOKENS: usize = 1 << 20;

/// The body of `POST /tokenize`: a `prompt`, or chat `messages` rendered with the model's
/// chat template (exactly one of them).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenizeBody {
    /// The served model's name; may be left out when the caller can use one model only.
    pub model: Option<String>,
    /// Text to tokenize.
    pub prompt: Option<String>,
    /// Chat messages (as in `/v1/chat/completions`), rendered with the model's template.
    #[schema(value_type = Option<Vec<Object>>)]
    pub messages: Option<Vec<Value>>,
    /// Add the tokenizer's own special tokens (a BOS, for models that have one); vLLM's
    /// default: `true` for a prompt, `false` for messages (the template writes them).
    pub add_special_tokens: Option<bool>,
    /// With messages: open the assistant's turn at the end (default `true`).
    pub add_generation_prompt: Option<bool>,
    /// Also answer each token's string.
    pub return_token_strs: Option<bool>,
}

/// The answer of `POST /tokenize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenizeResponse {
    /// How many tokens.
    pub count: usize,
    /// The context length the model is served with (prompt and output tokens).
    pub max_model_len: usize,
    /// The token ids.
    pub tokens: Vec<u32>,
    /// Each token's string, with `return_token_strs`; else `null`.
    pub token_strs: Option<Vec<String>>,
}

/// The body of `POST /detokenize`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetokenizeBody {
    /// The served model's name; may be left out when the caller can use one model only.
    pub model: Option<String>,
    /// Token ids of the model's vocabulary.
    #[schema(max_items = 1048576)]
    pub tokens: Vec<u32>,
}

/// The answer of `GET /tokenizer_info` (vLLM's): the tokenizer's special tokens and chat
/// template, as a Hugging Face tokenizer config names them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TokenizerInfo {
    /// The tokenizer's kind, as Hugging Face names it.
    pub tokenizer_class: String,
    /// The beginning-of-sequence token's text, if the model has one.
    pub bos_token: Option<String>,
    /// The end-of-sequence token's text.
    pub eos_token: String,
    /// The padding token (sluice pads nothing: `null`).
    pub pad_token: Option<String>,
    /// The chat template (Jinja), if the model has one.
    pub chat_template: Option<String>,
    /// The context length the model is served with.
    pub model_max_length: usize,
}

/// The answer of `POST /detokenize`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct DetokenizeResponse {
    /// The text of the tokens, special tokens left out.
    pub prompt: String,
}
