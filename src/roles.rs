//! The single-role commands: `gateway`, `worker`, `models pull|ls`, and the pieces `serve`
//! shares with them.

use crate::Common;
use anyhow::Context;
use engine::{run_worker, Engine, LlmHandler, WorkerOptions};
use gateway::{AppState, Gateway, ServedModel};
use protocol::config::Deployment;
use queue::{JobStore, MemoryStore, StoreSettings};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use weights::{Cache, PromptTokenizer};

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

/// The gateway state for a deployment: every model pulled (the gateway needs the tokenizer).
pub fn gateway_state(
    dep: &Deployment,
    store: Arc<dyn JobStore>,
    worker_token: String,
) -> anyhow::Result<AppState> {
    let cache = Cache::from_env();
    let mut models = BTreeMap::new();
    for cfg in &dep.models {
        let cached = cache
            .pull(cfg)
            .with_context(|| format!("fetching model `{}`", cfg.name))?;
        let tokenizer = PromptTokenizer::from_gguf(&cached.served_path())
            .with_context(|| format!("reading the tokenizer of `{}`", cfg.name))?;
        models.insert(
            cfg.name.clone(),
            ServedModel {
                config: cfg.clone(),
                tokenizer: Some(Arc::new(tokenizer)),
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
    }))
}

pub fn memory_store(dep: &Deployment) -> Arc<dyn JobStore> {
    MemoryStore::start(StoreSettings {
        max_queue: dep.config.gateway.max_queue,
        worker_timeout: Duration::from_secs(dep.config.gateway.worker_timeout_secs),
        ..StoreSettings::default()
    })
}

pub async fn bind(common: &Common) -> anyhow::Result<tokio::net::TcpListener> {
    let addr = format!("{}:{}", common.host, common.port);
    tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

pub async fn gateway(common: Common, token: Option<String>) -> anyhow::Result<()> {
    let dep = Deployment::load(&common.config)?;
    let token = token.unwrap_or_else(|| {
        let t = random_hex(128);
        eprintln!("sluice: worker token (set SLUICE_WORKER_TOKEN to choose one): {t}");
        t
    });
    let state = gateway_state(&dep, memory_store(&dep), token)?;
    gateway::webhooks::spawn(state.clone());
    let listener = bind(&common).await?;
    eprintln!(
        "sluice: gateway listening on http://{}",
        listener.local_addr()?
    );
    gateway::serve(listener, state, shutdown_signal()).await?;
    Ok(())
}

pub async fn worker(
    common: Common,
    endpoint: String,
    gateway: Option<String>,
    token: String,
    worker_id: Option<String>,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dep = Deployment::load(&common.config)?;
    let cfg = dep
        .model(&endpoint)
        .with_context(|| {
            format!(
                "endpoint `{endpoint}` is not in {}",
                common.config.display()
            )
        })?
        .clone();
    let cached = Cache::from_env().pull(&cfg)?;
    let t_fetch = t0.elapsed();
    let engine = Engine::load(&cfg, &cached.served_path()).await?;
    let t_load = t0.elapsed();
    tracing::info!(
        fetch_ms = t_fetch.as_millis() as u64,
        load_ms = (t_load - t_fetch).as_millis() as u64,
        file = %cached.served.file,
        "model loaded"
    );
    let opts = WorkerOptions {
        gateway: gateway.unwrap_or_else(|| format!("http://{}:{}", common.host, common.port)),
        endpoint,
        worker_id: worker_id.unwrap_or_else(|| format!("w-{}", random_hex(64))),
        token,
        concurrency: cfg.engine.max_num_seqs,
        ping_interval: Duration::from_secs(5),
    };
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        trigger.cancel();
    });
    run_worker(
        Arc::new(LlmHandler { engine }),
        opts,
        shutdown,
        Duration::from_secs(10),
    )
    .await
}

pub fn models_pull(config: &Path, name: &str) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cfg = protocol::ModelConfig::find(&dep.models_dir, name)?;
    let m = Cache::from_env().pull(&cfg)?;
    println!(
        "{}\t{}\t{}",
        m.name,
        m.format.as_str(),
        m.served_path().display()
    );
    Ok(())
}

pub fn models_export_tokenizer(config: &Path, name: &str, dir: &Path) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cfg = protocol::ModelConfig::find(&dep.models_dir, name)?;
    let m = Cache::from_env().pull(&cfg)?;
    PromptTokenizer::from_gguf(&m.served_path())?.save_hf(dir)?;
    println!("{}", dir.display());
    Ok(())
}

pub fn models_ls(config: &Path) -> anyhow::Result<()> {
    let dep = Deployment::load(config)?;
    let cache = Cache::from_env();
    println!("{:<28} {:<8} {:<10} PATH", "NAME", "FORMAT", "SIZE");
    for cfg in protocol::ModelConfig::load_dir(&dep.models_dir)? {
        match cache.lookup(&cfg) {
            Ok(m) => println!(
                "{:<28} {:<8} {:<10} {}",
                m.name,
                m.format.as_str(),
                format!("{:.1} MB", m.served.bytes as f64 / 1e6),
                m.served_path().display()
            ),
            Err(_) => println!(
                "{:<28} {:<8} {:<10} (not cached)",
                cfg.name,
                cfg.weights.serve_format.as_str(),
                "-"
            ),
        }
    }
    Ok(())
}
