//! Wake-ups across gateways: every store operation that changes something publishes an event
//! name (`j:{job}`, `q:{endpoint}`, `w:{worker}`, `h`) on one Redis channel; each gateway
//! keeps one subscription and turns the names into local `watch` signals its waiters hold.
//! Waiters also look again once a second, so an event lost while the subscription reconnects
//! costs at most that second, never a hang.

use futures::StreamExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::watch;

pub(super) const CHANNEL: &str = "sl:ev";

#[derive(Default)]
pub(super) struct Notifier {
    signals: Mutex<Signals>,
}

#[derive(Default)]
struct Signals {
    map: HashMap<String, watch::Sender<u64>>,
    /// Size at which to drop the signals nobody waits on any more (doubles past the live set,
    /// so the sweep costs O(1) per subscription on average).
    tidy_at: usize,
}

impl Notifier {
    /// A receiver that changes after the next event `name`. Subscribe before looking, so no
    /// event between the look and the wait is missed.
    pub fn subscribe(&self, name: &str) -> watch::Receiver<u64> {
        let mut s = self.lock();
        if s.map.len() > s.tidy_at.max(1024) {
            s.map.retain(|_, tx| tx.receiver_count() > 0);
            s.tidy_at = s.map.len() * 2;
        }
        s.map
            .entry(name.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    fn notify(&self, name: &str) {
        if let Some(tx) = self.lock().map.get(name) {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// Events may have been missed (the subscription was down): wake every waiter to look.
    fn notify_all(&self) {
        for tx in self.lock().map.values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Signals> {
        self.signals.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep a subscription to `CHANNEL` open, reconnecting after failures, until the notifier
    /// is dropped.
    pub fn listen(self: &Arc<Self>, client: redis::Client) -> tokio::task::JoinHandle<()> {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let connected = tokio::time::timeout(Duration::from_secs(2), async {
                    let mut ps = client.get_async_pubsub().await?;
                    ps.subscribe(CHANNEL).await?;
                    Ok::<_, redis::RedisError>(ps)
                })
                .await;
                match connected {
                    Ok(Ok(ps)) => {
                        match weak.upgrade() {
                            Some(n) => n.notify_all(),
                            None => return,
                        }
                        let mut messages = ps.into_on_message();
                        while let Some(msg) = messages.next().await {
                            let Some(n) = weak.upgrade() else { return };
                            if let Ok(name) = msg.get_payload::<String>() {
                                n.notify(&name);
                            }
                        }
                        tracing::warn!("redis event subscription lost; reconnecting");
                    }
                    Ok(Err(e)) => tracing::debug!("redis event subscription: {e}"),
                    Err(_) => tracing::debug!("redis event subscription: connect timed out"),
                }
                if weak.strong_count() == 0 {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    }
}
