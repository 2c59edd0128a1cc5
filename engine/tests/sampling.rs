//! Sampling is random across workers and reproducible with a `seed`, on every backend: two
//! engines loaded as two fresh workers load them give different first answers at
//! `temperature: 1` (mistral.rs 0.8.1 alone seeds every engine's generator with the same
//! constant, so they gave the same one), the same `seed` gives the same answer on both (a
//! request running alone), and the `n` choices of one seeded request differ from each other. Needs the default model in the
//! cache (pulled here if missing).

use engine::{Engine, ModelFiles};
use protocol::config::Deployment;
use protocol::openai::{GenerateRequest, CHAT_ROUTE};
use protocol::EngineBackend;
use serde_json::{json, Value};
use std::path::Path;
use tokio_util::sync::CancellationToken;

async fn texts(engine: &Engine, body: Value) -> Vec<String> {
    let req = GenerateRequest::parse(CHAT_ROUTE, body).expect("valid request");
    let done = engine
        .generate(&req, &mut |_| {}, &CancellationToken::new())
        .await
        .expect("generation");
    (0..req.sampling().n as usize)
        .map(|i| done.text(i).unwrap_or_default().to_string())
        .collect()
}

#[tokio::test]
async fn fresh_engines_sample_differently_and_seeds_repeat_on_mistralrs() {
    fresh_engines_sample_differently_and_seeds_repeat(EngineBackend::Mistralrs).await;
}

#[cfg(feature = "llamacpp")]
#[tokio::test]
async fn fresh_engines_sample_differently_and_seeds_repeat_on_llamacpp() {
    fresh_engines_sample_differently_and_seeds_repeat(EngineBackend::Llamacpp).await;
}

async fn fresh_engines_sample_differently_and_seeds_repeat(backend: EngineBackend) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dep = Deployment::load(&root.join("configs/sluice.toml")).unwrap();
    let cfg = dep.models[0].clone();
    let cached = weights::Cache::from_env().pull(&cfg).unwrap();
    let (served, original, sidecar) = (
        cached.served_path(),
        cached.dir.join(&cached.original.file),
        cached.tokenizer_dir(),
    );
    let files = ModelFiles {
        served: &served,
        original: &original,
        tokenizer_dir: sidecar.as_deref(),
    };
    let a = Engine::load(&cfg, files, backend).await.unwrap();
    let b = Engine::load(&cfg, files, backend).await.unwrap();
    let ask = |extra: Value| {
        let mut body = json!({"model": cfg.name, "max_tokens": 24, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Tell me a short story about a cat."}]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let (first_a, first_b) = (
        texts(&a, ask(json!({}))).await,
        texts(&b, ask(json!({}))).await,
    );
    assert_ne!(first_a, first_b, "two fresh workers, the same first answer");
    // One sequence alone: batched with others (`n` > 1 on mistral.rs, whose scheduler batches
    // them as they arrive), the logits' last bits depend on the batch, as in vLLM.
    let seeded = ask(json!({"seed": 42}));
    let (seeded_a, seeded_b) = (texts(&a, seeded.clone()).await, texts(&b, seeded).await);
    assert_eq!(seeded_a, seeded_b, "the same seed, the same answer");
    let two = texts(&a, ask(json!({"seed": 42, "n": 2}))).await;
    assert_ne!(two[0], two[1], "choices of one seeded request differ");
    assert_ne!(texts(&a, ask(json!({"seed": 43}))).await[0], seeded_a[0]);
}
