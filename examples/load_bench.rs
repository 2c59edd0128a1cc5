//! Engine load time (the worker's `loadMs`), in-process, for the ways a worker can load the
//! default model: the served GGUF with the tokenizer rebuilt from its metadata (mistral.rs's
//! own path), with the tokenizer sidecar written at pull time, and with the sidecar plus a
//! copy of the served GGUF whose tokenizer arrays are stripped (less metadata to parse).
//! Rounds alternate the variants; prints medians with min-max in ms.
//!
//! cargo run --release --example load_bench -- [ROUNDS]

use engine::Engine;
use protocol::config::Deployment;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// A copy of `src` without the `tokenizer.ggml.*` metadata (tokens, merges, types, ids).
fn stripped_copy(src: &Path, dest: &Path) -> anyhow::Result<()> {
    use candle_core::quantized::gguf_file;
    let mut r = std::io::BufReader::new(std::fs::File::open(src)?);
    let content = gguf_file::Content::read(&mut r)?;
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        tensors.push((
            name.clone(),
            content.tensor(&mut r, name, &candle_core::Device::Cpu)?,
        ));
    }
    let md: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(k, _)| !k.starts_with("tokenizer.ggml."))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let ts: Vec<(&str, &candle_core::quantized::QTensor)> =
        tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut w = std::io::BufWriter::new(std::fs::File::create(dest)?);
    gguf_file::write(&mut w, &md, &ts)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let dep = Deployment::load(Path::new("configs/sluice.toml"))?;
    let cfg = dep.models[0].clone();
    let cache = weights::Cache::from_env();
    let cached = cache.pull(&cfg)?;
    let served = cached.served_path();
    let sidecar = cached
        .tokenizer_dir()
        .expect("pull writes the tokenizer sidecar");
    let stripped = cache.root().join("bench/stripped.gguf");
    if !stripped.exists() {
        std::fs::create_dir_all(stripped.parent().expect("has a parent"))?;
        stripped_copy(&served, &stripped)?;
    }
    let variants: [(&str, PathBuf, Option<&Path>); 3] = [
        ("tokenizer from GGUF (before)", served.clone(), None),
        ("tokenizer sidecar", served.clone(), Some(&sidecar)),
        ("sidecar + stripped GGUF", stripped.clone(), Some(&sidecar)),
    ];
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, (_, path, tok)) in variants.iter().enumerate() {
            let t0 = Instant::now();
            let engine = Engine::load(&cfg, path, *tok).await?;
            times[i].push(t0.elapsed().as_secs_f64() * 1000.0);
            drop(engine);
        }
    }
    for ((name, ..), mut t) in variants.iter().zip(times) {
        t.sort_by(|a, b| a.total_cmp(b));
        println!(
            "{name:<30} load ms median {:.0} (min {:.0}, max {:.0}), n={}",
            t[t.len() / 2],
            t[0],
            t[t.len() - 1],
            t.len()
        );
    }
    Ok(())
}
