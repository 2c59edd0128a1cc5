//! `GET /metrics`: the series of [`protocol::metrics`] in Prometheus' text format, through the
//! `metrics` facade and `metrics-exporter-prometheus` (one recorder per process, installed on
//! first use). Process series are recorded where things happen (the HTTP layer below, the
//! relays, the worker routes, the key limits); store series are read from the job store at
//! each scrape, so they are the same on every gateway sharing it.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use protocol::health::EndpointHealth;
use protocol::job::JobView;
use protocol::metrics as m;
use protocol::openai::response::Usage;
use std::sync::OnceLock;
use std::time::Instant;

/// The process's recorder, installed on first use. Another recorder already installed (an
/// embedding program's) leaves sluice's series out of this page, with a warning.
fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = [
            (m::TTFT, m::TTFT_BUCKETS),
            (m::TPOT, m::TPOT_BUCKETS),
            (m::E2E_LATENCY, m::E2E_BUCKETS),
            (m::COLD_START, m::E2E_BUCKETS),
            (m::HTTP_DURATION, m::FAST_BUCKETS),
            (m::STORE_OP_DURATION, m::FAST_BUCKETS),
        ]
        .into_iter()
        .try_fold(PrometheusBuilder::new(), |b, (name, buckets)| {
            b.set_buckets_for_metric(Matcher::Full(name.into()), buckets)
        })
        .expect("bucket lists are not empty");
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::warn!(error = %e, "another metrics recorder is installed; /metrics is empty");
        }
        handle
    })
}

/// Install the recorder now, so that series recorded before the first scrape are kept.
pub fn install() {
    handle();
}

/// `GET /metrics`: store series refreshed, then every series.
pub async fn render(State(gw): State<AppState>) -> Response {
    for endpoint in gw.endpoint_names() {
        match crate::queue_api::endpoint_health(&gw, &endpoint).await {
            Ok((health, queue)) => store_series(&endpoint, &health, &queue),
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "metrics: the job store did not answer")
            }
        }
    }
    let h = handle();
    h.run_upkeep();
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        h.render(),
    )
        .into_response()
}

fn store_series(endpoint: &str, h: &EndpointHealth, q: &queue::QueueMetrics) {
    let ep = endpoint.to_string();
    for (priority, n) in [("normal", q.in_queue), ("low", q.in_queue_low_priority)] {
        gauge!(m::QUEUE_DEPTH, "endpoint" => ep.clone(), "priority" => priority).set(n as f64);
    }
    gauge!(m::QUEUE_OLDEST_AGE, "endpoint" => ep.clone()).set(q.oldest_queued_ms as f64 / 1e3);
    gauge!(m::JOBS_IN_PROGRESS, "endpoint" => ep.clone()).set(q.in_progress as f64);
    for (event, n) in [
        ("arrived", q.arrived),
        ("completed", q.completed),
        ("failed", q.failed),
        ("retried", q.retried),
    ] {
        counter!(m::STORE_JOBS, "endpoint" => ep.clone(), "event" => event).absolute(n);
    }
    let w = &h.workers;
    for (state, n) in [
        ("initializing", w.initializing),
        ("idle", w.idle),
        ("running", w.running),
        ("draining", w.draining),
        ("unhealthy", w.unhealthy),
        ("parked", w.parked),
    ] {
        gauge!(m::WORKERS, "endpoint" => ep.clone(), "state" => state).set(n as f64);
    }
}

/// The HTTP series of every request: counted by route template (never the raw path, whose
/// ids would make a series per job), timed to the response head, and in flight.
pub async fn http_layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().to_string();
    let in_flight = gauge!(m::HTTP_IN_FLIGHT);
    in_flight.increment(1.0);
    let started = Instant::now();
    let resp = next.run(req).await;
    in_flight.decrement(1.0);
    let status = resp.status().as_u16().to_string();
    histogram!(m::HTTP_DURATION, "route" => route.clone(), "method" => method.clone())
        .record(started.elapsed().as_secs_f64());
    counter!(m::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

/// A job a worker reported finished (COMPLETED or FAILED) to this gateway: its state, its
/// key's worker time and, for LLM endpoints, its tokens. `key` names the job's key.
pub fn job_finished(endpoint: &str, key: &str, view: &JobView) {
    let ep = endpoint.to_string();
    counter!(m::JOBS_FINISHED, "endpoint" => ep.clone(), "state" => view.status.as_str())
        .increment(1);
    if let Some(ms) = view.execution_time {
        counter!(m::KEY_WORKER_MS, "key" => key.to_string()).increment(ms);
    }
    if let Some(usage) = usage_of(view) {
        let (p, c) = (usage.prompt_tokens as u64, usage.completion_tokens as u64);
        counter!(m::PROMPT_TOKENS, "endpoint" => ep.clone()).increment(p);
        counter!(m::GENERATION_TOKENS, "endpoint" => ep).increment(c);
        counter!(m::KEY_TOKENS, "key" => key.to_string(), "kind" => "prompt").increment(p);
        counter!(m::KEY_TOKENS, "key" => key.to_string(), "kind" => "completion").increment(c);
    }
}

/// The `usage` of a job's output, when it is an OpenAI completion (LLM endpoints).
fn usage_of(view: &JobView) -> Option<Usage> {
    Usage::of(view.output.as_ref()?)
}

/// A key's request passed its limits.
pub fn key_request(key: &str) {
    counter!(m::KEY_REQUESTS, "key" => key.to_string()).increment(1);
}

/// A key's request refused with 429 by `limit` (`requests`, `tokens`, `concurrent`).
pub fn key_refused(key: &str, limit: &'static str) {
    counter!(m::KEY_RATE_LIMITED, "key" => key.to_string(), "limit" => limit).increment(1);
}

/// The engine figures a worker's ping carries (sluice's worker; RunPod's SDK sends none).
pub fn engine_figures(endpoint: &str, worker: &str, q: &protocol::job::PingQuery) {
    let labels = [
        ("endpoint", endpoint.to_string()),
        ("worker", worker.to_string()),
    ];
    if let Some(n) = q.running_jobs {
        gauge!(m::ENGINE_RUNNING, &labels).set(n as f64);
    }
    for (kind, n) in [
        ("prompt", q.prompt_tokens),
        ("generated", q.generated_tokens),
    ] {
        if let Some(n) = n {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            counter!(m::ENGINE_TOKENS, &l).absolute(n);
        }
    }
}

/// A webhook after its retries.
pub fn webhook(delivered: bool) {
    let outcome = if delivered { "delivered" } else { "failed" };
    counter!(m::WEBHOOKS, "outcome" => outcome).increment(1);
}

/// The latency figures of one OpenAI request, as its client sees them.
pub struct Timing {
    endpoint: String,
    started: Instant,
    first_chunk: Option<Instant>,
}

impl Timing {
    /// A request of `endpoint` that arrived at `started`.
    pub fn new(endpoint: &str, started: Instant) -> Self {
        Timing {
            endpoint: endpoint.to_string(),
            started,
            first_chunk: None,
        }
    }

    /// A streamed chunk went out (the first one sets the time to first token).
    pub fn chunk(&mut self) {
        if self.first_chunk.is_none() {
            let now = Instant::now();
            self.first_chunk = Some(now);
            histogram!(m::TTFT, "endpoint" => self.endpoint.clone())
                .record((now - self.started).as_secs_f64());
        }
    }

    /// The request ended with its job, which generated `completion_tokens` (if known).
    pub fn finish(&self, completion_tokens: Option<usize>) {
        let now = Instant::now();
        histogram!(m::E2E_LATENCY, "endpoint" => self.endpoint.clone())
            .record((now - self.started).as_secs_f64());
        if let (Some(first), Some(n)) = (self.first_chunk, completion_tokens) {
            if n > 1 {
                histogram!(m::TPOT, "endpoint" => self.endpoint.clone())
                    .record((now - first).as_secs_f64() / (n - 1) as f64);
            }
        }
    }

    /// The completion tokens of a finished job's output.
    pub fn tokens_of(view: &JobView) -> Option<usize> {
        usage_of(view).map(|u| u.completion_tokens)
    }
}
