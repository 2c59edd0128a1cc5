//! The in-memory store's housekeeping: execution timeouts, silent workers, retention, TTL.
//! It reads the indexes (`index.rs`), so its cost follows the jobs in progress and the jobs
//! due, not every job retained.

use super::{MemoryStore, State};
use protocol::{JobId, JobStatus};
use std::time::Instant;

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
        for id in st.expired(now) {
            if let Some(e) = st.remove_job(&id) {
                match e.status {
                    // Only queued jobs are in a queue (most expiring jobs ended long ago).
                    JobStatus::InQueue => st.endpoint(&e.endpoint).unqueue(&id),
                    // Past its TTL the job is gone: a worker still running it stops.
                    JobStatus::InProgress => st.tell_worker_to_stop(e.worker.as_deref(), &id),
                    _ => {}
                }
                e.bump();
            }
        }
        let (mut timed_out, mut requeue) = (Vec::new(), Vec::new());
        for (id, r) in &st.index.running {
            if r.deadline < now {
                timed_out.push((id.clone(), r.worker.clone()));
            } else if dead.contains(&r.worker) {
                requeue.push(id.clone());
            }
        }
        for (id, worker) in timed_out {
            if st.transition(&id, JobStatus::TimedOut, now, None).is_ok() {
                if let Some(e) = st.jobs.get_mut(&id) {
                    e.error = Some("execution timeout exceeded".into());
                }
                st.tell_worker_to_stop(Some(&worker), &id);
                st.ended(&id, JobStatus::TimedOut);
            }
        }
        self.lose(st, requeue, now);
    }

    /// Jobs whose worker is gone go back to the front of their queue, or fail after
    /// `max_retries`.
    pub(super) fn lose(&self, st: &mut State, ids: Vec<JobId>, now: Instant) {
        for id in ids {
            let Some(retries) = st.jobs.get(&id).map(|e| e.retries) else {
                continue;
            };
            if retries >= self.settings.max_retries {
                if st.transition(&id, JobStatus::Failed, now, None).is_ok() {
                    if let Some(e) = st.jobs.get_mut(&id) {
                        e.error = Some(format!(
                            "worker lost {} times; giving up after {} retries",
                            retries + 1,
                            self.settings.max_retries
                        ));
                    }
                    st.ended(&id, JobStatus::Failed);
                }
            } else if st.transition(&id, JobStatus::InQueue, now, None).is_ok() {
                st.requeue(id, true);
            }
        }
    }
}
