//! The behaviour every [`JobStore`] backend must show, as generic async checks. A backend's
//! tests run them all with `conformance::suite!(make_store())`, where `make_store()` gives
//! `(Arc<dyn JobStore>, guard)`: a store allowing at most 3 queued jobs per endpoint, with
//! `orphan_after` 200 ms, and
//! whatever must live as long as it (a Redis server).

use crate::{BucketTake, JobStore, NewJob, QueueError, RateTake};
use protocol::health::{FleetState, FleetView, FleetWorker};
use protocol::job::{JobPolicy, JobReport};
use protocol::JobStatus;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZERO: Duration = Duration::ZERO;

fn job(n: i64) -> NewJob {
    NewJob {
        input: json!({ "n": n }),
        ..NewJob::default()
    }
}

/// A job with `policy` (and no input).
pub fn with_policy(policy: JobPolicy) -> NewJob {
    NewJob {
        policy,
        ..NewJob::default()
    }
}

pub async fn submit_take_complete(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    assert_eq!(
        s.get(&id).await.unwrap().unwrap().status,
        JobStatus::InQueue
    );
    let taken = s.take("ep", "w", 4, ZERO).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].input, json!({"n": 1}));
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(v.status, JobStatus::InProgress);
    assert!(v.delay_time.is_some());
    s.report(&id, "w", JobReport::Progress(json!("half")))
        .await
        .unwrap();
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.output),
        (JobStatus::InProgress, Some(json!("half")))
    );
    s.report(&id, "w", JobReport::Completed(json!("done")))
        .await
        .unwrap();
    // The SDK retries job-done: a repeat must succeed and change nothing.
    s.report(&id, "w", JobReport::Completed(json!("again")))
        .await
        .unwrap();
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.output),
        (JobStatus::Completed, Some(json!("done")))
    );
    assert!(v.execution_time.is_some());
    let m = s.metrics("ep").await.unwrap();
    assert_eq!(
        (m.arrived, m.completed, m.in_queue, m.in_progress),
        (1, 1, 0, 0)
    );
    // What a worker gets besides the input: RunPod's `s3Config`, and the trace context of the
    // request that queued the job (which may have come through another gateway).
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let traced = NewJob {
        s3_config: Some(json!({"bucketName": "b"})),
        traceparent: Some(tp.into()),
        ..job(2)
    };
    s.submit("ep", traced).await.unwrap();
    s.submit("ep", job(3)).await.unwrap();
    let t = s.take("ep", "w", 2, ZERO).await.unwrap();
    assert_eq!(t[0].s3_config, Some(json!({"bucketName": "b"})));
    assert_eq!(t[0].traceparent.as_deref(), Some(tp));
    assert_eq!(
        (t[1].s3_config.as_ref(), t[1].traceparent.as_ref()),
        (None, None)
    );
}

pub async fn failure_is_recorded(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    s.report(&id, "w", JobReport::Failed("boom".into()))
        .await
        .unwrap();
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.error.as_deref()),
        (JobStatus::Failed, Some("boom"))
    );
    assert_eq!(s.metrics("ep").await.unwrap().failed, 1);
}

pub async fn fifo_with_low_priority_last(s: Arc<dyn JobStore>) {
    let low = NewJob {
        policy: JobPolicy {
            low_priority: true,
            ..JobPolicy::default()
        },
        ..job(0)
    };
    let l = s.submit("ep", low).await.unwrap();
    let a = s.submit("ep", job(1)).await.unwrap();
    let b = s.submit("ep", job(2)).await.unwrap();
    let m = s.metrics("ep").await.unwrap();
    assert_eq!((m.in_queue, m.in_queue_low_priority), (2, 1));
    let order: Vec<_> = s
        .take("ep", "w", 3, ZERO)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(order, vec![a, b, l]);
}

pub async fn queue_limit_and_endpoints_are_separate(s: Arc<dyn JobStore>) {
    for i in 0..3 {
        s.submit("ep", job(i)).await.unwrap();
    }
    assert_eq!(
        s.submit("ep", job(9)).await.unwrap_err(),
        QueueError::QueueFull("ep".into())
    );
    s.submit("other", job(9)).await.unwrap();
    assert!(s.take("nobody", "w", 1, ZERO).await.unwrap().is_empty());
}

pub async fn only_the_holder_may_report(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    s.take("ep", "w1", 1, ZERO).await.unwrap();
    let err = s
        .report(&id, "w2", JobReport::Completed(json!(1)))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::NotHeld { .. }), "{err:?}");
    let err = s.push_stream(&id, "w2", vec![json!(1)]).await.unwrap_err();
    assert!(matches!(err, QueueError::NotHeld { .. }), "{err:?}");
    let unknown = protocol::JobId("nope".into());
    assert!(matches!(
        s.report(&unknown, "w1", JobReport::Completed(json!(1)))
            .await,
        Err(QueueError::NotFound(_))
    ));
    assert!(s.get(&unknown).await.unwrap().is_none());
}

pub async fn cancel_queued_and_running(s: Arc<dyn JobStore>) {
    let queued = s.submit("ep", job(1)).await.unwrap();
    assert_eq!(s.cancel(&queued).await.unwrap(), JobStatus::Cancelled);
    assert!(
        s.take("ep", "w", 1, ZERO).await.unwrap().is_empty(),
        "cancelled jobs are not handed out"
    );
    let running = s.submit("ep", job(2)).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    assert_eq!(s.cancel(&running).await.unwrap(), JobStatus::Cancelled);
    assert_eq!(s.stops("w", ZERO).await.unwrap(), vec![running.clone()]);
    assert!(
        s.stops("w", ZERO).await.unwrap().is_empty(),
        "each stop is told once"
    );
    // The worker's late report does not resurrect the job.
    s.report(&running, "w", JobReport::Completed(json!(1)))
        .await
        .unwrap();
    assert_eq!(
        s.get(&running).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
    // Cancelling a final job is a no-op.
    assert_eq!(s.cancel(&running).await.unwrap(), JobStatus::Cancelled);
}

pub async fn stream_reads_from_cursor_until_final(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    s.push_stream(&id, "w", vec![json!("a"), json!("b")])
        .await
        .unwrap();
    let r = s.read_stream(&id, 0, ZERO).await.unwrap();
    assert_eq!(
        (r.chunks, r.next, r.status),
        (vec![json!("a"), json!("b")], 2, JobStatus::InProgress)
    );
    s.push_stream(&id, "w", vec![json!("c")]).await.unwrap();
    s.report(&id, "w", JobReport::Completed(json!("abc")))
        .await
        .unwrap();
    let r = s.read_stream(&id, 2, ZERO).await.unwrap();
    assert_eq!(
        (r.chunks, r.next, r.status),
        (vec![json!("c")], 3, JobStatus::Completed)
    );
    let r = s.read_stream(&id, 3, Duration::from_secs(5)).await.unwrap();
    assert!(
        r.chunks.is_empty() && r.status.is_final(),
        "a final job's stream ends at once"
    );
}

/// Waiters (take, wait_final, read_stream) wake when the awaited change happens, long before
/// their time limit.
pub async fn waiters_wake_promptly(s: Arc<dyn JobStore>) {
    let long = Duration::from_secs(20);
    let t0 = Instant::now();
    let taker = {
        let s = s.clone();
        tokio::spawn(async move { s.take("ep", "w", 1, long).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = s.submit("ep", job(1)).await.unwrap();
    assert_eq!(taker.await.unwrap()[0].id, id);
    let reader = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move { s.read_stream(&id, 0, long).await.unwrap() })
    };
    let finisher = {
        let (s, id) = (s.clone(), id.clone());
        tokio::spawn(async move { s.wait_final(&id, long).await.unwrap().unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    s.push_stream(&id, "w", vec![json!("x")]).await.unwrap();
    assert_eq!(reader.await.unwrap().chunks, vec![json!("x")]);
    s.report(&id, "w", JobReport::Completed(json!(1)))
        .await
        .unwrap();
    assert_eq!(finisher.await.unwrap().status, JobStatus::Completed);
    assert!(
        t0.elapsed() < Duration::from_secs(10),
        "a waiter slept to its limit"
    );
}

pub async fn retry_purge_and_stream_delivery(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    assert!(
        matches!(s.retry(&id).await, Err(QueueError::BadTransition { .. })),
        "only failed jobs retry"
    );
    s.take("ep", "w", 1, ZERO).await.unwrap();
    s.push_stream(&id, "w", vec![json!(1), json!(2)])
        .await
        .unwrap();
    assert_eq!(
        s.take_stream(&id, ZERO).await.unwrap().chunks,
        vec![json!(1), json!(2)]
    );
    s.push_stream(&id, "w", vec![json!(3)]).await.unwrap();
    assert_eq!(
        s.take_stream(&id, ZERO).await.unwrap().chunks,
        vec![json!(3)],
        "each chunk once"
    );
    s.report(&id, "w", JobReport::Failed("x".into()))
        .await
        .unwrap();
    assert_eq!(s.retry(&id).await.unwrap(), JobStatus::InQueue);
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!(
        (v.status, v.retries, v.error),
        (JobStatus::InQueue, 1, None)
    );
    assert_eq!(s.metrics("ep").await.unwrap().retried, 1);
    s.submit("ep", job(2)).await.unwrap();
    assert_eq!(s.purge("ep", None).await.unwrap(), 2);
    assert!(s.get(&id).await.unwrap().is_none(), "purged jobs are gone");
    assert_eq!(s.metrics("ep").await.unwrap().in_queue, 0);
}

pub async fn webhooks_are_due_once_when_jobs_end(s: Arc<dyn JobStore>) {
    let with_hook = |n| NewJob {
        webhook: Some("http://127.0.0.1:9/hook".into()),
        ..job(n)
    };
    let a = s.submit("ep", with_hook(1)).await.unwrap();
    let b = s.submit("ep", with_hook(2)).await.unwrap();
    s.submit("ep", job(3)).await.unwrap();
    s.take("ep", "w", 3, ZERO).await.unwrap();
    assert!(s.due_webhooks(ZERO).await.unwrap().is_empty());
    s.report(&a, "w", JobReport::Completed(json!("ok")))
        .await
        .unwrap();
    s.cancel(&b).await.unwrap();
    let due = s.due_webhooks(ZERO).await.unwrap();
    assert_eq!(
        due.len(),
        1,
        "completed with a hook: yes; cancelled: no; no hook: no"
    );
    assert_eq!(
        (due[0].0.as_str(), &due[0].1.id),
        ("http://127.0.0.1:9/hook", &a)
    );
    assert_eq!(due[0].1.output, Some(json!("ok")));
    assert!(s.due_webhooks(ZERO).await.unwrap().is_empty());
}

pub async fn retired_workers_get_no_jobs(s: Arc<dyn JobStore>) {
    // A worker running a job asks to stop after it: no longer live, but a cancel of the job
    // it still holds reaches it.
    let held = s.submit("ep", job(0)).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    assert_eq!(s.metrics("ep").await.unwrap().workers_live, 1);
    s.submit("ep", job(1)).await.unwrap();
    assert_eq!(s.retire("w").await.unwrap(), 1, "it holds one job");
    assert!(s.is_retired("w").await.unwrap());
    assert!(!s.is_retired("other").await.unwrap());
    assert_eq!(s.metrics("ep").await.unwrap().workers_live, 0);
    assert!(s.workers("ep").await.unwrap().is_empty());
    s.cancel(&held).await.unwrap();
    assert_eq!(s.stops("w", ZERO).await.unwrap(), vec![held]);
    assert!(s
        .take("ep", "w", 1, Duration::from_millis(20))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(s.take("ep", "other", 1, ZERO).await.unwrap().len(), 1);
    // Once its process is gone the store forgets it (no id kept per retired worker forever).
    s.lost("w").await.unwrap();
    assert!(!s.is_retired("w").await.unwrap());
}

pub async fn parked_workers_take_nothing_until_reinstated(s: Arc<dyn JobStore>) {
    // Parking: retire answers the jobs held at that instant (none: safe to freeze); a poll
    // left open by the frozen worker takes nothing while it is retired, and takes a queued
    // job at once when the worker is reinstated (thawed), long before its poll would end.
    s.take("ep", "w", 1, ZERO).await.unwrap();
    assert_eq!(s.retire("w").await.unwrap(), 0);
    let poll = {
        let s = s.clone();
        tokio::spawn(async move { s.take("ep", "w", 1, Duration::from_secs(20)).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let id = s.submit("ep", job(1)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert!(!poll.is_finished(), "a retired worker's poll took a job");
    assert_eq!(s.metrics("ep").await.unwrap().in_queue, 1);
    let t0 = std::time::Instant::now();
    s.reinstate("ep", "w").await.unwrap();
    let taken = poll.await.unwrap().unwrap();
    assert_eq!(taken.iter().map(|t| &t.id).collect::<Vec<_>>(), vec![&id]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert!(!s.is_retired("w").await.unwrap());
}

pub async fn live_workers_lost_workers_and_fleets(s: Arc<dyn JobStore>) {
    let id = s.submit("ep", job(1)).await.unwrap();
    s.take("ep", "w1", 1, ZERO).await.unwrap();
    s.ping("ep", "w2", None).await.unwrap();
    s.ping("other", "w3", None).await.unwrap();
    let live = s.workers("ep").await.unwrap();
    let seen: Vec<(&str, usize)> = live.iter().map(|w| (w.id.as_str(), w.jobs)).collect();
    assert_eq!(seen, vec![("w1", 1), ("w2", 0)]);
    // The process of w1 exited: its job is back in the queue at once.
    assert_eq!(s.lost("w1").await.unwrap(), 1);
    let v = s.get(&id).await.unwrap().unwrap();
    assert_eq!((v.status, v.retries), (JobStatus::InQueue, 1));
    assert_eq!(s.workers("ep").await.unwrap().len(), 1);
    assert_eq!(s.take("ep", "w2", 1, ZERO).await.unwrap()[0].id, id);
    // Jobs taken count even when none is held at the next look (the autoscaler's idle clock).
    s.report(&id, "w2", JobReport::Completed(json!(1)))
        .await
        .unwrap();
    let w2 = &s.workers("ep").await.unwrap()[0];
    assert_eq!((w2.id.as_str(), w2.jobs, w2.taken), ("w2", 0, 1));
    assert_eq!(s.fleet("ep").await.unwrap(), None);
    let view = FleetView {
        workers: vec![FleetWorker {
            id: "w2".into(),
            state: FleetState::Idle,
            pid: Some(7),
            gpus: Some("0,1".into()),
            gpu_type: Some("H100-80GB".into()),
            cpus: Some("1".into()),
            age_ms: Some(5),
            cold_start: None,
            restarts: 0,
            last_exit: None,
            next_start_in_ms: None,
        }],
    };
    s.put_fleet("ep", view.clone()).await.unwrap();
    assert_eq!(s.fleet("ep").await.unwrap(), Some(view));
}

/// A job handed to a worker that never got it (the take's answer was lost): the worker keeps
/// pinging without it, and after `orphan_after` (200 ms in the suite's stores) it is requeued;
/// a job the worker lists stays its own.
pub async fn jobs_left_out_of_pings_go_back_to_the_queue(s: Arc<dyn JobStore>) {
    let lost = s.submit("ep", job(1)).await.unwrap();
    let kept = s.submit("ep", job(2)).await.unwrap();
    assert_eq!(s.take("ep", "w", 2, ZERO).await.unwrap().len(), 2);
    s.ping("ep", "w", Some(std::slice::from_ref(&kept)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    s.ping("ep", "w", Some(std::slice::from_ref(&kept)))
        .await
        .unwrap();
    let v = s.get(&lost).await.unwrap().unwrap();
    assert_eq!((v.status, v.retries), (JobStatus::InQueue, 1));
    let v = s.get(&kept).await.unwrap().unwrap();
    assert_eq!((v.status, v.retries), (JobStatus::InProgress, 0));
}

/// A tenant's jobs carry its tag; a tenant's purge leaves the others' queued jobs.
pub async fn purge_by_tenant_leaves_other_tenants_jobs(s: Arc<dyn JobStore>) {
    let of = |tenant: &str, sync: bool| NewJob {
        tenant: Some(tenant.into()),
        sync,
        ..job(1)
    };
    let a = s.submit("ep", of("aa11", false)).await.unwrap();
    let a_sync = s.submit("ep", of("aa11", true)).await.unwrap();
    let b = s.submit("ep", of("bb22", false)).await.unwrap();
    assert_eq!(crate::job_tenant(&a), Some("aa11"));
    assert_eq!(crate::job_tenant(&a_sync), Some("aa11"));
    assert!(a_sync.0.starts_with("sync-aa11-"));
    assert_eq!(s.purge("ep", Some("aa11")).await.unwrap(), 2);
    assert!(s.get(&a).await.unwrap().is_none() && s.get(&a_sync).await.unwrap().is_none());
    assert_eq!(s.get(&b).await.unwrap().unwrap().status, JobStatus::InQueue);
    assert_eq!(s.purge("ep", None).await.unwrap(), 1);
}

/// One bucket `key` of `capacity`, taking `cost` if it holds `need`.
async fn take_one(
    s: &Arc<dyn JobStore>,
    key: &str,
    capacity: u64,
    cost: u64,
    need: u64,
) -> RateTake {
    let b = BucketTake {
        key,
        capacity,
        cost,
        need,
    };
    s.take_tokens(&[b]).await.unwrap()[0]
}

/// Token buckets: a full bucket, refused once empty (with a retry time, nothing taken), a
/// charge after the fact takes it into debt, buckets are separate, and time refills them.
pub async fn rate_buckets_refuse_when_empty_and_refill(s: Arc<dyn JobStore>) {
    // 600 per minute: one token per 100 ms.
    for _ in 0..3 {
        assert!(take_one(&s, "k", 600, 200, 200).await.allowed);
    }
    let refused = take_one(&s, "k", 600, 200, 200).await;
    assert!(!refused.allowed);
    assert!(refused.retry_after > Duration::from_secs(15), "{refused:?}");
    let other = take_one(&s, "other", 600, 1, 1).await;
    assert_eq!((other.allowed, other.remaining), (true, 599));
    // A response's tokens charged after it ran: always taken, into debt.
    let charged = take_one(&s, "k", 600, 500, 0).await;
    assert!(charged.allowed && charged.remaining == 0);
    assert!(!take_one(&s, "k", 600, 0, 1).await.allowed, "in debt");
    let t = take_one(&s, "t", 60_000, 60_000, 1).await;
    assert_eq!(t.remaining, 0);
    assert!(t.reset <= Duration::from_secs(60) && t.reset > Duration::from_secs(59));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let refilled = take_one(&s, "t", 60_000, 0, 1).await;
    assert!(
        refilled.allowed && refilled.remaining >= 250,
        "{refilled:?}"
    );
}

/// Several buckets in one call: all costs taken, or none when any bucket lacks its need, so a
/// request refused for tokens keeps its request slot; the refused bucket says when it will
/// hold enough.
pub async fn rate_buckets_take_all_or_nothing(s: Arc<dyn JobStore>) {
    let both = |cost_tokens| {
        [
            BucketTake {
                key: "requests:k",
                capacity: 60,
                cost: 1,
                need: 1,
            },
            BucketTake {
                key: "tokens:k",
                capacity: 600,
                cost: cost_tokens,
                need: 1,
            },
        ]
    };
    let ok = s.take_tokens(&both(0)).await.unwrap();
    assert!(
        ok.iter().all(|t| t.allowed) && ok[0].remaining == 59,
        "{ok:?}"
    );
    // Charged into debt after a response: the tokens bucket is now empty.
    take_one(&s, "tokens:k", 600, 700, 0).await;
    for _ in 0..3 {
        let refused = s.take_tokens(&both(0)).await.unwrap();
        assert!(refused[0].allowed && !refused[1].allowed, "{refused:?}");
        assert_eq!(refused[0].remaining, 59, "the request slot is not spent");
        // 101 tokens short at 10 per second.
        assert!(
            refused[1].retry_after > Duration::from_secs(10),
            "{refused:?}"
        );
    }
    assert!(s.take_tokens(&[]).await.unwrap().is_empty());
}

/// Generates one `#[tokio::test]` per check above, each on a fresh store from `$make`.
/// Stored responses: kept until deleted or their retention runs out, replaced by id.
pub async fn responses_are_kept_until_deleted_or_expired(s: Arc<dyn JobStore>) {
    use protocol::responses::stored::StoredResponse;
    let record = |text: &str| StoredResponse {
        tenant: Some("t".into()),
        response: json!({"id": "resp_1", "output_text": text}),
        input_items: vec![json!({"type": "message", "id": "msg_1"})],
        conversation: vec![json!({"role": "user", "content": text})],
    };
    let hour = Duration::from_secs(3600);
    assert_eq!(s.response("resp_1").await.unwrap(), None);
    s.put_response("resp_1", &record("a"), hour).await.unwrap();
    s.put_response("resp_1", &record("b"), hour).await.unwrap();
    assert_eq!(s.response("resp_1").await.unwrap(), Some(record("b")));
    assert!(s.delete_response("resp_1").await.unwrap());
    assert!(!s.delete_response("resp_1").await.unwrap());
    assert_eq!(s.response("resp_1").await.unwrap(), None);
    s.put_response("resp_2", &record("c"), Duration::from_millis(20))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    assert_eq!(s.response("resp_2").await.unwrap(), None);
}

/// Fitness-check failures: the newest first, the oldest past the limit dropped, by endpoint.
pub async fn fitness_failures_are_kept_newest_first(s: Arc<dyn JobStore>) {
    use protocol::health::{FitnessFailure, MAX_FITNESS_FAILURES};
    let failure = |n: usize| FitnessFailure {
        worker: format!("w{n}"),
        check: "check_gpu".into(),
        reason: format!("RuntimeError: {n}"),
        at_ms: n as u64,
    };
    assert!(s.fitness_failures("a").await.unwrap().is_empty());
    for n in 0..MAX_FITNESS_FAILURES + 2 {
        s.put_fitness_failure("a", &failure(n)).await.unwrap();
    }
    let kept = s.fitness_failures("a").await.unwrap();
    assert_eq!(kept.len(), MAX_FITNESS_FAILURES);
    assert_eq!(kept[0], failure(MAX_FITNESS_FAILURES + 1));
    assert_eq!(kept[MAX_FITNESS_FAILURES - 1], failure(2));
    assert!(s.fitness_failures("b").await.unwrap().is_empty());
}

#[macro_export]
macro_rules! __conformance_suite {
    ($make:expr) => {
        $crate::__conformance_suite!(@each $make;
            submit_take_complete, failure_is_recorded, rate_buckets_take_all_or_nothing, fifo_with_low_priority_last,
            queue_limit_and_endpoints_are_separate, only_the_holder_may_report,
            cancel_queued_and_running, stream_reads_from_cursor_until_final,
            waiters_wake_promptly, retry_purge_and_stream_delivery,
            webhooks_are_due_once_when_jobs_end, retired_workers_get_no_jobs,
            parked_workers_take_nothing_until_reinstated,
            live_workers_lost_workers_and_fleets, jobs_left_out_of_pings_go_back_to_the_queue,
            rate_buckets_refuse_when_empty_and_refill, purge_by_tenant_leaves_other_tenants_jobs,
            responses_are_kept_until_deleted_or_expired, fitness_failures_are_kept_newest_first);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test]
            async fn $name() {
                let (store, _guard) = $make;
                $crate::conformance::$name(store).await;
            }
        )*
    };
}
pub use __conformance_suite as suite;
