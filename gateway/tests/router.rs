//! The router's policy per route group, driven in-process (`tower::ServiceExt::oneshot`, the
//! in-memory store): which credential each group asks for, the error shape each API answers
//! with, and the body limit each route states.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gateway::{Gateway, ServedModel};
use protocol::{CustomEndpoint, GatewaySettings, ModelConfig};
use queue::{MemoryStore, StoreSettings};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower::ServiceExt;

const KEY: &str = "sk-client";
const TOKEN: &str = "worker-secret";

fn app(max_body_bytes: usize) -> axum::Router {
    gateway::router(Arc::new(gateway(max_body_bytes)))
}

fn gateway(max_body_bytes: usize) -> Gateway {
    let model: ModelConfig = toml::from_str(
        r#"name = "m"
[source]
kind = "pip"
package = "p"
path = "p/m.gguf"
[weights]
file = "m.gguf"
sha256 = "00"
[engine]
max_num_seqs = 1
context_length = 64
"#,
    )
    .unwrap();
    let custom: CustomEndpoint = toml::from_str("name = \"echo\"\ncommand = [\"true\"]\n").unwrap();
    let settings = GatewaySettings {
        api_keys: vec![KEY.into()],
        max_body_bytes,
        ..GatewaySettings::default()
    };
    Gateway {
        store: MemoryStore::start(StoreSettings::default()),
        models: BTreeMap::from([(
            "m".to_string(),
            ServedModel {
                config: model,
                tokenizer: None,
            },
        )]),
        custom: BTreeMap::from([("echo".to_string(), custom)]),
        keys: gateway::auth::Keyring::new(&settings).unwrap(),
        settings,
        worker_token: TOKEN.into(),
        long_poll: Duration::from_millis(10),
        batches: None,
        webhook_targets: Default::default(),
    }
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    auth: Option<&str>,
    body: &str,
) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// OpenAI's error object: `{"error": {"message", "type", "param", "code"}}`.
fn is_openai_error(v: &Value) -> bool {
    v["error"].is_object() && v["error"]["message"].is_string() && v["error"]["type"].is_string()
}

/// RunPod's: `{"error": "message"}`.
fn is_runpod_error(v: &Value) -> bool {
    v["error"].is_string()
}

#[tokio::test]
async fn each_group_asks_for_its_own_credential_and_answers_in_its_api_shape() {
    let app = app(1024);
    // Probes: no credential.
    assert_eq!(
        call(&app, "GET", "/health", None, "").await.0,
        StatusCode::OK
    );
    // OpenAI routes: the client key; OpenAI's shape when it is missing or wrong.
    for uri in ["/v1/models", "/v2/m/openai/v1/models"] {
        let (s, v) = call(&app, "GET", uri, None, "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(is_openai_error(&v), "{uri}: {v}");
        let (s, _) = call(&app, "GET", uri, Some("Bearer sk-wrong"), "").await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{uri}");
        let (s, _) = call(&app, "GET", uri, Some(&format!("Bearer {KEY}")), "").await;
        assert_eq!(s, StatusCode::OK, "{uri}");
    }
    // Queue routes: the client key (bare, as RunPod's docs send it, or Bearer); RunPod's shape.
    let (s, v) = call(&app, "GET", "/v2/echo/health", None, "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(is_runpod_error(&v), "{v}");
    assert_eq!(
        call(&app, "GET", "/v2/echo/health", Some(KEY), "").await.0,
        StatusCode::OK
    );
    // Worker routes: the worker token, never a client key.
    let take = "/v2/echo/job-take/w1?x=1";
    let (s, v) = call(&app, "GET", take, Some(KEY), "").await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert!(is_runpod_error(&v), "{v}");
    assert_eq!(
        call(&app, "GET", take, Some(TOKEN), "").await.0,
        StatusCode::NO_CONTENT
    );
    // A worker token opens no client route.
    assert_eq!(
        call(&app, "GET", "/v1/models", Some(TOKEN), "").await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn body_limits_are_the_routes_own() {
    let app = app(1024);
    let auth = Some(KEY);
    let big = format!("{{\"input\": \"{}\"}}", "x".repeat(2048));
    // /v1 and the worker routes: the configured limit (1 KiB here), in each API's shape.
    let (s, v) = call(&app, "POST", "/v1/completions", auth, &big).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        is_openai_error(&v) && v["error"]["message"].as_str().unwrap().contains("1024"),
        "{v}"
    );
    let done = "/v2/echo/job-done/w1/j1?x=1";
    assert_eq!(
        call(&app, "POST", done, Some(TOKEN), &big).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    // run: RunPod's 10 MB, whatever the configured limit.
    let (s, v) = call(&app, "POST", "/v2/echo/run", auth, &big).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let huge = format!("{{\"input\": \"{}\"}}", "x".repeat(10 * 1024 * 1024));
    let (s, v) = call(&app, "POST", "/v2/echo/run", auth, &huge).await;
    assert_eq!(s, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(is_runpod_error(&v), "{v}");
    // runsync: 20 MB.
    let (s, _) = call(&app, "POST", "/v2/echo/runsync?wait=1000", auth, &huge).await;
    assert_ne!(s, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn bad_input_gets_each_apis_error_shape() {
    let app = app(1 << 20);
    let auth = Some(KEY);
    let (s, v) = call(&app, "POST", "/v1/chat/completions", auth, "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(is_openai_error(&v), "{v}");
    let (s, v) = call(
        &app,
        "POST",
        "/v1/chat/completions",
        auth,
        &json!({"model": "m", "messages": [], "tools": [1]}).to_string(),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(is_openai_error(&v), "{v}");
    let (s, v) = call(&app, "POST", "/v2/echo/run", auth, "{\"nope\": 1}").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(is_runpod_error(&v), "{v}");
    let (s, v) = call(&app, "POST", "/v2/nowhere/run", auth, "{\"input\": 1}").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(is_runpod_error(&v), "{v}");
    // Every job route checks its endpoint first, and answers an unknown job the same way.
    for (method, path) in [("GET", "status"), ("POST", "cancel"), ("GET", "stream")] {
        for (uri, what) in [
            (format!("/v2/nowhere/{path}/j1"), "endpoint `nowhere`"),
            (format!("/v2/echo/{path}/j1"), "j1"),
        ] {
            let (s, v) = call(&app, method, &uri, auth, "").await;
            assert_eq!(s, StatusCode::NOT_FOUND, "{uri}: {v}");
            assert!(is_runpod_error(&v), "{v}");
            assert!(v["error"].as_str().unwrap().contains(what), "{uri}: {v}");
        }
    }
    let (s, v) = call(&app, "GET", "/v9/what", auth, "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(is_openai_error(&v), "{v}");
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_the_document_is_served() {
    let app = app(1 << 20);
    let (s, doc) = call(&app, "GET", "/openapi.json", None, "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = 0;
    for (method, path) in gateway::openapi::documented_routes() {
        let uri = path
            .replace("{endpoint}", "m")
            .replace("{job}", "j1")
            .replace("{file_id}", "file-1")
            .replace("{batch_id}", "batch_1");
        let (s, v) = call(&app, method, &uri, Some(KEY), "").await;
        // Routed: whatever the answer, it is not the fallback's "no such route" nor a 405.
        assert_ne!(s, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        let fallback = v["error"]["message"] == "no such route";
        // The Files and Batch routes answer 404 on a gateway without batch storage, with
        // their own message.
        assert!(!fallback, "{method} {uri} is documented but not routed");
        let doc_path = &doc["paths"][path];
        assert!(
            doc_path[method.to_lowercase()].is_object(),
            "{method} {path}"
        );
        documented += 1;
    }
    assert!(documented >= 27, "{documented}");
}

#[tokio::test]
async fn a_vllm_priority_above_0_queues_the_job_behind_normal_ones() {
    let gw = gateway(1 << 20);
    let store = gw.store.clone();
    let app = gateway::router(Arc::new(gw));
    for (priority, low) in [(json!(1), true), (json!(0), false), (json!(-3), false)] {
        let body = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1, "priority": priority});
        // No worker runs here: the request waits on its queued job until it is dropped,
        // which cancels the job.
        let (app2, body) = (app.clone(), body.to_string());
        let waiting = tokio::spawn(async move {
            call(
                &app2,
                "POST",
                "/v1/chat/completions",
                Some(&format!("Bearer {KEY}")),
                &body,
            )
            .await
        });
        let mut queued = (0, 0);
        for _ in 0..200 {
            let m = store.metrics("m").await.unwrap();
            queued = (m.in_queue, m.in_queue_low_priority);
            if queued != (0, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let want = if low { (0, 1) } else { (1, 0) };
        assert_eq!(queued, want, "priority {priority}");
        waiting.abort();
        let _ = waiting.await;
        for _ in 0..200 {
            let m = store.metrics("m").await.unwrap();
            if (m.in_queue, m.in_queue_low_priority) == (0, 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
