//! The memory store's token buckets: [`crate::bucket_step`] over a map by name.

use super::MemoryStore;
use crate::{bucket_step, BucketTake, RateLimits, RateTake, Result};
use async_trait::async_trait;
use std::time::Instant;

#[async_trait]
impl RateLimits for MemoryStore {
    async fn take_tokens(&self, buckets: &[BucketTake<'_>]) -> Result<Vec<RateTake>> {
        let now = Instant::now();
        let mut held = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let state = |b: &BucketTake| {
            let (tokens, at) = held.get(b.key).copied().unwrap_or((b.capacity as f64, now));
            (tokens, now - at)
        };
        let enough = buckets.iter().all(|b| {
            let (tokens, elapsed) = state(b);
            bucket_step(tokens, elapsed, b, false).1.allowed
        });
        let steps: Vec<_> = buckets
            .iter()
            .map(|b| {
                let (tokens, elapsed) = state(b);
                bucket_step(tokens, elapsed, b, enough)
            })
            .collect();
        // Refused: nothing changes (the refill is computed again from the same instant).
        if enough {
            for (b, (tokens, _)) in buckets.iter().zip(&steps) {
                held.insert(b.key.to_string(), (*tokens, now));
            }
        }
        Ok(steps.into_iter().map(|(_, answer)| answer).collect())
    }
}
