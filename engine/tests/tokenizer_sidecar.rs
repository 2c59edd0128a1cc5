//! The tokenizer written at pull time (`tokenizer/` next to the weights) is the one mistral.rs
//! builds from the GGUF itself: an engine loaded with it and one that converts the GGUF's
//! tokenizer on start count the same prompt tokens and generate the same text, and the
//! gateway's count (the same sidecar, read by `weights::PromptTokenizer`) equals the engine's.
//! Needs the default model in the cache (`sluice models pull smollm2-135m-instruct`; pulled
//! here if missing).

use engine::{Backend, MistralRs};
use protocol::config::Deployment;
use protocol::openai::response::Completion;
use protocol::openai::{ChatMessage, GenerateRequest, CHAT_ROUTE, COMPLETIONS_ROUTE};
use serde_json::{json, Value};
use std::path::Path;
use tokio_util::sync::CancellationToken;

const PROMPTS: &[&str] = &[
    "The year 2024 had 366 days; 12345 + 67890 = 80235.",
    "Emoji list: 🍎🍌🍇 and accents: café, naïve, Ærøskøbing.\n\n  Indented\tline\r\nend",
    "<|im_start|>user\nSpecial tokens spelled out<|im_end|> don't you think? I'll, we've, they're",
    "    fn main() { println!(\"{}\", 42); }",
];

async fn run(engine: &MistralRs, route: &str, body: Value) -> Completion {
    let req = GenerateRequest::parse(route, body).expect("valid request");
    engine
        .generate(&req, &mut |_| {}, &CancellationToken::new())
        .await
        .expect("generation")
}

#[tokio::test]
async fn the_sidecar_tokenizer_matches_the_engines_own_conversion_and_the_gateways_count() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dep = Deployment::load(&root.join("configs/sluice.toml")).unwrap();
    let cfg = dep.models[0].clone();
    let cached = weights::Cache::from_env().pull(&cfg).unwrap();
    let sidecar = cached.tokenizer_dir().expect("pull writes the sidecar");
    let counter = weights::PromptTokenizer::from_hf_dir(&sidecar).unwrap();
    // The published file: it still has the tokenizer arrays (served files leave them out).
    let original = cached.dir.join(&cached.original.file);
    let with_sidecar = MistralRs::load(&cfg, &original, Some(&sidecar))
        .await
        .unwrap();
    let from_gguf = MistralRs::load(&cfg, &original, None).await.unwrap();
    for prompt in PROMPTS {
        let completion =
            json!({"model": cfg.name, "prompt": prompt, "max_tokens": 8, "temperature": 0});
        let chat = json!({"model": cfg.name, "max_tokens": 8, "temperature": 0,
                          "messages": [{"role": "user", "content": prompt}]});
        for (route, body) in [(COMPLETIONS_ROUTE, completion), (CHAT_ROUTE, chat)] {
            let a = run(&with_sidecar, route, body.clone()).await;
            let b = run(&from_gguf, route, body).await;
            assert_eq!(a.usage(), b.usage(), "{route} {prompt:?}");
            assert_eq!(a.text(0), b.text(0), "{route} {prompt:?}");
            let gateway = if route == CHAT_ROUTE {
                let m = ChatMessage {
                    role: "user".into(),
                    content: prompt.to_string(),
                    ..Default::default()
                };
                counter.count_chat(&[m], &Default::default()).unwrap()
            } else {
                counter.count(prompt).unwrap()
            };
            assert_eq!(
                a.usage().map(|u| u.prompt_tokens),
                Some(gateway),
                "the gateway counts what the engine sees: {route} {prompt:?}"
            );
        }
    }
}
