//! `sluice serve`: the gateway with its job store (in memory unless `--queue` says), and the
//! autoscaler in-process, starting `sluice worker` (or custom endpoint) child processes as work
//! arrives and draining them when idle. Stopped cleanly on Ctrl-C or SIGTERM.

use crate::fleet;
use crate::roles::{bind, gateway_state, job_store, random_hex, shutdown_signal};
use crate::{Common, Exposure, StoreArgs};
use anyhow::Context;
use autoscaler::{ControlSettings, Controller, Endpoint};
use gateway::AppState;
use protocol::config::Deployment;
use queue::JobStore;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

pub async fn run(common: Common, store_args: StoreArgs, exposure: Exposure) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dep = Deployment::load(&common.config)?;
    let models: Vec<String> = dep.models.iter().map(|m| m.name.clone()).collect();
    eprintln!(
        "sluice: [1/3] models {}: checking the cache (first run downloads them)",
        models.join(", ")
    );
    let token = random_hex(128);
    let store = job_store(&dep, &store_args, true).await?;
    let state = pull_and_build_state(&dep, store.clone(), token.clone()).await?;
    gateway::webhooks::spawn(state.clone());
    gateway::batch::spawn(state.clone());
    let names = state.endpoint_names();
    let listener = bind(&common, &dep.config.gateway, &exposure).await?;
    let addr = listener.local_addr()?;
    // The gateway stops last: draining workers still report their results through it.
    let stop = CancellationToken::new();
    let gateway_stop = CancellationToken::new();
    let server = tokio::spawn(gateway::serve(
        listener,
        state,
        gateway_stop.clone().cancelled_owned(),
    ));
    eprintln!("sluice: [2/3] gateway listening on http://{addr}; autoscaler started");

    let gateway_url = format!("http://{addr}");
    let endpoints = fleet::endpoints(&dep);
    let actuator = fleet::actuator(&dep, &common.config, &gateway_url, &token)?;
    let controller = Controller::new(
        store.clone(),
        actuator,
        endpoints.clone(),
        ControlSettings::default(),
    );
    let control = tokio::spawn(controller.run(stop.clone().cancelled_owned()));

    tokio::select! {
        _ = all_always_on_live(&*store, &endpoints) => eprintln!(
            "sluice: [3/3] ready in {:.1} s: OpenAI API at http://{addr}/v1 (models: {}), queue API at http://{addr}/v2/{{endpoint}} (endpoints: {}); scaling {}",
            t0.elapsed().as_secs_f64(),
            models.join(", "),
            names.join(", "),
            scaling_summary(&endpoints),
        ),
        _ = shutdown_signal() => {
            stop.cancel();
        }
    }
    if !stop.is_cancelled() {
        shutdown_signal().await;
    }
    eprintln!("sluice: shutting down");
    stop.cancel();
    control.await.context("autoscaler task")?;
    gateway_stop.cancel();
    // Open SSE streams and long-polls would hold a graceful shutdown; give them a moment.
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(joined) => joined.context("gateway task")??,
        Err(_) => tracing::warn!("gateway connections still open at exit"),
    }
    Ok(())
}

/// `serve` runs the workers here, so it fetches their weights before it takes requests; the
/// gateway state then reads the tokenizer sidecars the pull wrote.
async fn pull_and_build_state(
    dep: &Deployment,
    store: Arc<dyn JobStore>,
    token: String,
) -> anyhow::Result<AppState> {
    let dep = dep.clone();
    tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let cache = weights::Cache::from_env();
        for cfg in &dep.models {
            cache
                .pull(cfg)
                .with_context(|| format!("fetching model `{}`", cfg.name))?;
        }
        gateway_state(&dep, store, token)
    })
    .await?
}

/// Resolves when every endpoint has its always-on workers live; with `min_workers = 0` that
/// is at once, and the first request starts a worker (a cold start).
async fn all_always_on_live(store: &dyn JobStore, endpoints: &[Endpoint]) {
    loop {
        let mut all = true;
        for ep in endpoints {
            let min = ep.scaling.min_workers as usize;
            all &= store
                .metrics(&ep.name)
                .await
                .is_ok_and(|m| m.workers_live >= min);
        }
        if all {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// "name min..max workers" per endpoint, for the ready line.
fn scaling_summary(endpoints: &[Endpoint]) -> String {
    endpoints
        .iter()
        .map(|e| {
            format!(
                "{} {}..{} workers",
                e.name, e.scaling.min_workers, e.scaling.max_workers
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}
