//! `sluice bench`: a load generator for any OpenAI-compatible server (sluice, llama.cpp's
//! server, vLLM, mistral.rs's server), measuring streamed requests the way vLLM's
//! `benchmark_serving` does. Flag names follow `vllm bench serve`.
//!
//! Workloads: fixed concurrency, open-loop arrivals (Poisson or gamma), phases of different
//! rates (bursts, ramps, idle gaps), sweeps over concurrencies or rates, and A/B runs that
//! alternate two servers. Every run is bounded by a request count and a time limit.

pub mod arrivals;
mod client;
pub mod dataset;
pub mod metrics;
pub mod queue_client;
pub mod report;

pub use dataset::BUILTIN as BUILTIN_PROMPTS;

use anyhow::Context;
use clap::Args;
use dataset::Prompt;
use metrics::{RequestRecord, Slo, Summary};
use protocol::health::EndpointHealth;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weights::PromptTokenizer;

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
    pub fn name(self) -> &'static str {
        match self {
            Api::Openai => "openai",
            Api::Queue => "queue",
        }
    }
}

impl DatasetName {
    pub fn name(self) -> &'static str {
        match self {
            DatasetName::Builtin => "builtin",
            DatasetName::Random => "random",
            DatasetName::Jsonl => "jsonl",
            DatasetName::Sharegpt => "sharegpt",
        }
    }
}

/// One run's records and summary.
pub struct Run {
    pub summary: Summary,
    pub records: Vec<RequestRecord>,
    /// (seconds, workers) sampled from sluice's `/v2/{model}/health`, when it answers.
    pub workers: Vec<(f64, f64)>,
}

/// `--tokenizer`: a GGUF file or a Hugging Face tokenizer directory (the `sluice` binary
/// fills in the model's tokenizer from its cache when the flag is absent).
fn tokenizer(args: &BenchArgs) -> anyhow::Result<Option<PromptTokenizer>> {
    let Some(p) = &args.tokenizer else {
        return Ok(None);
    };
    let t = if p.is_dir() {
        PromptTokenizer::from_hf_dir(p)
    } else {
        PromptTokenizer::from_gguf(p)
    };
    t.map(Some)
        .with_context(|| format!("tokenizer from {}", p.display()))
}

fn prompts(
    args: &BenchArgs,
    n: usize,
    tok: Option<&PromptTokenizer>,
) -> anyhow::Result<Vec<Prompt>> {
    match args.dataset_name {
        DatasetName::Builtin => Ok(dataset::builtin(n)),
        DatasetName::Random => {
            let tok =
                tok.context("the random dataset needs a tokenizer: pass --tokenizer MODEL.gguf")?;
            dataset::random(tok, n, args.random_input_len, args.seed)
        }
        DatasetName::Jsonl | DatasetName::Sharegpt => {
            let path = args
                .dataset_path
                .as_ref()
                .context("--dataset-path is required for this dataset")?;
            dataset::jsonl(path, n, tok)
        }
    }
}

fn body(args: &BenchArgs, p: &Prompt, extra: &Value) -> Value {
    let mut b = if args.endpoint.ends_with("/chat/completions") {
        json!({"messages": [{"role": "user", "content": p.text}]})
    } else {
        json!({ "prompt": p.text })
    };
    let common = json!({
        "model": args.model, "max_tokens": p.output_len.unwrap_or(args.random_output_len),
        "temperature": 0, "stream": true, "stream_options": {"include_usage": true},
    });
    for src in [&common, extra] {
        if let (Some(dst), Some(src)) = (b.as_object_mut(), src.as_object()) {
            dst.extend(src.clone());
        }
    }
    b
}

/// Sample the workers of the endpoint once a second while `running`; gives up on the first
/// answer that is not sluice's health object.
async fn sample_workers(
    http: reqwest::Client,
    url: String,
    t0: Instant,
    out: Arc<Mutex<Vec<(f64, f64)>>>,
) {
    loop {
        let Some(h) = health(&http, &url).await else {
            return;
        };
        out.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((t0.elapsed().as_secs_f64(), h.workers_total() as f64));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// sluice's `/v2/{endpoint}/health`, if the server answers with it.
async fn health(http: &reqwest::Client, url: &str) -> Option<EndpointHealth> {
    http.get(url).send().await.ok()?.json().await.ok()
}

/// One request, to either API.
enum Job {
    OpenAi(Value),
    Queue {
        input: Value,
        mode: queue_client::QueueMode,
        poll: Duration,
    },
}

impl Job {
    fn new(args: &BenchArgs, openai_body: Value, queue_input: &Option<Value>) -> Self {
        if args.api != Api::Queue {
            return Job::OpenAi(openai_body);
        }
        let mode = args.queue_mode;
        let input = match queue_input {
            Some(v) => v.clone(),
            None => {
                // The OpenAI request as a job, the way RunPod's vLLM worker takes it; only the
                // stream mode asks the worker to stream.
                let mut b = openai_body;
                if mode != queue_client::QueueMode::Stream {
                    b["stream"] = json!(false);
                    if let Some(o) = b.as_object_mut() {
                        o.remove("stream_options");
                    }
                }
                serde_json::to_value(protocol::job::OpenAiJobInput {
                    openai_route: args.endpoint.clone(),
                    openai_input: b,
                })
                .unwrap_or_default()
            }
        };
        Job::Queue {
            input,
            mode,
            poll: Duration::from_millis(args.poll_interval_ms.max(1)),
        }
    }

    async fn send(
        self,
        http: &reqwest::Client,
        url: &str,
        count: &(dyn Fn(&str) -> Option<usize> + Sync),
    ) -> RequestRecord {
        match self {
            Job::OpenAi(body) => client::request(http, url, body, count).await,
            Job::Queue { input, mode, poll } => {
                queue_client::request(http, url, input, mode, poll).await
            }
        }
    }
}

/// Poll sluice's health until the endpoint has no workers; `false` if the deadline came first.
async fn wait_for_zero_workers(http: &reqwest::Client, health: &str, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let total = self::health(http, health).await.map(|h| h.workers_total());
        if total == Some(0) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    false
}

/// Run one benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Run> {
    let extra: Value = match &args.extra_body {
        Some(s) => serde_json::from_str(s).context("--extra-body must be a JSON object")?,
        None => json!({}),
    };
    let offsets = match &args.phases {
        Some(spec) => arrivals::phases(spec, args.burstiness, args.seed)?,
        None => arrivals::schedule(
            args.num_prompts,
            args.request_rate,
            args.burstiness,
            args.seed,
        )?,
    };
    let tok = tokenizer(args)?.map(Arc::new);
    let prompts = prompts(args, offsets.len(), tok.as_deref())?;
    // A fresh connection per request: what is measured is the server, not how it and this
    // client handle keep-alive (llama.cpp's server closes a connection after 5 requests).
    // (The queue API polls: there, reusing connections is what every client does.)
    let pool = if args.api == Api::Queue {
        usize::MAX
    } else {
        0
    };
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(pool)
        .build()?;
    let base = args.base_url.trim_end_matches('/');
    let url = match args.api {
        Api::Openai => format!("{base}{}", args.endpoint),
        Api::Queue => format!("{base}/v2/{}", args.model),
    };
    let queue_input: Option<Value> = match &args.queue_input {
        Some(s) => Some(serde_json::from_str(s).context("--queue-input must be JSON")?),
        None => None,
    };
    // Every request built before the clock starts: sends go out on time.
    let jobs: Vec<Job> = prompts
        .iter()
        .map(|p| Job::new(args, body(args, p, &extra), &queue_input))
        .collect();
    let slots = Arc::new(Semaphore::new(args.max_concurrency.max(1)));
    let progress = progress_bar(offsets.len());
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.max_duration_secs);
    let workers = Arc::new(Mutex::new(Vec::new()));
    let health = format!("{base}/v2/{}/health", args.model);
    let sampler = tokio::spawn(sample_workers(
        http.clone(),
        health.clone(),
        t0,
        workers.clone(),
    ));
    let mut tasks = Vec::new();
    for (offset, job) in offsets.into_iter().zip(jobs) {
        tokio::time::sleep_until((t0 + offset).min(deadline).into()).await;
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        if Instant::now() >= deadline {
            break;
        }
        if args.cold_start && !wait_for_zero_workers(&http, &health, deadline).await {
            break;
        }
        let (http, url, tok, pb) = (http.clone(), url.clone(), tok.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let start = t0.elapsed();
            let count = |text: &str| tok.as_ref().and_then(|t| t.count(text).ok());
            // In-flight requests are cut at the deadline too: a run always ends on time.
            let mut r = tokio::time::timeout_at(deadline.into(), job.send(&http, &url, &count))
                .await
                .unwrap_or_else(|_| RequestRecord {
                    error: Some("cut at --max-duration-secs".into()),
                    ..RequestRecord::default()
                });
            r.start = start;
            drop(permit);
            pb.inc(1);
            r
        }));
    }
    let mut records = Vec::new();
    for t in tasks {
        records.push(t.await?);
    }
    sampler.abort();
    progress.finish_and_clear();
    let slo = Slo::parse(&args.goodput)?;
    let summary = Summary::from_records(&records, t0.elapsed(), &slo);
    let workers = workers.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Run {
        summary,
        records,
        workers,
    })
}

fn progress_bar(n: usize) -> indicatif::ProgressBar {
    if !std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        return indicatif::ProgressBar::hidden();
    }
    let pb = indicatif::ProgressBar::new(n as u64);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} requests")
    {
        pb.set_style(style.progress_chars("=> "));
    }
    pb
}

/// One line saying what was measured.
fn describe(a: &BenchArgs) -> String {
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

fn settings(args: &BenchArgs) -> Value {
    json!({
        "label": args.label, "base_url": args.base_url, "model": args.model, "endpoint": args.endpoint,
        "max_concurrency": args.max_concurrency, "request_rate": if args.request_rate.is_finite() { json!(args.request_rate) } else { json!("inf") },
        "burstiness": args.burstiness, "num_prompts": args.num_prompts, "dataset_name": args.dataset_name.name(),
        "random_input_len": args.random_input_len, "random_output_len": args.random_output_len,
        "phases": args.phases, "seed": args.seed, "api": args.api.name(), "cold_start": args.cold_start,
    })
}

/// Run, print, and write the requested files; returns the result JSON.
async fn run_and_report(args: &BenchArgs) -> anyhow::Result<Value> {
    let r = run(args).await?;
    let title = if args.label.is_empty() {
        args.base_url.clone()
    } else {
        format!("{} ({})", args.label, args.base_url)
    };
    report::print(
        &format!("{title}, concurrency {}", args.max_concurrency),
        &r.summary,
    );
    println!("workload: {}", describe(args));
    let j = report::result_json(&r.summary, &r.records, settings(args));
    if let Some(path) = &args.result_filename {
        std::fs::write(path, serde_json::to_string_pretty(&j)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.html {
        let page = report::html(&title, &r.summary, &r.records, &r.workers);
        std::fs::write(path, page).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(j)
}

fn list<T: std::str::FromStr>(s: &str, flag: &str) -> anyhow::Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("{flag}: `{x}` is not a number"))
        })
        .collect()
}

/// Suffix a result path per sub-run (`r.json` -> `r.c8.json`).
fn suffixed(p: &Option<PathBuf>, tag: &str) -> Option<PathBuf> {
    p.as_ref().map(|p| {
        let stem = p
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let ext = p
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        p.with_file_name(format!("{stem}.{tag}{ext}"))
    })
}

/// The `sluice bench` command: compare files, an A/B run, a sweep, or one run.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    if !args.compare.is_empty() {
        let read = |p: &PathBuf| -> anyhow::Result<Value> {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Ok(serde_json::from_str(&text)?)
        };
        let (a, b) = (read(&args.compare[0])?, read(&args.compare[1])?);
        let rows = report::ratios(&[a], &[b]);
        report::print_ratios(
            &args.compare[0].display().to_string(),
            &args.compare[1].display().to_string(),
            &rows,
        );
        return Ok(());
    }
    if let Some(b_url) = &args.base_url_b {
        let (mut a_runs, mut b_runs) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            for (url, runs, tag) in [
                (&args.base_url, &mut a_runs, "a"),
                (b_url, &mut b_runs, "b"),
            ] {
                let mut a = args.clone();
                a.base_url = url.clone();
                a.label = format!("{tag}{round}");
                a.result_filename = suffixed(&args.result_filename, &format!("{tag}{round}"));
                a.html = None;
                runs.push(run_and_report(&a).await?);
            }
        }
        report::print_ratios(&args.base_url, b_url, &report::ratios(&a_runs, &b_runs));
        return Ok(());
    }
    // One run per swept value, each writing its own files (`r.json` -> `r.c8.json`).
    let variant = |tag: String, set: &dyn Fn(&mut BenchArgs)| {
        let mut a = args.clone();
        set(&mut a);
        a.result_filename = suffixed(&args.result_filename, &tag);
        a.html = suffixed(&args.html, &tag);
        a
    };
    let sweeps: Vec<BenchArgs> = match (&args.sweep_concurrency, &args.sweep_rates) {
        (Some(c), _) => list::<usize>(c, "--sweep-concurrency")?
            .into_iter()
            .map(|c| variant(format!("c{c}"), &|a| a.max_concurrency = c))
            .collect(),
        (None, Some(r)) => list::<f64>(r, "--sweep-rates")?
            .into_iter()
            .map(|r| variant(format!("r{r}"), &|a| a.request_rate = r))
            .collect(),
        (None, None) => vec![args.clone()],
    };
    for a in &sweeps {
        run_and_report(a).await?;
    }
    Ok(())
}
