//! Tests of the Redis store against a real `redis-server` (one per test, on a free port): the
//! shared conformance suite, leases, expiry, two stores on one Redis, and Redis going away.
use super::*;
use crate::conformance::{self, with_policy};
use crate::testing::RedisServer;
use crate::JobStore;
use protocol::job::JobPolicy;
use serde_json::json;

fn settings() -> StoreSettings {
    StoreSettings {
        max_queue: 3,
        orphan_after: Duration::from_millis(200),
        ..StoreSettings::default()
    }
}

/// A store with `settings` on a fresh server (which must outlive it).
fn store_with(settings: StoreSettings) -> (Arc<RedisStore>, RedisServer) {
    let server = RedisServer::start();
    let store = RedisStore::start(&server.url(), settings).unwrap();
    (store, server)
}

/// A store whose workers are silent (lease lost) after 100 ms.
fn short_leases() -> (Arc<RedisStore>, RedisServer) {
    store_with(StoreSettings {
        worker_timeout: Duration::from_millis(100),
        ..settings()
    })
}

fn store() -> (Arc<dyn JobStore>, RedisServer) {
    let (s, server) = store_with(settings());
    (s, server)
}

conformance::suite!(store());

const ZERO: Duration = Duration::ZERO;

/// A raw command on the server, beside the store.
async fn raw<T: redis::FromRedisValue>(server: &RedisServer, cmd: &mut redis::Cmd) -> T {
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    cmd.query_async(&mut c).await.unwrap()
}

async fn keys(server: &RedisServer, pattern: &str) -> Vec<String> {
    raw(server, redis::cmd("KEYS").arg(pattern)).await
}

#[tokio::test]
async fn silent_worker_loses_its_lease_then_the_job_fails_after_retries() {
    let (s, _server) = store_with(StoreSettings {
        worker_timeout: Duration::from_millis(100),
        max_retries: 1,
        ..settings()
    });
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    assert_eq!(s.take("ep", "w1", 1, ZERO).await.unwrap().len(), 1);
    // A live worker keeps its lease.
    s.ping("ep", "w1", None).await.unwrap();
    assert_eq!(s.sweep().await.unwrap(), 0);
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.sweep().await.unwrap();
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!((v.status, v.retries), (JobStatus::InQueue, 1));
    assert_eq!(s.metrics("ep").await.unwrap().retried, 1);
    // The new holder's report lands; the old worker's late one is refused.
    assert_eq!(s.take("ep", "w2", 1, ZERO).await.unwrap()[0].id, id);
    let late = s
        .report(&id, "w1", JobReport::Completed(json!("old")))
        .await;
    assert!(matches!(late, Err(QueueError::NotHeld { .. })), "{late:?}");
    tokio::time::sleep(Duration::from_millis(250)).await;
    s.sweep().await.unwrap();
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(v.status, JobStatus::Failed, "{v:?}");
    assert!(v.error.unwrap().contains("giving up after 1 retries"));
    assert_eq!(v.output, None, "the late report never landed");
}

#[tokio::test]
async fn execution_timeout_times_out_and_stops_the_worker() {
    let (s, _server) = store();
    let job = with_policy(JobPolicy {
        execution_timeout: 5,
        ..JobPolicy::default()
    });
    let id = s.submit("ep", job).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    // The sweeper runs once a second by itself.
    let stopped = s.stops("w", Duration::from_secs(5)).await.unwrap();
    assert_eq!(stopped, vec![id.clone()]);
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.error.as_deref()),
        (JobStatus::TimedOut, Some("execution timeout exceeded"))
    );
}

#[tokio::test]
async fn ttl_and_retention_are_redis_expirations() {
    let (s, server) = store_with(StoreSettings {
        retention: Duration::from_millis(200),
        ..settings()
    });
    let short = with_policy(JobPolicy {
        ttl: 300,
        ..JobPolicy::default()
    });
    let queued = s.submit("ep", short).await.unwrap();
    let done = s.submit("ep", NewJob::default()).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap(); // takes `queued`: FIFO
    let _ = s.cancel(&queued).await; // cancelled at once: kept for the retention only
    s.take("ep", "w", 1, ZERO).await.unwrap();
    s.push_stream(&done, "w", vec![json!(1)]).await.unwrap();
    s.report(&done, "w", JobReport::Completed(json!(1)))
        .await
        .unwrap();
    assert!(s.get(&done).await.unwrap().is_some());
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(s.get(&done).await.unwrap().is_none(), "retention passed");
    assert!(s.get(&queued).await.unwrap().is_none(), "TTL passed");
    assert_eq!(keys(&server, "sl:job:*").await, Vec::<String>::new());
    assert_eq!(keys(&server, "sl:chunks:*").await, Vec::<String>::new());
}

#[tokio::test]
async fn a_queued_job_past_its_ttl_leaves_the_queue() {
    let (s, _server) = store();
    let job = with_policy(JobPolicy {
        ttl: 100,
        ..JobPolicy::default()
    });
    let id = s.submit("ep", job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await; // one sweep
    assert!(s.get(&id).await.unwrap().is_none());
    assert_eq!(s.metrics("ep").await.unwrap().in_queue, 0);
    assert!(s.take("ep", "w", 1, ZERO).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_running_job_past_its_ttl_stops_its_worker() {
    let (s, _server) = store();
    let job = with_policy(JobPolicy {
        ttl: 300,
        ..JobPolicy::default()
    });
    let id = s.submit("ep", job).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    // The sweeper runs once a second by itself.
    let stopped = s.stops("w", Duration::from_secs(5)).await.unwrap();
    assert_eq!(stopped, vec![id.clone()]);
    assert!(s.get(&id).await.unwrap().is_none(), "TTL passed: gone");
}

#[tokio::test]
async fn two_stores_on_one_redis_share_jobs_and_wake_each_other() {
    let server = RedisServer::start();
    let a = RedisStore::start(&server.url(), settings()).unwrap();
    let b = RedisStore::start(&server.url(), settings()).unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await; // subscriptions up
    let t0 = std::time::Instant::now();
    let taker = {
        let b = b.clone();
        tokio::spawn(async move { b.take("ep", "w", 1, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = a.submit("ep", NewJob::default()).await.unwrap();
    assert_eq!(taker.await.unwrap().unwrap()[0].id, id);
    let reader = {
        let (a, id) = (a.clone(), id.clone());
        tokio::spawn(async move { a.read_stream(&id, 0, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    b.push_stream(&id, "w", vec![json!("x")]).await.unwrap();
    assert_eq!(reader.await.unwrap().unwrap().chunks, vec![json!("x")]);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "woken by events, not by the once-a-second recheck: {:?}",
        t0.elapsed()
    );
    b.report(&id, "w", JobReport::Completed(json!("ok")))
        .await
        .unwrap();
    let v = a.wait_final(&id, Duration::from_secs(5)).await.unwrap();
    assert_eq!(v.unwrap().output, Some(json!("ok")));
    assert_eq!(
        a.metrics("ep").await.unwrap(),
        b.metrics("ep").await.unwrap()
    );
}

#[tokio::test]
async fn redis_down_gives_unavailable_quickly_then_the_store_recovers() {
    let mut server = RedisServer::start_durable();
    let s = RedisStore::start(&server.url(), settings()).unwrap();
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    server.kill();
    let t0 = std::time::Instant::now();
    for _ in 0..3 {
        let err = s.get(&id).await.unwrap_err();
        assert!(matches!(err, QueueError::Unavailable(_)), "{err:?}");
    }
    assert!(
        t0.elapsed() < OP_TIMEOUT * 3 + Duration::from_secs(1),
        "bounded: {:?}",
        t0.elapsed()
    );
    server.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let view = loop {
        match s.get(&id).await {
            Ok(v) => break v,
            Err(e) if std::time::Instant::now() > deadline => panic!("no recovery: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(
        view.unwrap().status,
        JobStatus::InQueue,
        "appendonly kept it"
    );
    // Waiters work again too (the event subscription reconnected).
    let taker = {
        let s = s.clone();
        tokio::spawn(async move { s.take("ep2", "w", 1, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let t1 = std::time::Instant::now();
    s.submit("ep2", NewJob::default()).await.unwrap();
    assert_eq!(taker.await.unwrap().unwrap().len(), 1);
    assert!(t1.elapsed() < Duration::from_millis(900));
}

#[test]
fn transition_rules_reach_lua_from_the_one_table() {
    let rules = lua_rules();
    assert!(rules.contains("['IN_QUEUE>IN_PROGRESS'] = true"));
    assert!(rules.contains("['FAILED>IN_QUEUE'] = true"));
    assert!(!rules.contains("['COMPLETED>IN_QUEUE']"));
    assert!(rules.contains("local FINAL = {['COMPLETED'] = true"));
}

#[tokio::test]
async fn after_an_outage_workers_get_a_fresh_lease_instead_of_losing_their_jobs() {
    let (s, server) = short_leases();
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // As if no sweep had run for a minute (Redis was away): the silent worker keeps its job.
    let () = raw(&server, redis::cmd("SET").arg("sl:lastsweep").arg(0)).await;
    assert_eq!(s.sweep().await.unwrap(), 0);
    assert_eq!(
        s.get(&id).await.unwrap().unwrap().status,
        JobStatus::InProgress
    );
    // Sweeping as usual again (ours or the store's own), a worker that stays silent loses it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    s.sweep().await.unwrap();
    assert_eq!(
        s.get(&id).await.unwrap().unwrap().status,
        JobStatus::InQueue
    );
}

#[tokio::test]
async fn a_retired_worker_that_keeps_pinging_keeps_its_jobs() {
    let (s, _server) = short_leases();
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    s.retire("w").await.unwrap();
    for _ in 0..6 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.ping("ep", "w", Some(std::slice::from_ref(&id)))
            .await
            .unwrap();
        s.sweep().await.unwrap();
    }
    assert_eq!(
        s.get(&id).await.unwrap().unwrap().status,
        JobStatus::InProgress
    );
    assert_eq!(
        s.metrics("ep").await.unwrap().workers_live,
        0,
        "not live, though"
    );
}
