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
    /// The endpoint whose workers this starts.
    pub endpoint: String,
    /// The program to run (`sluice` itself for `sluice worker`, or a custom command).
    pub program: PathBuf,
    /// Its arguments; [`WORKER_ID`] in them is filled in per worker.
    pub args: Vec<String>,
    /// Environment variables set on top of ours (name, value); [`WORKER_ID`] in values is
    /// filled in per worker.
    pub env: Vec<(String, String)>,
    /// The working directory to start it in; `None`: ours.
    pub cwd: Option<PathBuf>,
    /// GPUs each worker gets (through `CUDA_VISIBLE_DEVICES`) when `gpu_types` is empty; 0
    /// for CPU workers.
    pub gpus_per_worker: u32,
    /// The model's `[[gpu]]` list as (GPU type, GPUs per worker), in preference order: the
    /// pool hands out the first type with enough free GPUs, and the worker learns its type
    /// from `SLUICE_GPU_TYPE` (and runs with that type's settings). Empty: `gpus_per_worker`
    /// GPUs of any type.
    pub gpu_types: Vec<(String, u32)>,
    /// CPU cores each worker is pinned to (its CPU affinity, with `RAYON_NUM_THREADS` set to
    /// match), so one host runs `cores / n` engines without them competing for cores; 0: no
    /// pinning, the worker may use every core.
    pub cpus_per_worker: usize,
    /// The weight file its workers load (the served file in the disk cache, present or not):
    /// what the start's tier is judged by and what the RAM tier promotes and demotes. `None`
    /// for custom commands.
    pub weights: Option<PathBuf>,
}

/// The placeholder in [`Launch::args`] and [`Launch::env`] values that is replaced by the new
/// worker's id.
pub const WORKER_ID: &str = "{worker_id}";

impl Launch {
    /// `args` with [`WORKER_ID`] replaced by `id` wherever it occurs.
    pub fn args_for(&self, id: &str) -> Vec<String> {
        self.args.iter().map(|a| a.replace(WORKER_ID, id)).collect()
    }

    /// `env` with [`WORKER_ID`] replaced by `id` in each value (names are left as they are).
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
    /// The worker's id (`{endpoint}-{8 hex digits}` for local processes); the id it registers
    /// with the store under.
    pub id: String,
    /// The endpoint it serves.
    pub endpoint: String,
    /// Its process id (also its process group id), when the OS gave one.
    pub pid: Option<u32>,
    /// When its start began (just before the spawn): the origin of its age and of the cold
    /// start's `ready_ms`.
    pub started: Instant,
    /// Time to create the process, in ms.
    pub spawn_ms: u64,
    /// Weight fetch + load time in ms, as the worker itself reported it (`SLUICE_PHASE` line);
    /// `None` until it does (or if it never does).
    pub load_ms: Option<u64>,
    /// It has been told to drain (SIGTERM for local processes); it counts as draining from
    /// then on, never as idle or running.
    pub draining: bool,
    /// The GPUs it was given, as its `CUDA_VISIBLE_DEVICES` ("0,1"); `None` for CPU workers.
    pub gpus: Option<String>,
    /// Their type (a GPU table name), when known.
    pub gpu_type: Option<String>,
    /// The CPU cores it is pinned to ("0,1"), when its launch asks for pinning.
    pub cpus: Option<String>,
    /// Since when it is parked (frozen, loaded, taking no jobs); `None` while it runs.
    pub parked: Option<Instant>,
    /// The tier its start found its weights in ([`crate::tiers::tier_of`] at the spawn).
    pub tier: Option<protocol::health::Tier>,
    /// When its start began, ms since the Unix epoch.
    pub started_at_ms: u64,
}

/// A worker that exited: `drained` if it was told to stop, else it crashed or was killed.
#[derive(Clone, Debug, PartialEq)]
pub struct Exited {
    /// The worker's id, as [`Actuator::start`] returned it.
    pub id: String,
    /// The endpoint it served.
    pub endpoint: String,
    /// Exit status, when it exited by itself.
    pub code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// It had been told to drain before it exited: an expected exit, not a crash.
    pub drained: bool,
    /// How long it ran, start to exit.
    pub lived: std::time::Duration,
}

impl Exited {
    /// "exit status 3" / "killed by signal 9" / "exited" (nothing known).
    pub fn reason(&self) -> String {
        match (self.code, self.signal) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            (None, None) => "exited".to_string(),
        }
    }
}

/// Why an actuator could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The devices a worker needs are taken: capacity, not a fault.
    #[error(transparent)]
    NoCapacity(#[from] NoCapacity),
    /// No [`Launch`] is configured for this endpoint (its name).
    #[error("no launch command for endpoint `{0}`")]
    UnknownEndpoint(String),
    /// The actuator cannot do this (e.g. freeze a worker).
    #[error("this actuator does not support {0}")]
    Unsupported(&'static str),
    /// The worker's process could not be created.
    #[error("starting {program}: {source}")]
    Spawn {
        /// The program that was to run ([`Launch::program`]).
        program: String,
        /// Why the OS refused (not found, not executable, ...).
        source: std::io::Error,
    },
}

/// What the control loop needs of a worker runtime: start, drain and kill workers, and list
/// those running and those that exited. Implemented by [`crate::local::LocalProcesses`].
#[async_trait]
pub trait Actuator: Send + Sync + 'static {
    /// Start one worker of `endpoint`; its id.
    async fn start(&self, endpoint: &str) -> Result<String, ActuatorError>;
    /// Ask a worker to finish its jobs, take no new ones, and exit. A worker that is gone
    /// already is no error.
    async fn drain(&self, id: &str) -> Result<(), ActuatorError>;
    /// Stop a worker now (it stopped answering).
    async fn kill(&self, id: &str) -> Result<(), ActuatorError>;
    /// Freeze a worker that holds no job and can get none (the store retired it): it keeps
    /// its memory and uses no CPU. Actuators that cannot freeze answer
    /// [`ActuatorError::Unsupported`] (the worker is then drained).
    async fn park(&self, id: &str) -> Result<(), ActuatorError> {
        let _ = id;
        Err(ActuatorError::Unsupported("parking"))
    }
    /// Unfreeze a parked worker.
    async fn thaw(&self, id: &str) -> Result<(), ActuatorError> {
        let _ = id;
        Err(ActuatorError::Unsupported("thawing"))
    }
    /// A worker's resident memory in bytes, where the actuator can tell.
    fn resident_bytes(&self, id: &str) -> Option<u64> {
        let _ = id;
        None
    }
    /// The endpoint's workers that have not exited.
    fn managed(&self, endpoint: &str) -> Vec<Managed>;
    /// Workers that exited since the last call.
    fn exited(&self) -> Vec<Exited>;
    /// Drain everything and wait (bounded) for it to exit.
    async fn shutdown(&self);
}

/// The kind of device a worker is given whole: GPUs, or CPU cores it is pinned to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    /// A GPU, by its index as `CUDA_VISIBLE_DEVICES` names it.
    Gpu,
    /// A CPU core, by its number in the affinity mask.
    CpuCore,
}

/// A worker could not start because the GPUs or CPU cores it needs are taken by other
/// workers: capacity, not a fault (the control loop tries again at its next tick).
#[derive(Debug, PartialEq, Eq)]
pub struct NoCapacity {
    /// The kind of device that ran short.
    pub device: Device,
    /// How many of them one worker needs (its launch's `gpus_per_worker` or
    /// `cpus_per_worker`).
    pub wanted: usize,
    /// The endpoint whose worker could not start.
    pub endpoint: String,
}

impl std::fmt::Display for NoCapacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match self.device {
            Device::Gpu => "GPU(s)",
            Device::CpuCore => "CPU core(s)",
        };
        write!(
            f,
            "no {} free {what} for a worker of `{}`",
            self.wanted, self.endpoint
        )
    }
}

impl std::error::Error for NoCapacity {}

/// Device ids (GPU indexes, CPU core numbers) handed out to workers whole and taken back when
/// they exit.
#[derive(Debug, Default)]
pub struct DevicePool {
    free: Vec<String>,
}

impl DevicePool {
    /// From a `CUDA_VISIBLE_DEVICES`-style list ("0,1,2").
    pub fn parse(list: &str) -> Self {
        DevicePool {
            free: list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect(),
        }
    }

    /// `n` devices, or `None` (and nothing taken) if fewer are free.
    pub fn take(&mut self, n: usize) -> Option<Vec<String>> {
        (self.free.len() >= n).then(|| self.free.drain(..n).collect())
    }

    /// Return devices to the pool (a worker exited, or its start failed); the free list is
    /// kept in numeric order, so the lowest ids are handed out first.
    pub fn give(&mut self, ids: impl IntoIterator<Item = String>) {
        self.free.extend(ids);
        // Numeric order where the ids are numbers, so cores are handed out 0, 1, 2, ...
        self.free
            .sort_by_key(|s| (s.parse::<u64>().unwrap_or(u64::MAX), s.clone()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpus_are_handed_out_whole_and_come_back() {
        let mut pool = DevicePool::parse("0, 1,2");
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
            gpu_types: vec![],
            cpus_per_worker: 0,
            weights: None,
        };
        assert_eq!(l.args_for("w-1"), vec!["--worker-id", "w-1"]);
        assert_eq!(l.env_for("w-1")[0].1, "http://g/ping/w-1?x=1");
    }
}
