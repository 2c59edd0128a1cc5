//! OpenAI request schema and validation, shared by the gateway (validate before enqueue) and the
//! worker (decode the job's `openai_input`), so both sides agree on what a request means.
//!
//! Every parameter is either honoured or rejected with a 400 naming it: nothing is dropped
//! silently. Parameters sent as JSON `null` count as absent, as in OpenAI's API.

pub mod batch;
pub mod body;
pub mod calls;
pub mod embeddings;
pub mod format;
pub mod logprobs;
mod params;
pub mod prompt;
pub mod response;
pub mod schema;
pub mod template;
pub mod tokenize;
pub mod tools;
pub mod wire;

use body::{Body, ChatParams, CompletionParams};
use params::{parse_common, Common};
use wire::MessageBody;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::HashMap;

/// OpenAI's chat completions route: one of the two routes a job's `openai_route` may name
/// (the `{"openai_route", "openai_input"}` job input of RunPod's vLLM worker).
pub const CHAT_ROUTE: &str = "/v1/chat/completions";
/// OpenAI's (legacy) text completions route: the other route a job's `openai_route` may name.
pub const COMPLETIONS_ROUTE: &str = "/v1/completions";

/// OpenAI's error body: `{"error": {"message", "type", "param", "code"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// The inside of OpenAI's error body: what went wrong, its class, and what it is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// Human-readable description, for the caller.
    pub message: String,
    /// OpenAI's error `type` (the JSON key is `type`): `invalid_request_error`,
    /// `authentication_error` or `server_error` from sluice's gateway.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault (e.g. `temperature`, `messages[0].role`), if any.
    pub param: Option<String>,
    /// OpenAI's machine-readable code (e.g. `context_length_exceeded`, `model_not_found`,
    /// `invalid_api_key`), if any.
    pub code: Option<String>,
}

/// A request that is not acceptable as sent (always a 400).
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    /// What is wrong, for the caller; also the error's `Display`.
    pub message: String,
    /// The parameter at fault, as OpenAI's error `param` names it (e.g. `messages[0].role`);
    /// `None` when the body as a whole is at fault (not a JSON object).
    pub param: Option<String>,
    /// OpenAI's error `code`, if one applies (e.g. `context_length_exceeded`); `None` for
    /// every error this module raises.
    pub code: Option<&'static str>,
}

impl InvalidRequest {
    /// An error about `param` with `message`, without a `code`.
    pub fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        InvalidRequest {
            message: message.into(),
            param: Some(param.into()),
            code: None,
        }
    }
    fn unsupported(param: &str, why: &str) -> Self {
        Self::new(
            param,
            format!("`{param}` is not supported by this server: {why}"),
        )
    }
}

type Result<T> = std::result::Result<T, InvalidRequest>;

/// Sampling and length parameters common to chat and text completions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// Most tokens to generate per choice, at least 1 (0 only in a completion with `echo`,
    /// which scores its prompt and generates nothing): OpenAI's `max_completion_tokens`, else
    /// its `max_tokens`. `None` (chat only): up to the context length; completions default
    /// to [`COMPLETIONS_DEFAULT_MAX_TOKENS`].
    pub max_tokens: Option<u32>,
    /// Sampling temperature, 0 to 2; 0 is greedy decoding. `None`: OpenAI's default, 1.
    pub temperature: Option<f64>,
    /// Nucleus sampling: sample among the most likely tokens whose probabilities add up to
    /// `top_p`; above 0, at most 1.
    pub top_p: Option<f64>,
    /// Sample among the `top_k` most likely tokens only; at least 1, and 1 is greedy
    /// decoding. A vLLM extension, not in OpenAI's API.
    pub top_k: Option<u32>,
    /// Drop tokens less likely than `min_p` times the most likely one; 0 to 1. A vLLM
    /// extension, not in OpenAI's API.
    pub min_p: Option<f64>,
    /// OpenAI's `presence_penalty`, -2 to 2: a flat penalty on every token that has already
    /// appeared; positive values favour new tokens.
    pub presence_penalty: Option<f32>,
    /// OpenAI's `frequency_penalty`, -2 to 2: a penalty on each token in proportion to how
    /// often it has already appeared.
    pub frequency_penalty: Option<f32>,
    /// Multiplicative penalty on tokens already seen, 0.01 to 10, 1 being neutral: vLLM's
    /// (and Hugging Face's) `repetition_penalty`, not in OpenAI's API.
    pub repetition_penalty: Option<f32>,
    /// Stop sequences, up to [`MAX_STOP`] non-empty strings (OpenAI's `stop`). The engine
    /// matches them on the generated text and cuts each choice before the first one found.
    pub stop: Vec<String>,
    /// OpenAI's `seed`: the same seed and parameters give the same choices again on the same
    /// model and engine (choice `i` draws from `seed + i`); `None`: fresh entropy each time.
    pub seed: Option<i64>,
    /// Number of choices to return, 1 to [`MAX_N`] (OpenAI's `n`; 1 when not given).
    pub n: u32,
    /// Bias added to a token's logit before sampling, -100 to 100, by token id (OpenAI's
    /// `logit_bias`, whose JSON keys are the ids as strings). Empty when not given.
    pub logit_bias: HashMap<u32, f32>,
    /// The JSON Schema the output must match, enforced by constrained decoding: from
    /// `response_format` (`json_object`: any object) or vLLM's `guided_json`; `None`: free
    /// text. See [`body::CommonParams::response_format`].
    pub json_schema: Option<Value>,
    /// The regular expression the whole output must match, enforced by constrained decoding:
    /// vLLM's `guided_regex`, or its `guided_choice` as an escaped alternation (see
    /// [`body::CommonParams::guided_choice`]); never together with `json_schema`.
    #[serde(default)]
    pub pattern: Option<String>,
    /// The grammar (llguidance's Lark syntax) the whole output must match, enforced by
    /// constrained decoding: vLLM's `guided_grammar`; never with `json_schema` or `pattern`.
    #[serde(default)]
    pub grammar: Option<String>,
    /// Return each token's log probability with this many most likely alternatives (0 to
    /// [`logprobs::MAX_TOP_LOGPROBS`]): chat's `logprobs: true` + `top_logprobs`, completions'
    /// `logprobs` (an int). `None`: no log probabilities.
    pub logprobs: Option<u32>,
    /// vLLM's `ignore_eos`: the model's end-of-sequence tokens do not end a choice, which
    /// runs to `max_tokens` (or the context) unless a stop string or `stop_token_ids` ends it.
    /// Load testers (`vllm bench serve`, guidellm) send it so every request generates the
    /// length they asked for.
    #[serde(default)]
    pub ignore_eos: bool,
    /// vLLM's `min_tokens`: no end-of-sequence token, `stop_token_ids` token or stop string
    /// ends a choice before it has this many tokens; at most `max_tokens`. 0: no minimum.
    #[serde(default)]
    pub min_tokens: u32,
    /// vLLM's `stop_token_ids`: generating one of these tokens ends the choice with `stop`;
    /// the token counts in usage but its text is not part of the output (unless
    /// `include_stop_str_in_output`). Up to [`MAX_STOP_TOKEN_IDS`].
    #[serde(default)]
    pub stop_token_ids: Vec<u32>,
    /// vLLM's `include_stop_str_in_output`: the stop string (or stop token's text) that ended
    /// a choice stays at the end of its text.
    #[serde(default)]
    pub include_stop_str_in_output: bool,
    /// vLLM's `prompt_logprobs`: score every prompt token with this many alternatives (0 to
    /// [`logprobs::MAX_TOP_LOGPROBS`]). Never with `stream` or `best_of`.
    #[serde(default)]
    pub prompt_logprobs: Option<u32>,
    /// vLLM's `bad_words`: the engine tokenizes each word as vLLM does (without its leading
    /// whitespace, and again after a space when that gives as many tokens with another
    /// first one) and never draws the last token of one whose other tokens were just
    /// generated. Up to [`MAX_BAD_WORDS`].
    #[serde(default)]
    pub bad_words: Vec<String>,
    /// vLLM's `allowed_token_ids`: only these tokens may be drawn (1 to
    /// [`MAX_ALLOWED_TOKEN_IDS`] ids of the model's vocabulary, checked by the gateway).
    #[serde(default)]
    pub allowed_token_ids: Option<Vec<u32>>,
    /// vLLM's `skip_special_tokens: false`: special tokens the model generates are written in
    /// the text (`<|im_start|>`) instead of left out. Not with log probabilities.
    #[serde(default)]
    pub keep_special_tokens: bool,
    /// vLLM's `truncate_prompt_tokens`: only the last this many prompt tokens are used (left
    /// truncation); at least 1.
    #[serde(default)]
    pub truncate_prompt_tokens: Option<u32>,
}

impl Sampling {
    /// The parameters that depend on each other, once the route's defaults are in:
    /// `min_tokens` against `max_tokens`, `skip_special_tokens: false` without log
    /// probabilities (whose entries are aligned with the text special tokens leave out).
    fn check_together(&self) -> Result<()> {
        if self.keep_special_tokens && self.logprobs.is_some() {
            return Err(InvalidRequest::unsupported(
                "skip_special_tokens",
                "`skip_special_tokens: false` is not combined with `logprobs` here",
            ));
        }
        match self.max_tokens {
            Some(max) if self.min_tokens > max => Err(InvalidRequest::new(
                "min_tokens",
                format!(
                    "`min_tokens` must be less than or equal to `max_tokens`={max}, got {}",
                    self.min_tokens
                ),
            )),
            _ => Ok(()),
        }
    }
}

impl Sampling {
    /// The constraint constrained decoding enforces, if any (at most one is set).
    pub fn constraint(&self) -> Option<Constraint<'_>> {
        match (&self.json_schema, &self.pattern, &self.grammar) {
            (Some(schema), _, _) => Some(Constraint::Schema(schema)),
            (None, Some(pattern), _) => Some(Constraint::Pattern(pattern)),
            (None, None, Some(lark)) => Some(Constraint::Lark(lark)),
            (None, None, None) => None,
        }
    }

    /// Greedy decoding: the output does not depend on any random state.
    pub fn is_greedy(&self) -> bool {
        self.temperature == Some(0.0) || self.top_k == Some(1)
    }
}

/// What constrained decoding makes the output match (see [`Sampling::constraint`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constraint<'a> {
    /// A JSON Schema.
    Schema(&'a Value),
    /// A regular expression.
    Pattern(&'a str),
    /// A grammar in llguidance's Lark syntax.
    Lark(&'a str),
}

/// One message of a chat request, reduced to what the engine takes: a role, plain text, and
/// the tool calls of an assistant message or the call a `tool` message answers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant` or `tool`; OpenAI's `developer` role is read as
    /// `system`.
    pub role: String,
    /// The message's text: a string, or OpenAI's list of text parts joined without separator;
    /// empty for an assistant message without content.
    pub content: String,
    /// An assistant message's tool calls (OpenAI's `tool_calls`); empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<tools::ToolCall>,
    /// A `tool` message's `tool_call_id`: the call whose result it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
}

/// A validated OpenAI chat completions request (`/v1/chat/completions`).
#[derive(Clone, Debug, PartialEq)]
pub struct ChatRequest {
    /// The served model's name, as `/v1/models` lists it (also its endpoint's id).
    pub model: String,
    /// The conversation, in order; at least one message.
    pub messages: Vec<ChatMessage>,
    /// Sampling and length parameters.
    pub sampling: Sampling,
    /// Answer as server-sent events of `chat.completion.chunk` objects (OpenAI's `stream`).
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`: streamed chunks carry `"usage": null` and a
    /// last chunk without choices carries the counts. Always false without `stream`.
    pub include_usage: bool,
    /// vLLM's `stream_options.continuous_usage_stats` (with `include_usage`): every streamed
    /// chunk carries the counts so far instead of `null`.
    pub continuous_usage: bool,
    /// vLLM's `priority` above 0: the job is queued at low priority (see
    /// [`body::CommonParams::priority`]).
    pub low_priority: bool,
    /// The functions the model may call and how (`tools`, `tool_choice`,
    /// `parallel_tool_calls`); `None` without tools or with `tool_choice: "none"`. A forced
    /// choice's schema is also in `sampling.json_schema` (see [`tools::Tools::forced_schema`]).
    pub tools: Option<tools::Tools>,
    /// How the messages are rendered with the model's template (vLLM's
    /// `add_generation_prompt`, `continue_final_message`, `chat_template_kwargs`).
    pub template: template::ChatTemplate,
}

/// A validated OpenAI (legacy) text completions request (`/v1/completions`).
#[derive(Clone, Debug, PartialEq)]
pub struct CompletionRequest {
    /// The served model's name, as `/v1/models` lists it (also its endpoint's id).
    pub model: String,
    /// The prompts, 1 to [`prompt::MAX_PROMPTS`] (OpenAI's `prompt` in its four forms, see
    /// [`prompt`]); each gets `n` choices, choice `p * n + i` being prompt `p`'s `i`-th.
    pub prompts: Vec<prompt::Prompt>,
    /// OpenAI's `echo`: put the prompt before each choice's text. The engine adds it to the
    /// final response object only, not to streamed chunks.
    pub echo: bool,
    /// OpenAI's `best_of`: generate this many sequences and return the `n` with the highest
    /// cumulative log probability; `n` to [`MAX_N`], and at most 1 when streaming.
    pub best_of: Option<u32>,
    /// Sampling and length parameters; `max_tokens` is always set on this route.
    pub sampling: Sampling,
    /// Answer as server-sent events of `text_completion` chunks (OpenAI's `stream`).
    pub stream: bool,
    /// OpenAI's `stream_options.include_usage`: streamed chunks carry `"usage": null` and a
    /// last chunk without choices carries the counts. Always false without `stream`.
    pub include_usage: bool,
    /// vLLM's `stream_options.continuous_usage_stats` (with `include_usage`): every streamed
    /// chunk carries the counts so far instead of `null`.
    pub continuous_usage: bool,
    /// vLLM's `priority` above 0: the job is queued at low priority (see
    /// [`body::CommonParams::priority`]).
    pub low_priority: bool,
}

impl CompletionRequest {
    /// The first prompt: the one a backend runs (a request with several is run one request
    /// per prompt above the backends).
    pub fn prompt(&self) -> &prompt::Prompt {
        &self.prompts[0]
    }
}

/// Either kind of generation request, as carried by a job.
#[derive(Clone, Debug, PartialEq)]
pub enum GenerateRequest {
    /// A chat completions request ([`CHAT_ROUTE`]).
    Chat(ChatRequest),
    /// A text completions request ([`COMPLETIONS_ROUTE`]).
    Completion(CompletionRequest),
}

impl GenerateRequest {
    /// Decode the body of `route` (one of [`CHAT_ROUTE`], [`COMPLETIONS_ROUTE`]).
    ///
    /// Errors: [`InvalidRequest`] naming the parameter at fault (see [`ChatRequest::parse`],
    /// [`CompletionRequest::parse`]), or `openai_route` for any other route.
    pub fn parse(route: &str, body: Value) -> Result<Self> {
        match route {
            CHAT_ROUTE => ChatRequest::parse(body).map(GenerateRequest::Chat),
            COMPLETIONS_ROUTE => CompletionRequest::parse(body).map(GenerateRequest::Completion),
            other => Err(InvalidRequest::new(
                "openai_route",
                format!("unknown openai_route `{other}`"),
            )),
        }
    }
    /// The requested model's name.
    pub fn model(&self) -> &str {
        match self {
            GenerateRequest::Chat(c) => &c.model,
            GenerateRequest::Completion(c) => &c.model,
        }
    }
    /// The sampling and length parameters.
    pub fn sampling(&self) -> &Sampling {
        match self {
            GenerateRequest::Chat(c) => &c.sampling,
            GenerateRequest::Completion(c) => &c.sampling,
        }
    }
    /// Whether the client asked for a server-sent event stream.
    pub fn stream(&self) -> bool {
        match self {
            GenerateRequest::Chat(c) => c.stream,
            GenerateRequest::Completion(c) => c.stream,
        }
    }
    /// Whether a stream ends with a usage chunk (`stream_options.include_usage`).
    pub fn include_usage(&self) -> bool {
        match self {
            GenerateRequest::Chat(c) => c.include_usage,
            GenerateRequest::Completion(c) => c.include_usage,
        }
    }
    /// Whether its job is queued at low priority (vLLM's `priority` above 0).
    pub fn low_priority(&self) -> bool {
        match self {
            GenerateRequest::Chat(c) => c.low_priority,
            GenerateRequest::Completion(c) => c.low_priority,
        }
    }
    /// Whether every streamed chunk carries the counts so far
    /// (`stream_options.continuous_usage_stats`).
    pub fn continuous_usage(&self) -> bool {
        match self {
            GenerateRequest::Chat(c) => c.continuous_usage,
            GenerateRequest::Completion(c) => c.continuous_usage,
        }
    }
}

/// vLLM's extension parameters sluice honours: taken by both OpenAI routes and in a
/// worker-vllm job's `sampling_params` (`crate::vllm`), with vLLM's meaning.
pub const VLLM_EXTENSIONS: &[&str] = &[
    "stop_token_ids",
    "include_stop_str_in_output",
    "guided_regex",
    "guided_choice",
    "guided_grammar",
    "bad_words",
    "prompt_logprobs",
    "structured_outputs",
    "allowed_token_ids",
    "skip_special_tokens",
    "truncate_prompt_tokens",
    "ignore_eos",
    "min_tokens",
];

fn check_range(key: &str, v: Option<f64>, lo: f64, hi: f64) -> Result<()> {
    match v {
        Some(x) if !(lo..=hi).contains(&x) || x.is_nan() => Err(InvalidRequest::new(
            key,
            format!("`{key}` must be between {lo} and {hi}, got {x}"),
        )),
        _ => Ok(()),
    }
}

/// `max_tokens` of a `/v1/completions` request that gives none (or `null`): OpenAI's
/// documented default, which vLLM follows.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// Maximum number of stop sequences and of choices (`n`) one request may ask for.
pub const MAX_STOP: usize = 16;
/// Maximum number of `stop_token_ids` one request may give.
pub const MAX_STOP_TOKEN_IDS: usize = 64;
/// Maximum number of `bad_words` one request may give, and the longest, in bytes.
pub const MAX_BAD_WORDS: usize = 64;
/// See [`MAX_BAD_WORDS`].
pub const MAX_BAD_WORD_BYTES: usize = 256;
/// Maximum number of `allowed_token_ids` one request may give.
pub const MAX_ALLOWED_TOKEN_IDS: usize = 1 << 18;
/// Maximum number of choices (`n`) one request may ask for, and of sequences (`best_of`) one
/// completion may generate.
pub const MAX_N: u32 = 16;

impl ChatRequest {
    /// The conversation as the model's chat template gets it: the messages with the tools'
    /// description and the tool calls and results written as text (see [`tools::render`]).
    pub fn prompt_messages(&self) -> Vec<ChatMessage> {
        tools::render(&self.messages, self.tools.as_ref())
    }

    /// Validate an OpenAI chat completions body; JSON `null` parameters count as absent.
    ///
    /// Errors: [`InvalidRequest`] naming the first parameter that is unknown, not supported
    /// here, of the wrong type or out of range, or a missing `model` or `messages`.
    pub fn parse(body: Value) -> Result<Self> {
        let Body { mut route, common } = Body::<ChatParams>::read(body)?;
        let raw = route
            .messages
            .take()
            .ok_or_else(|| InvalidRequest::new("messages", "`messages` is required"))?;
        if raw.is_empty() {
            return Err(InvalidRequest::new(
                "messages",
                "`messages` must not be empty",
            ));
        }
        let messages = raw
            .into_iter()
            .enumerate()
            .map(|(i, m)| parse_message(i, m))
            .collect::<Result<Vec<_>>>()?;
        let template = template::read_options(&mut route, &messages)?;
        let logprobs = logprobs::read_chat(route.logprobs, route.top_logprobs)?;
        let tools = tools::read_tools(route.tools, route.tool_choice, route.parallel_tool_calls)?;
        let mut c = parse_common(common)?;
        match route.max_completion_tokens {
            Some(0) => {
                return Err(InvalidRequest::new(
                    "max_completion_tokens",
                    "`max_completion_tokens` must be at least 1",
                ))
            }
            // OpenAI's newer name wins over `max_tokens`.
            Some(max) => c.sampling.max_tokens = Some(max),
            None => {}
        }
        c.sampling.logprobs = logprobs;
        if let Some(t) = &tools {
            if logprobs.is_some() {
                return Err(InvalidRequest::unsupported(
                    "logprobs",
                    "log probabilities are not returned together with tools",
                ));
            }
            if let Some(schema) = t.forced_schema() {
                if c.sampling.pattern.is_some() || c.sampling.grammar.is_some() {
                    return Err(InvalidRequest::new(
                        "tool_choice",
                        "a `tool_choice` that forces a call cannot be combined with \
                         `guided_regex`, `guided_choice` or `guided_grammar`",
                    ));
                }
                // OpenAI's meaning of the pair: the forced call's arguments follow its
                // function's schema, and `response_format` (already checked) would govern
                // message content, which a forced answer has none of.
                c.sampling.json_schema = Some(schema);
            }
        }
        c.sampling.check_together()?;
        Ok(ChatRequest {
            model: c.model,
            messages,
            sampling: c.sampling,
            stream: c.stream,
            include_usage: c.include_usage,
            continuous_usage: c.continuous_usage,
            low_priority: c.low_priority,
            tools,
            template,
        })
    }
}

fn parse_message(i: usize, m: MessageBody) -> Result<ChatMessage> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let role = m.role.as_str();
    let content = match m.content {
        Some(c) => c.into_text(),
        None if role == "assistant" => String::new(),
        None => {
            return Err(InvalidRequest::new(
                at("content"),
                "`content` must be a string or a list of text parts",
            ))
        }
    };
    let tool_calls = match (role, m.tool_calls) {
        ("assistant", calls) => calls.unwrap_or_default(),
        (_, None) => Vec::new(),
        (_, Some(_)) => {
            return Err(InvalidRequest::unsupported(
                &at("tool_calls"),
                "only an assistant message has `tool_calls`",
            ))
        }
    };
    let tool_call_id = match (role, m.tool_call_id) {
        ("tool", None) => {
            return Err(InvalidRequest::new(
                at("tool_call_id"),
                "a `tool` message needs `tool_call_id`",
            ))
        }
        ("tool", id) => id,
        (_, None) => None,
        (_, Some(_)) => {
            return Err(InvalidRequest::unsupported(
                &at("tool_call_id"),
                "only a `tool` message has `tool_call_id`",
            ))
        }
    };
    Ok(ChatMessage {
        role: role.to_string(),
        content,
        tool_calls,
        tool_call_id,
    })
}

impl CompletionRequest {
    /// Validate an OpenAI text completions body; JSON `null` parameters count as absent, and
    /// a missing `max_tokens` becomes [`COMPLETIONS_DEFAULT_MAX_TOKENS`].
    ///
    /// Errors: [`InvalidRequest`] naming the first parameter that is unknown, not supported
    /// here (e.g. `suffix`), of the wrong type or out of range, or a missing
    /// `model` or `prompt`.
    pub fn parse(body: Value) -> Result<Self> {
        let Body { route, mut common } = Body::<CompletionParams>::read(body)?;
        let prompts = route
            .prompt
            .ok_or_else(|| InvalidRequest::new("prompt", "`prompt` is required"))?
            .prompts("prompt")?;
        let echo = route.echo.unwrap_or(false);
        // Scoring a prompt without generating (lm-evaluation-harness' loglikelihood): vLLM
        // takes `max_tokens: 0` with `echo`, which every other request refuses.
        let score_only = echo && common.max_tokens == Some(0);
        if score_only {
            common.max_tokens = None;
        }
        let best_of = route.best_of;
        let logprobs = logprobs::read_text(route.logprobs)?;
        if best_of.is_some() && common.prompt_logprobs.is_some() {
            return Err(InvalidRequest::new(
                "prompt_logprobs",
                "`prompt_logprobs` cannot be combined with `best_of` here",
            ));
        }
        if logprobs.is_some() && best_of.is_some() {
            return Err(InvalidRequest::new(
                "logprobs",
                "`logprobs` cannot be combined with `best_of` here",
            ));
        }
        let Common {
            model,
            mut sampling,
            stream,
            include_usage,
            continuous_usage,
            low_priority,
        } = parse_common(common)?;
        sampling.logprobs = logprobs;
        // OpenAI's documented default for this route (vLLM follows it); chat has none.
        if score_only {
            sampling.max_tokens = Some(0);
        }
        sampling
            .max_tokens
            .get_or_insert(COMPLETIONS_DEFAULT_MAX_TOKENS);
        if let Some(b) = best_of {
            if b < sampling.n || b > MAX_N {
                return Err(InvalidRequest::new(
                    "best_of",
                    format!("`best_of` must be between n and {MAX_N}"),
                ));
            }
            if stream && b > 1 {
                return Err(InvalidRequest::new(
                    "best_of",
                    "`best_of` cannot be used with streaming",
                ));
            }
        }
        sampling.check_together()?;
        Ok(CompletionRequest {
            model,
            prompts,
            echo,
            best_of,
            sampling,
            stream,
            include_usage,
            continuous_usage,
            low_priority,
        })
    }
}

/// `/v1/models`: `{"object": "list", "data": [...]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelList {
    /// Always `list`.
    pub object: String,
    /// One card per model listed.
    pub data: Vec<ModelCard>,
}

/// The `/v1/models` listing entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelCard {
    /// The model's name, as requests give it in `model` (also its endpoint's id).
    pub id: String,
    /// Always `model`.
    pub object: String,
    /// When the model was created, in Unix seconds (OpenAI's field; sluice's gateway sends 0).
    pub created: u64,
    /// The model's owner (OpenAI's field; sluice's gateway sends `sluice`).
    pub owned_by: String,
    /// Context length served, in tokens (prompt + completion): vLLM's extension to
    /// OpenAI's model object.
    pub max_model_len: usize,
}

#[cfg(test)]
mod tests;
