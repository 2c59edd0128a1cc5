//! In-memory job store: one mutex over plain maps, and `watch` channels to wake waiters
//! (long-polls, SSE relays) without polling. Housekeeping (execution timeouts, lost workers,
//! retention, TTL) runs in [`MemoryStore::sweep`], called once a second by a background task.

use crate::{
    new_job_id, FleetMetrics, JobQueue, LiveWorker, NewJob, Outbox, QueueError, QueueMetrics,
    Result, StoreSettings, StreamRead, WorkerRegistry, FLEET_TTL,
};
use async_trait::async_trait;
use index::{Indexes, Retention};
use protocol::health::{FitnessFailure, FleetView};
use protocol::job::{JobReport, JobView, TakenJob};
use protocol::{JobId, JobStatus};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Entry {
    endpoint: String,
    job: NewJob,
    status: JobStatus,
    submitted: Instant,
    started: Option<Instant>,
    ended: Option<Instant>,
    output: Option<Value>,
    error: Option<String>,
    retries: u32,
    worker: Option<String>,
    chunks: Vec<Value>,
    /// Chunks already returned by `take_stream`.
    delivered: usize,
    /// Since when the holder's pings leave this job out.
    missing_since: Option<Instant>,
    /// When it leaves the store (its key in `Indexes::expiries`).
    expires: Instant,
    /// Bumped on every change; waiters subscribe before they look, so no wake-up is lost.
    changed: watch::Sender<u64>,
}

/// `at` (no later than `now`) as ms since the Unix epoch.
fn epoch_ms_of(at: Instant, now: Instant) -> u64 {
    let ago = now.saturating_duration_since(at).as_millis() as u64;
    protocol::health::epoch_ms().saturating_sub(ago)
}

impl Entry {
    fn view(&self, id: &JobId, now: Instant) -> JobView {
        let ms = |d: Duration| d.as_millis() as u64;
        JobView {
            id: id.clone(),
            status: self.status,
            delay_time: self.started.map(|s| ms(s - self.submitted)),
            execution_time: self
                .started
                .map(|s| ms(self.ended.unwrap_or(now).saturating_duration_since(s))),
            output: self.output.clone(),
            error: self.error.clone(),
            retries: self.retries,
            worker_id: self.worker.clone(),
            cold_start: None,
            started_at_ms: self.started.map(|s| epoch_ms_of(s, now)),
        }
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Apply a transition, checked against the one table of legal ones.
    fn become_(&mut self, id: &JobId, to: JobStatus, now: Instant) -> Result<()> {
        if !self.status.can_become(to) {
            return Err(QueueError::BadTransition {
                job: id.clone(),
                status: self.status,
                to,
            });
        }
        self.status = to;
        match to {
            JobStatus::InProgress => self.started = Some(now),
            JobStatus::InQueue => {
                self.started = None;
                self.ended = None;
                self.worker = None;
                self.output = None;
                self.error = None;
                self.chunks.clear();
                self.delivered = 0;
                self.missing_since = None;
            }
            _ => self.ended = Some(now),
        }
        self.bump();
        Ok(())
    }
}

struct Endpoint {
    normal: VecDeque<JobId>,
    low: VecDeque<JobId>,
    arrived: watch::Sender<u64>,
    arrivals: u64,
    completed: u64,
    failed: u64,
    retried: u64,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            normal: VecDeque::new(),
            low: VecDeque::new(),
            arrived: watch::channel(0).0,
            arrivals: 0,
            completed: 0,
            failed: 0,
            retried: 0,
        }
    }
}

impl Endpoint {
    fn unqueue(&mut self, id: &JobId) {
        self.normal.retain(|j| j != id);
        self.low.retain(|j| j != id);
    }
}

struct Worker {
    endpoint: String,
    last_seen: Instant,
    /// Jobs taken so far ([`LiveWorker::taken`]).
    taken: u64,
    stops: Vec<JobId>,
    stop_signal: watch::Sender<u64>,
}

struct State {
    jobs: HashMap<JobId, Entry>,
    endpoints: HashMap<String, Endpoint>,
    workers: HashMap<String, Worker>,
    /// Finished jobs whose webhook is still to be sent.
    webhooks: VecDeque<JobId>,
    webhooks_due: watch::Sender<u64>,
    /// Workers that asked to stop (`stopPod`).
    retired: std::collections::HashSet<String>,
    /// What the autoscaler last said about each endpoint's workers.
    fleets: HashMap<String, (Instant, FleetView)>,
    /// Fitness-check failures by endpoint.
    fitness: fitness::Failures,
    index: Indexes,
    retention: Retention,
}

impl State {
    fn new(retention: Retention) -> Self {
        State {
            jobs: HashMap::new(),
            endpoints: HashMap::new(),
            workers: HashMap::new(),
            webhooks: VecDeque::new(),
            webhooks_due: watch::channel(0).0,
            retired: Default::default(),
            fleets: HashMap::new(),
            fitness: fitness::Failures::default(),
            index: Indexes::default(),
            retention,
        }
    }
}

impl State {
    fn endpoint(&mut self, name: &str) -> &mut Endpoint {
        self.endpoints.entry(name.to_string()).or_default()
    }

    fn worker(&mut self, endpoint: &str, id: &str, now: Instant) -> &mut Worker {
        let w = self
            .workers
            .entry(id.to_string())
            .or_insert_with(|| Worker {
                endpoint: endpoint.to_string(),
                last_seen: now,
                taken: 0,
                stops: Vec::new(),
                stop_signal: watch::channel(0).0,
            });
        w.last_seen = now;
        w
    }

    /// Workers of `endpoint` heard from within `timeout`, retired ones (`stopPod`) excepted.
    fn live<'a>(
        &'a self,
        endpoint: &'a str,
        now: Instant,
        timeout: Duration,
    ) -> impl Iterator<Item = &'a String> + 'a {
        self.workers
            .iter()
            .filter(move |(id, w)| {
                w.endpoint == endpoint
                    && now.saturating_duration_since(w.last_seen) <= timeout
                    && !self.retired.contains(*id)
            })
            .map(|(id, _)| id)
    }

    fn job_mut(&mut self, id: &JobId) -> Result<&mut Entry> {
        self.jobs
            .get_mut(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))
    }

    fn held<'a>(&'a mut self, id: &JobId, worker: &str) -> Result<&'a mut Entry> {
        let e = self.job_mut(id)?;
        if e.worker.as_deref() != Some(worker) {
            return Err(QueueError::NotHeld {
                job: id.clone(),
                worker: worker.to_string(),
            });
        }
        Ok(e)
    }

    fn tell_worker_to_stop(&mut self, worker: Option<&str>, id: &JobId) {
        if let Some(w) = worker.and_then(|w| self.workers.get_mut(w)) {
            w.stops.push(id.clone());
            w.stop_signal.send_modify(|v| *v += 1);
        }
    }

    /// Book-keeping when job `id` reached final `status`: counts, and its webhook.
    fn ended(&mut self, id: &JobId, status: JobStatus) {
        let Some(e) = self.jobs.get(id) else { return };
        let endpoint = e.endpoint.clone();
        // (Cancelled jobs never get here: no webhook, no count.)
        if e.job.webhook.is_some() {
            self.webhooks.push_back(id.clone());
            self.webhooks_due.send_modify(|v| *v += 1);
        }
        self.count_end(&endpoint, status);
    }

    /// Back to its queue (a lost worker: to the front, it has waited longest; `retry`: to the
    /// back), counted as a retry. The caller has made the transition.
    fn requeue(&mut self, id: JobId, front: bool) {
        let Some(e) = self.jobs.get_mut(&id) else {
            return;
        };
        e.retries += 1;
        let (endpoint, low) = (e.endpoint.clone(), e.job.policy.low_priority);
        let ep = self.endpoint(&endpoint);
        ep.retried += 1;
        let queue = if low { &mut ep.low } else { &mut ep.normal };
        if front {
            queue.push_front(id)
        } else {
            queue.push_back(id)
        }
        ep.arrived.send_modify(|v| *v += 1);
    }

    fn count_end(&mut self, endpoint: &str, status: JobStatus) {
        let ep = self.endpoint(endpoint);
        match status {
            JobStatus::Completed => ep.completed += 1,
            JobStatus::Failed | JobStatus::TimedOut => ep.failed += 1,
            _ => {}
        }
    }
}

/// The in-memory [`JobStore`](crate::JobStore): every job, queue and worker lease in one
/// process, lost when it exits; the embedded default for a single gateway.
pub struct MemoryStore {
    state: Mutex<State>,
    settings: StoreSettings,
    /// Token buckets (see [`crate::RateLimits`]): tokens and when they were last counted.
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
    /// Stored responses (see [`crate::ResponseStore`]), each with its expiry and size.
    responses: Mutex<HashMap<String, responses::Kept>>,
}

impl MemoryStore {
    /// A store with a background sweeper (needs a tokio runtime); the sweeper stops when the
    /// store is dropped.
    pub fn start(settings: StoreSettings) -> Arc<Self> {
        let store = Arc::new(Self::new(settings));
        crate::every(Duration::from_secs(1), &store, |s| async move {
            s.sweep(Instant::now())
        });
        store
    }

    /// A store without a sweeper (tests drive [`MemoryStore::sweep`] themselves).
    pub fn new(settings: StoreSettings) -> Self {
        MemoryStore {
            state: Mutex::new(State::new(Retention {
                run: settings.retention,
                sync: settings.sync_retention,
            })),
            settings,
            buckets: Mutex::default(),
            responses: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Subscribe to a job's changes, or `None` if it does not exist.
    fn watch_job(&self, id: &JobId) -> Option<watch::Receiver<u64>> {
        self.lock().jobs.get(id).map(|e| e.changed.subscribe())
    }
}

/// Wait for a change signal until `deadline`; `false` when the deadline passed.
async fn wait_change(mut rx: watch::Receiver<u64>, deadline: tokio::time::Instant) -> bool {
    matches!(
        tokio::time::timeout_at(deadline, rx.changed()).await,
        Ok(Ok(()))
    )
}

#[async_trait]
impl JobQueue for MemoryStore {
    async fn submit(&self, endpoint: &str, job: NewJob) -> Result<JobId> {
        let now = Instant::now();
        let mut st = self.lock();
        let ep = st.endpoint(endpoint);
        if ep.normal.len() + ep.low.len() >= self.settings.max_queue {
            return Err(QueueError::QueueFull(endpoint.to_string()));
        }
        let id = new_job_id(job.sync, job.tenant.as_deref());
        if job.policy.low_priority {
            ep.low.push_back(id.clone());
        } else {
            ep.normal.push_back(id.clone());
        }
        ep.arrivals += 1;
        ep.arrived.send_modify(|v| *v += 1);
        st.insert_job(
            id.clone(),
            Entry {
                endpoint: endpoint.to_string(),
                job,
                status: JobStatus::InQueue,
                submitted: now,
                started: None,
                ended: None,
                output: None,
                error: None,
                retries: 0,
                worker: None,
                chunks: Vec::new(),
                delivered: 0,
                missing_since: None,
                expires: now,
                changed: watch::channel(0).0,
            },
        );
        Ok(id)
    }

    async fn get(&self, job: &JobId) -> Result<Option<JobView>> {
        let now = Instant::now();
        Ok(self.lock().jobs.get(job).map(|e| e.view(job, now)))
    }

    async fn wait_final(&self, job: &JobId, wait: Duration) -> Result<Option<JobView>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let Some(rx) = self.watch_job(job) else {
                return Ok(None);
            };
            let view = self.get(job).await?;
            match view {
                Some(v) if !v.status.is_final() => {
                    if !wait_change(rx, deadline).await {
                        return self.get(job).await;
                    }
                }
                other => return Ok(other),
            }
        }
    }

    async fn read_stream(&self, job: &JobId, cursor: usize, wait: Duration) -> Result<StreamRead> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rx = {
                let st = self.lock();
                let e = st
                    .jobs
                    .get(job)
                    .ok_or_else(|| QueueError::NotFound(job.clone()))?;
                let start = cursor.min(e.chunks.len());
                if start < e.chunks.len()
                    || e.status.is_final()
                    || tokio::time::Instant::now() >= deadline
                {
                    return Ok(StreamRead {
                        chunks: e.chunks[start..].to_vec(),
                        next: e.chunks.len(),
                        status: e.status,
                    });
                }
                e.changed.subscribe()
            };
            wait_change(rx, deadline).await;
        }
    }

    async fn take_stream(&self, job: &JobId, wait: Duration) -> Result<StreamRead> {
        let cursor = {
            let st = self.lock();
            st.jobs
                .get(job)
                .ok_or_else(|| QueueError::NotFound(job.clone()))?
                .delivered
        };
        let read = self.read_stream(job, cursor, wait).await?;
        let mut st = self.lock();
        let e = st.job_mut(job)?;
        // Two readers at once: each chunk still goes to only one of them.
        let skip = e.delivered.saturating_sub(cursor).min(read.chunks.len());
        e.delivered = e.delivered.max(read.next);
        Ok(StreamRead {
            chunks: read.chunks[skip..].to_vec(),
            ..read
        })
    }

    async fn cancel(&self, job: &JobId) -> Result<JobStatus> {
        let now = Instant::now();
        let mut st = self.lock();
        let e = st.job_mut(job)?;
        if e.status.is_final() {
            return Ok(e.status);
        }
        let (was, worker, endpoint) = (e.status, e.worker.clone(), e.endpoint.clone());
        st.transition(job, JobStatus::Cancelled, now, None)?;
        if was == JobStatus::InProgress {
            st.tell_worker_to_stop(worker.as_deref(), job);
        } else {
            st.endpoint(&endpoint).unqueue(job);
        }
        Ok(JobStatus::Cancelled)
    }

    async fn retry(&self, job: &JobId) -> Result<JobStatus> {
        let now = Instant::now();
        let mut st = self.lock();
        let e = st.job_mut(job)?;
        if !matches!(e.status, JobStatus::Failed | JobStatus::TimedOut) {
            return Err(QueueError::BadTransition {
                job: job.clone(),
                status: e.status,
                to: JobStatus::InQueue,
            });
        }
        st.transition(job, JobStatus::InQueue, now, None)?;
        st.requeue(job.clone(), false);
        Ok(JobStatus::InQueue)
    }

    async fn purge(&self, endpoint: &str, tenant: Option<&str>) -> Result<usize> {
        let mut st = self.lock();
        let ep = st.endpoint(endpoint);
        let mine = |id: &JobId| tenant.is_none_or(|t| crate::job_tenant(id) == Some(t));
        let mut ids = Vec::new();
        for q in [&mut ep.normal, &mut ep.low] {
            ids.extend(q.iter().filter(|id| mine(id)).cloned());
            q.retain(|id| !mine(id));
        }
        for id in &ids {
            if let Some(e) = st.remove_job(id) {
                e.bump();
            }
        }
        Ok(ids.len())
    }
}

#[async_trait]
impl WorkerRegistry for MemoryStore {
    async fn take(
        &self,
        endpoint: &str,
        worker: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<TakenJob>> {
        let deadline = tokio::time::Instant::now() + wait;
        // Only the poll's first look counts as hearing from the worker: a poll kept open for
        // a worker that died meanwhile must not keep it looking alive.
        let mut first = true;
        loop {
            let rx = {
                let now = Instant::now();
                let mut st = self.lock();
                if st.retired.contains(worker) {
                    // No work for a retired worker; it waits as if idle and looks again at each
                    // change (`reinstate` makes one), so a thawed worker's open poll takes at once.
                    st.endpoint(endpoint).arrived.subscribe()
                } else {
                    if std::mem::take(&mut first) {
                        st.worker(endpoint, worker, now);
                    }
                    let mut taken = Vec::new();
                    while taken.len() < max {
                        let ep = st.endpoint(endpoint);
                        let Some(id) = ep.normal.pop_front().or_else(|| ep.low.pop_front()) else {
                            break;
                        };
                        if st
                            .transition(&id, JobStatus::InProgress, now, Some(worker))
                            .is_err()
                        {
                            continue;
                        }
                        let e = &st.jobs[&id];
                        taken.push(TakenJob {
                            id: id.clone(),
                            input: e.job.input.clone(),
                            s3_config: e.job.s3_config.clone(),
                            traceparent: e.job.traceparent.clone(),
                        });
                    }
                    if !taken.is_empty() {
                        // Jobs handed out start a lease, even for a worker swept as dead.
                        st.worker(endpoint, worker, now).taken += taken.len() as u64;
                        return Ok(taken);
                    }
                    st.endpoint(endpoint).arrived.subscribe()
                }
            };
            if !wait_change(rx, deadline).await {
                return Ok(Vec::new());
            }
        }
    }

    async fn push_stream(&self, job: &JobId, worker: &str, chunks: Vec<Value>) -> Result<()> {
        let mut st = self.lock();
        let e = st.held(job, worker)?;
        if e.status == JobStatus::InProgress && !chunks.is_empty() {
            e.chunks.extend(chunks);
            e.bump();
        }
        Ok(())
    }

    async fn report(&self, job: &JobId, worker: &str, report: JobReport) -> Result<()> {
        let now = Instant::now();
        let mut st = self.lock();
        let e = st.held(job, worker)?;
        if e.status.is_final() {
            // A retry of a report that already landed, or a report on a job that was
            // cancelled or timed out meanwhile: the first final state stands.
            return Ok(());
        }
        let to = match report {
            JobReport::Progress(out) => {
                e.output = Some(out);
                e.bump();
                return Ok(());
            }
            JobReport::Completed(out) => {
                e.output = Some(out);
                JobStatus::Completed
            }
            JobReport::Failed(msg) => {
                e.error = Some(msg);
                JobStatus::Failed
            }
        };
        st.transition(job, to, now, None)?;
        st.ended(job, to);
        Ok(())
    }

    async fn stops(&self, worker: &str, wait: Duration) -> Result<Vec<JobId>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rx = {
                let mut st = self.lock();
                match st.workers.get_mut(worker) {
                    Some(w) if !w.stops.is_empty() => return Ok(std::mem::take(&mut w.stops)),
                    Some(w) => Some(w.stop_signal.subscribe()),
                    None => None,
                }
            };
            let Some(rx) = rx else {
                // An unknown (or retired) worker holds nothing: an idle poll, not a busy loop.
                tokio::time::sleep_until(deadline).await;
                return Ok(Vec::new());
            };
            if !wait_change(rx, deadline).await {
                return Ok(Vec::new());
            }
        }
    }

    async fn ping(&self, endpoint: &str, worker: &str, running: Option<&[JobId]>) -> Result<()> {
        let now = Instant::now();
        let mut st = self.lock();
        // Renews the lease of a retired worker too (it is no longer counted live).
        st.worker(endpoint, worker, now);
        let Some(running) = running else {
            return Ok(());
        };
        // Jobs it holds but leaves out of its list for `orphan_after` were handed out by a
        // take whose answer never reached it.
        let held: Vec<JobId> = st.held_by(worker).cloned().collect();
        let mut orphans = Vec::new();
        for id in held {
            let Some(e) = st.jobs.get_mut(&id) else {
                continue;
            };
            if running.contains(&id) {
                e.missing_since = None;
            } else if now.saturating_duration_since(*e.missing_since.get_or_insert(now))
                > self.settings.orphan_after
            {
                orphans.push(id);
            }
        }
        self.lose(&mut st, orphans, now);
        Ok(())
    }

    async fn retire(&self, worker: &str) -> Result<usize> {
        let mut st = self.lock();
        // Still known (its jobs are still leased to it, stops still reach it), no longer live.
        st.retired.insert(worker.to_string());
        Ok(st.held_counts().get(worker).copied().unwrap_or(0))
    }

    async fn reinstate(&self, endpoint: &str, worker: &str) -> Result<()> {
        let mut st = self.lock();
        st.retired.remove(worker);
        st.endpoint(endpoint).arrived.send_modify(|v| *v += 1);
        Ok(())
    }

    async fn is_retired(&self, worker: &str) -> Result<bool> {
        Ok(self.lock().retired.contains(worker))
    }

    async fn workers(&self, endpoint: &str) -> Result<Vec<LiveWorker>> {
        let now = Instant::now();
        let st = self.lock();
        let jobs = st.held_counts();
        let mut live: Vec<LiveWorker> = st
            .live(endpoint, now, self.settings.worker_timeout)
            .map(|id| LiveWorker {
                id: id.clone(),
                jobs: jobs.get(id.as_str()).copied().unwrap_or(0),
                taken: st.workers.get(id).map_or(0, |w| w.taken),
            })
            .collect();
        live.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(live)
    }

    async fn lost(&self, worker: &str) -> Result<usize> {
        let now = Instant::now();
        let mut st = self.lock();
        st.workers.remove(worker);
        // Its process is gone: nothing more to remember (a long-lived gateway would otherwise
        // keep one id per `stopPod` worker forever).
        st.retired.remove(worker);
        let ids: Vec<JobId> = st.held_by(worker).cloned().collect();
        let n = ids.len();
        self.lose(&mut st, ids, now);
        Ok(n)
    }
}

#[async_trait]
impl FleetMetrics for MemoryStore {
    async fn metrics(&self, endpoint: &str) -> Result<QueueMetrics> {
        let now = Instant::now();
        let mut st = self.lock();
        let st = &mut *st;
        let in_progress = st.in_progress(endpoint);
        let held = st.held_counts();
        let live: Vec<&String> = st
            .live(endpoint, now, self.settings.worker_timeout)
            .collect();
        let workers_live = live.len();
        let workers_running = live
            .iter()
            .filter(|w| held.contains_key(w.as_str()))
            .count();
        st.endpoint(endpoint);
        let ep = &st.endpoints[endpoint];
        let oldest_queued_ms = ep
            .normal
            .front()
            .and_then(|id| st.jobs.get(id))
            .map(|e| now.saturating_duration_since(e.submitted).as_millis() as u64)
            .unwrap_or(0);
        Ok(QueueMetrics {
            in_queue: ep.normal.len(),
            in_queue_low_priority: ep.low.len(),
            in_progress,
            oldest_queued_ms,
            arrived: ep.arrivals,
            completed: ep.completed,
            failed: ep.failed,
            retried: ep.retried,
            workers_live,
            workers_running,
        })
    }

    async fn put_fleet(&self, endpoint: &str, fleet: FleetView) -> Result<()> {
        self.lock()
            .fleets
            .insert(endpoint.to_string(), (Instant::now(), fleet));
        Ok(())
    }

    async fn put_fitness_failure(&self, endpoint: &str, failure: &FitnessFailure) -> Result<()> {
        self.lock().fitness.put(endpoint, failure);
        Ok(())
    }

    async fn fitness_failures(&self, endpoint: &str) -> Result<Vec<FitnessFailure>> {
        Ok(self.lock().fitness.of(endpoint))
    }

    async fn fleet(&self, endpoint: &str) -> Result<Option<FleetView>> {
        let state = self.lock();
        let fresh = state
            .fleets
            .get(endpoint)
            .filter(|(at, _)| at.elapsed() < FLEET_TTL);
        Ok(fresh.map(|(_, view)| view.clone()))
    }

    async fn wait_arrival(&self, endpoints: &[String], wait: Duration) {
        let rxs = {
            let mut st = self.lock();
            endpoints
                .iter()
                .map(|e| st.endpoint(e).arrived.subscribe())
                .collect()
        };
        crate::any_change(rxs, wait).await
    }
}

#[async_trait]
impl Outbox for MemoryStore {
    async fn due_webhooks(&self, wait: Duration) -> Result<Vec<(String, JobView)>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rx = {
                let now = Instant::now();
                let mut st = self.lock();
                let st = &mut *st;
                if !st.webhooks.is_empty() {
                    let due = st
                        .webhooks
                        .drain(..)
                        .filter_map(|id| {
                            let e = st.jobs.get(&id)?;
                            Some((e.job.webhook.clone()?, e.view(&id, now)))
                        })
                        .collect();
                    return Ok(due);
                }
                st.webhooks_due.subscribe()
            };
            if !wait_change(rx, deadline).await {
                return Ok(Vec::new());
            }
        }
    }
}

mod fitness;
mod housekeeping;
mod index;
mod rate;
mod responses;
#[cfg(test)]
mod tests;
