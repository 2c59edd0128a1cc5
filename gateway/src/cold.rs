//! What a client waiting for a cold start is told: the cold start a job waited for (the
//! `x-sluice-cold-start` header, `coldStart` in `/v2` status objects), SSE comment lines while
//! a streamed request waits for a worker to start, and `Retry-After` on a full queue. All read
//! from the autoscaler's fleet view in the store, so every gateway tells the same.

use protocol::health::{epoch_ms, FleetState, JobColdStart};
use protocol::job::JobView;
use queue::JobStore;
use std::time::Duration;

/// The cold start `view`'s job waited for, if its worker is still in `endpoint`'s fleet view
/// (see [`protocol::health::ColdStart::waited_for`]).
pub async fn of_job(store: &dyn JobStore, endpoint: &str, view: &JobView) -> Option<JobColdStart> {
    let (worker, started, delay) = (
        view.worker_id.as_ref()?,
        view.started_at_ms?,
        view.delay_time?,
    );
    let fleet = store.fleet(endpoint).await.ok()??;
    let w = fleet.workers.into_iter().find(|w| &w.id == worker)?;
    w.cold_start?.waited_for(started, delay)
}

/// `view` with its `coldStart` filled in.
pub async fn annotate(store: &dyn JobStore, endpoint: &str, mut view: JobView) -> JobView {
    view.cold_start = of_job(store, endpoint, &view).await;
    view
}

/// An SSE comment on the cold start `endpoint` is going through, if one is:
/// `: cold-start tier=disk phase=load elapsed_ms=812` (the worker starting longest ago; its
/// phase from [`protocol::health::ColdStart::phase`]). Comments are ignored by SSE clients
/// (the `openai` package too) and keep proxies from closing a quiet connection.
pub async fn comment(store: &dyn JobStore, endpoint: &str) -> Option<String> {
    let fleet = store.fleet(endpoint).await.ok()??;
    let now = epoch_ms();
    let c = fleet
        .workers
        .iter()
        .filter(|w| w.state == FleetState::Initializing)
        .filter_map(|w| w.cold_start)
        .min_by_key(|c| c.started_at_ms)?;
    let tier = c.tier.map_or("unknown", |t| t.as_str());
    Some(format!(
        ": cold-start tier={tier} phase={} elapsed_ms={}\n\n",
        c.phase(),
        now.saturating_sub(c.started_at_ms)
    ))
}

/// When a client refused for a full queue should come back: the time the endpoint's workers
/// need for the jobs ahead of it, estimated as the queue length per worker times the
/// longest cold start the fleet measured (at least 1 s, at most 10 min). A rough figure: the
/// store keeps no service times.
pub async fn retry_after(store: &dyn JobStore, endpoint: &str) -> Duration {
    let Ok(m) = store.metrics(endpoint).await else {
        return Duration::from_secs(1);
    };
    let start_ms = store
        .fleet(endpoint)
        .await
        .ok()
        .flatten()
        .and_then(|f| {
            f.workers
                .iter()
                .filter_map(|w| w.cold_start?.ready_ms)
                .max()
        })
        .unwrap_or(1000);
    let per_worker = m.in_queue.div_ceil(m.workers_live.max(1)) as u64;
    Duration::from_millis((start_ms * per_worker.max(1)).clamp(1000, 600_000))
}

/// Submit `job` to `endpoint`; a full queue is answered with a `Retry-After`.
pub async fn submit(
    store: &dyn JobStore,
    endpoint: &str,
    job: queue::NewJob,
) -> Result<protocol::JobId, crate::error::GatewayError> {
    match store.submit(endpoint, job).await {
        Err(e @ queue::QueueError::QueueFull(_)) => Err(crate::error::GatewayError::QueueFull {
            message: e.to_string(),
            retry_after: retry_after(store, endpoint).await,
        }),
        other => Ok(other?),
    }
}
