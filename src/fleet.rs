//! What the autoscaler needs from a deployment: how to launch a worker of each endpoint, and
//! each endpoint's scaling settings. Shared by `sluice serve` (in-process autoscaler) and
//! `sluice autoscaler run` (a separate process on a Redis store).

use anyhow::Context;
use autoscaler::actuator::WORKER_ID;
use autoscaler::{Endpoint, GpuPool, Launch, LocalProcesses};
use protocol::config::Deployment;
use protocol::routes::{WorkerRoute, SDK_QUERY};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A `sluice worker` per model endpoint; a custom endpoint's command with RunPod's worker
/// environment (`docs/runpod-protocol.md` section 3), its URLs naming the worker.
fn launches(
    dep: &Deployment,
    config: &Path,
    gateway: &str,
    token: &str,
) -> anyhow::Result<Vec<Launch>> {
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let mut out: Vec<Launch> = dep
        .models
        .iter()
        .map(|m| Launch {
            endpoint: m.name.clone(),
            program: exe.clone(),
            args: [
                "worker",
                "--endpoint",
                &m.name,
                "--gateway",
                gateway,
                "--worker-id",
                WORKER_ID,
                "--config",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([config.display().to_string()])
            .collect(),
            env: vec![("SLUICE_WORKER_TOKEN".into(), token.into())],
            cwd: None,
            gpus_per_worker: m.scaling.gpus_per_worker,
            gpu_types: m
                .gpu
                .iter()
                .map(|g| (g.gpu_type.clone(), g.gpus_per_worker))
                .collect(),
            cpus_per_worker: m.engine.cpu_threads,
            weights: Some(worker_weights(m)),
        })
        .collect();
    for c in &dep.config.custom {
        // The SDK fills in `$ID` (the job) and appends its own query parameters.
        let url = |r: WorkerRoute, tail: &str| r.url(gateway, &c.name, WORKER_ID) + tail;
        let mut env: Vec<(String, String)> = [
            (
                "RUNPOD_WEBHOOK_GET_JOB",
                // (The SDK swaps in job-take-batch itself when it wants several.)
                WorkerRoute::JobTake.url(gateway, &c.name, "$ID") + SDK_QUERY,
            ),
            (
                "RUNPOD_WEBHOOK_POST_OUTPUT",
                url(WorkerRoute::JobDone, &format!("/$ID{SDK_QUERY}")),
            ),
            (
                "RUNPOD_WEBHOOK_POST_STREAM",
                url(WorkerRoute::JobStream, &format!("/$ID{SDK_QUERY}")),
            ),
            ("RUNPOD_WEBHOOK_PING", url(WorkerRoute::Ping, SDK_QUERY)),
            ("RUNPOD_POD_ID", WORKER_ID.to_string()),
            ("RUNPOD_AI_API_KEY", token.to_string()),
            ("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS", "true".to_string()),
            ("RUNPOD_ENDPOINT_ID", c.name.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.push(Launch {
            endpoint: c.name.clone(),
            program: PathBuf::from(&c.command[0]),
            args: c.command[1..].to_vec(),
            env,
            cwd: Some(dep.base_dir.clone()),
            gpus_per_worker: c.scaling.gpus_per_worker,
            gpu_types: vec![],
            cpus_per_worker: 0,
            weights: None,
        });
    }
    Ok(out)
}

pub fn endpoints(dep: &Deployment) -> Vec<Endpoint> {
    let models = dep.models.iter().map(|m| Endpoint {
        name: m.name.clone(),
        scaling: m.scaling.clone(),
        weights: Some(worker_weights(m)),
    });
    let custom = dep.config.custom.iter().map(|c| Endpoint {
        name: c.name.clone(),
        scaling: c.effective_scaling(),
        weights: None,
    });
    models.chain(custom).collect()
}

/// How long a drained worker may take to finish its jobs before it is killed.
const DRAIN_GRACE: Duration = Duration::from_secs(120);

/// The local-process actuator for a deployment, its workers reporting to `gateway`.
pub fn actuator(
    dep: &Deployment,
    config: &Path,
    gateway: &str,
    token: &str,
) -> anyhow::Result<Arc<LocalProcesses>> {
    Ok(Arc::new(LocalProcesses::new(
        launches(dep, config, gateway, token)?,
        gpus(dep),
        &autoscaler::local::allowed_cpus(),
        DRAIN_GRACE,
    )))
}

/// GPUs workers may use: `SLUICE_GPUS` (`0,1` or typed, `H100-80GB:0,1;L40S:2`), else this
/// process's `CUDA_VISIBLE_DEVICES` (untyped), else what `nvidia-smi` lists, typed by the GPU
/// table (none without it).
fn gpus(dep: &Deployment) -> GpuPool {
    if let Ok(spec) =
        std::env::var("SLUICE_GPUS").or_else(|_| std::env::var("CUDA_VISIBLE_DEVICES"))
    {
        return GpuPool::parse(&spec);
    }
    let table = dep.gpu_table().ok();
    GpuPool::detect(table.as_ref())
}

/// The weights file `m`'s workers map, on the backend they will run (the cold-start tiers
/// promote and demote this file).
fn worker_weights(m: &protocol::ModelConfig) -> PathBuf {
    let cache = weights::Cache::from_env();
    let on_gpu = m.scaling.gpus_per_worker > 0 || !m.gpu.is_empty();
    match engine::Engine::backend_for(m, on_gpu) {
        protocol::EngineBackend::Llamacpp => cache.original_path(m),
        _ => cache.served_path(m),
    }
}
