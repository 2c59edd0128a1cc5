//! The memory store's stored responses: a map by id with each one's expiry, bounded in count
//! and in bytes (the oldest give way), since a client that stores every response would
//! otherwise grow the gateway's memory for the whole retention.

use super::MemoryStore;
use crate::{ResponseStore, Result};
use async_trait::async_trait;
use protocol::responses::stored::StoredResponse;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Most responses the memory store keeps at once. (The Redis store keeps what its memory
/// policy allows.)
pub const MAX_STORED_RESPONSES: usize = 10_000;
/// Most bytes (as JSON) of responses the memory store keeps at once: a record holds its
/// whole conversation, and a request body may be 10 MiB.
pub const MAX_STORED_RESPONSE_BYTES: usize = 256 * 1024 * 1024;

/// One kept response: the record, until when, and its size as JSON.
pub(super) struct Kept {
    record: StoredResponse,
    until: Instant,
    bytes: usize,
}

/// Drop expired records, then the oldest, until one more of `bytes` fits in `limits` (count,
/// bytes). Retention is the same for every record, so the first to expire is the oldest.
fn make_room(
    kept: &mut HashMap<String, Kept>,
    (now, bytes): (Instant, usize),
    (max_count, max_bytes): (usize, usize),
) {
    kept.retain(|_, k| k.until > now);
    let mut total: usize = kept.values().map(|k| k.bytes).sum();
    while !kept.is_empty() && (kept.len() >= max_count || total + bytes > max_bytes) {
        let oldest = kept.iter().min_by_key(|(_, k)| k.until);
        if let Some(id) = oldest.map(|(id, _)| id.clone()) {
            total -= kept.remove(&id).map_or(0, |k| k.bytes);
        }
    }
}

#[async_trait]
impl ResponseStore for MemoryStore {
    async fn put_response(&self, id: &str, r: &StoredResponse, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let bytes = serde_json::to_vec(r).map_or(0, |v| v.len());
        let mut kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        kept.remove(id);
        let limits = (MAX_STORED_RESPONSES, MAX_STORED_RESPONSE_BYTES);
        make_room(&mut kept, (now, bytes), limits);
        let until = now + ttl;
        let record = r.clone();
        kept.insert(
            id.to_string(),
            Kept {
                record,
                until,
                bytes,
            },
        );
        Ok(())
    }

    async fn response(&self, id: &str) -> Result<Option<StoredResponse>> {
        let kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kept
            .get(id)
            .filter(|k| k.until > Instant::now())
            .map(|k| k.record.clone()))
    }

    async fn delete_response(&self, id: &str) -> Result<bool> {
        let mut kept = self.responses.lock().unwrap_or_else(|p| p.into_inner());
        Ok(kept.remove(id).is_some_and(|k| k.until > Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(age_ms: u64, bytes: usize, now: Instant) -> Kept {
        let record = StoredResponse {
            tenant: None,
            response: serde_json::Value::Null,
            input_items: vec![],
            conversation: vec![],
        };
        let until = now + Duration::from_secs(60) - Duration::from_millis(age_ms);
        Kept {
            record,
            until,
            bytes,
        }
    }

    #[test]
    fn the_oldest_give_way_to_the_count_and_byte_limits() {
        let now = Instant::now();
        let mut map: HashMap<String, Kept> = [("old", 30), ("mid", 20), ("new", 10)]
            .into_iter()
            .map(|(id, age)| (id.to_string(), kept(age, 40, now)))
            .collect();
        map.insert("gone".into(), kept(61_000, 1, now));
        // 120 bytes kept (the expired record aside); 50 more must fit in 120: the two oldest go.
        make_room(&mut map, (now, 50), (10, 120));
        let mut left: Vec<&String> = map.keys().collect();
        left.sort();
        assert_eq!(left, ["new"]);
        // The count limit alone.
        make_room(&mut map, (now, 0), (1, 1000));
        assert!(map.is_empty());
    }
}
