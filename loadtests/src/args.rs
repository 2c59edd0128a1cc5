//! The flags of `sluice bench` (names follow `vllm bench serve`) and how a run is described
//! in reports.

use crate::queue_client;
use clap::Args;
use serde_json::{json, Value};
use std::path::PathBuf;

/// The flags of `sluice bench`, named after `vllm bench serve`'s where it has them.
#[derive(Args, Clone, Debug)]
pub struct BenchArgs {
    /// Server base URL (without /v1).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub base_url: String,
    /// Model name sent in requests.
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// API route: /v1/chat/completions or /v1/completions.
    #[arg(long, default_value = "/v1/chat/completions")]
    pub endpoint: String,
    /// Which API the requests use.
    #[arg(long, value_enum, default_value_t = Api::Openai)]
    pub api: Api,
    /// With --api queue: how a job is followed.
    #[arg(long, value_enum, default_value = "run")]
    pub queue_mode: queue_client::QueueMode,
    /// With --api queue: how often status / stream are polled.
    #[arg(long, default_value_t = 100)]
    pub poll_interval_ms: u64,
    /// With --api queue: the job input, instead of an OpenAI request for the model.
    #[arg(long)]
    pub queue_input: Option<String>,
    /// Before each request, wait until the endpoint has no workers (scaled to zero), so every
    /// request measures a cold start. Needs sluice's /v2/{model}/health.
    #[arg(long)]
    pub cold_start: bool,
    /// Requests to send in total.
    #[arg(long, default_value_t = 16)]
    pub num_prompts: usize,
    /// Requests in flight at once (a cap; with --request-rate, arrivals beyond it wait).
    #[arg(long, default_value_t = 1)]
    pub max_concurrency: usize,
    /// Open-loop arrivals per second; `inf` sends as fast as the concurrency allows.
    #[arg(long, default_value_t = f64::INFINITY)]
    pub request_rate: f64,
    /// Gamma shape of the gaps between arrivals: 1 is Poisson, lower is burstier.
    #[arg(long, default_value_t = 1.0)]
    pub burstiness: f64,
    /// Seed of the arrival process and of random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Arrival phases instead of one rate: `RATE:SECONDS,...`, e.g. `0:10,8:5,0:20` for
    /// idle -> burst -> idle (rate 0 is an idle gap). Ends the run after the last phase.
    #[arg(long)]
    pub phases: Option<String>,
    /// Where the prompts come from.
    #[arg(long, value_enum, default_value_t = DatasetName::Builtin)]
    pub dataset_name: DatasetName,
    /// The file of the jsonl / sharegpt datasets.
    #[arg(long)]
    pub dataset_path: Option<PathBuf>,
    /// Prompt length of the random dataset, in tokens.
    #[arg(long, default_value_t = 128)]
    pub random_input_len: usize,
    /// max_tokens of every request (unless the dataset gives a request its own).
    #[arg(long, default_value_t = 128)]
    pub random_output_len: u32,
    /// Tokenizer that makes random prompts and counts output without usage: a GGUF file or a
    /// Hugging Face tokenizer directory; default (from `sluice bench`): the model's tokenizer
    /// in the sluice cache, if it is there.
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// Service-level objectives for goodput, e.g. `--goodput ttft:500 tpot:50`.
    #[arg(long, num_args = 1..)]
    pub goodput: Vec<String>,
    /// Extra JSON merged into every request body (e.g. '{"ignore_eos": true}' for llama.cpp).
    #[arg(long)]
    pub extra_body: Option<String>,
    /// Stop after this many seconds even if requests remain (in-flight ones are cut).
    #[arg(long, default_value_t = 600)]
    pub max_duration_secs: u64,
    /// Write the result (vLLM's JSON keys, per-request arrays and the settings) here.
    #[arg(long)]
    pub result_filename: Option<PathBuf>,
    /// Write a self-contained HTML report with charts here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// A name for this run in reports.
    #[arg(long, default_value = "")]
    pub label: String,
    /// Run once per concurrency in this list, e.g. `1,2,4,8`.
    #[arg(long)]
    pub sweep_concurrency: Option<String>,
    /// Run once per request rate in this list, e.g. `0.5,1,2`.
    #[arg(long)]
    pub sweep_rates: Option<String>,
    /// A second server: runs alternate A, B, A, B for --rounds and ratios B/A are printed.
    #[arg(long)]
    pub base_url_b: Option<String>,
    /// Rounds of an A/B run.
    #[arg(long, default_value_t = 3)]
    pub rounds: usize,
    /// Compare two result files (A then B) instead of running.
    #[arg(long, num_args = 2)]
    pub compare: Vec<PathBuf>,
}

/// `--api`: how requests reach the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// Streamed OpenAI requests (`/v1/...`).
    Openai,
    /// RunPod-style jobs (`/v2/{model}/run`, ...; see `--queue-mode`).
    Queue,
}

/// `--dataset-name`: where prompts come from (vLLM's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DatasetName {
    /// A fixed set of short prompts.
    Builtin,
    /// Random token sequences of exactly `--random-input-len` tokens.
    Random,
    /// `{"prompt", "output_len"}` per line of `--dataset-path`.
    Jsonl,
    /// ShareGPT conversations in `--dataset-path`.
    Sharegpt,
}

impl Api {
    /// Its `--api` value ("openai", "queue"), as the result file's settings record it.
    pub fn name(self) -> &'static str {
        match self {
            Api::Openai => "openai",
            Api::Queue => "queue",
        }
    }
}

impl DatasetName {
    /// Its `--dataset-name` value ("random", "sharegpt", ...), as reports and the result
    /// file's settings record it.
    pub fn name(self) -> &'static str {
        match self {
            DatasetName::Builtin => "builtin",
            DatasetName::Random => "random",
            DatasetName::Jsonl => "jsonl",
            DatasetName::Sharegpt => "sharegpt",
        }
    }
}

/// One line saying what was measured.
pub(crate) fn describe(a: &BenchArgs) -> String {
    let prompts = match a.dataset_name {
        DatasetName::Random => format!("random prompts of {} tokens", a.random_input_len),
        DatasetName::Builtin => "built-in prompts".to_string(),
        other => format!(
            "{} prompts from {}",
            other.name(),
            a.dataset_path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ),
    };
    let arrivals = match (&a.phases, a.request_rate.is_finite()) {
        (Some(p), _) => format!("phases {p} (rate:seconds)"),
        (None, true) => format!("{} req/s, burstiness {}", a.request_rate, a.burstiness),
        (None, false) => "as fast as the concurrency allows".to_string(),
    };
    let api = if a.api == Api::Queue {
        format!("queue API ({:?})", a.queue_mode)
    } else {
        a.endpoint.clone()
    };
    format!(
        "{} requests of {api} to model {} at {}, {prompts}, max_tokens {}, greedy, concurrency <= {}, arrivals {arrivals}{}",
        a.num_prompts,
        a.model,
        a.base_url,
        a.random_output_len,
        a.max_concurrency,
        if a.cold_start { ", each after the endpoint scaled to zero" } else { "" }
    )
}

pub(crate) fn settings(args: &BenchArgs) -> Value {
    json!({
        "label": args.label, "base_url": args.base_url, "model": args.model, "endpoint": args.endpoint,
        "max_concurrency": args.max_concurrency, "request_rate": if args.request_rate.is_finite() { json!(args.request_rate) } else { json!("inf") },
        "burstiness": args.burstiness, "num_prompts": args.num_prompts, "dataset_name": args.dataset_name.name(),
        "random_input_len": args.random_input_len, "random_output_len": args.random_output_len,
        "phases": args.phases, "seed": args.seed, "api": args.api.name(), "cold_start": args.cold_start,
    })
}
