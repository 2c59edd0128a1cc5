//! `sluice autoscaler simulate`: one trace, several policies, one table.

use crate::simulate::{break_even_hours_per_day, run, Model, Prices};
use crate::trace;
use clap::Args;
use protocol::config::{Scaler, ScalingSettings};
use std::path::PathBuf;

/// Arguments of `sluice autoscaler simulate`.
#[derive(Args, Clone, Debug)]
pub struct SimulateArgs {
    /// A JSONL trace (`{"arrival_ms", "service_ms", "low_priority"}` per line).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// Or a generated trace.
    #[arg(long, value_enum, default_value_t = trace::Shape::Bursty)]
    pub generate: trace::Shape,
    /// Length of the generated trace, in seconds.
    #[arg(long, default_value_t = 3 * 3600)]
    pub duration_secs: u64,
    /// Arrivals per second of the generated trace: the mean for `steady` and `diurnal`; for
    /// `bursty`, bursts run at 4x this rate (a mean of 2/3 of it).
    #[arg(long, default_value_t = 0.2)]
    pub rate: f64,
    /// Run time of every generated request once a worker takes it, in ms.
    #[arg(long, default_value_t = 2_000)]
    pub service_ms: u64,
    /// Random seed of the generated trace (same seed, same trace).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Time from starting a worker to its first job, weights read from disk (the disk tier).
    #[arg(long, default_value_t = 5_000)]
    pub cold_start_ms: u64,
    /// The same with the weights in RAM (page cache); default: `--cold-start-ms`.
    #[arg(long)]
    pub ram_start_ms: Option<u64>,
    /// Time from thawing a parked worker to its first job.
    #[arg(long, default_value_t = 100)]
    pub thaw_ms: u64,
    /// Seconds a parked worker is kept before it is evicted (the park policies).
    #[arg(long, default_value_t = 600)]
    pub park_timeout_secs: u64,
    /// Seconds the weights stay in RAM after the last worker went (the RAM policies).
    #[arg(long, default_value_t = 3600)]
    pub weights_ram_secs: u64,
    /// Most workers each policy may run (the always-on policy keeps this many).
    #[arg(long, default_value_t = 3)]
    pub max_workers: u32,
    /// Seconds a worker idles before it is drained (down to the policy's minimum).
    #[arg(long, default_value_t = 5)]
    pub idle_timeout_secs: u64,
    /// The scaler every policy uses.
    #[arg(long, value_enum, default_value_t = ScalerArg::QueueDelay)]
    pub scaler: ScalerArg,
    /// The scaler's threshold: seconds of queue delay (queue_delay) or jobs per worker
    /// (request_count).
    #[arg(long, default_value_t = 4.0)]
    pub scaler_value: f64,
    /// Flex (serverless) price per worker-second.
    #[arg(long, default_value_t = 0.00076)]
    pub flex_per_sec: f64,
    /// Always-on price per worker-hour.
    #[arg(long, default_value_t = 1.89)]
    pub active_per_hour: f64,
    /// Price per second of a parked worker (default: a quarter of the flex price; an
    /// assumption: a parked GPU worker keeps its GPU memory, so its GPU cannot be fully lent).
    #[arg(long)]
    pub parked_per_sec: Option<f64>,
    /// Price per second of weights held in RAM with no worker (default: 1% of the flex price;
    /// an assumption: host memory only).
    #[arg(long)]
    pub ram_per_sec: Option<f64>,
    /// What a second of a request's wait is worth, dollars: the cost-aware policy's price
    /// (an assumption; see `scaling.wait_price_per_sec`).
    #[arg(long, default_value_t = 0.001)]
    pub wait_per_sec: f64,
}

/// One row of the table: a name, and the settings it changes.
struct Policy {
    name: String,
    min: u32,
    parked: u32,
    ram_secs: u64,
    /// Cost-aware demotion (with `--wait-per-sec`), the timeouts as upper bounds.
    cost_aware: bool,
}

/// `--scaler`: the policy's scalers (`protocol` has no command-line types).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ScalerArg {
    /// Add a worker while the oldest job waited longer than `--scaler-value` seconds.
    QueueDelay,
    /// ceil((queued + running) / `--scaler-value`) workers.
    RequestCount,
}

impl From<ScalerArg> for Scaler {
    fn from(s: ScalerArg) -> Scaler {
        match s {
            ScalerArg::QueueDelay => Scaler::QueueDelay,
            ScalerArg::RequestCount => Scaler::RequestCount,
        }
    }
}

/// Run `sluice autoscaler simulate`: load (or generate) the trace, replay it under the tier
/// policies (scale to zero from disk, from RAM, with one or `max_workers` parked workers,
/// min 1, always-on; each up to `max_workers`) on a 100 ms virtual tick, and return the
/// table: queue delay p50/p95/p99 (ms), flex, active and parked worker-seconds, starts by
/// tier and cost (dollars), then the always-on break-even.
///
/// Errors: the trace file cannot be read or parsed, or a generated trace's rate or duration
/// is not positive.
pub fn simulate(a: &SimulateArgs) -> anyhow::Result<String> {
    let requests = match &a.trace {
        Some(p) => trace::load(p)?,
        None => trace::generate(
            a.generate,
            a.duration_secs as f64,
            a.rate,
            a.service_ms,
            a.seed,
        )?,
    };
    let scaler = Scaler::from(a.scaler);
    let model = Model {
        cold_start_ms: a.cold_start_ms,
        ram_start_ms: a.ram_start_ms.unwrap_or(a.cold_start_ms),
        thaw_ms: a.thaw_ms,
        tick_ms: 100,
    };
    let prices = Prices {
        flex_per_sec: a.flex_per_sec,
        active_per_hour: a.active_per_hour,
        parked_per_sec: a.parked_per_sec.unwrap_or(a.flex_per_sec / 4.0),
        ram_per_sec: a.ram_per_sec.unwrap_or(a.flex_per_sec / 100.0),
    };
    let busy_s: f64 = requests.iter().map(|r| r.service_ms as f64 / 1000.0).sum();
    let mut out = format!(
        "{} requests, {:.0} s of work; starts: disk {} ms, RAM {} ms, thaw {} ms; {}/{}; \
         flex ${}/s, active ${}/h, parked ${:.6}/s, RAM ${:.7}/s\n\
         {:<27} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>14} {:>8}\n",
        requests.len(),
        busy_s,
        model.cold_start_ms,
        model.ram_start_ms,
        model.thaw_ms,
        clap::ValueEnum::to_possible_value(&a.scaler)
            .map(|v| v.get_name().to_string())
            .unwrap_or_default(),
        a.scaler_value,
        a.flex_per_sec,
        a.active_per_hour,
        prices.parked_per_sec,
        prices.ram_per_sec,
        "policy",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "flex s",
        "active s",
        "parked s",
        "thaw/ram/disk",
        "cost $"
    );
    let max = a.max_workers;
    let policy = |name: &str, min, parked, ram_secs| Policy {
        name: name.to_string(),
        min,
        parked,
        ram_secs,
        cost_aware: false,
    };
    let policies = [
        policy("min 0, disk", 0, 0, 0),
        policy("min 0, RAM", 0, 0, a.weights_ram_secs),
        policy("min 0, park 1", 0, 1, a.weights_ram_secs),
        policy(&format!("min 0, park {max}"), 0, max, a.weights_ram_secs),
        Policy {
            cost_aware: true,
            // The timeouts as upper bounds only: a day.
            ..policy(&format!("park {max}, cost-aware"), 0, max, 86_400)
        },
        policy("min 1", 1.min(max), 0, a.weights_ram_secs),
        policy("always-on", max, 0, a.weights_ram_secs),
    ];
    for p in policies {
        let cfg = ScalingSettings {
            min_workers: p.min,
            max_workers: max,
            idle_timeout_secs: a.idle_timeout_secs,
            scaler,
            scaler_value: a.scaler_value,
            parked_workers: p.parked,
            park_timeout_secs: if p.cost_aware {
                86_400
            } else {
                a.park_timeout_secs
            },
            weights_ram_secs: p.ram_secs,
            wait_price_per_sec: if p.cost_aware { a.wait_per_sec } else { 0.0 },
            parked_price_per_sec: prices.parked_per_sec,
            ram_price_per_sec: prices.ram_per_sec,
            ..ScalingSettings::default()
        };
        let o = run(&requests, &cfg, model);
        let [thaw, ram, disk] = o.starts_by_tier;
        out += &format!(
            "{:<27} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>14} {:>8.2}\n",
            format!("{} (max {max})", p.name),
            o.delay_percentile(50.0),
            o.delay_percentile(95.0),
            o.delay_percentile(99.0),
            o.flex_seconds,
            o.active_seconds,
            o.parked_seconds,
            format!("{thaw}/{ram}/{disk}"),
            o.cost(&prices)
        );
    }
    out += &format!(
        "break-even: always-on is cheaper once a worker is busy more than {:.1} h/day ({:.0}% utilisation)\n",
        break_even_hours_per_day(&prices),
        break_even_hours_per_day(&prices) / 24.0 * 100.0
    );
    Ok(out)
}
