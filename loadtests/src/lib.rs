//! `sluice bench`: a load generator for any OpenAI-compatible server (sluice, llama.cpp's
//! server, vLLM, mistral.rs's server), measuring streamed requests the way vLLM's
//! `benchmark_serving` does. Flag names follow `vllm bench serve`.
//!
//! This first version runs a fixed-concurrency workload over a built-in prompt set.

pub mod arrivals;
pub mod metrics;

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use metrics::{RequestRecord, Summary};
use protocol::sse::{Parser, DONE};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Prompts that make a small instruct model write at length.
pub const BUILTIN_PROMPTS: &[&str] = &[
    "Write a long story about a dragon who learns to bake bread.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe a day in the life of a lighthouse keeper.",
    "Write a detailed travel guide for a city by the sea.",
    "Explain how rain forms, step by step, for a curious child.",
    "Write a letter from a sailor to his family at home.",
    "Describe how to plant and care for a vegetable garden.",
    "Tell the history of a small mountain village over a century.",
];

#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server base URL (without /v1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Model name sent in requests.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// API route: /v1/chat/completions or /v1/completions.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub endpoint: String,
    /// Requests to send in total.
    #[arg(long, default_value_t = 16)]
    pub num_prompts: usize,
    /// Requests in flight at once (a cap; with --request-rate, arrivals beyond it wait).
    #[arg(long, default_value_t = 1)]
    pub max_concurrency: usize,
    /// Open-loop arrivals per second; `inf` sends as fast as the concurrency allows.
    #[arg(long, default_value_t = f64::INFINITY)]
    pub request_rate: f64,
    /// Gamma shape of the gaps between arrivals: 1 is Poisson, lower is burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Seed of the arrival process.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// max_tokens of every request.
    #[arg(long, default_value_t = 128)]
    pub random_output_len: u32,
    /// Extra JSON merged into every request body (e.g. '{"ignore_eos": true}' for llama.cpp).
    #[arg(long)]
    pub extra_body: Option<String>,
    /// Stop after this many seconds even if requests remain.
    #[arg(long, default_value_t = 600)]
    pub max_duration_secs: u64,
    /// Write the result (vLLM's JSON keys, plus `label` and the settings) here.
    #[arg(long)]
    pub result_filename: Option<std::path::PathBuf>,
    /// A name for this run in the result file.
    #[arg(long, default_value = "")]
    pub label: String,
}

fn body(args: &BenchArgs, i: usize, extra: &Value) -> Value {
    let prompt = BUILTIN_PROMPTS[i % BUILTIN_PROMPTS.len()];
    let mut b = if args.endpoint.ends_with("/chat/completions") {
        json!({"messages": [{"role": "user", "content": prompt}]})
    } else {
        json!({ "prompt": prompt })
    };
    let common = json!({
        "model": args.model, "max_tokens": args.random_output_len, "temperature": 0,
        "stream": true, "stream_options": {"include_usage": true},
    });
    for src in [&common, extra] {
        if let (Some(dst), Some(src)) = (b.as_object_mut(), src.as_object()) {
            dst.extend(src.clone());
        }
    }
    b
}

fn error_kind(e: &reqwest::Error) -> &'static str {
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

/// Chunk text of a chat or completion chunk.
fn chunk_text(v: &Value) -> Option<&str> {
    let c = v.get("choices")?.get(0)?;
    c.get("delta")
        .and_then(|d| d.get("content"))
        .or_else(|| c.get("text"))?
        .as_str()
}

async fn one(http: &reqwest::Client, url: &str, body: Value) -> RequestRecord {
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
    let mut chunks = 0usize;
    let mut done = false;
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
            let Ok(v) = serde_json::from_str::<Value>(&event) else {
                continue;
            };
            if v.get("error").is_some() {
                rec.error = Some("error event".into());
                return rec;
            }
            if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
                rec.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                rec.output_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
            }
            if chunk_text(&v).is_some_and(|t| !t.is_empty()) {
                let now = Instant::now();
                match last {
                    None => rec.ttft = now - t0,
                    Some(prev) => rec.itl.push(now - prev),
                }
                last = Some(now);
                chunks += 1;
            }
        }
    }
    rec.latency = t0.elapsed();
    if rec.output_tokens == 0 {
        // No usage from the server: one token per content chunk.
        rec.output_tokens = chunks;
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

/// Run the benchmark and return its summary.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Summary> {
    let extra: Value = match &args.extra_body {
        Some(s) => serde_json::from_str(s).context("--extra-body must be a JSON object")?,
        None => json!({}),
    };
    // A fresh connection per request: what is measured is the server, not how it and this
    // client handle keep-alive (llama.cpp's server closes a connection after 5 requests).
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{}{}", args.base_url.trim_end_matches('/'), args.endpoint);
    let slots = Arc::new(Semaphore::new(args.max_concurrency.max(1)));
    let offsets = arrivals::schedule(
        args.num_prompts,
        args.request_rate,
        args.burstiness,
        args.seed,
    )?;
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.max_duration_secs);
    let mut tasks = Vec::new();
    for (i, offset) in offsets.into_iter().enumerate() {
        tokio::time::sleep_until((t0 + offset).into()).await;
        let permit = slots.clone().acquire_owned().await?;
        if Instant::now() >= deadline {
            break;
        }
        let (http, url, b) = (http.clone(), url.clone(), body(args, i, &extra));
        tasks.push(tokio::spawn(async move {
            // In-flight requests are cut at the deadline too: a run always ends on time.
            let r = tokio::time::timeout_at(deadline.into(), one(&http, &url, b))
                .await
                .unwrap_or_else(|_| RequestRecord {
                    error: Some("cut at --max-duration-secs".into()),
                    ..RequestRecord::default()
                });
            drop(permit);
            r
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await?);
    }
    let summary = Summary::from_records(&records, t0.elapsed());
    if let Some(path) = &args.result_filename {
        let mut j = summary.to_vllm_json();
        j["label"] = json!(args.label);
        j["base_url"] = json!(args.base_url);
        j["max_concurrency"] = json!(args.max_concurrency);
        j["num_prompts"] = json!(args.num_prompts);
        j["random_output_len"] = json!(args.random_output_len);
        std::fs::write(path, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(summary)
}

/// A short human-readable table of the summary.
pub fn print(args: &BenchArgs, s: &Summary) {
    println!(
        "== {} {} (concurrency {}) ==",
        args.label, args.base_url, args.max_concurrency
    );
    println!(
        "completed {} failed {} in {:.2} s",
        s.completed, s.failed, s.duration
    );
    println!(
        "output tok/s {:.1}   total tok/s {:.1}   req/s {:.2}",
        s.output_throughput, s.total_token_throughput, s.request_throughput
    );
    for (name, st) in [
        ("TTFT", &s.ttft_ms),
        ("TPOT", &s.tpot_ms),
        ("ITL", &s.itl_ms),
        ("E2EL", &s.e2el_ms),
    ] {
        println!(
            "{name:<5} ms  mean {:>8.1}  median {:>8.1}  p99 {:>8.1}",
            st.mean, st.median, st.p99
        );
    }
    for (e, n) in &s.errors {
        println!("error {e}: {n}");
    }
}
