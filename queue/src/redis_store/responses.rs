//! The Redis store's stored responses: `resp:ID` keys that expire with their retention, each
//! operation one call of `store.lua` like every other.

use super::{reply, unavailable, RedisStore};
use crate::{ResponseStore, Result};
use async_trait::async_trait;
use protocol::responses::stored::StoredResponse;
use std::time::Duration;

#[async_trait]
impl ResponseStore for RedisStore {
    async fn put_response(&self, id: &str, r: &StoredResponse, ttl: Duration) -> Result<()> {
        let text = serde_json::to_string(r).map_err(unavailable)?;
        // Redis refuses an expiry of 0 ms.
        let ms = ttl.as_millis().max(1) as u64;
        let _: reply::Done = self
            .ok("put_response", |i| {
                i.arg(id).arg(text).arg(ms);
            })
            .await?;
        Ok(())
    }

    async fn response(&self, id: &str) -> Result<Option<StoredResponse>> {
        let kept: reply::Record = self
            .ok("response", |i| {
                i.arg(id);
            })
            .await?;
        kept.r
            .map(|text| serde_json::from_str(&text).map_err(unavailable))
            .transpose()
    }

    async fn delete_response(&self, id: &str) -> Result<bool> {
        let c: reply::Count = self
            .ok("delete_response", |i| {
                i.arg(id);
            })
            .await?;
        Ok(c.n > 0)
    }
}
