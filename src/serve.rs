//! `sluice serve`: the gateway with the in-memory queue, plus one `sluice worker` child process
//! per endpoint (restarted if it crashes), stopped cleanly on Ctrl-C or SIGTERM.

use crate::roles::{bind, gateway_state, memory_store, random_hex, shutdown_signal};
use crate::Common;
use anyhow::Context;
use protocol::config::Deployment;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub async fn run(common: Common) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dep = Deployment::load(&common.config)?;
    let names: Vec<String> = dep.models.iter().map(|m| m.name.clone()).collect();
    eprintln!(
        "sluice: [1/3] models {}: checking the cache (first run downloads them)",
        names.join(", ")
    );
    let token = random_hex(128);
    let store = memory_store(&dep);
    let state = {
        let (dep, store, token) = (dep.clone(), store.clone(), token.clone());
        tokio::task::spawn_blocking(move || gateway_state(&dep, store, token)).await??
    };
    gateway::webhooks::spawn(state.clone());
    let listener = bind(&common).await?;
    let addr = listener.local_addr()?;
    let stop = CancellationToken::new();
    let server = tokio::spawn(gateway::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));
    eprintln!("sluice: [2/3] gateway listening on http://{addr}; starting workers");

    let gateway_url = format!("http://{addr}");
    let mut supervisors = Vec::new();
    for name in &names {
        let args = WorkerArgs {
            endpoint: name.clone(),
            gateway: gateway_url.clone(),
            config: common.config.clone(),
            token: token.clone(),
        };
        supervisors.push(tokio::spawn(supervise(args, stop.clone())));
    }

    let ready = async {
        loop {
            let mut all = true;
            for name in &names {
                all &= store
                    .metrics(name)
                    .await
                    .map(|m| m.workers_live > 0)
                    .unwrap_or(false);
            }
            if all {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::select! {
        _ = ready => eprintln!(
            "sluice: [3/3] ready in {:.1} s: OpenAI API at http://{addr}/v1 (models: {})",
            t0.elapsed().as_secs_f64(),
            names.join(", ")
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
    for s in supervisors {
        let _ = s.await;
    }
    // Open SSE streams and long-polls would hold a graceful shutdown; give them a moment.
    match tokio::time::timeout(Duration::from_secs(5), server).await {
        Ok(joined) => joined.context("gateway task")??,
        Err(_) => tracing::warn!("gateway connections still open at exit"),
    }
    Ok(())
}

#[derive(Clone)]
struct WorkerArgs {
    endpoint: String,
    gateway: String,
    config: std::path::PathBuf,
    token: String,
}

fn spawn_worker(a: &WorkerArgs) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let mut child = Command::new(exe)
        .arg("worker")
        .args(["--endpoint", &a.endpoint, "--gateway", &a.gateway])
        .arg("--config")
        .arg(&a.config)
        .env("SLUICE_WORKER_TOKEN", &a.token)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .context("starting a worker process")?;
    let prefix = format!("[worker {}]", a.endpoint);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(out, prefix.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(err, prefix));
    }
    Ok(child)
}

async fn prefix_lines(r: impl AsyncRead + Unpin, prefix: String) {
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{prefix} {line}");
    }
}

/// Keep one worker process running until `stop`, then stop it with SIGTERM (SIGKILL after
/// a grace period).
async fn supervise(args: WorkerArgs, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut child = match spawn_worker(&args) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e:#}");
                return;
            }
        };
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(endpoint = %args.endpoint, "worker exited ({status:?}); restarting in {backoff:?}");
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            _ = stop.cancelled() => {
                terminate(&mut child).await;
                return;
            }
        }
    }
}

async fn terminate(child: &mut Child) {
    #[cfg(unix)]
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a pid we spawned and have not reaped.
        unsafe {
            libc::kill(pid as libc::pid_t, libc::SIGTERM);
        }
        if tokio::time::timeout(Duration::from_secs(12), child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}
