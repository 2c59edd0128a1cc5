//! Relaying a job back to an HTTP client: as server-sent events for streamed requests, and
//! the guard that cancels the job when the client goes away first.

use crate::error::GatewayError;
use crate::metrics::Timing;
use axum::body::Body;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use protocol::responses::stored::StoredResponse;
use protocol::sse::{frame, DONE};
use protocol::{JobId, JobStatus};
use queue::JobStore;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Cancels its job when dropped while armed: hyper drops a handler's future (or a response
/// body stream) when the client disconnects, which is exactly when the job is no longer wanted.
pub struct CancelOnDrop {
    store: Arc<dyn JobStore>,
    job: Option<JobId>,
}

impl CancelOnDrop {
    pub fn new(store: Arc<dyn JobStore>, job: JobId) -> Self {
        CancelOnDrop {
            store,
            job: Some(job),
        }
    }

    /// The job ended by itself; nothing to cancel.
    pub fn disarm(mut self) {
        self.job = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(job) = self.job.take() {
            let store = self.store.clone();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    if let Ok(status) = store.cancel(&job).await {
                        tracing::info!(%job, %status, "client went away; job cancelled");
                    }
                });
            }
        }
    }
}

/// How long one read of the job's stream waits before a keep-alive comment is sent (which is
/// also how a silently vanished client gets noticed).
const KEEP_ALIVE: Duration = Duration::from_secs(10);

/// Until the first chunk, how often the relay looks for a cold start to report (an SSE
/// comment each time one is under way). Shorter than the quickest start from disk (~0.3 s on
/// CPU), so a cold start is always reported.
const COLD_POLL: Duration = Duration::from_millis(100);

/// How a job's OpenAI chunks reach a client: as they are, or translated into another API's
/// events (Anthropic's).
pub trait Dialect: Send + 'static {
    /// The SSE text of one chunk.
    fn chunk(&mut self, chunk: &Value) -> String;
    /// The SSE text of a failure (after any chunks).
    fn error(&mut self, e: GatewayError) -> String;
    /// The SSE text that ends a stream that did not fail.
    fn done(&mut self) -> String;
    /// What to keep of the answer once [`Dialect::done`] has ended it, under which id and for
    /// how long (the Responses API's stored response); kept before the last events are sent,
    /// so a client that reads the end can read it back at once.
    fn kept(&mut self) -> Option<(String, StoredResponse, Duration)> {
        None
    }
}

/// OpenAI's stream: each chunk a `data:` event, an error object, then `data: [DONE]`.
pub struct OpenAiEvents;

impl Dialect for OpenAiEvents {
    fn chunk(&mut self, chunk: &Value) -> String {
        frame(&chunk.to_string())
    }
    fn error(&mut self, e: GatewayError) -> String {
        frame(&serde_json::to_string(&e.openai_body()).unwrap_or_default()) + &self.done()
    }
    fn done(&mut self) -> String {
        frame(DONE)
    }
}

struct Relay {
    dialect: Box<dyn Dialect>,
    store: Arc<dyn JobStore>,
    endpoint: String,
    job: JobId,
    cursor: usize,
    guard: Option<CancelOnDrop>,
    timing: Timing,
    /// Open while the stream is: the relay's part of the request's trace.
    span: tracing::Span,
}

impl Relay {
    fn finish(&mut self) {
        if let Some(g) = self.guard.take() {
            g.disarm();
        }
    }
}

/// Stream the job's chunks as `data:` events, then an error event if it failed, then
/// `data: [DONE]`; while it waits for a worker of `endpoint` to start, comment lines
/// (`: cold-start tier=... phase=... elapsed_ms=...`, see `cold::comment`).
pub fn sse(
    store: Arc<dyn JobStore>,
    (endpoint, job): (&str, JobId),
    guard: CancelOnDrop,
    timing: Timing,
    dialect: Box<dyn Dialect>,
) -> Response {
    let relay = Relay {
        dialect,
        store,
        endpoint: endpoint.to_string(),
        job,
        cursor: 0,
        guard: Some(guard),
        timing,
        span: tracing::info_span!("relay stream"),
    };
    let stream = futures::stream::unfold(relay, |r| {
        let span = r.span.clone();
        relay_step(r).instrument(span)
    });
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

/// One step of the relay: the next read of the job's stream as SSE text (chunks, or a
/// keep-alive comment), and at the end the error event if any and `[DONE]`; `None` once done.
async fn relay_step(mut r: Relay) -> Option<(Result<String, std::convert::Infallible>, Relay)> {
    // No guard left: the stream already ended.
    r.guard.as_ref()?;
    let mut quiet = Duration::ZERO;
    let read = loop {
        // Before the first chunk, short reads, to report a cold start while it goes on.
        let wait = if r.cursor == 0 { COLD_POLL } else { KEEP_ALIVE };
        let read = match r.store.read_stream(&r.job, r.cursor, wait).await {
            Ok(read) => read,
            Err(e) => {
                let text = r.dialect.error(GatewayError::Internal(e.to_string()));
                r.finish();
                return Some((Ok(text), r));
            }
        };
        quiet += wait;
        if !read.chunks.is_empty() || read.status.is_final() || quiet >= KEEP_ALIVE {
            break read;
        }
        if read.status == JobStatus::InQueue {
            if let Some(c) = crate::cold::comment(r.store.as_ref(), &r.endpoint).await {
                return Some((Ok(c), r));
            }
        }
    };
    r.cursor = read.next;
    let mut text: String = read.chunks.iter().map(|c| r.dialect.chunk(c)).collect();
    if !read.chunks.is_empty() {
        r.timing.chunk();
    }
    if read.chunks.is_empty() && read.status.is_final() {
        // The final view: the usage of a completed job (for TPOT), the error of another.
        let view = r.store.get(&r.job).await.ok().flatten();
        if read.status == JobStatus::Completed {
            r.timing.finish(view.as_ref().and_then(Timing::tokens_of));
            let done = r.dialect.done();
            let kept = match r.dialect.kept() {
                Some((id, record, ttl)) => r.store.put_response(&id, &record, ttl).await,
                None => Ok(()),
            };
            match kept {
                Ok(()) => text.push_str(&done),
                Err(e) => text.push_str(&r.dialect.error(e.into())),
            }
        } else {
            let why = match view {
                Some(v) => v.error.unwrap_or_else(|| format!("job {}", v.status)),
                None => format!("job {}", read.status),
            };
            text.push_str(&r.dialect.error(GatewayError::job_failed(why)));
        }
        r.finish();
    } else if text.is_empty() {
        text = ": keep-alive\n\n".to_string();
    }
    Some((Ok(text), r))
}
