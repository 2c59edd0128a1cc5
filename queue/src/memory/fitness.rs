//! The memory store's fitness-check failures: per endpoint, the newest first, bounded, and
//! forgotten an hour after the newest (as the Redis store's `fit:EP` list).

use protocol::health::{FitnessFailure, FITNESS_TTL_SECS, MAX_FITNESS_FAILURES};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Each endpoint's failures, newest first, and when the newest came.
#[derive(Default)]
pub(super) struct Failures(HashMap<String, (Instant, VecDeque<FitnessFailure>)>);

impl Failures {
    /// Keep `failure` as `endpoint`'s newest, dropping the oldest past the limit.
    pub(super) fn put(&mut self, endpoint: &str, failure: &FitnessFailure) {
        let now = Instant::now();
        let kept = self
            .0
            .entry(endpoint.to_string())
            .or_insert_with(|| (now, VecDeque::new()));
        kept.0 = now;
        kept.1.push_front(failure.clone());
        kept.1.truncate(MAX_FITNESS_FAILURES);
    }

    /// `endpoint`'s failures, newest first; none once the newest is an hour old.
    pub(super) fn of(&self, endpoint: &str) -> Vec<FitnessFailure> {
        let ttl = Duration::from_secs(FITNESS_TTL_SECS);
        let fresh = self.0.get(endpoint).filter(|(at, _)| at.elapsed() < ttl);
        fresh
            .map(|(_, f)| f.iter().cloned().collect())
            .unwrap_or_default()
    }
}
