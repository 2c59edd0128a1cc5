//! The job input and output of RunPod's vLLM worker (runpod-workers/worker-vllm), so client code
//! written for it works against a sluice LLM endpoint unchanged:
//! input `{"prompt": str | "messages": [...], "sampling_params": {...}, "stream": bool}`;
//! output a list of batches `{"choices": [{"tokens": [text, ...]}], "usage": {"input", "output"}}`,
//! streamed batch by batch when `stream` is true.

use crate::shape::Usage;
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

/// A batch holding `text` for choice `index` of `n`.
pub fn batch(index: usize, n: usize, text: &str) -> Value {
    let choices: Vec<Value> = (0..n.max(index + 1))
        .map(|i| json!({"tokens": if i == index { vec![text] } else { vec![] }}))
        .collect();
    json!({ "choices": choices })
}

/// The text of choice `index` in an OpenAI chunk or response object.
pub fn choice_text(v: &Value, index: usize) -> Option<String> {
    let c = v
        .get("choices")?
        .as_array()?
        .iter()
        .find(|c| c["index"].as_u64() == Some(index as u64))?;
    let t = c
        .get("delta")
        .and_then(|d| d.get("content"))
        .or_else(|| c.get("message").and_then(|m| m.get("content")))
        .or_else(|| c.get("text"))?;
    t.as_str().map(str::to_string)
}

pub fn usage(u: Usage) -> Value {
    json!({"input": u.prompt_tokens, "output": u.completion_tokens})
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

    #[test]
    fn batches_and_texts() {
        assert_eq!(
            batch(1, 2, "a"),
            json!({"choices": [{"tokens": []}, {"tokens": ["a"]}]})
        );
        let chunk = json!({"choices": [{"index": 0, "delta": {"content": "x"}}]});
        assert_eq!(choice_text(&chunk, 0).as_deref(), Some("x"));
        let done = json!({"choices": [{"index": 0, "message": {"content": "y"}}]});
        assert_eq!(choice_text(&done, 0).as_deref(), Some("y"));
    }
}
