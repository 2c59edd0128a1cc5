//! OpenAI's response objects, as the engine writes them and clients (the load tester, the
//! vLLM-worker output form) read them: the completion, its streamed chunks, usage. One
//! envelope serves both routes; the choice type differs.

use super::logprobs::{ChatLogprobs, PromptLogprob, PromptLogprobs, TextLogprobs};
use super::tools::ToolCall;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

/// Token counts of one response (OpenAI's `usage`). Missing counts read as 0 (some servers
/// leave out `total_tokens`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct Usage {
    /// Tokens of the prompt as the model reads it (for chat, the templated conversation).
    pub prompt_tokens: usize,
    /// Tokens generated, summed over all choices (with `best_of`, over every sequence
    /// generated, returned or not).
    pub completion_tokens: usize,
    /// `prompt_tokens + completion_tokens`.
    pub total_tokens: usize,
}

impl Usage {
    /// The counts of a response, `total_tokens` being their sum.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Self {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }

    /// The `usage` of a completion object as JSON (a job's output on an LLM endpoint);
    /// `None` for any other output.
    pub fn of(output: &Value) -> Option<Usage> {
        Usage::deserialize(output.get("usage")?).ok()
    }
}

/// The envelope of every response and chunk: `{id, object, created, model,
/// system_fingerprint, choices, usage}`, `created` in Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Envelope<C> {
    /// The response's id, the same on all its chunks (`chatcmpl-...` or `cmpl-...` from
    /// sluice's engine).
    pub id: String,
    /// `chat.completion`, `chat.completion.chunk` or `text_completion`.
    pub object: String,
    /// When the response was created, in Unix seconds; the same on all its chunks.
    pub created: u64,
    /// The name of the model that answered.
    pub model: String,
    /// OpenAI's fingerprint of the backend configuration; sluice's engine sends `null`.
    pub system_fingerprint: Option<String>,
    /// A completion's choices, by `index`; in a chunk, those with news (sluice's engine
    /// sends one per chunk, and none in the final usage chunk).
    pub choices: Vec<C>,
    /// Absent (`None`); `null` (`Some(None)`) on the streamed chunks of a client that asked
    /// for usage with `stream_options.include_usage`, as OpenAI sends them; the counts.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub usage: Option<Option<Usage>>,
    /// vLLM's `prompt_logprobs` of a chat completion (a text completion's are in its
    /// choices); absent unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Option<std::collections::BTreeMap<String, PromptLogprob>>>>)]
    pub prompt_logprobs: Option<PromptLogprobs>,
}

/// A key that is present, even as `null`, deserializes to `Some(...)`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<Usage>>, D::Error> {
    Option::<Usage>::deserialize(d).map(Some)
}

/// A chat answer's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: String,
    /// The generated text; `null` for an answer that is only tool calls.
    pub content: Option<String>,
    /// The calls the model made, when the request offered tools and it made some; left out
    /// otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCall>>,
}

/// What ended a choice with `stop`, as vLLM's `stop_reason` says it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum StopReason {
    /// One of the request's `stop_token_ids`.
    Token(u32),
    /// One of the request's `stop` strings.
    Text(String),
}

/// One choice of a chat completion.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatChoice {
    /// Which of the request's `n` choices this is, from 0.
    pub index: usize,
    /// The generated message.
    pub message: AssistantMessage,
    /// The tokens' log probabilities when the request asked (`logprobs: true`), else `null`.
    pub logprobs: Option<ChatLogprobs>,
    /// `stop` or `length` (`tool_calls`, `content_filter` where an engine says so).
    pub finish_reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string (or the `stop_token_ids` token) that ended the
    /// choice; left out when it ended otherwise (an end-of-sequence token, `length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
}

/// New text of one chat choice in a chunk; `role` in the choice's first chunk only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Delta {
    /// `assistant` in the choice's first chunk; left out of the others.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The new text; may be empty (e.g. in a chunk that only carries the finish reason).
    #[serde(default)]
    pub content: Option<String>,
    /// Pieces of tool calls, when the answer is calls; left out otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// A piece of a streamed tool call, as OpenAI streams them: the call's first piece has its
/// `id`, `type` and function `name` (and empty `arguments`), later ones add to `arguments`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ToolCallDelta {
    /// Which call of the choice this piece belongs to, from 0.
    pub index: usize,
    /// The call's id, in its first piece only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function`, in the call's first piece only.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// The function's name and a piece of its arguments.
    pub function: FunctionDelta,
}

/// The function part of a [`ToolCallDelta`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FunctionDelta {
    /// The function's name, in the call's first piece only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The next piece of the arguments' JSON text.
    #[serde(default)]
    pub arguments: String,
}

/// One choice of a chat completion chunk.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatChunkChoice {
    /// Which of the request's `n` choices this is, from 0.
    pub index: usize,
    /// The choice's new text.
    pub delta: Delta,
    /// The log probabilities of the tokens of this chunk's text when the request asked.
    pub logprobs: Option<ChatLogprobs>,
    /// Set in the choice's last chunk only.
    pub finish_reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string (or the `stop_token_ids` token) that ended the
    /// choice; left out when it ended otherwise (an end-of-sequence token, `length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
}

/// One choice of a text completion, streamed or not.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextChoice {
    /// Which of the request's `n` choices this is, from 0.
    pub index: usize,
    /// In a completion, the whole text (after the prompt with `echo`); in a chunk, the new
    /// text.
    pub text: String,
    /// The tokens' log probabilities when the request asked (`logprobs: N`), else `null`;
    /// in a chunk, those of its text, offsets counted from the start of the choice's text.
    pub logprobs: Option<TextLogprobs>,
    /// OpenAI's `finish_reason`: `stop` or `length`; in a stream, set in the choice's last
    /// chunk only.
    pub finish_reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string (or the `stop_token_ids` token) that ended the
    /// choice; left out when it ended otherwise (an end-of-sequence token, `length`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<StopReason>,
    /// vLLM's `prompt_logprobs` of the choice's prompt; absent unless asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Option<std::collections::BTreeMap<String, PromptLogprob>>>>)]
    pub prompt_logprobs: Option<PromptLogprobs>,
}

/// `chat.completion`.
pub type ChatCompletion = Envelope<ChatChoice>;
/// `chat.completion.chunk`.
pub type ChatCompletionChunk = Envelope<ChatChunkChoice>;
/// `text_completion`: the response and each of its streamed chunks.
pub type TextCompletion = Envelope<TextChoice>;

/// A finished generation of either route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Completion {
    /// A `chat.completion`.
    Chat(ChatCompletion),
    /// A `text_completion`.
    Text(TextCompletion),
}

/// A streamed chunk of either route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Chunk {
    /// A `chat.completion.chunk`.
    Chat(ChatCompletionChunk),
    /// A streamed `text_completion`.
    Text(TextCompletion),
}

impl Completion {
    /// The token counts, if the response carries them (sluice's engine always sets them).
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Completion::Chat(c) => c.usage.flatten(),
            Completion::Text(c) => c.usage.flatten(),
        }
    }

    /// The text of choice `index`.
    pub fn text(&self, index: usize) -> Option<&str> {
        match self {
            Completion::Chat(c) => c
                .choices
                .iter()
                .find(|ch| ch.index == index)?
                .message
                .content
                .as_deref(),
            Completion::Text(c) => c
                .choices
                .iter()
                .find(|ch| ch.index == index)
                .map(|ch| ch.text.as_str()),
        }
    }
}

impl Chunk {
    /// The new text of choice `index` in this chunk.
    pub fn text(&self, index: usize) -> Option<&str> {
        match self {
            Chunk::Chat(c) => c
                .choices
                .iter()
                .find(|ch| ch.index == index)?
                .delta
                .content
                .as_deref(),
            Chunk::Text(c) => c
                .choices
                .iter()
                .find(|ch| ch.index == index)
                .map(|ch| ch.text.as_str()),
        }
    }

    /// The counts, on the last chunk of a client that asked for usage.
    pub fn usage(&self) -> Option<Usage> {
        match self {
            Chunk::Chat(c) => c.usage.flatten(),
            Chunk::Text(c) => c.usage.flatten(),
        }
    }
}

/// A streamed event as a client reads it, whatever the route: a chunk of either kind, or an
/// error object. Fields it does not know are ignored, so it reads other servers' streams too.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamEvent {
    /// The chunk's choices; empty in a usage chunk or an error event.
    #[serde(default)]
    pub choices: Vec<StreamChoice>,
    /// The token counts, on the last chunk of a client that asked for usage; `None` when
    /// absent or `null`.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// The `error` object of an error event (OpenAI's error shape, which sluice's gateway
    /// sends when a streamed job fails), as raw JSON.
    #[serde(default)]
    pub error: Option<Value>,
}

/// One choice of a [`StreamEvent`]: chat chunks carry `delta.content`, completions `text`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct StreamChoice {
    /// Which choice this is, from 0 (0 when absent).
    #[serde(default)]
    pub index: usize,
    /// A chat chunk's new text (and role).
    #[serde(default)]
    pub delta: Option<Delta>,
    /// A text completion chunk's new text.
    #[serde(default)]
    pub text: Option<String>,
    /// OpenAI's `finish_reason`, set in the choice's last chunk.
    #[serde(default)]
    pub finish_reason: Option<String>,
    /// vLLM's `stop_reason`, in the choice's last chunk when a stop string or token ended it.
    #[serde(default)]
    pub stop_reason: Option<StopReason>,
}

impl StreamChoice {
    /// The new text, whichever route sent it: `delta.content`, else `text`.
    pub fn text(&self) -> Option<&str> {
        self.delta
            .as_ref()
            .and_then(|d| d.content.as_deref())
            .or(self.text.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_absent_null_or_counts() {
        let mut c: TextCompletion = Envelope {
            id: "cmpl-1".into(),
            object: "text_completion".into(),
            created: 1,
            model: "m".into(),
            system_fingerprint: None,
            choices: vec![],
            usage: None,
            prompt_logprobs: None,
        };
        assert!(serde_json::to_value(&c).unwrap().get("usage").is_none());
        c.usage = Some(None);
        assert_eq!(serde_json::to_value(&c).unwrap()["usage"], Value::Null);
        c.usage = Some(Some(Usage::new(2, 3)));
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v["usage"],
            json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
        );
        let back: TextCompletion = serde_json::from_value(v).unwrap();
        assert_eq!(back, c);
        let null: TextCompletion =
            serde_json::from_value(json!({"id": "x", "object": "text_completion", "created": 1,
                "model": "m", "system_fingerprint": null, "choices": [], "usage": null}))
            .unwrap();
        assert_eq!(null.usage, Some(None));
    }

    #[test]
    fn stream_events_read_both_routes() {
        let chat: StreamEvent = serde_json::from_value(json!({"choices": [{"index": 0,
            "delta": {"role": "assistant", "content": "Hi"}, "finish_reason": null}]}))
        .unwrap();
        assert_eq!(chat.choices[0].text(), Some("Hi"));
        let text: StreamEvent =
            serde_json::from_value(json!({"choices": [{"index": 0, "text": "Yo"}], "usage": null}))
                .unwrap();
        assert_eq!((text.choices[0].text(), text.usage), (Some("Yo"), None));
    }
}
