//! Webhook delivery: when a job with a `webhook` ends, POST its status object there. A non-2xx
//! answer is retried twice, `webhook_retry_secs` apart (RunPod's rule); delivery runs beside
//! the job path and never delays it; redirects are followed only within the same host.

use crate::AppState;
use protocol::job::JobView;
use std::time::Duration;

fn client() -> reqwest::Client {
    let same_host = reqwest::redirect::Policy::custom(|attempt| {
        let first = attempt
            .previous()
            .first()
            .and_then(|u| u.host_str().map(str::to_string));
        if attempt.previous().len() > 5 || attempt.url().host_str().map(str::to_string) != first {
            attempt.stop()
        } else {
            attempt.follow()
        }
    });
    reqwest::Client::builder()
        .redirect(same_host)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

async fn deliver(http: reqwest::Client, url: String, view: JobView, retry_after: Duration) {
    for attempt in 0..3 {
        if attempt > 0 {
            tokio::time::sleep(retry_after).await;
        }
        match http.post(&url).json(&view).send().await {
            Ok(r) if r.status().is_success() => return,
            Ok(r) => {
                tracing::warn!(job = %view.id, %url, status = %r.status(), attempt, "webhook refused")
            }
            Err(e) => tracing::warn!(job = %view.id, %url, attempt, "webhook failed: {e}"),
        }
    }
    tracing::warn!(job = %view.id, %url, "webhook given up after 3 attempts");
}

/// Deliver due webhooks until the store goes away.
pub fn spawn(gw: AppState) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = client();
        let retry_after = Duration::from_secs(gw.settings.webhook_retry_secs);
        loop {
            match gw.store.due_webhooks(Duration::from_secs(30)).await {
                Ok(due) => {
                    for (url, view) in due {
                        tokio::spawn(deliver(http.clone(), url, view, retry_after));
                    }
                }
                Err(e) => {
                    tracing::warn!("webhooks: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}
