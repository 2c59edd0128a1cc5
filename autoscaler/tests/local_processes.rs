//! The local-process actuator with real child processes (`sh`): GPUs handed out through
//! `CUDA_VISIBLE_DEVICES` and taken back, the worker id filled in, exits reported as crashes
//! or drains, and the load time a worker reports picked up from its output.

use autoscaler::actuator::WORKER_ID;
use autoscaler::{Actuator, Launch, LocalProcesses};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn scratch() -> PathBuf {
    let d = std::env::temp_dir().join(format!("sluice-actuator-{:x}", rand::random::<u64>()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn launch(endpoint: &str, script: &str, gpus: u32) -> Launch {
    Launch {
        endpoint: endpoint.into(),
        program: "sh".into(),
        args: vec!["-c".into(), script.into(), WORKER_ID.into()],
        env: vec![("WORKER".into(), WORKER_ID.into())],
        cwd: None,
        gpus_per_worker: gpus,
    }
}

async fn until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn gpus_ids_exits_and_reported_load_times() {
    let dir = scratch();
    let d = dir.display();
    // Writes its GPUs to a file named by its id ($0 is the id argument), says its load time,
    // then waits to be stopped; "crash" exits at once with status 3.
    let serve = format!(
        "echo \"$CUDA_VISIBLE_DEVICES\" > {d}/$0; echo 'SLUICE_PHASE loaded fetch_ms=1 load_ms=42'; \
         trap 'exit 0' TERM; while true; do sleep 0.05; done"
    );
    let a = LocalProcesses::new(
        vec![launch("gpu", &serve, 2), launch("crash", "exit 3", 0)],
        "0,1,2",
        Duration::from_secs(5),
    );
    let first = a.start("gpu").await.unwrap();
    assert!(first.starts_with("gpu-"));
    let err = a.start("gpu").await.unwrap_err().to_string();
    assert!(err.contains("no 2 free GPU"), "{err}");
    let gpus = until(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.join(&first))
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(gpus.trim(), "0,1");
    until(Duration::from_secs(5), || {
        a.managed("gpu")[0].load_ms.filter(|&ms| ms == 42)
    })
    .await;
    assert_eq!(a.managed("gpu")[0].gpus.as_deref(), Some("0,1"));

    let crashed = a.start("crash").await.unwrap();
    let gone = until(Duration::from_secs(5), || {
        let e = a.exited();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        (gone[0].id.as_str(), gone[0].code, gone[0].drained),
        (crashed.as_str(), Some(3), false)
    );

    a.drain(&first).await;
    let gone = until(Duration::from_secs(5), || {
        let e = a.exited();
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(
        (gone[0].id.as_str(), gone[0].drained),
        (first.as_str(), true)
    );
    assert!(a.managed("gpu").is_empty());
    // Its GPUs came back: a new worker gets them.
    let second = a.start("gpu").await.unwrap();
    let gpus = until(Duration::from_secs(5), || {
        std::fs::read_to_string(dir.join(&second))
            .ok()
            .filter(|s| !s.is_empty())
    })
    .await;
    assert_eq!(gpus.trim(), "0,1");
    a.shutdown().await;
    assert!(a.managed("gpu").is_empty(), "shutdown stops every worker");
    let _ = std::fs::remove_dir_all(dir);
}
