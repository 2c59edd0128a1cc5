//! `sluice bench` against a scripted OpenAI-style server whose timing is known exactly: the
//! measured TTFT, ITL, TPOT and throughputs must match the script, and runs must stop at their
//! bounds. (The same client against sluice with the real model runs in the e2e suite.)

use axum::body::Body;
use axum::routing::post;
use axum::Router;
use loadtests::{run, BenchArgs};
use std::time::{Duration, Instant};

/// First token after `FIRST`, then `TOKENS - 1` more, `GAP` apart.
const FIRST: Duration = Duration::from_millis(200);
const GAP: Duration = Duration::from_millis(40);
const TOKENS: usize = 6;

async fn scripted() -> axum::response::Response {
    let stream = async_stream(TOKENS);
    axum::response::Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    tokens: usize,
) -> impl futures::Stream<Item = Result<String, std::convert::Infallible>> {
    futures::stream::unfold(0usize, move |i| async move {
        if i > tokens + 1 {
            return None;
        }
        let event = if i < tokens {
            tokio::time::sleep(if i == 0 { FIRST } else { GAP }).await;
            format!(
                "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n"
            )
        } else if i == tokens {
            format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":3,\"completion_tokens\":{tokens}}}}}\n\n")
        } else {
            "data: [DONE]\n\n".to_string()
        };
        Some((Ok(event), i + 1))
    })
}

async fn server() -> String {
    let app = Router::new().route("/v1/chat/completions", post(scripted));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

#[derive(clap::Parser)]
struct Cli {
    #[command(flatten)]
    bench: BenchArgs,
}

/// The command line's defaults, at `base_url`, 4 requests 2 at a time.
fn args(base_url: String) -> BenchArgs {
    use clap::Parser;
    let mut a = Cli::parse_from(["bench", "--base-url", &base_url]).bench;
    a.num_prompts = 4;
    a.max_concurrency = Some(2);
    a.model = "m".into();
    a.label = "scripted".into();
    a
}

fn near(measured_ms: f64, expected: Duration, tolerance_ms: f64) -> bool {
    (measured_ms - expected.as_secs_f64() * 1e3).abs() <= tolerance_ms
}

#[tokio::test]
async fn metrics_match_the_scripted_timing() {
    let url = server().await;
    let s = run(&args(url)).await.unwrap().summary;
    assert_eq!((s.completed, s.failed), (4, 0));
    assert_eq!(s.total_output_tokens, 4 * TOKENS);
    assert_eq!(s.total_input_tokens, 4 * 3);
    assert!(near(s.ttft_ms.median, FIRST, 30.0), "ttft {:?}", s.ttft_ms);
    assert!(near(s.itl_ms.median, GAP, 15.0), "itl {:?}", s.itl_ms);
    assert!(near(s.tpot_ms.mean, GAP, 15.0), "tpot {:?}", s.tpot_ms);
    let one = FIRST + GAP * (TOKENS as u32 - 1);
    assert!(near(s.e2el_ms.median, one, 40.0), "e2el {:?}", s.e2el_ms);
    // Two waves of two requests: about twice one request's latency.
    assert!(
        near(s.duration * 1e3, one * 2, 80.0),
        "duration {}",
        s.duration
    );
    assert!((s.output_throughput - s.total_output_tokens as f64 / s.duration).abs() < 1e-6);
}

#[tokio::test]
async fn a_run_stops_at_its_time_bound() {
    let url = server().await;
    let mut a = args(url);
    a.num_prompts = 1000;
    a.max_concurrency = Some(1);
    a.max_duration_secs = 1;
    let t0 = Instant::now();
    let s = run(&a).await.unwrap().summary;
    assert!(
        t0.elapsed() < Duration::from_millis(1500),
        "took {:?}",
        t0.elapsed()
    );
    assert!(
        s.completed >= 2 && s.completed < 10,
        "completed {}",
        s.completed
    );
}

#[tokio::test]
async fn open_loop_arrivals_follow_the_rate() {
    let url = server().await;
    let mut a = args(url);
    a.num_prompts = 20;
    a.max_concurrency = Some(100);
    a.request_rate = 20.0;
    a.seed = 3;
    let s = run(&a).await.unwrap().summary;
    assert_eq!(s.completed, 20);
    // 19 gaps at 20/s is about 0.95 s of arrivals plus one request's latency.
    assert!(
        s.duration > 0.6 && s.duration < 2.5,
        "duration {}",
        s.duration
    );
}

/// A server that answers each request with one token after 500 ms.
async fn slow_server() -> String {
    async fn slow() -> axum::response::Response {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let body = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"}}]}\n\n\
                    data: {\"choices\":[],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n\
                    data: [DONE]\n\n";
        axum::response::Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from(body))
            .unwrap()
    }
    let app = Router::new().route("/v1/chat/completions", post(slow));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    url
}

/// The most requests in flight at once over a run.
fn peak_in_flight(records: &[loadtests::metrics::RequestRecord]) -> usize {
    let mut edges: Vec<(Duration, i32)> = records
        .iter()
        .flat_map(|r| [(r.start, 1), (r.start + r.latency, -1)])
        .collect();
    edges.sort();
    let (mut now, mut peak) = (0i32, 0i32);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

#[tokio::test]
async fn default_flags_mean_vllms_open_loop_with_no_concurrency_cap() {
    use clap::Parser;
    let url = slow_server().await;
    // vLLM's definition: arrivals at the rate whatever the server does, no cap unless
    // --max-concurrency. 20/s x 0.5 s per request: 10 in flight (Little's law); with
    // near-even gaps (burstiness 100) the peak is about that, with Poisson gaps it varies
    // around it, but never 1.
    let flags = |burstiness: &str| {
        Cli::parse_from([
            "bench",
            "--base-url",
            &url,
            "--num-prompts",
            "40",
            "--request-rate",
            "20",
            "--burstiness",
            burstiness,
            "--seed",
            "1",
        ])
        .bench
    };
    let a = flags("100");
    assert_eq!(a.max_concurrency, None);
    let r = run(&a).await.unwrap();
    assert_eq!(r.summary.completed, 40);
    let peak = peak_in_flight(&r.records);
    assert!((9..=12).contains(&peak), "peak in flight {peak}");
    let peak = peak_in_flight(&run(&flags("1")).await.unwrap().records);
    assert!(
        (6..=25).contains(&peak),
        "Poisson arrivals: peak in flight {peak}"
    );
    // The same flags with a cap of 1: one at a time.
    let capped = Cli::parse_from([
        "bench",
        "--base-url",
        &url,
        "--num-prompts",
        "6",
        "--request-rate",
        "20",
        "--max-concurrency",
        "1",
    ])
    .bench;
    let r = run(&capped).await.unwrap();
    assert_eq!(peak_in_flight(&r.records), 1);
}

#[tokio::test]
async fn connection_errors_are_counted_not_fatal() {
    let mut a = args("http://127.0.0.1:9".into());
    a.num_prompts = 3;
    let s = run(&a).await.unwrap().summary;
    assert_eq!((s.completed, s.failed), (0, 3));
    assert_eq!(s.errors.get("connect"), Some(&3));
}

mod queue_api {
    //! The queue-API workloads and the cold-start scenario against a scripted RunPod-style
    //! server: a job is queued, then runs, with known `delayTime` and `executionTime`.
    use super::*;
    use axum::extract::State;
    use axum::routing::get;
    use axum::Json;
    use loadtests::queue_client::QueueMode;
    use serde_json::{json, Value};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[derive(Default)]
    struct Script {
        status_calls: AtomicUsize,
        stream_calls: AtomicUsize,
        started: std::sync::OnceLock<Instant>,
    }

    fn done() -> Value {
        json!({"id": "j1", "status": "COMPLETED", "delayTime": 120, "executionTime": 300,
               "output": {"usage": {"prompt_tokens": 3, "completion_tokens": 5}}})
    }

    async fn server() -> String {
        let script = Arc::new(Script::default());
        let app = Router::new()
            .route(
                "/v2/m/run",
                post(|| async { Json(json!({"id": "j1", "status": "IN_QUEUE"})) }),
            )
            .route(
                "/v2/m/runsync",
                post(|| async {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Json(done())
                }),
            )
            .route(
                "/v2/m/status/j1",
                get(|State(s): State<Arc<Script>>| async move {
                    // In progress for the first two polls.
                    if s.status_calls.fetch_add(1, Ordering::SeqCst) < 2 {
                        Json(json!({"id": "j1", "status": "IN_PROGRESS"}))
                    } else {
                        Json(done())
                    }
                }),
            )
            .route(
                "/v2/m/stream/j1",
                get(|State(s): State<Arc<Script>>| async move {
                    Json(match s.stream_calls.fetch_add(1, Ordering::SeqCst) {
                        0 => json!({"status": "IN_PROGRESS", "stream": []}),
                        1 => json!({"status": "IN_PROGRESS", "stream": [{"output": "a"}]}),
                        2 => json!({"status": "COMPLETED", "stream": [{"output": "b"}]}),
                        _ => json!({"status": "COMPLETED", "stream": []}),
                    })
                }),
            )
            .route(
                "/v2/m/health",
                get(|State(s): State<Arc<Script>>| async move {
                    // One idle worker for the first 600 ms, then scaled to zero.
                    let t0 = *s.started.get_or_init(Instant::now);
                    let idle = u32::from(t0.elapsed() < Duration::from_millis(600));
                    Json(json!({"jobs": {}, "workers": {"idle": idle, "running": 0}}))
                }),
            )
            .route("/v1/chat/completions", post(scripted))
            .with_state(script);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn queue_args(url: String, mode: QueueMode) -> BenchArgs {
        let mut a = args(url);
        a.api = loadtests::Api::Queue;
        a.queue_mode = mode;
        a.num_prompts = 1;
        a.poll_interval_ms = 50;
        a
    }

    #[tokio::test]
    async fn run_then_poll_status_reports_server_times() {
        let s = run(&queue_args(server().await, QueueMode::Run))
            .await
            .unwrap()
            .summary;
        assert_eq!((s.completed, s.failed), (1, 0));
        assert_eq!(s.total_output_tokens, 5);
        assert_eq!((s.delay_ms.median, s.execution_ms.median), (120.0, 300.0));
        // Three polls 50 ms apart.
        assert!(
            near(s.e2el_ms.median, Duration::from_millis(150), 60.0),
            "{:?}",
            s.e2el_ms
        );
    }

    #[tokio::test]
    async fn runsync_takes_one_round_trip() {
        let s = run(&queue_args(server().await, QueueMode::Runsync))
            .await
            .unwrap()
            .summary;
        assert_eq!(s.completed, 1);
        assert!(
            near(s.e2el_ms.median, Duration::from_millis(100), 40.0),
            "{:?}",
            s.e2el_ms
        );
    }

    #[tokio::test]
    async fn stream_mode_times_the_first_chunk_and_reads_to_the_end() {
        let s = run(&queue_args(server().await, QueueMode::Stream))
            .await
            .unwrap()
            .summary;
        assert_eq!(s.completed, 1, "{:?}", s.errors);
        // The first chunk comes on the second poll; the stream ends on the fourth.
        assert!(
            near(s.ttft_ms.median, Duration::from_millis(100), 40.0),
            "{:?}",
            s.ttft_ms
        );
        assert!(s.e2el_ms.median >= 190.0, "{:?}", s.e2el_ms);
    }

    #[tokio::test]
    async fn cold_start_waits_for_zero_workers_first() {
        let url = server().await;
        let mut a = args(url);
        a.cold_start = true;
        a.num_prompts = 1;
        let t0 = Instant::now();
        let r = run(&a).await.unwrap();
        assert_eq!(r.summary.completed, 1);
        assert!(
            t0.elapsed() >= Duration::from_millis(600),
            "sent before the endpoint was idle"
        );
        assert!(r.records[0].start >= Duration::from_millis(550));
    }
}
