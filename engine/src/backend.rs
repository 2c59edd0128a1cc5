//! The engine room: which backend runs a worker's model, behind one type. Everything a request
//! needs beyond choosing tokens is shared by the backends and written once: OpenAI shapes,
//! stop strings, tool calls and log-probability entries (`shape`, `tool_calls`, `logprobs`),
//! and sampling with a request's own generator (`sampler`).

use crate::EngineError;
use async_trait::async_trait;
use protocol::openai::embeddings::{EmbeddingRequest, EmbeddingResponse};
use protocol::openai::response::{Chunk, Completion};
use protocol::openai::GenerateRequest;
use protocol::{EngineBackend, ModelConfig};
use std::path::Path;
use tokio_util::sync::CancellationToken;

/// The files a worker's engine may load.
#[derive(Clone, Copy, Debug)]
pub struct ModelFiles<'a> {
    /// The served GGUF (re-quantized for mistral.rs, its tokenizer arrays stripped).
    pub served: &'a Path,
    /// The GGUF as published (its tokenizer inside: what llama.cpp loads).
    pub original: &'a Path,
    /// The tokenizer sidecar written at pull time, if the model has one.
    pub tokenizer_dir: Option<&'a Path>,
}

/// What a backend does: run one request, its tokens chosen through the shared logits hook
/// (`sampler`, `bias`, `logprobs`, llguidance), and report it as OpenAI shapes (`shape`). The
/// spirit of TGI's `Backend`: one request in, its events out; everything above is common.
#[async_trait]
pub trait Backend: Send + Sync {
    /// The model name it serves.
    fn served_name(&self) -> &str;

    /// Run `req`. Each piece of output is passed to `on_chunk` as an OpenAI chunk (when the
    /// request streams); the final OpenAI response is returned, usage exact. Errors:
    /// [`EngineError::Cancelled`] once `cancel` fires (the request's sequences stop at their
    /// next token), else what the backend reported.
    async fn generate(
        &self,
        req: &GenerateRequest,
        on_chunk: &mut (dyn FnMut(Chunk) + Send),
        cancel: &CancellationToken,
    ) -> Result<Completion, EngineError>;

    /// The vectors of `req`'s inputs. Errors: [`EngineError::Invalid`] naming the backend
    /// where it cannot embed.
    async fn embed(&self, _req: &EmbeddingRequest) -> Result<EmbeddingResponse, EngineError> {
        Err(EngineError::Invalid(
            "embeddings are not supported by the mistral.rs backend (the llama.cpp backend serves them)".into(),
        ))
    }
}

/// A loaded model on one of the backends.
pub struct Engine(Box<dyn Backend>);

impl Engine {
    /// The backend a worker runs `cfg` on: its `engine.backend`, `auto` being llama.cpp for a
    /// GGUF model on a CPU worker (when built in), else mistral.rs.
    pub fn backend_for(cfg: &ModelConfig, on_gpu: bool) -> EngineBackend {
        let gguf = Path::new(&cfg.weights.file)
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"));
        match cfg.engine.backend {
            // Without mistral.rs in the build, llama.cpp takes every model it can load.
            EngineBackend::Auto
                if cfg!(feature = "llamacpp")
                    && (!cfg!(feature = "mistralrs") || (!on_gpu && gguf)) =>
            {
                EngineBackend::Llamacpp
            }
            EngineBackend::Auto => EngineBackend::Mistralrs,
            chosen => chosen,
        }
    }

    /// The weights file `backend` maps: the GGUF as published for llama.cpp (its tokenizer
    /// inside), the served file for mistral.rs. The cold-start tiers keep this file warm.
    pub fn weights_file<'a>(files: &ModelFiles<'a>, backend: EngineBackend) -> &'a Path {
        match backend {
            EngineBackend::Llamacpp => files.original,
            _ => files.served,
        }
    }

    /// Load the model on `backend`. Errors: [`EngineError::Load`] (a backend not built in,
    /// llama.cpp without the tokenizer sidecar, or the backend's own load error).
    pub async fn load(
        cfg: &ModelConfig,
        files: ModelFiles<'_>,
        backend: EngineBackend,
    ) -> Result<Self, EngineError> {
        match backend {
            EngineBackend::Llamacpp => Self::load_llamacpp(cfg, files).await,
            _ => Self::load_mistralrs(cfg, files).await,
        }
    }

    #[cfg(feature = "mistralrs")]
    async fn load_mistralrs(cfg: &ModelConfig, files: ModelFiles<'_>) -> Result<Self, EngineError> {
        crate::llm::MistralRs::load(cfg, files.served, files.tokenizer_dir)
            .await
            .map(|e| Engine(Box::new(e)))
    }

    #[cfg(not(feature = "mistralrs"))]
    async fn load_mistralrs(_: &ModelConfig, _: ModelFiles<'_>) -> Result<Self, EngineError> {
        Err(EngineError::Load(
            "this build has no mistral.rs backend (cargo feature `mistralrs`)".into(),
        ))
    }

    #[cfg(feature = "llamacpp")]
    async fn load_llamacpp(cfg: &ModelConfig, files: ModelFiles<'_>) -> Result<Self, EngineError> {
        let dir = files.tokenizer_dir.ok_or_else(|| {
            EngineError::Load("the llama.cpp backend needs the model's tokenizer sidecar".into())
        })?;
        crate::llamacpp::LlamaEngine::load(
            cfg,
            Self::weights_file(&files, EngineBackend::Llamacpp),
            dir,
        )
        .await
        .map(|e| Engine(Box::new(e)))
    }

    #[cfg(not(feature = "llamacpp"))]
    async fn load_llamacpp(_: &ModelConfig, _: ModelFiles<'_>) -> Result<Self, EngineError> {
        Err(EngineError::Load(
            "this build has no llama.cpp backend (cargo feature `llamacpp`)".into(),
        ))
    }

    /// The model name it serves.
    pub fn served_name(&self) -> &str {
        self.0.served_name()
    }

    /// The vectors of `req`'s inputs (see [`Backend::embed`]).
    pub async fn embed(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse, EngineError> {
        self.0.embed(req).await
    }

    /// sluice's own pre-flight, run once a worker's model is loaded and before it reports
    /// ready: one token generated greedily from a short prompt on `model` (the tokenizer, the
    /// weights and the sampler together), with its usage counted as the gateway counts it.
    /// Errors: why it failed.
    pub async fn preflight(&self, model: &str) -> Result<(), String> {
        let body = serde_json::json!({"model": model, "prompt": "Hello", "max_tokens": 1,
            "temperature": 0});
        let req = GenerateRequest::parse(protocol::openai::COMPLETIONS_ROUTE, body)
            .map_err(|e| e.message)?;
        let out = self
            .generate(&req, &mut |_| {}, &CancellationToken::new())
            .await
            .map_err(|e| e.to_string())?;
        match out.usage() {
            Some(u) if u.prompt_tokens >= 1 && u.completion_tokens == 1 => Ok(()),
            other => Err(format!(
                "one token asked for, the engine answered with usage {other:?}"
            )),
        }
    }

    /// Run `req` on the backend (see [`Backend::generate`]).
    pub async fn generate(
        &self,
        req: &GenerateRequest,
        on_chunk: &mut (dyn FnMut(Chunk) + Send),
        cancel: &CancellationToken,
    ) -> Result<Completion, EngineError> {
        match req {
            GenerateRequest::Completion(c) if c.prompts.len() > 1 => {
                crate::prompts::generate_each(&*self.0, c, on_chunk, cancel).await
            }
            _ => self.0.generate(req, on_chunk, cancel).await,
        }
    }
}

/// A request's two traced phases on any backend: `prefill` from its start to its first
/// event, then `decode` to its end (the backends' own steps are not traced; these bound them).
pub(crate) struct Phases {
    prefill: Option<tracing::Span>,
    decode: Option<tracing::Span>,
}

impl Phases {
    /// Prefill begins.
    pub(crate) fn start() -> Self {
        Phases {
            prefill: Some(tracing::info_span!("prefill")),
            decode: None,
        }
    }

    /// An event came: the first one ends prefill and begins decode.
    pub(crate) fn event(&mut self) {
        if self.prefill.take().is_some() {
            self.decode = Some(tracing::info_span!("decode"));
        }
    }
}
