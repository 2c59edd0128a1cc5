//! The job store: one trait ([`JobStore`]) that the gateway programs against, and its backends.
//! The in-memory backend is the embedded default (one gateway; jobs die with the process); the
//! Redis backend is durable and shared by any number of gateways.
//!
//! The trait speaks in whole operations (submit, take, report, wait) rather than reads and
//! writes, so that a networked backend can make each one atomic (a Lua script in Redis) and
//! every state change is checked against [`JobStatus::can_become`] in one place.

#![warn(missing_docs)]

#[doc(hidden)]
/// The behaviour every backend must show, as tests (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
mod memory;
mod redis_store;
#[doc(hidden)]
/// Test helpers: a real `redis-server` on a free port (feature `testing`).
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use memory::MemoryStore;
pub use redis_store::{RedisStore, OP_TIMEOUT};

use async_trait::async_trait;
use protocol::health::{FitnessFailure, FleetView};
use protocol::job::{JobPolicy, JobReport, JobView, TakenJob};
use protocol::responses::stored::StoredResponse;
use protocol::{JobId, JobStatus};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Why a job store operation failed. The gateway maps these to HTTP statuses in
/// `gateway/src/error.rs`: 503 for `QueueFull` and `Unavailable`, 404 for `NotFound`, 409 for
/// `NotHeld` and `BadTransition`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    /// `submit` found the endpoint already holding [`StoreSettings::max_queue`] queued jobs
    /// (normal and low priority together); holds the endpoint name. HTTP 503.
    #[error("endpoint `{0}` has too many queued jobs")]
    QueueFull(String),
    /// No such job: never submitted, expired (retention or TTL) or purged. HTTP 404.
    #[error("job `{0}` not found")]
    NotFound(JobId),
    /// A worker pushed stream chunks or reported on a job whose lease it does not hold (never
    /// taken, or requeued after the worker timeout and perhaps taken by another). HTTP 409.
    #[error("job `{job}` is not held by worker `{worker}`")]
    NotHeld {
        /// The job named in the call.
        job: JobId,
        /// The worker that claimed to hold it.
        worker: String,
    },
    /// The job's status cannot change to `to` (the table in [`JobStatus::can_become`]); in
    /// practice `retry` of a job that is not FAILED or TIMED_OUT. HTTP 409 (the gateway's
    /// `retry` route answers 400 instead).
    #[error("job `{job}` is {status}; cannot become {to}")]
    BadTransition {
        /// The job named in the call.
        job: JobId,
        /// Its status when the call was made.
        status: JobStatus,
        /// The status the call asked for.
        to: JobStatus,
    },
    /// The backend did not answer: Redis unreachable, a bad Redis URL, or a call past
    /// [`OP_TIMEOUT`]; holds the cause. HTTP 503.
    #[error("job store unavailable: {0}")]
    Unavailable(String),
}

/// A job store operation's result, failing with [`QueueError`].
pub type Result<T> = std::result::Result<T, QueueError>;

/// A job as submitted.
#[derive(Clone, Debug, Default)]
pub struct NewJob {
    /// The request's `input`, handed to the worker as is (any non-null JSON value).
    pub input: Value,
    /// RunPod's `policy`: execution timeout, TTL (both ms) and low priority.
    pub policy: JobPolicy,
    /// RunPod's `webhook`: an http(s) URL to POST the final status object to when the job
    /// ends (not when it is cancelled).
    pub webhook: Option<String>,
    /// RunPod's `s3Config`, passed through untouched to the worker in its [`TakenJob`].
    pub s3_config: Option<Value>,
    /// Submitted by `runsync`: shorter retention, `sync-` id prefix.
    pub sync: bool,
    /// The tenant (client key) the job belongs to, as a tag of lowercase hex digits put in its
    /// id; `None`: no tenant (a gateway without keys, or an admin key).
    pub tenant: Option<String>,
    /// The W3C `traceparent` of the request that queued it, handed to the worker in its
    /// [`TakenJob`] so that the job's spans join the request's trace.
    pub traceparent: Option<String>,
}

/// The outcome of a stream read: the chunks after the cursor, the cursor to pass next, and the
/// job's status at the time of the read. A final status with no chunks means the stream ended.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamRead {
    /// Stream chunks from the cursor on, in the order the worker pushed them.
    pub chunks: Vec<Value>,
    /// The cursor for the next read: the index of the first chunk not yet returned (the count
    /// of chunks the job has so far).
    pub next: usize,
    /// The job's status at the time of the read.
    pub status: JobStatus,
}

/// Per-endpoint numbers the autoscaler and `/health` read.
/// (Also the Redis script's `metrics` reply, decoded as is.)
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueMetrics {
    /// Normal-priority jobs waiting in the queue.
    pub in_queue: usize,
    /// Low-priority jobs (`policy.lowPriority`) waiting in the queue.
    pub in_queue_low_priority: usize,
    /// Jobs leased to a worker and running.
    pub in_progress: usize,
    /// Age of the oldest queued normal-priority job (the queue delay).
    pub oldest_queued_ms: u64,
    /// Jobs submitted since the store began (retries not counted).
    pub arrived: u64,
    /// Jobs that ended COMPLETED since the store began.
    pub completed: u64,
    /// Jobs that ended FAILED or TIMED_OUT since the store began (cancelled ones not counted).
    pub failed: u64,
    /// Requeues since the store began: jobs whose worker was lost, and client `retry` calls.
    pub retried: u64,
    /// Workers heard from recently.
    pub workers_live: usize,
    /// Live workers holding at least one job.
    pub workers_running: usize,
}

/// A worker the store has heard from within the worker timeout.
/// (Also an entry of the Redis script's `workers` reply.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveWorker {
    /// The worker's id, as the worker gives it on the worker routes.
    pub id: String,
    /// Jobs it holds.
    pub jobs: usize,
    /// Jobs it has taken since the store first heard of it: a change between two looks means
    /// it worked meanwhile, even if every job was too short to be seen held.
    pub taken: u64,
}

/// How long a fleet view stays without a refresh (the autoscaler writes one every control
/// tick, 100 ms): a stopped autoscaler's view goes away instead of showing stale workers.
pub const FLEET_TTL: Duration = Duration::from_secs(15);

/// Retention and timing settings of a store.
#[derive(Clone, Debug)]
pub struct StoreSettings {
    /// Queued jobs per endpoint before `submit` fails with [`QueueError::QueueFull`].
    pub max_queue: usize,
    /// How long results of `/run` jobs are kept after they end.
    pub retention: Duration,
    /// How long results of `runsync` jobs are kept after they end.
    pub sync_retention: Duration,
    /// A worker silent this long is not live; its jobs go back to the queue.
    pub worker_timeout: Duration,
    /// Times a job is re-queued after losing its worker before it fails.
    pub max_retries: u32,
    /// A job a worker holds but has left out of its (vouched) pings' job lists this long was
    /// handed out by a `take` whose answer never reached the worker: it goes back to the queue.
    pub orphan_after: Duration,
    /// Run the once-a-second housekeeping (gateways do; a separate autoscaler process does not,
    /// so that a sweep gap still means every gateway was away).
    pub housekeeping: bool,
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            max_queue: 1024,
            retention: Duration::from_secs(30 * 60),
            sync_retention: Duration::from_secs(60),
            worker_timeout: Duration::from_secs(30),
            max_retries: 2,
            orphan_after: Duration::from_secs(30),
            housekeeping: true,
        }
    }
}

/// What clients do with jobs (the `/v1` and `/v2` client routes): submit, follow, cancel.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Enqueue a job on `endpoint`.
    async fn submit(&self, endpoint: &str, job: NewJob) -> Result<JobId>;

    /// The job's status object, or `None` if unknown or expired.
    async fn get(&self, job: &JobId) -> Result<Option<JobView>>;

    /// Like [`JobQueue::get`], but first waits up to `wait` for the job to reach a final state.
    async fn wait_final(&self, job: &JobId, wait: Duration) -> Result<Option<JobView>>;

    /// Stream chunks from `cursor` on, waiting up to `wait` while there are none and the job is
    /// not final.
    async fn read_stream(&self, job: &JobId, cursor: usize, wait: Duration) -> Result<StreamRead>;

    /// Like [`JobQueue::read_stream`] from the job's own delivery cursor, which it advances:
    /// RunPod's `/stream` returns each chunk once.
    async fn take_stream(&self, job: &JobId, wait: Duration) -> Result<StreamRead>;

    /// Cancel a job that has not ended; a running job's worker learns it through
    /// [`WorkerRegistry::stops`]. Returns the job's status after the call.
    async fn cancel(&self, job: &JobId) -> Result<JobStatus>;

    /// Put a FAILED or TIMED_OUT job back in its queue (same id and input).
    async fn retry(&self, job: &JobId) -> Result<JobStatus>;

    /// Delete the endpoint's queued jobs (running ones are untouched), only those of `tenant`
    /// when given (see [`job_tenant`]); returns how many.
    async fn purge(&self, endpoint: &str, tenant: Option<&str>) -> Result<usize>;
}

/// Workers and their leases: what workers do (take, stream, report, ping; the worker routes)
/// and what whoever runs them asks (who is live, who retired, who is gone).
#[async_trait]
pub trait WorkerRegistry: Send + Sync + 'static {
    /// Lease up to `max` queued jobs of `endpoint` to `worker`, waiting up to `wait` for the
    /// first one. An empty result means none arrived in time.
    async fn take(
        &self,
        endpoint: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<TakenJob>>;

    /// Append stream chunks to a job `worker` holds.
    async fn push_stream(&self, job: &JobId, worker: &str, chunks: Vec<Value>) -> Result<()>;

    /// A worker's report on a job it holds: progress, completion or failure. Repeating the
    /// report that already finished the job succeeds (the RunPod SDK retries `job-done`).
    async fn report(&self, job: &JobId, worker: &str, report: JobReport) -> Result<()>;

    /// Ids of jobs held by `worker` that must stop (cancelled or timed out), waiting up to
    /// `wait` for one. Each id is returned once.
    async fn stops(&self, worker: &str, wait: Duration) -> Result<Vec<JobId>>;

    /// A worker's heartbeat. With `running` (the worker vouches that it lists every job it
    /// runs), jobs it holds but keeps leaving out go back to the queue after `orphan_after`.
    async fn ping(&self, endpoint: &str, worker: &str, running: Option<&[JobId]>) -> Result<()>;

    /// The worker asked to be stopped after its job (`stopPod`), or the autoscaler drains or
    /// parks it: it gets no more jobs, and whoever runs it is told through
    /// [`WorkerRegistry::is_retired`]. Returns the jobs it holds at that instant, atomically
    /// with the retirement: with 0, no job can reach it until [`WorkerRegistry::reinstate`].
    async fn retire(&self, worker: &str) -> Result<usize>;

    /// Undo [`WorkerRegistry::retire`] (a parked worker is thawed): it takes jobs again, and
    /// its `take` polls still open look at the queue at once.
    async fn reinstate(&self, endpoint: &str, worker: &str) -> Result<()>;

    /// Whether `worker` asked to be stopped ([`WorkerRegistry::retire`]) and is not yet known
    /// to be gone ([`WorkerRegistry::lost`] forgets it).
    async fn is_retired(&self, worker: &str) -> Result<bool>;

    /// The endpoint's live workers, by id.
    async fn workers(&self, endpoint: &str) -> Result<Vec<LiveWorker>>;

    /// Worker `worker` is gone for sure (its process exited): its jobs go back to the queue
    /// now, as they would after the worker timeout. Returns how many.
    async fn lost(&self, worker: &str) -> Result<usize>;
}

/// Per-endpoint numbers for scaling and health: queue metrics and the autoscaler's fleet view.
#[async_trait]
pub trait FleetMetrics: Send + Sync + 'static {
    /// The endpoint's queue and worker numbers now (an unknown endpoint reads as all zeros).
    async fn metrics(&self, endpoint: &str) -> Result<QueueMetrics>;

    /// The autoscaler's view of an endpoint's workers (states, cold starts), for `/health`
    /// on every gateway. Kept for [`FLEET_TTL`]: a view nobody refreshes goes away.
    async fn put_fleet(&self, endpoint: &str, fleet: FleetView) -> Result<()>;

    /// Keep a worker's failed fitness check among its endpoint's last
    /// [`protocol::health::MAX_FITNESS_FAILURES`], for
    /// [`protocol::health::FITNESS_TTL_SECS`] after the newest.
    async fn put_fitness_failure(&self, endpoint: &str, failure: &FitnessFailure) -> Result<()>;

    /// The endpoint's kept fitness-check failures, newest first.
    async fn fitness_failures(&self, endpoint: &str) -> Result<Vec<FitnessFailure>>;

    /// The fleet view last stored by [`FleetMetrics::put_fleet`], or `None` if there is none
    /// (never put, expired, or unreadable by this version).
    async fn fleet(&self, endpoint: &str) -> Result<Option<FleetView>>;

    /// Wait until a job arrives on one of `endpoints` (or a parked worker is reinstated), or
    /// `wait` passes: the autoscaler's wake-up, so a start or thaw need not wait for its next
    /// tick. Spurious returns are allowed.
    async fn wait_arrival(&self, endpoints: &[String], wait: Duration);
}

/// Wait until one of `rxs` changes, or `wait` passes.
pub(crate) async fn any_change(rxs: Vec<tokio::sync::watch::Receiver<u64>>, wait: Duration) {
    let changes = rxs.into_iter().map(|mut rx| {
        Box::pin(async move {
            let _ = rx.changed().await;
        })
    });
    let all = futures::future::select_all(changes);
    let _ = tokio::time::timeout(wait, all).await;
}

/// Results to deliver elsewhere: webhooks of finished jobs.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Jobs that reached a final state and have a webhook, each returned once with its URL,
    /// waiting up to `wait` for one.
    async fn due_webhooks(&self, wait: Duration) -> Result<Vec<(String, JobView)>>;
}

/// What a token bucket answered: whether the request may go on, and the figures of OpenAI's
/// `x-ratelimit-*` headers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateTake {
    /// The bucket held enough: the cost was taken.
    pub allowed: bool,
    /// Whole tokens left (0 while in debt).
    pub remaining: u64,
    /// Until the bucket is full again.
    pub reset: Duration,
    /// When refused: until it holds what was needed.
    pub retry_after: Duration,
}

/// One bucket of a [`RateLimits::take_tokens`] call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BucketTake<'a> {
    /// The bucket's name.
    pub key: &'a str,
    /// Its size, and its refill per minute.
    pub capacity: u64,
    /// What to take when every bucket of the call holds its `need`.
    pub cost: u64,
    /// What it must hold for the call to go on.
    pub need: u64,
}

/// Token buckets by name, shared by every gateway on the same store: a bucket of `capacity`
/// tokens starts full and refills continuously at `capacity` per minute.
#[async_trait]
pub trait RateLimits: Send + Sync + 'static {
    /// If every bucket holds at least its `need` tokens, take each one's `cost` (a bucket may
    /// go below zero: a debt the refill repays, so a response's tokens can be charged after it
    /// ran); else take nothing from any, so a request refused by one limit spends none of the
    /// others. One answer per bucket, in order, atomically. Errors: the store is unavailable.
    async fn take_tokens(&self, buckets: &[BucketTake<'_>]) -> Result<Vec<RateTake>>;
}

/// One step of a token bucket holding `tokens` `elapsed` after its last step: the tokens after
/// the refill and, if `take`, the cost, and the answer. The memory store runs this; the Redis
/// store runs the same arithmetic in its script (`rate`).
pub fn bucket_step(
    tokens: f64,
    elapsed: Duration,
    b: &BucketTake<'_>,
    take: bool,
) -> (f64, RateTake) {
    let cap = b.capacity as f64;
    let per_ms = cap / 60_000.0;
    let mut tokens = (tokens + elapsed.as_millis() as f64 * per_ms).min(cap);
    let allowed = tokens >= b.need as f64;
    if take {
        tokens -= b.cost as f64;
    }
    let ms = |t: f64| Duration::from_millis((t.max(0.0) / per_ms).ceil() as u64);
    let answer = RateTake {
        allowed,
        remaining: tokens.max(0.0).floor() as u64,
        reset: ms(cap - tokens),
        retry_after: if allowed {
            Duration::ZERO
        } else {
            ms(b.need as f64 - tokens)
        },
    };
    (tokens, answer)
}

/// The Responses API's stored responses (`store`) by response id, each kept for its retention
/// and shared by every gateway on the same store.
#[async_trait]
pub trait ResponseStore: Send + Sync + 'static {
    /// Keep `response` under `id` for `ttl`, replacing what was kept under that id.
    async fn put_response(&self, id: &str, response: &StoredResponse, ttl: Duration) -> Result<()>;
    /// The response kept under `id`, if its retention has not run out.
    async fn response(&self, id: &str) -> Result<Option<StoredResponse>>;
    /// Forget the response kept under `id`; whether there was one.
    async fn delete_response(&self, id: &str) -> Result<bool>;
}

/// A whole job store: every role, as the gateway uses it. Implemented by [`MemoryStore`] and
/// [`RedisStore`], and by anything that implements all six roles.
pub trait JobStore: JobQueue + ScalerStore + Outbox + RateLimits + ResponseStore {}

impl<T: JobQueue + ScalerStore + Outbox + RateLimits + ResponseStore + ?Sized> JobStore for T {}

/// What the autoscaler needs of a store: the workers and the endpoint numbers.
pub trait ScalerStore: WorkerRegistry + FleetMetrics {}

impl<T: WorkerRegistry + FleetMetrics + ?Sized> ScalerStore for T {}

/// Run `f` on `store` every `period` until the store is dropped (housekeeping sweeps).
fn every<T, F, Fut>(period: Duration, store: &std::sync::Arc<T>, f: F)
where
    T: Send + Sync + 'static,
    F: Fn(std::sync::Arc<T>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let weak = std::sync::Arc::downgrade(store);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            match weak.upgrade() {
                Some(s) => f(s).await,
                None => return,
            }
        }
    });
}

/// A fresh unguessable job id: 128 random bits, hex; after `sync-` for a `runsync` job and
/// the tenant's tag and `-` when the job belongs to one (see [`job_tenant`]).
pub fn new_job_id(sync: bool, tenant: Option<&str>) -> JobId {
    let bits: u128 = rand::random();
    let prefix = if sync { "sync-" } else { "" };
    let tenant = tenant.map(|t| format!("{t}-")).unwrap_or_default();
    JobId(format!("{prefix}{tenant}{bits:032x}"))
}

/// The tenant tag in a job id, if the job belongs to one: what follows `sync-` up to the next
/// `-`. (The Redis store's `purge` reads ids the same way.)
pub fn job_tenant(id: &JobId) -> Option<&str> {
    let rest = id.0.strip_prefix("sync-").unwrap_or(&id.0);
    rest.split_once('-').map(|(t, _)| t)
}
