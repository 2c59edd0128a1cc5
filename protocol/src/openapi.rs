//! The request bodies the gateway documents in `/openapi.json` besides the OpenAI ones (whose
//! types, [`ChatCompletionBody`] and [`CompletionBody`], are their parsers too, see
//! [`crate::openai::body`]): RunPod's `run` body, the file upload form and RunPod's error.
//! [`RunRequest`] describes what [`crate::job::RunBody::parse`] reads; a test holds the two
//! together.

use crate::job::PolicyRequest;
pub use crate::openai::body::{ChatCompletionBody, CompletionBody};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

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
            "guided_grammar": null, "bad_words": ["x"],
            "prompt_logprobs": null,
            "allowed_token_ids": [1], "structured_outputs": null, "skip_special_tokens": true,
            "truncate_prompt_tokens": 100, "add_generation_prompt": true,
            "continue_final_message": false, "chat_template_kwargs": {}, "priority": 1,
        });
        let mut all = v.as_object().unwrap().clone();
        all.extend(vllm.as_object().unwrap().clone());
        all
    }

    #[test]
    fn the_parsers_take_every_documented_parameter() {
        let chat = full_body(&properties::<ChatCompletionBody>(), &samples());
        ChatRequest::parse(chat).unwrap();
        let completion = full_body(&properties::<CompletionBody>(), &samples());
        CompletionRequest::parse(completion).unwrap();
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
