//! `sluice models plan` and `sluice models check`: GPU sizing of the model configs against the
//! GPU table (the arithmetic is `protocol::sizing`).

use anyhow::Context;
use protocol::config::{Deployment, SluiceConfig};
use protocol::sizing::{self, Plan};
use protocol::{GpuTable, ModelConfig};
use std::path::{Path, PathBuf};

/// The models directory and GPU table of the platform config at `config` (its endpoints'
/// models need not load: `check` reports each model file on its own).
fn setup(config: &Path) -> anyhow::Result<(PathBuf, GpuTable)> {
    let platform = SluiceConfig::load(config)?;
    let base = config.parent().unwrap_or(Path::new("."));
    let table = GpuTable::load(&base.join(&platform.gpu_table))?;
    Ok((base.join(&platform.models_dir), table))
}

/// `sluice models plan NAME --gpu KIND [--gpus N] [--json]`.
pub fn plan(
    config: &Path,
    name: &str,
    gpu: &str,
    gpus: Option<u32>,
    json: bool,
) -> anyhow::Result<()> {
    let (models_dir, table) = setup(config)?;
    let cfg = ModelConfig::find(&models_dir, name)?;
    let row = table.get(gpu).with_context(|| {
        let known: Vec<&str> = table.gpu.iter().map(|g| g.name.as_str()).collect();
        format!(
            "unknown GPU type `{gpu}`; the GPU table has: {}",
            known.join(", ")
        )
    })?;
    let p = sizing::plan(&cfg, row, gpus).map_err(anyhow::Error::msg)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&p)?);
    } else {
        print!("{}", describe(&p, &cfg, row.flex_price_per_sec));
    }
    Ok(())
}

fn describe(p: &Plan, cfg: &ModelConfig, flex_per_sec: f64) -> String {
    let arch = cfg.architecture.as_ref();
    let (layers, heads, dims) = arch.map_or((0, 0, 0), |a| (a.layers, a.kv_heads, a.head_dim));
    let min = p
        .min_gpus_per_worker
        .map_or("none up to 8".into(), |n| n.to_string());
    format!(
        "{model} on {gpu} ({mem:.1} GiB per GPU)\n\
         \x20 weights           {w:>8.2} GiB\n\
         \x20 KV cache          {kv:>8.2} GiB = {per} KiB/token (2 x {layers} layers x {heads} KV heads x {dims} dims x {b} bytes) x {ctx} tokens x {seqs} sequences\n\
         \x20 x {margin} margin      activations, CUDA context, allocator slack\n\
         \x20 per GPU           {vram:>8.2} GiB on {n} GPU(s): {verdict} ({pct:.0}% of {mem:.1} GiB)\n\
         \x20 smallest gpus_per_worker that fits {seqs} sequences: {min}\n\
         \x20 largest max_num_seqs on {n} GPU(s): {max}\n\
         \x20 a worker costs ${cost:.5}/s ({n} x ${flex_per_sec}/s flex)\n",
        model = p.model,
        gpu = p.gpu,
        mem = p.memory_gib,
        w = p.weights_gib,
        kv = p.kv_cache_gib,
        per = p.kv_cache_bytes_per_token / 1024,
        b = p.kv_cache_bytes_per_token / (2 * u64::from(layers * heads * dims).max(1)),
        ctx = p.context_length,
        seqs = p.configured_max_num_seqs,
        margin = p.margin,
        vram = p.vram_gib_per_gpu,
        n = p.gpus_per_worker,
        verdict = if p.fits { "fits" } else { "DOES NOT FIT" },
        pct = 100.0 * p.vram_gib_per_gpu / p.memory_gib,
        max = p.max_num_seqs,
        cost = f64::from(p.gpus_per_worker) * flex_per_sec,
    )
}

/// `sluice models check`: every model config in the models directory parses and passes
/// [`sizing::check`]; the platform config's endpoints resolve. Prints one line per model (and
/// per GPU type); an error naming each failing model.
pub fn check(config: &Path) -> anyhow::Result<()> {
    let (models_dir, table) = setup(config)?;
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&models_dir)
        .with_context(|| format!("reading {}", models_dir.display()))?
        .filter_map(|e| Some(e.ok()?.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    paths.sort();
    let mut failed = Vec::new();
    for path in &paths {
        let file = path.file_name().unwrap_or_default().to_string_lossy();
        let cfg = match ModelConfig::load(path) {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL {file}: {e}");
                failed.push(file.to_string());
                continue;
            }
        };
        let problems = sizing::check(&cfg, &table);
        let verdict = if problems.is_empty() { "ok  " } else { "FAIL" };
        println!("{verdict} {} ({file})", cfg.name);
        for problem in &problems {
            println!("     {problem}");
        }
        for choice in &cfg.gpu {
            let Some(row) = table.get(&choice.gpu_type) else {
                continue;
            };
            if let Ok(p) = sizing::plan(&cfg, row, Some(choice.gpus_per_worker)) {
                println!(
                    "     {:<12} {} GPU(s) x {:>5.1} GiB of {:>5.1}, {:>3} sequences of {} tokens (at most {})",
                    p.gpu,
                    p.gpus_per_worker,
                    p.vram_gib_per_gpu,
                    p.memory_gib,
                    p.configured_max_num_seqs,
                    p.context_length,
                    p.max_num_seqs
                );
            }
        }
        if !problems.is_empty() {
            failed.push(cfg.name);
        }
    }
    Deployment::load(config)?;
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} model configs failed: {}",
        failed.len(),
        paths.len(),
        failed.join(", ")
    );
    println!("{} model configs checked", paths.len());
    Ok(())
}
