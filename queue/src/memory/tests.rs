//! Tests of the in-memory store: the shared conformance suite, and its housekeeping.
use super::*;
use crate::conformance::{self, with_policy};
use crate::JobStore;
use protocol::job::JobPolicy;

fn store() -> MemoryStore {
    MemoryStore::new(StoreSettings {
        max_queue: 3,
        orphan_after: Duration::from_millis(200),
        ..StoreSettings::default()
    })
}

conformance::suite!((Arc::new(store()) as Arc<dyn JobStore>, ()));

#[tokio::test]
async fn silent_worker_loses_its_job_then_it_fails_after_retries() {
    let s = MemoryStore::new(StoreSettings {
        worker_timeout: Duration::from_millis(10),
        max_retries: 1,
        ..StoreSettings::default()
    });
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    let zero = Duration::ZERO;
    assert_eq!(s.take("ep", "w1", 1, zero).await.unwrap().len(), 1);
    s.sweep(Instant::now() + Duration::from_secs(1));
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!((v.status, v.retries), (JobStatus::InQueue, 1));
    // The old worker's late report is refused; the new holder's lands.
    assert_eq!(s.take("ep", "w2", 1, zero).await.unwrap()[0].id, id);
    let late = s
        .report(&id, "w1", JobReport::Completed(Value::from(1)))
        .await;
    assert!(matches!(late, Err(QueueError::NotHeld { .. })));
    s.sweep(Instant::now() + Duration::from_secs(1));
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(v.status, JobStatus::Failed, "{v:?}");
    assert!(v.error.unwrap().contains("retries"));
}

#[tokio::test]
async fn execution_timeout_times_out_and_stops_the_worker() {
    let s = store();
    let job = with_policy(JobPolicy {
        execution_timeout: 5,
        ..JobPolicy::default()
    });
    let id = s.submit("ep", job).await.unwrap();
    s.take("ep", "w", 1, Duration::ZERO).await.unwrap();
    s.ping("ep", "w", None).await.unwrap();
    s.sweep(Instant::now() + Duration::from_millis(50));
    assert_eq!(
        s.get(&id).await.unwrap().unwrap().status,
        JobStatus::TimedOut
    );
    assert_eq!(s.stops("w", Duration::ZERO).await.unwrap(), vec![id]);
}

#[tokio::test]
async fn jobs_past_their_ttl_are_gone_in_any_state() {
    let s = store();
    let ttl = |ms| {
        with_policy(JobPolicy {
            ttl: ms,
            ..JobPolicy::default()
        })
    };
    let running = s.submit("ep", ttl(1000)).await.unwrap();
    let queued = s.submit("ep", ttl(1000)).await.unwrap();
    let kept = s.submit("ep", ttl(60_000)).await.unwrap();
    s.take("ep", "w", 1, Duration::ZERO).await.unwrap();
    s.sweep(Instant::now() + Duration::from_secs(2));
    assert!(s.get(&queued).await.unwrap().is_none());
    assert!(s.get(&running).await.unwrap().is_none());
    assert!(s.get(&kept).await.unwrap().is_some());
    assert_eq!(
        s.metrics("ep").await.unwrap().in_queue,
        1,
        "the expired job left the queue"
    );
    assert_eq!(
        s.stops("w", Duration::ZERO).await.unwrap(),
        vec![running],
        "the worker running the expired job is told to stop"
    );
}

#[tokio::test]
async fn finished_jobs_expire_after_retention() {
    let s = store();
    let id = s
        .submit(
            "ep",
            NewJob {
                sync: true,
                ..NewJob::default()
            },
        )
        .await
        .unwrap();
    assert!(id.0.starts_with("sync-"));
    s.take("ep", "w", 1, Duration::ZERO).await.unwrap();
    s.report(&id, "w", JobReport::Completed(Value::Null))
        .await
        .unwrap();
    s.sweep(Instant::now() + Duration::from_secs(30));
    assert!(s.get(&id).await.unwrap().is_some(), "kept for a while");
    s.sweep(Instant::now() + Duration::from_secs(61));
    assert!(
        s.get(&id).await.unwrap().is_none(),
        "sync results go after a minute"
    );
}

/// The indexes agree with the jobs themselves after every kind of transition.
#[tokio::test]
async fn indexes_follow_every_transition() {
    let s = MemoryStore::new(StoreSettings {
        max_queue: 100,
        worker_timeout: Duration::from_millis(10),
        ..StoreSettings::default()
    });
    let zero = Duration::ZERO;
    let mut ids = Vec::new();
    for i in 0..30 {
        let job = with_policy(JobPolicy {
            execution_timeout: if i % 7 == 0 { 1 } else { 600_000 },
            ..JobPolicy::default()
        });
        ids.push(s.submit("ep", job).await.unwrap());
    }
    let taken = s.take("ep", "w1", 20, zero).await.unwrap();
    s.take("ep", "w2", 5, zero).await.unwrap();
    for (i, t) in taken.iter().enumerate().take(6) {
        let report = if i % 2 == 0 {
            JobReport::Completed(Value::from(i))
        } else {
            JobReport::Failed("no".into())
        };
        s.report(&t.id, "w1", report).await.unwrap();
    }
    s.cancel(&taken[6].id).await.unwrap();
    s.cancel(&ids[29]).await.unwrap();
    s.retry(&taken[1].id).await.unwrap();
    s.ping("ep", "w1", None).await.unwrap();
    // w2 goes silent: its jobs go back; short execution timeouts pass.
    s.sweep(Instant::now() + Duration::from_millis(50));
    let st = s.lock();
    let running: Vec<&JobId> = st
        .jobs
        .iter()
        .filter(|(_, e)| e.status == JobStatus::InProgress)
        .map(|(id, _)| id)
        .collect();
    assert_eq!(running.len(), st.index.running.len());
    for id in running {
        let e = &st.jobs[id];
        assert_eq!(
            st.index.running[id].worker.as_str(),
            e.worker.as_deref().unwrap()
        );
    }
    assert_eq!(st.index.expiries.len(), st.jobs.len());
    for (id, e) in &st.jobs {
        assert!(st.index.expiries.contains(&(e.expires, id.clone())));
    }
    assert!(st.index.running.values().all(|r| r.worker == "w1"));
}
