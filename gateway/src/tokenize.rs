//! vLLM's `POST /tokenize` and `POST /detokenize`, answered by the gateway with the model's own
//! tokenizer (the one it counts prompts with, which is the engine's), without a job.

use crate::auth::Caller;
use crate::body::JsonBody;
use crate::error::{GatewayError, OpenAiError};
use crate::{AppState, Gateway, ServedModel};
use axum::extract::{Extension, Query, State};
use axum::Json;
use protocol::openai::prompt::outside_vocabulary;
use protocol::openai::template::ChatTemplate;
use protocol::openai::tokenize::{
    DetokenizeBody, DetokenizeResponse, TokenizeBody, TokenizeResponse, TokenizerInfo,
    MAX_DETOKENIZE_TOKENS,
};
use protocol::openai::ChatRequest;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::Arc;
use weights::PromptTokenizer;

/// `POST /tokenize`: a prompt's or chat's token ids, as vLLM answers.
pub async fn tokenize(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Json<TokenizeResponse>, OpenAiError> {
    let body: TokenizeBody = parse(body?.into_value())?;
    // Tokenizing a large body is CPU work: off the async threads.
    let answer = tokio::task::spawn_blocking(move || {
        let model = pick_model(&gw, &caller, body.model.as_deref())?;
        tokenize_with(model, tokenizer(model)?, body)
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("tokenize: {e}")))??;
    Ok(Json(answer))
}

/// `POST /detokenize`: the text of token ids.
pub async fn detokenize(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Json<DetokenizeResponse>, OpenAiError> {
    let body: DetokenizeBody = parse(body?.into_value())?;
    if body.tokens.len() > MAX_DETOKENIZE_TOKENS {
        return Err(GatewayError::bad_param(
            "tokens",
            format!("at most {MAX_DETOKENIZE_TOKENS} tokens"),
        )
        .into());
    }
    let answer = tokio::task::spawn_blocking(move || {
        let model = pick_model(&gw, &caller, body.model.as_deref())?;
        let tok = tokenizer(model)?;
        if let Some(why) = outside_vocabulary(&body.tokens, tok.vocab_size()) {
            return Err(GatewayError::bad_param("tokens", why));
        }
        let prompt = tok
            .decode(&body.tokens)
            .map_err(|e| GatewayError::bad_param("tokens", e.to_string()))?;
        Ok(DetokenizeResponse { prompt })
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("detokenize: {e}")))??;
    Ok(Json(answer))
}

/// `GET /tokenizer_info`: the only (or `?model=`) model's special tokens and chat template.
pub async fn tokenizer_info(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Query(query): Query<InfoQuery>,
) -> Result<Json<TokenizerInfo>, OpenAiError> {
    let model = pick_model(&gw, &caller, query.model.as_deref())?;
    let tok = tokenizer(model)?;
    let (bos, eos) = tok.bos_eos();
    Ok(Json(TokenizerInfo {
        // Every tokenizer sluice loads is a `tokenizers` one (a GGUF's is rebuilt as such).
        tokenizer_class: "PreTrainedTokenizerFast".into(),
        bos_token: bos.map(str::to_string),
        eos_token: eos.to_string(),
        pad_token: None,
        chat_template: tok.chat_template().map(str::to_string),
        model_max_length: model.config.engine.context_length,
    }))
}

/// `GET /tokenizer_info`'s query: which model, when more than one is served.
#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct InfoQuery {
    /// The served model's name; may be left out when the caller can use one model only.
    model: Option<String>,
}

fn tokenize_with(
    model: &ServedModel,
    tok: &PromptTokenizer,
    body: TokenizeBody,
) -> Result<TokenizeResponse, GatewayError> {
    let failed = |e: weights::WeightsError| GatewayError::bad_param("messages", e.to_string());
    let (text, special) = match (body.prompt, body.messages) {
        (Some(prompt), None) => (prompt, true),
        (None, Some(messages)) => {
            // The chat route's own parser: the same messages are accepted and rendered.
            let chat =
                ChatRequest::parse(json!({"model": model.config.name, "messages": messages}))?;
            let opts = ChatTemplate {
                add_generation_prompt: body.add_generation_prompt.unwrap_or(true),
                ..ChatTemplate::default()
            };
            let text = tok
                .render_chat_with(&chat.prompt_messages(), &opts)
                .map_err(failed)?;
            (text, false)
        }
        _ => {
            return Err(GatewayError::bad_param(
                "prompt",
                "give exactly one of `prompt` and `messages`",
            ))
        }
    };
    let tokens = tok
        .encode_with(&text, body.add_special_tokens.unwrap_or(special))
        .map_err(|e| GatewayError::bad_param("prompt", e.to_string()))?;
    let token_strs = match body.return_token_strs {
        Some(true) => Some(tok.token_strs(&tokens).map_err(failed)?),
        _ => None,
    };
    Ok(TokenizeResponse {
        count: tokens.len(),
        max_model_len: model.config.engine.context_length,
        tokens,
        token_strs,
    })
}

/// A body as its type, an unknown or mistyped field named in the 400.
fn parse<T: DeserializeOwned>(body: Value) -> Result<T, GatewayError> {
    serde_json::from_value(body).map_err(|e| GatewayError::BadRequest {
        message: format!("invalid request: {e}"),
        param: None,
        code: None,
    })
}

/// The model named, or the caller's only model when none is named (as vLLM serves one).
fn pick_model<'a>(
    gw: &'a Gateway,
    caller: &Caller,
    name: Option<&str>,
) -> Result<&'a ServedModel, GatewayError> {
    match name {
        Some(name) if caller.allows(name) => gw.model(name),
        Some(name) => Err(GatewayError::ModelNotFound(name.to_string())),
        None => {
            let mut usable = gw.models.values().filter(|m| caller.allows(&m.config.name));
            match (usable.next(), usable.next()) {
                (Some(only), None) => Ok(only),
                _ => Err(GatewayError::bad_param(
                    "model",
                    "name the `model`: more than one is served",
                )),
            }
        }
    }
}

fn tokenizer(model: &ServedModel) -> Result<&PromptTokenizer, GatewayError> {
    model.tokenizer.as_deref().ok_or_else(|| {
        GatewayError::NoCapacity(format!(
            "the tokenizer of `{}` is not in the weight cache yet; it is there once a worker \
             has pulled the model",
            model.config.name
        ))
    })
}
