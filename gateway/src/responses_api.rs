//! OpenAI's Responses API on the gateway: `POST /v1/responses`, a chat job whose answer is
//! the response object, or streamed as `response.*` events; stored responses (`store`, see
//! [`protocol::responses::stored`]) kept in the job store, read, listed and deleted by id.
//! Errors in OpenAI's shape.

use crate::auth::{Caller, Quota};
use crate::body::{JsonBody, QueryParams};
use crate::error::{GatewayError, OpenAiError};
use crate::openai_api::{generate, Api};
use crate::relay::Dialect;
use crate::trace::JobTrace;
use crate::AppState;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use axum::Json;
use protocol::anthropic::parse;
use protocol::openai::batch::List;
use protocol::openai::CHAT_ROUTE;
use protocol::responses::reply::{self, EventStream, ResponseDeleted};
use protocol::responses::stored::{previous_not_found, Keep, StoredResponse};
use protocol::responses::ResponsesRequest;
use protocol::sse::frame;
use queue::JobStore;
use serde::Deserialize;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

type Client = Extension<Arc<Caller>>;

/// How a Responses request's answer is written back and kept.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The request's settings, which the response object repeats.
    echo: Value,
    /// What to keep once the answer exists, and for how long; `None` with `store: false`.
    keep: Option<(Keep, Duration)>,
}

impl Answer {
    /// Keep `response` (the object answering the request) when the request stores it.
    pub(crate) async fn keep(
        &self,
        store: &dyn JobStore,
        response: &Value,
    ) -> Result<(), GatewayError> {
        if let Some((id, record, ttl)) = self.record(response.clone()) {
            store.put_response(&id, &record, ttl).await?;
        }
        Ok(())
    }

    fn record(&self, response: Value) -> Option<(String, StoredResponse, Duration)> {
        let (keep, ttl) = self.keep.as_ref()?;
        let id = response["id"].as_str()?.to_string();
        Some((id, keep.record(response), *ttl))
    }
}

/// `POST /v1/responses`. Errors: 400 naming the field; an unknown `previous_response_id`
/// (expired, deleted or another tenant's) is a 400 as OpenAI answers it.
pub async fn create(
    State(gw): State<AppState>,
    Extension(caller): Extension<Arc<Caller>>,
    Extension(quota): Extension<Arc<Quota>>,
    Extension(trace): Extension<JobTrace>,
    body: Result<JsonBody, GatewayError>,
) -> Result<Response, OpenAiError> {
    let req: ResponsesRequest = parse(body?.into_value())?;
    let previous = match &req.previous_response_id {
        Some(id) => {
            let found = stored(&gw, &caller, id).await?;
            found.ok_or_else(|| previous_not_found(id))?.conversation
        }
        None => Vec::new(),
    };
    let chat = req.to_chat(&previous)?;
    let retention = gw.settings.response_retention_secs;
    let keep = (req.store != Some(false) && retention > 0).then(|| {
        let keep = Keep::new(&req, &chat, caller.tenant.clone());
        (keep, Duration::from_secs(retention))
    });
    let answer = Answer {
        echo: req.echo(keep.is_some()),
        keep,
    };
    let api = (CHAT_ROUTE, Api::Responses(Arc::new(answer)));
    generate(gw, (caller, quota, trace), api, chat, None).await
}

/// `GET /v1/responses/{response_id}`: a stored response. Errors: 404 for an unknown,
/// expired, deleted or another tenant's response.
pub async fn get(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(id): Path<String>,
) -> Result<Json<Value>, OpenAiError> {
    Ok(Json(find(&gw, &caller, &id).await?.response))
}

/// `DELETE /v1/responses/{response_id}`. Errors: 404 as [`get`].
pub async fn delete(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(id): Path<String>,
) -> Result<Json<ResponseDeleted>, OpenAiError> {
    find(&gw, &caller, &id).await?;
    gw.store.delete_response(&id).await?;
    Ok(Json(ResponseDeleted {
        id,
        object: "response".into(),
        deleted: true,
    }))
}

/// `?after=ID&limit=N&order=asc|desc` of `input_items`.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ItemsQuery {
    /// The last id of the previous page.
    after: Option<String>,
    /// Items per page, 1 to 100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// `desc` (the default: the last input item first) or `asc`.
    order: Option<String>,
}

/// `GET /v1/responses/{response_id}/input_items`: the request's input items, a page at a
/// time. Errors: 404 as [`get`]; 400 for a `limit` or `order` out of range.
pub async fn input_items(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(id): Path<String>,
    QueryParams(q): QueryParams<ItemsQuery>,
) -> Result<Json<List<Value>>, OpenAiError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(GatewayError::bad_param("limit", "`limit` must be between 1 and 100").into());
    }
    let mut items = find(&gw, &caller, &id).await?.input_items;
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => {
            return Err(GatewayError::bad_param("order", "`order` is `asc` or `desc`").into())
        }
    }
    Ok(Json(List::page(items, q.after.as_deref(), limit, |item| {
        item["id"].as_str().unwrap_or_default()
    })))
}

async fn find(gw: &AppState, caller: &Caller, id: &str) -> Result<StoredResponse, GatewayError> {
    stored(gw, caller, id)
        .await?
        .ok_or_else(|| GatewayError::NotFound(format!("Response with id '{id}' not found.")))
}

/// The stored response `id`, if the caller may see it (its tenant's, or any for an admin).
async fn stored(
    gw: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<Option<StoredResponse>, GatewayError> {
    let kept = gw.store.response(id).await?;
    Ok(kept.filter(|r| caller.owns(r.tenant.as_deref())))
}

/// The response object of a chat job's output.
pub(crate) fn response(answer: &Answer, output: Value) -> Result<Value, GatewayError> {
    reply::response(&answer.echo, output)
        .map_err(|e| GatewayError::Internal(format!("the chat answer does not read: {e}")))
}

/// The Responses API's events, translated from the job's chat chunks (each a `data:` event
/// whose `type` names it, as OpenAI streams them, also named by `event:`).
pub(crate) struct ResponseEvents {
    events: EventStream,
    answer: Arc<Answer>,
    /// The whole response, once the stream has ended.
    last: Option<Value>,
}

impl ResponseEvents {
    pub(crate) fn new(answer: Arc<Answer>) -> Self {
        ResponseEvents {
            events: EventStream::new(answer.echo.clone()),
            answer,
            last: None,
        }
    }
}

fn event(data: Value) -> String {
    let name = data["type"].as_str().unwrap_or("message").to_string();
    format!("event: {name}\n{}", frame(&data.to_string()))
}

impl Dialect for ResponseEvents {
    fn chunk(&mut self, chunk: &Value) -> String {
        self.events.chunk(chunk).into_iter().map(event).collect()
    }
    fn error(&mut self, e: GatewayError) -> String {
        let body = e.openai_body().error;
        let data = serde_json::json!({"type": "error", "code": body.code, "message": body.message, "param": body.param});
        event(data)
    }
    fn done(&mut self) -> String {
        let events = self.events.end();
        self.last = events.last().map(|e| e["response"].clone());
        events.into_iter().map(event).collect()
    }
    fn kept(&mut self) -> Option<(String, StoredResponse, Duration)> {
        self.answer.record(self.last.take()?)
    }
}
