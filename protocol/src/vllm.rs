//! RunPod's vLLM worker (runpod-workers/worker-vllm), whose job forms sluice's LLM endpoints
//! take, so client code written for it works unchanged: its standard input form (`{"prompt" |
//! "messages", "sampling_params", "stream"}`), read into an OpenAI request, and its output, a
//! list of batches, streamed batch by batch when the input streams. [`LlmJob::parse`] reads
//! either input form (this one or `{"openai_route", "openai_input"}`), the same way on the
//! gateway (before enqueue) and on the worker.

use crate::job::OpenAiJobInput;
use crate::openai::{GenerateRequest, CHAT_ROUTE, COMPLETIONS_ROUTE, VLLM_EXTENSIONS};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// An LLM endpoint's job, read from its input.
#[derive(Clone, Debug, PartialEq)]
pub enum LlmJob {
    /// `{"openai_route": "/v1/embeddings", "openai_input"}`: vectors of the inputs.
    Embed(crate::openai::embeddings::EmbeddingRequest),
    /// `{"openai_route", "openai_input"}`: an OpenAI request (the `/v1` routes' jobs); its
    /// output is the OpenAI response.
    OpenAi(GenerateRequest),
    /// worker-vllm's standard form; its output is a list of [`VllmBatch`]es, streamed when
    /// `stream`.
    Standard {
        /// The request it reads as.
        request: GenerateRequest,
        /// Whether the batches stream.
        stream: bool,
    },
}

impl LlmJob {
    /// Read `input`, a job of the endpoint serving `model`. Errors: the client-facing reason
    /// (neither form, an unsupported sampling parameter, an invalid request).
    pub fn parse(input: &Value, model: &str) -> Result<LlmJob, String> {
        if is_standard(input) {
            let (request, stream) = to_request(input, model)?;
            return Ok(LlmJob::Standard { request, stream });
        }
        let job: OpenAiJobInput = serde_json::from_value(input.clone()).map_err(|e| {
            format!("job input must be {{\"openai_route\", \"openai_input\"}} or {{\"prompt\"|\"messages\", \"sampling_params\"}}: {e}")
        })?;
        if job.openai_route == crate::openai::embeddings::EMBEDDINGS_ROUTE {
            return crate::openai::embeddings::EmbeddingRequest::parse(job.openai_input)
                .map(LlmJob::Embed)
                .map_err(|e| e.message);
        }
        GenerateRequest::parse(&job.openai_route, job.openai_input)
            .map(LlmJob::OpenAi)
            .map_err(|e| e.message)
    }

    /// The OpenAI request the job generates for (`None` for embeddings).
    pub fn request(&self) -> Option<&GenerateRequest> {
        match self {
            LlmJob::OpenAi(r) | LlmJob::Standard { request: r, .. } => Some(r),
            LlmJob::Embed(_) => None,
        }
    }
}

/// One batch: `{"choices": [{"tokens": [text, ...]}, ...], "usage": {"input", "output"}}`;
/// `usage` on the last batch only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VllmBatch {
    /// One entry per choice of the request (`n`), in order: the text the batch adds to it.
    pub choices: Vec<VllmChoice>,
    /// Token counts of the whole request; on the last batch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<VllmUsage>,
}

/// The text pieces of one choice in a batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VllmChoice {
    /// Decoded text, in order, despite the name (not token ids): from sluice, one streamed
    /// delta per batch, or the choice's whole text when not streaming; may be empty.
    pub tokens: Vec<String>,
}

/// Prompt (`input`) and generated (`output`) tokens of the whole request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VllmUsage {
    /// Prompt tokens.
    pub input: usize,
    /// Generated tokens, summed over all choices.
    pub output: usize,
}

impl VllmBatch {
    /// A batch holding `text` for choice `index` of `n` (the other choices empty).
    pub fn one(index: usize, n: usize, text: &str) -> Self {
        VllmBatch {
            choices: (0..n.max(index + 1))
                .map(|i| VllmChoice {
                    tokens: if i == index {
                        vec![text.to_string()]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            usage: None,
        }
    }
}

/// vLLM sampling parameters sluice honours (their OpenAI request names are the same), besides
/// [`VLLM_EXTENSIONS`].
const SAMPLING: &[&str] = &[
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "n",
    "best_of",
    "stop",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "guided_json",
];

/// worker-vllm's default when `max_tokens` is not given.
const DEFAULT_MAX_TOKENS: u64 = 100;

/// Whether `input` is in worker-vllm's standard form (rather than `openai_route`).
fn is_standard(input: &Value) -> bool {
    input.get("openai_route").is_none()
        && (input.get("prompt").is_some() || input.get("messages").is_some())
}

/// Turn a standard-form input into an OpenAI request for `model`; also says whether to stream.
fn to_request(input: &Value, model: &str) -> Result<(GenerateRequest, bool), String> {
    let stream = input
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    let route = match (input.get("messages"), input.get("prompt")) {
        (Some(m), _) => {
            body.insert("messages".into(), m.clone());
            CHAT_ROUTE
        }
        (None, Some(p)) => {
            body.insert("prompt".into(), p.clone());
            COMPLETIONS_ROUTE
        }
        (None, None) => return Err("the input needs `prompt` or `messages`".into()),
    };
    let params = match input.get("sampling_params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err("`sampling_params` must be an object".into()),
    };
    for (k, v) in params {
        if !SAMPLING.contains(&k.as_str()) && !VLLM_EXTENSIONS.contains(&k.as_str()) {
            return Err(format!(
                "sampling parameter `{k}` is not supported by this server"
            ));
        }
        body.insert(k, v);
    }
    body.entry("max_tokens")
        .or_insert(json!(DEFAULT_MAX_TOKENS));
    if stream {
        body.insert("stream".into(), json!(true));
    }
    let req = GenerateRequest::parse(route, Value::Object(body)).map_err(|e| e.message)?;
    Ok((req, stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_and_messages_forms() {
        let (req, stream) = to_request(
            &json!({"prompt": "hi", "sampling_params": {"max_tokens": 5, "temperature": 0, "stop": ["x"]}}),
            "m",
        )
        .unwrap();
        assert!(!stream);
        let GenerateRequest::Completion(c) = req else {
            panic!("a prompt is a completion")
        };
        assert_eq!(
            c.prompts,
            [crate::openai::prompt::Prompt::Text("hi".into())]
        );
        assert_eq!(c.sampling.max_tokens, Some(5));
        assert_eq!(c.sampling.stop, vec!["x"]);
        let (req, stream) = to_request(
            &json!({"messages": [{"role": "user", "content": "hi"}], "stream": true}),
            "m",
        )
        .unwrap();
        assert!(stream && matches!(req, GenerateRequest::Chat(_)));
        assert_eq!(req.sampling().max_tokens, Some(DEFAULT_MAX_TOKENS as u32));
    }

    #[test]
    fn unsupported_sampling_params_are_named() {
        let err = to_request(
            &json!({"prompt": "hi", "sampling_params": {"use_beam_search": true}}),
            "m",
        )
        .unwrap_err();
        assert!(err.contains("use_beam_search"));
        assert!(is_standard(&json!({"prompt": "x"})));
        assert!(!is_standard(
            &json!({"openai_route": "/v1/completions", "prompt": "x"})
        ));
    }
}
