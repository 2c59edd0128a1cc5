//! The Prometheus series sluice exports at `GET /metrics` (names, labels, buckets): a contract
//! with dashboards (`deploy/grafana/sluice.json`) and alerts, so it lives here beside the
//! other wire contracts.
//!
//! Two kinds of series, which aggregate differently across several gateways on one Redis:
//! - **process** series (`http_*`, token and latency figures, per-key usage, jobs finished,
//!   webhooks, cold starts and worker-seconds of the autoscaler in that process) count what
//!   that process did: `sum` them across gateways;
//! - **store** series ([`QUEUE_DEPTH`], [`QUEUE_OLDEST_AGE`], [`JOBS_IN_PROGRESS`],
//!   [`STORE_JOBS`], [`WORKERS`]) are read from the shared job store at scrape time, so every
//!   gateway reports the same value: take `max` across gateways, never `sum`.

/// Counter, labels `route` (the route template, e.g. `/v2/{endpoint}/run`), `method`,
/// `status`: HTTP requests answered.
pub const HTTP_REQUESTS: &str = "sluice_http_requests_total";
/// Histogram, seconds, labels `route`, `method`: time to the response head (a stream's body
/// is not included).
pub const HTTP_DURATION: &str = "sluice_http_request_duration_seconds";
/// Gauge: HTTP requests being handled by this gateway.
pub const HTTP_IN_FLIGHT: &str = "sluice_http_requests_in_flight";

/// Histogram, seconds, label `endpoint`: streamed OpenAI requests, from the request's arrival
/// to its first chunk (queue wait and a cold start included, as a client sees it).
pub const TTFT: &str = "sluice_time_to_first_token_seconds";
/// Histogram, seconds, label `endpoint`: streamed OpenAI requests, (end - first chunk) /
/// (completion tokens - 1).
pub const TPOT: &str = "sluice_time_per_output_token_seconds";
/// Histogram, seconds, label `endpoint`: OpenAI requests, arrival to the job's end.
pub const E2E_LATENCY: &str = "sluice_e2e_request_latency_seconds";
/// Counter, label `endpoint`: prompt tokens of finished OpenAI requests (the engine's count).
pub const PROMPT_TOKENS: &str = "sluice_prompt_tokens_total";
/// Counter, label `endpoint`: generated tokens of finished OpenAI requests.
pub const GENERATION_TOKENS: &str = "sluice_generation_tokens_total";

/// Counter, labels `endpoint`, `state` (`COMPLETED`, `FAILED`): jobs a worker reported done to
/// this gateway (timeouts and cancels are in [`STORE_JOBS`]).
pub const JOBS_FINISHED: &str = "sluice_jobs_finished_total";
/// Counter, labels `endpoint`, `check`: fitness checks workers failed on their way out
/// (RunPod's SDK, `register_fitness_check`).
pub const FITNESS_FAILURES: &str = "sluice_worker_fitness_failures_total";
/// Counter, label `outcome` (`delivered`, `failed`): webhooks after their retries.
pub const WEBHOOKS: &str = "sluice_webhooks_total";

/// Counter, label `key` (the key's name; `anonymous` without keys): requests that passed a
/// key's limits on the generating routes (`/v1` completions, `/v2` `run` and `runsync`).
pub const KEY_REQUESTS: &str = "sluice_key_requests_total";
/// Counter, labels `key`, `limit` (`requests`, `tokens`, `concurrent`): requests refused with
/// 429.
pub const KEY_RATE_LIMITED: &str = "sluice_key_rate_limited_total";
/// Counter, labels `key`, `kind` (`prompt`, `completion`): tokens of the key's finished
/// OpenAI requests.
pub const KEY_TOKENS: &str = "sluice_key_tokens_total";
/// Counter, label `key`: worker time of the key's jobs (each job's execution time), in
/// milliseconds (Prometheus counters here are integers; divide by 1000 for worker-seconds).
pub const KEY_WORKER_MS: &str = "sluice_key_worker_milliseconds_total";

/// Gauge (store), labels `endpoint`, `priority` (`normal`, `low`): queued jobs.
pub const QUEUE_DEPTH: &str = "sluice_queue_depth";
/// Gauge (store), label `endpoint`: age of the oldest queued normal-priority job (the queue
/// delay the autoscaler's `queue_delay` scaler reads), seconds.
pub const QUEUE_OLDEST_AGE: &str = "sluice_queue_oldest_age_seconds";
/// Gauge (store), label `endpoint`: jobs held by a worker.
pub const JOBS_IN_PROGRESS: &str = "sluice_jobs_in_progress";
/// Counter (store), labels `endpoint`, `event` (`arrived`, `completed`, `failed`, `retried`):
/// the store's counts since it started (Redis: since its data began).
pub const STORE_JOBS: &str = "sluice_store_jobs_total";
/// Gauge (store), labels `endpoint`, `state` (`initializing`, `idle`, `running`, `draining`,
/// `unhealthy`, `parked`): workers, the autoscaler's fleet view joined with the store's live workers.
pub const WORKERS: &str = "sluice_workers";

/// Histogram, seconds, labels `endpoint`, `phase` (`spawn`, `load`, `ready`), `tier`
/// (`parked`, `ram`, `disk`, `remote`; see `health::Tier`): cold-start phases of the workers
/// the autoscaler in this process started or thawed.
pub const COLD_START: &str = "sluice_cold_start_duration_seconds";
/// Counter, labels `endpoint`, `kind` (`active`: `min_workers`' always-on share, `flex`: the
/// rest, `parked`: frozen workers, which hold memory but no CPU or job): milliseconds of worker processes alive, from start to exit, the cost basis of
/// serverless billing (RunPod bills a worker from start to stop, active and flex apart).
pub const WORKER_MS: &str = "sluice_worker_milliseconds_total";

/// Gauge, labels `endpoint`, `worker`: jobs the worker's engine runs, from its last ping to
/// this gateway. (KV-cache use is not reported: mistral.rs 0.8.1 has no paged attention on
/// CPU, and reports no cache figures otherwise.)
pub const ENGINE_RUNNING: &str = "sluice_engine_running_jobs";
/// Counter, labels `endpoint`, `worker`, `kind` (`prompt`, `generated`): tokens of the jobs the
/// worker finished since it started, from its last ping (`rate()` gives its tokens/s).
pub const ENGINE_TOKENS: &str = "sluice_engine_tokens_total";

/// Histogram, seconds, labels `backend` (`redis`; the memory store's calls stay in the
/// process and are not timed), `op` (the store script's operation, e.g. `submit`, `take`):
/// job-store calls of the process, the autoscaler's included.
pub const STORE_OP_DURATION: &str = "sluice_job_store_operation_duration_seconds";
/// Counter, labels `backend`, `op`: job-store calls that failed.
pub const STORE_OP_ERRORS: &str = "sluice_job_store_operation_errors_total";

/// [`TTFT`] buckets, seconds: vLLM's (`vllm:time_to_first_token_seconds`).
pub const TTFT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0, 80.0, 160.0, 640.0, 2560.0,
];
/// [`TPOT`] buckets, seconds: vLLM's (`vllm:time_per_output_token_seconds`).
pub const TPOT_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
    40.0, 80.0,
];
/// [`E2E_LATENCY`] and [`COLD_START`] buckets, seconds: vLLM's
/// (`vllm:e2e_request_latency_seconds`).
pub const E2E_BUCKETS: &[f64] = &[
    0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
    480.0, 960.0, 1920.0, 7680.0,
];
/// [`HTTP_DURATION`] and [`STORE_OP_DURATION`] buckets, seconds (Prometheus' defaults,
/// extended down to 100 µs for store calls).
pub const FAST_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    90.0,
];
