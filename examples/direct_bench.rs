//! Baseline for the gateway's overhead: the same engine code the worker runs (`engine::MistralRs`),
//! called in-process with no gateway, queue or HTTP, on the same prompts as `sluice bench`.
//!
//! cargo run --release --example direct_bench -- [CONCURRENCY] [NUM_PROMPTS] [MAX_TOKENS] [GGUF|FORMAT]
//!
//! FORMAT (q8_0, q4_0, q4k, f16, f32, original) converts the cached original into that format
//! first (under $SLUICE_HOME/bench/), to compare served formats on the same engine.

use engine::{Backend, MistralRs};
use loadtests::metrics::{RequestRecord, Summary};
use loadtests::BUILTIN_PROMPTS;
use protocol::config::{Deployment, WeightFormat};
use protocol::openai::GenerateRequest;
use serde_json::json;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (concurrency, num, max_tokens) = (arg(0, 1), arg(1, 16), arg(2, 128));
    let dep = Deployment::load(std::path::Path::new("configs/sluice.toml"))?;
    let cfg = dep.models[0].clone();
    let cache = weights::Cache::from_env();
    let cached = cache.pull(&cfg)?;
    let format: Option<WeightFormat> = args
        .get(3)
        .and_then(|a| toml::Value::String(a.clone()).try_into().ok());
    let path = match (args.get(3), format) {
        (_, Some(WeightFormat::Original)) => cached.dir.join(&cached.original.file),
        (_, Some(f)) => {
            let dest = cache
                .root()
                .join("bench")
                .join(format!("{}.{}.gguf", cfg.name, f.as_str()));
            if !dest.exists() {
                std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
                weights::convert(&cached.dir.join(&cached.original.file), &dest, f)?;
            }
            dest
        }
        (Some(p), None) => PathBuf::from(p),
        (None, None) => cached.served_path(),
    };
    let engine = Arc::new(MistralRs::load(&cfg, &path, cached.tokenizer_dir().as_deref()).await?);
    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..num {
        let permit = slots.clone().acquire_owned().await?;
        let engine = engine.clone();
        let body = json!({
            "model": cfg.name, "max_tokens": max_tokens, "temperature": 0, "stream": true,
            "messages": [{"role": "user", "content": BUILTIN_PROMPTS[i % BUILTIN_PROMPTS.len()]}],
        });
        tasks.push(tokio::spawn(async move {
            let req =
                GenerateRequest::parse(protocol::openai::CHAT_ROUTE, body).expect("valid request");
            let start = Instant::now();
            let mut rec = RequestRecord::default();
            let mut last: Option<Instant> = None;
            let mut on_chunk = |_chunk: protocol::openai::response::Chunk| {
                let now = Instant::now();
                match last {
                    None => rec.ttft = now - start,
                    Some(p) => rec.itl.push(now - p),
                }
                last = Some(now);
            };
            let out = engine
                .generate(&req, &mut on_chunk, &CancellationToken::new())
                .await;
            drop(permit);
            rec.latency = start.elapsed();
            if let Ok(usage) = out.map(|done| done.usage().unwrap_or_default()) {
                rec.ok = true;
                rec.prompt_tokens = usage.prompt_tokens;
                rec.output_tokens = usage.completion_tokens;
            }
            rec
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await?);
    }
    let s = Summary::from_records(&records, t0.elapsed(), &Default::default());
    println!(
        "{}",
        json!({"label": "direct", "max_concurrency": concurrency, "completed": s.completed,
               "output_throughput": s.output_throughput, "median_ttft_ms": s.ttft_ms.median,
               "median_tpot_ms": s.tpot_ms.median, "total_output_tokens": s.total_output_tokens,
               "duration": s.duration, "file": path.display().to_string()})
    );
    Ok(())
}
