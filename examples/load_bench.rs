//! Engine load time (the worker's `loadMs`) for the ways a worker can load the default model:
//! before, the served GGUF with the tokenizer arrays, rebuilt into a tokenizer by mistral.rs
//! on every start; the same file with the tokenizer sidecar written at pull time; after, the
//! sidecar and the served GGUF as pulls now write it, without the arrays. Every load runs in a
//! fresh process (as a worker's does: a second load in one process finds warm caches); rounds
//! alternate the variants; prints medians with min-max in ms.
//!
//! cargo run --release --example load_bench -- [ROUNDS]

use engine::MistralRs;
use protocol::config::Deployment;
use std::path::Path;
use std::time::Instant;

/// The served tensors of `served` with all of `original`'s metadata (tokenizer arrays too):
/// the served file as it was before pulls left the arrays out.
fn full_copy(served: &Path, original: &Path, dest: &Path) -> anyhow::Result<()> {
    use candle_core::quantized::gguf_file;
    let read = |p: &Path| -> anyhow::Result<_> {
        let mut r = std::io::BufReader::new(std::fs::File::open(p)?);
        let c = gguf_file::Content::read(&mut r)?;
        Ok((c, r))
    };
    let (orig, _) = read(original)?;
    let (content, mut r) = read(served)?;
    let mut tensors = Vec::new();
    for name in content.tensor_infos.keys() {
        tensors.push((
            name.clone(),
            content.tensor(&mut r, name, &candle_core::Device::Cpu)?,
        ));
    }
    let md: Vec<(&str, &gguf_file::Value)> = orig
        .metadata
        .iter()
        .filter(|(k, _)| k.as_str() != "general.file_type")
        .chain(content.metadata.get_key_value("general.file_type"))
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
    let args: Vec<String> = std::env::args().collect();
    let dep = Deployment::load(Path::new("configs/sluice.toml"))?;
    let cfg = dep.models[0].clone();
    let cache = weights::Cache::from_env();
    let cached = cache.pull(&cfg)?;
    let served = cached.served_path();
    let sidecar = cached
        .tokenizer_dir()
        .expect("pull writes the tokenizer sidecar");
    let full = cache.root().join("bench/served-with-tokenizer.gguf");
    let variants: [(&str, &Path, Option<&Path>); 3] = [
        ("before: tokenizer from the GGUF", &full, None),
        ("tokenizer sidecar, full GGUF", &full, Some(&sidecar)),
        ("after: sidecar, GGUF w/o arrays", &served, Some(&sidecar)),
    ];
    // A child: one load, its time on stdout.
    if let Some(i) = args.get(1).filter(|a| *a == "--one").and(args.get(2)) {
        let (_, path, tok) = variants[i.parse::<usize>()?];
        let t0 = Instant::now();
        let _engine = MistralRs::load(&cfg, path, tok).await?;
        println!("{}", t0.elapsed().as_secs_f64() * 1000.0);
        return Ok(());
    }
    let rounds: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(5);
    if !full.exists() {
        std::fs::create_dir_all(full.parent().expect("has a parent"))?;
        full_copy(&served, &cached.dir.join(&cached.original.file), &full)?;
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _ in 0..rounds {
        for (i, t) in times.iter_mut().enumerate() {
            let out = std::process::Command::new(&args[0])
                .args(["--one", &i.to_string()])
                .output()?;
            anyhow::ensure!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            t.push(String::from_utf8(out.stdout)?.trim().parse()?);
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
