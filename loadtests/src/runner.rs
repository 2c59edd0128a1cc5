//! One benchmark run: requests built before the clock starts, sent on their arrival times
//! under a concurrency cap, each cut at the run's deadline; sluice's workers sampled beside.

use crate::args::{Api, BenchArgs, DatasetName};
use crate::dataset::{self, Prompt};
use crate::metrics::{RequestRecord, Slo, Summary};
use crate::{arrivals, client, queue_client};
use anyhow::Context;
use protocol::health::{ColdStart, EndpointHealth};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weights::PromptTokenizer;

/// One run's records and summary.
pub struct Run {
    /// The metrics over the whole run ([`Summary::from_records`]).
    pub summary: Summary,
    /// One record per request sent, in send order (failures and cut requests included).
    pub records: Vec<RequestRecord>,
    /// (seconds, workers) sampled from sluice's `/v2/{model}/health`, when it answers:
    /// distinct workers in any state (an initializing worker the store already sees live
    /// counts once), parked ones not.
    pub workers: Vec<(f64, f64)>,
    /// The cold starts sluice reported for the workers seen during the run, by worker id.
    pub cold_starts: BTreeMap<String, ColdStart>,
}

/// What the sampler gathers beside the requests.
#[derive(Default)]
struct Samples {
    workers: Vec<(f64, f64)>,
    cold_starts: BTreeMap<String, ColdStart>,
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
            let lens = dataset::random_lens(
                n,
                args.random_input_len,
                args.random_output_len,
                args.random_range_ratio,
                args.seed,
            )?;
            dataset::random(tok, &lens, args.seed)
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
    let common = if args.sends_ignore_eos() {
        let mut c = common;
        // vLLM's sampling parameter, sent as vLLM's benchmark sends it.
        c["ignore_eos"] = json!(true);
        c
    } else {
        common
    };
    for src in [&common, extra] {
        if let (Some(dst), Some(src)) = (b.as_object_mut(), src.as_object()) {
            dst.extend(src.clone());
        }
    }
    b
}

/// Sample the workers of the endpoint once a second while `running`; gives up on the first
/// answer that is not sluice's health object.
async fn sample_workers(http: reqwest::Client, url: String, t0: Instant, out: Arc<Mutex<Samples>>) {
    loop {
        let Some(h) = health(&http, &url).await else {
            return;
        };
        {
            let mut s = out.lock().unwrap_or_else(|p| p.into_inner());
            s.workers
                .push((t0.elapsed().as_secs_f64(), h.workers_total() as f64));
            for w in h.fleet {
                if let Some(c) = w.cold_start {
                    s.cold_starts.insert(w.id, c);
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
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

/// Everything a run sends, built before its clock starts so sends go out on time.
struct Plan {
    http: reqwest::Client,
    /// Where each request goes: the OpenAI route, or the queue API's `/v2/{model}`.
    url: String,
    /// sluice's `/v2/{model}/health`, for `--cold-start` and the workers over time.
    health: String,
    /// Arrival offsets from the start, one per job.
    offsets: Vec<Duration>,
    jobs: Vec<Job>,
    tok: Option<Arc<PromptTokenizer>>,
}

impl Plan {
    fn new(args: &BenchArgs) -> anyhow::Result<Plan> {
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
        let jobs = prompts
            .iter()
            .map(|p| Job::new(args, body(args, p, &extra), &queue_input))
            .collect();
        Ok(Plan {
            http,
            url,
            health: format!("{base}/v2/{}/health", args.model),
            offsets,
            jobs,
            tok,
        })
    }
}

/// Run one benchmark.
pub async fn run(args: &BenchArgs) -> anyhow::Result<Run> {
    let plan = Plan::new(args)?;
    let progress = progress_bar(plan.offsets.len());
    let t0 = Instant::now();
    let deadline = t0 + Duration::from_secs(args.max_duration_secs);
    let samples = Arc::new(Mutex::new(Samples::default()));
    let sampler = tokio::spawn(sample_workers(
        plan.http.clone(),
        plan.health.clone(),
        t0,
        samples.clone(),
    ));
    let records = dispatch(args, plan, t0, deadline, &progress).await?;
    sampler.abort();
    progress.finish_and_clear();
    let slo = Slo::parse(&args.goodput)?;
    let summary = Summary::from_records(&records, t0.elapsed(), &slo);
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()));
    Ok(Run {
        summary,
        records,
        workers: samples.workers,
        cold_starts: samples.cold_starts,
    })
}

/// Send each job at its arrival time, at most `--max-concurrency` in flight, none after the
/// deadline; in-flight requests are cut at the deadline too, so a run always ends on time.
async fn dispatch(
    args: &BenchArgs,
    plan: Plan,
    t0: Instant,
    deadline: Instant,
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<RequestRecord>> {
    // No cap by default, as vLLM: only the arrival process shapes the load.
    let cap = args
        .max_concurrency
        .unwrap_or(Semaphore::MAX_PERMITS)
        .max(1);
    let slots = Arc::new(Semaphore::new(cap));
    let mut tasks = Vec::new();
    for (offset, job) in plan.offsets.into_iter().zip(plan.jobs) {
        tokio::time::sleep_until((t0 + offset).min(deadline).into()).await;
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p?,
            _ = tokio::time::sleep_until(deadline.into()) => break,
        };
        if Instant::now() >= deadline {
            break;
        }
        if args.cold_start && !wait_for_zero_workers(&plan.http, &plan.health, deadline).await {
            break;
        }
        let (http, url) = (plan.http.clone(), plan.url.clone());
        let (tok, pb) = (plan.tok.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let start = t0.elapsed();
            let count = |text: &str| tok.as_ref().and_then(|t| t.count(text).ok());
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
    Ok(records)
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
