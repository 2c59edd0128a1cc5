//! The worker loop: the client side of the RunPod worker protocol (`job-take-batch`,
//! `job-stream`, `job-done`, `ping`, `job-stop`), generic over what runs a job
//! ([`JobHandler`]). It keeps up to `concurrency` jobs running, so an engine can batch them.
//! Its own crate, so a worker that runs no model (the echo handler) and the roles that run no
//! worker link no engine.

#![warn(missing_docs)]

use async_trait::async_trait;
use protocol::job::{JobDoneBody, JobFailure, JobsToStop, TakenJob};
use protocol::openai::response::Usage;
use protocol::routes::{WorkerRoute, SDK_QUERY};
use protocol::JobId;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

/// Why a job did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's input is at fault (reported as an invalid request: a 400 to OpenAI clients).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The handler is at fault: the message says what failed.
    #[error("{0}")]
    Failed(String),
    /// The job's cancel token fired; the worker reports nothing, as the gateway already
    /// decided the job's state.
    #[error("cancelled")]
    Cancelled,
}

/// Runs one job. `Err` is reported as the job's error (FAILED), worded by its kind
/// ([`JobError::Invalid`]: the input's fault; `Failed`: the handler's).
#[async_trait]
pub trait JobHandler: Send + Sync + 'static {
    /// Run one job on its `input` (the job's `input` as submitted), sending stream chunks to
    /// `sink`, and return its output (the `job-done` body's `output`). `cancel` fires when the
    /// gateway stops the job (cancelled or timed out): the handler should return soon after,
    /// e.g. with [`JobError::Cancelled`]; whatever it returns then is not reported.
    async fn handle(
        &self,
        input: Value,
        sink: StreamSink,
        cancel: CancellationToken,
    ) -> Result<Value, JobError>;
}

/// Returns each job's input as its output: a worker with no work in it, for measuring and
/// testing the queue path. An input `{"sleep_ms": N}` first waits N ms (cancellable), to give
/// jobs a service time without a model; `{"stream": [...]}` sends those items as stream chunks.
pub struct EchoHandler;

#[async_trait]
impl JobHandler for EchoHandler {
    async fn handle(
        &self,
        input: Value,
        sink: StreamSink,
        cancel: CancellationToken,
    ) -> Result<Value, JobError> {
        for chunk in input
            .get("stream")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            sink.send(chunk.clone());
        }
        if let Some(ms) = input.get("sleep_ms").and_then(Value::as_u64) {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(ms)) => {}
                _ = cancel.cancelled() => return Err(JobError::Cancelled),
            }
        }
        Ok(input)
    }
}

/// Where a handler sends stream chunks. Sending never blocks: chunks are queued and posted to
/// the gateway by a separate task, several per request when they pile up.
#[derive(Clone)]
pub struct StreamSink(mpsc::UnboundedSender<Value>);

impl StreamSink {
    /// Queue `chunk` for `job-stream`; dropped silently if the job's forwarder has stopped.
    pub fn send(&self, chunk: Value) {
        let _ = self.0.send(chunk);
    }
}

/// Who a worker is and how it talks to the gateway.
#[derive(Clone, Debug)]
pub struct WorkerOptions {
    /// Gateway base URL, e.g. `http://127.0.0.1:8080`.
    pub gateway: String,
    /// The endpoint whose jobs it takes (`/v2/{endpoint}/...`).
    pub endpoint: String,
    /// This worker's id in the worker routes' URLs (RunPod's pod id); the store's leases and
    /// liveness are kept per id.
    pub worker_id: String,
    /// Sent as `Authorization` on every call (raw, as the RunPod SDK does).
    pub token: String,
    /// Jobs run at once (the engine's `max_num_seqs`).
    pub concurrency: usize,
    /// Jobs asked for per `job-take-batch` (at most the free slots). Engine workers take one
    /// at a time: with several workers of an endpoint long-polling, a batch take hands a whole
    /// burst to whichever wakes first while the others idle (measured: 2 one-core workers at
    /// concurrency 4 fell from 105 to 51 tok/s in a round where that happened).
    pub max_take: usize,
    /// Time between heartbeats (`ping`, listing the running jobs); must stay well under the
    /// gateway's worker timeout, or the worker's jobs are requeued.
    pub ping_interval: Duration,
}

/// A job on the worker's running list (with its cancel token) while this lives.
struct Listed(Arc<Worker>, JobId);

impl Listed {
    fn new(worker: Arc<Worker>, id: JobId, cancel: CancellationToken) -> Self {
        worker
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), cancel);
        Listed(worker, id)
    }
}

impl Drop for Listed {
    fn drop(&mut self) {
        self.0
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

struct Worker {
    opts: WorkerOptions,
    http: reqwest::Client,
    handler: Arc<dyn JobHandler>,
    running: Mutex<HashMap<JobId, CancellationToken>>,
    /// Prompt and generated tokens of the jobs finished so far (from their `usage`), for pings.
    tokens: [std::sync::atomic::AtomicU64; 2],
}

impl Worker {
    /// This worker's URL of `route`, then `tail` (a job id and a query).
    fn url(&self, route: WorkerRoute, tail: &str) -> String {
        let o = &self.opts;
        route.url(&o.gateway, &o.endpoint, &o.worker_id) + tail
    }

    /// Add a finished job's `usage` (an OpenAI completion's) to the ping's token counts.
    fn count_tokens(&self, output: &Value) {
        use std::sync::atomic::Ordering::Relaxed;
        if let Some(u) = Usage::of(output) {
            self.tokens[0].fetch_add(u.prompt_tokens as u64, Relaxed);
            self.tokens[1].fetch_add(u.completion_tokens as u64, Relaxed);
        }
    }

    fn running_ids(&self) -> Vec<String> {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .map(|j| j.0.clone())
            .collect()
    }

    async fn take(&self, n: usize) -> anyhow::Result<Vec<TakenJob>> {
        let busy = u8::from(!self.running_ids().is_empty());
        let url = self.url(
            WorkerRoute::JobTakeBatch,
            &format!("?batch_size={n}&job_in_progress={busy}"),
        );
        let resp = self
            .http
            .get(url)
            .header("Authorization", &self.opts.token)
            .send()
            .await?;
        match resp.status().as_u16() {
            204 => Ok(Vec::new()),
            200 => Ok(resp.json().await?),
            s => anyhow::bail!(
                "job-take: HTTP {s}: {}",
                resp.text().await.unwrap_or_default()
            ),
        }
    }

    async fn post(&self, url: String, body: &Value) -> anyhow::Result<()> {
        // The protocol's job-done and job-stream are safe to repeat; retry transient failures.
        let mut last = None;
        for attempt in 0..3u64 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
            match self
                .http
                .post(&url)
                .header("Authorization", &self.opts.token)
                .json(body)
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => return Ok(()),
                // A 4xx will not get better by repeating it (e.g. the job was reassigned).
                Ok(r) if r.status().is_client_error() => {
                    anyhow::bail!(
                        "HTTP {}: {}",
                        r.status(),
                        r.text().await.unwrap_or_default()
                    )
                }
                Ok(r) => last = Some(anyhow::anyhow!("HTTP {}", r.status())),
                Err(e) => last = Some(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no attempt made")))
    }

    /// Run `job` in its span, a child of the request that queued it (the job's
    /// `traceparent`), so that the worker's part joins the request's trace.
    async fn run_job(self: Arc<Self>, job: TakenJob) {
        let span = tracing::info_span!(
            "job",
            otel.name = "job",
            job = %job.id,
            endpoint = %self.opts.endpoint,
            trace_id = tracing::field::Empty,
        );
        telemetry::set_parent(&span, job.traceparent.as_deref());
        self.run_job_traced(job).instrument(span).await
    }

    async fn run_job_traced(self: Arc<Self>, job: TakenJob) {
        let cancel = CancellationToken::new();
        // Listed as running (in pings too) until its `job-done` is through: the store requeues
        // held jobs that a worker's pings leave out.
        let _listed = Listed::new(self.clone(), job.id.clone(), cancel.clone());
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let streamed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // Forward chunks, batching whatever piled up during the previous POST.
        let forwarder = {
            let me = self.clone();
            let url = self.url(WorkerRoute::JobStream, &format!("/{}{SDK_QUERY}", job.id));
            let streamed = streamed.clone();
            tokio::spawn(
                async move {
                    while let Some(first) = rx.recv().await {
                        streamed.store(true, std::sync::atomic::Ordering::Relaxed);
                        let mut batch = vec![json!({ "output": first })];
                        while let Ok(more) = rx.try_recv() {
                            batch.push(json!({ "output": more }));
                        }
                        let post = tracing::info_span!("post job-stream", chunks = batch.len());
                        let body = Value::Array(batch);
                        let sent = me.post(url.clone(), &body).instrument(post);
                        if let Err(e) = sent.await {
                            tracing::warn!("job-stream failed: {e:#}");
                        }
                    }
                }
                .in_current_span(),
            )
        };
        let result = self
            .handler
            .handle(job.input, StreamSink(tx), cancel.clone())
            .await;
        let _ = forwarder.await;
        if cancel.is_cancelled() {
            // Cancelled or timed out: the gateway already decided the job's state.
            tracing::info!(job = %job.id, "stopped");
            return;
        }
        if let Ok(output) = &result {
            self.count_tokens(output);
        }
        let body = match result {
            Ok(output) => JobDoneBody {
                output: Some(output),
                ..Default::default()
            },
            Err(e) => {
                tracing::warn!(job = %job.id, "job failed: {e}");
                let error_type = match e {
                    JobError::Invalid(_) => JobFailure::INVALID_REQUEST,
                    _ => JobFailure::INTERNAL,
                };
                let failure = JobFailure {
                    error_type: error_type.into(),
                    error_message: e.to_string(),
                };
                JobDoneBody {
                    error: serde_json::to_value(failure).ok(),
                    ..Default::default()
                }
            }
        };
        let is_stream = streamed.load(std::sync::atomic::Ordering::Relaxed);
        let url = self.url(
            WorkerRoute::JobDone,
            &format!("/{}?isStream={is_stream}", job.id),
        );
        let body = serde_json::to_value(body).unwrap_or(Value::Null);
        let post = tracing::info_span!("post job-done");
        if let Err(e) = self.post(url, &body).instrument(post).await {
            tracing::warn!(job = %job.id, "job-done failed: {e:#}");
        }
    }

    async fn ping_loop(self: Arc<Self>) {
        use std::sync::atomic::Ordering::Relaxed;
        let mut tick = tokio::time::interval(self.opts.ping_interval);
        loop {
            tick.tick().await;
            let ids = self.running_ids();
            let [prompt, generated] = self.tokens.each_ref().map(|t| t.load(Relaxed));
            // `listed=1`: this list is complete, so the store may reclaim held jobs it omits.
            let query = format!(
                "?job_id={}&listed=1&running_jobs={}&prompt_tokens={prompt}&generated_tokens={generated}",
                ids.join(","),
                ids.len()
            );
            let url = self.url(WorkerRoute::Ping, &query);
            if let Err(e) = self
                .http
                .get(url)
                .header("Authorization", &self.opts.token)
                .send()
                .await
            {
                tracing::warn!("ping failed: {e}");
            }
        }
    }

    async fn stop_loop(self: Arc<Self>) {
        loop {
            let url = self.url(WorkerRoute::JobStop, SDK_QUERY);
            let resp = self
                .http
                .get(url)
                .header("Authorization", &self.opts.token)
                .send()
                .await;
            let stops: Vec<JobId> = match resp {
                Ok(r) if r.status() == 200 => r
                    .json::<JobsToStop>()
                    .await
                    .map(|s| s.jobs_to_stop)
                    .unwrap_or_default(),
                Ok(r) if r.status() == 204 => continue,
                Ok(r) => {
                    tracing::warn!("job-stop: HTTP {}", r.status());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!("job-stop failed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            for id in stops {
                if let Some(c) = running.get(&id) {
                    c.cancel();
                }
            }
        }
    }
}

/// Tell the gateway this worker failed its pre-flight check `check` because of `reason`, as
/// RunPod's SDK reports a failed fitness check (`ping` with `status=unhealthy`), before it
/// exits. Best effort and bounded (2 s, as the SDK's): the exit is what counts.
pub async fn report_unhealthy(opts: &WorkerOptions, check: &str, reason: &str) {
    let url = WorkerRoute::Ping.url(&opts.gateway, &opts.endpoint, &opts.worker_id);
    let params = [
        ("status", "unhealthy"),
        ("check", check),
        ("reason", reason),
    ];
    let Ok(url) = reqwest::Url::parse_with_params(&url, params) else {
        return;
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build();
    if let Ok(client) = client {
        let sent = client.get(url).header("Authorization", &opts.token).send();
        if let Err(e) = sent.await {
            tracing::warn!("reporting the failed check: {e}");
        }
    }
}

/// Serve jobs until `shutdown` fires, then finish the running ones (up to `drain`) and return.
pub async fn run_worker(
    handler: Arc<dyn JobHandler>,
    opts: WorkerOptions,
    shutdown: CancellationToken,
    drain: Duration,
) -> anyhow::Result<()> {
    let concurrency = opts.concurrency.max(1);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(concurrency + 4)
        // Well under the gateway's idle keep-alive limit (`header_read_timeout_secs`), so the
        // worker never reuses a connection the gateway is closing.
        .pool_idle_timeout(Duration::from_secs(5))
        .build()?;
    let worker = Arc::new(Worker {
        opts,
        http,
        handler,
        running: Mutex::new(HashMap::new()),
        tokens: Default::default(),
    });
    let pinger = tokio::spawn(worker.clone().ping_loop());
    let stopper = tokio::spawn(worker.clone().stop_loop());
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut backoff = Duration::from_millis(100);
    loop {
        // Wait for one free slot, then ask for as many jobs as there are free slots (up to
        // `max_take`).
        let first = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = shutdown.cancelled() => break,
        };
        let mut permits = vec![first];
        while permits.len() < worker.opts.max_take.max(1) {
            match slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        let jobs = tokio::select! {
            j = worker.take(permits.len()) => j,
            _ = shutdown.cancelled() => break,
        };
        match jobs {
            Ok(jobs) => {
                backoff = Duration::from_millis(100);
                for job in jobs {
                    let Some(permit) = permits.pop() else { break };
                    let w = worker.clone();
                    tokio::spawn(async move {
                        w.run_job(job).await;
                        drop(permit);
                    });
                }
            }
            Err(e) => {
                tracing::warn!("{e:#}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Drain: wait until every slot is free again, or give up after `drain`.
    let all = u32::try_from(concurrency).unwrap_or(u32::MAX);
    if tokio::time::timeout(drain, slots.acquire_many(all))
        .await
        .is_err()
    {
        tracing::warn!("shutting down with jobs still running");
    }
    pinger.abort();
    stopper.abort();
    Ok(())
}
