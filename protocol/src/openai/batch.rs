//! OpenAI's Files and Batch APIs as sluice serves them: the file and batch objects, the lines
//! of a batch's input, output and error files, and the line-by-line check of an input file.
//! Field names and values follow OpenAI's API reference (`/v1/files`, `/v1/batches`).

use super::{GenerateRequest, CHAT_ROUTE, COMPLETIONS_ROUTE};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The only `completion_window` OpenAI accepts, and so sluice.
pub const COMPLETION_WINDOW: &str = "24h";
/// The `purpose` of an uploaded batch input file (the only one sluice accepts for uploads).
pub const PURPOSE_BATCH: &str = "batch";
/// The `purpose` of the output and error files a batch writes.
pub const PURPOSE_BATCH_OUTPUT: &str = "batch_output";

/// A stored file: `{"id": "file-...", "object": "file", "bytes", "created_at", "filename",
/// "purpose", "status", "expires_at"}`, times in Unix seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileObject {
    /// `file-` and 24 hex digits.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Size of the content, bytes.
    pub bytes: u64,
    /// When it was stored, Unix seconds.
    pub created_at: u64,
    /// The name it was uploaded with (or sluice's name for a batch's output).
    pub filename: String,
    /// `batch` (uploaded input) or `batch_output` (a batch's output or error file).
    pub purpose: String,
    /// Always `processed`: an upload is checked before it is stored.
    pub status: String,
    /// When the gateway deletes it (the config's file retention), Unix seconds.
    pub expires_at: Option<u64>,
}

/// OpenAI's list envelope: `{"object": "list", "data", "first_id", "last_id", "has_more"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct List<T> {
    /// Always `list`.
    pub object: String,
    /// The items, newest first.
    pub data: Vec<T>,
    /// The first item's id, if any.
    pub first_id: Option<String>,
    /// The last item's id: the `after` cursor of the next page.
    pub last_id: Option<String>,
    /// Whether items follow the last one.
    pub has_more: bool,
}

impl<T> List<T> {
    /// One page of `items` (newest first): those after the item `after` (when given), at most
    /// `limit`; `id` names an item.
    pub fn page(items: Vec<T>, after: Option<&str>, limit: usize, id: impl Fn(&T) -> &str) -> Self {
        let start = after
            .and_then(|a| items.iter().position(|t| id(t) == a).map(|i| i + 1))
            .unwrap_or(0);
        let has_more = items.len() > start + limit;
        let data: Vec<T> = items.into_iter().skip(start).take(limit).collect();
        List {
            object: "list".into(),
            first_id: data.first().map(|t| id(t).to_string()),
            last_id: data.last().map(|t| id(t).to_string()),
            has_more,
            data,
        }
    }
}

/// The answer to `DELETE /v1/files/{id}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileDeleted {
    /// The file's id.
    pub id: String,
    /// Always `file`.
    pub object: String,
    /// Always true (an unknown file is a 404).
    pub deleted: bool,
}

/// A batch's state, as OpenAI names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchStatus {
    /// Accepted; its lines are being queued.
    Validating,
    /// Could not start (sluice checks input files at upload, so this is rare).
    Failed,
    /// Every line is queued; results are being collected.
    InProgress,
    /// Every line has ended; the output and error files are being written.
    Finalizing,
    /// Done: see `output_file_id` and `error_file_id`.
    Completed,
    /// The completion window passed first: finished lines are in the output file, the others
    /// in the error file (`batch_expired`).
    Expired,
    /// A cancel was asked; running lines are being stopped.
    Cancelling,
    /// Cancelled: lines finished before the cancel are in the output file.
    Cancelled,
}

impl BatchStatus {
    /// Whether the batch has ended (no line will run any more).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            BatchStatus::Failed
                | BatchStatus::Completed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

/// How many of a batch's lines there are and how many ended each way.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RequestCounts {
    /// Lines in the input file.
    pub total: usize,
    /// Lines answered with a 200 (in the output file).
    pub completed: usize,
    /// Lines answered with an error (in the error file).
    pub failed: usize,
}

/// A batch's token usage (OpenAI's names): prompt tokens are `input_tokens`, completion
/// tokens `output_tokens`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchUsage {
    /// Prompt tokens of the answered lines.
    pub input_tokens: u64,
    /// Completion tokens of the answered lines.
    pub output_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl BatchUsage {
    /// Add the `usage` of a completion object (`prompt_tokens`, `completion_tokens`), if it
    /// has one.
    pub fn add(&mut self, completion: &Value) {
        let n = |k: &str| {
            completion
                .pointer(&format!("/usage/{k}"))
                .and_then(Value::as_u64)
        };
        if let (Some(i), Some(o)) = (n("prompt_tokens"), n("completion_tokens")) {
            self.input_tokens += i;
            self.output_tokens += o;
            self.total_tokens += i + o;
        }
    }
}

/// A problem with a batch's input, with the line it is on (1-based) when it is about one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BatchError {
    /// A short code, e.g. `invalid_request`, `invalid_json`, `duplicate_custom_id`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// The parameter at fault, if one is.
    pub param: Option<String>,
    /// The input file's line, from 1.
    pub line: Option<usize>,
}

/// The batch object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Batch {
    /// `batch_` and 24 hex digits.
    pub id: String,
    /// Always `batch`.
    pub object: String,
    /// The route every line calls: `/v1/chat/completions` or `/v1/completions`.
    pub endpoint: String,
    /// Problems with the input (`{"object": "list", "data": [BatchError]}`), if any.
    pub errors: Option<List<BatchError>>,
    /// The uploaded input file.
    pub input_file_id: String,
    /// Always `24h`.
    pub completion_window: String,
    /// Where the batch is.
    pub status: BatchStatus,
    /// The output file (one line per answered request), once the batch ended.
    pub output_file_id: Option<String>,
    /// The error file (one line per failed or unfinished request), if there is one.
    pub error_file_id: Option<String>,
    /// Unix seconds of each step, set once reached.
    pub created_at: u64,
    /// See [`Batch::created_at`].
    pub in_progress_at: Option<u64>,
    /// When the completion window ends.
    pub expires_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub finalizing_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub completed_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub failed_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub expired_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub cancelling_at: Option<u64>,
    /// See [`Batch::created_at`].
    pub cancelled_at: Option<u64>,
    /// Progress.
    pub request_counts: RequestCounts,
    /// Tokens of the answered lines, summed from their `usage`.
    #[serde(default)]
    pub usage: BatchUsage,
    /// The client's key-value pairs (at most 16), returned as given.
    pub metadata: Option<Map<String, Value>>,
}

/// The body of `POST /v1/batches`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBatch {
    /// An uploaded file of purpose `batch`.
    pub input_file_id: String,
    /// The route of every line.
    pub endpoint: String,
    /// Must be `24h`.
    pub completion_window: String,
    /// Up to 16 key-value pairs, kept with the batch.
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// One line of an input file: `{"custom_id", "method": "POST", "url", "body"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputLine {
    /// The client's id for the request, unique in the file; quoted in its output line.
    pub custom_id: String,
    /// Must be `POST`.
    pub method: String,
    /// `/v1/chat/completions` or `/v1/completions`.
    pub url: String,
    /// The request's body, as the route takes it (without `stream`).
    pub body: Value,
}

/// One line of an output or error file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutputLine {
    /// `batch_req_` and 24 hex digits.
    pub id: String,
    /// The input line's `custom_id`.
    pub custom_id: String,
    /// The HTTP answer the request got, if it ran.
    pub response: Option<LineResponse>,
    /// Why it got none (`batch_expired`, `batch_cancelled`).
    pub error: Option<LineError>,
}

/// The HTTP answer of one batch request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineResponse {
    /// 200, or the error's status.
    pub status_code: u16,
    /// The sluice job that ran it.
    pub request_id: String,
    /// The completion object, or OpenAI's error body.
    pub body: Value,
}

/// Why a batch request got no answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineError {
    /// `batch_expired` or `batch_cancelled`.
    pub code: String,
    /// What happened.
    pub message: String,
}

/// A checked input line: the line, its request, and its number in the file (from 1).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckedLine {
    /// The line as written.
    pub line: InputLine,
    /// Its body, validated for its route.
    pub request: GenerateRequest,
    /// Its number in the file, from 1.
    pub number: usize,
}

fn line_error(number: usize, code: &str, message: String, param: Option<String>) -> BatchError {
    BatchError {
        code: code.into(),
        message: format!("line {number}: {message}"),
        param,
        line: Some(number),
    }
}

/// Check an input file line by line: each non-empty line a JSON object with a unique
/// `custom_id` (at most 512 bytes), `method` `POST`, a `url` of one of the two generation
/// routes and a `body` valid for it, not streamed. Blank lines are skipped. Returns every
/// line, or every problem found (each naming its line), at most `max_lines` lines.
pub fn check_input(text: &str, max_lines: usize) -> Result<Vec<CheckedLine>, Vec<BatchError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let number = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        match check_line(raw, number) {
            Ok(c) if !seen.insert(c.line.custom_id.clone()) => errors.push(line_error(
                number,
                "duplicate_custom_id",
                format!(
                    "custom_id `{}` is used by an earlier line",
                    c.line.custom_id
                ),
                Some("custom_id".into()),
            )),
            Ok(c) => out.push(c),
            Err(e) => errors.push(e),
        }
    }
    if out.len() + errors.len() > max_lines {
        errors.insert(
            0,
            BatchError {
                code: "too_many_requests".into(),
                message: format!("a batch file holds at most {max_lines} requests"),
                param: None,
                line: None,
            },
        );
    }
    if out.is_empty() && errors.is_empty() {
        errors.push(BatchError {
            code: "empty_file".into(),
            message: "the file holds no requests".into(),
            param: None,
            line: None,
        });
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn check_line(raw: &str, number: usize) -> Result<CheckedLine, BatchError> {
    // A line wraps its body in one level: the body gets the depth a `/v1` body gets.
    crate::nesting::check_text(raw.as_bytes(), "the line", crate::nesting::MAX_DEPTH + 1)
        .map_err(|m| line_error(number, "invalid_json", m, None))?;
    let line: InputLine = serde_json::from_str(raw)
        .map_err(|e| line_error(number, "invalid_json", e.to_string(), None))?;
    let bad = |param: &str, message: String| {
        line_error(number, "invalid_request", message, Some(param.into()))
    };
    if line.custom_id.is_empty() || line.custom_id.len() > 512 {
        return Err(bad(
            "custom_id",
            "`custom_id` must be 1 to 512 bytes".into(),
        ));
    }
    if line.method != "POST" {
        return Err(bad("method", "`method` must be POST".into()));
    }
    if line.url != CHAT_ROUTE && line.url != COMPLETIONS_ROUTE {
        return Err(bad(
            "url",
            format!("`url` must be {CHAT_ROUTE} or {COMPLETIONS_ROUTE}"),
        ));
    }
    let request = GenerateRequest::parse(&line.url, line.body.clone()).map_err(|e| {
        let param = e.param.map(|p| format!("body.{p}"));
        line_error(number, "invalid_request", e.message, param)
    })?;
    if request.stream() {
        return Err(bad("body.stream", "batch requests cannot stream".into()));
    }
    Ok(CheckedLine {
        line,
        request,
        number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bad_line_is_named_by_number() {
        let good = r#"{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "x"}}"#;
        let file = [
            good,
            "",
            "not json",
            good,
            r#"{"custom_id": "b", "method": "GET", "url": "/v1/completions", "body": {}}"#,
            r#"{"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "x", "temperature": 9}}"#,
            r#"{"custom_id": "d", "method": "POST", "url": "/v1/completions", "body": {"model": "m", "prompt": "x", "stream": true}}"#,
        ]
        .join("\n");
        let errors = check_input(&file, 100).unwrap_err();
        let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [Some(3), Some(4), Some(5), Some(6), Some(7)]);
        assert_eq!(errors[1].code, "duplicate_custom_id");
        assert_eq!(errors[3].param.as_deref(), Some("body.temperature"));
        assert!(errors[0].message.starts_with("line 3: "));
        assert_eq!(check_input(good, 100).unwrap()[0].number, 1);
        assert_eq!(
            check_input(&format!("{good}\n{good}"), 1).unwrap_err()[0].code,
            "too_many_requests"
        );
        assert_eq!(check_input("\n", 1).unwrap_err()[0].code, "empty_file");
        let deep = |levels: usize| {
            format!(
                r#"{{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {{"model": "m", "prompt": "x", "x": {}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        let limit = crate::nesting::MAX_DEPTH - 1;
        let e = &check_input(&deep(limit + 1), 1).unwrap_err()[0];
        assert!(e.message.contains("levels deep"), "{}", e.message);
        // At the limit the line passes the depth check (and fails on the unknown `x`).
        let e = &check_input(&deep(limit), 1).unwrap_err()[0];
        assert_eq!(e.param.as_deref(), Some("body.x"), "{}", e.message);
    }

    #[test]
    fn pages_follow_the_after_cursor() {
        let items: Vec<String> = (0..5).map(|i| format!("b{i}")).collect();
        let p = List::page(items.clone(), None, 2, |s| s.as_str());
        assert_eq!(
            (p.data.len(), p.has_more, p.last_id.as_deref()),
            (2, true, Some("b1"))
        );
        let p = List::page(items, Some("b3"), 2, |s| s.as_str());
        assert_eq!((p.data, p.has_more), (vec!["b4".to_string()], false));
    }
}
