//! The in-memory store's housekeeping: execution timeouts, silent workers, retention, TTL.

use super::{MemoryStore, State};
use protocol::{JobId, JobStatus};
use std::time::{Duration, Instant};

impl MemoryStore {
    /// Housekeeping at time `now`: execution timeouts, lost workers, retention and TTL.
    pub fn sweep(&self, now: Instant) {
        let mut st = self.lock();
        let st = &mut *st;
        // Workers that went silent: their jobs go back to the queue, or fail after retries.
        let dead: Vec<String> = st
            .workers
            .iter()
            .filter(|(_, w)| {
                now.saturating_duration_since(w.last_seen) > self.settings.worker_timeout
            })
            .map(|(id, _)| id.clone())
            .collect();
        for w in &dead {
            st.workers.remove(w);
            st.retired.remove(w);
        }
        let mut requeue = Vec::new();
        let mut timed_out = Vec::new();
        let mut expired = Vec::new();
        for (id, e) in st.jobs.iter() {
            let ttl = Duration::from_millis(e.job.policy.ttl);
            let retention = if e.job.sync {
                self.settings.sync_retention
            } else {
                self.settings.retention
            };
            if now.saturating_duration_since(e.submitted) > ttl
                || e.ended.is_some_and(|t| {
                    e.status.is_final() && now.saturating_duration_since(t) > retention
                })
            {
                expired.push(id.clone());
            } else if e.status == JobStatus::InProgress {
                let limit = Duration::from_millis(e.job.policy.execution_timeout);
                if e.started
                    .is_some_and(|s| now.saturating_duration_since(s) > limit)
                {
                    timed_out.push(id.clone());
                } else if e.worker.as_ref().is_some_and(|w| dead.contains(w)) {
                    requeue.push(id.clone());
                }
            }
        }
        for id in expired {
            if let Some(e) = st.jobs.remove(&id) {
                let ep = st.endpoint(&e.endpoint);
                ep.unqueue(&id);
                if e.status == JobStatus::InProgress {
                    // Past its TTL the job is gone: a worker still running it stops.
                    st.tell_worker_to_stop(e.worker.as_deref(), &id);
                }
                e.bump();
            }
        }
        for id in timed_out {
            let Some(e) = st.jobs.get_mut(&id) else {
                continue;
            };
            if e.become_(&id, JobStatus::TimedOut, now).is_ok() {
                e.error = Some("execution timeout exceeded".into());
                let worker = e.worker.clone();
                st.tell_worker_to_stop(worker.as_deref(), &id);
                st.ended(&id, JobStatus::TimedOut);
            }
        }
        self.lose(st, requeue, now);
    }

    /// Jobs whose worker is gone go back to the front of their queue, or fail after
    /// `max_retries`.
    pub(super) fn lose(&self, st: &mut State, ids: Vec<JobId>, now: Instant) {
        for id in ids {
            let Some(e) = st.jobs.get_mut(&id) else {
                continue;
            };
            if e.retries >= self.settings.max_retries {
                let _ = e.become_(&id, JobStatus::Failed, now);
                e.error = Some(format!(
                    "worker lost {} times; giving up after {} retries",
                    e.retries + 1,
                    self.settings.max_retries
                ));
                st.ended(&id, JobStatus::Failed);
            } else if e.become_(&id, JobStatus::InQueue, now).is_ok() {
                st.requeue(id, true);
            }
        }
    }
}
