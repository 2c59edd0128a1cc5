//! mistral.rs behind one call: [`Engine::generate`] runs an OpenAI request and reports its
//! chunks as they come. Chat requests always run in mistral.rs's streaming mode, even when the
//! client did not ask to stream: dropping a streaming receiver is how mistral.rs cancels a
//! sequence, and its last chat chunk carries exact usage. Its completion chunks carry no usage,
//! so non-streamed completions run non-streamed (exact usage; a cancelled one runs on to its
//! `max_tokens` inside the engine) and streamed ones count usage with the tokenizer.

use crate::shape::{Aggregator, Kind, Usage};
use crate::vllm_input;
use crate::worker::{JobHandler, StreamSink};
use async_trait::async_trait;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::{
    AutoDeviceMapParams, DeviceMapSetting, GGUFLoaderBuilder, GGUFSpecificConfig, MistralRsBuilder,
    RequestMessage, Response, TokenSource,
};
use mistralrs::{
    best_device, Constraint, DefaultSchedulerMethod, Model, ModelDType, NormalRequest, Request,
    SamplingParams, SchedulerConfig, TextMessageRole, TextMessages,
};
use protocol::config::ActivationDType;
use protocol::job::OpenAiJobInput;
use protocol::openai::{GenerateRequest, Sampling};
use protocol::ModelConfig;
use serde_json::Value;
use std::num::NonZeroUsize;
use std::path::Path;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("loading the model failed: {0}")]
    Load(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("the engine failed: {0}")]
    Internal(String),
    #[error("cancelled")]
    Cancelled,
}

pub struct Engine {
    model: Model,
    served_name: String,
}

impl Engine {
    /// Load the GGUF at `path` with the config's engine settings. This builds the pipeline the
    /// way mistral.rs's `GgufModelBuilder` does, except that the activation dtype is ours to
    /// choose (the builder always picks `auto`).
    pub async fn load(cfg: &ModelConfig, path: &Path) -> Result<Self, EngineError> {
        let load_err = |e: anyhow::Error| EngineError::Load(format!("{e:#}"));
        // mistral.rs would take a missing local file for a Hugging Face id and go online.
        if !path.is_file() {
            return Err(EngineError::Load(format!(
                "model file not found: {}",
                path.display()
            )));
        }
        let dir = path
            .parent()
            .unwrap_or(Path::new("."))
            .to_string_lossy()
            .into_owned();
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .ok_or_else(|| EngineError::Load(format!("not a file: {}", path.display())))?;
        let loader = GGUFLoaderBuilder::new(
            None,
            None,
            dir,
            vec![file],
            GGUFSpecificConfig { topology: None },
            false,
            None,
        )
        .build();
        let dtype = match cfg.engine.dtype {
            ActivationDType::Auto => ModelDType::Auto,
            ActivationDType::F32 => ModelDType::F32,
            ActivationDType::F16 => ModelDType::F16,
            ActivationDType::Bf16 => ModelDType::BF16,
        };
        // Without the `cuda` feature mistral.rs only has the CPU.
        let device =
            best_device(!cfg!(feature = "cuda")).map_err(|e| EngineError::Load(e.to_string()))?;
        let t0 = std::time::Instant::now();
        let pipeline = loader
            .load_model_from_hf(
                None,
                TokenSource::None,
                &dtype,
                &device,
                true,
                DeviceMapSetting::Auto(AutoDeviceMapParams::default_text()),
                None,
                None,
            )
            .map_err(load_err)?;
        let seqs = NonZeroUsize::new(cfg.engine.max_num_seqs)
            .ok_or_else(|| EngineError::Load("engine.max_num_seqs must be > 0".into()))?;
        let scheduler = SchedulerConfig::DefaultScheduler {
            method: DefaultSchedulerMethod::Fixed(seqs),
        };
        let t_pipeline = t0.elapsed();
        let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
            .with_no_prefix_cache(!cfg.engine.prefix_cache)
            .build()
            .await;
        tracing::debug!(
            pipeline_ms = t_pipeline.as_millis() as u64,
            runner_ms = (t0.elapsed() - t_pipeline).as_millis() as u64,
            "engine loaded"
        );
        Ok(Engine {
            model: Model::new(runner),
            served_name: cfg.name.clone(),
        })
    }

    /// Run `req`. Each piece of output is passed to `on_chunk` as an OpenAI chunk object (when
    /// the request streams); the final OpenAI response object is returned.
    pub async fn generate(
        &self,
        req: &GenerateRequest,
        on_chunk: &mut (dyn FnMut(Value) + Send),
        cancel: &CancellationToken,
    ) -> Result<Value, EngineError> {
        let (messages, kind) = match req {
            GenerateRequest::Chat(c) => {
                let msgs = c
                    .messages
                    .iter()
                    .map(|m| {
                        let mut map = IndexMap::new();
                        map.insert("role".to_string(), Either::Left(m.role.clone()));
                        map.insert("content".to_string(), Either::Left(m.content.clone()));
                        map
                    })
                    .collect();
                let msg = RequestMessage::Chat {
                    messages: msgs,
                    enable_thinking: None,
                    reasoning_effort: None,
                };
                (msg, Kind::Chat)
            }
            GenerateRequest::Completion(c) => {
                let msg = RequestMessage::Completion {
                    text: c.prompt.clone(),
                    echo_prompt: false,
                    best_of: c.best_of.map(|b| b as usize),
                };
                (msg, Kind::Completion)
            }
        };
        let sampling = req.sampling();
        let stream = req.stream();
        let engine_streams = stream || kind == Kind::Chat || !sampling.stop.is_empty();
        let runner = self.model.inner();
        // Generous capacity: mistral.rs awaits each send, so a full channel would stall the
        // whole batch, not just this request.
        let (tx, mut rx) = tokio::sync::mpsc::channel(4096);
        let request = Request::Normal(Box::new(NormalRequest {
            messages,
            sampling_params: sampling_params(sampling),
            response: tx,
            return_logprobs: false,
            is_streaming: engine_streams,
            id: runner.next_request_id(),
            constraint: Constraint::None,
            suffix: None,
            tools: None,
            tool_choice: None,
            logits_processors: None,
            return_raw_logits: false,
            web_search_options: None,
            model_id: None,
            truncate_sequence: false,
        }));
        let sender = runner
            .get_sender(None)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        sender
            .send(request)
            .await
            .map_err(|_| EngineError::Internal("the engine has stopped".into()))?;

        let mut agg = Aggregator::new(
            kind,
            &self.served_name,
            sampling.n as usize,
            sampling.stop.clone(),
        );
        let mut saw_usage = false;
        loop {
            let resp = tokio::select! {
                r = rx.recv() => r,
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
            };
            let Some(resp) = resp else { break };
            match resp {
                Response::Chunk(c) => {
                    for ch in c.choices {
                        let text = ch.delta.content.unwrap_or_default();
                        if let Some(chunk) = agg.delta(ch.index, &text, ch.finish_reason.as_deref())
                        {
                            if stream {
                                on_chunk(chunk);
                            }
                        }
                    }
                    if let Some(u) = c.usage {
                        // With n > 1, each finished sequence reports its own completion tokens.
                        agg.usage.prompt_tokens = agg.usage.prompt_tokens.max(u.prompt_tokens);
                        agg.usage.completion_tokens += u.completion_tokens;
                        saw_usage = true;
                    }
                }
                Response::CompletionChunk(c) => {
                    for ch in c.choices {
                        if let Some(chunk) =
                            agg.delta(ch.index, &ch.text, ch.finish_reason.as_deref())
                        {
                            if stream {
                                on_chunk(chunk);
                            }
                        }
                    }
                }
                Response::CompletionDone(c) => {
                    for ch in c.choices {
                        agg.delta(ch.index, &ch.text, Some(&ch.finish_reason));
                    }
                    agg.usage = Usage {
                        prompt_tokens: c.usage.prompt_tokens,
                        completion_tokens: c.usage.completion_tokens,
                    };
                    saw_usage = true;
                    break;
                }
                Response::Done(_) => break,
                Response::ValidationError(e) => return Err(EngineError::Invalid(e.to_string())),
                Response::InternalError(e) => return Err(EngineError::Internal(e.to_string())),
                Response::ModelError(e, _) | Response::CompletionModelError(e, _) => {
                    return Err(EngineError::Internal(e))
                }
                _ => return Err(EngineError::Internal("unexpected response kind".into())),
            }
            if agg.all_done() && (saw_usage || !sampling.stop.is_empty()) {
                // Done; dropping `rx` also cancels sequences still running after a stop hit.
                break;
            }
        }
        if !saw_usage {
            // mistral.rs's completion chunks carry no usage: count with the model's tokenizer.
            agg.usage = self.count_usage(req, &agg).await?;
        }
        if let GenerateRequest::Completion(c) = req {
            if c.echo {
                agg.prepend(&c.prompt);
            }
        }
        if stream && req.include_usage() {
            on_chunk(agg.usage_chunk());
        }
        Ok(agg.finish())
    }

    async fn count_usage(
        &self,
        req: &GenerateRequest,
        agg: &Aggregator,
    ) -> Result<Usage, EngineError> {
        let count = |text: String| async move {
            self.model
                .tokenize(Either::Right(text), None, false, false, None)
                .await
                .map(|t| t.len())
                .map_err(|e| EngineError::Internal(format!("tokenize: {e}")))
        };
        let prompt = match req {
            GenerateRequest::Completion(c) => count(c.prompt.clone()).await?,
            GenerateRequest::Chat(c) => {
                let mut msgs = TextMessages::new();
                for m in &c.messages {
                    let role = match m.role.as_str() {
                        "system" => TextMessageRole::System,
                        "assistant" => TextMessageRole::Assistant,
                        _ => TextMessageRole::User,
                    };
                    msgs = msgs.add_message(role, &m.content);
                }
                self.model
                    .tokenize(Either::Left(msgs), None, true, true, None)
                    .await
                    .map(|t| t.len())
                    .map_err(|e| EngineError::Internal(format!("tokenize: {e}")))?
            }
        };
        let mut completion = 0;
        for i in 0..req.sampling().n as usize {
            completion += count(agg.text(i).to_string()).await?;
        }
        Ok(Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
        })
    }
}

fn sampling_params(s: &Sampling) -> SamplingParams {
    let mut p = SamplingParams::neutral();
    if s.is_greedy() {
        p.top_k = Some(1);
    } else {
        // OpenAI's default temperature is 1.
        p.temperature = Some(s.temperature.unwrap_or(1.0));
        p.top_k = s.top_k.map(|k| k as usize);
    }
    p.top_p = s.top_p;
    p.min_p = s.min_p;
    p.presence_penalty = s.presence_penalty;
    p.frequency_penalty = s.frequency_penalty;
    p.repetition_penalty = s.repetition_penalty;
    p.max_len = s.max_tokens.map(|m| m as usize);
    p.n_choices = s.n as usize;
    // Stop sequences are matched on text by `shape::Aggregator`, not by the engine.
    if !s.logit_bias.is_empty() {
        p.logits_bias = Some(s.logit_bias.clone());
    }
    p
}

/// The job handler of an LLM endpoint: job inputs of the `openai_route` form, run on
/// the engine.
pub struct LlmHandler {
    pub engine: Engine,
}

#[async_trait]
impl JobHandler for LlmHandler {
    async fn handle(
        &self,
        input: Value,
        sink: StreamSink,
        cancel: CancellationToken,
    ) -> Result<Value, String> {
        if vllm_input::is_standard(&input) {
            return self.handle_standard(&input, sink, &cancel).await;
        }
        let job: OpenAiJobInput = serde_json::from_value(input).map_err(|e| {
            format!("job input must be {{\"openai_route\", \"openai_input\"}} or {{\"prompt\"|\"messages\", \"sampling_params\"}}: {e}")
        })?;
        let req =
            GenerateRequest::parse(&job.openai_route, job.openai_input).map_err(|e| e.message)?;
        let mut send = |chunk: Value| sink.send(chunk);
        self.engine
            .generate(&req, &mut send, &cancel)
            .await
            .map_err(|e| e.to_string())
    }
}

impl LlmHandler {
    /// worker-vllm's standard form: batches of `{"choices": [{"tokens": [...]}]}`.
    async fn handle_standard(
        &self,
        input: &Value,
        sink: StreamSink,
        cancel: &CancellationToken,
    ) -> Result<Value, String> {
        let (req, stream) = vllm_input::to_request(input, &self.engine.served_name)?;
        let n = req.sampling().n as usize;
        let mut batches = Vec::new();
        let mut on_chunk = |chunk: Value| {
            for i in 0..n {
                if let Some(text) = vllm_input::choice_text(&chunk, i).filter(|t| !t.is_empty()) {
                    let b = vllm_input::batch(i, n, &text);
                    sink.send(b.clone());
                    batches.push(b);
                }
            }
        };
        let done = self
            .engine
            .generate(&req, &mut on_chunk, cancel)
            .await
            .map_err(|e| e.to_string())?;
        let usage = Usage {
            prompt_tokens: done["usage"]["prompt_tokens"].as_u64().unwrap_or(0) as usize,
            completion_tokens: done["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize,
        };
        if !stream {
            let choices: Vec<Value> = (0..n)
                .map(|i| serde_json::json!({"tokens": [vllm_input::choice_text(&done, i).unwrap_or_default()]}))
                .collect();
            batches = vec![serde_json::json!({ "choices": choices })];
        }
        match batches.last_mut() {
            Some(last) => last["usage"] = vllm_input::usage(usage),
            None => {
                batches.push(serde_json::json!({"choices": [], "usage": vllm_input::usage(usage)}))
            }
        }
        Ok(Value::Array(batches))
    }
}
