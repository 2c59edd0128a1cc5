//! `POST /v1/embeddings`: checked on the gateway (the body, the model, each input against the
//! context, counted by the model's tokenizer), then run as a job of the endpoint, whose worker
//! answers with the vectors (the llama.cpp backend; mistral.rs answers 400 naming itself).

use crate::auth::{Caller, Quota};
use crate::body::JsonBody;
use crate::error::{GatewayError, OpenAiError};
use crate::openai_api::{longest_prompt, submit, Api, Submit};
use crate::trace::JobTrace;
use crate::{AppState, ServedModel};
use axum::extract::{Extension, State};
use axum::response::Response;
use protocol::openai::embeddings::{EmbeddingRequest, EMBEDDINGS_ROUTE};
use std::sync::Arc;

/// `POST /v1/embeddings`.
pub async fn create(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    let started = std::time::Instant::now();
    let body = body?.into_value();
    let req = EmbeddingRequest::parse(body.clone())?;
    if !caller.allows(&req.model) {
        return Err(GatewayError::ModelNotFound(req.model).into());
    }
    let (gw2, checked) = (gw.clone(), req.clone());
    // Tokenizing the inputs is CPU work: off the async threads.
    tokio::task::spawn_blocking(move || check(gw2.model(&checked.model)?, &checked))
        .await
        .map_err(|e| GatewayError::Internal(format!("input check: {e}")))??;
    let job = Submit {
        route: EMBEDDINGS_ROUTE,
        api: Api::OpenAi,
        body,
        model: &req.model,
        stream: false,
        low_priority: false,
        started,
    };
    submit(gw, (caller, quota, trace), job).await
}

/// Every input has 1 to `context_length` tokens, and token ids are in the vocabulary.
pub(crate) fn check(model: &ServedModel, req: &EmbeddingRequest) -> Result<(), GatewayError> {
    let Some(tok) = &model.tokenizer else {
        return Ok(());
    };
    let bad = |message: String| GatewayError::bad_param("input", message);
    // The completions prompts' own check: counted, ids in the vocabulary, none empty.
    let longest = longest_prompt(tok, &req.inputs()?).map_err(|e| bad(e.to_string()))?;
    let context = model.config.engine.context_length;
    if longest > context {
        return Err(bad(format!(
            "an input has {longest} tokens: at most {context} (the model's context) are embedded"
        )));
    }
    Ok(())
}
