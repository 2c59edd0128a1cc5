//! OpenAI's Files and Batch APIs: upload a JSONL file of requests (checked line by line, each
//! request as `/v1` would check it), start a batch over it, follow its `request_counts`, read
//! its output and error files. Each line runs as a low-priority job on the job store, so a
//! batch fills capacity that interactive requests leave free and never scales an endpoint up
//! beyond one worker by itself (see the autoscaler's policy). Files and batch state live on
//! the gateway's disk (`gateway.files_dir`) and survive its restarts; with the Redis store,
//! the jobs do too.
//!
//! The same handlers serve `/v1/...` and `/v2/{endpoint}/openai/v1/...`; under an endpoint,
//! uploads and batches may only name its model.

mod driver;
mod record;

pub use driver::spawn;

use crate::auth::Caller;
use crate::body::{JsonBody, QueryParams};
use crate::error::{GatewayError, OpenAiError};
use crate::files::{new_id, unix_now, FileStore};
use crate::openai_api::admit;
use crate::{AppState, Gateway};
use axum::extract::multipart::{Field, Multipart, MultipartRejection};
use axum::extract::{Extension, Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use protocol::openai::batch::{
    check_input, Batch, BatchError, BatchStatus, CheckedLine, CreateBatch, FileDeleted, FileObject,
    List, RequestCounts, COMPLETION_WINDOW, PURPOSE_BATCH,
};
use protocol::openai::{CHAT_ROUTE, COMPLETIONS_ROUTE};
use protocol::GatewaySettings;
use record::{BatchDir, BatchRecord, LineState};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path as FsPath;
use std::sync::Arc;
use std::time::Duration;

/// The Files and Batch APIs' state: the file store, every batch, and the limits.
pub struct Batches {
    /// Uploaded files and batch outputs.
    pub files: FileStore,
    dir: BatchDir,
    /// Every batch by id; the driver holds the lock while it moves one forward.
    records: tokio::sync::Mutex<BTreeMap<String, BatchRecord>>,
    window: Duration,
    /// Ended batches are forgotten this long after they ended (the file retention).
    retention: Duration,
    max_bytes: usize,
    max_requests: usize,
}

impl Batches {
    /// Open the store in `settings.files_dir` (else `default_dir`) and load the batches saved
    /// there. Errors: the directory cannot be created or read.
    pub fn open(settings: &GatewaySettings, default_dir: &FsPath) -> std::io::Result<Self> {
        let dir = settings.files_dir.as_deref().unwrap_or(default_dir);
        let retention = Duration::from_secs(settings.file_retention_hours * 3600);
        let files = FileStore::open(dir, retention)?;
        let batch_dir = BatchDir(dir.join("batches"));
        let records = batch_dir
            .load_all()?
            .into_iter()
            .map(|r| (r.batch.id.clone(), r))
            .collect();
        Ok(Batches {
            files,
            dir: batch_dir,
            records: tokio::sync::Mutex::new(records),
            window: Duration::from_secs(settings.batch_window_secs),
            retention,
            max_bytes: settings.batch_file_max_bytes,
            max_requests: settings.batch_max_requests,
        })
    }

    /// Forget batches that ended longer ago than the retention (their state and answer
    /// files; the output files go with the file sweep); returns how many.
    async fn forget_ended(&self) -> usize {
        let cutoff = unix_now().saturating_sub(self.retention.as_secs());
        let mut records = self.records.lock().await;
        let old: Vec<String> = records
            .values()
            .filter(|r| {
                let b = &r.batch;
                let ended = [b.completed_at, b.expired_at, b.cancelled_at, b.failed_at];
                ended
                    .into_iter()
                    .flatten()
                    .max()
                    .is_some_and(|t| t < cutoff)
            })
            .map(|r| r.batch.id.clone())
            .collect();
        for id in &old {
            records.remove(id);
            self.dir.remove(id).await;
        }
        old.len()
    }

    async fn active_ids(&self) -> Vec<String> {
        let records = self.records.lock().await;
        records
            .values()
            .filter(|r| !r.batch.status.is_final())
            .map(|r| r.batch.id.clone())
            .collect()
    }
}

fn batches(gw: &Gateway) -> Result<&Arc<Batches>, GatewayError> {
    gw.batches
        .as_ref()
        .ok_or_else(|| GatewayError::NotFound("the Files and Batch APIs are off here".into()))
}

/// The caller the client-key layer identified.
type Client = Extension<Arc<Caller>>;

/// The path's `{endpoint}`, `{file_id}` or `{batch_id}`.
type Params = Path<HashMap<String, String>>;

fn param<'a>(p: &'a HashMap<String, String>, name: &str) -> &'a str {
    p.get(name).map_or("", String::as_str)
}

/// `?after=ID&limit=N&purpose=P` of the list routes.
#[derive(Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// The last id of the previous page.
    after: Option<String>,
    /// Items per page, 1 to 10,000 (default: 20 batches, 10,000 files).
    #[param(minimum = 1, maximum = 10000)]
    limit: Option<usize>,
    /// Only files of this purpose (`batch` or `batch_output`).
    purpose: Option<String>,
}

impl ListQuery {
    fn limit(&self, default: usize) -> Result<usize, GatewayError> {
        match self.limit.unwrap_or(default) {
            n @ 1..=10_000 => Ok(n),
            _ => Err(GatewayError::bad_param(
                "limit",
                "`limit` must be between 1 and 10000",
            )),
        }
    }
}

/// `POST /v1/files`: a multipart upload of `file` with `purpose: batch`, checked line by line
/// before it is stored. Errors: 400 naming the field, or the lines at fault (`param: file`);
/// 413 over `gateway.batch_file_max_bytes`.
pub async fn upload(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
    form: Result<Multipart, MultipartRejection>,
) -> Result<Json<FileObject>, OpenAiError> {
    let b = batches(&gw)?;
    let mut form = form.map_err(|e| {
        GatewayError::bad_request(format!(
            "expected a multipart/form-data body with `file` and `purpose`: {e}"
        ))
    })?;
    let (mut purpose, mut file) = (None, None);
    while let Some(field) = form.next_field().await.map_err(form_error)? {
        match field.name().unwrap_or_default() {
            "purpose" => purpose = Some(field.text().await.map_err(form_error)?),
            "file" => file = Some(read_file(field, b.max_bytes).await?),
            other => {
                return Err(
                    GatewayError::bad_param(other, format!("unknown form field `{other}`")).into(),
                )
            }
        }
    }
    match purpose.as_deref() {
        Some(PURPOSE_BATCH) => {}
        Some(other) => {
            return Err(GatewayError::bad_param(
                "purpose",
                format!("purpose `{other}` is not supported: only `batch`"),
            )
            .into())
        }
        None => return Err(GatewayError::bad_param("purpose", "`purpose` is required").into()),
    }
    let (name, bytes) =
        file.ok_or_else(|| GatewayError::bad_param("file", "`file` is required"))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| GatewayError::bad_param("file", "the file is not UTF-8 text"))?;
    let (gw2, caller2) = (gw.clone(), caller.clone());
    let (scope, max) = (p.get("endpoint").cloned(), b.max_requests);
    // Checking every line (schemas included) is CPU work of the file's size.
    let (text, errors) = tokio::task::spawn_blocking(move || {
        let errors = check_file(&gw2, &caller2, &text, max, scope.as_deref()).err();
        (text, errors)
    })
    .await
    .map_err(|e| GatewayError::Internal(e.to_string()))?;
    if let Some(errors) = errors {
        return Err(GatewayError::BadRequest {
            message: summary(&errors),
            param: Some("file".into()),
            code: Some("invalid_batch_file"),
        }
        .into());
    }
    let tenant = caller.tenant.as_deref();
    let file = b
        .files
        .create(PURPOSE_BATCH, &name, text.as_bytes(), tenant);
    Ok(Json(file.await?))
}

fn form_error(e: axum::extract::multipart::MultipartError) -> GatewayError {
    GatewayError::bad_request(format!("could not read the form: {e}"))
}

async fn read_file(mut field: Field<'_>, max: usize) -> Result<(String, Vec<u8>), GatewayError> {
    let name = field.file_name().unwrap_or("upload.jsonl").to_string();
    let mut bytes = Vec::new();
    while let Some(chunk) = field.chunk().await.map_err(form_error)? {
        if bytes.len() + chunk.len() > max {
            return Err(GatewayError::PayloadTooLarge(max));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((name, bytes))
}

/// Every line checked as its route would check it: the line's form, then its request
/// (model served and, under an endpoint, that endpoint's; prompt within the context; schema
/// enforceable).
fn check_file(
    gw: &Gateway,
    caller: &Caller,
    text: &str,
    max: usize,
    scope: Option<&str>,
) -> Result<Vec<CheckedLine>, Vec<BatchError>> {
    let lines = check_input(text, max)?;
    let errors: Vec<BatchError> = lines
        .iter()
        .filter_map(|c| {
            let e = admit(gw, caller, &c.line.url, &c.line.body, scope).err()?;
            let param = match &e {
                GatewayError::BadRequest { param, .. } => param.clone(),
                GatewayError::ModelNotFound(_) => Some("model".into()),
                _ => None,
            };
            Some(BatchError {
                code: "invalid_request".into(),
                message: format!("line {}: {e}", c.number),
                param: param.map(|p| format!("body.{p}")),
                line: Some(c.number),
            })
        })
        .collect();
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// The first problems of a file, for a 400's message.
fn summary(errors: &[BatchError]) -> String {
    const SHOWN: usize = 10;
    let mut text = format!("the batch file has {} problem(s): ", errors.len());
    let shown: Vec<&str> = errors
        .iter()
        .take(SHOWN)
        .map(|e| e.message.as_str())
        .collect();
    text.push_str(&shown.join("; "));
    if errors.len() > SHOWN {
        text.push_str(&format!("; and {} more", errors.len() - SHOWN));
    }
    text
}

/// `GET /v1/files`: files, newest first (`purpose`, `after` and `limit` up to 10,000).
pub async fn list_files(
    State(gw): State<AppState>,
    Extension(caller): Client,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<List<FileObject>>, OpenAiError> {
    let mut files = batches(&gw)?.files.list(caller.tenant.as_deref()).await?;
    if let Some(p) = &q.purpose {
        files.retain(|f| &f.purpose == p);
    }
    let limit = q.limit(10_000)?;
    Ok(Json(List::page(files, q.after.as_deref(), limit, |f| {
        &f.id
    })))
}

/// `GET /v1/files/{file_id}`. Errors: 404 for an unknown file.
pub async fn get_file(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
) -> Result<Json<FileObject>, OpenAiError> {
    Ok(Json(
        batches(&gw)?
            .files
            .get(param(&p, "file_id"), caller.tenant.as_deref())
            .await?,
    ))
}

/// `GET /v1/files/{file_id}/content`: the bytes. Errors: 404 for an unknown file.
pub async fn file_content(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
) -> Result<Response, OpenAiError> {
    let bytes = batches(&gw)?
        .files
        .content(param(&p, "file_id"), caller.tenant.as_deref())
        .await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
}

/// `DELETE /v1/files/{file_id}`. Errors: 404 for an unknown file; 409 while an unfinished
/// batch reads it.
pub async fn delete_file(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
) -> Result<Json<FileDeleted>, OpenAiError> {
    let b = batches(&gw)?;
    let id = param(&p, "file_id");
    let in_use = b
        .records
        .lock()
        .await
        .values()
        .any(|r| !r.batch.status.is_final() && r.batch.input_file_id == id);
    if in_use {
        return Err(GatewayError::Conflict(format!(
            "file {id} is the input of an unfinished batch"
        ))
        .into());
    }
    b.files.delete(id, caller.tenant.as_deref()).await?;
    Ok(Json(FileDeleted {
        id: id.to_string(),
        object: "file".into(),
        deleted: true,
    }))
}

/// `POST /v1/batches`: start a batch over an uploaded file. Errors: 400 naming the field (a
/// window other than `24h`, an unknown `endpoint`, a file that is not a batch input, lines for
/// another route or, under an endpoint, another model); 404 for an unknown file.
pub async fn create(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
    body: Result<JsonBody, GatewayError>,
) -> Result<Json<Batch>, OpenAiError> {
    let b = batches(&gw)?;
    let req: CreateBatch = serde_json::from_value(body?.into_value())
        .map_err(|e| GatewayError::bad_request(format!("invalid batch request: {e}")))?;
    if req.completion_window != COMPLETION_WINDOW {
        return Err(GatewayError::bad_param(
            "completion_window",
            "`completion_window` must be `24h`",
        )
        .into());
    }
    if req.endpoint != CHAT_ROUTE && req.endpoint != COMPLETIONS_ROUTE {
        return Err(GatewayError::bad_param(
            "endpoint",
            format!("`endpoint` must be {CHAT_ROUTE} or {COMPLETIONS_ROUTE}"),
        )
        .into());
    }
    if req.metadata.as_ref().is_some_and(|m| m.len() > 16) {
        return Err(GatewayError::bad_param("metadata", "at most 16 metadata pairs").into());
    }
    let scope = p.get("endpoint").cloned();
    let lines = check_create(b, &req, scope.as_deref(), caller.tenant.as_deref()).await?;
    let now = unix_now();
    let batch = Batch {
        id: new_id("batch_"),
        object: "batch".into(),
        endpoint: req.endpoint,
        errors: None,
        input_file_id: req.input_file_id,
        completion_window: req.completion_window,
        status: BatchStatus::Validating,
        output_file_id: None,
        error_file_id: None,
        created_at: now,
        in_progress_at: None,
        expires_at: Some(now + b.window.as_secs()),
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        request_counts: RequestCounts {
            total: lines.len(),
            ..RequestCounts::default()
        },
        usage: Default::default(),
        metadata: req.metadata,
    };
    let record = BatchRecord {
        batch: batch.clone(),
        scope,
        tenant: caller.tenant.clone(),
        lines: lines
            .iter()
            .map(|c| LineState {
                custom_id: c.line.custom_id.clone(),
                number: c.number,
                job: None,
                outcome: None,
            })
            .collect(),
        input: None,
    };
    b.dir.save(&record).await?;
    b.records.lock().await.insert(batch.id.clone(), record);
    Ok(Json(batch))
}

/// The lines of a batch request, checked against the request: an input file of purpose
/// `batch` whose every line calls the batch's endpoint (and, under an endpoint, its model).
async fn check_create(
    b: &Batches,
    req: &CreateBatch,
    scope: Option<&str>,
    tenant: Option<&str>,
) -> Result<Vec<CheckedLine>, GatewayError> {
    let file = b.files.get(&req.input_file_id, tenant).await?;
    if file.purpose != PURPOSE_BATCH {
        return Err(GatewayError::bad_param(
            "input_file_id",
            format!(
                "file {} is not a batch input (purpose `{}`)",
                file.id, file.purpose
            ),
        ));
    }
    let text = String::from_utf8(b.files.content(&file.id, tenant).await?)
        .map_err(|_| GatewayError::bad_param("input_file_id", "the file is not UTF-8 text"))?;
    let lines = check_input(&text, b.max_requests)
        .map_err(|e| GatewayError::bad_param("input_file_id", summary(&e)))?;
    for c in &lines {
        if c.line.url != req.endpoint {
            return Err(GatewayError::bad_param(
                "input_file_id",
                format!(
                    "line {}: `url` {} is not the batch's endpoint {}",
                    c.number, c.line.url, req.endpoint
                ),
            ));
        }
        if scope.is_some_and(|s| s != c.request.model()) {
            return Err(GatewayError::ModelNotFound(c.request.model().to_string()));
        }
    }
    Ok(lines)
}

fn no_batch(id: &str) -> GatewayError {
    GatewayError::NotFound(format!("No batch found with id '{id}'"))
}

/// `GET /v1/batches/{batch_id}`. Errors: 404 for an unknown batch.
pub async fn get(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
) -> Result<Json<Batch>, OpenAiError> {
    let id = param(&p, "batch_id");
    let records = batches(&gw)?.records.lock().await;
    let r = records
        .get(id)
        .filter(|r| caller.owns(r.tenant.as_deref()))
        .ok_or_else(|| no_batch(id))?;
    Ok(Json(r.batch.clone()))
}

/// `GET /v1/batches`: batches, newest first (`after`, `limit` default 20, up to 100 as
/// OpenAI's).
pub async fn list(
    State(gw): State<AppState>,
    Extension(caller): Client,
    QueryParams(q): QueryParams<ListQuery>,
) -> Result<Json<List<Batch>>, OpenAiError> {
    let limit = q.limit(20)?.min(100);
    let mut all: Vec<Batch> = batches(&gw)?
        .records
        .lock()
        .await
        .values()
        .filter(|r| caller.owns(r.tenant.as_deref()))
        .map(|r| r.batch.clone())
        .collect();
    all.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
    Ok(Json(List::page(all, q.after.as_deref(), limit, |b| &b.id)))
}

/// `POST /v1/batches/{batch_id}/cancel`: the batch becomes `cancelling`, its unfinished lines
/// are stopped, then it is `cancelled` with the answers it has. A batch that has ended is
/// returned as it is. Errors: 404 for an unknown batch.
pub async fn cancel(
    State(gw): State<AppState>,
    Extension(caller): Client,
    Path(p): Params,
) -> Result<Json<Batch>, OpenAiError> {
    let b = batches(&gw)?;
    let id = param(&p, "batch_id");
    let mut records = b.records.lock().await;
    let r = records
        .get_mut(id)
        .filter(|r| caller.owns(r.tenant.as_deref()))
        .ok_or_else(|| no_batch(id))?;
    if !r.batch.status.is_final() && r.batch.status != BatchStatus::Cancelling {
        r.batch.status = BatchStatus::Cancelling;
        r.batch.cancelling_at = Some(unix_now());
        b.dir.save(r).await?;
    }
    Ok(Json(r.batch.clone()))
}
