//! The gateway: public HTTP API (OpenAI `/v1/*`), the worker API (`/v2/{endpoint}/job-*`,
//! RunPod's worker protocol), health and readiness. It validates requests, turns them into
//! jobs in a [`JobStore`], and relays results; it never runs a model itself.

mod auth;
mod body;
pub mod error;
mod openai_api;
mod queue_api;
mod relay;
pub mod webhooks;
mod worker_api;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use protocol::{CustomEndpoint, GatewaySettings, ModelConfig};
use queue::JobStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use weights::PromptTokenizer;

pub use error::GatewayError;

/// A model the gateway serves: its config and tokenizer (for counting prompt tokens before
/// enqueueing; without one, prompts are not checked against the context here).
pub struct ServedModel {
    pub config: ModelConfig,
    pub tokenizer: Option<Arc<PromptTokenizer>>,
}

pub struct Gateway {
    pub store: Arc<dyn JobStore>,
    /// LLM endpoints, by served model name.
    pub models: BTreeMap<String, ServedModel>,
    /// Custom (RunPod handler) endpoints, by name.
    pub custom: BTreeMap<String, CustomEndpoint>,
    pub settings: GatewaySettings,
    /// Workers must present this token on every worker-API call.
    pub worker_token: String,
    /// How long `job-take` and `job-stop` long-polls wait before answering 204.
    pub long_poll: Duration,
}

pub type AppState = Arc<Gateway>;

impl Gateway {
    fn model(&self, name: &str) -> Result<&ServedModel, GatewayError> {
        self.models
            .get(name)
            .ok_or_else(|| GatewayError::ModelNotFound(name.to_string()))
    }

    /// An endpoint of either kind, for the queue and worker APIs.
    pub fn endpoint(&self, name: &str) -> Result<EndpointInfo, GatewayError> {
        let scaling = match (self.models.get(name), self.custom.get(name)) {
            (Some(m), _) => m.config.scaling.clone(),
            (None, Some(c)) => c.effective_scaling(),
            (None, None) => {
                return Err(GatewayError::NotFound(format!(
                    "endpoint `{name}` not found"
                )))
            }
        };
        Ok(EndpointInfo {
            execution_timeout: Duration::from_secs(scaling.execution_timeout_secs),
            min_workers: scaling.min_workers as usize,
        })
    }

    /// Every endpoint's name.
    pub fn endpoint_names(&self) -> Vec<String> {
        self.models
            .keys()
            .chain(self.custom.keys())
            .cloned()
            .collect()
    }
}

/// What the queue API needs to know of an endpoint.
pub struct EndpointInfo {
    pub execution_timeout: Duration,
    /// Always-on workers; with 0 the endpoint scales from zero and takes work without any.
    pub min_workers: usize,
}

/// The whole HTTP surface, as one table.
pub fn router(state: AppState) -> Router {
    let limit = state.settings.max_body_bytes;
    Router::new()
        .route("/health", get(openai_api::health))
        .route("/ready", get(openai_api::ready))
        .route("/v1/models", get(openai_api::models))
        .route("/v1/chat/completions", post(openai_api::chat_completions))
        .route("/v1/completions", post(openai_api::completions))
        .route(
            "/v2/{endpoint}/run",
            post(queue_api::run).layer(DefaultBodyLimit::max(queue_api::RUN_LIMIT)),
        )
        .route(
            "/v2/{endpoint}/runsync",
            post(queue_api::runsync).layer(DefaultBodyLimit::max(queue_api::RUNSYNC_LIMIT)),
        )
        .route(
            "/v2/{endpoint}/status/{job}",
            get(queue_api::status).post(queue_api::status),
        )
        .route(
            "/v2/{endpoint}/status-sync/{job}",
            get(queue_api::status_sync).post(queue_api::status_sync),
        )
        .route(
            "/v2/{endpoint}/stream/{job}",
            get(queue_api::stream).post(queue_api::stream),
        )
        .route("/v2/{endpoint}/cancel/{job}", post(queue_api::cancel))
        .route("/v2/{endpoint}/retry/{job}", post(queue_api::retry))
        .route("/v2/{endpoint}/purge-queue", post(queue_api::purge_queue))
        .route("/v2/{endpoint}/health", get(queue_api::health))
        .route(
            "/v2/{endpoint}/openai/v1/models",
            get(openai_api::endpoint_models),
        )
        .route(
            "/v2/{endpoint}/openai/v1/chat/completions",
            post(openai_api::endpoint_chat_completions),
        )
        .route(
            "/v2/{endpoint}/openai/v1/completions",
            post(openai_api::endpoint_completions),
        )
        .route(
            "/v2/{endpoint}/job-take/{worker}",
            get(worker_api::job_take),
        )
        .route(
            "/v2/{endpoint}/job-take-batch/{worker}",
            get(worker_api::job_take_batch),
        )
        .route(
            "/v2/{endpoint}/job-done/{worker}/{job}",
            post(worker_api::job_done),
        )
        .route(
            "/v2/{endpoint}/job-stream/{worker}/{job}",
            post(worker_api::job_stream),
        )
        .route("/v2/{endpoint}/ping/{worker}", get(worker_api::ping))
        .route(
            "/v2/{endpoint}/job-stop/{worker}",
            get(worker_api::job_stop),
        )
        .fallback(openai_api::not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::client_key,
        ))
        .layer(DefaultBodyLimit::max(limit))
        // 5xx answers are expected ones here (503 from /ready while workers start, a failed
        // job's 500); they are logged where they arise, so the trace layer keeps them at debug.
        .layer(
            TraceLayer::new_for_http()
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .with_state(state)
}

/// Serve `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
