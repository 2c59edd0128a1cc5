//! The llama.cpp backend (crate `llama-cpp-2`, which builds llama.cpp's own source): the
//! default engine of CPU workers. The weights are memory-mapped from the published GGUF, not
//! copied; prompts are rendered and tokenized by the same code the gateway counts them with
//! (`weights::PromptTokenizer`: the model's chat template, the pull-time tokenizer sidecar),
//! so the gateway's count is the engine's; the scheduler ([`scheduler`]) batches the
//! sequences of every request on one thread; tokens are chosen by sluice's own code from the
//! raw logits ([`step`]); text, stop strings, tool calls, log-probability entries and the
//! OpenAI shapes are the mistral.rs backend's (`shape`, `tool_calls`, `logprobs`).

mod embed;
mod scheduler;
mod step;

use crate::logprobs::{complete_len, Entries, Position, Vocab};
use crate::rules::{bad_word_ids, TokenRules};
use crate::shape::Aggregator;
use crate::EngineError;
use embed::{EmbedRequest, Embedder};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llguidance::api::TopLevelGrammar;
use llguidance::{Matcher, ParserFactory};
use protocol::openai::embeddings::{EmbeddingRequest, EmbeddingResponse};
use protocol::openai::logprobs::TextLogprobs;
use protocol::openai::prompt::{outside_vocabulary, Prompt};
use protocol::openai::response::{Chunk, Completion, Usage};
use protocol::openai::{Constraint, GenerateRequest};
use protocol::ModelConfig;
use scheduler::{SeqEvent, SeqRequest, Shape, Work};
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_stream::{StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;
use weights::PromptTokenizer;

/// Tokens one decode step takes at most (llama.cpp's server default).
const BATCH_TOKENS: usize = 512;

/// A model loaded in llama.cpp, serving one model name.
pub struct LlamaEngine {
    requests: Mutex<mpsc::Sender<Work>>,
    served_name: String,
    context_length: usize,
    tokenizer: PromptTokenizer,
    vocab: Arc<Vocab>,
    n_vocab: usize,
    /// The model's end-of-generation tokens.
    eog: Arc<[u32]>,
    /// The structured-output compiler, built from the tokenizer sidecar in the background
    /// after load (~0.1 s that a cold start need not wait for); a constrained request that
    /// comes first waits for it.
    constraints: Arc<OnceLock<Result<ParserFactory, String>>>,
}

/// llama.cpp's process-wide state, initialised once (its logs go to `tracing`).
fn backend() -> Result<&'static LlamaBackend, EngineError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(b) = BACKEND.get() {
        return Ok(b);
    }
    llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
    let b = LlamaBackend::init().map_err(|e| EngineError::Load(e.to_string()))?;
    Ok(BACKEND.get_or_init(|| b))
}

impl LlamaEngine {
    /// Load `gguf` (memory-mapped) with the tokenizer sidecar in `tokenizer_dir`, as `cfg`
    /// configures it: `max_num_seqs` slots with a KV cache of `context_length` tokens each,
    /// `cpu_threads` threads (0: every core). Errors: [`EngineError::Load`].
    pub async fn load(
        cfg: &ModelConfig,
        gguf: &Path,
        tokenizer_dir: &Path,
    ) -> Result<Self, EngineError> {
        let load = |e: String| EngineError::Load(e);
        let backend = backend()?;
        let threads = match cfg.engine.cpu_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        } as i32;
        let shape = Shape {
            slots: cfg.engine.max_num_seqs.max(1),
            context_length: cfg.engine.context_length,
            batch: BATCH_TOKENS,
        };
        let (tx, rx) = mpsc::channel();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let path = gguf.to_path_buf();
        let pooling = cfg.engine.pooling;
        std::thread::Builder::new()
            .name("llama.cpp".into())
            .spawn(move || {
                let t1 = std::time::Instant::now();
                let params = LlamaModelParams::default().with_use_mmap(true);
                let model = match LlamaModel::load_from_file(backend, &path, &params) {
                    Ok(m) => m,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("{}: {e}", path.display())));
                        return;
                    }
                };
                let ctx_params = LlamaContextParams::default()
                    .with_n_ctx(NonZeroU32::new((shape.context_length * shape.slots) as u32))
                    .with_n_batch(shape.batch as u32)
                    .with_n_ubatch(shape.batch as u32)
                    .with_n_seq_max(shape.slots as u32)
                    // A cache per sequence: in one unified cache every sequence's attention
                    // runs over every sequence's cells, masked (measured 0.86x llama.cpp's
                    // server at 8 streams, against 0.97x split).
                    .with_kv_unified(false)
                    .with_n_threads(threads)
                    .with_n_threads_batch(threads);
                let t2 = std::time::Instant::now();
                let ctx = match model.new_context(backend, ctx_params) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(format!("creating the context: {e}")));
                        return;
                    }
                };
                let n_vocab = model.n_vocab() as usize;
                let vocab = Vocab::new(n_vocab, |id, special| {
                    model
                        .vocab()
                        .token_to_piece(LlamaToken(id as i32), special, None)
                });
                let eog: Vec<u32> = (0..n_vocab as u32)
                    .filter(|&id| model.vocab().is_eog(LlamaToken(id as i32)))
                    .collect();
                tracing::info!(
                    model_ms = (t2 - t1).as_millis() as u64,
                    context_ms = t2.elapsed().as_millis() as u64,
                    "llama.cpp model and context ready"
                );
                let _ = ready_tx.send(Ok((vocab, eog)));
                let sizes = (shape.context_length, threads);
                let mut embedder = Embedder::new(&model, backend, sizes, pooling);
                scheduler::run(ctx, rx, shape, &mut embedder);
            })
            .map_err(|e| load(e.to_string()))?;
        // Parsed while the llama.cpp thread maps the weights and clears the KV cache: the
        // two halves of a cold start overlap.
        let t0 = std::time::Instant::now();
        let tokenizer =
            PromptTokenizer::from_hf_dir(tokenizer_dir).map_err(|e| load(e.to_string()))?;
        tracing::info!(
            tokenizer_ms = t0.elapsed().as_millis() as u64,
            "tokenizer ready"
        );
        let (vocab, eog) = ready_rx
            .await
            .map_err(|_| load("the llama.cpp thread ended".into()))?
            .map_err(load)?;
        let n_vocab = vocab.len();
        let constraints = Arc::new(OnceLock::new());
        let eog: Arc<[u32]> = Arc::from(eog);
        let (cell, dir, ids) = (
            constraints.clone(),
            tokenizer_dir.to_path_buf(),
            eog.clone(),
        );
        std::thread::spawn(move || {
            cell.get_or_init(|| constraint_factory(&dir, n_vocab, &ids));
        });
        Ok(LlamaEngine {
            requests: Mutex::new(tx),
            served_name: cfg.name.clone(),
            context_length: cfg.engine.context_length,
            tokenizer,
            vocab: Arc::new(vocab),
            n_vocab,
            eog,
            constraints,
        })
    }

    /// Choice `i`'s echo of its scored prompt: the prompt's text with one log-probability
    /// entry per token (the first unscored, as OpenAI's `null`), `top` alternatives each.
    fn scored_echo(
        &self,
        req: &GenerateRequest,
        agg: &mut Aggregator,
        i: usize,
        (prompt, scored): (&[u32], &[Position]),
        top: usize,
    ) -> Chunk {
        let text = match req {
            GenerateRequest::Completion(c) => self.vocab.echo_text(c.prompt()),
            GenerateRequest::Chat(_) => String::new(),
        };
        let first = prompt.first().map_or(&[][..], |&id| self.vocab.shown(id));
        let rest: Vec<_> = scored
            .iter()
            .map(|p| self.vocab.prompt_entry(p, top))
            .collect();
        let lists = TextLogprobs::scored_prompt(&String::from_utf8_lossy(first), &rest);
        agg.echo_scored(i, &text, Some(lists))
    }

    /// What token `id` adds to a choice's text: none for the token that ends it (one of
    /// `stop_token_ids`, or an end-of-sequence token) unless `include_stop_str_in_output`, as
    /// vLLM leaves it out; a special token's text only with `skip_special_tokens: false`.
    fn output_bytes(&self, req: &GenerateRequest, id: u32) -> &[u8] {
        let s = req.sampling();
        let ending = s.stop_token_ids.contains(&id) || (!s.ignore_eos && self.eog.contains(&id));
        if ending && !s.include_stop_str_in_output {
            return &[];
        }
        if s.keep_special_tokens {
            self.vocab.shown(id)
        } else {
            self.vocab.text(id)
        }
    }

    /// Token `id` as vLLM's `stop_reason`: one of `stop_token_ids`, which ends its choice
    /// (an end-of-sequence token ends it as that, as in vLLM, unless `ignore_eos`).
    fn stop_token(&self, req: &GenerateRequest, id: u32) -> Option<u32> {
        let s = req.sampling();
        let eos = !s.ignore_eos && self.eog.contains(&id);
        (s.stop_token_ids.contains(&id) && !eos).then_some(id)
    }

    /// The prompt's tokens, rendered and tokenized as the gateway counts them, and left-
    /// truncated to vLLM's `truncate_prompt_tokens` when asked.
    fn prompt(&self, req: &GenerateRequest) -> Result<Vec<u32>, EngineError> {
        let mut ids = self.full_prompt(req)?;
        if let Some(k) = req.sampling().truncate_prompt_tokens {
            ids.drain(..ids.len().saturating_sub(k as usize));
        }
        Ok(ids)
    }

    fn full_prompt(&self, req: &GenerateRequest) -> Result<Vec<u32>, EngineError> {
        match req {
            GenerateRequest::Chat(c) => {
                let text = self
                    .tokenizer
                    .render_chat_with(&c.prompt_messages(), &c.template)
                    .map_err(|e| EngineError::Invalid(e.to_string()))?;
                self.tokens_of(&Prompt::Text(text))
            }
            GenerateRequest::Completion(c) => self.tokens_of(c.prompt()),
        }
    }

    /// A prompt's tokens: text encoded, token ids checked against the vocabulary; at least one.
    fn tokens_of(&self, p: &Prompt) -> Result<Vec<u32>, EngineError> {
        let ids = match p {
            Prompt::Tokens(ids) => match outside_vocabulary(ids, self.n_vocab) {
                Some(why) => return Err(EngineError::Invalid(why)),
                None => ids.clone(),
            },
            Prompt::Text(t) => self
                .tokenizer
                .encode(t)
                .map_err(|e| EngineError::Invalid(e.to_string()))?,
        };
        if ids.is_empty() {
            return Err(EngineError::Invalid("the prompt has no tokens".into()));
        }
        Ok(ids)
    }

    /// `best_of` sequences run to their ends; the `n` with the highest cumulative log
    /// probability are the choices (as vLLM and mistral.rs rank them); usage counts every
    /// sequence's tokens. Never streamed (the request parser refuses that).
    async fn best_of(
        &self,
        req: &GenerateRequest,
        prompt: &[u32],
        max_tokens: usize,
        best_of: usize,
        cancel: &CancellationToken,
    ) -> Result<Completion, EngineError> {
        let mut runs = Vec::with_capacity(best_of);
        let rules = self.rules(req)?;
        for i in 0..best_of {
            let (run, mut rx) = self.start(req, (i, true), &rules, prompt, max_tokens)?;
            runs.push((
                run,
                tokio::spawn(async move {
                    let mut events = Vec::new();
                    while let Some(e) = rx.recv().await {
                        events.push(e);
                    }
                    events
                }),
            ));
        }
        let mut done: Vec<(f32, String, &'static str, Option<u32>)> = Vec::with_capacity(best_of);
        let mut generated = 0;
        for (mut run, events) in runs {
            let events = tokio::select! {
                e = events => e.map_err(|e| EngineError::Internal(e.to_string()))?,
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
            };
            let (mut score, mut text, mut reason, mut stop) = (0.0, String::new(), "stop", None);
            for e in events {
                match e {
                    SeqEvent::Token { id, position } => {
                        generated += 1;
                        score += position.map_or(0.0, |p| p.logprob);
                        text.push_str(&run.text(self.output_bytes(req, id)));
                        stop = self.stop_token(req, id);
                    }
                    SeqEvent::End(r) => reason = r,
                    // Not asked: `best_of` is never scored (`logprobs` is refused with it).
                    SeqEvent::Prompt(_) => {}
                    SeqEvent::Failed(e) => return Err(EngineError::Internal(e)),
                }
            }
            done.push((score, text, reason, stop));
        }
        done.sort_by(|a, b| b.0.total_cmp(&a.0));
        let mut agg = Aggregator::for_request(req, &self.served_name);
        if let GenerateRequest::Completion(c) = req {
            if c.echo {
                agg.echo(&self.vocab.echo_text(c.prompt()));
            }
        }
        let ranked = done.into_iter().take(req.sampling().n as usize);
        for (i, (_, text, reason, stop)) in ranked.enumerate() {
            if let Some(token) = stop {
                agg.stopped_by_token(i, token);
            }
            agg.delta(i, &text, Some(reason), Vec::new());
        }
        agg.usage = Usage::new(prompt.len(), generated);
        Ok(agg.finish())
    }

    /// The request's token rules, shared by its choices (its `bad_words` tokenized once).
    fn rules(&self, req: &GenerateRequest) -> Result<TokenRules, EngineError> {
        let sampling = req.sampling();
        let encode = |w: &str| self.tokenizer.encode_with(w, false);
        let bad_words = bad_word_ids(&sampling.bad_words, encode)
            .map_err(|e| EngineError::Invalid(format!("tokenizing `bad_words`: {e}")))?;
        Ok(TokenRules::new(sampling, self.eog.clone()).with_bad_words(bad_words))
    }

    /// Hand choice `i` to the scheduler (`ranked`: it competes in `best_of`), drawing by
    /// `rules`.
    fn start(
        &self,
        req: &GenerateRequest,
        (i, ranked): (usize, bool),
        rules: &TokenRules,
        prompt: &[u32],
        max_tokens: usize,
    ) -> Result<(Run, UnboundedReceiver<SeqEvent>), EngineError> {
        let sampling = req.sampling();
        let grammar = sampling.constraint().map(|c| match c {
            Constraint::Schema(schema) => TopLevelGrammar::from_json_schema(schema.clone()),
            Constraint::Pattern(pattern) => TopLevelGrammar::from_regex(pattern),
            Constraint::Lark(lark) => TopLevelGrammar::from_lark(lark.to_string()),
        });
        let constraint = match grammar {
            Some(grammar) => {
                let factory = self
                    .constraints
                    .wait()
                    .as_ref()
                    .map_err(|e| EngineError::Internal(format!("the schema compiler: {e}")))?;
                let parser = factory.create_parser(grammar).map_err(|e| {
                    EngineError::Invalid(format!("the schema cannot be enforced: {e}"))
                })?;
                Some(Matcher::new(Ok(parser)))
            }
            None => None,
        };
        let chooser = step::TokenChooser::new(
            sampling,
            (i, ranked),
            (prompt, self.n_vocab),
            constraint,
            rules.clone(),
        );
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let seq = SeqRequest {
            prompt: prompt.to_vec(),
            max_tokens,
            chooser,
            events: tx,
            cancel: cancel.clone(),
            score_prompt: scores_prompt(req),
        };
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Work::Seq(Box::new(seq)))
            .map_err(|_| EngineError::Internal("the llama.cpp thread has stopped".into()))?;
        let run = Run {
            bytes: Vec::new(),
            entries: Entries::new(self.vocab.clone(), false),
            cancel,
        };
        Ok((run, rx))
    }
}

#[async_trait::async_trait]
impl crate::Backend for LlamaEngine {
    /// Embed `req`'s inputs on the llama.cpp thread (see [`embed`]).
    async fn embed(&self, req: &EmbeddingRequest) -> Result<EmbeddingResponse, EngineError> {
        let inputs = req
            .inputs()
            .map_err(|e| EngineError::Invalid(e.message))?
            .iter()
            .map(|p| self.tokens_of(p))
            .collect::<Result<Vec<_>, _>>()?;
        let tokens = inputs.iter().map(Vec::len).sum();
        let (reply, rx) = tokio::sync::oneshot::channel();
        self.requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .send(Work::Embed(EmbedRequest { inputs, reply }))
            .map_err(|_| EngineError::Internal("the llama.cpp thread has stopped".into()))?;
        let vectors = rx
            .await
            .map_err(|_| EngineError::Internal("the llama.cpp thread has stopped".into()))?
            .map_err(EngineError::Invalid)?;
        let format = req.encoding_format.unwrap_or_default();
        Ok(EmbeddingResponse::new(
            &self.served_name,
            vectors,
            tokens,
            format,
        ))
    }

    /// The model name it serves.
    fn served_name(&self) -> &str {
        &self.served_name
    }
    /// Run `req` (see [`crate::Engine::generate`]).
    async fn generate(
        &self,
        req: &GenerateRequest,
        on_chunk: &mut (dyn FnMut(Chunk) + Send),
        cancel: &CancellationToken,
    ) -> Result<Completion, EngineError> {
        let prompt = self.prompt(req)?;
        let sampling = req.sampling();
        let n = sampling.n as usize;
        let room = self.context_length.saturating_sub(prompt.len());
        if room == 0 {
            return Err(EngineError::Invalid(format!(
                "the prompt's {} tokens fill the context of {} tokens",
                prompt.len(),
                self.context_length
            )));
        }
        let max_tokens = sampling.max_tokens.map_or(room, |m| (m as usize).min(room));
        if let GenerateRequest::Completion(c) = req {
            if let Some(b) = c.best_of.filter(|&b| b > sampling.n) {
                return self
                    .best_of(req, &prompt, max_tokens, b as usize, cancel)
                    .await;
            }
        }
        let mut agg = Aggregator::for_request(req, &self.served_name);
        agg.usage = Usage::new(prompt.len(), 0);
        if let GenerateRequest::Completion(c) = req {
            // A scored prompt is echoed once scored (`SeqEvent::Prompt`).
            if c.echo && echo_scored(req).is_none() {
                let echoed = agg.echo(&self.vocab.echo_text(c.prompt()));
                if req.stream() {
                    echoed.into_iter().for_each(&mut *on_chunk);
                }
            }
        }
        let mut runs = Vec::with_capacity(n);
        let mut events = StreamMap::new();
        let rules = self.rules(req)?;
        for i in 0..n {
            let (run, rx) = self.start(req, (i, false), &rules, &prompt, max_tokens)?;
            events.insert(i, UnboundedReceiverStream::new(rx));
            runs.push(run);
        }
        let stream = req.stream();
        let mut generated = 0usize;
        let mut phases = crate::backend::Phases::start();
        while !agg.all_done() {
            let event = tokio::select! {
                e = events.next() => e,
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
            };
            let Some((i, event)) = event else { break };
            phases.event();
            let (text, finish, entries) = match event {
                SeqEvent::Token { id, position } => {
                    if !agg.finished(i) {
                        generated += 1;
                    }
                    if let Some(token) = self.stop_token(req, id) {
                        agg.stopped_by_token(i, token);
                    }
                    let run: &mut Run = &mut runs[i];
                    let entries = position
                        .and_then(|p| run.entries.push(p))
                        .into_iter()
                        .collect();
                    (run.text(self.output_bytes(req, id)), None, entries)
                }
                SeqEvent::End(reason) => (String::new(), Some(reason), Vec::new()),
                SeqEvent::Prompt(scored) => {
                    if let Some(top) = req.sampling().prompt_logprobs {
                        let entries = scored
                            .iter()
                            .map(|p| Some(self.vocab.prompt_logprobs_entry(p, top as usize)));
                        agg.prompt_logprobs(i, std::iter::once(None).chain(entries).collect());
                    }
                    if let Some(top) = echo_scored(req) {
                        let chunk = self.scored_echo(req, &mut agg, i, (&prompt, &scored), top);
                        if stream {
                            on_chunk(chunk);
                        }
                    }
                    continue;
                }
                SeqEvent::Failed(e) => {
                    tracing::warn!(error = e, "llama.cpp sequence failed");
                    return Err(EngineError::Internal(e));
                }
            };
            if agg.continuous_usage() {
                agg.usage = Usage::new(prompt.len(), generated);
            }
            if let Some(chunk) = agg.delta(i, &text, finish, entries) {
                if stream {
                    on_chunk(chunk);
                }
            }
            if agg.finished(i) {
                // A stop string ended it here: the scheduler stops the sequence.
                runs[i].cancel.store(true, Ordering::Relaxed);
            }
        }
        drop(phases);
        agg.usage = Usage::new(prompt.len(), generated);
        if stream && req.include_usage() {
            on_chunk(agg.usage_chunk());
        }
        Ok(agg.finish())
    }
}

/// How many alternatives each prompt token gets when `req` scores its prompt: a
/// completion's `echo` with `logprobs` (as lm-evaluation-harness scores choices), vLLM's
/// `prompt_logprobs`, or both (the more of the two).
fn scores_prompt(req: &GenerateRequest) -> Option<usize> {
    let prompt_logprobs = req.sampling().prompt_logprobs.map(|n| n as usize);
    echo_scored(req).max(prompt_logprobs)
}

/// How many alternatives each echoed prompt token gets: a completion's `echo` with
/// `logprobs`.
fn echo_scored(req: &GenerateRequest) -> Option<usize> {
    match req {
        GenerateRequest::Completion(c) if c.echo => c.sampling.logprobs.map(|n| n as usize),
        _ => None,
    }
}

/// One choice's sequence: its text not yet whole characters, its log-probability entries,
/// and its cancel flag (dropping the request's receivers, or a stop string, sets it).
struct Run {
    bytes: Vec<u8>,
    entries: Entries,
    cancel: Arc<AtomicBool>,
}

impl Run {
    /// Add a token's bytes; the text now complete (a character split over tokens waits for
    /// its last byte, as streamed text must be whole characters).
    fn text(&mut self, bytes: &[u8]) -> String {
        self.bytes.extend_from_slice(bytes);
        let whole = complete_len(&self.bytes);
        let done: Vec<u8> = self.bytes.drain(..whole).collect();
        String::from_utf8_lossy(&done).into_owned()
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

/// llguidance's compiler for this model's vocabulary: the sidecar's tokenizer, its end of
/// generation the model's own end-of-generation tokens.
fn constraint_factory(dir: &Path, n_vocab: usize, eog: &[u32]) -> Result<ParserFactory, String> {
    let path = dir.join(weights::tokenizer::TOKENIZER_JSON);
    let mut bt = toktrie_hf_tokenizers::ByteTokenizer::from_file(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !eog.is_empty() {
        bt.set_eos_tokens(eog);
    }
    let env = bt.into_tok_env(Some(n_vocab)).map_err(|e| e.to_string())?;
    ParserFactory::new_simple(&env).map_err(|e| e.to_string())
}
