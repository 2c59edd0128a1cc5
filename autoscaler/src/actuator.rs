//! Actuators carry out what the control loop decides: start a worker, drain one, say which
//! are running. The local-process actuator (`local.rs`) runs workers as child processes; a
//! Kubernetes actuator would implement the same trait with pods.

use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Instant;

/// How to start one worker of an endpoint. `{worker_id}` in `args` and `env` values is replaced
/// by the new worker's id.
#[derive(Clone, Debug)]
pub struct Launch {
    pub endpoint: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    /// GPUs each worker gets (through `CUDA_VISIBLE_DEVICES`); 0 for CPU workers.
    pub gpus_per_worker: u32,
}

pub const WORKER_ID: &str = "{worker_id}";

impl Launch {
    pub fn args_for(&self, id: &str) -> Vec<String> {
        self.args.iter().map(|a| a.replace(WORKER_ID, id)).collect()
    }

    pub fn env_for(&self, id: &str) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.clone(), v.replace(WORKER_ID, id)))
            .collect()
    }
}

/// A worker an actuator started and that has not exited.
#[derive(Clone, Debug)]
pub struct Managed {
    pub id: String,
    pub endpoint: String,
    pub pid: Option<u32>,
    pub started: Instant,
    /// Time to create the process.
    pub spawn_ms: u64,
    /// Weight fetch + load time, as the worker itself reported it (`SLUICE_PHASE` line).
    pub load_ms: Option<u64>,
    pub draining: bool,
    pub gpus: Option<String>,
}

/// A worker that exited: `drained` if it was told to stop, else it crashed or was killed.
#[derive(Clone, Debug, PartialEq)]
pub struct Exited {
    pub id: String,
    pub endpoint: String,
    pub code: Option<i32>,
    pub drained: bool,
}

#[async_trait]
pub trait Actuator: Send + Sync + 'static {
    /// Start one worker of `endpoint`; its id.
    async fn start(&self, endpoint: &str) -> anyhow::Result<String>;
    /// Ask a worker to finish its jobs, take no new ones, and exit.
    async fn drain(&self, id: &str);
    /// Stop a worker now (it stopped answering).
    async fn kill(&self, id: &str);
    /// The endpoint's workers that have not exited.
    fn managed(&self, endpoint: &str) -> Vec<Managed>;
    /// Workers that exited since the last call.
    fn exited(&self) -> Vec<Exited>;
    /// Drain everything and wait (bounded) for it to exit.
    async fn shutdown(&self);
}

/// A worker could not start because its GPUs are taken: capacity, not a fault.
#[derive(Debug)]
pub struct NoFreeGpu {
    pub wanted: usize,
    pub endpoint: String,
}

impl std::fmt::Display for NoFreeGpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "no {} free GPU(s) for a worker of `{}`",
            self.wanted, self.endpoint
        )
    }
}

impl std::error::Error for NoFreeGpu {}

/// GPU indexes handed out to workers and taken back when they exit.
#[derive(Debug, Default)]
pub struct GpuPool {
    free: Vec<String>,
}

impl GpuPool {
    /// From a `CUDA_VISIBLE_DEVICES`-style list ("0,1,2").
    pub fn parse(list: &str) -> Self {
        GpuPool {
            free: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// `n` GPUs, or `None` (and nothing taken) if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<String>> {
        (self.free.len() >= n).then(|| self.free.drain(..n).collect())
    }

    pub fn give(&mut self, gpus: impl IntoIterator<Item = String>) {
        self.free.extend(gpus);
        self.free.sort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_handed_out_whole_and_come_back() {
        let mut pool = GpuPool::parse("0, 1,2");
        assert_eq!(pool.take(2), Some(vec!["0".to_string(), "1".to_string()]));
        assert_eq!(pool.take(2), None, "only one left");
        assert_eq!(pool.take(1), Some(vec!["2".to_string()]));
        pool.give(["1".to_string(), "0".to_string()]);
        assert_eq!(pool.take(2), Some(vec!["0".to_string(), "1".to_string()]));
    }

    #[test]
    fn the_worker_id_is_filled_in() {
        let l = Launch {
            endpoint: "e".into(),
            program: "w".into(),
            args: vec!["--worker-id".into(), WORKER_ID.into()],
            env: vec![("URL".into(), format!("http://g/ping/{WORKER_ID}?x=1"))],
            cwd: None,
            gpus_per_worker: 0,
        };
        assert_eq!(l.args_for("w-1"), vec!["--worker-id", "w-1"]);
        assert_eq!(l.env_for("w-1")[0].1, "http://g/ping/w-1?x=1");
    }
}
