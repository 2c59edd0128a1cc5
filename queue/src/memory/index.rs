//! The memory store's indexes, as the Redis store keeps them in its own keys: the jobs in
//! progress (with their holder and execution deadline) and every job's time to leave the
//! store (its TTL, or its retention once it ended). `ping`, `metrics`, `workers`, `lost` and the
//! sweep read these instead of scanning every retained job under the store's lock. Every
//! status change goes through [`State::transition`], which keeps them in step.

use super::{Entry, State};
use crate::{QueueError, Result};
use protocol::{JobId, JobStatus};
use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

/// A job in progress.
pub(super) struct Running {
    pub endpoint: String,
    pub worker: String,
    /// When its execution timeout passes.
    pub deadline: Instant,
}

#[derive(Default)]
pub(super) struct Indexes {
    pub running: HashMap<JobId, Running>,
    /// `(when it leaves the store, id)`, earliest first.
    pub expiries: BTreeSet<(Instant, JobId)>,
}

/// How long finished jobs stay: `/run` jobs, `runsync` (and `/v1`) jobs.
#[derive(Clone, Copy, Debug)]
pub(super) struct Retention {
    pub run: Duration,
    pub sync: Duration,
}

impl Entry {
    /// When this job leaves the store: at its TTL, or earlier once it ended and its retention
    /// passed.
    fn expiry(&self, retention: Retention) -> Instant {
        let ttl = self.submitted + Duration::from_millis(self.job.policy.ttl);
        match self.ended.filter(|_| self.status.is_final()) {
            Some(end) => {
                let keep = if self.job.sync {
                    retention.sync
                } else {
                    retention.run
                };
                ttl.min(end + keep)
            }
            None => ttl,
        }
    }
}

impl State {
    /// Add a new job, indexed.
    pub(super) fn insert_job(&mut self, id: JobId, mut e: Entry) {
        e.expires = e.expiry(self.retention);
        self.index.expiries.insert((e.expires, id.clone()));
        self.jobs.insert(id, e);
    }

    /// Move job `id` to `to` (held by `worker` when `to` is IN_PROGRESS), keeping the indexes
    /// in step. Errors: not found, or a transition the job's state does not allow.
    pub(super) fn transition(
        &mut self,
        id: &JobId,
        to: JobStatus,
        now: Instant,
        worker: Option<&str>,
    ) -> Result<()> {
        let retention = self.retention;
        let e = self
            .jobs
            .get_mut(id)
            .ok_or_else(|| QueueError::NotFound(id.clone()))?;
        let was = e.status;
        e.become_(id, to, now)?;
        if was == JobStatus::InProgress {
            self.index.running.remove(id);
        }
        if to == JobStatus::InProgress {
            let worker = worker.unwrap_or_default().to_string();
            e.worker = Some(worker.clone());
            let limit = Duration::from_millis(e.job.policy.execution_timeout);
            self.index.running.insert(
                id.clone(),
                Running {
                    endpoint: e.endpoint.clone(),
                    worker,
                    deadline: now + limit,
                },
            );
        }
        let expires = e.expiry(retention);
        if expires != e.expires {
            self.index.expiries.remove(&(e.expires, id.clone()));
            self.index.expiries.insert((expires, id.clone()));
            e.expires = expires;
        }
        Ok(())
    }

    /// Take job `id` out of the store and its indexes (not out of its queue).
    pub(super) fn remove_job(&mut self, id: &JobId) -> Option<Entry> {
        let e = self.jobs.remove(id)?;
        self.index.running.remove(id);
        self.index.expiries.remove(&(e.expires, id.clone()));
        Some(e)
    }

    /// Jobs whose time in the store is up at `now`.
    pub(super) fn expired(&self, now: Instant) -> Vec<JobId> {
        self.index
            .expiries
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, id)| id.clone())
            .collect()
    }

    /// Ids of the jobs `worker` runs.
    pub(super) fn held_by<'a>(&'a self, worker: &'a str) -> impl Iterator<Item = &'a JobId> + 'a {
        self.index
            .running
            .iter()
            .filter(move |(_, r)| r.worker == worker)
            .map(|(id, _)| id)
    }

    /// Jobs in progress per worker holding them.
    pub(super) fn held_counts(&self) -> HashMap<&str, usize> {
        let mut held = HashMap::new();
        for r in self.index.running.values() {
            *held.entry(r.worker.as_str()).or_default() += 1;
        }
        held
    }

    /// Jobs in progress on `endpoint`.
    pub(super) fn in_progress(&self, endpoint: &str) -> usize {
        self.index
            .running
            .values()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }
}
