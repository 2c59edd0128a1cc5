//! `GET /metrics`: the series of [`protocol::metrics`] in Prometheus' text format, through the
//! `metrics` facade and `metrics-exporter-prometheus` (one recorder per process, installed on
//! first use). Process series are recorded where things happen (the HTTP layer below, the
//! relays, the worker routes, the key limits); store series are read from the job store at
//! each scrape, so they are the same on every gateway sharing it.

use crate::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics::{counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use protocol::health::EndpointHealth;
use protocol::job::JobView;
use protocol::metrics as m;
use protocol::openai::response::Usage;
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};
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

/// `GET /metrics`: store series refreshed, then every series, then the live workers' engine
/// series.
pub async fn render(State(gw): State<AppState>) -> Response {
    let mut live = BTreeMap::new();
    for endpoint in gw.endpoint_names() {
        match crate::queue_api::endpoint_health(&gw, &endpoint).await {
            Ok((health, queue)) => store_series(&endpoint, &health, &queue),
            Err(e) => {
                tracing::warn!(%endpoint, error = %e, "metrics: the job store did not answer")
            }
        }
        // A store that does not answer keeps no worker's series: better none than stale ones.
        let workers = gw.store.workers(&endpoint).await.unwrap_or_default();
        live.insert(endpoint, workers.into_iter().map(|w| w.id).collect());
    }
    let h = handle();
    h.run_upkeep();
    let mut page = h.render();
    if !page.is_empty() && !page.ends_with('\n') {
        page.push('\n');
    }
    page.push_str(&engine_series(&live));
    (
        [(CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        page,
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
/// ids would make a series per job) and method (the standard ones, else `other`), so no
/// client, authenticated or not, can add series; timed to the response head, and in flight.
pub async fn http_layer(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let in_flight = gauge!(m::HTTP_IN_FLIGHT);
    in_flight.increment(1.0);
    let started = Instant::now();
    let resp = next.run(req).await;
    in_flight.decrement(1.0);
    let status = resp.status().as_u16().to_string();
    histogram!(m::HTTP_DURATION, "route" => route.clone(), "method" => method)
        .record(started.elapsed().as_secs_f64());
    counter!(m::HTTP_REQUESTS, "route" => route, "method" => method, "status" => status)
        .increment(1);
    resp
}

/// `method` as a label: one of HTTP's standard methods, or `other` for any a client invents.
fn method_label(method: &Method) -> &'static str {
    [
        (Method::GET, "GET"),
        (Method::POST, "POST"),
        (Method::PUT, "PUT"),
        (Method::DELETE, "DELETE"),
        (Method::PATCH, "PATCH"),
        (Method::HEAD, "HEAD"),
        (Method::OPTIONS, "OPTIONS"),
        (Method::CONNECT, "CONNECT"),
        (Method::TRACE, "TRACE"),
    ]
    .into_iter()
    .find(|(m, _)| m == method)
    .map_or("other", |(_, label)| label)
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

/// A worker of `endpoint` failed its fitness check `check`.
pub fn fitness_failed(endpoint: &str, check: &str) {
    counter!(m::FITNESS_FAILURES, "endpoint" => endpoint.to_string(), "check" => check.to_string())
        .increment(1);
}

/// A key's request passed its limits.
pub fn key_request(key: &str) {
    counter!(m::KEY_REQUESTS, "key" => key.to_string()).increment(1);
}

/// A key's request refused with 429 by `limit` (`requests`, `tokens`, `concurrent`).
pub fn key_refused(key: &str, limit: &'static str) {
    counter!(m::KEY_RATE_LIMITED, "key" => key.to_string(), "limit" => limit).increment(1);
}

/// The engine figures of one worker, from its last ping to this gateway.
#[derive(Clone, Copy, Default)]
struct EngineFigures {
    running: Option<u64>,
    prompt: Option<u64>,
    generated: Option<u64>,
}

/// Per-worker engine figures by (endpoint, worker). They are not recorded through the
/// exporter, which cannot forget a series: they are written out at each scrape for the
/// workers the store still counts live, so a worker's series end with the worker.
fn engine_figures_by_worker() -> &'static Mutex<BTreeMap<(String, String), EngineFigures>> {
    static FIGURES: OnceLock<Mutex<BTreeMap<(String, String), EngineFigures>>> = OnceLock::new();
    FIGURES.get_or_init(Mutex::default)
}

/// The engine figures a worker's ping carries (sluice's worker; RunPod's SDK sends none).
pub fn engine_figures(endpoint: &str, worker: &str, q: &protocol::job::PingQuery) {
    let figures = EngineFigures {
        running: q.running_jobs,
        prompt: q.prompt_tokens,
        generated: q.generated_tokens,
    };
    if figures.running.is_none() && figures.prompt.is_none() && figures.generated.is_none() {
        return;
    }
    let mut all = engine_figures_by_worker()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    all.insert((endpoint.to_string(), worker.to_string()), figures);
}

/// Forget the figures of `endpoint`'s workers not in `live`, then write the rest of every
/// endpoint in Prometheus' text format.
fn engine_series(live: &BTreeMap<String, Vec<String>>) -> String {
    let mut all = engine_figures_by_worker()
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    all.retain(|(ep, w), _| live.get(ep).is_some_and(|ws| ws.contains(w)));
    let mut out = String::new();
    let family = |out: &mut String, name: &str, kind: &str, help: &str| {
        out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
    };
    if all.values().any(|f| f.running.is_some()) {
        family(
            &mut out,
            m::ENGINE_RUNNING,
            "gauge",
            "Jobs the worker's engine runs.",
        );
        for ((ep, w), n) in all.iter().filter_map(|(k, f)| Some((k, f.running?))) {
            out.push_str(&format!(
                "{}{{endpoint=\"{}\",worker=\"{}\"}} {n}\n",
                m::ENGINE_RUNNING,
                escape(ep),
                escape(w)
            ));
        }
    }
    if all
        .values()
        .any(|f| f.prompt.is_some() || f.generated.is_some())
    {
        let help = "Tokens of the jobs the worker finished since it started.";
        family(&mut out, m::ENGINE_TOKENS, "counter", help);
        for ((ep, w), f) in all.iter() {
            for (kind, n) in [("prompt", f.prompt), ("generated", f.generated)] {
                let Some(n) = n else { continue };
                out.push_str(&format!(
                    "{}{{endpoint=\"{}\",worker=\"{}\",kind=\"{kind}\"}} {n}\n",
                    m::ENGINE_TOKENS,
                    escape(ep),
                    escape(w)
                ));
            }
        }
    }
    out
}

/// A label value as Prometheus' text format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
