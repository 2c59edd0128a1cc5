//! GPU sizing: does a model fit a GPU type, on how many GPUs, with how many sequences.
//!
//! The rule (the project's seed rule, as vLLM's users size by hand): a worker needs its
//! weights plus a KV cache for `context_length` tokens of each of `max_num_seqs` sequences,
//! plus 20% for activations, the CUDA context and allocator slack:
//!
//! ```text
//! need = (weight_bytes + kv_bytes_per_token x context_length x max_num_seqs) x 1.2
//! kv_bytes_per_token = 2 (K and V) x layers x kv_heads x head_dim x bytes per value
//! ```
//!
//! spread evenly over the worker's GPUs (layers split across them, or tensor parallel: both
//! divide weights and KV cache about evenly), against each GPU's whole memory. The KV term is
//! the worst case, every sequence at full context; PagedAttention packs shorter ones, so a
//! worker usually runs more sequences than the plan allows. Values are 2 bytes (the engine's
//! F16/BF16 activations) unless the engine runs in F32.

use crate::config::SourceSettings;
use crate::hardware::{ActivationDType, Architecture, GpuTable, GpuType};
use crate::ModelConfig;
use serde::{Deserialize, Serialize};

/// Weights + KV cache are multiplied by this for activations, the CUDA context and allocator
/// slack (+20%).
pub const OVERHEAD_MARGIN: f64 = 1.2;

/// The worker sizes considered for `gpus_per_worker`: powers of two, as tensor parallelism
/// needs (heads split evenly), up to one 8-GPU node.
pub const GPU_COUNTS: [u32; 4] = [1, 2, 4, 8];

const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

/// Bytes of one cached key or value element: 4 for an F32 engine, else 2 (F16/BF16).
pub fn kv_value_bytes(dtype: ActivationDType) -> u64 {
    match dtype {
        ActivationDType::F32 => 4,
        _ => 2,
    }
}

/// KV cache bytes per token: 2 (K and V) x layers x KV heads x head dim x `value_bytes`.
/// Llama-3.1-8B in BF16: 2 x 32 x 8 x 128 x 2 = 131,072 (128 KiB).
pub fn kv_bytes_per_token(arch: &Architecture, value_bytes: u64) -> u64 {
    2 * u64::from(arch.layers) * u64::from(arch.kv_heads) * u64::from(arch.head_dim) * value_bytes
}

/// Bytes a worker needs in all: (weights + KV for `seqs` sequences of `context` tokens) x 1.2.
pub fn need_bytes(weight_bytes: u64, kv_per_token: u64, context: usize, seqs: usize) -> f64 {
    let kv = kv_per_token as f64 * context as f64 * seqs as f64;
    (weight_bytes as f64 + kv) * OVERHEAD_MARGIN
}

/// The most sequences of `context` tokens that fit on `gpus` GPUs of `memory_gib` each
/// beside the weights; 0 when not even the weights fit.
pub fn max_num_seqs(
    weight_bytes: u64,
    kv_per_token: u64,
    context: usize,
    gpus: u32,
    memory_gib: f64,
) -> usize {
    let room = f64::from(gpus) * memory_gib * GIB / OVERHEAD_MARGIN - weight_bytes as f64;
    let per_seq = kv_per_token as f64 * context as f64;
    if room <= 0.0 || per_seq <= 0.0 {
        return 0;
    }
    (room / per_seq).floor() as usize
}

/// A model on a GPU type: what `sluice models plan` prints (`--json`: this object).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// The model's served name.
    pub model: String,
    /// The GPU type (a GPU table name).
    pub gpu: String,
    /// Memory of one GPU of that type, GiB.
    pub memory_gib: f64,
    /// GPUs per worker planned: the `--gpus` asked, else the config's `[[gpu]]` entry for
    /// the type, else the smallest count that fits.
    pub gpus_per_worker: u32,
    /// Whether `configured_max_num_seqs` sequences fit on `gpus_per_worker` GPUs.
    pub fits: bool,
    /// GiB each GPU holds at `configured_max_num_seqs` (margin included).
    pub vram_gib_per_gpu: f64,
    /// The most sequences of `context_length` tokens that fit on `gpus_per_worker` GPUs.
    pub max_num_seqs: usize,
    /// The sequences the config runs on this type (its `[[gpu]]` entry, else `[engine]`).
    pub configured_max_num_seqs: usize,
    /// The smallest GPU count (of [`GPU_COUNTS`]) on which `configured_max_num_seqs` fit;
    /// `None` when not even 8 do.
    pub min_gpus_per_worker: Option<u32>,
    /// Context length per sequence (`engine.context_length`), tokens.
    pub context_length: usize,
    /// The served weights, GiB.
    pub weights_gib: f64,
    /// KV cache per token, bytes.
    pub kv_cache_bytes_per_token: u64,
    /// KV cache of `configured_max_num_seqs` full sequences, GiB.
    pub kv_cache_gib: f64,
    /// The overhead factor applied ([`OVERHEAD_MARGIN`]).
    pub margin: f64,
}

/// Plan `cfg` on `gpu`, on `gpus` GPUs per worker if given. Errors: a message when the config
/// has no `[architecture]`, or `gpus` is 0.
pub fn plan(cfg: &ModelConfig, gpu: &GpuType, gpus: Option<u32>) -> Result<Plan, String> {
    let arch = cfg.architecture.as_ref().ok_or_else(|| {
        format!(
            "model `{}` has no [architecture] section to size it by",
            cfg.name
        )
    })?;
    if gpus == Some(0) {
        return Err("--gpus must be at least 1".into());
    }
    let on = cfg.on_gpu(Some(&gpu.name));
    let listed = cfg.gpu.iter().find(|c| c.gpu_type == gpu.name);
    let seqs = on.engine.max_num_seqs;
    let context = cfg.engine.context_length;
    let kv = kv_bytes_per_token(arch, kv_value_bytes(cfg.engine.dtype));
    let need = need_bytes(arch.weight_bytes, kv, context, seqs);
    let min_gpus = GPU_COUNTS
        .into_iter()
        .find(|&n| need <= f64::from(n) * gpu.memory_gib * GIB);
    let n = gpus
        .or(listed.map(|c| c.gpus_per_worker))
        .or(min_gpus)
        .unwrap_or(GPU_COUNTS[GPU_COUNTS.len() - 1]);
    let per_gpu = need / f64::from(n);
    Ok(Plan {
        model: cfg.name.clone(),
        gpu: gpu.name.clone(),
        memory_gib: gpu.memory_gib,
        gpus_per_worker: n,
        fits: per_gpu <= gpu.memory_gib * GIB,
        vram_gib_per_gpu: per_gpu / GIB,
        max_num_seqs: max_num_seqs(arch.weight_bytes, kv, context, n, gpu.memory_gib),
        configured_max_num_seqs: seqs,
        min_gpus_per_worker: min_gpus,
        context_length: context,
        weights_gib: arch.weight_bytes as f64 / GIB,
        kv_cache_bytes_per_token: kv,
        kv_cache_gib: kv as f64 * context as f64 * seqs as f64 / GIB,
        margin: OVERHEAD_MARGIN,
    })
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// What `sluice models check` finds wrong with one model config against the GPU table:
/// checksums that are not sha256 hex, a Hub source not pinned to a commit, a context longer
/// than the model's, `[[gpu]]` entries without `[architecture]`, naming an unknown type, with
/// 0 GPUs, listed twice, or whose settings do not fit their type. Empty: the config is fine.
pub fn check(cfg: &ModelConfig, table: &GpuTable) -> Vec<String> {
    let mut problems = Vec::new();
    let w = &cfg.weights;
    for (file, sha) in std::iter::once((&w.file, &w.sha256))
        .chain(w.extra_files.iter().map(|f| (&f.file, &f.sha256)))
    {
        if !is_hex(sha, 64) {
            problems.push(format!("sha256 of `{file}` is not 64 hex digits"));
        }
    }
    if let SourceSettings::Hub { revision, .. } = &cfg.source {
        if !is_hex(revision, 40) {
            problems.push(format!(
                "source.revision `{revision}` is not a commit hash (40 hex digits): a branch \
                 moves, the checksums would stop matching"
            ));
        }
    }
    if let Some(arch) = &cfg.architecture {
        if cfg.engine.context_length > arch.max_context {
            problems.push(format!(
                "engine.context_length {} exceeds the model's {}",
                cfg.engine.context_length, arch.max_context
            ));
        }
    } else if !cfg.gpu.is_empty() {
        problems.push("[[gpu]] entries need an [architecture] section".into());
    }
    for (i, choice) in cfg.gpu.iter().enumerate() {
        let t = &choice.gpu_type;
        if cfg.gpu[..i].iter().any(|c| &c.gpu_type == t) {
            problems.push(format!("GPU type `{t}` is listed twice"));
        }
        let Some(gpu) = table.get(t) else {
            problems.push(format!("GPU type `{t}` is not in the GPU table"));
            continue;
        };
        if choice.gpus_per_worker == 0 || choice.max_num_seqs == 0 {
            problems.push(format!(
                "[[gpu]] `{t}`: gpus_per_worker and max_num_seqs must be > 0"
            ));
            continue;
        }
        if let Some(u) = choice.gpu_memory_utilization {
            if !(u > 0.0 && u <= 1.0) {
                problems.push(format!(
                    "[[gpu]] `{t}`: gpu_memory_utilization must be in (0, 1]"
                ));
            }
        }
        match plan(cfg, gpu, Some(choice.gpus_per_worker)) {
            Ok(p) if !p.fits => problems.push(format!(
                "on {t}: {} sequences of {} tokens need {:.1} GiB per GPU on {} GPU(s), more \
                 than its {:.1} GiB (at most {} fit)",
                p.configured_max_num_seqs,
                p.context_length,
                p.vram_gib_per_gpu,
                p.gpus_per_worker,
                p.memory_gib,
                p.max_num_seqs
            )),
            Ok(_) => {}
            Err(e) => problems.push(e),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// meta-llama/Llama-3.1-8B-Instruct's config.json: 32 layers, 8 KV heads, 128 dims.
    fn llama_8b() -> Architecture {
        Architecture {
            parameters_b: 8.0,
            layers: 32,
            kv_heads: 8,
            head_dim: 128,
            max_context: 131_072,
            weight_bytes: 16_000_000_000,
        }
    }

    fn h100() -> GpuType {
        GpuType {
            name: "H100-80GB".into(),
            memory_gib: 80.0,
            bandwidth_gb_per_sec: 3350.0,
            flex_price_per_sec: 0.00116,
            active_price_per_sec: 0.00093,
            nvidia_smi_names: vec!["H100 80GB".into()],
        }
    }

    #[test]
    fn llama_8b_kv_cache_is_128_kib_per_token_in_bf16() {
        // 32 layers x 8 KV heads x 128 dims x 2 (K, V) x 2 bytes.
        assert_eq!(kv_bytes_per_token(&llama_8b(), 2), 128 * 1024);
        assert_eq!(
            kv_bytes_per_token(&llama_8b(), kv_value_bytes(ActivationDType::F32)),
            256 * 1024
        );
    }

    #[test]
    fn need_is_weights_plus_kv_plus_twenty_percent() {
        // 16 GB + 128 KiB x 8192 tokens (1 GiB per sequence) x 16 = 16e9 + 16 GiB, x 1.2.
        let need = need_bytes(16_000_000_000, 128 * 1024, 8192, 16);
        let by_hand = (16e9 + 16.0 * GIB) * 1.2;
        assert!((need - by_hand).abs() < 1.0, "{need} vs {by_hand}");
        // = (14.90 + 16) x 1.2 = 37.08 GiB: fits one 80 GiB GPU.
        assert!((need / GIB - 37.08).abs() < 0.01, "{}", need / GIB);
    }

    #[test]
    fn the_most_sequences_that_fit_by_hand() {
        // 80 GiB / 1.2 = 66.67 GiB; minus 16e9 B (14.90 GiB) = 51.77 GiB; 1 GiB per 8K
        // sequence: 51.
        assert_eq!(max_num_seqs(16_000_000_000, 128 * 1024, 8192, 1, 80.0), 51);
        // Two GPUs: 133.33 - 14.90 = 118.43: 118.
        assert_eq!(max_num_seqs(16_000_000_000, 128 * 1024, 8192, 2, 80.0), 118);
        // Weights alone too large: none.
        assert_eq!(max_num_seqs(200_000_000_000, 128 * 1024, 8192, 1, 80.0), 0);
    }

    fn model(arch: Architecture, seqs: usize, context: usize) -> ModelConfig {
        let text = format!(
            r#"
name = "m"
[source]
kind = "hub"
repo = "o/m"
revision = "0123456789abcdef0123456789abcdef01234567"
[weights]
file = "m.gguf"
sha256 = "{}"
[engine]
max_num_seqs = {seqs}
context_length = {context}
"#,
            "a".repeat(64)
        );
        let mut cfg: ModelConfig = toml::from_str(&text).unwrap();
        cfg.architecture = Some(arch);
        cfg
    }

    #[test]
    fn a_70b_model_in_bf16_needs_four_80gb_gpus_for_8_sequences() {
        // Llama-3.3-70B: 80 layers, 8 KV heads, 128 dims; 141 GB of BF16 weights.
        let arch = Architecture {
            parameters_b: 70.6,
            layers: 80,
            kv_heads: 8,
            head_dim: 128,
            max_context: 131_072,
            weight_bytes: 141_000_000_000,
        };
        let cfg = model(arch, 8, 8192);
        let p = plan(&cfg, &h100(), None).unwrap();
        // KV 320 KiB/token x 8192 x 8 = 20 GiB; (131.3 + 20) x 1.2 = 181.6 GiB: > 160, <= 320.
        assert_eq!(p.kv_cache_bytes_per_token, 320 * 1024);
        assert_eq!(p.min_gpus_per_worker, Some(4));
        assert_eq!(p.gpus_per_worker, 4);
        assert!(p.fits);
        assert!(
            (p.vram_gib_per_gpu - 45.39).abs() < 0.01,
            "{}",
            p.vram_gib_per_gpu
        );
        let two = plan(&cfg, &h100(), Some(2)).unwrap();
        assert!(!two.fits);
        // 160 / 1.2 = 133.33 - 131.32 = 2.02 GiB: 0 sequences of 2.5 GiB.
        assert_eq!(two.max_num_seqs, 0);
    }

    #[test]
    fn check_reports_what_does_not_fit_and_unpinned_sources() {
        let table = GpuTable {
            source: "test".into(),
            gpu: vec![h100()],
        };
        let mut cfg = model(llama_8b(), 64, 8192);
        cfg.gpu = vec![crate::GpuChoice {
            gpu_type: "H100-80GB".into(),
            gpus_per_worker: 1,
            max_num_seqs: 51,
            gpu_memory_utilization: None,
        }];
        assert_eq!(check(&cfg, &table), Vec::<String>::new());
        cfg.gpu[0].max_num_seqs = 52;
        let problems = check(&cfg, &table);
        assert!(problems[0].contains("at most 51 fit"), "{problems:?}");
        cfg.gpu[0].gpu_type = "H200".into();
        cfg.source = SourceSettings::Hub {
            repo: "o/m".into(),
            revision: "main".into(),
        };
        let problems = check(&cfg, &table);
        assert!(problems.iter().any(|p| p.contains("not a commit hash")));
        assert!(problems.iter().any(|p| p.contains("not in the GPU table")));
    }

    #[test]
    fn a_worker_gets_the_settings_of_its_gpu_type() {
        let mut cfg = model(llama_8b(), 4, 8192);
        cfg.gpu = vec![
            crate::GpuChoice {
                gpu_type: "H100-80GB".into(),
                gpus_per_worker: 1,
                max_num_seqs: 48,
                gpu_memory_utilization: Some(0.92),
            },
            crate::GpuChoice {
                gpu_type: "L40S".into(),
                gpus_per_worker: 2,
                max_num_seqs: 24,
                gpu_memory_utilization: None,
            },
        ];
        let h = cfg.on_gpu(Some("H100-80GB"));
        assert_eq!(h.engine.max_num_seqs, 48);
        assert_eq!(h.engine.gpu_memory_utilization, Some(0.92));
        assert_eq!(h.scaling.gpus_per_worker, 1);
        let l = cfg.on_gpu(Some("L40S"));
        assert_eq!((l.engine.max_num_seqs, l.scaling.gpus_per_worker), (24, 2));
        assert_eq!(l.engine.gpu_memory_utilization, None);
        assert_eq!(cfg.on_gpu(None), cfg);
        assert_eq!(cfg.on_gpu(Some("RTX4090")), cfg);
    }
}
