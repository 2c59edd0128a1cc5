//! The local-process actuator with real child processes (`sh`): GPUs handed out through
//! `CUDA_VISIBLE_DEVICES` and taken back, the worker id filled in, exits reported as crashes
//! or drains, and the load time a worker reports picked up from its output.

use autoscaler::{Actuator, GpuPool, LocalProcesses};
use std::time::Duration;

mod common;
use common::{scratch, sh, until};

/// The exits since the last look, once there are some.
async fn exits(a: &LocalProcesses) -> Vec<autoscaler::actuator::Exited> {
    until(Duration::from_secs(5), "an exit", async || {
        let e = a.exited();
        (!e.is_empty()).then_some(e)
    })
    .await
}

/// What worker `id` wrote to its file, once it has.
async fn written_by(dir: &std::path::Path, id: &str) -> String {
    until(
        Duration::from_secs(5),
        "the worker's GPU file",
        async || {
            std::fs::read_to_string(dir.join(id))
                .ok()
                .filter(|s| !s.is_empty())
        },
    )
    .await
}

#[tokio::test]
async fn gpus_ids_exits_and_reported_load_times() {
    let tmp = scratch();
    let dir = tmp.path();
    let d = dir.display();
    // Writes its GPUs to a file named by its id ($0 is the id argument), says its load time,
    // then waits to be stopped; "crash" exits at once with status 3.
    let serve = format!(
        "echo \"$CUDA_VISIBLE_DEVICES\" > {d}/$0; echo 'SLUICE_PHASE loaded fetch_ms=1 load_ms=42'; \
         trap 'exit 0' TERM; while true; do sleep 0.05; done"
    );
    let a = LocalProcesses::new(
        vec![sh("gpu", &serve, 2), sh("crash", "exit 3", 0)],
        GpuPool::parse("0,1,2"),
        "",
        Duration::from_secs(5),
    );
    let first = a.start("gpu").await.unwrap();
    assert!(first.starts_with("gpu-"));
    let err = a.start("gpu").await.unwrap_err().to_string();
    assert!(err.contains("no 2 free GPU"), "{err}");
    let gpus = written_by(dir, &first).await;
    assert_eq!(gpus.trim(), "0,1");
    until(Duration::from_secs(5), "the load time", async || {
        a.managed("gpu")[0].load_ms.filter(|&ms| ms == 42)
    })
    .await;
    assert_eq!(a.managed("gpu")[0].gpus.as_deref(), Some("0,1"));

    let crashed = a.start("crash").await.unwrap();
    let gone = exits(&a).await;
    assert_eq!(
        (gone[0].id.as_str(), gone[0].code, gone[0].drained),
        (crashed.as_str(), Some(3), false)
    );

    a.drain(&first).await.unwrap();
    let gone = exits(&a).await;
    assert_eq!(
        (gone[0].id.as_str(), gone[0].drained),
        (first.as_str(), true)
    );
    assert!(a.managed("gpu").is_empty());
    // Its GPUs came back: a new worker gets them.
    let second = a.start("gpu").await.unwrap();
    let gpus = written_by(dir, &second).await;
    assert_eq!(gpus.trim(), "0,1");
    a.shutdown().await;
    assert!(a.managed("gpu").is_empty(), "shutdown stops every worker");
}

#[tokio::test]
async fn workers_get_gpus_down_the_type_list_and_are_told_their_type() {
    let tmp = scratch();
    let dir = tmp.path();
    let d = dir.display();
    let serve = format!(
        "echo \"$SLUICE_GPU_TYPE $CUDA_VISIBLE_DEVICES $CUDA_DEVICE_ORDER\" > {d}/$0; \
         trap 'exit 0' TERM; while true; do sleep 0.05; done"
    );
    let mut launch = sh("llm", &serve, 0);
    launch.gpu_types = vec![("H100-80GB".into(), 1), ("L40S".into(), 2)];
    let a = LocalProcesses::new(
        vec![launch],
        GpuPool::parse("H100-80GB:0;L40S:1,2,3"),
        "",
        Duration::from_secs(5),
    );
    let first = a.start("llm").await.unwrap();
    assert_eq!(
        written_by(dir, &first).await.trim(),
        "H100-80GB 0 PCI_BUS_ID"
    );
    // The H100 is taken: the next worker falls back to two L40S.
    let second = a.start("llm").await.unwrap();
    assert_eq!(written_by(dir, &second).await.trim(), "L40S 1,2 PCI_BUS_ID");
    let types: Vec<_> = a.managed("llm").into_iter().map(|m| m.gpu_type).collect();
    assert!(types.contains(&Some("L40S".into())) && types.contains(&Some("H100-80GB".into())));
    // One L40S is left, a worker on that type needs two.
    let err = a.start("llm").await.unwrap_err().to_string();
    assert!(err.contains("no 1 free GPU"), "{err}");
    a.drain(&first).await.unwrap();
    exits(&a).await;
    let third = a.start("llm").await.unwrap();
    assert_eq!(
        written_by(dir, &third).await.trim(),
        "H100-80GB 0 PCI_BUS_ID"
    );
    a.shutdown().await;
}

#[tokio::test]
async fn pinned_workers_get_their_own_cores_and_give_them_back() {
    let tmp = scratch();
    let dir = tmp.path();
    let d = dir.display();
    // Writes the cores it may run on (the kernel's view), its rayon thread count and the GPUs
    // it may see (none: set and empty, even when this process sees some).
    let serve = format!(
        "echo \"$(grep Cpus_allowed_list /proc/self/status | cut -f2) $RAYON_NUM_THREADS \
         [${{CUDA_VISIBLE_DEVICES-unset}}]\" > {d}/$0; \
         trap 'exit 0' TERM; while true; do sleep 0.05; done"
    );
    let core = autoscaler::local::allowed_cpus()
        .split(',')
        .next()
        .expect("this process may run on some core")
        .to_string();
    let mut launch = sh("cpu", &serve, 0);
    launch.cpus_per_worker = 1;
    // A host of one free core: it fits one pinned worker.
    let a = LocalProcesses::new(
        vec![launch],
        GpuPool::default(),
        &core,
        Duration::from_secs(5),
    );
    let first = a.start("cpu").await.unwrap();
    assert_eq!(written_by(dir, &first).await.trim(), format!("{core} 1 []"));
    assert_eq!(a.managed("cpu")[0].cpus.as_deref(), Some(core.as_str()));
    let err = a.start("cpu").await.unwrap_err();
    assert!(
        matches!(err, autoscaler::actuator::ActuatorError::NoCapacity(_)),
        "a full host is capacity, not a crash: {err}"
    );
    assert!(err.to_string().contains("no 1 free CPU core"), "{err}");
    a.drain(&first).await.unwrap();
    exits(&a).await;
    // Its core came back.
    let second = a.start("cpu").await.unwrap();
    assert_eq!(
        written_by(dir, &second).await.trim(),
        format!("{core} 1 []")
    );
    a.shutdown().await;
}
