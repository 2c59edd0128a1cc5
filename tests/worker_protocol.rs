//! The worker loop (`worker::run_worker`) against the real gateway over real HTTP on loopback,
//! with a scripted handler instead of the model: job hand-out, batched streaming, results,
//! cancellation through `job-stop`, and the worker token. The model-backed path is covered by
//! the end-to-end tests in `tests/e2e`.

use async_trait::async_trait;
use gateway::{Gateway, ServedModel};
use protocol::sse::{Parser, DONE};
use protocol::{GatewaySettings, ModelConfig};
use queue::{MemoryStore, StoreSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use worker::{run_worker, JobError, JobHandler, StreamSink, WorkerOptions};

const TOKEN: &str = "test-worker-token";

/// Streams the words of the last message, one chunk each; "wait" makes it run until cancelled.
struct Words {
    cancelled: AtomicUsize,
}

#[async_trait]
impl JobHandler for Words {
    async fn handle(
        &self,
        input: Value,
        sink: StreamSink,
        cancel: CancellationToken,
    ) -> Result<Value, JobError> {
        let text = input["openai_input"]["messages"][0]["content"]
            .as_str()
            .unwrap_or("")
            .to_string();
        if text == "fail" {
            return Err(JobError::Failed("scripted failure".into()));
        }
        if text == "invalid" {
            return Err(JobError::Invalid("scripted bad input".into()));
        }
        if text == "wait" {
            sink.send(json!({"choices": [{"index": 0, "delta": {"content": "waiting"}}]}));
            cancel.cancelled().await;
            self.cancelled.fetch_add(1, Ordering::SeqCst);
            return Err(JobError::Cancelled);
        }
        for w in text.split(' ') {
            sink.send(json!({"choices": [{"index": 0, "delta": {"content": w}}]}));
        }
        Ok(json!({"object": "chat.completion", "echo": text}))
    }
}

fn model_config() -> ModelConfig {
    toml::from_str(
        r#"name = "words"
[source]
kind = "pip"
package = "none"
path = "none"
[weights]
file = "none.gguf"
sha256 = "00"
[engine]
max_num_seqs = 4
context_length = 64
"#,
    )
    .unwrap()
}

struct Harness {
    base: String,
    handler: Arc<Words>,
    stop: CancellationToken,
}

async fn start() -> Harness {
    let store = MemoryStore::start(StoreSettings::default());
    let mut models = BTreeMap::new();
    models.insert(
        "words".to_string(),
        ServedModel {
            config: model_config(),
            tokenizer: None,
        },
    );
    let gw = Arc::new(Gateway {
        store,
        models,
        custom: BTreeMap::new(),
        settings: GatewaySettings::default(),
        worker_token: TOKEN.into(),
        long_poll: Duration::from_secs(2),
        batches: None,
        webhook_targets: Default::default(),
        keys: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let stop = CancellationToken::new();
    tokio::spawn(gateway::serve(listener, gw, stop.clone().cancelled_owned()));
    let handler = Arc::new(Words {
        cancelled: AtomicUsize::new(0),
    });
    let opts = WorkerOptions {
        gateway: base.clone(),
        endpoint: "words".into(),
        worker_id: "w1".into(),
        token: TOKEN.into(),
        concurrency: 4,
        max_take: 4,
        ping_interval: Duration::from_millis(200),
    };
    tokio::spawn(run_worker(
        handler.clone(),
        opts,
        stop.clone(),
        Duration::from_secs(1),
    ));
    Harness {
        base,
        handler,
        stop,
    }
}

fn chat(content: &str, stream: bool) -> Value {
    json!({"model": "words", "messages": [{"role": "user", "content": content}], "stream": stream})
}

#[tokio::test]
async fn non_streamed_request_returns_the_handlers_output() {
    let h = start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("a b c", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let job = r.headers()["x-sluice-job-id"].to_str().unwrap().to_string();
    assert_eq!(r.json::<Value>().await.unwrap()["echo"], "a b c");
    let status: Value = http
        .get(format!("{}/v2/words/status/{job}", h.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "COMPLETED");
    assert!(status["delayTime"].is_u64() && status["executionTime"].is_u64());
    h.stop.cancel();
}

#[tokio::test]
async fn streamed_request_relays_every_chunk_then_done() {
    let h = start().await;
    let r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("one two three four", true))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let events = Parser::new().feed(&r.text().await.unwrap());
    assert_eq!(events.last().map(String::as_str), Some(DONE));
    let words: Vec<String> = events[..events.len() - 1]
        .iter()
        .map(|e| {
            serde_json::from_str::<Value>(e).unwrap()["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(words, vec!["one", "two", "three", "four"]);
    h.stop.cancel();
}

#[tokio::test]
async fn handler_errors_become_500_or_400_and_an_sse_error_event() {
    let h = start().await;
    let http = reqwest::Client::new();
    let r = http
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("fail", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripted failure"),
        "{body}"
    );
    assert_eq!(body["error"]["type"], "server_error");
    let r = http
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("fail", true))
        .send()
        .await
        .unwrap();
    let events = Parser::new().feed(&r.text().await.unwrap());
    assert!(events[0].contains("scripted failure"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some(DONE));
    // An input only the worker finds wrong is the client's fault: 400, not 500.
    let r = http
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("invalid", false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("scripted bad input"),
        "{body}"
    );
    let r = http
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("invalid", true))
        .send()
        .await
        .unwrap();
    let events = Parser::new().feed(&r.text().await.unwrap());
    let error: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(
        error["error"]["type"], "invalid_request_error",
        "{events:?}"
    );
    assert_eq!(
        error["error"]["message"],
        "invalid request: scripted bad input"
    );
    h.stop.cancel();
}

#[tokio::test]
async fn client_disconnect_reaches_the_running_handler() {
    let h = start().await;
    let mut r = reqwest::Client::new()
        .post(format!("{}/v1/chat/completions", h.base))
        .json(&chat("wait", true))
        .send()
        .await
        .unwrap();
    // The first chunk proves the handler is running; then hang up.
    let first = r.chunk().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("waiting"));
    drop(r);
    for _ in 0..100 {
        if h.handler.cancelled.load(Ordering::SeqCst) == 1 {
            h.stop.cancel();
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the handler was never told to stop");
}

#[tokio::test]
async fn worker_routes_need_the_token_and_a_known_endpoint() {
    let h = start().await;
    let http = reqwest::Client::new();
    let url = format!("{}/v2/words/job-take/intruder", h.base);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let r = http
        .get(&url)
        .header("Authorization", "wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.json::<Value>().await.unwrap()["error"].is_string(),
        "RunPod-shaped error"
    );
    let r = http
        .get(format!("{}/v2/nope/job-take/w", h.base))
        .header("Authorization", TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // A worker cannot report on a job it does not hold.
    let r = http
        .post(format!("{}/v2/words/job-done/w9/123", h.base))
        .header("Authorization", TOKEN)
        .body("{\"output\": 1}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    h.stop.cancel();
}
