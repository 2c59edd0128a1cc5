//! The gateway: public HTTP API (OpenAI `/v1/*`), the worker API (`/v2/{endpoint}/job-*`,
//! RunPod's worker protocol), health and readiness. It validates requests, turns them into
//! jobs in a [`JobStore`], and relays results; it never runs a model itself.

#![warn(missing_docs)]

mod anthropic_api;
pub mod auth;
pub mod batch;
mod body;
mod cold;
mod embeddings;
pub mod error;
mod files;
pub mod metrics;
mod openai_api;
pub mod openapi;
mod queue_api;
mod relay;
mod responses_api;
mod server;
mod structured;
mod tokenize;
pub mod trace;
pub mod webhooks;
mod worker_api;

use axum::extract::DefaultBodyLimit;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::from_fn_with_state;
use axum::routing::{get, post};
use axum::Router;
use protocol::{CustomEndpoint, GatewaySettings, ModelConfig};
use queue::JobStore;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::{DefaultOnFailure, TraceLayer};
use weights::PromptTokenizer;

pub use error::GatewayError;

/// A model the gateway serves: its config and tokenizer (for counting prompt tokens before
/// enqueueing; without one, prompts are not checked against the context here).
pub struct ServedModel {
    /// The model's entry in the deployment config (source, weights, engine, scaling).
    pub config: ModelConfig,
    /// Its prompt tokenizer, read from the weight cache; `None` when the model is not cached
    /// where the gateway runs.
    pub tokenizer: Option<Arc<PromptTokenizer>>,
}

/// The gateway's shared state: the job store, the endpoints it serves and its settings.
pub struct Gateway {
    /// The job store (in-memory or Redis) that jobs are submitted to and workers take from.
    pub store: Arc<dyn JobStore>,
    /// LLM endpoints, by served model name.
    pub models: BTreeMap<String, ServedModel>,
    /// Custom (RunPod handler) endpoints, by name.
    pub custom: BTreeMap<String, CustomEndpoint>,
    /// The config's `[gateway]` settings (API keys, body and queue limits, timeouts).
    pub settings: GatewaySettings,
    /// Workers must present this token on every worker-API call.
    pub worker_token: String,
    /// How long `job-take` and `job-stop` long-polls wait before answering 204.
    pub long_poll: Duration,
    /// The client keys, their scopes and limits (none: everyone may call).
    pub keys: auth::Keyring,
    /// Which addresses webhooks may reach (public ones and `gateway.webhook_allow_cidrs`).
    pub webhook_targets: webhooks::Targets,
    /// The Files and Batch APIs' files and batches; `None`: those routes answer 404.
    pub batches: Option<Arc<batch::Batches>>,
}

/// The state every handler gets: the [`Gateway`], shared.
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
    /// The endpoint's `execution_timeout_secs`: the execution timeout of jobs submitted
    /// without a `policy`.
    pub execution_timeout: Duration,
    /// Always-on workers; with 0 the endpoint scales from zero and takes work without any.
    pub min_workers: usize,
}

/// The whole HTTP surface, as route groups that each carry their policy: probes (no
/// credentials), the OpenAI routes and the queue routes (client keys, each with its API's
/// error shape), and the worker protocol (worker token). Body limits are stated by each
/// handler's `JsonBody` type, so axum's default limit is off.
pub fn router(state: AppState) -> Router {
    use protocol::routes::{self, queue, WorkerRoute};
    metrics::install();
    let names: Vec<String> = state.models.keys().cloned().collect();
    // Built once: the served names are fixed for the gateway's life.
    let spec = axum::body::Bytes::from(openapi::document(&names, &state.endpoint_names()));
    let probes = Router::new()
        .route(routes::HEALTH, get(openai_api::health))
        .route(routes::READY, get(openai_api::ready))
        .route(routes::METRICS, get(metrics::render))
        .route(
            routes::OPENAPI,
            get(|| async move { ([(CONTENT_TYPE, "application/json")], spec) }),
        );
    // Generating routes carry the keys' rate limits; all carry the keys (route layers, so the
    // `{endpoint}` of a route is checked against the key's scope).
    let generate = Router::new()
        .route(routes::CHAT_COMPLETIONS, post(openai_api::chat_completions))
        .route(routes::COMPLETIONS, post(openai_api::completions))
        .route(routes::RESPONSES, post(responses_api::create))
        .route(routes::EMBEDDINGS, post(embeddings::create))
        .route(
            queue::OPENAI_CHAT_COMPLETIONS,
            post(openai_api::endpoint_chat_completions),
        )
        .route(
            queue::OPENAI_COMPLETIONS,
            post(openai_api::endpoint_completions),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::openai_limits));
    let openai = Router::new()
        .route(routes::MODELS, get(openai_api::models))
        .route(queue::OPENAI_MODELS, get(openai_api::endpoint_models))
        .route(routes::TOKENIZE, post(tokenize::tokenize))
        .route(routes::DETOKENIZE, post(tokenize::detokenize))
        .route(routes::TOKENIZER_INFO, get(tokenize::tokenizer_info))
        .route(
            routes::RESPONSE,
            get(responses_api::get).delete(responses_api::delete),
        )
        .route(
            routes::RESPONSE_INPUT_ITEMS,
            get(responses_api::input_items),
        )
        .merge(generate)
        .merge(batch_routes())
        .route_layer(from_fn_with_state(state.clone(), auth::openai_client));
    let anthropic = Router::new()
        .route(routes::MESSAGES, post(anthropic_api::messages))
        .route_layer(from_fn_with_state(state.clone(), auth::anthropic_limits))
        .route(
            routes::MESSAGES_COUNT_TOKENS,
            post(anthropic_api::count_tokens),
        )
        .route_layer(from_fn_with_state(state.clone(), auth::anthropic_client));
    let submit = Router::new()
        .route(queue::RUN, post(queue_api::run))
        .route(queue::RUNSYNC, post(queue_api::runsync))
        .route_layer(from_fn_with_state(state.clone(), auth::queue_limits));
    let queue_api = Router::new()
        .merge(submit)
        .route(
            queue::STATUS,
            get(queue_api::status).post(queue_api::status),
        )
        .route(
            queue::STATUS_SYNC,
            get(queue_api::status_sync).post(queue_api::status_sync),
        )
        .route(
            queue::STREAM,
            get(queue_api::stream).post(queue_api::stream),
        )
        .route(queue::CANCEL, post(queue_api::cancel))
        .route(queue::RETRY, post(queue_api::retry))
        .route(queue::PURGE_QUEUE, post(queue_api::purge_queue))
        .route(queue::HEALTH, get(queue_api::health))
        .route_layer(from_fn_with_state(state.clone(), auth::queue_client));
    let workers = Router::new()
        .route(WorkerRoute::JobTake.path(), get(worker_api::job_take))
        .route(
            WorkerRoute::JobTakeBatch.path(),
            get(worker_api::job_take_batch),
        )
        .route(WorkerRoute::JobDone.path(), post(worker_api::job_done))
        .route(WorkerRoute::JobStream.path(), post(worker_api::job_stream))
        .route(WorkerRoute::Ping.path(), get(worker_api::ping))
        .route(WorkerRoute::JobStop.path(), get(worker_api::job_stop))
        .layer(from_fn_with_state(state.clone(), auth::worker_token));
    let all = probes
        .merge(openai)
        .merge(anthropic)
        .merge(queue_api)
        .merge(workers)
        .fallback(openai_api::not_found);
    every_route(all, &state.settings).with_state(state)
}

/// What every route gets: metrics, tracing, and the body read timeout (the size limit is each
/// route's extractor's, so axum's default is off).
fn every_route(r: Router<AppState>, settings: &GatewaySettings) -> Router<AppState> {
    // Per route (axum applies router layers route by route), so the route template is known.
    r.layer(axum::middleware::from_fn(metrics::http_layer))
        .layer(axum::middleware::from_fn(trace::job_trace))
        .layer(DefaultBodyLimit::disable())
        // A body must keep arriving: a client that stops sending mid-body is cut off.
        .layer(RequestBodyTimeoutLayer::new(Duration::from_secs(
            settings.body_read_timeout_secs,
        )))
        // 5xx answers are expected ones here (503 from /ready while workers start, a failed
        // job's 500); they are logged where they arise, so the trace layer keeps them at debug.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(trace::request_span)
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
}

/// The Files and Batch APIs, at `/v1` and under `/v2/{endpoint}/openai/v1` (same handlers).
fn batch_routes() -> Router<AppState> {
    use protocol::routes::{self, queue};
    let mut r = Router::new();
    for (files, file, content, batches, one, cancel) in [
        (
            routes::FILES,
            routes::FILE,
            routes::FILE_CONTENT,
            routes::BATCHES,
            routes::BATCH,
            routes::BATCH_CANCEL,
        ),
        (
            queue::OPENAI_FILES,
            queue::OPENAI_FILE,
            queue::OPENAI_FILE_CONTENT,
            queue::OPENAI_BATCHES,
            queue::OPENAI_BATCH,
            queue::OPENAI_BATCH_CANCEL,
        ),
    ] {
        r = r
            .route(files, post(batch::upload).get(batch::list_files))
            .route(file, get(batch::get_file).delete(batch::delete_file))
            .route(content, get(batch::file_content))
            .route(batches, post(batch::create).get(batch::list))
            .route(one, get(batch::get))
            .route(cancel, post(batch::cancel));
    }
    r
}

/// Serve `router(state)` on `listener`, with the config's limits on the wire, until
/// `shutdown` resolves (see `server`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let settings = state.settings.clone();
    server::serve(listener, router(state), &settings, shutdown).await
}
