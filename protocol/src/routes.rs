//! The HTTP routes every role agrees on. The gateway's router registers these paths (axum
//! `{name}` captures); sluice's worker, the custom-handler environment (RunPod's
//! `RUNPOD_WEBHOOK_*` URLs) and the worker-identity parser build and read URLs with the same
//! constants, so a renamed route cannot drift between them.

/// Liveness probe: 200 while the process serves.
pub const HEALTH: &str = "/health";
/// Readiness probe: 200 once the store answers and every endpoint has its `min_workers`.
pub const READY: &str = "/ready";
/// The OpenAPI 3.1 document of the client API (no credentials, as vLLM's).
pub const OPENAPI: &str = "/openapi.json";
/// Prometheus metrics, text format (no credentials, as vLLM's; see `protocol::metrics`).
pub const METRICS: &str = "/metrics";
/// OpenAI's model listing.
pub const MODELS: &str = "/v1/models";
/// OpenAI's chat completions.
pub const CHAT_COMPLETIONS: &str = crate::openai::CHAT_ROUTE;
/// OpenAI's (legacy) text completions.
pub const COMPLETIONS: &str = crate::openai::COMPLETIONS_ROUTE;

/// vLLM's tokenizer route: `POST` a prompt or messages, get their token ids.
pub const TOKENIZE: &str = "/tokenize";
/// vLLM's detokenizer route: `POST` token ids, get their text.
pub const DETOKENIZE: &str = "/detokenize";
/// OpenAI's embeddings.
pub const EMBEDDINGS: &str = crate::openai::embeddings::EMBEDDINGS_ROUTE;
/// OpenAI's Responses API: `POST` input items, get a response object (or its events).
pub const RESPONSES: &str = "/v1/responses";
/// A stored response: `GET` it, `DELETE` it.
pub const RESPONSE: &str = "/v1/responses/{response_id}";
/// `GET`: a stored response's input items, a page at a time.
pub const RESPONSE_INPUT_ITEMS: &str = "/v1/responses/{response_id}/input_items";
/// Anthropic's Messages API: `POST` a conversation, get a message (or its events).
pub const MESSAGES: &str = "/v1/messages";
/// Anthropic's token counter: `POST` what a message would be given, get `input_tokens`.
pub const MESSAGES_COUNT_TOKENS: &str = "/v1/messages/count_tokens";
/// vLLM's tokenizer description: `GET` its special tokens and chat template (what
/// lm-evaluation-harness' remote tokenizer reads first).
pub const TOKENIZER_INFO: &str = "/tokenizer_info";

/// OpenAI's Files API: `POST` uploads a batch input file (multipart `file` + `purpose`), `GET`
/// lists files.
pub const FILES: &str = "/v1/files";
/// `GET`: a file's object; `DELETE`: delete it.
pub const FILE: &str = "/v1/files/{file_id}";
/// `GET`: a file's content.
pub const FILE_CONTENT: &str = "/v1/files/{file_id}/content";
/// OpenAI's Batch API: `POST` creates a batch, `GET` lists them (`?after=ID&limit=N`).
pub const BATCHES: &str = "/v1/batches";
/// `GET`: a batch's object.
pub const BATCH: &str = "/v1/batches/{batch_id}";
/// `POST`: cancel a batch.
pub const BATCH_CANCEL: &str = "/v1/batches/{batch_id}/cancel";

/// Where an endpoint's routes live: `/v2/{endpoint}/...`, as on RunPod.
pub const ENDPOINT_PREFIX: &str = "/v2/";

/// The client-facing queue API under `/v2/{endpoint}` (RunPod's routes).
pub mod queue {
    /// `POST`: queue a job (`{"input", "webhook", "policy", "s3Config"}`) and answer at once
    /// with `{"id", "status": "IN_QUEUE"}`.
    pub const RUN: &str = "/v2/{endpoint}/run";
    /// `POST [?wait=ms]`: queue a job and answer its status object once it ends or after
    /// `wait` ms (1 s to 5 min, default 90 s), whichever comes first.
    pub const RUNSYNC: &str = "/v2/{endpoint}/runsync";
    /// `GET` or `POST`: a job's status object; 404 for an unknown or expired job.
    pub const STATUS: &str = "/v2/{endpoint}/status/{job}";
    /// `GET` or `POST [?wait=ms]`: a job's status object once it ends or after `wait` ms
    /// (long-poll, as RunPod's Go SDK uses it).
    pub const STATUS_SYNC: &str = "/v2/{endpoint}/status-sync/{job}";
    /// `GET` or `POST [?wait=ms]`: the job's stream chunks not delivered before, long-polled
    /// (1 s without `wait`).
    pub const STREAM: &str = "/v2/{endpoint}/stream/{job}";
    /// `POST`: cancel a job; answers `{"id", "status"}`.
    pub const CANCEL: &str = "/v2/{endpoint}/cancel/{job}";
    /// `POST`: queue a `FAILED` or `TIMED_OUT` job again, same id and input.
    pub const RETRY: &str = "/v2/{endpoint}/retry/{job}";
    /// `POST`: remove the endpoint's queued jobs (not running ones); answers
    /// `{"removed": N, "status": "completed"}`.
    pub const PURGE_QUEUE: &str = "/v2/{endpoint}/purge-queue";
    /// `GET`: the endpoint's job counts and its workers by state.
    pub const HEALTH: &str = "/v2/{endpoint}/health";
    /// The OpenAI API of one endpoint (RunPod's vLLM worker serves it there): `GET`, the
    /// endpoint's model alone.
    pub const OPENAI_MODELS: &str = "/v2/{endpoint}/openai/v1/models";
    /// `POST`: OpenAI's chat completions on the endpoint's model (`model` must name it).
    pub const OPENAI_CHAT_COMPLETIONS: &str = "/v2/{endpoint}/openai/v1/chat/completions";
    /// `POST`: OpenAI's text completions on the endpoint's model (`model` must name it).
    pub const OPENAI_COMPLETIONS: &str = "/v2/{endpoint}/openai/v1/completions";
    /// The Files API under the endpoint (uploads must name only its model).
    pub const OPENAI_FILES: &str = "/v2/{endpoint}/openai/v1/files";
    /// See [`OPENAI_FILES`].
    pub const OPENAI_FILE: &str = "/v2/{endpoint}/openai/v1/files/{file_id}";
    /// See [`OPENAI_FILES`].
    pub const OPENAI_FILE_CONTENT: &str = "/v2/{endpoint}/openai/v1/files/{file_id}/content";
    /// The Batch API under the endpoint (its lines must name only its model).
    pub const OPENAI_BATCHES: &str = "/v2/{endpoint}/openai/v1/batches";
    /// See [`OPENAI_BATCHES`].
    pub const OPENAI_BATCH: &str = "/v2/{endpoint}/openai/v1/batches/{batch_id}";
    /// See [`OPENAI_BATCHES`].
    pub const OPENAI_BATCH_CANCEL: &str = "/v2/{endpoint}/openai/v1/batches/{batch_id}/cancel";
}

/// RunPod's SDK appends its parameters (`&job_in_progress=...`, `&batch_size=...`,
/// `&isStream=...`) to the URLs it is given without checking for a `?`, so every worker URL
/// handed out already carries a query string; this one means nothing.
pub const SDK_QUERY: &str = "?x=1";

/// The worker protocol (RunPod's routes under `/v2/{endpoint}/`), by what each route does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerRoute {
    /// `GET .../job-take/{worker}`: one job (200) or none (204), long-polled.
    JobTake,
    /// `GET .../job-take-batch/{worker}?batch_size=N`: a list of jobs, long-polled.
    JobTakeBatch,
    /// `POST .../job-done/{worker}/{job}`: the result (or a progress update).
    JobDone,
    /// `POST .../job-stream/{worker}/{job}`: stream chunks.
    JobStream,
    /// `GET .../ping/{worker}?job_id=a,b`: liveness and the jobs it runs.
    Ping,
    /// `GET .../job-stop/{worker}`: jobs to stop, long-polled.
    JobStop,
}

impl WorkerRoute {
    /// The route's name, the path segment after the endpoint.
    pub fn name(self) -> &'static str {
        match self {
            WorkerRoute::JobTake => "job-take",
            WorkerRoute::JobTakeBatch => "job-take-batch",
            WorkerRoute::JobDone => "job-done",
            WorkerRoute::JobStream => "job-stream",
            WorkerRoute::Ping => "ping",
            WorkerRoute::JobStop => "job-stop",
        }
    }

    /// The router's path, e.g. `/v2/{endpoint}/job-done/{worker}/{job}`.
    pub fn path(self) -> &'static str {
        match self {
            WorkerRoute::JobTake => "/v2/{endpoint}/job-take/{worker}",
            WorkerRoute::JobTakeBatch => "/v2/{endpoint}/job-take-batch/{worker}",
            WorkerRoute::JobDone => "/v2/{endpoint}/job-done/{worker}/{job}",
            WorkerRoute::JobStream => "/v2/{endpoint}/job-stream/{worker}/{job}",
            WorkerRoute::Ping => "/v2/{endpoint}/ping/{worker}",
            WorkerRoute::JobStop => "/v2/{endpoint}/job-stop/{worker}",
        }
    }

    /// `{gateway}/v2/{endpoint}/{name}/{worker}`: the URL of this route for one worker, to
    /// which job routes append `/{job}` and every caller a query.
    pub fn url(self, gateway: &str, endpoint: &str, worker: &str) -> String {
        format!(
            "{}{ENDPOINT_PREFIX}{endpoint}/{}/{worker}",
            gateway.trim_end_matches('/'),
            self.name()
        )
    }
}

/// The gateway and endpoint of a worker URL (`{gateway}/v2/{endpoint}/...`), as RunPod's
/// `RUNPOD_WEBHOOK_GET_JOB` gives them; `None` if the URL has no endpoint part.
pub fn split_worker_url(url: &str) -> Option<(&str, &str)> {
    let (gateway, rest) = url.split_once(ENDPOINT_PREFIX)?;
    let endpoint = rest.split('/').next().filter(|e| !e.is_empty())?;
    Some((gateway, endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_paths_agree() {
        for r in [
            WorkerRoute::JobTake,
            WorkerRoute::JobTakeBatch,
            WorkerRoute::JobDone,
            WorkerRoute::JobStream,
            WorkerRoute::Ping,
            WorkerRoute::JobStop,
        ] {
            let url = r.url("http://g:1/", "ep", "w");
            let path = r
                .path()
                .replace("{endpoint}", "ep")
                .replace("{worker}", "w");
            assert!(
                path.starts_with(url.trim_start_matches("http://g:1")),
                "{r:?}"
            );
            assert_eq!(split_worker_url(&url), Some(("http://g:1", "ep")));
        }
        assert_eq!(split_worker_url("http://g/v1/models"), None);
    }
}
