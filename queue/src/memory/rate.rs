//! The memory store's token buckets: [`crate::bucket_step`] over a map by name.

use super::MemoryStore;
use crate::{bucket_step, RateLimits, RateTake, Result};
use async_trait::async_trait;
use std::time::Instant;

#[async_trait]
impl RateLimits for MemoryStore {
    async fn take_tokens(
        &self,
        key: &str,
        capacity: u64,
        cost: u64,
        need: u64,
    ) -> Result<RateTake> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = buckets.get(key).copied().unwrap_or((capacity as f64, now));
        let (tokens, take) = bucket_step(tokens, now - at, capacity, cost, need);
        buckets.insert(key.to_string(), (tokens, now));
        Ok(take)
    }
}
