//! Tests of the OpenAI request parsers (`super`).

use super::*;
use serde_json::json;

fn chat(extra: Value) -> Result<ChatRequest> {
    let mut body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    ChatRequest::parse(body)
}

#[test]
fn minimal_chat_parses_with_defaults() {
    let r = chat(json!({})).unwrap();
    assert_eq!(r.model, "m");
    assert_eq!(r.messages[0].content, "hi");
    assert_eq!(r.sampling.n, 1);
    assert!(!r.stream && !r.include_usage);
}

#[test]
fn unsupported_and_unknown_params_are_named() {
    let e = chat(json!({"tools": [{"type": "function"}]})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("tools[0].function"));
    let e = chat(json!({"functions": []})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("functions"));
    let e = chat(json!({"frobnicate": 1})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("frobnicate"));
    assert!(e.message.contains("Unrecognized"));
    // Benign values of unsupported parameters and nulls are fine.
    chat(json!({"logprobs": false, "tools": null, "response_format": {"type": "text"}})).unwrap();
}

#[test]
fn ranges_and_types_name_the_param() {
    assert_eq!(
        chat(json!({"temperature": 3}))
            .unwrap_err()
            .param
            .as_deref(),
        Some("temperature")
    );
    assert_eq!(
        chat(json!({"top_p": 0})).unwrap_err().param.as_deref(),
        Some("top_p")
    );
    assert_eq!(
        chat(json!({"max_tokens": "x"}))
            .unwrap_err()
            .param
            .as_deref(),
        Some("max_tokens")
    );
    assert_eq!(
        chat(json!({"max_tokens": 0})).unwrap_err().param.as_deref(),
        Some("max_tokens")
    );
    assert_eq!(
        chat(json!({"n": 0})).unwrap_err().param.as_deref(),
        Some("n")
    );
    assert_eq!(
        chat(json!({"stop": [1]})).unwrap_err().param.as_deref(),
        Some("stop")
    );
}

#[test]
fn seed_is_taken_with_any_temperature() {
    assert_eq!(chat(json!({"seed": 1})).unwrap().sampling.seed, Some(1));
    assert_eq!(
        chat(json!({"seed": 1, "temperature": 0}))
            .unwrap()
            .sampling
            .seed,
        Some(1)
    );
}

#[test]
fn stop_accepts_string_or_list() {
    assert_eq!(chat(json!({"stop": "x"})).unwrap().sampling.stop, vec!["x"]);
    assert_eq!(
        chat(json!({"stop": ["a", "b"]})).unwrap().sampling.stop,
        vec!["a", "b"]
    );
}

#[test]
fn stream_options_need_stream() {
    assert!(chat(json!({"stream_options": {"include_usage": true}})).is_err());
    let r = chat(json!({"stream": true, "stream_options": {"include_usage": true}})).unwrap();
    assert!(r.include_usage);
}

#[test]
fn messages_are_validated() {
    let e = ChatRequest::parse(json!({"model": "m", "messages": []})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages"));
    let e =
        ChatRequest::parse(json!({"model": "m", "messages": [{"role": "wizard", "content": "x"}]}))
            .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("messages[0].role"));
    let r = ChatRequest::parse(json!({"model": "m", "messages": [
        {"role": "developer", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]}))
    .unwrap();
    assert_eq!(
        r.messages[0],
        ChatMessage {
            role: "system".into(),
            content: "ab".into(),
            ..Default::default()
        }
    );
}

#[test]
fn completion_prompt_forms() {
    let r = CompletionRequest::parse(json!({"model": "m", "prompt": ["one"]})).unwrap();
    assert_eq!(r.prompts, [prompt::Prompt::Text("one".into())]);
    assert_eq!(
        r.sampling.max_tokens,
        Some(16),
        "OpenAI's default for completions"
    );
    let r =
        CompletionRequest::parse(json!({"model": "m", "prompt": "x", "max_tokens": null})).unwrap();
    assert_eq!(r.sampling.max_tokens, Some(16), "null is absent");
    assert_eq!(
        chat(json!({})).unwrap().sampling.max_tokens,
        None,
        "chat: up to the context"
    );
    let e = CompletionRequest::parse(json!({"model": "m", "prompt": [1, -2]})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("prompt"));
    let e =
        CompletionRequest::parse(json!({"model": "m", "prompt": "x", "suffix": "y"})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("suffix"));
}

#[test]
fn echo_with_logprobs_scores_the_prompt_and_max_tokens_0_only_there() {
    let parse = |v: Value| CompletionRequest::parse(v);
    let r =
        parse(json!({"model": "m", "prompt": "x", "echo": true, "logprobs": 1, "max_tokens": 0}))
            .unwrap();
    assert_eq!(
        (r.echo, r.sampling.max_tokens, r.sampling.logprobs),
        (true, Some(0), Some(1))
    );
    let e = parse(json!({"model": "m", "prompt": "x", "max_tokens": 0})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("max_tokens"), "0 without echo");
    let e =
        parse(json!({"model": "m", "prompt": "x", "echo": true, "max_tokens": 0, "min_tokens": 1}))
            .unwrap_err();
    assert_eq!(e.param.as_deref(), Some("min_tokens"));
    let e = parse(json!({"model": "m", "prompt": "x", "logprobs": 1, "best_of": 2})).unwrap_err();
    assert_eq!(e.param.as_deref(), Some("logprobs"));
}

#[test]
fn body_must_be_object_and_route_known() {
    assert!(ChatRequest::parse(json!([1])).is_err());
    assert!(GenerateRequest::parse("/v1/embeddings", json!({})).is_err());
}
