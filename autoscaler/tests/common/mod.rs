//! Helpers shared by the autoscaler's process tests.

use autoscaler::actuator::WORKER_ID;
use autoscaler::Launch;
use std::time::{Duration, Instant};

/// A fresh scratch directory, removed when dropped.
pub fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A worker that is an `sh -c script`, its id as `$0`.
pub fn sh(endpoint: &str, script: &str, gpus: u32) -> Launch {
    Launch {
        endpoint: endpoint.into(),
        program: "sh".into(),
        args: vec!["-c".into(), script.into(), WORKER_ID.into()],
        env: vec![],
        cwd: None,
        gpus_per_worker: gpus,
        gpu_types: vec![],
        cpus_per_worker: 0,
        weights: None,
    }
}

/// Poll `f` until it gives a value, or panic after `limit` naming `what`.
pub async fn until<T>(limit: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
