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
    /// Requests to send in total. (vLLM's default is 1000; sluice's 16 suits a small CPU
    /// model: the workload line says so.)
    #[arg(long, default_value_t = 16)]
    pub num_prompts: usize,
    /// Most requests in flight at once; arrivals beyond it wait for one to finish. Default:
    /// no cap, as vLLM (the arrival process alone shapes the load).
    #[arg(long)]
    pub max_concurrency: Option<usize>,
    /// Open-loop arrivals per second (sent on schedule whatever the server answers);
    /// `inf` (default) sends every request at once, up to --max-concurrency.
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
    /// Prompt length of the random dataset, in tokens (vLLM's default: 1024).
    #[arg(long, default_value_t = 128)]
    pub random_input_len: usize,
    /// max_tokens of every request (unless the dataset gives a request its own).
    #[arg(long, default_value_t = 128)]
    pub random_output_len: u32,
    /// Random dataset: each request's input and output lengths are drawn uniformly from
    /// [len x (1 - r), len x (1 + r)], as vLLM's; 0 (default): exactly the lengths.
    #[arg(long, default_value_t = 0.0)]
    pub random_range_ratio: f64,
    /// Send vLLM's `ignore_eos: true`, so every request generates its max_tokens (servers
    /// that do not know it may ignore it or refuse it). Always on for the random dataset, as
    /// `vllm bench serve` forces it there.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Metrics whose --metric-percentiles are added to the result file, e.g. `ttft,tpot,itl,e2el`
    /// (vLLM's default `ttft,tpot,itl`; mean, median, p90, p95 and p99 of all four are always there).
    #[arg(long, default_value = "ttft,tpot,itl")]
    pub percentile_metrics: String,
    /// Percentiles added for --percentile-metrics, e.g. `25,50,99` (vLLM's default `99`).
    #[arg(long, default_value = "99")]
    pub metric_percentiles: String,
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
    /// Write the result file (as --result-filename gives, or vLLM's name pattern
    /// `{label or openai}-{rate}qps[-concurrency{N}]-{model}-{YYYYmmdd-HHMMSS}.json`) in
    /// --result-dir.
    #[arg(long)]
    pub save_result: bool,
    /// Directory of the result file (default: the current one).
    #[arg(long)]
    pub result_dir: Option<PathBuf>,
    /// Write the result (vLLM's JSON keys, per-request arrays and the settings) to this file
    /// (in --result-dir when given); implies --save-result.
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

impl BenchArgs {
    /// Whether requests carry `ignore_eos: true`: with `--ignore-eos`, and always with the
    /// random dataset (as `vllm bench serve` forces it there, so every request generates its
    /// drawn output length).
    pub fn sends_ignore_eos(&self) -> bool {
        self.ignore_eos || self.dataset_name == DatasetName::Random
    }
}

/// Where sluice's defaults differ from `vllm bench serve`'s: (flag, sluice's, vLLM's, whether
/// a run uses sluice's where it matters). The same flags given explicitly mean the same
/// workload in both.
type Difference = (
    &'static str,
    &'static str,
    &'static str,
    fn(&BenchArgs) -> bool,
);

/// The differences [`vllm_differences`] reports.
pub const DIFFERENT_DEFAULTS: &[Difference] = &[
    ("--num-prompts", "16", "1000", |a| a.num_prompts == 16),
    ("--dataset-name", "builtin", "random", |a| {
        a.dataset_name == DatasetName::Builtin
    }),
    // The input length only matters to the random dataset.
    ("--random-input-len", "128", "1024", |a| {
        a.dataset_name == DatasetName::Random && a.random_input_len == 128
    }),
    (
        "--endpoint",
        "/v1/chat/completions",
        "/v1/completions",
        |a| a.endpoint == "/v1/chat/completions",
    ),
    (
        "temperature",
        "0",
        "the server's default unless --temperature",
        |_| true,
    ),
];

/// The differences a run has: `--num-prompts 16 (vLLM: 1000)`.
pub fn vllm_differences(a: &BenchArgs) -> Vec<String> {
    DIFFERENT_DEFAULTS
        .iter()
        .filter(|(_, _, _, applies)| applies(a))
        .map(|(flag, ours, theirs, _)| format!("{flag} {ours} (vLLM: {theirs})"))
        .collect()
}

/// One line saying what was measured, ending with the defaults that differ from vLLM's.
pub(crate) fn describe(a: &BenchArgs) -> String {
    let prompts = match a.dataset_name {
        DatasetName::Random if a.random_range_ratio > 0.0 => format!(
            "random prompts of {} tokens +-{}%",
            a.random_input_len,
            a.random_range_ratio * 100.0
        ),
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
        (None, true) => format!(
            "{} req/s open loop, burstiness {}",
            a.request_rate, a.burstiness
        ),
        (None, false) => "all at once (rate inf)".to_string(),
    };
    let api = if a.api == Api::Queue {
        format!("queue API ({:?})", a.queue_mode)
    } else {
        a.endpoint.clone()
    };
    let cap = a
        .max_concurrency
        .map_or("no concurrency cap".to_string(), |c| {
            format!("concurrency <= {c}")
        });
    let differs = vllm_differences(a);
    format!(
        "{} requests of {api} to model {} at {}, {prompts}, max_tokens {}{}, greedy, {cap}, arrivals {arrivals}{}{}",
        a.num_prompts,
        a.model,
        a.base_url,
        a.random_output_len,
        if a.sends_ignore_eos() { " (ignore_eos)" } else { "" },
        if a.cold_start { ", each after the endpoint scaled to zero" } else { "" },
        if differs.is_empty() {
            String::new()
        } else {
            format!("; defaults unlike vllm bench serve: {}", differs.join(", "))
        }
    )
}

pub(crate) fn settings(args: &BenchArgs) -> Value {
    json!({
        "label": args.label, "base_url": args.base_url, "model": args.model, "endpoint": args.endpoint,
        "max_concurrency": args.max_concurrency, "random_range_ratio": args.random_range_ratio,
        "ignore_eos": args.sends_ignore_eos(), "request_rate": if args.request_rate.is_finite() { json!(args.request_rate) } else { json!("inf") },
        "burstiness": args.burstiness, "num_prompts": args.num_prompts, "dataset_name": args.dataset_name.name(),
        "random_input_len": args.random_input_len, "random_output_len": args.random_output_len,
        "phases": args.phases, "seed": args.seed, "api": args.api.name(), "cold_start": args.cold_start,
    })
}
