//! Jobs: states, the status object clients see, and the worker-protocol bodies.
//!
//! Names and shapes follow RunPod Serverless (see `docs/runpod-protocol.md`), so
//! that RunPod clients and unmodified RunPod handlers work against sluice.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// An opaque job id. Generated ids are 128-bit random (unguessable), hex encoded.
#[derive(
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(transparent)]
pub struct JobId(pub String);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for JobId {
    fn from(s: &str) -> Self {
        JobId(s.to_string())
    }
}

/// The life cycle of a job. `IN_QUEUE -> IN_PROGRESS -> {COMPLETED, FAILED, TIMED_OUT}`, with
/// `CANCELLED` reachable from any non-final state, and a worker's lost lease sending an
/// `IN_PROGRESS` job back to `IN_QUEUE`. `retry` sends FAILED / TIMED_OUT back to `IN_QUEUE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum JobStatus {
    /// `IN_QUEUE`: waiting for a worker.
    InQueue,
    /// `IN_PROGRESS`: taken by a worker, which holds its lease.
    InProgress,
    /// `COMPLETED`: the worker reported its output.
    Completed,
    /// `FAILED`: the handler reported an error, or its worker was lost more than the gateway's
    /// `max_retries` times.
    Failed,
    /// `CANCELLED`: cancelled by the client (`/cancel`).
    Cancelled,
    /// `TIMED_OUT`: ran past its execution timeout (`policy.executionTimeout`); its worker is told
    /// to stop it.
    TimedOut,
}

impl JobStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::InQueue,
        JobStatus::InProgress,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::TimedOut,
    ];

    /// Final states never change again (except by an explicit `retry`).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Cancelled | JobStatus::TimedOut
        )
    }

    /// Whether `self -> to` is a legal transition. Every backend checks this, so the rules
    /// live in one place.
    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        matches!(
            (self, to),
            (InQueue, InProgress | Cancelled | TimedOut)
                | (
                    InProgress,
                    Completed | Failed | Cancelled | TimedOut | InQueue
                )
                | (Failed | TimedOut, InQueue)
        )
    }

    /// The status with wire name `s` (`IN_QUEUE`, ...); `None` for any other string.
    pub fn parse(s: &str) -> Option<JobStatus> {
        JobStatus::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// RunPod's wire name (`IN_QUEUE`, `IN_PROGRESS`, `COMPLETED`, `FAILED`, `CANCELLED`,
    /// `TIMED_OUT`), as serde writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::InQueue => "IN_QUEUE",
            JobStatus::InProgress => "IN_PROGRESS",
            JobStatus::Completed => "COMPLETED",
            JobStatus::Failed => "FAILED",
            JobStatus::Cancelled => "CANCELLED",
            JobStatus::TimedOut => "TIMED_OUT",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Per-job policy (RunPod's `policy` object). Times in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobPolicy {
    /// RunPod's `executionTimeout`: how long the job may run once taken, ms; default 600,000
    /// (10 min). The gateway caps it at `ttl`.
    #[serde(default = "default_execution_timeout")]
    pub execution_timeout: u64,
    /// RunPod's `ttl`: the job is deleted this long after submission, in any state, ms; default
    /// 86,400,000 (24 h).
    #[serde(default = "default_ttl")]
    pub ttl: u64,
    /// RunPod's `lowPriority`: the job is queued behind normal ones and never causes a scale-up;
    /// default false.
    #[serde(default)]
    pub low_priority: bool,
}

fn default_execution_timeout() -> u64 {
    600_000
}
fn default_ttl() -> u64 {
    86_400_000
}

impl Default for JobPolicy {
    fn default() -> Self {
        JobPolicy {
            execution_timeout: default_execution_timeout(),
            ttl: default_ttl(),
            low_priority: false,
        }
    }
}

/// RunPod's `policy` object as a client sends it (`/run`, `/runsync`): every field optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyRequest {
    /// `executionTimeout`, ms; absent: the endpoint's `execution_timeout_secs`.
    pub execution_timeout: Option<u64>,
    /// `ttl`, ms; absent: 86,400,000 (24 h).
    pub ttl: Option<u64>,
    /// `lowPriority`; absent: false.
    pub low_priority: Option<bool>,
}

impl PolicyRequest {
    /// The job's policy: the client's values, else the endpoint's execution timeout
    /// (`endpoint_execution_timeout_ms`) and RunPod's defaults; the execution timeout is capped
    /// at the TTL (a job cannot run past its deletion). Errors: a zero time, as a message.
    pub fn resolve(self, endpoint_execution_timeout_ms: u64) -> Result<JobPolicy, String> {
        let policy = JobPolicy {
            execution_timeout: self
                .execution_timeout
                .unwrap_or(endpoint_execution_timeout_ms),
            ttl: self.ttl.unwrap_or_else(default_ttl),
            low_priority: self.low_priority.unwrap_or(false),
        };
        if policy.execution_timeout == 0 || policy.ttl == 0 {
            return Err("`policy` times must be positive milliseconds".into());
        }
        Ok(JobPolicy {
            execution_timeout: policy.execution_timeout.min(policy.ttl),
            ..policy
        })
    }
}

/// A `run` / `runsync` body, RunPod's `{"input", "webhook", "policy", "s3Config"}`, checked
/// before anything is queued.
#[derive(Clone, Debug, PartialEq)]
pub struct RunBody {
    /// The handler's input: any JSON but `null`.
    pub input: Value,
    /// An `http://` or `https://` URL to POST the final status to (where it may point is the
    /// gateway's check).
    pub webhook: Option<String>,
    /// The job's policy, resolved (see [`PolicyRequest::resolve`]).
    pub policy: JobPolicy,
    /// RunPod's `s3Config`, passed through to the worker.
    pub s3_config: Option<Value>,
}

impl RunBody {
    /// Check `body`; `endpoint_execution_timeout_ms` is the policy's default execution
    /// timeout. Errors, as a message for the client: not an object, no `input`, a `webhook`
    /// that is not an http(s) URL, a bad `policy`, an unknown field.
    pub fn parse(body: Value, endpoint_execution_timeout_ms: u64) -> Result<Self, String> {
        let Value::Object(mut m) = body else {
            return Err("the body must be a JSON object with `input`".into());
        };
        let input = m
            .remove("input")
            .filter(|v| !v.is_null())
            .ok_or("`input` is required")?;
        let webhook = match m.remove("webhook") {
            None | Some(Value::Null) => None,
            Some(Value::String(url))
                if url.starts_with("http://") || url.starts_with("https://") =>
            {
                Some(url)
            }
            Some(_) => return Err("`webhook` must be an http(s) URL".into()),
        };
        let request: PolicyRequest = match m.remove("policy") {
            None | Some(Value::Null) => PolicyRequest::default(),
            Some(p) => serde_json::from_value(p).map_err(|e| format!("`policy`: {e}"))?,
        };
        let policy = request.resolve(endpoint_execution_timeout_ms)?;
        let s3_config = match m.remove("s3Config") {
            None | Some(Value::Null) => None,
            Some(c @ Value::Object(_)) => Some(c),
            Some(_) => return Err("`s3Config` must be an object".into()),
        };
        if let Some(k) = m.keys().next() {
            return Err(format!("unknown field `{k}`"));
        }
        Ok(RunBody {
            input,
            webhook,
            policy,
            s3_config,
        })
    }
}

/// The status object returned by `/status/{id}` and friends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct JobView {
    /// The job's id.
    pub id: JobId,
    /// Where the job is in its life cycle.
    pub status: JobStatus,
    /// Milliseconds between submission and the (last) start of execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay_time: Option<u64>,
    /// Milliseconds of execution, when started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_time: Option<u64>,
    /// The handler's output once COMPLETED; while IN_PROGRESS, its latest progress update
    /// (RunPod's `progress_update`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Why the job FAILED or TIMED_OUT.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Times the job went back to the queue (sluice's; RunPod's own API leaves it out).
    #[serde(default)]
    pub retries: u32,
    /// The worker that took the job (sluice's; not in RunPod's status object); absent while
    /// queued.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_id: Option<String>,
    /// The cold start the job waited for, if it did (sluice's; see
    /// [`crate::health::ColdStart::waited_for`]): filled by the gateway while the worker is
    /// in the autoscaler's fleet view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cold_start: Option<crate::health::JobColdStart>,
    /// When the job last started, ms since the Unix epoch (the store's clock); the store's,
    /// not on the wire.
    #[serde(skip)]
    pub started_at_ms: Option<u64>,
}

/// `run`, `cancel` and `retry` answer with the job's id and (new) status.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JobAccepted {
    /// The job's id.
    pub id: JobId,
    /// Its status after the request: `IN_QUEUE` after `run` and `retry`; after `cancel`,
    /// `CANCELLED`, or the final status of a job that had already ended.
    pub status: JobStatus,
}

/// `stream/{id}`: chunks not delivered before (each `{"output": chunk}`), the job's status,
/// and its error once it FAILED or TIMED_OUT (as `/status` says it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamView {
    /// The job's id (empty when a response being read leaves it out).
    #[serde(default)]
    pub id: JobId,
    /// The job's status when the chunks were read.
    pub status: JobStatus,
    /// Chunks not returned by an earlier `stream` call, oldest first; always present, possibly
    /// empty (RunPod's SDK stops reading once the job is final and this is empty).
    pub stream: Vec<StreamChunk>,
    /// The job's error once it FAILED or TIMED_OUT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One streamed piece of a job's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StreamChunk {
    /// The chunk, as the handler yielded it.
    pub output: Value,
}

/// `purge-queue`: how many queued jobs were removed; `status` is always `completed`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Purged {
    /// Queued jobs removed (jobs in progress are left alone).
    pub removed: usize,
    /// Always `completed` (RunPod's answer).
    pub status: String,
}

/// What `job-take` hands a worker: the whole object is passed to a RunPod handler.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TakenJob {
    /// The job's id.
    pub id: JobId,
    /// The `input` of the `run` / `runsync` body, unchanged.
    pub input: Value,
    /// RunPod's `s3Config` from the request, passed through to the handler; absent if none.
    #[serde(rename = "s3Config", skip_serializing_if = "Option::is_none", default)]
    pub s3_config: Option<Value>,
    /// The W3C `traceparent` of the request that queued the job (`00-{trace id}-{span id}-
    /// {flags}`), when the gateway traces or the client sent one: a handler that continues it
    /// joins the request's trace. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traceparent: Option<String>,
}

/// A failed job's `error` as sluice's worker reports it, in the RunPod SDK's shape (its
/// handler failures are `{"error_type", "error_message", ...}` too); `error_type` is
/// [`JobFailure::INVALID_REQUEST`] when the job's input was at fault, so the gateway answers
/// an OpenAI request with a 400 instead of a 500.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobFailure {
    /// [`JobFailure::INVALID_REQUEST`] or [`JobFailure::INTERNAL`] from sluice's worker; a
    /// Python class name from RunPod's SDK.
    pub error_type: String,
    /// What went wrong, for people.
    pub error_message: String,
}

impl JobFailure {
    /// The input was at fault (OpenAI's `invalid_request_error`).
    pub const INVALID_REQUEST: &'static str = "invalid_request_error";
    /// The handler or engine was at fault.
    pub const INTERNAL: &'static str = "internal_error";

    /// A job's stored `error` text read as a failure, if it has this shape.
    pub fn parse(error: &str) -> Option<JobFailure> {
        serde_json::from_str(error).ok()
    }

    /// Whether the job's input was at fault.
    pub fn is_invalid_request(&self) -> bool {
        self.error_type == Self::INVALID_REQUEST
    }
}

/// The body of `job-done`: `error` present means FAILED; `status: IN_PROGRESS` is a progress
/// update that does not finish the job.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobDoneBody {
    /// The handler's result, or the progress value when `status` is `IN_PROGRESS`; generator
    /// handlers (`isStream=true`) send the aggregated list of their chunks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The handler's error: a string, or any JSON (kept as its JSON text). Present means FAILED.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// `IN_PROGRESS` marks a progress update (RunPod's `progress_update`); other values are
    /// ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// RunPod's `stopPod` (the handler's `refresh_worker`): the worker is retired after this job
    /// and takes no new one.
    #[serde(
        default,
        rename = "stopPod",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub stop_pod: bool,
}

/// What a worker reports through `job-done`, decoded.
#[derive(Clone, Debug, PartialEq)]
pub enum JobReport {
    /// A progress update: becomes the job's `output` in `/status`; the job stays IN_PROGRESS.
    Progress(Value),
    /// The final output (null when none was sent): the job becomes COMPLETED.
    Completed(Value),
    /// The handler's error message: the job becomes FAILED.
    Failed(String),
}

impl JobDoneBody {
    /// Decode the body: `error` present wins (FAILED); then `status: IN_PROGRESS` is progress;
    /// otherwise COMPLETED with `output` (null when absent).
    pub fn report(self) -> JobReport {
        if let Some(err) = self.error {
            let msg = match err {
                Value::String(s) => s,
                other => other.to_string(),
            };
            return JobReport::Failed(msg);
        }
        let output = self.output.unwrap_or(Value::Null);
        if self.status.as_deref() == Some("IN_PROGRESS") {
            JobReport::Progress(output)
        } else {
            JobReport::Completed(output)
        }
    }
}

/// The query of a worker's `ping`: RunPod's `job_id` list, sluice's `listed` flag, and the
/// engine's own figures, which sluice's worker adds and the gateway re-exports in `/metrics`
/// (RunPod's SDK sends other keys too; they are ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PingQuery {
    /// Comma-separated ids of the jobs the worker runs.
    #[serde(default)]
    pub job_id: Option<String>,
    /// `1`: the list is complete (sluice's worker), so held jobs it leaves out may be reclaimed.
    #[serde(default)]
    pub listed: Option<String>,
    /// Jobs the engine is running now.
    #[serde(default)]
    pub running_jobs: Option<u64>,
    /// Prompt tokens of the jobs it finished since it started.
    #[serde(default)]
    pub prompt_tokens: Option<u64>,
    /// Tokens it generated for the jobs it finished since it started.
    #[serde(default)]
    pub generated_tokens: Option<u64>,
    /// `unhealthy`: RunPod's SDK failed a fitness check and exits (with `check`, `reason`).
    #[serde(default)]
    pub status: Option<String>,
    /// The fitness check that failed (its function's name).
    #[serde(default)]
    pub check: Option<String>,
    /// Why it failed (the exception's type and message; the SDK cuts it at 256 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Body of `job-stop` when jobs must stop.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct JobsToStop {
    /// RunPod's `jobsToStop`: ids of this worker's jobs to abandon (cancelled, timed out or
    /// expired); the worker posts no result for them.
    #[serde(rename = "jobsToStop")]
    pub jobs_to_stop: Vec<JobId>,
}

/// Decode a `job-stream` body: RunPod's SDK posts `{"output": chunk}`; sluice's own worker may
/// post a JSON array of such objects to send several chunks in one request.
pub fn stream_chunks(body: Value) -> Result<Vec<Value>, String> {
    fn one(v: Value) -> Result<Value, String> {
        match v {
            Value::Object(mut m) => m
                .remove("output")
                .ok_or_else(|| "job-stream body has no `output`".to_string()),
            _ => Err("job-stream body must be an object with `output`".to_string()),
        }
    }
    match body {
        Value::Array(items) => items.into_iter().map(one).collect(),
        other => Ok(vec![one(other)?]),
    }
}

/// The job input that carries an OpenAI request, as RunPod's vLLM worker defines it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpenAiJobInput {
    /// The OpenAI route the request came in on, e.g. `/v1/chat/completions`.
    pub openai_route: String,
    /// The OpenAI request body, unchanged.
    pub openai_input: Value,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use JobStatus::*;

    const ALL: [JobStatus; 6] = JobStatus::ALL;

    #[test]
    fn final_states_only_leave_by_retry() {
        for from in ALL.into_iter().filter(|s| s.is_final()) {
            for to in ALL {
                let allowed = from.can_become(to);
                let is_retry = matches!(from, Failed | TimedOut) && to == InQueue;
                assert_eq!(allowed, is_retry, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn live_transitions() {
        assert!(InQueue.can_become(InProgress));
        assert!(InQueue.can_become(Cancelled));
        assert!(!InQueue.can_become(Completed), "a job must be taken first");
        assert!(InProgress.can_become(Completed));
        assert!(InProgress.can_become(InQueue), "lease lost -> requeued");
        assert!(!InProgress.can_become(InProgress));
    }

    #[test]
    fn status_serializes_like_runpod() {
        assert_eq!(serde_json::to_value(TimedOut).unwrap(), json!("TIMED_OUT"));
        assert_eq!(
            serde_json::from_value::<JobStatus>(json!("IN_QUEUE")).unwrap(),
            InQueue
        );
    }

    #[test]
    fn job_done_bodies_decode() {
        let p: JobDoneBody =
            serde_json::from_value(json!({"status": "IN_PROGRESS", "output": 0.5})).unwrap();
        assert_eq!(p.report(), JobReport::Progress(json!(0.5)));
        let f: JobDoneBody = serde_json::from_value(json!({"error": "boom"})).unwrap();
        assert_eq!(f.report(), JobReport::Failed("boom".into()));
        let c: JobDoneBody = serde_json::from_value(json!({"output": {"a": 1}})).unwrap();
        assert_eq!(c.report(), JobReport::Completed(json!({"a": 1})));
    }

    #[test]
    fn stream_bodies_decode_single_and_batched() {
        assert_eq!(
            stream_chunks(json!({"output": "a"})).unwrap(),
            vec![json!("a")]
        );
        assert_eq!(
            stream_chunks(json!([{"output": 1}, {"output": 2}])).unwrap(),
            vec![json!(1), json!(2)]
        );
        assert!(stream_chunks(json!({"x": 1})).is_err());
    }
}
