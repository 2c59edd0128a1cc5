//! Redis job store: durable, shared by any number of gateways. Each operation is one call of
//! `store.lua` (atomic); waiters sleep on events relayed from Redis pub/sub (`notify.rs`).
//! Leases: a worker's jobs stay its own while it is heard from (take, ping); the sweep that
//! every gateway runs once a second requeues the jobs of silent workers, and fails them after
//! `max_retries`. Finished jobs expire with Redis expirations (retention, never past the TTL).
//!
//! Redis down: every call is bounded by [`OP_TIMEOUT`] and fails as
//! [`QueueError::Unavailable`] (a 503 at the gateway); the connection is re-made by itself.

mod notify;
mod reply;
mod responses;

use crate::{
    new_job_id, BucketTake, FleetMetrics, JobQueue, LiveWorker, NewJob, Outbox, QueueError,
    QueueMetrics, RateLimits, RateTake, Result, StoreSettings, StreamRead, WorkerRegistry,
};
use async_trait::async_trait;
use notify::Notifier;
use protocol::health::{FitnessFailure, FleetView, FITNESS_TTL_SECS, MAX_FITNESS_FAILURES};
use protocol::job::{JobReport, JobView, TakenJob};
use protocol::metrics as m;
use protocol::{JobId, JobStatus};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use reply::{stored_json, Outcome};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// The longest any single Redis call may take before the request fails with a 503.
pub const OP_TIMEOUT: Duration = Duration::from_secs(3);
/// Waiters look again this often even without an event (events can be lost on reconnects).
const RECHECK: Duration = Duration::from_secs(1);
/// Chunks per script call (Lua's `unpack` has a stack limit).
const PUSH_BATCH: usize = 512;

/// The Redis [`JobStore`](crate::JobStore): durable, shared by any number of gateways; each
/// operation is one atomic call of `store.lua`, bounded by [`OP_TIMEOUT`].
pub struct RedisStore {
    client: redis::Client,
    conn: std::sync::Mutex<Option<ConnectionManager>>,
    connecting: Mutex<()>,
    script: redis::Script,
    events: Arc<Notifier>,
    settings: StoreSettings,
    /// The event subscription (it would otherwise outlive the store, waiting for messages).
    listener: JoinHandle<()>,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(format!("redis: {e}"))
}

/// The transition table and final states as Lua tables, from the one definition in `protocol`.
fn lua_rules() -> String {
    let mut can = String::from("local CAN = {");
    let mut fin = String::from("local FINAL = {");
    for a in JobStatus::ALL {
        for b in JobStatus::ALL.into_iter().filter(|b| a.can_become(*b)) {
            can += &format!("['{a}>{b}'] = true, ");
        }
        if a.is_final() {
            fin += &format!("['{a}'] = true, ");
        }
    }
    format!("{can}}}\n{fin}}}\n")
}

impl RedisStore {
    /// A store on `url` (`redis://HOST:PORT/DB`), with its event subscription and a sweeper
    /// running once a second. Redis need not be up yet: calls fail as unavailable until it is.
    pub fn start(url: &str, settings: StoreSettings) -> Result<Arc<Self>> {
        let client = redis::Client::open(url)
            .map_err(|e| QueueError::Unavailable(format!("bad redis url `{url}`: {e}")))?;
        let events = Arc::new(Notifier::default());
        let listener = events.listen(client.clone());
        let store = Arc::new(RedisStore {
            client,
            conn: std::sync::Mutex::new(None),
            connecting: Mutex::new(()),
            script: redis::Script::new(&(lua_rules() + include_str!("redis_store/store.lua"))),
            events,
            settings,
            listener,
        });
        if store.settings.housekeeping {
            crate::every(Duration::from_secs(1), &store, |s| async move {
                if let Err(e) = s.sweep().await {
                    tracing::debug!("sweep: {e}");
                }
            });
        }
        Ok(store)
    }

    /// Check that Redis answers (for a clear message at start).
    pub async fn check(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        tokio::time::timeout(
            OP_TIMEOUT,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map_err(|_| unavailable("no answer to PING"))?
        .map_err(unavailable)?;
        Ok(())
    }

    /// Housekeeping: silent workers' jobs requeued (or failed after retries), execution
    /// timeouts, TTLs. Returns how many jobs it changed.
    pub async fn sweep(&self) -> Result<usize> {
        let timeout = self.settings.worker_timeout.as_millis() as u64;
        let r: reply::Count = self
            .ok("sweep", |i| {
                i.arg(timeout).arg(self.settings.max_retries);
            })
            .await?;
        Ok(r.n)
    }

    async fn conn(&self) -> Result<ConnectionManager> {
        let cached = || self.conn.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(c) = cached() {
            return Ok(c);
        }
        // One connection attempt at a time; others fail at once rather than queue behind it.
        let Ok(_connecting) = self.connecting.try_lock() else {
            return Err(unavailable("not connected yet"));
        };
        if let Some(c) = cached() {
            return Ok(c);
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1);
        let c = tokio::time::timeout(
            OP_TIMEOUT,
            ConnectionManager::new_with_config(self.client.clone(), config),
        )
        .await
        .map_err(|_| unavailable("connect timed out"))?
        .map_err(unavailable)?;
        *self.conn.lock().unwrap_or_else(|p| p.into_inner()) = Some(c.clone());
        Ok(c)
    }

    /// Run operation `op` of the script with the arguments `args` adds; its reply decoded.
    async fn call<T: DeserializeOwned>(
        &self,
        op: &str,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Outcome<T>> {
        let started = std::time::Instant::now();
        let reply = self.call_timed(op, args).await;
        let labels = [("backend", "redis".to_string()), ("op", op.to_string())];
        metrics::histogram!(m::STORE_OP_DURATION, &labels).record(started.elapsed().as_secs_f64());
        if reply.is_err() {
            metrics::counter!(m::STORE_OP_ERRORS, &labels).increment(1);
        }
        reply
    }

    async fn call_timed<T: DeserializeOwned>(
        &self,
        op: &str,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<Outcome<T>> {
        let mut conn = self.conn().await?;
        let mut inv = self.script.prepare_invoke();
        inv.arg(op);
        args(&mut inv);
        let text: String = tokio::time::timeout(OP_TIMEOUT, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| unavailable(format!("`{op}` timed out")))?
            .map_err(unavailable)?;
        serde_json::from_str(&text)
            .map_err(|e| unavailable(format!("`{op}`: unexpected reply `{text}`: {e}")))
    }

    /// [`RedisStore::call`] for an operation that answers only with its values.
    async fn ok<T: DeserializeOwned>(
        &self,
        op: &str,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<T> {
        match self.call(op, args).await? {
            Outcome::Ok(v) => Ok(v),
            _ => Err(unavailable(format!("`{op}`: unexpected reply"))),
        }
    }

    /// [`RedisStore::call`] for an operation on `job` (held by `worker`, where that matters):
    /// answers other than its values become the matching error.
    async fn on_job<T: DeserializeOwned>(
        &self,
        op: &str,
        job: &JobId,
        worker: &str,
        args: impl FnOnce(&mut redis::ScriptInvocation<'_>),
    ) -> Result<T> {
        let outcome = self
            .call(op, |i| {
                i.arg(&job.0);
                args(i);
            })
            .await?;
        match outcome {
            Outcome::Ok(v) => Ok(v),
            Outcome::NotFound => Err(QueueError::NotFound(job.clone())),
            Outcome::NotHeld => Err(QueueError::NotHeld {
                job: job.clone(),
                worker: worker.to_string(),
            }),
            Outcome::Bad { from, to } => Err(QueueError::BadTransition {
                job: job.clone(),
                status: from,
                to,
            }),
            Outcome::Full | Outcome::Retired => {
                Err(unavailable(format!("`{op}`: unexpected reply")))
            }
        }
    }

    fn wait(&self, name: String, wait: Duration) -> Wait<'_> {
        Wait {
            events: &self.events,
            name,
            deadline: Instant::now() + wait,
        }
    }
}

/// A waiter's sleep between looks: until event `name`, at most [`RECHECK`], never past the
/// deadline. Arm before looking, so an event between the look and the sleep is not missed.
struct Wait<'a> {
    events: &'a Notifier,
    name: String,
    deadline: Instant,
}

impl Wait<'_> {
    fn arm(&self) -> tokio::sync::watch::Receiver<u64> {
        self.events.subscribe(&self.name)
    }

    /// `false` when the deadline has passed (do not look again).
    async fn sleep(&self, mut rx: tokio::sync::watch::Receiver<u64>) -> bool {
        let now = Instant::now();
        if now >= self.deadline {
            return false;
        }
        let _ = tokio::time::timeout_at(self.deadline.min(now + RECHECK), rx.changed()).await;
        true
    }
}

impl Drop for RedisStore {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

#[async_trait]
impl JobQueue for RedisStore {
    async fn submit(&self, endpoint: &str, job: NewJob) -> Result<JobId> {
        let id = new_job_id(job.sync, job.tenant.as_deref());
        let keep = if job.sync {
            self.settings.sync_retention
        } else {
            self.settings.retention
        };
        let s3 = job.s3_config.as_ref().map(Value::to_string);
        let outcome: Outcome<reply::Done> = self
            .call("submit", |i| {
                i.arg(endpoint)
                    .arg(&id.0)
                    .arg(job.input.to_string())
                    .arg(s3.unwrap_or_default())
                    .arg(job.webhook.clone().unwrap_or_default())
                    .arg(job.policy.execution_timeout)
                    .arg(job.policy.ttl.max(1))
                    .arg(if job.policy.low_priority { "1" } else { "0" })
                    .arg(keep.as_millis() as u64)
                    .arg(self.settings.max_queue)
                    .arg(job.traceparent.clone().unwrap_or_default());
            })
            .await?;
        match outcome {
            Outcome::Ok(_) => Ok(id),
            Outcome::Full => Err(QueueError::QueueFull(endpoint.to_string())),
            _ => Err(unavailable("`submit`: unexpected reply")),
        }
    }

    async fn get(&self, job: &JobId) -> Result<Option<JobView>> {
        match self.on_job::<reply::Got>("get", job, "", |_| {}).await {
            Ok(got) => Ok(Some(got.view.into_job_view(job.clone(), got.now))),
            Err(QueueError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn wait_final(&self, job: &JobId, wait: Duration) -> Result<Option<JobView>> {
        let wait = self.wait(format!("j:{job}"), wait);
        loop {
            let rx = wait.arm();
            match self.get(job).await? {
                Some(v) if !v.status.is_final() => {
                    if !wait.sleep(rx).await {
                        return Ok(Some(v));
                    }
                }
                other => return Ok(other),
            }
        }
    }

    async fn read_stream(&self, job: &JobId, cursor: usize, wait: Duration) -> Result<StreamRead> {
        self.read_waiting(job, Some(cursor), wait).await
    }

    async fn take_stream(&self, job: &JobId, wait: Duration) -> Result<StreamRead> {
        self.read_waiting(job, None, wait).await
    }

    async fn cancel(&self, job: &JobId) -> Result<JobStatus> {
        let c: reply::Cancelled = self.on_job("cancel", job, "", |_| {}).await?;
        Ok(c.status)
    }

    async fn retry(&self, job: &JobId) -> Result<JobStatus> {
        self.on_job::<reply::Done>("retry", job, "", |_| {}).await?;
        Ok(JobStatus::InQueue)
    }

    async fn purge(&self, endpoint: &str, tenant: Option<&str>) -> Result<usize> {
        let r: reply::Count = self
            .ok("purge", |i| {
                i.arg(endpoint).arg(tenant.unwrap_or_default());
            })
            .await?;
        Ok(r.n)
    }
}

#[async_trait]
impl WorkerRegistry for RedisStore {
    async fn take(
        &self,
        endpoint: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<TakenJob>> {
        let wait = self.wait(format!("q:{endpoint}"), wait);
        let mut touch = "1";
        loop {
            let rx = wait.arm();
            let outcome: Outcome<reply::List<reply::Taken>> = self
                .call("take", |i| {
                    i.arg(endpoint).arg(worker).arg(max).arg(touch);
                })
                .await?;
            touch = "0";
            let taken = match outcome {
                Outcome::Ok(taken) => taken.0,
                // No work for a retired worker; it waits as if idle and looks again at each
                // change (`reinstate` makes one), so a thawed worker's open poll takes at once.
                Outcome::Retired => Vec::new(),
                _ => return Err(unavailable("`take`: unexpected reply")),
            };
            if !taken.is_empty() {
                return Ok(taken
                    .into_iter()
                    .map(|t| TakenJob {
                        id: JobId(t.id),
                        input: stored_json(&t.input),
                        s3_config: Some(t.s3)
                            .filter(|s| !s.is_empty())
                            .map(|s| stored_json(&s)),
                        traceparent: Some(t.tp).filter(|t| !t.is_empty()),
                    })
                    .collect());
            }
            if !wait.sleep(rx).await {
                return Ok(Vec::new());
            }
        }
    }

    async fn push_stream(&self, job: &JobId, worker: &str, chunks: Vec<Value>) -> Result<()> {
        if chunks.is_empty() {
            // Still refuse a worker that does not hold the job.
            self.on_job::<reply::Done>("push", job, worker, |i| {
                i.arg(worker);
            })
            .await?;
        }
        for batch in chunks.chunks(PUSH_BATCH) {
            self.on_job::<reply::Done>("push", job, worker, |i| {
                i.arg(worker);
                for c in batch {
                    i.arg(c.to_string());
                }
            })
            .await?;
        }
        Ok(())
    }

    async fn report(&self, job: &JobId, worker: &str, report: JobReport) -> Result<()> {
        let (kind, payload) = match report {
            JobReport::Progress(v) => ("progress", v.to_string()),
            JobReport::Completed(v) => ("completed", v.to_string()),
            JobReport::Failed(msg) => ("failed", msg),
        };
        self.on_job::<reply::Done>("report", job, worker, |i| {
            i.arg(worker).arg(kind).arg(payload);
        })
        .await?;
        Ok(())
    }

    async fn stops(&self, worker: &str, wait: Duration) -> Result<Vec<JobId>> {
        let wait = self.wait(format!("w:{worker}"), wait);
        loop {
            let rx = wait.arm();
            let ids: reply::List<String> = self
                .ok("stops", |i| {
                    i.arg(worker);
                })
                .await?;
            if !ids.0.is_empty() || !wait.sleep(rx).await {
                return Ok(ids.0.into_iter().map(JobId).collect());
            }
        }
    }

    async fn ping(&self, endpoint: &str, worker: &str, running: Option<&[JobId]>) -> Result<()> {
        let orphan = self.settings.orphan_after.as_millis() as u64;
        self.ok::<reply::Done>("ping", |i| {
            i.arg(endpoint)
                .arg(worker)
                .arg(orphan)
                .arg(self.settings.max_retries)
                .arg(if running.is_some() { "1" } else { "0" });
            // Lua's `unpack` limit; a worker never runs this many jobs at once.
            for id in running.unwrap_or_default().iter().take(4000) {
                i.arg(&id.0);
            }
        })
        .await?;
        Ok(())
    }

    async fn retire(&self, worker: &str) -> Result<usize> {
        let held: reply::Count = self
            .ok("retire", |i| {
                i.arg(worker);
            })
            .await?;
        Ok(held.n)
    }

    async fn reinstate(&self, endpoint: &str, worker: &str) -> Result<()> {
        self.ok::<reply::Done>("reinstate", |i| {
            i.arg(endpoint).arg(worker);
        })
        .await?;
        Ok(())
    }

    async fn is_retired(&self, worker: &str) -> Result<bool> {
        let r: reply::Retired = self
            .ok("is_retired", |i| {
                i.arg(worker);
            })
            .await?;
        Ok(r.retired)
    }

    async fn workers(&self, endpoint: &str) -> Result<Vec<LiveWorker>> {
        let timeout = self.settings.worker_timeout.as_millis() as u64;
        let mut live: reply::List<LiveWorker> = self
            .ok("workers", |i| {
                i.arg(endpoint).arg(timeout);
            })
            .await?;
        live.0.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live.0)
    }

    async fn lost(&self, worker: &str) -> Result<usize> {
        let r: reply::Count = self
            .ok("lost", |i| {
                i.arg(worker).arg(self.settings.max_retries);
            })
            .await?;
        Ok(r.n)
    }
}

#[async_trait]
impl FleetMetrics for RedisStore {
    async fn metrics(&self, endpoint: &str) -> Result<QueueMetrics> {
        let timeout = self.settings.worker_timeout.as_millis() as u64;
        self.ok("metrics", |i| {
            i.arg(endpoint).arg(timeout);
        })
        .await
    }

    async fn put_fleet(&self, endpoint: &str, fleet: FleetView) -> Result<()> {
        let text = serde_json::to_string(&fleet).expect("a fleet view serializes");
        self.ok::<reply::Done>("put_fleet", |i| {
            i.arg(endpoint)
                .arg(text)
                .arg(crate::FLEET_TTL.as_millis() as u64);
        })
        .await?;
        Ok(())
    }

    async fn put_fitness_failure(&self, endpoint: &str, failure: &FitnessFailure) -> Result<()> {
        let text = serde_json::to_string(failure).map_err(unavailable)?;
        self.ok::<reply::Done>("put_fitness", |i| {
            i.arg(endpoint)
                .arg(text)
                .arg(MAX_FITNESS_FAILURES)
                .arg(FITNESS_TTL_SECS * 1000);
        })
        .await?;
        Ok(())
    }

    async fn fitness_failures(&self, endpoint: &str) -> Result<Vec<FitnessFailure>> {
        let kept: reply::List<String> = self
            .ok("fitness", |i| {
                i.arg(endpoint);
            })
            .await?;
        // One this version cannot read (another version's gateway) is left out.
        Ok(kept
            .0
            .iter()
            .filter_map(|t| serde_json::from_str(t).ok())
            .collect())
    }

    async fn fleet(&self, endpoint: &str) -> Result<Option<FleetView>> {
        let r: reply::Fleet = self
            .ok("fleet", |i| {
                i.arg(endpoint);
            })
            .await?;
        // A view this version cannot read (another version's autoscaler) reads as none.
        Ok(r.fleet.and_then(|f| serde_json::from_str(&f).ok()))
    }

    async fn wait_arrival(&self, endpoints: &[String], wait: Duration) {
        let rxs = endpoints
            .iter()
            .map(|e| self.events.subscribe(&format!("q:{e}")))
            .collect();
        crate::any_change(rxs, wait).await
    }
}

#[async_trait]
impl Outbox for RedisStore {
    async fn due_webhooks(&self, wait: Duration) -> Result<Vec<(String, JobView)>> {
        let wait = self.wait("h".to_string(), wait);
        loop {
            let rx = wait.arm();
            let hooks: reply::Hooks = self
                .ok("hooks", |i| {
                    i.arg(100);
                })
                .await?;
            let due: Vec<(String, JobView)> = hooks
                .due
                .into_iter()
                .map(|h| (h.hook, h.view.into_job_view(JobId(h.id), hooks.now)))
                .collect();
            if !due.is_empty() || !wait.sleep(rx).await {
                return Ok(due);
            }
        }
    }
}

#[async_trait]
impl RateLimits for RedisStore {
    async fn take_tokens(&self, buckets: &[BucketTake<'_>]) -> Result<Vec<RateTake>> {
        let r: reply::Rates = self
            .ok("rate", |i| {
                for b in buckets {
                    i.arg(b.key).arg(b.capacity).arg(b.cost).arg(b.need);
                }
            })
            .await?;
        Ok(r.takes
            .into_iter()
            .map(|t| RateTake {
                allowed: t.allowed,
                remaining: t.remaining,
                reset: Duration::from_millis(t.reset_ms),
                retry_after: Duration::from_millis(t.retry_ms),
            })
            .collect())
    }
}

impl RedisStore {
    /// A stream read (from `cursor`, or from the job's delivery cursor when `None`) that waits
    /// up to `wait` while there is nothing new and the job is not final.
    async fn read_waiting(
        &self,
        job: &JobId,
        cursor: Option<usize>,
        wait: Duration,
    ) -> Result<StreamRead> {
        let wait = self.wait(format!("j:{job}"), wait);
        loop {
            let rx = wait.arm();
            // `take_stream` reads from (and moves) the job's own delivery cursor.
            let (op, from) = match cursor {
                Some(c) => ("read", Some(c)),
                None => ("take_stream", None),
            };
            let read: reply::Read = self
                .on_job(op, job, "", |i| {
                    i.arg(from);
                })
                .await?;
            let r = StreamRead {
                chunks: read.chunks.iter().map(|c| stored_json(c)).collect(),
                next: read.len,
                status: read.status,
            };
            if !r.chunks.is_empty() || r.status.is_final() || !wait.sleep(rx).await {
                return Ok(r);
            }
        }
    }
}

#[cfg(test)]
mod tests;
