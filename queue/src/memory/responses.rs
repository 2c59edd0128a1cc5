//! The memory store's stored responses: a map by id with each one's expiry, bounded in count
//! (the oldest give way), since a client that stores every response would otherwise grow the
//! gateway's memory for the whole retention.

use super::MemoryStore;
use crate::{ResponseStore, Result};
use async_trait::async_trait;
use protocol::responses::stored::StoredResponse;
use std::time::{Duration, Instant};

/// Most responses the memory store keeps at once. (The Redis store keeps what its memory
/// policy allows.)
pub const MAX_STORED_RESPONSES: usize = 10_000;

#[async_trait]
impl ResponseStore for MemoryStore {
    async fn put_response(&self, id: &str, r: &StoredResponse, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let mut kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|_, (_, until)| *until > now);
        if kept.len() >= MAX_STORED_RESPONSES && !kept.contains_key(id) {
            // Retention is the same for every response: the first to expire is the oldest.
            let oldest = kept.iter().min_by_key(|(_, (_, until))| *until);
            if let Some(oldest) = oldest.map(|(k, _)| k.clone()) {
                kept.remove(&oldest);
            }
        }
        kept.insert(id.to_string(), (r.clone(), now + ttl));
        Ok(())
    }

    async fn response(&self, id: &str) -> Result<Option<StoredResponse>> {
        let kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kept
            .get(id)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(r, _)| r.clone()))
    }

    async fn delete_response(&self, id: &str) -> Result<bool> {
        let mut kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kept
            .remove(id)
            .is_some_and(|(_, until)| until > Instant::now()))
    }
}
