//! The client-facing queue API, RunPod's shapes (`/v2/{endpoint}/...`;
//! `docs/runpod-protocol.md` section 1).

use crate::auth::{Caller, Quota};
use crate::body::{JsonBody, QueryParams, RunLimit, RunsyncLimit};
use crate::error::{GatewayError, RunpodError};
use crate::trace::JobTrace;
use crate::AppState;
use axum::extract::{Extension, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::Json;
use protocol::health::{EndpointHealth, FleetState, JobCounts, WorkerCounts};
use protocol::job::{JobAccepted, JobView, Purged, RunBody, StreamChunk, StreamView};
use protocol::vllm::LlmJob;
use protocol::{JobId, JobStatus};
use queue::NewJob;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// The caller the client-key layer identified (see `crate::auth`).
type Client = Extension<Arc<Caller>>;

/// RunPod's `?wait=` of the long-polling routes.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct WaitQuery {
    /// How long to wait, ms: 1,000 to 300,000 (values outside are clamped); default 90,000.
    /// Any 64-bit integer is taken (and clamped), so the document's `int64` is the rule.
    wait: Option<i64>,
}

impl WaitQuery {
    /// RunPod's `?wait=` in ms: 1 s to 5 min, default 90 s.
    fn duration(&self) -> Duration {
        Duration::from_millis(self.wait.unwrap_or(90_000).clamp(1_000, 300_000) as u64)
    }
}

/// A `run` / `runsync` body, validated before anything is queued (see [`RunBody::parse`]).
fn new_job(body: Value, sync: bool, endpoint_timeout: Duration) -> Result<NewJob, GatewayError> {
    let run = RunBody::parse(body, endpoint_timeout.as_millis() as u64)
        .map_err(GatewayError::bad_request)?;
    Ok(NewJob {
        input: run.input,
        policy: run.policy,
        webhook: run.webhook,
        s3_config: run.s3_config,
        sync,
        tenant: None,
        traceparent: None,
    })
}

async fn submit(
    gw: &AppState,
    (caller, quota, trace): (&Caller, &Quota, JobTrace),
    endpoint: &str,
    body: Value,
    sync: bool,
) -> Result<JobId, GatewayError> {
    let timeout = gw.endpoint(endpoint)?.execution_timeout;
    let mut job = new_job(body, sync, timeout)?;
    check_llm_input(gw, endpoint, &job.input).await?;
    job.tenant = caller.tenant.clone();
    job.traceparent = trace.0;
    if let Some(url) = &job.webhook {
        gw.webhook_targets
            .check(url)
            .await
            .map_err(|why| GatewayError::bad_request(format!("`webhook`: {why}")))?;
    }
    quota.spend().await?;
    let enqueue = tracing::info_span!("enqueue", endpoint);
    crate::cold::submit(gw.store.as_ref(), endpoint, job)
        .instrument(enqueue)
        .await
}

/// On an LLM endpoint, the job's input read as its worker will read it ([`LlmJob::parse`]) and
/// checked as a `/v1` request is (prompt against the context, schema compiled as the engine
/// compiles it), so what is queued is what a worker can run. Custom endpoints' inputs are
/// their handlers' business.
async fn check_llm_input(gw: &AppState, endpoint: &str, input: &Value) -> Result<(), GatewayError> {
    if !gw.models.contains_key(endpoint) {
        return Ok(());
    }
    let bad = |e: String| GatewayError::bad_request(format!("`input`: {e}"));
    let job = LlmJob::parse(input, endpoint).map_err(bad)?;
    let guided = [
        (
            "/sampling_params/guided_json",
            "input.sampling_params.guided_json",
        ),
        (
            "/openai_input/guided_json",
            "input.openai_input.guided_json",
        ),
    ]
    .into_iter()
    .find(|(at, _)| input.pointer(at).is_some())
    .map(|(_, param)| param);
    let (gw, endpoint) = (gw.clone(), endpoint.to_string());
    tokio::task::spawn_blocking(move || {
        let model = gw.models.get(&endpoint).expect("checked above");
        match job.request() {
            Some(req) => crate::openai_api::check_request(model, req, guided),
            None => Ok(()),
        }
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("input check: {e}")))?
}

pub async fn run(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    Path(endpoint): Path<String>,
    body: Result<JsonBody<RunLimit>, GatewayError>,
) -> Result<Json<JobAccepted>, RunpodError> {
    let id = submit(
        &gw,
        (&caller, &quota, trace),
        &endpoint,
        body?.into_value(),
        false,
    )
    .await?;
    Ok(Json(JobAccepted {
        id,
        status: JobStatus::InQueue,
    }))
}

pub async fn runsync(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    Path(endpoint): Path<String>,
    q: Result<QueryParams<WaitQuery>, GatewayError>,
    body: Result<JsonBody<RunsyncLimit>, GatewayError>,
) -> Result<Json<JobView>, RunpodError> {
    let QueryParams(q) = q?;
    let id = submit(
        &gw,
        (&caller, &quota, trace),
        &endpoint,
        body?.into_value(),
        true,
    )
    .await?;
    let wait = tracing::info_span!("wait for result");
    let view = gw
        .store
        .wait_final(&id, q.duration())
        .instrument(wait)
        .await?
        .ok_or_else(|| gone(&id))?;
    Ok(Json(
        crate::cold::annotate(gw.store.as_ref(), &endpoint, view).await,
    ))
}

fn gone(id: &JobId) -> GatewayError {
    GatewayError::NotFound(format!("job `{id}` not found (unknown, expired or purged)"))
}

/// A store error about job `id`, with "not found" worded for the client.
fn about(id: &JobId) -> impl Fn(queue::QueueError) -> GatewayError + '_ {
    move |e| match e {
        queue::QueueError::NotFound(_) => gone(id),
        other => other.into(),
    }
}

/// The job of a `/v2/{endpoint}/.../{id}` route, its endpoint checked to exist and the job to
/// belong to the caller's tenant (a RunPod-shaped 404 otherwise, the same as an unknown job),
/// so every job route opens the same way.
pub struct EndpointJob(pub JobId, pub String);

impl FromRequestParts<AppState> for EndpointJob {
    type Rejection = RunpodError;

    async fn from_request_parts(parts: &mut Parts, gw: &AppState) -> Result<Self, RunpodError> {
        let Path((endpoint, job)) = Path::<(String, String)>::from_request_parts(parts, gw)
            .await
            .map_err(|e| GatewayError::bad_request(e.body_text()))?;
        gw.endpoint(&endpoint)?;
        let id = JobId(job);
        let caller = parts.extensions.get::<Arc<Caller>>();
        if caller.is_some_and(|c| !c.owns(queue::job_tenant(&id))) {
            return Err(gone(&id).into());
        }
        Ok(EndpointJob(id, endpoint))
    }
}

/// `GET|POST /v2/{endpoint}/status/{id}`: the job's status object; 404 when unknown or expired.
pub async fn status(
    State(gw): State<AppState>,
    EndpointJob(id, endpoint): EndpointJob,
) -> Result<Json<JobView>, RunpodError> {
    let view = gw.store.get(&id).await?.ok_or_else(|| gone(&id))?;
    Ok(Json(
        crate::cold::annotate(gw.store.as_ref(), &endpoint, view).await,
    ))
}

/// `POST /v2/{endpoint}/status-sync/{id}?wait=ms`: status after the job ends or the wait does.
pub async fn status_sync(
    State(gw): State<AppState>,
    EndpointJob(id, endpoint): EndpointJob,
    q: Result<QueryParams<WaitQuery>, GatewayError>,
) -> Result<Json<JobView>, RunpodError> {
    let QueryParams(q) = q?;
    let view = gw
        .store
        .wait_final(&id, q.duration())
        .await?
        .ok_or_else(|| gone(&id))?;
    Ok(Json(
        crate::cold::annotate(gw.store.as_ref(), &endpoint, view).await,
    ))
}

/// `GET|POST /v2/{endpoint}/stream/{id}`: chunks not delivered before; `stream` is always
/// present, so the SDK's `Job.stream()` can tell when a final job has nothing left.
pub async fn stream(
    State(gw): State<AppState>,
    EndpointJob(id, _): EndpointJob,
    q: Result<QueryParams<WaitQuery>, GatewayError>,
) -> Result<Json<StreamView>, RunpodError> {
    let QueryParams(q) = q?;
    // Without ?wait, a short long-poll: chunks come back as soon as there are some.
    let wait = q
        .wait
        .map(|_| q.duration())
        .unwrap_or(Duration::from_secs(1));
    let read = gw.store.take_stream(&id, wait).await.map_err(about(&id))?;
    let mut view = StreamView {
        id,
        status: read.status,
        stream: read
            .chunks
            .into_iter()
            .map(|output| StreamChunk { output })
            .collect(),
        error: None,
    };
    // A client that only reads the stream learns why the job ended, as `/status` says it.
    if matches!(view.status, JobStatus::Failed | JobStatus::TimedOut) {
        view.error = gw.store.get(&view.id).await?.and_then(|v| v.error);
    }
    Ok(Json(view))
}

pub async fn cancel(
    State(gw): State<AppState>,
    EndpointJob(id, _): EndpointJob,
) -> Result<Json<JobAccepted>, RunpodError> {
    let status = gw.store.cancel(&id).await.map_err(about(&id))?;
    Ok(Json(JobAccepted { id, status }))
}

pub async fn retry(
    State(gw): State<AppState>,
    EndpointJob(id, _): EndpointJob,
) -> Result<Json<JobAccepted>, RunpodError> {
    let status = gw.store.retry(&id).await.map_err(|e| match e {
        queue::QueueError::BadTransition { status, .. } => GatewayError::bad_request(format!(
            "job `{id}` is {status}; only FAILED or TIMED_OUT jobs can be retried"
        )),
        other => about(&id)(other),
    })?;
    Ok(Json(JobAccepted { id, status }))
}

/// `POST /v2/{endpoint}/purge-queue`: the caller's queued jobs (every tenant's for an admin
/// key or a gateway without keys).
pub async fn purge_queue(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(endpoint): Path<String>,
) -> Result<Json<Purged>, RunpodError> {
    gw.endpoint(&endpoint)?;
    let removed = gw.store.purge(&endpoint, caller.tenant.as_deref()).await?;
    Ok(Json(Purged {
        removed,
        status: "completed".into(),
    }))
}

/// `GET /v2/{endpoint}/health`: job counts and workers by state.
pub async fn health(
    State(gw): State<AppState>,
    Path(endpoint): Path<String>,
) -> Result<Json<EndpointHealth>, RunpodError> {
    gw.endpoint(&endpoint)?;
    Ok(Json(endpoint_health(&gw, &endpoint).await?.0))
}

/// An endpoint's health as `/health` and `/metrics` show it, and the store's numbers behind
/// it.
pub(crate) async fn endpoint_health(
    gw: &AppState,
    endpoint: &str,
) -> Result<(EndpointHealth, queue::QueueMetrics), GatewayError> {
    let m = gw.store.metrics(endpoint).await?;
    // The autoscaler's view adds workers the store cannot see yet (starting) or any more
    // (unhealthy, draining), and each worker's cold start.
    let fleet = gw.store.fleet(endpoint).await?.unwrap_or_default();
    let idle = m.workers_live - m.workers_running;
    // A worker the autoscaler still shows as initializing may already be live in the store
    // (idle or running): counted there, not twice.
    let live: std::collections::HashSet<String> = if fleet.count(FleetState::Initializing) > 0 {
        gw.store
            .workers(endpoint)
            .await?
            .into_iter()
            .map(|w| w.id)
            .collect()
    } else {
        Default::default()
    };
    let initializing = fleet
        .workers
        .iter()
        .filter(|w| w.state == FleetState::Initializing && !live.contains(&w.id))
        .count();
    let health = EndpointHealth {
        jobs: JobCounts {
            completed: m.completed,
            failed: m.failed,
            in_progress: m.in_progress,
            in_queue: m.in_queue + m.in_queue_low_priority,
            retried: m.retried,
        },
        workers: WorkerCounts {
            idle,
            running: m.workers_running,
            initializing,
            ready: idle,
            draining: fleet.count(FleetState::Draining),
            throttled: 0,
            unhealthy: fleet.count(FleetState::Unhealthy),
            parked: fleet.count(FleetState::Parked),
        },
        fleet: fleet.workers,
        fitness_failures: gw.store.fitness_failures(endpoint).await?,
    };
    Ok((health, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T: Duration = Duration::from_secs(600);

    #[test]
    fn run_bodies_are_validated_before_queueing() {
        assert!(new_job(json!({}), false, T)
            .unwrap_err()
            .to_string()
            .contains("input"));
        assert!(new_job(json!({"input": null}), false, T).is_err());
        assert!(new_job(json!([1]), false, T).is_err());
        assert!(new_job(json!({"input": 1, "webhook": "ftp://x"}), false, T).is_err());
        assert!(new_job(json!({"input": 1, "policy": {"ttl": "x"}}), false, T).is_err());
        assert!(new_job(json!({"input": 1, "extra": 1}), false, T)
            .unwrap_err()
            .to_string()
            .contains("extra"));
        let j = new_job(
            json!({"input": {"a": 1}, "webhook": "http://h/x", "s3Config": {"b": 2},
                   "policy": {"executionTimeout": 5000, "ttl": 2000, "lowPriority": true}}),
            true,
            T,
        )
        .unwrap();
        assert_eq!(j.webhook.as_deref(), Some("http://h/x"));
        assert_eq!(
            j.policy.execution_timeout, 2000,
            "a job cannot run past its TTL"
        );
        assert!(j.policy.low_priority && j.sync);
        assert_eq!(
            new_job(json!({"input": 1}), false, T)
                .unwrap()
                .policy
                .execution_timeout,
            600_000
        );
        // A policy without `executionTimeout` keeps the endpoint's, as with no policy at all.
        let endpoint = Duration::from_secs(30);
        let xt = |body| {
            new_job(body, false, endpoint)
                .unwrap()
                .policy
                .execution_timeout
        };
        assert_eq!(xt(json!({"input": 1, "policy": {"ttl": 100_000}})), 30_000);
        assert_eq!(
            xt(json!({"input": 1, "policy": {"lowPriority": true}})),
            30_000
        );
        assert_eq!(xt(json!({"input": 1})), 30_000);
        assert!(new_job(json!({"input": 1, "policy": {"ttl": 0}}), false, T).is_err());
    }

    #[test]
    fn wait_is_clamped_like_runpod() {
        assert_eq!(WaitQuery { wait: None }.duration(), Duration::from_secs(90));
        assert_eq!(
            WaitQuery { wait: Some(5) }.duration(),
            Duration::from_secs(1)
        );
        assert_eq!(
            WaitQuery {
                wait: Some(10_000_000)
            }
            .duration(),
            Duration::from_secs(300)
        );
    }
}
