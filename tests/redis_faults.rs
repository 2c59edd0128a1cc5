//! SLOW (about 40 s): process-level tests of the Redis job store and the autoscaler process. Real `sluice
//! gateway` and `sluice worker --handler echo` processes share one real `redis-server`, and
//! get killed with SIGKILL: jobs move between gateways, survive dead workers and a dead
//! gateway, and a fault run ends with every job accounted for exactly once.

use queue::testing::{free_port, RedisServer};
use rand::Rng;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "fault-test-token";

/// Poll `f` every `step` until it gives `Ok`; after `limit`, panic with `what` and the last
/// state `f` described in its `Err`.
async fn eventually<T>(
    limit: Duration,
    step: Duration,
    what: &str,
    mut f: impl AsyncFnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) => assert!(Instant::now() < deadline, "{what}: {last}"),
        }
        tokio::time::sleep(step).await;
    }
}

fn is_final(v: &Value) -> bool {
    v["status"]
        .as_str()
        .and_then(protocol::JobStatus::parse)
        .is_some_and(protocol::JobStatus::is_final)
}

/// A child process killed (SIGKILL) when dropped.
struct Proc(Child);

impl Proc {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A config with one echo endpoint and no models; workers silent for 2 s lose their jobs.
/// When the autoscaler starts the endpoint's workers, they are `sluice worker --handler echo`
/// (reading the RunPod worker environment it gives them), 0..2 of them, one per queued job.
fn config(dir: &Path, max_retries: u32) -> PathBuf {
    std::fs::create_dir_all(dir.join("models")).unwrap();
    let path = dir.join("sluice.toml");
    let bin = env!("CARGO_BIN_EXE_sluice");
    std::fs::write(
        &path,
        format!(
            "endpoints = []\n[gateway]\nworker_timeout_secs = 2\nmax_retries = {max_retries}\n\
             [[custom]]\nname = \"echo\"\n\
             command = [\"{bin}\", \"worker\", \"--handler\", \"echo\", \"--ping-interval-ms\", \"300\"]\n\
             [custom.scaling]\nmin_workers = 0\nmax_workers = 2\nidle_timeout_secs = 1\n\
             scaler = \"request_count\"\nscaler_value = 1.0\n"
        ),
    )
    .unwrap();
    path
}

struct Cluster {
    dir: PathBuf,
    config: PathBuf,
    redis: RedisServer,
    http: reqwest::Client,
}

impl Cluster {
    fn new(redis: RedisServer, max_retries: u32) -> Self {
        let dir = redis.dir.join("cluster");
        let config = config(&dir, max_retries);
        Cluster {
            dir,
            config,
            redis,
            http: reqwest::Client::new(),
        }
    }

    fn spawn(&self, args: &[&str], log: &str) -> Proc {
        let log = std::fs::File::create(self.dir.join(log)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_sluice"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env("SLUICE_WORKER_TOKEN", TOKEN)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        Proc(child)
    }

    async fn gateway(&self, port: u16) -> Proc {
        let p = self.spawn(
            &[
                "gateway",
                "--port",
                &port.to_string(),
                "--queue",
                &self.redis.url(),
            ],
            &format!("gateway-{port}.log"),
        );
        let what = format!("gateway on {port} did not start");
        eventually(
            Duration::from_secs(30),
            Duration::from_millis(50),
            &what,
            async || self.get(port, "/health").await.ok_or_else(String::new),
        )
        .await;
        p
    }

    fn worker(&self, port: u16, id: &str) -> Proc {
        let gw = format!("http://127.0.0.1:{port}");
        self.spawn(
            &[
                "worker",
                "--endpoint",
                "echo",
                "--handler",
                "echo",
                "--gateway",
                &gw,
                "--worker-id",
                id,
                "--concurrency",
                "4",
                "--ping-interval-ms",
                "300",
            ],
            &format!("worker-{id}.log"),
        )
    }

    async fn get(&self, port: u16, path: &str) -> Option<Value> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let r = self.http.get(url).send().await.ok()?;
        r.status().is_success().then_some(())?;
        r.json().await.ok()
    }

    async fn post(&self, port: u16, path: &str, body: Value) -> Option<Value> {
        let url = format!("http://127.0.0.1:{port}{path}");
        let r = self.http.post(url).json(&body).send().await.ok()?;
        r.status().is_success().then_some(())?;
        r.json().await.ok()
    }

    async fn run(&self, port: u16, input: Value) -> String {
        let r = self
            .post(port, "/v2/echo/run", json!({ "input": input }))
            .await;
        r.expect("run accepted")["id"].as_str().unwrap().to_string()
    }

    async fn status(&self, port: u16, id: &str) -> Option<Value> {
        self.get(port, &format!("/v2/echo/status/{id}")).await
    }

    /// Poll until the job is final (through `port`), or panic after `limit`.
    async fn final_status(&self, port: u16, id: &str, limit: Duration) -> Value {
        let what = format!("job {id} not final after {limit:?}");
        eventually(
            limit,
            Duration::from_millis(100),
            &what,
            async || match self.status(port, id).await {
                Some(v) if is_final(&v) => Ok(v),
                other => Err(format!("{other:?}")),
            },
        )
        .await
    }
}

#[tokio::test]
async fn two_gateways_on_one_redis_share_jobs_status_and_streams() {
    let c = Cluster::new(RedisServer::start(), 2);
    let (pa, pb) = (free_port(), free_port());
    let _a = c.gateway(pa).await;
    let _b = c.gateway(pb).await;
    let _w = c.worker(pb, "wb");
    // Submitted through A, taken by a worker connected to B.
    let id = c
        .run(pa, json!({"stream": ["x", "y"], "sleep_ms": 300}))
        .await;
    let streamed = c
        .get(pb, &format!("/v2/echo/stream/{id}"))
        .await
        .expect("stream through B");
    let mut chunks: Vec<Value> = streamed["stream"].as_array().unwrap().clone();
    // `/stream` returns what is there; read until the job ends.
    while !is_final(&c.status(pa, &id).await.unwrap()) {
        let more = c.get(pb, &format!("/v2/echo/stream/{id}")).await.unwrap();
        chunks.extend(more["stream"].as_array().unwrap().iter().cloned());
    }
    let outputs: Vec<&Value> = chunks.iter().map(|c| &c["output"]).collect();
    assert_eq!(outputs, vec![&json!("x"), &json!("y")], "{streamed}");
    let via_a = c.final_status(pa, &id, Duration::from_secs(10)).await;
    let via_b = c.final_status(pb, &id, Duration::from_secs(10)).await;
    assert_eq!(via_a["status"], "COMPLETED");
    assert_eq!(via_a["workerId"], "wb");
    assert_eq!(via_a, via_b, "one job, one status, through either gateway");
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_it_to_another_and_the_client_sees_one_result() {
    let c = Cluster::new(RedisServer::start(), 2);
    let port = free_port();
    let _gw = c.gateway(port).await;
    let mut w1 = c.worker(port, "w1");
    let client = {
        let (http, url) = (
            c.http.clone(),
            format!("http://127.0.0.1:{port}/v2/echo/runsync?wait=60000"),
        );
        tokio::spawn(async move {
            let r = http
                .post(url)
                .json(&json!({"input": {"sleep_ms": 3000}}))
                .send()
                .await;
            r.unwrap().json::<Value>().await.unwrap()
        })
    };
    // Wait until w1 runs it, then kill w1 and start w2.
    let step = Duration::from_millis(50);
    eventually(
        Duration::from_secs(20),
        step,
        "w1 never took the job",
        async || {
            let h = c.get(port, "/v2/echo/health").await.unwrap();
            (h["jobs"]["inProgress"] == 1)
                .then_some(())
                .ok_or(h.to_string())
        },
    )
    .await;
    w1.kill();
    let _w2 = c.worker(port, "w2");
    let result = client.await.unwrap();
    assert_eq!(result["status"], "COMPLETED", "{result}");
    assert_eq!(result["retries"], 1, "{result}");
    assert_eq!(result["workerId"], "w2", "{result}");
    assert_eq!(result["output"], json!({"sleep_ms": 3000}));
    let h = c.get(port, "/v2/echo/health").await.unwrap();
    assert_eq!(
        (
            h["jobs"]["completed"].as_u64(),
            h["jobs"]["retried"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn a_gateway_killed_and_restarted_loses_no_acknowledged_job() {
    let mut c = Cluster::new(RedisServer::start_durable(), 2);
    let port = free_port();
    let mut gw = c.gateway(port).await;
    let _w = c.worker(port, "w");
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(c.run(port, json!({"i": i, "sleep_ms": 100})).await);
    }
    let h = c.get(port, "/v2/echo/health").await.unwrap();
    let pending =
        h["jobs"]["inQueue"].as_u64().unwrap() + h["jobs"]["inProgress"].as_u64().unwrap();
    assert!(pending > 0, "killed mid-run: {h}");
    // Mid-run: the gateway dies, and so does Redis (it restarts from its append-only file).
    gw.kill();
    c.redis.restart();
    let _gw = c.gateway(port).await;
    for id in &ids {
        let v = c.final_status(port, id, Duration::from_secs(60)).await;
        assert_eq!(v["status"], "COMPLETED", "{v}");
    }
}

#[tokio::test]
async fn fault_run_every_job_ends_once_while_workers_die() {
    let c = Cluster::new(RedisServer::start(), 3);
    let port = free_port();
    let _gw = c.gateway(port).await;
    let mut workers: Vec<Proc> = (0..3).map(|i| c.worker(port, &format!("w{i}-0"))).collect();
    let submitted = 300;
    let mut ids = Vec::new();
    let mut kills = 0;
    let mut rng = rand::rng();
    let t0 = Instant::now();
    for i in 0..submitted {
        let sleep_ms = rng.random_range(20..400);
        ids.push(c.run(port, json!({"i": i, "sleep_ms": sleep_ms})).await);
        if i % 20 == 19 {
            // Kill a random worker (SIGKILL, mid-job) and start a fresh one in its place.
            let k = rng.random_range(0..workers.len());
            workers[k].kill();
            kills += 1;
            workers[k] = c.worker(port, &format!("w{k}-{kills}"));
        }
        tokio::time::sleep(Duration::from_millis(60)).await;
    }
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    let mut retried = 0;
    for id in &ids {
        let v = c.final_status(port, id, Duration::from_secs(60)).await;
        let status = v["status"].as_str().unwrap().to_string();
        if status == "FAILED" {
            assert!(v["error"].as_str().unwrap().contains("retries"), "{v}");
        }
        retried += v["retries"].as_u64().unwrap();
        *counts.entry(status).or_default() += 1;
    }
    let h = c.get(port, "/v2/echo/health").await.unwrap();
    println!(
        "fault run: {submitted} jobs, {kills} workers killed, {:.1} s: {counts:?}, {retried} retries; store counts {}",
        t0.elapsed().as_secs_f64(),
        h["jobs"]
    );
    let completed = counts.get("COMPLETED").copied().unwrap_or(0);
    let failed = counts.get("FAILED").copied().unwrap_or(0);
    assert_eq!(completed + failed, submitted, "every job ended: {counts:?}");
    // Each job ended exactly once: the store counted as many completions as there are
    // completed jobs.
    assert_eq!(
        h["jobs"]["completed"].as_u64(),
        Some(completed as u64),
        "{h}"
    );
    assert_eq!(h["jobs"]["failed"].as_u64(), Some(failed as u64), "{h}");
    assert!(retried > 0, "the kills hit running jobs");
}

#[tokio::test]
async fn the_autoscaler_process_scales_workers_from_zero_and_back_on_redis() {
    let c = Cluster::new(RedisServer::start(), 2);
    let port = free_port();
    let _gw = c.gateway(port).await;
    let gw = format!("http://127.0.0.1:{port}");
    let _scaler = c.spawn(
        &[
            "autoscaler",
            "run",
            "--queue",
            &c.redis.url(),
            "--gateway",
            &gw,
        ],
        "autoscaler.log",
    );
    let workers = |h: &Value| h["fleet"].as_array().map(Vec::len).unwrap_or(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(workers(&c.get(port, "/v2/echo/health").await.unwrap()), 0);
    let ids = [
        c.run(port, json!({"sleep_ms": 1500})).await,
        c.run(port, json!({"sleep_ms": 1500})).await,
        c.run(port, json!({"sleep_ms": 1500})).await,
    ];
    // Three jobs, request_count 1 per worker, at most 2 workers.
    let mut peak = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let h = c.get(port, "/v2/echo/health").await.unwrap();
        peak = peak.max(workers(&h));
        if h["jobs"]["completed"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(peak, 2, "scaled up to max_workers");
    for id in &ids {
        let v = c.final_status(port, id, Duration::from_secs(30)).await;
        assert_eq!(v["status"], "COMPLETED", "{v}");
        assert!(v["delayTime"].as_u64().unwrap() > 0, "{v}");
    }
    // Idle for idle_timeout (1 s): back to zero, in the fleet view and in the store.
    let step = Duration::from_millis(100);
    eventually(
        Duration::from_secs(30),
        step,
        "not back to zero",
        async || {
            let h = c.get(port, "/v2/echo/health").await.unwrap();
            (workers(&h) == 0 && h["workers"]["idle"] == 0)
                .then_some(())
                .ok_or(h.to_string())
        },
    )
    .await;
}

/// POST an empty job to `/v2/echo/run`: status, body, and how long the answer took.
async fn try_run(c: &Cluster, port: u16) -> (u16, Value, Duration) {
    let t0 = Instant::now();
    let r = c
        .http
        .post(format!("http://127.0.0.1:{port}/v2/echo/run"))
        .json(&json!({"input": {}}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null), t0.elapsed())
}

#[tokio::test]
async fn redis_down_gives_a_clear_503_quickly_and_the_gateway_recovers() {
    let mut c = Cluster::new(RedisServer::start_durable(), 2);
    let port = free_port();
    let _gw = c.gateway(port).await;
    let id = c.run(port, json!({"x": 1})).await;
    c.redis.kill();
    let (status, body, took) = try_run(&c, port).await;
    assert_eq!(status, 503);
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains("job store unavailable"), "{body}");
    assert!(
        took < Duration::from_secs(8),
        "bounded, not a hang: {took:?}"
    );
    let ready = c
        .http
        .get(format!("http://127.0.0.1:{port}/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    c.redis.restart();
    // Back by itself, with the job acknowledged before the outage still there.
    let (limit, step) = (Duration::from_secs(15), Duration::from_millis(200));
    eventually(limit, step, "gateway did not recover", async || {
        c.status(port, &id).await.ok_or_else(String::new)
    })
    .await;
    c.run(port, json!({"x": 2})).await;
    // A Redis that hangs (frozen) is no better: 503 within the bound, then back.
    c.redis.freeze(true);
    let (status, _, took) = try_run(&c, port).await;
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(8), "bounded: {took:?}");
    c.redis.freeze(false);
    eventually(limit, step, "no recovery after the freeze", async || {
        let (status, body, _) = try_run(&c, port).await;
        (status == 200).then_some(()).ok_or(body.to_string())
    })
    .await;
}
