//! One job through a RunPod-style queue API (`/v2/{endpoint}/...`), timed: `run` then poll
//! `status`, `runsync`, or `run` then poll `stream`. The server's own `delayTime` (queued) and
//! `executionTime` are recorded beside the client's end-to-end time.

use crate::metrics::RequestRecord;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueMode {
    /// POST /run, then GET /status/{id} until final.
    Run,
    /// POST /runsync (polling /status if the wait runs out).
    Runsync,
    /// POST /run, then GET /stream/{id} until final; TTFT is the first streamed chunk.
    Stream,
}

fn is_final(v: &Value) -> bool {
    v.get("status")
        .and_then(Value::as_str)
        .and_then(protocol::JobStatus::parse)
        .is_some_and(protocol::JobStatus::is_final)
}

async fn send(req: reqwest::RequestBuilder) -> Result<Value, String> {
    let r = req
        .send()
        .await
        .map_err(|e| crate::client::error_kind(&e).to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status().as_u16()));
    }
    r.json().await.map_err(|_| "body".to_string())
}

/// Completion tokens from an OpenAI-shaped job output, if it has usage.
fn output_tokens(output: &Value) -> Option<usize> {
    let out = output.as_array().and_then(|a| a.last()).unwrap_or(output);
    out.get("usage")?
        .get("completion_tokens")?
        .as_u64()
        .map(|n| n as usize)
}

pub async fn request(
    http: &reqwest::Client,
    base: &str,
    input: Value,
    mode: QueueMode,
    poll: Duration,
) -> RequestRecord {
    let mut rec = RequestRecord::default();
    let t0 = Instant::now();
    let body = json!({ "input": input });
    let first = match mode {
        QueueMode::Runsync => send(http.post(format!("{base}/runsync")).json(&body)).await,
        QueueMode::Run | QueueMode::Stream => {
            send(http.post(format!("{base}/run")).json(&body)).await
        }
    };
    let mut status = match first {
        Ok(v) => v,
        Err(e) => {
            rec.error = Some(e);
            return rec;
        }
    };
    let Some(id) = status.get("id").and_then(Value::as_str).map(str::to_string) else {
        rec.error = Some("no job id".into());
        return rec;
    };
    let mut last_chunk: Option<Instant> = None;
    while !is_final(&status) {
        tokio::time::sleep(poll).await;
        let url = match mode {
            QueueMode::Stream => format!("{base}/stream/{id}"),
            _ => format!("{base}/status/{id}"),
        };
        status = match send(http.get(url)).await {
            Ok(v) => v,
            Err(e) => {
                rec.error = Some(e);
                return rec;
            }
        };
        let chunks = status
            .get("stream")
            .and_then(Value::as_array)
            .map(Vec::len)
            .unwrap_or(0);
        if chunks > 0 {
            let now = Instant::now();
            match last_chunk {
                None => rec.ttft = now - t0,
                Some(p) => rec.itl.push(now - p),
            }
            last_chunk = Some(now);
        }
        if mode == QueueMode::Stream && is_final(&status) && chunks > 0 {
            // Final with chunks still arriving: read until the stream is empty.
            status["status"] = json!("IN_PROGRESS");
        }
    }
    if mode == QueueMode::Stream {
        // The stream route reports no output or times; read them from the status, if it is
        // (still) there.
        if let Ok(v) = send(http.get(format!("{base}/status/{id}"))).await {
            if is_final(&v) {
                status = v;
            }
        }
    }
    rec.latency = t0.elapsed();
    rec.delay = status
        .get("delayTime")
        .and_then(Value::as_u64)
        .map(Duration::from_millis);
    rec.execution = status
        .get("executionTime")
        .and_then(Value::as_u64)
        .map(Duration::from_millis);
    match status.get("status").and_then(Value::as_str) {
        Some("COMPLETED") => {
            rec.ok = true;
            rec.output_tokens = status.get("output").and_then(output_tokens).unwrap_or(0);
            if mode != QueueMode::Stream {
                rec.ttft = rec.latency;
            }
        }
        other => rec.error = Some(format!("job {}", other.unwrap_or("?"))),
    }
    rec
}
