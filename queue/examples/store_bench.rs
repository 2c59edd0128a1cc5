//! The job store's own cost, memory vs Redis, measured in one run with alternating rounds
//! (this machine is noisy; compare within a run):
//!
//!   cargo run --release -p queue --example store_bench -- [JOBS] [ROUNDS] [CONC] [RETAINED]
//!
//! latency: one job at a time, the store calls of a job's whole life: submit, take,
//! report(completed), get — the time the store adds per job on top of HTTP and the worker.
//! throughput: CONC tasks each looping submit -> take -> report; jobs/s.
//! RETAINED finished jobs are in the store first (results kept for their retention, as a busy
//! gateway holds them), and the calls the autoscaler and workers make all the time (metrics,
//! workers, ping) are timed on top, with the memory store's sweep.
//! Redis is a local `redis-server` (no persistence) started here on a free port.

use protocol::job::JobReport;
use queue::testing::RedisServer;
use queue::{JobStore, MemoryStore, NewJob, RedisStore, StoreSettings};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ZERO: Duration = Duration::ZERO;

fn settings() -> StoreSettings {
    StoreSettings {
        max_queue: 1 << 20,
        ..StoreSettings::default()
    }
}

async fn one_job(s: &dyn JobStore, worker: &str) {
    let input = json!({"prompt": "a short job input, like a small request body"});
    let id = s
        .submit(
            "ep",
            NewJob {
                input,
                ..NewJob::default()
            },
        )
        .await
        .unwrap();
    let taken = s
        .take("ep", worker, 1, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(taken.len(), 1);
    let id = taken.into_iter().next().map(|t| t.id).unwrap_or(id);
    s.report(&id, worker, JobReport::Completed(json!({"ok": true})))
        .await
        .unwrap();
    let v = s.wait_final(&id, ZERO).await.unwrap().unwrap();
    assert!(v.status.is_final());
}

/// `n` finished jobs, kept for their retention.
async fn retain(s: &dyn JobStore, n: usize) {
    for _ in 0..n {
        one_job(s, "old").await;
    }
}

/// Median microseconds of `f` over `n` calls.
async fn per_call<F: std::future::Future<Output = ()>>(n: usize, mut f: impl FnMut() -> F) -> f64 {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await;
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    median(v)
}

/// Median us of the periodic calls: metrics, workers, ping with a job list (and the memory
/// store's sweep), with one job running.
async fn periodic(s: &dyn JobStore, memory: Option<&MemoryStore>) -> [f64; 4] {
    let id = s.submit("ep", NewJob::default()).await.unwrap();
    s.take("ep", "w", 1, ZERO).await.unwrap();
    let running = [id];
    let metrics = per_call(1000, || async {
        std::hint::black_box(s.metrics("ep").await.unwrap());
    })
    .await;
    let workers = per_call(1000, || async {
        std::hint::black_box(s.workers("ep").await.unwrap());
    })
    .await;
    let ping = per_call(1000, || async {
        s.ping("ep", "w", Some(&running)).await.unwrap()
    })
    .await;
    let sweep = match memory {
        Some(m) => per_call(1000, || async { m.sweep(std::time::Instant::now()) }).await,
        None => f64::NAN,
    };
    [metrics, workers, ping, sweep]
}

/// Per-job latencies in microseconds, one job at a time.
async fn latency(s: &dyn JobStore, jobs: usize) -> Vec<f64> {
    let mut out = Vec::with_capacity(jobs);
    for _ in 0..jobs {
        let t = Instant::now();
        one_job(s, "lat").await;
        out.push(t.elapsed().as_secs_f64() * 1e6);
    }
    out
}

/// Jobs per second with `conc` loops at once.
async fn throughput(s: Arc<dyn JobStore>, jobs: usize, conc: usize) -> f64 {
    let t = Instant::now();
    let tasks: Vec<_> = (0..conc)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                for _ in 0..jobs / conc {
                    one_job(&*s, &format!("w{i}")).await;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (jobs / conc * conc) as f64 / t.elapsed().as_secs_f64()
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn median(mut v: Vec<f64>) -> f64 {
    pct(&mut v, 0.5)
}

/// One store's measurements over the rounds.
struct Row {
    name: &'static str,
    p50: Vec<f64>,
    p99: Vec<f64>,
    tput: Vec<f64>,
    periodic: Vec<[f64; 4]>,
}

impl Row {
    fn new(name: &'static str) -> Self {
        Row {
            name,
            p50: vec![],
            p99: vec![],
            tput: vec![],
            periodic: vec![],
        }
    }
}

#[tokio::main]
async fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().unwrap())
        .collect();
    let jobs = args.first().copied().unwrap_or(2000);
    let rounds = args.get(1).copied().unwrap_or(3);
    let conc = args.get(2).copied().unwrap_or(16);
    let retained = args.get(3).copied().unwrap_or(0);
    let redis = RedisServer::start();
    let mut rows = vec![Row::new("memory"), Row::new("redis")];
    for round in 0..rounds {
        for row in rows.iter_mut() {
            // A fresh store per round: no state carried over (Redis flushed).
            let (s, memory): (Arc<dyn JobStore>, Option<Arc<MemoryStore>>) = match row.name {
                "memory" => {
                    let m = MemoryStore::start(settings());
                    (m.clone(), Some(m))
                }
                _ => {
                    redis.flush();
                    let s = RedisStore::start(&redis.url(), settings()).unwrap();
                    s.check().await.unwrap();
                    (s, None)
                }
            };
            retain(&*s, retained).await;
            row.periodic.push(periodic(&*s, memory.as_deref()).await);
            let mut lat = latency(&*s, jobs).await;
            let tput = throughput(s.clone(), jobs, conc).await;
            let (p50, p99) = (pct(&mut lat, 0.5), pct(&mut lat, 0.99));
            eprintln!(
                "round {round} {:<6} p50 {p50:7.1} us  p99 {p99:7.1} us  {tput:8.0} jobs/s",
                row.name
            );
            row.p50.push(p50);
            row.p99.push(p99);
            row.tput.push(tput);
        }
    }
    let base = median(rows[0].tput.clone());
    println!(
        "store cost per job (submit+take+report+get), {jobs} jobs x {rounds} rounds, medians; \
         throughput with {conc} loops at once"
    );
    println!("| store | p50 us | p99 us | jobs/s | jobs/s vs memory |\n|---|---|---|---|---|");
    for row in &rows {
        let t = median(row.tput.clone());
        println!(
            "| {} | {:.1} | {:.1} | {t:.0} | {:.3} |",
            row.name,
            median(row.p50.clone()),
            median(row.p99.clone()),
            t / base
        );
    }
    println!("\nperiodic calls with {retained} finished jobs retained and one running, median us");
    println!(
        "| store | metrics | workers | ping (with its job list) | sweep |\n|---|---|---|---|---|"
    );
    for row in &rows {
        let m = |i: usize| median(row.periodic.iter().map(|p| p[i]).collect());
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            row.name,
            m(0),
            m(1),
            m(2),
            m(3)
        );
    }
}
