//! The job handler of an LLM endpoint: either job form ([`LlmJob`]) run on the engine, the
//! output an OpenAI response or worker-vllm's batches.

use crate::{Engine, EngineError};
use async_trait::async_trait;
use protocol::openai::response::Chunk;
use protocol::openai::GenerateRequest;
use protocol::vllm::{LlmJob, VllmBatch, VllmChoice, VllmUsage};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use worker::{JobError, JobHandler, StreamSink};

/// The job handler of an LLM endpoint: job inputs of the `openai_route` form, run on
/// the engine.
pub struct LlmHandler {
    /// The loaded model the jobs run on.
    pub engine: Engine,
}

#[async_trait]
impl JobHandler for LlmHandler {
    async fn handle(
        &self,
        input: Value,
        sink: StreamSink,
        cancel: CancellationToken,
    ) -> Result<Value, JobError> {
        let req = match LlmJob::parse(&input, self.engine.served_name()) {
            Ok(LlmJob::OpenAi(req)) => req,
            Ok(LlmJob::Embed(req)) => return Ok(json_of(&self.engine.embed(&req).await?)),
            Ok(LlmJob::Standard { request, stream }) => {
                return Ok(self
                    .handle_standard(&request, stream, sink, &cancel)
                    .await?)
            }
            Err(e) => return Err(JobError::Invalid(e)),
        };
        let mut send = |chunk: Chunk| sink.send(json_of(&chunk));
        let done = self.engine.generate(&req, &mut send, &cancel).await?;
        Ok(json_of(&done))
    }
}

impl LlmHandler {
    /// worker-vllm's standard form: batches of `{"choices": [{"tokens": [...]}]}`.
    async fn handle_standard(
        &self,
        req: &GenerateRequest,
        stream: bool,
        sink: StreamSink,
        cancel: &CancellationToken,
    ) -> Result<Value, EngineError> {
        let n = req.sampling().n as usize;
        let mut batches = Vec::new();
        let mut on_chunk = |chunk: Chunk| {
            for i in 0..n {
                if let Some(text) = chunk.text(i).filter(|t| !t.is_empty()) {
                    let b = VllmBatch::one(i, n, text);
                    sink.send(json_of(&b));
                    batches.push(b);
                }
            }
        };
        let done = self.engine.generate(req, &mut on_chunk, cancel).await?;
        let usage = done.usage().map(|u| VllmUsage {
            input: u.prompt_tokens,
            output: u.completion_tokens,
        });
        if !stream {
            let choices = (0..n)
                .map(|i| VllmChoice {
                    tokens: vec![done.text(i).unwrap_or_default().to_string()],
                })
                .collect();
            batches = vec![VllmBatch {
                choices,
                usage: None,
            }];
        }
        match batches.last_mut() {
            Some(last) => last.usage = usage,
            None => batches.push(VllmBatch {
                choices: vec![],
                usage,
            }),
        }
        Ok(json_of(&batches))
    }
}

/// The wire form of a response object (these serialize without fail).
fn json_of<T: serde::Serialize>(t: &T) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}
