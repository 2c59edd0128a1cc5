//! OpenAI-compatible routes: validate, count prompt tokens, enqueue, relay.

use crate::auth::{Caller, Quota};
use crate::body::JsonBody;
use crate::error::{GatewayError, OpenAiError};
use crate::metrics::Timing;
use crate::relay::{self, CancelOnDrop};
use crate::structured;
use crate::trace::JobTrace;
use crate::{AppState, Gateway, ServedModel};
use axum::extract::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::health::{Liveness, Readiness};
use protocol::job::{JobPolicy, OpenAiJobInput};
use protocol::openai::prompt::{outside_vocabulary, Prompt};
use protocol::openai::{GenerateRequest, ModelCard, ModelList, CHAT_ROUTE, COMPLETIONS_ROUTE};
use protocol::{JobId, JobStatus};
use queue::NewJob;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;
use weights::PromptTokenizer;

pub async fn health() -> Json<Liveness> {
    Json(Liveness {
        status: "ok".into(),
    })
}

/// Ready when the gateway can take work for every endpoint: the store answers, and each
/// endpoint has its always-on workers live. An endpoint that scales from zero (`min_workers =
/// 0`) takes work with no worker: requests wait while one starts.
pub async fn ready(State(gw): State<AppState>) -> Result<Response, OpenAiError> {
    let mut workers = std::collections::BTreeMap::new();
    let mut ready = true;
    for name in gw.endpoint_names() {
        let live = gw.store.metrics(&name).await?.workers_live;
        ready &= live >= gw.endpoint(&name)?.min_workers;
        workers.insert(name, live);
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Ok((status, Json(Readiness { ready, workers })).into_response())
}

/// `GET /v1/models`: the models the caller may use.
pub async fn models(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Json<ModelList> {
    model_list(gw.models.values().filter(|m| caller.allows(&m.config.name)))
}

fn model_list<'a>(models: impl Iterator<Item = &'a ServedModel>) -> Json<ModelList> {
    let data: Vec<ModelCard> = models
        .map(|m| ModelCard {
            id: m.config.name.clone(),
            object: "model".into(),
            created: 0,
            owned_by: "sluice".into(),
            max_model_len: m.config.engine.context_length,
        })
        .collect();
    Json(ModelList {
        object: "list".into(),
        data,
    })
}

/// `/v2/{endpoint}/openai/v1/models`: the endpoint's own model.
pub async fn endpoint_models(
    State(gw): State<AppState>,
    Path(endpoint): Path<String>,
) -> Result<Json<ModelList>, OpenAiError> {
    Ok(model_list(std::iter::once(gw.model(&endpoint)?)))
}

pub async fn endpoint_chat_completions(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    Path(endpoint): Path<String>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    gw.endpoint(&endpoint)?;
    let body = body?.into_value();
    generate(
        gw,
        (caller, quota, trace),
        (CHAT_ROUTE, Api::OpenAi),
        body,
        Some(&endpoint),
    )
    .await
}

pub async fn endpoint_completions(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    Path(endpoint): Path<String>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    gw.endpoint(&endpoint)?;
    let body = body?.into_value();
    generate(
        gw,
        (caller, quota, trace),
        (COMPLETIONS_ROUTE, Api::OpenAi),
        body,
        Some(&endpoint),
    )
    .await
}

pub async fn not_found() -> OpenAiError {
    OpenAiError(GatewayError::NotFound("no such route".into()))
}

pub async fn chat_completions(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    generate(
        gw,
        (caller, quota, trace),
        (CHAT_ROUTE, Api::OpenAi),
        body?.into_value(),
        None,
    )
    .await
}

pub async fn completions(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    generate(
        gw,
        (caller, quota, trace),
        (COMPLETIONS_ROUTE, Api::OpenAi),
        body?.into_value(),
        None,
    )
    .await
}

/// Reject prompts that cannot fit the model's context, before they cost a queue slot.
fn check_context(model: &ServedModel, req: &GenerateRequest) -> Result<(), GatewayError> {
    let Some(tok) = &model.tokenizer else {
        return Ok(());
    };
    let (prompt_tokens, param) = match req {
        GenerateRequest::Chat(c) => (
            tok.count_chat(&c.prompt_messages(), &c.template),
            "messages",
        ),
        GenerateRequest::Completion(c) => (longest_prompt(tok, &c.prompts), "prompt"),
    };
    if let Some(ids) = &req.sampling().allowed_token_ids {
        if let Some(message) = outside_vocabulary(ids, tok.vocab_size()) {
            return Err(GatewayError::BadRequest {
                message,
                param: Some("allowed_token_ids".into()),
                code: None,
            });
        }
    }
    let prompt_tokens = prompt_tokens.map_err(|e| match e {
        weights::WeightsError::Tokenizer(m) if param == "prompt" => GatewayError::BadRequest {
            message: m,
            param: Some(param.into()),
            code: None,
        },
        e => GatewayError::Internal(e.to_string()),
    })?;
    // vLLM's left truncation: the engine keeps the last k tokens.
    let prompt_tokens = req
        .sampling()
        .truncate_prompt_tokens
        .map_or(prompt_tokens, |k| prompt_tokens.min(k as usize));
    let context = model.config.engine.context_length;
    let max_tokens = req.sampling().max_tokens.unwrap_or(0) as usize;
    if prompt_tokens + max_tokens.max(1) > context {
        let asked = if max_tokens > 0 {
            format!(
                "you requested {} tokens ({prompt_tokens} in the {param}, {max_tokens} in the completion)",
                prompt_tokens + max_tokens
            )
        } else {
            format!("your {param} resulted in {prompt_tokens} tokens")
        };
        return Err(GatewayError::BadRequest {
            message: format!(
                "This model's maximum context length is {context} tokens. However, {asked}. \
                 Please reduce the length of the {param} or completion."
            ),
            param: Some(param.into()),
            code: Some("context_length_exceeded"),
        });
    }
    Ok(())
}

/// The most tokens of any of a completion's prompts: text counted, token ids checked against
/// the vocabulary (an id outside it is the client's error). A prompt of no tokens is refused
/// here, as vLLM refuses it ("the prompt cannot be empty"), rather than by the engine once the
/// response, maybe a stream, has begun.
pub(crate) fn longest_prompt(tok: &PromptTokenizer, prompts: &[Prompt]) -> weights::Result<usize> {
    let mut most = 0;
    for p in prompts {
        let n = match p {
            Prompt::Text(t) => tok.count(t)?,
            Prompt::Tokens(ids) => match outside_vocabulary(ids, tok.vocab_size()) {
                Some(why) => return Err(weights::WeightsError::Tokenizer(why)),
                None => ids.len(),
            },
        };
        if n == 0 {
            return Err(weights::WeightsError::Tokenizer(
                "the prompt cannot be empty: it has no tokens".into(),
            ));
        }
        most = most.max(n);
    }
    Ok(most)
}

/// Everything checked before a request of `route` is queued (the same for `/v1` and for
/// batch lines): the body, its model (pinned by `endpoint`, the `/v2/{endpoint}/openai/v1`
/// routes), and then [`check_request`]. Compiling a client's schema is CPU work: call this on
/// a blocking thread.
pub(crate) fn admit(
    gw: &Gateway,
    caller: &Caller,
    route: &str,
    body: &Value,
    endpoint: Option<&str>,
) -> Result<GenerateRequest, GatewayError> {
    let req = GenerateRequest::parse(route, body.clone())?;
    // A model outside the caller's scope is as unknown as one not served.
    if endpoint.is_some_and(|e| e != req.model()) || !caller.allows(req.model()) {
        return Err(GatewayError::ModelNotFound(req.model().to_string()));
    }
    let guided = body.get("guided_json").map(|_| "guided_json");
    check_request(gw.model(req.model())?, &req, guided)?;
    Ok(req)
}

/// What the engine will be asked, checked as it would fail there: the prompt against the
/// context, and the schema of a structured output or a forced tool call, compiled as the
/// engine compiles it. `guided` names the parameter that carries a vLLM-style schema, if one
/// does (`guided_json`, `input.sampling_params.guided_json`). Call on a blocking thread.
pub(crate) fn check_request(
    model: &ServedModel,
    req: &GenerateRequest,
    guided: Option<&str>,
) -> Result<(), GatewayError> {
    check_context(model, req)?;
    if let Some(schema) = &req.sampling().json_schema {
        let param = match (guided, req) {
            (Some(g), _) => g,
            (None, GenerateRequest::Chat(c)) if c.tools.is_some() => "tools",
            _ => "response_format.json_schema.schema",
        };
        structured::check_schema(schema.clone(), param)?;
    }
    if let Some(pattern) = &req.sampling().pattern {
        // A `guided_choice` is an alternation of escaped literals, which always compiles: a
        // pattern that does not came from `guided_regex`.
        structured::check_pattern(pattern, "guided_regex")?;
    }
    if let Some(lark) = &req.sampling().grammar {
        structured::check_grammar(lark, "guided_grammar")?;
    }
    Ok(())
}

/// Which API a generating request came in through: how its answer is written back.
#[derive(Clone, Debug)]
pub(crate) enum Api {
    /// OpenAI's, as the engine writes it.
    OpenAi,
    /// Anthropic's Messages API, translated from the chat answer.
    Anthropic,
    /// OpenAI's Responses API, translated from the chat answer, and kept when the request
    /// stores it.
    Responses(Arc<crate::responses_api::Answer>),
}

impl Api {
    fn events(&self) -> Box<dyn relay::Dialect> {
        match self {
            Api::OpenAi => Box::new(relay::OpenAiEvents),
            Api::Anthropic => Box::new(crate::anthropic_api::AnthropicEvents::default()),
            Api::Responses(answer) => {
                Box::new(crate::responses_api::ResponseEvents::new(answer.clone()))
            }
        }
    }

    fn output(&self, output: Value) -> Result<Value, GatewayError> {
        match self {
            Api::OpenAi => Ok(output),
            Api::Anthropic => crate::anthropic_api::message(output),
            Api::Responses(answer) => crate::responses_api::response(answer, output),
        }
    }

    /// Keep the answer where the API stores it (the Responses API's `store`).
    async fn keep(&self, store: &dyn queue::JobStore, answer: &Value) -> Result<(), GatewayError> {
        match self {
            Api::Responses(a) => a.keep(store, answer).await,
            Api::OpenAi | Api::Anthropic => Ok(()),
        }
    }
}

/// Validate, enqueue and relay one OpenAI request (or one translated into OpenAI's terms, as
/// `api` says); `endpoint` pins the model (the `/v2/{endpoint}/openai/v1` routes).
pub(crate) async fn generate(
    gw: AppState,
    (caller, quota, trace): (Arc<Caller>, Arc<Quota>, JobTrace),
    (route, api): (&'static str, Api),
    body: Value,
    endpoint: Option<&str>,
) -> Result<Response, OpenAiError> {
    let started = std::time::Instant::now();
    let (gw2, caller2, endpoint2) = (gw.clone(), caller.clone(), endpoint.map(str::to_string));
    let validate = tracing::info_span!("validate", route);
    let (req, body) = tokio::task::spawn_blocking(move || {
        let _in = validate.enter();
        admit(&gw2, &caller2, route, &body, endpoint2.as_deref()).map(|req| (req, body))
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("request check: {e}")))??;
    let job = Submit {
        route,
        api,
        body,
        model: req.model(),
        stream: req.stream(),
        low_priority: req.low_priority(),
        started,
    };
    submit(gw, (caller, quota, trace), job).await
}

/// A checked request, ready to be queued as a job.
pub(crate) struct Submit<'a> {
    /// The OpenAI route its job runs as.
    pub route: &'static str,
    /// How its answer is written back.
    pub api: Api,
    /// The OpenAI body.
    pub body: Value,
    /// The model (endpoint) it runs on.
    pub model: &'a str,
    /// Whether its answer streams.
    pub stream: bool,
    /// Whether its job waits behind normal ones (vLLM's `priority` above 0).
    pub low_priority: bool,
    /// When the request came in (for the latency metrics).
    pub started: std::time::Instant,
}

/// Queue a checked request's job (its quota spent) and relay the answer.
pub(crate) async fn submit(
    gw: AppState,
    (caller, quota, trace): (Arc<Caller>, Arc<Quota>, JobTrace),
    s: Submit<'_>,
) -> Result<Response, OpenAiError> {
    let Submit {
        route,
        api,
        body,
        model,
        stream,
        low_priority,
        started,
    } = s;
    quota.spend().await?;
    let model = gw.model(model)?;
    let timeout = Duration::from_secs(model.config.scaling.execution_timeout_secs);
    let job = NewJob {
        input: serde_json::to_value(OpenAiJobInput {
            openai_route: route.to_string(),
            openai_input: body,
        })
        .map_err(|e| GatewayError::Internal(e.to_string()))?,
        policy: JobPolicy {
            execution_timeout: timeout.as_millis() as u64,
            low_priority,
            ..JobPolicy::default()
        },
        // The client has its result when the request ends: keep the job (output and every
        // streamed chunk) for `runsync`'s short retention, not `/run`'s 30 minutes.
        sync: true,
        tenant: caller.tenant.clone(),
        traceparent: trace.0,
        ..NewJob::default()
    };
    let enqueue = tracing::info_span!("enqueue", endpoint = %model.config.name);
    let id = crate::cold::submit(gw.store.as_ref(), &model.config.name, job)
        .instrument(enqueue)
        .await?;
    crate::auth::charge_tokens(&gw, &caller, id.clone());
    let guard = CancelOnDrop::new(gw.store.clone(), id.clone());
    let timing = Timing::new(&model.config.name, started);
    let mut resp = if stream {
        relay::sse(
            gw.store.clone(),
            (&model.config.name, id.clone()),
            guard,
            timing,
            api.events(),
        )
    } else {
        let wait = tracing::info_span!("wait for result");
        wait_for_result(&gw, (&model.config.name, &id, api), guard, timing)
            .instrument(wait)
            .await?
    };
    // Lets a client find the job behind its request (`/v2/{model}/status/{id}`).
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert("x-sluice-job-id", v);
    }
    Ok(resp)
}

async fn wait_for_result(
    gw: &AppState,
    (endpoint, id, api): (&str, &JobId, Api),
    guard: CancelOnDrop,
    timing: Timing,
) -> Result<Response, OpenAiError> {
    let wait = Duration::from_secs(gw.settings.request_timeout_secs);
    let view = gw.store.wait_final(id, wait).await?;
    let Some(view) = view else {
        return Err(GatewayError::Internal("the job expired before it finished".into()).into());
    };
    match view.status {
        JobStatus::Completed => {
            guard.disarm();
            timing.finish(Timing::tokens_of(&view));
            let cold = crate::cold::of_job(gw.store.as_ref(), endpoint, &view).await;
            let answer = api.output(view.output.unwrap_or(Value::Null))?;
            api.keep(gw.store.as_ref(), &answer).await?;
            let mut resp = Json(answer).into_response();
            if let Some(v) = cold.and_then(|c| HeaderValue::from_str(&c.header_value()).ok()) {
                resp.headers_mut().insert("x-sluice-cold-start", v);
            }
            Ok(resp)
        }
        JobStatus::Failed => {
            guard.disarm();
            let error = view.error.unwrap_or_else(|| "the job failed".into());
            Err(GatewayError::job_failed(error).into())
        }
        JobStatus::TimedOut => {
            Err(GatewayError::Timeout("the request exceeded its execution timeout".into()).into())
        }
        JobStatus::Cancelled => {
            Err(GatewayError::Internal("the request was cancelled".into()).into())
        }
        // Still queued or running after the request timeout: the guard cancels it.
        _ => Err(GatewayError::Timeout(format!(
            "no result within {} s",
            gw.settings.request_timeout_secs
        ))
        .into()),
    }
}
