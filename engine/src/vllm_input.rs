//! The job input and output of RunPod's vLLM worker (runpod-workers/worker-vllm), so client code
//! written for it works against a sluice LLM endpoint unchanged:
//! input `{"prompt": str | "messages": [...], "sampling_params": {...}, "stream": bool}`;
//! output a list of batches (`protocol::vllm::VllmBatch`), streamed batch by batch when
//! `stream` is true.

use protocol::openai::{GenerateRequest, CHAT_ROUTE, COMPLETIONS_ROUTE};
use serde_json::{json, Map, Value};

/// vLLM sampling parameters sluice honours (their OpenAI request names are the same).
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
pub fn is_standard(input: &Value) -> bool {
    input.get("openai_route").is_none()
        && (input.get("prompt").is_some() || input.get("messages").is_some())
}

/// Turn a standard-form input into an OpenAI request for `model`; also says whether to stream.
pub fn to_request(input: &Value, model: &str) -> Result<(GenerateRequest, bool), String> {
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
        if !SAMPLING.contains(&k.as_str()) {
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
        assert_eq!((c.prompt.as_str(), c.sampling.max_tokens), ("hi", Some(5)));
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
