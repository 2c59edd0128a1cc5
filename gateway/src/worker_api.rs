//! The worker API: RunPod's worker protocol (`docs/runpod-protocol.md` section 3), so sluice's own
//! worker and unmodified RunPod handlers pull jobs the same way. Every call carries the worker
//! token, checked by the route group's layer (`crate::auth::worker_token`).

use crate::body::{JsonBody, WorkerLimit, TOO_DEEP};
use crate::error::{GatewayError, RunpodError};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::health::FitnessFailure;
use protocol::job::{stream_chunks, JobDoneBody, JobReport, JobsToStop, PingQuery};
use protocol::JobId;
use serde::Deserialize;
use serde_json::json;

pub async fn job_take(
    State(gw): State<AppState>,
    Path((endpoint, worker)): Path<(String, String)>,
) -> Result<Response, RunpodError> {
    gw.endpoint(&endpoint)?;
    let mut jobs = gw.store.take(&endpoint, &worker, 1, gw.long_poll).await?;
    Ok(match jobs.pop() {
        Some(job) => Json(job).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Deserialize)]
pub struct BatchQuery {
    batch_size: Option<usize>,
}

pub async fn job_take_batch(
    State(gw): State<AppState>,
    Path((endpoint, worker)): Path<(String, String)>,
    Query(q): Query<BatchQuery>,
) -> Result<Response, RunpodError> {
    gw.endpoint(&endpoint)?;
    let n = q.batch_size.unwrap_or(1).clamp(1, 256);
    let jobs = gw.store.take(&endpoint, &worker, n, gw.long_poll).await?;
    Ok(if jobs.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(jobs).into_response()
    })
}

pub async fn job_done(
    State(gw): State<AppState>,
    Path((endpoint, worker, job)): Path<(String, String, String)>,
    body: Result<JsonBody<WorkerLimit>, GatewayError>,
) -> Result<Json<serde_json::Value>, RunpodError> {
    gw.endpoint(&endpoint)?;
    let body = match body {
        Err(e) if refused_output(&e) => return fail_refused(&gw, (&job, &worker), e).await,
        body => body?,
    };
    let done: JobDoneBody = serde_json::from_value(body.into_value())
        .map_err(|e| GatewayError::bad_request(format!("job-done body: {e}")))?;
    let stop = done.stop_pod;
    let (id, report) = (JobId(job), done.report());
    let finished = !matches!(report, JobReport::Progress(_));
    gw.store.report(&id, &worker, report).await?;
    if finished {
        // A repeated report (the SDK retries) is counted again: rare, and cheaper than a
        // second store call to tell.
        if let Ok(Some(view)) = gw.store.get(&id).await {
            crate::metrics::job_finished(&endpoint, gw.keys.key_of_job(&id), &view);
        }
    }
    if stop {
        // The handler asked for a fresh worker after this job (RunPod's `refresh_worker`).
        gw.store.retire(&worker).await?;
    }
    Ok(Json(json!({})))
}

pub async fn job_stream(
    State(gw): State<AppState>,
    Path((endpoint, worker, job)): Path<(String, String, String)>,
    body: Result<JsonBody<WorkerLimit>, GatewayError>,
) -> Result<Json<serde_json::Value>, RunpodError> {
    gw.endpoint(&endpoint)?;
    let body = match body {
        Err(e) if refused_output(&e) => return fail_refused(&gw, (&job, &worker), e).await,
        body => body?,
    };
    let chunks = stream_chunks(body.into_value()).map_err(GatewayError::bad_request)?;
    gw.store.push_stream(&JobId(job), &worker, chunks).await?;
    Ok(Json(json!({})))
}

/// Whether a worker's report was refused for what the handler produced (over the body limit,
/// or nested deeper than clients may read) rather than for how it was sent.
fn refused_output(e: &GatewayError) -> bool {
    matches!(
        e,
        GatewayError::PayloadTooLarge(_)
            | GatewayError::BadRequest {
                code: Some(TOO_DEEP),
                ..
            }
    )
}

/// A handler's output or stream chunk that no gateway takes fails its job at once, saying
/// why, rather than leaving it in progress until its execution timeout while the worker
/// repeats a report that cannot succeed (or drops it and the job is requeued). The worker is
/// answered with the refusal, which the RunPod SDK logs before it drops the job; a repeated
/// report finds the job already failed.
async fn fail_refused(
    gw: &AppState,
    (job, worker): (&str, &str),
    e: GatewayError,
) -> Result<Json<serde_json::Value>, RunpodError> {
    let why = match &e {
        GatewayError::PayloadTooLarge(limit) => format!(
            "the handler's output is larger than the gateway takes: over {limit} bytes in one \
             report (gateway.max_body_bytes)"
        ),
        other => format!("the handler's output was refused: {other}"),
    };
    match gw
        .store
        .report(&JobId(job.to_string()), worker, JobReport::Failed(why))
        .await
    {
        Ok(()) => tracing::warn!(job, worker, "a handler's report was refused: {e}"),
        Err(already) => tracing::debug!(job, "refused report of a job that ended: {already}"),
    }
    Err(e.into())
}

pub async fn ping(
    State(gw): State<AppState>,
    Path((endpoint, worker)): Path<(String, String)>,
    Query(q): Query<PingQuery>,
) -> Result<Json<serde_json::Value>, RunpodError> {
    gw.endpoint(&endpoint)?;
    if q.status.as_deref() == Some("unhealthy") {
        // RunPod's SDK failed a fitness check and exits: no sign of life, a reason to keep.
        fitness_failed(&gw, &endpoint, &worker, &q).await?;
        return Ok(Json(json!({})));
    }
    crate::metrics::engine_figures(&endpoint, &worker, &q);
    let running: Vec<JobId> = q
        .job_id
        .as_deref()
        .map(|ids| {
            ids.split(',')
                .filter(|s| !s.is_empty())
                .map(JobId::from)
                .collect()
        })
        .unwrap_or_default();
    // Only a worker that says its list is complete (`listed=1`, sluice's own) has left-out
    // jobs reclaimed: RunPod's SDK may share one job list file between workers.
    let vouched = q.listed.as_deref() == Some("1");
    gw.store
        .ping(&endpoint, &worker, vouched.then_some(running.as_slice()))
        .await?;
    Ok(Json(json!({})))
}

/// Keep a worker's failed fitness check for its endpoint's health, count it, and log it; the
/// worker exits by itself, and its exit counts as a crash (the autoscaler backs off).
async fn fitness_failed(
    gw: &AppState,
    endpoint: &str,
    worker: &str,
    q: &PingQuery,
) -> Result<(), RunpodError> {
    let cut = |s: Option<&str>, n: usize| s.unwrap_or("").chars().take(n).collect::<String>();
    let failure = FitnessFailure {
        worker: worker.to_string(),
        check: cut(q.check.as_deref(), 128),
        reason: cut(q.reason.as_deref(), 512),
        at_ms: protocol::health::epoch_ms(),
    };
    tracing::warn!(
        endpoint,
        worker,
        check = failure.check,
        reason = failure.reason,
        "a worker failed a fitness check"
    );
    crate::metrics::fitness_failed(endpoint, &failure.check);
    gw.store.put_fitness_failure(endpoint, &failure).await?;
    Ok(())
}

pub async fn job_stop(
    State(gw): State<AppState>,
    Path((endpoint, worker)): Path<(String, String)>,
) -> Result<Response, RunpodError> {
    gw.endpoint(&endpoint)?;
    // Polling job-stop is a sign of life, and makes the worker known before it takes a job.
    gw.store.ping(&endpoint, &worker, None).await?;
    let stops = gw.store.stops(&worker, gw.long_poll).await?;
    Ok(if stops.is_empty() {
        StatusCode::NO_CONTENT.into_response()
    } else {
        Json(JobsToStop {
            jobs_to_stop: stops,
        })
        .into_response()
    })
}
