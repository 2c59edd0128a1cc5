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
    a.max_concurrency = 2;
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
    a.max_concurrency = 1;
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
    a.max_concurrency = 100;
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

#[tokio::test]
async fn connection_errors_are_counted_not_fatal() {
    let mut a = args("http://127.0.0.1:9".into());
    a.num_prompts = 3;
    let s = run(&a).await.unwrap().summary;
    assert_eq!((s.completed, s.failed), (0, 3));
    assert_eq!(s.errors.get("connect"), Some(&3));
}
