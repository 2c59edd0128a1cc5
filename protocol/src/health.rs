//! What `/v2/{endpoint}/health` answers, and the fleet view behind it: the autoscaler writes
//! a [`FleetView`] per endpoint to the job store, every gateway reads it back into
//! [`EndpointHealth`], and the load tester reads that to chart workers. RunPod's keys
//! (camelCase) for the counts; sluice's own `fleet` list beside them.

use serde::{Deserialize, Serialize};

/// `GET /health`: `{"status": "ok"}` while the process serves.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

/// `GET /ready`: whether every endpoint takes work, and its live workers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Every endpoint has at least its `min_workers` live workers (answered with 200; else 503).
    pub ready: bool,
    /// Live workers (heard from within the worker timeout) per endpoint name.
    pub workers: std::collections::BTreeMap<String, usize>,
}

/// `GET /v2/{endpoint}/health`. Missing parts read as empty (other servers' or older
/// versions' answers).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct EndpointHealth {
    /// RunPod's `jobs`: job counts by state.
    pub jobs: JobCounts,
    /// RunPod's `workers`: worker counts by state (plus sluice's `draining`).
    pub workers: WorkerCounts,
    /// Each worker the autoscaler manages (empty without one, e.g. a bare gateway).
    #[serde(default)]
    pub fleet: Vec<FleetWorker>,
    /// The endpoint's last fitness-check failures, newest first (sluice's): what a worker
    /// reported before it exited (RunPod's SDK, `register_fitness_check`), kept for
    /// [`FITNESS_TTL_SECS`] after the newest.
    #[serde(rename = "fitnessFailures", skip_serializing_if = "Vec::is_empty")]
    pub fitness_failures: Vec<FitnessFailure>,
}

impl EndpointHealth {
    /// Distinct workers in any state: the fleet view's workers when there is one (a worker
    /// about to be seen live can be `initializing` in the fleet and `idle` in the store's
    /// counts at the same moment), else the counts. A crash loop's placeholder is no worker.
    pub fn workers_total(&self) -> usize {
        if self.fleet.is_empty() {
            self.workers.total()
        } else {
            self.fleet
                .iter()
                .filter(|w| w.next_start_in_ms.is_none() && w.state != FleetState::Parked)
                .count()
        }
    }
}

/// How long an endpoint's fitness-check failures stay in its health after the newest.
pub const FITNESS_TTL_SECS: u64 = 3600;
/// Most fitness-check failures an endpoint's health keeps.
pub const MAX_FITNESS_FAILURES: usize = 8;

/// A worker's failed fitness check, as RunPod's SDK reports it on its way out (`GET` on its
/// ping URL with `status=unhealthy&check=NAME&reason=...`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FitnessFailure {
    /// The worker that failed it.
    pub worker: String,
    /// The check (its function's name), at most 128 characters.
    pub check: String,
    /// Why (the exception's type and message), at most 512 characters.
    pub reason: String,
    /// When the gateway heard of it, in ms since the Unix epoch.
    pub at_ms: u64,
}

/// Jobs by state; `completed`, `failed`, `retried` count since the store started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", default)]
pub struct JobCounts {
    /// Jobs that ended COMPLETED.
    pub completed: u64,
    /// Jobs that ended FAILED or TIMED_OUT (cancelled ones are not counted).
    pub failed: u64,
    /// Jobs held by a worker now (RunPod's `inProgress`).
    pub in_progress: usize,
    /// Normal and low priority.
    pub in_queue: usize,
    /// Requeues: jobs whose worker was lost, and client `retry` calls.
    pub retried: u64,
}

/// Workers by state, RunPod's names: `ready` is another name for `idle` (RunPod reports
/// both) and `throttled` is always 0 here, so neither adds to [`WorkerCounts::total`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct WorkerCounts {
    /// Live workers holding no job, as the job store sees them.
    pub idle: usize,
    /// Live workers holding at least one job.
    pub running: usize,
    /// Workers started but not yet heard from (from the fleet view).
    pub initializing: usize,
    /// Same as `idle` (RunPod reports both).
    pub ready: usize,
    /// Workers told to stop, finishing their jobs (from the fleet view; sluice's, not RunPod's).
    pub draining: usize,
    /// RunPod's `throttled`; always 0 here.
    pub throttled: usize,
    /// Workers silent too long, or held-back crash loops (from the fleet view).
    pub unhealthy: usize,
    /// Parked workers: loaded and frozen, no capacity until thawed (from the fleet view;
    /// sluice's, not in [`WorkerCounts::total`]).
    pub parked: usize,
}

impl WorkerCounts {
    /// Distinct workers in any state.
    pub fn total(&self) -> usize {
        self.idle + self.running + self.initializing + self.draining + self.unhealthy
    }
}

/// A worker's state as the autoscaler sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FleetState {
    /// Started, not yet heard from (spawn, weight load).
    Initializing,
    /// Live, holding no job.
    Idle,
    /// Holding at least one job; also while briefly silent after being live (its jobs unknown, so
    /// never drained as idle).
    Running,
    /// Told to stop: finishing its jobs, taking none.
    Draining,
    /// Silent too long, or (a crash loop held back) its last worker crashed.
    Unhealthy,
    /// Loaded and frozen (SIGSTOP) after idling out, taking no jobs; the next job thaws it.
    /// No active worker (not in [`WorkerCounts::total`]).
    Parked,
}

/// Now, ms since the Unix epoch: the clock of [`ColdStart::started_at_ms`] (0 if the
/// system clock is before 1970).
pub fn epoch_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a worker's start found its weights, fastest first: the tier of the weight cache it
/// started from. Names as in `x-sluice-cold-start` and SSE cold-start comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// A parked (frozen, loaded) worker was thawed: no process start, no load.
    Parked,
    /// A new process; its weights were in RAM (the page cache held >= 90% of the file).
    Ram,
    /// A new process; its weights were read from the disk cache.
    Disk,
    /// A new process that first fetched its weights from their source (not in the cache).
    Remote,
}

impl Tier {
    /// The tier's name as configs, headers and SSE comments spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Parked => "parked",
            Tier::Ram => "ram",
            Tier::Disk => "disk",
            Tier::Remote => "remote",
        }
    }
}

/// Cold-start phases of a worker, ms: process creation, weight load as the worker reports it,
/// start to first heard from by the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ColdStart {
    /// Process creation, ms.
    pub spawn_ms: u64,
    /// Weight fetch and load, ms, as the worker reports it (its `SLUICE_PHASE` line); `None` until
    /// it does.
    pub load_ms: Option<u64>,
    /// From the start to the store first hearing from the worker, ms; `None` until then.
    pub ready_ms: Option<u64>,
    /// The tier it started from; `None` where unknown (a custom command's weights).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// When this start (or thaw) began, ms since the Unix epoch: a job submitted before
    /// `startedAtMs + readyMs` and run by this worker waited for it.
    #[serde(default)]
    pub started_at_ms: u64,
}

/// The cold start a job waited for: `coldStart` in `/v2` status objects, and the
/// `x-sluice-cold-start` header (`tier=disk; ms=812`) of non-streamed `/v1` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobColdStart {
    /// The tier the worker started from.
    pub tier: Tier,
    /// The worker's start to ready (first heard from by the store), ms.
    pub ms: u64,
}

impl JobColdStart {
    /// The `x-sluice-cold-start` header's value: `tier=disk; ms=812`.
    pub fn header_value(&self) -> String {
        format!("tier={}; ms={}", self.tier.as_str(), self.ms)
    }
}

impl ColdStart {
    /// The cold start a job waited for, if it did: the job, submitted `delay_ms` before it
    /// started at `job_started_at_ms` (epoch ms), ran on this worker, whose start (or thaw)
    /// began before the job started and ended (ready) after the job was submitted. `None`
    /// when the worker was already up, or its tier or readiness is unknown.
    pub fn waited_for(&self, job_started_at_ms: u64, delay_ms: u64) -> Option<JobColdStart> {
        let (tier, ready) = (self.tier?, self.ready_ms?);
        let submitted = job_started_at_ms.saturating_sub(delay_ms);
        let began = self.started_at_ms;
        (began <= job_started_at_ms && began + ready >= submitted)
            .then_some(JobColdStart { tier, ms: ready })
    }

    /// The phase a start is in while its worker is not yet live: `thaw`, `load` (weights:
    /// fetch and load), or `connect` (loaded, not yet heard from by the store).
    pub fn phase(&self) -> &'static str {
        match (self.tier, self.load_ms) {
            (Some(Tier::Parked), _) => "thaw",
            (_, None) => "load",
            (_, Some(_)) => "connect",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_waited_for_a_start_that_ended_after_it_was_submitted() {
        let c = ColdStart {
            spawn_ms: 1,
            load_ms: Some(400),
            ready_ms: Some(800),
            tier: Some(Tier::Disk),
            started_at_ms: 10_000,
        };
        let job = JobColdStart {
            tier: Tier::Disk,
            ms: 800,
        };
        let waited = Some(job);
        // Submitted at 10_000 (it caused the start), started at 10_850.
        assert_eq!(c.waited_for(10_850, 850), waited);
        // Submitted mid-start (10_500), started at 10_810.
        assert_eq!(c.waited_for(10_810, 310), waited);
        // Submitted after the worker was ready (10_900): no cold start.
        assert_eq!(c.waited_for(11_000, 100), None);
        // A job that started before this (re)start: not this start's.
        assert_eq!(c.waited_for(9_000, 0), None);
        // Unknown readiness or tier: nothing claimed.
        let unknown = ColdStart {
            ready_ms: None,
            ..c
        };
        assert_eq!(unknown.waited_for(10_850, 850), None);
        assert_eq!(job.header_value(), "tier=disk; ms=800");
    }
}

/// One worker of the fleet view.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FleetWorker {
    /// The worker's id (`{endpoint}-{8 hex digits}` for local processes); for a crash loop's
    /// entry, the id of the worker that crashed last.
    pub id: String,
    /// Its state as the autoscaler sees it.
    pub state: FleetState,
    /// Its process id (also its process group's); `None` for a crash loop's entry.
    #[serde(default)]
    pub pid: Option<u32>,
    /// `CUDA_VISIBLE_DEVICES` it was given.
    #[serde(default)]
    pub gpus: Option<String>,
    /// Their type (a GPU table name, e.g. `H100-80GB`), whose engine settings it runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_type: Option<String>,
    /// The CPU cores it is pinned to.
    #[serde(default)]
    pub cpus: Option<String>,
    /// Time since its start began, ms; `None` for a crash loop's entry.
    #[serde(default)]
    pub age_ms: Option<u64>,
    /// Its cold-start phases; `None` for a crash loop's entry.
    #[serde(default)]
    pub cold_start: Option<ColdStart>,
    /// The endpoint's unexpected worker exits since the autoscaler started.
    #[serde(default)]
    pub restarts: u32,
    /// For a crash loop held back: how the last worker ended ("exit status 1 after 412 ms").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// For a crash loop held back: when the next start may happen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start_in_ms: Option<u64>,
}

/// The autoscaler's view of one endpoint's workers, kept in the job store (a few seconds'
/// expiry on Redis, so a stopped autoscaler's view does not linger).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    /// The workers the autoscaler started and that have not exited, plus one `unhealthy` entry for
    /// a crash loop holding starts back (the one with `next_start_in_ms`).
    pub workers: Vec<FleetWorker>,
}

impl FleetView {
    /// Workers in `state`.
    pub fn count(&self, state: FleetState) -> usize {
        self.workers.iter().filter(|w| w.state == state).count()
    }
}
