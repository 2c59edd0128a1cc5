//! The OpenAI request parsers (`/v1/chat/completions`, `/v1/completions`): any JSON body is
//! either a request or an `InvalidRequest`, never a panic; an accepted chat renders its prompt
//! messages (tools included).
#![no_main]

use libfuzzer_sys::fuzz_target;
use protocol::openai::{GenerateRequest, CHAT_ROUTE, COMPLETIONS_ROUTE};

fuzz_target!(|data: &[u8]| {
    let Some((&route, body)) = data.split_first() else {
        return;
    };
    let Ok(body) = serde_json::from_slice::<serde_json::Value>(body) else {
        return;
    };
    let route = if route % 2 == 0 { CHAT_ROUTE } else { COMPLETIONS_ROUTE };
    if let Ok(GenerateRequest::Chat(c)) = GenerateRequest::parse(route, body) {
        let _ = c.prompt_messages();
        if let Some(t) = &c.tools {
            let _ = t.forced_schema();
        }
    }
});
