//! The engine crate's one error type, and how a job reports it.

use worker::JobError;

/// Why loading the model or running a job failed. A job's error is reported to the gateway
/// as its `job-done` error (the `Display` text; the job becomes FAILED), except `Cancelled`.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// [`crate::Engine::load`] failed: the GGUF is missing or not a file, no device, a bad
    /// engine setting (`max_num_seqs` of 0, `prefix_cache = true` on a CPU), or the backend
    /// could not build the model; holds the cause.
    #[error("loading the model failed: {0}")]
    Load(String),
    /// The job's input is at fault: not one of the accepted forms (`openai_route` or
    /// worker-vllm's `prompt`/`messages`), an invalid OpenAI request, or rejected by
    /// the backend's validation.
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The engine is at fault: a backend's internal or model error, the engine stopped, or a
    /// request that ended without generating.
    #[error("the engine failed: {0}")]
    Internal(String),
    /// The job's cancel token fired (the gateway cancelled it or it timed out); the worker
    /// reports nothing, as the gateway already decided the job's state.
    #[error("cancelled")]
    Cancelled,
}

impl From<EngineError> for JobError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Invalid(m) => JobError::Invalid(m),
            EngineError::Cancelled => JobError::Cancelled,
            other => JobError::Failed(other.to_string()),
        }
    }
}
