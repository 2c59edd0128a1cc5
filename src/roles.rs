//! The single-role commands: `gateway`, `worker`, `autoscaler run`, and the pieces `serve`
//! shares with them.

use crate::{Common, Exposure, StoreArgs};
use anyhow::Context;
use engine::{Engine, LlmHandler, ModelFiles};
use gateway::{AppState, Gateway, ServedModel};
use protocol::config::{Deployment, GatewaySettings};
use queue::{JobStore, MemoryStore, RedisStore, StoreSettings};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use weights::Cache;
use worker::{run_worker, EchoHandler, JobHandler, WorkerOptions};

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A random hex string of `bits` bits (at most 128): worker tokens and ids.
pub fn random_hex(bits: u32) -> String {
    let hex = format!("{:032x}", rand::random::<u128>());
    hex[..(bits as usize / 4).min(32)].to_string()
}

/// The gateway state for a deployment. The gateway needs each model's tokenizer only (to
/// count prompt tokens before queueing), which it reads from the cache's tokenizer sidecar; it
/// never fetches or converts weights. A model not in the cache is served without that check
/// (the engine still refuses over-long prompts), and the operator is told how to add it.
pub fn gateway_state(
    dep: &Deployment,
    store: Arc<dyn JobStore>,
    worker_token: String,
) -> anyhow::Result<AppState> {
    let cache = Cache::from_env();
    let mut models = BTreeMap::new();
    for cfg in &dep.models {
        let tokenizer = match cache.lookup(cfg) {
            Ok(cached) => {
                Some(Arc::new(cached.prompt_tokenizer().with_context(|| {
                    format!("reading the tokenizer of `{}`", cfg.name)
                })?))
            }
            Err(_) => {
                tracing::warn!(
                    model = %cfg.name,
                    "not in the model cache: prompts are not counted before queueing; \
                     run `sluice models pull {}` where this gateway runs",
                    cfg.name
                );
                None
            }
        };
        models.insert(
            cfg.name.clone(),
            ServedModel {
                config: cfg.clone(),
                tokenizer,
            },
        );
    }
    let custom = dep
        .config
        .custom
        .iter()
        .map(|c| (c.name.clone(), c.clone()))
        .collect();
    Ok(Arc::new(Gateway {
        store,
        models,
        custom,
        settings: dep.config.gateway.clone(),
        worker_token,
        long_poll: Duration::from_secs(20),
        keys: gateway::auth::Keyring::new(&dep.config.gateway).map_err(anyhow::Error::msg)?,
        webhook_targets: gateway::webhooks::Targets::new(&dep.config.gateway.webhook_allow_cidrs)
            .map_err(anyhow::Error::msg)?,
        batches: Some(Arc::new(
            gateway::batch::Batches::open(&dep.config.gateway, &cache.root().join("files"))
                .context("opening the files directory")?,
        )),
    }))
}

/// The job store the flag (else the config) names, with the config's settings.
/// `housekeeping`: whether this process sweeps (gateways do; a lone autoscaler does not).
pub async fn job_store(
    dep: &Deployment,
    args: &StoreArgs,
    housekeeping: bool,
) -> anyhow::Result<Arc<dyn JobStore>> {
    let g = &dep.config.gateway;
    let settings = StoreSettings {
        max_queue: g.max_queue,
        worker_timeout: Duration::from_secs(g.worker_timeout_secs),
        retention: Duration::from_secs(g.result_retention_secs),
        sync_retention: Duration::from_secs(g.sync_result_retention_secs),
        max_retries: g.max_retries,
        // Never sooner than a silent worker would lose its jobs anyway.
        orphan_after: Duration::from_secs(g.worker_timeout_secs.max(30)),
        housekeeping,
    };
    let url = args.url(dep);
    if url == "memory" {
        return Ok(MemoryStore::start(settings));
    }
    if !url.starts_with("redis://") && !url.starts_with("rediss://") {
        anyhow::bail!("unknown job store `{url}`: use `memory` or `redis://HOST:PORT/DB`");
    }
    let store = RedisStore::start(url, settings)?;
    match store.check().await {
        Ok(()) => eprintln!("sluice: job store: {url}"),
        // Start anyway: requests get 503 until Redis answers, then it just works.
        Err(e) => eprintln!(
            "sluice: job store {url} is not answering yet ({e}); requests get 503 until it does"
        ),
    }
    Ok(store)
}

/// Listen where `common` says. An address other than loopback needs client keys in the
/// config, or `--insecure-no-auth` (then a warning at every start). Errors: the address cannot
/// be bound, or is refused for want of keys.
pub async fn bind(
    common: &Common,
    gateway: &GatewaySettings,
    exposure: &Exposure,
) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", common.host, common.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let ip = listener.local_addr()?.ip();
    if !ip.is_loopback() && !gateway.has_client_keys() {
        anyhow::ensure!(
            exposure.insecure_no_auth,
            "refusing to serve {addr} without client keys: anyone who can reach it could run \
             jobs on your workers. Add keys to the config's [gateway] (`api_keys = [\"...\"]`, or \
             [[gateway.keys]] tables with limits), listen on 127.0.0.1, or pass \
             --insecure-no-auth to serve it open on purpose"
        );
        eprintln!(
            "sluice: WARNING: serving {addr} with no client keys (--insecure-no-auth): anyone \
             who can reach it can run jobs"
        );
        tracing::warn!(%addr, "serving without client keys (--insecure-no-auth)");
    }
    Ok(listener)
}

pub async fn gateway(
    common: Common,
    store: StoreArgs,
    exposure: Exposure,
    token: Option<String>,
    keda_addr: Option<String>,
) -> anyhow::Result<()> {
    let dep = Deployment::load(&common.config)?;
    let token = token.unwrap_or_else(|| {
        let t = random_hex(128);
        eprintln!("sluice: worker token (set SLUICE_WORKER_TOKEN to choose one): {t}");
        t
    });
    let jobs = job_store(&dep, &store, true).await?;
    if let Some(addr) = keda_addr.or(dep.config.gateway.keda_scaler_addr.clone()) {
        let endpoints = crate::fleet::endpoints(&dep)
            .into_iter()
            .map(|e| (e.name, e.scaling))
            .collect();
        let scaler = autoscaler::keda::KedaScaler::new(jobs.clone(), endpoints);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding the KEDA scaler's address {addr}"))?;
        eprintln!(
            "sluice: KEDA external scaler (gRPC) on {}",
            listener.local_addr()?
        );
        tokio::spawn(async move {
            if let Err(e) = autoscaler::keda::serve(scaler, listener, shutdown_signal()).await {
                tracing::error!("KEDA scaler: {e}");
            }
        });
    }
    let state = gateway_state(&dep, jobs, token)?;
    gateway::webhooks::spawn(state.clone());
    gateway::batch::spawn(state.clone());
    let listener = bind(&common, &dep.config.gateway, &exposure).await?;
    eprintln!(
        "sluice: gateway listening on http://{}",
        listener.local_addr()?
    );
    gateway::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

/// Who a worker is and where it reports: from flags, else from RunPod's worker environment.
pub struct WorkerIdentity {
    pub gateway: String,
    pub endpoint: String,
    pub worker_id: String,
    pub token: String,
}

impl WorkerIdentity {
    pub fn resolve(
        common: &Common,
        endpoint: Option<String>,
        gateway: Option<String>,
        token: Option<String>,
        worker_id: Option<String>,
    ) -> anyhow::Result<Self> {
        // RUNPOD_WEBHOOK_GET_JOB = {gateway}/v2/{endpoint}/job-take/$ID?...
        let from_env = std::env::var("RUNPOD_WEBHOOK_GET_JOB")
            .ok()
            .and_then(|url| {
                let (gw, ep) = protocol::routes::split_worker_url(&url)?;
                Some((gw.to_string(), ep.to_string()))
            });
        let (env_gw, env_ep) = from_env.unzip();
        let env = |k: &str| std::env::var(k).ok();
        Ok(WorkerIdentity {
            gateway: gateway
                .or(env_gw)
                .unwrap_or_else(|| format!("http://{}:{}", common.host, common.port)),
            endpoint: endpoint.or(env_ep).context("--endpoint is required (or RUNPOD_WEBHOOK_GET_JOB)")?,
            worker_id: worker_id
                .or_else(|| env("RUNPOD_POD_ID"))
                .unwrap_or_else(|| format!("w-{}", random_hex(64))),
            token: token
                .or_else(|| env("RUNPOD_AI_API_KEY"))
                .context("a worker token is required: --worker-token, SLUICE_WORKER_TOKEN or RUNPOD_AI_API_KEY")?,
        })
    }
}

/// `sluice worker --handler`: what runs the jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HandlerKind {
    /// The endpoint's model, on mistral.rs.
    Llm,
    /// Returns each job's input at once: for measuring the queue path itself.
    Echo,
}

/// The endpoint's model, pulled into the cache (held there for the worker's life) and loaded,
/// with the settings of the GPU type the launcher gave (`SLUICE_GPU_TYPE`, see
/// [`protocol::ModelConfig::on_gpu`]). Prints the load time for the local actuator.
async fn load_engine(
    common: &Common,
    endpoint: &str,
) -> anyhow::Result<(Engine, protocol::ModelConfig, weights::InUse)> {
    let t0 = Instant::now();
    let dep = Deployment::load(&common.config)?;
    let model = dep.model(endpoint).with_context(|| {
        format!(
            "endpoint `{endpoint}` is not a model in {}",
            common.config.display()
        )
    })?;
    let gpu_type = gpu_type_here(&dep, model);
    let cfg = model.on_gpu(gpu_type.as_deref());
    // Held for the worker's life: the disk tier's eviction leaves the model alone.
    let cache = Cache::from_env();
    let held = cache.hold(&cfg.name)?;
    let cached = cache.pull(&cfg)?;
    if let Some(budget) = dep.config.cache.budget_bytes() {
        cache.evict_to(budget, Some(&cfg.name))?;
    }
    let t_fetch = t0.elapsed();
    let (served, original, sidecar) = (
        cached.served_path(),
        cached.dir.join(&cached.original.file),
        cached.tokenizer_dir(),
    );
    let backend = Engine::backend_for(&cfg, gpu_type.is_some());
    let files = ModelFiles {
        served: &served,
        original: &original,
        tokenizer_dir: sidecar.as_deref(),
    };
    let file = Engine::weights_file(&files, backend).display().to_string();
    let engine = Engine::load(&cfg, files, backend).await?;
    let t_load = t0.elapsed() - t_fetch;
    // For the autoscaler's cold-start accounting (it reads our stdout).
    println!("{}", autoscaler::local::phase_line(t_load));
    tracing::info!(
        fetch_ms = t_fetch.as_millis() as u64,
        load_ms = t_load.as_millis() as u64,
        file,
        ?backend,
        gpu_type = gpu_type.as_deref().unwrap_or("-"),
        max_num_seqs = cfg.engine.max_num_seqs,
        "model loaded"
    );
    Ok((engine, cfg, held))
}

/// The endpoint's engine, loaded and through sluice's pre-flight ([`Engine::preflight`]). A
/// failure to load (the model's pull, checksum or load) or to pass is reported to the gateway
/// as a failed fitness check (`model_load`, `one_token_generation`), shown in the endpoint's
/// health, before the worker exits with it (a crash, which the autoscaler backs off).
async fn checked_engine(
    common: &Common,
    opts: &WorkerOptions,
) -> anyhow::Result<(Engine, protocol::ModelConfig, weights::InUse)> {
    let failed = |check: &'static str, reason: String| async move {
        worker::report_unhealthy(opts, check, &reason).await;
        anyhow::anyhow!("pre-flight check `{check}` failed: {reason}")
    };
    let (engine, cfg, held) = match load_engine(common, &opts.endpoint).await {
        Ok(loaded) => loaded,
        Err(e) => return Err(failed("model_load", format!("{e:#}")).await),
    };
    let t0 = Instant::now();
    if let Err(why) = engine.preflight(&cfg.name).await {
        return Err(failed("one_token_generation", why).await);
    }
    tracing::info!(
        preflight_ms = t0.elapsed().as_millis() as u64,
        "pre-flight passed"
    );
    Ok((engine, cfg, held))
}

/// The GPU type this worker runs on: `SLUICE_GPU_TYPE` (the local actuator sets it), else, for
/// a model with `[[gpu]]` entries, the first GPU `nvidia-smi` lists, typed by the GPU table
/// (a Pod on Kubernetes sees only its own GPUs). `None` on a CPU or an unknown GPU.
fn gpu_type_here(dep: &Deployment, model: &protocol::ModelConfig) -> Option<String> {
    if let Ok(t) = std::env::var("SLUICE_GPU_TYPE") {
        return Some(t);
    }
    if model.gpu.is_empty() {
        return None;
    }
    let csv = autoscaler::gpus::nvidia_smi()?;
    let (_, first) = csv.lines().next()?.split_once(',')?;
    let table = dep.gpu_table().ok()?;
    table.identify(first.trim()).map(|g| g.name.clone())
}

/// A tensor-parallel rank (mistral.rs re-executed us with our own arguments, see
/// [`engine::devices::is_tensor_parallel_rank`]): load the engine, which then serves the rank
/// and does not return; never register as a worker.
pub async fn tensor_parallel_rank(common: Common, endpoint: &str) -> anyhow::Result<()> {
    load_engine(&common, endpoint).await?;
    anyhow::bail!("the engine of a tensor-parallel rank returned")
}

/// Before the runtime's threads exist (setting variables is only sound then): what a worker
/// process's libraries read from the environment. `RUST_LIB_BACKTRACE=0` unless set:
/// RUST_BACKTRACE=1 in a shell also makes every library error capture a backtrace (std reads
/// RUST_LIB_BACKTRACE first), and mistral.rs's loader formats a candle error on its way;
/// symbolizing it cost ~170 ms of each cold start (perf, SmolLM2). Panics keep theirs.
/// `MISTRALRS_NO_NCCL=1` unless this worker runs tensor parallel
/// ([`engine::devices::tensor_parallel`]), so a `nccl` build serves GGUF models and one-GPU
/// workers without NCCL.
pub fn prepare_worker_process(config: &std::path::Path, endpoint: Option<&str>) {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    let gpus = engine::devices::visible_gpus(std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref());
    let kind = endpoint.and_then(|e| Some(Deployment::load(config).ok()?.model(e)?.weights.kind));
    let tp = kind.is_some_and(|k| engine::devices::tensor_parallel(k, gpus));
    if !tp && std::env::var_os(engine::devices::NO_NCCL).is_none() {
        std::env::set_var(engine::devices::NO_NCCL, "1");
    }
}

pub async fn worker(
    common: Common,
    id: WorkerIdentity,
    handler: HandlerKind,
    concurrency: usize,
    ping_interval: Duration,
) -> anyhow::Result<()> {
    // An engine takes one job per request, so that an endpoint's workers share bursts; the
    // echo handler (queue benchmarks) takes whole batches. The hold on the model in the
    // cache is kept until we exit.
    let mut opts = WorkerOptions {
        gateway: id.gateway,
        endpoint: id.endpoint,
        worker_id: id.worker_id,
        token: id.token,
        concurrency,
        max_take: concurrency,
        ping_interval,
    };
    let (handler, _held): (Arc<dyn JobHandler>, Option<weights::InUse>) = match handler {
        HandlerKind::Echo => (Arc::new(EchoHandler), None),
        HandlerKind::Llm => {
            let (engine, cfg, held) = checked_engine(&common, &opts).await?;
            (opts.concurrency, opts.max_take) = (cfg.engine.max_num_seqs, 1);
            (Arc::new(LlmHandler { engine }), Some(held))
        }
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    run_worker(handler, opts, shutdown, Duration::from_secs(10)).await
}

/// `sluice autoscaler run`: the control loop on the configured store, local worker processes.
pub async fn autoscaler(
    common: Common,
    store: StoreArgs,
    gateway: String,
    token: String,
) -> anyhow::Result<()> {
    let dep = Deployment::load(&common.config)?;
    if store.url(&dep) == "memory" {
        anyhow::bail!(
            "`sluice autoscaler run` needs the store the gateways share: --queue redis://HOST:PORT/DB \
             (`sluice serve` runs its own autoscaler on its in-memory store)"
        );
    }
    let store = job_store(&dep, &store, false).await?;
    let actuator = crate::fleet::actuator(&dep, &common.config, &gateway, &token)?;
    let endpoints = crate::fleet::endpoints(&dep);
    for e in &endpoints {
        eprintln!(
            "sluice: autoscaling {}: {}..{} workers, {:?} {}, idle timeout {} s",
            e.name,
            e.scaling.min_workers,
            e.scaling.max_workers,
            e.scaling.scaler,
            e.scaling.scaler_value,
            e.scaling.idle_timeout_secs
        );
    }
    autoscaler::Controller::new(store, actuator, endpoints, Default::default())
        .run(shutdown_signal())
        .await;
    Ok(())
}
