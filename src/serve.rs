//! `sluice serve`: the gateway with its job store (in memory unless `--queue` says), plus one `sluice worker` child process
//! per endpoint (restarted if it crashes), stopped cleanly on Ctrl-C or SIGTERM.

use crate::roles::{bind, gateway_state, job_store, random_hex, shutdown_signal};
use crate::{Common, StoreArgs};
use anyhow::Context;
use protocol::config::Deployment;
use queue::JobStore;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

pub async fn run(common: Common, store_args: StoreArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let dep = Deployment::load(&common.config)?;
    let models: Vec<String> = dep.models.iter().map(|m| m.name.clone()).collect();
    eprintln!(
        "sluice: [1/3] models {}: checking the cache (first run downloads them)",
        models.join(", ")
    );
    let token = random_hex(128);
    let store = job_store(&dep, &store_args).await?;
    let state = {
        let (dep, store, token) = (dep.clone(), store.clone(), token.clone());
        tokio::task::spawn_blocking(move || gateway_state(&dep, store, token)).await??
    };
    gateway::webhooks::spawn(state.clone());
    let names = state.endpoint_names();
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
    for spec in worker_specs(&dep, &common, &gateway_url, &token)? {
        supervisors.push(tokio::spawn(supervise(spec, store.clone(), stop.clone())));
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
            "sluice: [3/3] ready in {:.1} s: OpenAI API at http://{addr}/v1 (models: {}), queue API at http://{addr}/v2/{{endpoint}} (endpoints: {})",
            t0.elapsed().as_secs_f64(),
            models.join(", "),
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

/// How to start one worker process.
#[derive(Clone)]
struct WorkerSpec {
    /// Log prefix.
    label: String,
    /// The RunPod worker id given in the environment (custom endpoints).
    id: Option<String>,
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    cwd: Option<PathBuf>,
}

/// One `sluice worker` per LLM endpoint, and `workers` processes of each custom endpoint's
/// command with the RunPod worker environment (reference section 3).
fn worker_specs(
    dep: &Deployment,
    common: &Common,
    gateway: &str,
    token: &str,
) -> anyhow::Result<Vec<WorkerSpec>> {
    let exe = std::env::current_exe().context("locating the sluice binary")?;
    let mut specs: Vec<WorkerSpec> = dep
        .models
        .iter()
        .map(|m| WorkerSpec {
            label: format!("[worker {}]", m.name),
            id: None,
            program: exe.clone(),
            args: [
                "worker",
                "--endpoint",
                &m.name,
                "--gateway",
                gateway,
                "--config",
            ]
            .iter()
            .map(|s| s.to_string())
            .chain([common.config.display().to_string()])
            .collect(),
            env: vec![("SLUICE_WORKER_TOKEN".into(), token.into())],
            cwd: None,
        })
        .collect();
    for c in &dep.config.custom {
        for i in 0..c.workers {
            let id = format!("{}-{i}-{}", c.name, random_hex(32));
            let ep = format!("{gateway}/v2/{}", c.name);
            let mut env: Vec<(String, String)> = vec![
                (
                    "RUNPOD_WEBHOOK_GET_JOB".into(),
                    format!("{ep}/job-take/$ID?x=1"),
                ),
                (
                    "RUNPOD_WEBHOOK_POST_OUTPUT".into(),
                    format!("{ep}/job-done/{id}/$ID?x=1"),
                ),
                (
                    "RUNPOD_WEBHOOK_POST_STREAM".into(),
                    format!("{ep}/job-stream/{id}/$ID?x=1"),
                ),
                ("RUNPOD_WEBHOOK_PING".into(), format!("{ep}/ping/{id}?x=1")),
                ("RUNPOD_POD_ID".into(), id.clone()),
                ("RUNPOD_AI_API_KEY".into(), token.into()),
                ("RUNPOD_SKIP_AUTO_SYSTEM_CHECKS".into(), "true".into()),
                ("RUNPOD_ENDPOINT_ID".into(), c.name.clone()),
            ];
            env.extend(c.env.iter().map(|(k, v)| (k.clone(), v.clone())));
            specs.push(WorkerSpec {
                label: format!("[{} {i}]", c.name),
                id: Some(id.clone()),
                program: PathBuf::from(&c.command[0]),
                args: c.command[1..].to_vec(),
                env,
                cwd: Some(dep.base_dir.clone()),
            });
        }
    }
    Ok(specs)
}

impl WorkerSpec {
    /// The same worker under a new id: a worker that asked to stop (`stopPod`) comes back
    /// fresh, since its old id stays retired.
    fn renewed(&self) -> WorkerSpec {
        let Some(old) = &self.id else {
            return self.clone();
        };
        let base = old.rsplit_once('-').map(|(b, _)| b).unwrap_or(old);
        let new = format!("{base}-{}", random_hex(32));
        WorkerSpec {
            id: Some(new.clone()),
            env: self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), v.replace(old.as_str(), &new)))
                .collect(),
            ..self.clone()
        }
    }
}

/// Resolves when the store says worker `id` retired (checked twice a second).
async fn retired(store: &Arc<dyn JobStore>, id: Option<&str>) {
    let Some(id) = id else {
        return std::future::pending().await;
    };
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if store.is_retired(id).await.unwrap_or(false) {
            return;
        }
    }
}

fn spawn_worker(w: &WorkerSpec) -> anyhow::Result<Child> {
    let mut cmd = Command::new(&w.program);
    cmd.args(&w.args)
        .envs(w.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(dir) = &w.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {} ({})", w.label, w.program.display()))?;
    if let Some(out) = child.stdout.take() {
        tokio::spawn(prefix_lines(out, w.label.clone()));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(prefix_lines(err, w.label.clone()));
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
/// a grace period). A crashed worker is restarted with backoff; a retired one (`stopPod`) is
/// stopped and replaced at once.
async fn supervise(mut spec: WorkerSpec, store: Arc<dyn JobStore>, stop: CancellationToken) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let mut child = match spawn_worker(&spec) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("{e:#}");
                return;
            }
        };
        let started = Instant::now();
        tokio::select! {
            status = child.wait() => {
                tracing::warn!(worker = %spec.label, "worker exited ({status:?}); restarting in {backoff:?}");
                if started.elapsed() > Duration::from_secs(60) {
                    backoff = Duration::from_secs(1);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => return,
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
            _ = retired(&store, spec.id.as_deref()) => {
                tracing::info!(worker = %spec.label, "worker asked to stop after its job; replacing it");
                terminate(&mut child).await;
                spec = spec.renewed();
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
