//! `sluice`: one binary for every role. This file is the command line; the roles live in
//! `roles.rs` (gateway, worker, models) and `serve.rs` (all-in-one).

mod deploy;
mod fleet;
mod models;
mod plan;
mod roles;
mod serve;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "Self-hosted serverless LLM platform: an OpenAI-compatible \
gateway and a RunPod-style job queue in front of mistral.rs workers."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Flags every role shares.
#[derive(Args, Clone, Debug)]
pub struct Common {
    /// Address to listen on (gateway) or to reach the gateway at.
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,
    /// Port of the gateway; 0 picks a free one (printed at start).
    #[arg(long, default_value_t = 8080, global = true)]
    port: u16,
    /// Platform config; model configs are found next to it (`models_dir`).
    #[arg(long, default_value = "configs/sluice.toml", global = true)]
    config: PathBuf,
}

/// Who may reach a gateway that has no client keys.
#[derive(Args, Clone, Debug)]
pub struct Exposure {
    /// Serve an address other than loopback with no client keys configured, so anyone who can
    /// reach the port can run jobs on your workers. Without it, sluice refuses to; with it,
    /// sluice warns at every start.
    #[arg(long)]
    insecure_no_auth: bool,
}

/// Where jobs are kept.
#[derive(Args, Clone, Debug)]
pub struct StoreArgs {
    /// Job store: `memory` or `redis://HOST:PORT/DB` (default: the config's `gateway.queue`).
    #[arg(long, env = "SLUICE_QUEUE")]
    queue: Option<String>,
}

impl StoreArgs {
    /// The store to use: the flag, else the config.
    pub fn url<'a>(&'a self, dep: &'a protocol::config::Deployment) -> &'a str {
        self.queue.as_deref().unwrap_or(&dep.config.gateway.queue)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Gateway + in-memory queue + the workers of every endpoint (model or custom handler), all
    /// in one command (the quickstart).
    /// Fetches the models first if they are not cached ($SLUICE_HOME, default ~/.cache/sluice).
    Serve {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        exposure: Exposure,
    },
    /// The HTTP gateway alone: OpenAI API, RunPod-style queue API, worker API, health. Workers
    /// connect to it.
    Gateway {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        exposure: Exposure,
        /// Token workers must present (env SLUICE_WORKER_TOKEN); random and printed if unset.
        #[arg(long, env = "SLUICE_WORKER_TOKEN", hide_env_values = true)]
        worker_token: Option<String>,
        /// Serve KEDA's external scaler (gRPC) on HOST:PORT, for Kubernetes (default: the
        /// config's `gateway.keda_scaler_addr`; unset: not served).
        #[arg(long, env = "SLUICE_KEDA_ADDR")]
        keda_addr: Option<String>,
    },
    /// One worker: loads the endpoint's model, then pulls jobs from a gateway. Started with
    /// RunPod's worker environment (`RUNPOD_WEBHOOK_GET_JOB`, `RUNPOD_POD_ID`,
    /// `RUNPOD_AI_API_KEY`), it takes gateway, endpoint, id and token from there.
    Worker {
        #[command(flatten)]
        common: Common,
        /// Endpoint (model served name) to serve.
        #[arg(long)]
        endpoint: Option<String>,
        /// Gateway base URL; default http://HOST:PORT.
        #[arg(long)]
        gateway: Option<String>,
        /// Worker token (env SLUICE_WORKER_TOKEN).
        #[arg(long, env = "SLUICE_WORKER_TOKEN", hide_env_values = true)]
        worker_token: Option<String>,
        /// Worker id; random if unset.
        #[arg(long, env = "SLUICE_WORKER_ID")]
        worker_id: Option<String>,
        /// What runs the jobs.
        #[arg(long, value_enum, default_value_t = roles::HandlerKind::Llm)]
        handler: roles::HandlerKind,
        /// Jobs at once for the echo handler (the llm handler uses the model's max_num_seqs).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Milliseconds between heartbeats to the gateway (RunPod's variable by default).
        #[arg(long, env = "RUNPOD_PING_INTERVAL", default_value_t = 5000)]
        ping_interval_ms: u64,
    },
    /// Load-test an OpenAI-compatible server. Flags follow `vllm bench serve` and mean the
    /// same workload; sluice's defaults differ on purpose for a small CPU model
    /// (--num-prompts 16, --dataset-name builtin, --random-input-len 128, --endpoint
    /// /v1/chat/completions, temperature 0), and every run's
    /// workload line says which of them it used. See docs/bench.md.
    Bench(Box<loadtests::BenchArgs>),
    /// Autoscaling tools.
    Autoscaler {
        #[command(subcommand)]
        command: AutoscalerCommand,
    },
    /// Write deployment manifests from the configs.
    Deploy {
        #[command(subcommand)]
        command: DeployCommand,
    },
    /// Manage the model cache; size and check model configs.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand)]
enum AutoscalerCommand {
    /// The autoscaler as its own process, for a Redis store shared with gateways: reads each
    /// endpoint's queue from the store and starts / drains local worker processes that
    /// connect to `--gateway`.
    Run {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        store: StoreArgs,
        /// Gateway URL the workers connect to.
        #[arg(long)]
        gateway: String,
        /// Worker token (env SLUICE_WORKER_TOKEN), as the gateways were given.
        #[arg(long, env = "SLUICE_WORKER_TOKEN", hide_env_values = true)]
        worker_token: String,
    },
    /// Replay a request trace against the scaling policy with a virtual clock: queue delay,
    /// worker-seconds and cost per policy (min 0, min 1, always-on), and the break-even.
    Simulate(autoscaler::cli::SimulateArgs),
}

#[derive(Subcommand)]
enum DeployCommand {
    /// A Kustomize overlay on deploy/kubernetes/base: per model endpoint, a worker Deployment
    /// (GPUs, GPU types, grace period from its config) and a KEDA ScaledObject on the gateways'
    /// external scaler; the configs as ConfigMaps.
    Kubernetes {
        /// The platform config whose model endpoints get workers.
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
        /// The overlay directory to write.
        #[arg(long)]
        out: PathBuf,
        /// The base, relative to --out.
        #[arg(long, default_value = deploy::DEFAULT_BASE)]
        base: String,
        /// Namespace of everything (KEDA reaches the scaler by it).
        #[arg(long, default_value = "sluice")]
        namespace: String,
        /// The sluice image (built with --features cuda for GPU endpoints).
        #[arg(long, default_value = "sluice:latest")]
        image: String,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download, verify and convert a model into the cache (idempotent).
    Pull {
        /// Served name of the model (a file in the config's models_dir).
        name: String,
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
    /// Write a cached model's tokenizer as a Hugging Face tokenizer directory (for tools
    /// such as aiperf or guidellm that load tokenizers with `transformers`).
    ExportTokenizer {
        name: String,
        /// Output directory.
        dir: PathBuf,
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
    /// List configured and cached models: tier (ram / disk), size, last use, in use.
    Ls {
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
    /// Size a model on a GPU type: weights + KV cache for context x max_num_seqs, +20%,
    /// against the GPU's memory; the smallest gpus_per_worker and the largest max_num_seqs
    /// that fit.
    Plan {
        /// The model's served name.
        name: String,
        /// The GPU type, a name in the GPU table (`configs/gpus.toml`), e.g. H100-80GB.
        #[arg(long)]
        gpu: String,
        /// GPUs per worker (default: the config's entry for the type, else the fewest that fit).
        #[arg(long)]
        gpus: Option<u32>,
        /// Print the plan as one JSON object.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
    /// Check every model config: schema, checksums, pinned revisions, and that each fits the
    /// GPU types it lists with its settings.
    Check {
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
    /// Remove a model from the cache (refused while a running worker holds it).
    Rm {
        /// The model's name (its directory in the cache).
        name: String,
    },
    /// Remove least recently used models no worker holds until the cache fits its budget.
    Gc {
        /// The budget in GiB (default: the config's `[cache] disk_budget_gib`).
        #[arg(long)]
        budget_gib: Option<f64>,
        #[arg(long, default_value = "configs/sluice.toml")]
        config: PathBuf,
    },
}

/// Logs on stderr and, with `OTEL_EXPORTER_OTLP_ENDPOINT` set, OpenTelemetry traces (see the
/// `telemetry` crate), as `service` unless `OTEL_SERVICE_NAME` says otherwise.
fn init_telemetry(service: &'static str) -> telemetry::Guard {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("SLUICE_LOG").unwrap_or_else(|_| {
        EnvFilter::new(
            "warn,sluice=info,gateway=info,engine=info,worker=info,weights=info,queue=info,autoscaler=info",
        )
    });
    // Colours only on a terminal: logs piped to files (or through `sluice serve`) stay greppable.
    use std::io::IsTerminal;
    telemetry::init(service, filter, std::io::stderr().is_terminal())
}

/// Run one subcommand to its end.
async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve {
            common,
            store,
            exposure,
        } => serve::run(common, store, exposure).await,
        Command::Gateway {
            common,
            store,
            exposure,
            worker_token,
            keda_addr,
        } => roles::gateway(common, store, exposure, worker_token, keda_addr).await,
        Command::Worker {
            common,
            endpoint,
            gateway,
            worker_token,
            worker_id,
            handler,
            concurrency,
            ping_interval_ms,
        } => {
            let id = roles::WorkerIdentity::resolve(
                &common,
                endpoint,
                gateway,
                worker_token,
                worker_id,
            )?;
            let ping = std::time::Duration::from_millis(ping_interval_ms.max(100));
            roles::worker(common, id, handler, concurrency, ping).await
        }
        Command::Bench(mut args) => {
            // The tokenizer of the model in the cache, unless one was named.
            if args.tokenizer.is_none() {
                args.tokenizer = cached_tokenizer(&args.model);
            }
            loadtests::main(*args).await
        }
        Command::Autoscaler {
            command:
                AutoscalerCommand::Run {
                    common,
                    store,
                    gateway,
                    worker_token,
                },
        } => roles::autoscaler(common, store, gateway, worker_token).await,
        Command::Autoscaler {
            command: AutoscalerCommand::Simulate(args),
        } => {
            print!("{}", autoscaler::cli::simulate(&args)?);
            Ok(())
        }
        Command::Deploy {
            command:
                DeployCommand::Kubernetes {
                    config,
                    out,
                    base,
                    namespace,
                    image,
                },
        } => deploy::kubernetes(&deploy::Options {
            config,
            out,
            base,
            namespace,
            image,
        }),
        Command::Models { command } => match command {
            ModelsCommand::Pull { name, config } => models::pull(&config, &name),
            ModelsCommand::Ls { config } => models::ls(&config),
            ModelsCommand::Rm { name } => models::rm(&name),
            ModelsCommand::Plan {
                name,
                gpu,
                gpus,
                json,
                config,
            } => plan::plan(&config, &name, &gpu, gpus, json),
            ModelsCommand::Check { config } => plan::check(&config),
            ModelsCommand::Gc { budget_gib, config } => models::gc(&config, budget_gib),
            ModelsCommand::ExportTokenizer { name, dir, config } => {
                models::export_tokenizer(&config, &name, &dir)
            }
        },
    }
}

/// The tokenizer of a cached model ([`weights::CachedModel::tokenizer_source`]).
fn cached_tokenizer(model: &str) -> Option<PathBuf> {
    weights::Cache::from_env()
        .list()
        .into_iter()
        .find(|m| m.name == model)
        .map(|m| m.tokenizer_source())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    if let Command::Worker {
        common, endpoint, ..
    } = &cli.command
    {
        roles::prepare_worker_process(&common.config, endpoint.as_deref());
    }
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sluice: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let service = match &cli.command {
        Command::Worker { .. } => "sluice-worker",
        _ => "sluice-gateway",
    };
    // Inside the runtime: the gRPC exporter needs one.
    let guard = rt.block_on(async { init_telemetry(service) });
    let result = match cli.command {
        // mistral.rs re-executed us as a tensor-parallel rank: only the engine.
        Command::Worker {
            common,
            endpoint: Some(endpoint),
            ..
        } if engine::devices::is_tensor_parallel_rank() => {
            rt.block_on(roles::tensor_parallel_rank(common, &endpoint))
        }
        command => rt.block_on(dispatch(command)),
    };
    drop(guard);
    // Do not wait for blocked threads (e.g. a stdin reader) at exit.
    rt.shutdown_timeout(std::time::Duration::from_secs(1));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
