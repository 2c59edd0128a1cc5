//! The control loop against the in-memory store and real child processes (`sh` stand-ins for
//! workers; the test itself speaks for them to the store, as a worker's pings and takes would):
//! scale from zero when a job arrives, states in the fleet view, drain after the idle timeout,
//! and backoff for workers that crash while starting or soon after they are ready.

mod common;
use autoscaler::{Actuator, ControlSettings, Controller, Endpoint, LocalProcesses};
use common::{scratch, sh, until};
use protocol::config::{Scaler, ScalingSettings};
use protocol::health::{FleetState, FleetView};
use protocol::job::JobReport;
use queue::{JobStore, MemoryStore, NewJob, StoreSettings};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn endpoint(name: &str, min: u32, idle_secs: u64) -> Endpoint {
    Endpoint {
        name: name.into(),
        scaling: ScalingSettings {
            min_workers: min,
            max_workers: 1,
            idle_timeout_secs: idle_secs,
            scaler: Scaler::QueueDelay,
            scaler_value: 4.0,
            ..ScalingSettings::default()
        },
        weights: None,
    }
}

fn states(fleet: Option<FleetView>) -> Vec<FleetState> {
    fleet
        .unwrap_or_default()
        .workers
        .iter()
        .map(|w| w.state)
        .collect()
}

/// A control loop over a memory store and one `sh` endpoint `name` running `script` (min
/// `min` workers, idle timeout `idle_secs`), started in the background.
struct Running {
    store: Arc<dyn JobStore>,
    actuator: Arc<LocalProcesses>,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(name: &str, script: &str, min: u32, idle_secs: u64) -> Self {
        Self::with(script, endpoint(name, min, idle_secs))
    }

    fn with(script: &str, ep: Endpoint) -> Self {
        let name = ep.name.clone();
        let store: Arc<dyn JobStore> = MemoryStore::start(StoreSettings::default());
        let actuator = Arc::new(LocalProcesses::new(
            vec![sh(&name, script, 0)],
            autoscaler::GpuPool::default(),
            "",
            Duration::from_secs(5),
        ));
        let controller = Controller::new(
            store.clone(),
            actuator.clone(),
            vec![ep],
            ControlSettings::default(),
        );
        let (stop, stopped) = stop_signal();
        let task = tokio::spawn(controller.run(stopped));
        Running {
            store,
            actuator,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

/// Lines in `dir/starts` (a worker script appends one per start).
fn starts(dir: &std::path::Path) -> usize {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .count()
}

#[tokio::test]
async fn a_job_starts_a_worker_from_zero_and_idleness_drains_it() {
    let tmp = scratch();
    let dir = tmp.path();
    let script = format!(
        "echo $0 > {}/started; trap 'echo drained > {}/$0; exit 0' TERM; while true; do sleep 0.05; done",
        dir.display(),
        dir.display()
    );
    let run = Running::start("ep", &script, 0, 1);
    let (store, actuator) = (run.store.clone(), run.actuator.clone());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        actuator.managed("ep").is_empty(),
        "min 0: no worker while idle"
    );

    let job = store
        .submit(
            "ep",
            NewJob {
                input: json!(1),
                ..NewJob::default()
            },
        )
        .await
        .unwrap();
    let id = until(Duration::from_secs(5), "a worker to start", async || {
        std::fs::read_to_string(dir.join("started"))
            .ok()
            .map(|s| s.trim().to_string())
    })
    .await;
    // Not heard from yet: initializing (it stays so until it pings or takes).
    until(Duration::from_secs(5), "initializing", async || {
        (states(store.fleet("ep").await.unwrap()) == [FleetState::Initializing]).then_some(())
    })
    .await;
    // The worker comes up: it takes the job, then finishes it.
    assert_eq!(
        store.take("ep", &id, 1, Duration::ZERO).await.unwrap()[0].id,
        job
    );
    until(Duration::from_secs(5), "running", async || {
        (states(store.fleet("ep").await.unwrap()) == [FleetState::Running]).then_some(())
    })
    .await;
    store
        .report(&job, &id, JobReport::Completed(json!(1)))
        .await
        .unwrap();
    let t_idle = Instant::now();
    // Idle and still pinging: drained after idle_timeout (1 s), and its process exits.
    until(Duration::from_secs(10), "the drain", async || {
        store.ping("ep", &id, None).await.unwrap();
        std::fs::read_to_string(dir.join(&id)).ok()
    })
    .await;
    assert!(
        t_idle.elapsed() >= Duration::from_millis(900),
        "not before the idle timeout"
    );
    until(Duration::from_secs(5), "the exit", async || {
        actuator.managed("ep").is_empty().then_some(())
    })
    .await;
    until(
        Duration::from_secs(5),
        "the store to forget it",
        async || store.workers("ep").await.unwrap().is_empty().then_some(()),
    )
    .await;
    run.stop().await;
}

/// The state letter of process `pid` (`/proc/PID/stat`'s third field): `T` when stopped.
fn process_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    after.chars().next().unwrap()
}

async fn serve_one(store: &Arc<dyn JobStore>, id: &str) {
    let job = store.submit("ep", NewJob::default()).await.unwrap();
    let taken = until(
        Duration::from_secs(5),
        "the worker to take the job",
        async || {
            let t = store.take("ep", id, 1, Duration::ZERO).await.unwrap();
            (!t.is_empty()).then_some(t)
        },
    )
    .await;
    assert_eq!(taken[0].id, job);
    store
        .report(&job, id, JobReport::Completed(json!(1)))
        .await
        .unwrap();
}

#[tokio::test]
async fn an_idle_worker_is_parked_thawed_for_the_next_job_and_evicted_after_park_timeout() {
    let tmp = scratch();
    let dir = tmp.path();
    let script = format!(
        "echo $0 >> {}/starts; while true; do sleep 0.05; done",
        dir.display()
    );
    let mut ep = endpoint("ep", 0, 1);
    ep.scaling.parked_workers = 1;
    ep.scaling.park_timeout_secs = 3;
    let run = Running::with(&script, ep);
    let (store, actuator) = (run.store.clone(), run.actuator.clone());
    store.submit("ep", NewJob::default()).await.unwrap();
    let w = until(Duration::from_secs(5), "a start", async || {
        actuator.managed("ep").pop()
    })
    .await;
    let (id, pid) = (w.id.clone(), w.pid.unwrap());
    let first = store
        .take("ep", &id, 1, Duration::from_secs(5))
        .await
        .unwrap();
    store
        .report(&first[0].id, &id, JobReport::Completed(json!(1)))
        .await
        .unwrap();
    // Idle past idle_timeout: parked (frozen), not drained; no job reaches it meanwhile.
    let parked_at = until(Duration::from_secs(10), "parking", async || {
        store.ping("ep", &id, None).await.unwrap();
        let fleet = states(store.fleet("ep").await.unwrap());
        (fleet == [FleetState::Parked]).then(Instant::now)
    })
    .await;
    // A parked worker is stopped: at once, or (if the signal found it in uninterruptible
    // I/O, state `D`, as under CI's load) when that I/O ends.
    until(Duration::from_secs(5), "the worker to stop", async || {
        (process_state(pid) == 'T').then_some(())
    })
    .await;
    assert!(store.is_retired(&id).await.unwrap());
    // The next job thaws it: the same process, no new start.
    serve_one(&store, &id).await;
    assert_ne!(process_state(pid), 'T');
    assert_eq!(actuator.managed("ep")[0].pid, Some(pid));
    assert_eq!(starts(dir), 1, "a thaw, not a start");
    let fleet = store.fleet("ep").await.unwrap().unwrap();
    let cold = fleet.workers[0].cold_start.unwrap();
    assert_eq!(cold.tier, Some(protocol::health::Tier::Parked), "{cold:?}");
    // Parked again, then evicted after park_timeout (3 s): the process exits.
    until(Duration::from_secs(10), "parking again", async || {
        store.ping("ep", &id, None).await.unwrap();
        (states(store.fleet("ep").await.unwrap()) == [FleetState::Parked]).then_some(())
    })
    .await;
    let reparked = Instant::now();
    until(Duration::from_secs(10), "the eviction", async || {
        actuator.managed("ep").is_empty().then_some(())
    })
    .await;
    assert!(
        reparked.elapsed() >= Duration::from_secs(2),
        "{:?}",
        parked_at.elapsed()
    );
    assert_eq!(starts(dir), 1);
    run.stop().await;
}

#[tokio::test]
async fn workers_crashing_at_start_are_retried_with_backoff() {
    let tmp = scratch();
    let dir = tmp.path();
    let script = format!("echo x >> {}/starts; exit 1", dir.display());
    let run = Running::start("bad", &script, 1, 5);
    tokio::time::sleep(Duration::from_secs(3)).await;
    run.stop().await;
    let starts = starts(dir);
    // Without backoff a 100 ms tick would restart it ~30 times; with it: t=0, ~2 s (then 4 s).
    assert!((2..=3).contains(&starts), "{starts} starts in 3 s");
}

#[tokio::test]
async fn workers_crashing_after_they_are_ready_back_off_and_show_unhealthy() {
    let tmp = scratch();
    let dir = tmp.path();
    // Comes up (the test pings for it, as its first ping would), then dies 0.4 s in: a
    // handler that raises once it serves.
    let script = format!("echo x >> {}/starts; sleep 0.4; exit 1", dir.display());
    let run = Running::start("loop", &script, 1, 5);
    let (store, actuator) = (run.store.clone(), run.actuator.clone());
    let t0 = Instant::now();
    let mut unhealthy = None;
    while t0.elapsed() < Duration::from_millis(3500) {
        for w in actuator.managed("loop") {
            store.ping("loop", &w.id, None).await.unwrap();
        }
        let fleet = store.fleet("loop").await.unwrap().unwrap_or_default();
        if let Some(w) = fleet
            .workers
            .iter()
            .find(|w| w.state == FleetState::Unhealthy)
        {
            unhealthy = Some(w.clone());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    run.stop().await;
    let starts = starts(dir);
    // Restarted at once, it would start every ~0.5 s (7 times); backed off: t=0, ~2.4 s.
    assert!((2..=3).contains(&starts), "{starts} starts in 3.5 s");
    let w = unhealthy.expect("the crash loop shows as an unhealthy worker");
    assert!(w.restarts >= 1, "{w:?}");
    assert!(
        w.last_exit.as_deref().unwrap().starts_with("exit status 1"),
        "{w:?}"
    );
}

/// A stop signal for `Controller::run`: send on the first half to stop it.
fn stop_signal() -> (
    tokio::sync::oneshot::Sender<()>,
    impl std::future::Future<Output = ()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    (tx, async move {
        let _ = rx.await;
    })
}
