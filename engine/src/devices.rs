//! How an engine uses the devices it is given: PagedAttention with a memory budget on CUDA,
//! layers mapped across the worker's GPUs, and tensor parallelism through NCCL (a `nccl`
//! build, safetensors models) with mistral.rs's re-executed rank processes.

#[cfg(feature = "mistralrs")]
use mistralrs::core::{AutoDeviceMapParams, DeviceMapSetting, MemoryGpuConfig, Pipeline};
#[cfg(feature = "mistralrs")]
use mistralrs::{
    paged_attn_supported, DefaultSchedulerMethod, PagedAttentionConfig, PagedCacheType,
    SchedulerConfig,
};
use protocol::config::WeightKind;
#[cfg(feature = "mistralrs")]
use protocol::EngineSettings;
#[cfg(feature = "mistralrs")]
use std::{num::NonZeroUsize, sync::Arc};
#[cfg(feature = "mistralrs")]
use tokio::sync::Mutex;

#[cfg(feature = "mistralrs")]
/// The share of GPU memory an engine fills when the config names none (vLLM's default).
pub const DEFAULT_GPU_MEMORY_UTILIZATION: f64 = 0.9;

#[cfg(feature = "mistralrs")]
/// PagedAttention for an engine on `device`: on CUDA, with `gpu_memory_utilization` of each
/// GPU's memory (weights, activations, then the KV cache in what is left); `None` on the CPU,
/// where mistral.rs 0.8.1 has no PagedAttention. Errors: a message for a utilization outside
/// (0, 1].
pub fn paged_attention(
    engine: &EngineSettings,
    device: &mistralrs::Device,
) -> Result<Option<PagedAttentionConfig>, String> {
    if device.is_cpu() || !paged_attn_supported() {
        return Ok(None);
    }
    let share = engine
        .gpu_memory_utilization
        .unwrap_or(DEFAULT_GPU_MEMORY_UTILIZATION);
    if !(share > 0.0 && share <= 1.0) {
        return Err(format!(
            "engine.gpu_memory_utilization must be in (0, 1], not {share}"
        ));
    }
    PagedAttentionConfig::new(
        None,
        MemoryGpuConfig::Utilization(share as f32),
        PagedCacheType::Auto,
    )
    .map(Some)
    .map_err(|e| format!("{e:#}"))
}

#[cfg(feature = "mistralrs")]
/// Layers spread over every GPU the worker sees (its `CUDA_VISIBLE_DEVICES`) by their free
/// memory, mistral.rs's automatic mapping; with one device, all on it. In a `nccl` build a
/// safetensors model on several GPUs is split by tensor parallelism instead and this is
/// ignored.
pub fn device_map() -> DeviceMapSetting {
    DeviceMapSetting::Auto(AutoDeviceMapParams::default_text())
}

#[cfg(feature = "mistralrs")]
/// The scheduler: PagedAttention's (sequences admitted by free KV blocks, up to
/// `max_num_seqs`) when the pipeline has a paged cache, else mistral.rs's fixed batch.
pub async fn scheduler(
    pipeline: &Arc<Mutex<dyn Pipeline + Send + Sync>>,
    max_num_seqs: NonZeroUsize,
) -> SchedulerConfig {
    match pipeline.lock().await.get_metadata().cache_config.clone() {
        Some(config) => SchedulerConfig::PagedAttentionMeta {
            max_num_seqs: max_num_seqs.get(),
            config,
        },
        None => SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(max_num_seqs),
        },
    }
}

/// Whether a worker of this model on `gpus` GPUs runs tensor parallel (NCCL): only in a
/// `nccl` build, for safetensors models (mistral.rs's GGUF loader has no tensor parallelism)
/// on more than one GPU. Otherwise `MISTRALRS_NO_NCCL=1` must be set before the engine loads
/// (see [`NO_NCCL`]), or mistral.rs would try NCCL for any model in such a build.
pub fn tensor_parallel(kind: WeightKind, gpus: usize) -> bool {
    cfg!(feature = "nccl") && kind == WeightKind::Safetensors && gpus > 1
}

/// The variable that turns mistral.rs's NCCL path off in a `nccl` build.
pub const NO_NCCL: &str = "MISTRALRS_NO_NCCL";

/// Whether this process is one of mistral.rs's tensor-parallel ranks: in a `nccl` build the
/// engine re-executes our binary with the same arguments for ranks 1..n, marked by an
/// environment variable. Such a process must only load the engine (which then serves its
/// rank and never returns), not register as a worker.
pub fn is_tensor_parallel_rank() -> bool {
    #[cfg(feature = "mistralrs")]
    return mistralrs::core::distributed::is_daemon();
    #[cfg(not(feature = "mistralrs"))]
    false
}

/// The number of GPUs in a `CUDA_VISIBLE_DEVICES` value ("0,1" is 2; empty or unset is 0).
pub fn visible_gpus(value: Option<&str>) -> usize {
    value.map_or(0, |v| v.split(',').filter(|s| !s.trim().is_empty()).count())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_parallel_only_for_safetensors_on_several_gpus_in_a_nccl_build() {
        assert!(!tensor_parallel(WeightKind::Gguf, 4));
        assert!(!tensor_parallel(WeightKind::Safetensors, 1));
        assert_eq!(
            tensor_parallel(WeightKind::Safetensors, 2),
            cfg!(feature = "nccl")
        );
        assert_eq!(visible_gpus(Some("0, 1")), 2);
        assert_eq!(visible_gpus(Some("")), 0);
        assert_eq!(visible_gpus(None), 0);
    }

    #[test]
    #[cfg(feature = "mistralrs")]
    fn no_paged_attention_on_the_cpu() {
        let engine: EngineSettings = serde_json::from_str(
            r#"{"max_num_seqs": 1, "context_length": 8, "gpu_memory_utilization": 2.0}"#,
        )
        .unwrap();
        // On the CPU the setting is not even looked at.
        assert!(paged_attention(&engine, &mistralrs::Device::Cpu)
            .unwrap()
            .is_none());
    }
}
