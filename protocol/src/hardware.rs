//! What a model needs from hardware and how its engine runs there: the `[engine]`,
//! `[architecture]` and `[[gpu]]` sections of a model config, and the GPU table
//! (`configs/gpus.toml`). The sizing arithmetic over them is in [`crate::sizing`].

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The `[engine]` section: the backend, batch size, context length, dtype, prefix cache and
/// threads of a worker's engine. `max_num_seqs` and `context_length` are required and must be
/// > 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// Which engine runs the model: `auto` (llama.cpp on a CPU worker when the build has it,
    /// mistral.rs on a GPU), `mistralrs` or `llamacpp`.
    #[serde(default)]
    pub backend: EngineBackend,
    /// Sequences mistral.rs batches at once; also the jobs a worker takes concurrently.
    pub max_num_seqs: usize,
    /// Context length served (prompt + completion tokens).
    pub context_length: usize,
    /// Activation dtype of the engine. mistral.rs's `auto` picks F16 on CPU, where every
    /// quantized matmul then converts to F32 and back; chosen per model by measurement.
    #[serde(default)]
    pub dtype: ActivationDType,
    /// Reuse the KV cache of a repeated prompt prefix (mistral.rs's prefix cacher). Absent:
    /// on for GPU workers, off on CPU. `true` on a CPU worker is refused at load: mistral.rs
    /// 0.8.1 never evicts CPU prefix-cache entries (`PrefixCacheManagerV2::evict_caches` counts
    /// only caches on a GPU), so every request's KV cache stayed resident (measured: +22 MB per
    /// 64-token chat, RSS 708 -> 4,079 MB over 150 requests).
    #[serde(default)]
    pub prefix_cache: Option<bool>,
    /// Threads one engine uses for its matmuls and attention (`RAYON_NUM_THREADS` of the worker
    /// process). 0: every core of the host (one engine per host). With `n > 0` the local
    /// actuator pins each worker to its own `n` cores, so a host runs `cores / n` engines side
    /// by side and refuses further starts for want of free cores (capacity, not a crash).
    #[serde(default)]
    pub cpu_threads: usize,
    /// GPU workers: the share of each GPU's memory the engine may fill (weights, activations
    /// and the PagedAttention KV cache, which gets what the rest leaves), 0 < x <= 1; vLLM's
    /// `gpu_memory_utilization`, mistral.rs's `MemoryGpuConfig::Utilization`. Default 0.9.
    /// Ignored on CPU (PagedAttention is CUDA/Metal only in mistral.rs 0.8.1). A `[[gpu]]`
    /// entry's value replaces it on that GPU type.
    #[serde(default)]
    pub gpu_memory_utilization: Option<f64>,
    /// How `/v1/embeddings` pools a sequence's hidden states into one vector (llama.cpp
    /// backend). Absent: as the GGUF says (`{architecture}.pooling_type`, which embedding
    /// models carry); a model that says neither serves no embeddings (a 400 naming this
    /// setting).
    #[serde(default)]
    pub pooling: Option<Pooling>,
}

/// How an embedding is pooled from a sequence's hidden states (`engine.pooling`), as
/// llama.cpp's `--pooling` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// The mean over every token.
    Mean,
    /// The first token's (BERT's `[CLS]`).
    Cls,
    /// The last token's (decoder embedding models).
    Last,
}

/// The engine backend of a model's workers (`engine.backend`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngineBackend {
    /// llama.cpp on CPU workers (when built in), mistral.rs on GPU workers.
    #[default]
    Auto,
    /// mistral.rs (embedded; GGUF and safetensors, CUDA, tensor parallel).
    Mistralrs,
    /// llama.cpp (embedded through `llama-cpp-2`; GGUF on CPU).
    Llamacpp,
}

/// Activation dtype of the engine (`engine.dtype`), mapped onto mistral.rs's `ModelDType`. Default
/// `auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationDType {
    /// `auto`: mistral.rs chooses (F16 on CPU).
    #[default]
    Auto,
    /// `f32`: 32-bit floats.
    F32,
    /// `f16`: IEEE 16-bit floats.
    F16,
    /// `bf16`: bfloat16.
    Bf16,
}

/// The `[architecture]` section: the model's shape as its `config.json` states it, and the
/// size of its served weights; what [`crate::sizing`] needs. Each config says where its
/// numbers come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Architecture {
    /// Parameters, in billions (informational; sizing uses `weight_bytes`).
    pub parameters_b: f64,
    /// Transformer layers (`num_hidden_layers`).
    pub layers: u32,
    /// Key/value heads per layer (`num_key_value_heads`; grouped-query attention).
    pub kv_heads: u32,
    /// Dimensions per attention head (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: u32,
    /// Longest context the model was trained for (`max_position_embeddings`), tokens.
    pub max_context: usize,
    /// Bytes of the served weight files together (the sum of the source's file sizes): what
    /// the weights take in GPU memory.
    pub weight_bytes: u64,
}

/// One `[[gpu]]` entry: a GPU type a worker of the model may run on and the engine settings
/// for it. The entries' order is the preference order: the autoscaler's GPU pool hands out
/// the first type that has `gpus_per_worker` GPUs free.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuChoice {
    /// The GPU type, a `name` in the GPU table (`configs/gpus.toml`), e.g. `H100-80GB`.
    #[serde(rename = "type")]
    pub gpu_type: String,
    /// GPUs one worker takes of this type (layers split across them, or tensor parallel in a
    /// `nccl` build for safetensors models).
    pub gpus_per_worker: u32,
    /// `engine.max_num_seqs` on this type.
    pub max_num_seqs: usize,
    /// `engine.gpu_memory_utilization` on this type; the `[engine]` value (or 0.9) if absent.
    #[serde(default)]
    pub gpu_memory_utilization: Option<f64>,
}

/// One row of the GPU table: a GPU type's memory, bandwidth and price.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuType {
    /// The name configs use, e.g. `H100-80GB`.
    pub name: String,
    /// Memory per GPU as the driver reports it (`nvidia-smi --query-gpu=memory.total`), GiB.
    pub memory_gib: f64,
    /// Memory bandwidth, GB/s (the vendor's datasheet).
    pub bandwidth_gb_per_sec: f64,
    /// What a serverless (flex) worker on one GPU of this type costs per second, dollars.
    pub flex_price_per_sec: f64,
    /// What an always-on (active) worker costs per second, dollars.
    pub active_price_per_sec: f64,
    /// Substrings of `nvidia-smi`'s name of this GPU (e.g. `H100 80GB`), for recognising it;
    /// matched case-insensitively, first row first.
    #[serde(default)]
    pub nvidia_smi_names: Vec<String>,
}

/// The GPU table (`configs/gpus.toml`: `[[gpu]]` rows and a `source` note).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuTable {
    /// Where the prices and datasheet numbers come from, and when they were read.
    pub source: String,
    /// The rows.
    pub gpu: Vec<GpuType>,
}

impl GpuTable {
    /// Parse a GPU table. Errors: [`crate::ConfigError`] when the file cannot be read or
    /// parsed, or names one type twice.
    pub fn load(path: &Path) -> Result<Self, crate::ConfigError> {
        let table: GpuTable = crate::config::load_toml(path)?;
        let mut names: Vec<&str> = table.gpu.iter().map(|g| g.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(crate::ConfigError::Invalid {
                path: path.to_path_buf(),
                message: format!("GPU type `{}` is listed twice", w[0]),
            });
        }
        Ok(table)
    }

    /// The row named `name`.
    pub fn get(&self, name: &str) -> Option<&GpuType> {
        self.gpu.iter().find(|g| g.name == name)
    }

    /// The type of a GPU as `nvidia-smi` names it (`NVIDIA H100 80GB HBM3`): the first row one
    /// of whose `nvidia_smi_names` the name contains, ignoring case.
    pub fn identify(&self, smi_name: &str) -> Option<&GpuType> {
        let name = smi_name.to_ascii_lowercase();
        self.gpu.iter().find(|g| {
            g.nvidia_smi_names
                .iter()
                .any(|n| name.contains(&n.to_ascii_lowercase()))
        })
    }
}

impl crate::ModelConfig {
    /// This config as a worker on `gpu_type` runs it: the `[[gpu]]` entry's `max_num_seqs`,
    /// `gpu_memory_utilization` and `gpus_per_worker` replace the `[engine]` and `[scaling]`
    /// values. A type the config does not list (or `None`) leaves it as it is.
    pub fn on_gpu(&self, gpu_type: Option<&str>) -> crate::ModelConfig {
        let mut cfg = self.clone();
        if let Some(choice) = gpu_type.and_then(|t| self.gpu.iter().find(|c| c.gpu_type == t)) {
            cfg.engine.max_num_seqs = choice.max_num_seqs;
            cfg.scaling.gpus_per_worker = choice.gpus_per_worker;
            if choice.gpu_memory_utilization.is_some() {
                cfg.engine.gpu_memory_utilization = choice.gpu_memory_utilization;
            }
        }
        cfg
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> GpuTable {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/gpus.toml");
        GpuTable::load(&path).unwrap()
    }

    #[test]
    fn nvidia_smi_names_map_to_their_rows() {
        let table = shipped();
        let id = |n: &str| table.identify(n).map(|g| g.name.as_str());
        assert_eq!(id("NVIDIA H100 80GB HBM3"), Some("H100-80GB"));
        assert_eq!(id("NVIDIA H200"), Some("H200-141GB"));
        assert_eq!(id("NVIDIA A100-SXM4-80GB"), Some("A100-80GB"));
        assert_eq!(id("NVIDIA L40S"), Some("L40S"));
        assert_eq!(id("NVIDIA L40"), Some("L40"));
        assert_eq!(id("NVIDIA L4"), Some("L4"));
        assert_eq!(id("NVIDIA RTX A4000"), Some("A4000"));
        assert_eq!(id("NVIDIA A40"), Some("A40"));
        assert_eq!(id("NVIDIA GeForce RTX 4090"), Some("RTX4090"));
        assert_eq!(id("NVIDIA A100-SXM4-40GB"), None, "not in the table");
    }
}
