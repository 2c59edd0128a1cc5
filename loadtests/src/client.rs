//! One streamed OpenAI request, timed: first content chunk, gaps between chunks, the end.

use crate::metrics::RequestRecord;
use futures::StreamExt;
use protocol::openai::response::StreamEvent;
use protocol::sse::{Parser, DONE};
use serde_json::Value;
use std::time::Instant;

pub(crate) fn error_kind(e: &reqwest::Error) -> &'static str {
    if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else if e.is_body() || e.is_decode() {
        "body"
    } else {
        "request"
    }
}

/// Send `body` (a streaming request) to `url` and time it. `count` counts output tokens of the
/// text when the server reports no usage.
pub async fn request(
    http: &reqwest::Client,
    url: &str,
    body: Value,
    count: &(dyn Fn(&str) -> Option<usize> + Sync),
) -> RequestRecord {
    let mut rec = RequestRecord::default();
    let t0 = Instant::now();
    let resp = match http.post(url).json(&body).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => {
            rec.error = Some(format!("HTTP {}", r.status().as_u16()));
            return rec;
        }
        Err(e) => {
            rec.error = Some(error_kind(&e).into());
            return rec;
        }
    };
    let mut parser = Parser::new();
    let mut stream = resp.bytes_stream();
    let mut last: Option<Instant> = None;
    let (mut chunks, mut text, mut done) = (0usize, String::new(), false);
    while let Some(bytes) = stream.next().await {
        let Ok(bytes) = bytes else {
            rec.error = Some("stream broken".into());
            return rec;
        };
        for event in parser.feed(&String::from_utf8_lossy(&bytes)) {
            if event == DONE {
                done = true;
                continue;
            }
            let Ok(v) = serde_json::from_str::<StreamEvent>(&event) else {
                continue;
            };
            if v.error.is_some() {
                rec.error = Some("error event".into());
                return rec;
            }
            if let Some(u) = v.usage {
                rec.prompt_tokens = u.prompt_tokens;
                rec.output_tokens = u.completion_tokens;
            }
            if let Some(t) = v
                .choices
                .first()
                .and_then(|c| c.text())
                .filter(|t| !t.is_empty())
            {
                let now = Instant::now();
                match last {
                    None => rec.ttft = now - t0,
                    Some(prev) => rec.itl.push(now - prev),
                }
                last = Some(now);
                chunks += 1;
                text.push_str(t);
            }
        }
    }
    rec.latency = t0.elapsed();
    if rec.output_tokens == 0 {
        // No usage from the server: the tokenizer's count, else one token per chunk.
        rec.output_tokens = count(&text).unwrap_or(chunks);
    }
    rec.ok = done && chunks > 0;
    if !rec.ok {
        rec.error = Some(if done {
            "empty output".into()
        } else {
            "no [DONE]".into()
        });
    }
    rec
}
