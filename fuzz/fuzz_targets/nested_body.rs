//! Bodies nested at any depth: the depth measured on the text is at least the depth of the
//! parsed value (up to the limit; more where a repeated key's earlier, deeper value was
//! dropped by the parser, which still had to read it), and a body within `nesting::MAX_DEPTH` still decodes once a job wraps it
//! in `JOB_WRAPPING` more levels, as a worker decodes it; the request and LLM job parsers take
//! it without a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::nesting::{text_depth, value_depth, JOB_WRAPPING, MAX_DEPTH};
use protocol::openai::{GenerateRequest, CHAT_ROUTE};
use protocol::vllm::LlmJob;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let depth = text_depth(data, MAX_DEPTH);
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    assert!(depth >= value_depth(&body).min(MAX_DEPTH + 1));
    if depth > MAX_DEPTH {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let wrapped = format!(
        "{}{text}{}",
        "{\"w\":".repeat(JOB_WRAPPING),
        "}".repeat(JOB_WRAPPING)
    );
    assert!(serde_json::from_str::<Value>(&wrapped).is_ok(), "a worker could not read it");
    let _ = GenerateRequest::parse(CHAT_ROUTE, body.clone());
    let _ = LlmJob::parse(&body, "m");
});
