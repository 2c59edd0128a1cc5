//! The mistral.rs backend: [`MistralRs::generate`] runs an OpenAI request and reports its
//! chunks as they come. Every request runs in mistral.rs's streaming mode, streamed to the
//! client or not: dropping a streaming receiver is how mistral.rs stops a sequence, so a cancel
//! frees the engine at once on every route. Usage comes from [`TokenCounter`], not from
//! mistral.rs's chunks, which carry none for completions, a wrong sum for `n > 1`, and nothing
//! at all when the last token ends inside a multi-byte character.

use crate::bias::LogitBias;
use crate::counter::{TokenCounter, TokenCounts};
use crate::devices;
use crate::logprobs::{ChoiceLogprobs, LogprobRecorder, Vocab};
use crate::rules::{bad_word_ids, StopIdsAsEos, TokenMask, TokenRules};
use crate::sampler::SeededSampler;
use crate::shape::Aggregator;
use crate::EngineError;
use either::Either;
use indexmap::IndexMap;
use mistralrs::core::{
    GGUFLoaderBuilder, GGUFSpecificConfig, MistralRsBuilder, NormalLoaderBuilder,
    NormalSpecificConfig, RequestMessage, Response, TokenSource,
};
use mistralrs::{
    best_device, Constraint, Model, ModelDType, NormalRequest, Request, SamplingParams, StopTokens,
};
use protocol::config::{ActivationDType, WeightKind};
use protocol::openai::logprobs::TokenLogprob;
use protocol::openai::prompt::{outside_vocabulary, Prompt};
use protocol::openai::response::{Chunk, Completion, Usage};
use protocol::openai::{
    CompletionRequest, Constraint as OutputConstraint, GenerateRequest, Sampling,
};
use protocol::ModelConfig;
use std::num::NonZeroUsize;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc::Receiver;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{StreamExt, StreamMap};
use tokio_util::sync::CancellationToken;

/// A model loaded in mistral.rs, serving one model name: runs OpenAI requests with
/// continuous batching of up to the config's `max_num_seqs` sequences.
pub struct MistralRs {
    model: Model,
    served_name: String,
    /// Prompt + completion tokens a sequence may reach (the config's `context_length`).
    context_length: usize,
    /// Where a constrained (structured-output) request stops: see [`MistralRs::load`].
    constraint_eos: Vec<u32>,
    /// The end-of-sequence tokens mistral.rs stops on (the model's), for `ignore_eos` and
    /// `min_tokens` ([`TokenMask`]).
    eos: Arc<[u32]>,
    /// Every token's text, for log probabilities; `None` if the pipeline has no token trie
    /// (log probabilities are then refused).
    vocab: Option<Arc<Vocab>>,
}

impl MistralRs {
    /// Load the GGUF at `path` with the config's engine settings. This builds the pipeline the
    /// way mistral.rs's `GgufModelBuilder` does, except that the activation dtype is ours to
    /// choose (the builder always picks `auto`) and the tokenizer can come from `tokenizer_dir`
    /// (a Hugging Face tokenizer directory written at pull time: `tokenizer.json`,
    /// `tokenizer_config.json`) instead of being rebuilt from the GGUF's metadata on every
    /// start. Errors: [`EngineError::Load`] naming the file or setting.
    pub async fn load(
        cfg: &ModelConfig,
        path: &Path,
        tokenizer_dir: Option<&Path>,
    ) -> Result<Self, EngineError> {
        let load_err = |e: anyhow::Error| EngineError::Load(format!("{e:#}"));
        let loader = match cfg.weights.kind {
            WeightKind::Gguf => gguf_loader(path, tokenizer_dir)?,
            WeightKind::Safetensors => safetensors_loader(path)?,
        };
        let dtype = match cfg.engine.dtype {
            ActivationDType::Auto => ModelDType::Auto,
            ActivationDType::F32 => ModelDType::F32,
            ActivationDType::F16 => ModelDType::F16,
            ActivationDType::Bf16 => ModelDType::BF16,
        };
        // Without the `cuda` feature mistral.rs only has the CPU.
        let device =
            best_device(!cfg!(feature = "cuda")).map_err(|e| EngineError::Load(e.to_string()))?;
        let paged = devices::paged_attention(&cfg.engine, &device).map_err(EngineError::Load)?;
        let seqs = NonZeroUsize::new(cfg.engine.max_num_seqs)
            .ok_or_else(|| EngineError::Load("engine.max_num_seqs must be > 0".into()))?;
        let t0 = std::time::Instant::now();
        let pipeline = loader
            .load_model_from_hf(
                None,
                TokenSource::None,
                &dtype,
                &device,
                true,
                devices::device_map(),
                None,
                paged,
            )
            .map_err(load_err)?;
        let scheduler = devices::scheduler(&pipeline, seqs).await;
        let t_pipeline = t0.elapsed();
        let prefix_cache = prefix_cache_for(cfg.engine.prefix_cache, device.is_cpu())?;
        // Where llguidance ends a finished constraint: its own end-of-text tokens, which can
        // differ from the model's EOS ids that mistral.rs stops on (SmolLM2: `<|endoftext|>`
        // vs `<|im_end|>`); without them a finished JSON answer is padded with invisible
        // tokens up to `max_tokens`.
        let (tok_env, eos) = {
            let meta = pipeline.lock().await.get_metadata();
            (meta.tok_env(), Arc::from(meta.eos_tok.clone()))
        };
        let constraint_eos = tok_env
            .as_ref()
            .map(|env| env.tok_trie().eos_tokens().to_vec())
            .unwrap_or_default();
        // Decoded as mistral.rs decodes a sequence's text (`finish_or_add_toks_to_seq`).
        let vocab = tok_env.map(|env| {
            let trie = env.tok_trie();
            Arc::new(Vocab::new(trie.vocab_size(), |id, special| {
                trie.decode_ext(&[id], special)
            }))
        });
        let runner = MistralRsBuilder::new(pipeline, scheduler, false, None)
            .with_no_prefix_cache(!prefix_cache)
            .build()
            .await;
        tracing::debug!(
            pipeline_ms = t_pipeline.as_millis() as u64,
            runner_ms = (t0.elapsed() - t_pipeline).as_millis() as u64,
            "engine loaded"
        );
        Ok(MistralRs {
            model: Model::new(runner),
            served_name: cfg.name.clone(),
            context_length: cfg.engine.context_length,
            constraint_eos,
            eos,
            vocab,
        })
    }

    /// The response once the engine is done: choices it ended silently get their finish
    /// reason, usage comes from the counts.
    fn finish(
        &self,
        req: &GenerateRequest,
        mut agg: Aggregator,
        mut runs: Vec<Run>,
        counts: &[TokenCounts],
        on_chunk: &mut (dyn FnMut(Chunk) + Send),
    ) -> Result<Completion, EngineError> {
        let stream = req.stream();
        let limit = req.sampling().max_tokens.map(|m| m as usize);
        for (run, c) in runs.iter_mut().zip(counts) {
            let reason = self.silent_finish(limit, c);
            close_run(&mut agg, run, reason, stream, on_chunk);
        }
        let prompt_tokens = counts.iter().find_map(|c| c.prompt).ok_or_else(|| {
            EngineError::Internal("the engine ended the request without generating".into())
        })?;
        agg.usage = Usage::new(
            prompt_tokens,
            counts.iter().map(|c| c.generated(limit)).sum(),
        );
        if stream && req.include_usage() {
            on_chunk(agg.usage_chunk());
        }
        Ok(agg.finish())
    }

    /// Why a choice ended that the engine finished without a final chunk: `"length"` if it
    /// generated `max_tokens` tokens or filled the context, else `"stop"` (an end-of-sequence
    /// token right after an incomplete character).
    fn silent_finish(&self, max_tokens: Option<usize>, c: &TokenCounts) -> &'static str {
        let generated = c.generated(max_tokens);
        let full = c.prompt.unwrap_or(0) + generated >= self.context_length;
        if full || max_tokens.is_some_and(|m| generated >= m) {
            "length"
        } else {
            "stop"
        }
    }

    /// Submit `req` to mistral.rs: one engine request per choice, in its streaming mode (every
    /// request, streamed or not, because dropping a streaming receiver is the only way to stop
    /// a mistral.rs sequence, and one request per choice because its `n > 1` streams lose
    /// chunks when the choices' deltas fall out of step). A completion with `best_of > n` is
    /// the exception: mistral.rs ranks `best_of` sequences by cumulative log probability only
    /// in its non-streaming mode, so it runs as one such request, which a cancel stops only
    /// when it ends (bounded by `max_tokens`, 16 by default on that route).
    /// The alternatives per token and the vocabulary when the request asks for log
    /// probabilities. Errors: [`EngineError::Invalid`] if the model has no token trie.
    fn logprobs_of(
        &self,
        sampling: &Sampling,
    ) -> Result<Option<(usize, &Arc<Vocab>)>, EngineError> {
        match (sampling.logprobs, &self.vocab) {
            (None, _) => Ok(None),
            (Some(n), Some(vocab)) => Ok(Some((n as usize, vocab))),
            (Some(_), None) => Err(EngineError::Invalid(
                "log probabilities need the model's token trie, which it has not".into(),
            )),
        }
    }

    /// vLLM's `bad_words` as token sequences (see [`bad_word_ids`]), tokenized by mistral.rs
    /// (without special tokens).
    async fn bad_words_of(&self, words: &[String]) -> Result<Vec<Vec<u32>>, EngineError> {
        let mut encoded = std::collections::HashMap::new();
        for w in words {
            let w = w.trim_start();
            for text in [w.to_string(), format!(" {w}")] {
                let ids = self
                    .model
                    .tokenize(Either::Right(text.clone()), None, false, false, None)
                    .await
                    .map_err(|e| EngineError::Internal(format!("tokenizing `bad_words`: {e}")))?;
                encoded.insert(text, ids);
            }
        }
        bad_word_ids(words, |t| Ok(encoded.get(t).cloned().unwrap_or_default()))
    }

    /// The text `echo` puts first: the prompt, or its tokens' text.
    fn echo_text(&self, c: &CompletionRequest) -> String {
        match (c.prompt(), &self.vocab) {
            (Prompt::Tokens(_), None) => String::new(),
            (p, Some(vocab)) => vocab.echo_text(p),
            (Prompt::Text(t), None) => t.clone(),
        }
    }

    /// A token-id prompt must be in the vocabulary (mistral.rs does not check), and cannot
    /// rank `best_of` here (`ranked`: the request would).
    fn check_token_prompt(&self, c: &CompletionRequest, ranked: bool) -> Result<(), EngineError> {
        let Prompt::Tokens(ids) = c.prompt() else {
            return Ok(());
        };
        let invalid = |m: String| Err(EngineError::Invalid(m));
        if ranked {
            return invalid(
                "`best_of` with a token-id prompt is not supported by the mistral.rs backend"
                    .into(),
            );
        }
        let size = self.vocab.as_ref().map_or(0, |v| v.len());
        match outside_vocabulary(ids, size) {
            Some(why) => invalid(why),
            None => Ok(()),
        }
    }

    async fn start_runs(
        &self,
        req: &GenerateRequest,
    ) -> Result<Vec<(Run, Receiver<Response>)>, EngineError> {
        let sampling = req.sampling();
        let shapes = run_shapes(req);
        if let GenerateRequest::Completion(c) = req {
            self.check_token_prompt(c, shapes.iter().any(|s| s.1.is_some()))?;
        }
        if let Some(what) = unsupported(req) {
            return Err(EngineError::Invalid(format!(
                "{what} not supported by the mistral.rs backend"
            )));
        }
        let runner = self.model.inner();
        let sender = runner
            .get_sender(None)
            .map_err(|e| EngineError::Internal(e.to_string()))?;
        // What every run shares: its sampling, the stop ids of a constraint, the bias.
        let constrained = sampling.constraint().is_some();
        let mut base = sampling_params(sampling);
        if constrained && !self.constraint_eos.is_empty() {
            base.stop_toks = Some(StopTokens::Ids(self.constraint_eos.clone()));
        }
        let bias = LogitBias::processor(&sampling.logit_bias);
        let rules = TokenRules::new(sampling, self.eos.clone())
            .with_bad_words(self.bad_words_of(&sampling.bad_words).await?);
        let (ends, stop_ids) = (
            TokenMask::processor(rules.clone()),
            StopIdsAsEos::processor(&rules),
        );
        let top_n = self.logprobs_of(sampling)?;
        let mut runs = Vec::with_capacity(shapes.len());
        for (i, (n_choices, keep)) in shapes.into_iter().enumerate() {
            // Last: it reads the logits every other processor has shaped.
            let sampler = SeededSampler::for_choice(sampling, i, keep.is_some());
            // Generous capacity: mistral.rs awaits each send, so a full channel would stall
            // the whole batch, not just this request.
            let (tx, rx) = tokio::sync::mpsc::channel(4096);
            let counter = TokenCounter::new(constrained);
            // mistral.rs's own log probabilities are wrong (see `logprobs.rs`).
            let recorder = top_n.map(|(n, _)| LogprobRecorder::new(n));
            let mut params = base.clone();
            params.n_choices = n_choices;
            let request = Request::Normal(Box::new(NormalRequest {
                messages: request_message(req, keep),
                sampling_params: params,
                response: tx,
                return_logprobs: false,
                is_streaming: keep.is_none(),
                id: runner.next_request_id(),
                constraint: constraint_of(sampling),
                suffix: None,
                tools: None,
                tool_choice: None,
                logits_processors: Some(
                    std::iter::once(counter.processor())
                        .chain(bias.clone())
                        .chain(recorder.as_ref().map(LogprobRecorder::processor))
                        .chain(ends.clone())
                        .chain(sampler)
                        .chain(stop_ids.clone())
                        .collect(),
                ),
                return_raw_logits: false,
                web_search_options: None,
                model_id: None,
                truncate_sequence: false,
            }));
            sender
                .send(request)
                .await
                .map_err(|_| EngineError::Internal("the engine has stopped".into()))?;
            let choices = match keep {
                Some(n) => 0..n,
                None => i..i + 1,
            };
            let run = Run {
                choices,
                counter,
                logprobs: recorder
                    .zip(top_n)
                    .map(|(r, (_, v))| ChoiceLogprobs::new(r, v.clone())),
                held: None,
            };
            runs.push((run, rx));
        }
        Ok(runs)
    }
}

#[async_trait::async_trait]
impl crate::Backend for MistralRs {
    /// The model name it serves.
    fn served_name(&self) -> &str {
        &self.served_name
    }
    /// Run `req`. Each piece of output is passed to `on_chunk` as an OpenAI chunk (when the
    /// request streams); the final OpenAI response is returned. Usage is counted
    /// where mistral.rs samples ([`TokenCounter`]), so it is exact for every route, `n` and
    /// ending. Errors: [`EngineError::Cancelled`] once `cancel` fires (the engine stops the
    /// request's sequences at their next token), else what the engine reported.
    async fn generate(
        &self,
        req: &GenerateRequest,
        on_chunk: &mut (dyn FnMut(Chunk) + Send),
        cancel: &CancellationToken,
    ) -> Result<Completion, EngineError> {
        let stream = req.stream();
        let mut events = StreamMap::new();
        let mut runs = Vec::new();
        for (i, (run, rx)) in self.start_runs(req).await?.into_iter().enumerate() {
            events.insert(i, ReceiverStream::new(rx));
            runs.push(run);
        }
        let mut agg = Aggregator::for_request(req, &self.served_name);
        let echoed = match req {
            GenerateRequest::Completion(c) if c.echo => agg.echo(&self.echo_text(c)),
            _ => Vec::new(),
        };
        if stream {
            echoed.into_iter().for_each(&mut *on_chunk);
        }
        // Each run's counts, taken when its choices finished: mistral.rs may run a finished
        // sequence one more step before it notices the dropped receiver.
        let mut counts: Vec<Option<TokenCounts>> = vec![None; runs.len()];
        let mut phases = crate::backend::Phases::start();
        loop {
            let event = tokio::select! {
                e = events.next() => e,
                _ = cancel.cancelled() => return Err(EngineError::Cancelled),
            };
            // No event: the engine has dropped every sequence of the request.
            let Some((r, resp)) = event else { break };
            phases.event();
            if agg.continuous_usage() {
                agg.usage = usage_so_far(&runs, req.sampling().max_tokens);
            }
            for piece in fold(resp, runs[r].choices.start)? {
                for ((index, text, finish), entries) in runs[r].ready(piece) {
                    if let Some(chunk) = agg.delta(index, &text, finish.as_deref(), entries) {
                        if stream {
                            on_chunk(chunk);
                        }
                    }
                }
            }
            if counts[r].is_none() && runs[r].choices.clone().all(|c| agg.finished(c)) {
                counts[r] = Some(runs[r].counter.counts());
            }
            // The configured context can be shorter than the model's own, the only limit
            // mistral.rs knows: a run that fills it ends with `length`, and dropping its
            // receiver stops its sequences.
            if counts[r].is_none() && runs[r].counter.context_used() >= self.context_length {
                events.remove(&r);
                let c = runs[r].counter.counts();
                close_run(&mut agg, &mut runs[r], "length", stream, on_chunk);
                counts[r] = Some(c);
            }
            if agg.all_done() {
                // Done; dropping the receivers also stops sequences still running after a
                // stop sequence matched.
                break;
            }
        }
        drop(phases);
        let counts: Vec<TokenCounts> = counts
            .into_iter()
            .zip(&runs)
            .map(|(c, run)| c.unwrap_or_else(|| run.counter.counts()))
            .collect();
        self.finish(req, agg, runs, &counts, on_chunk)
    }
}

/// The usage of `runs` so far, for `continuous_usage_stats` (`max_tokens`: the request's).
fn usage_so_far(runs: &[Run], max_tokens: Option<u32>) -> Usage {
    let counts: Vec<TokenCounts> = runs.iter().map(|r| r.counter.counts()).collect();
    let limit = max_tokens.map(|m| m as usize);
    Usage::new(
        counts.iter().find_map(|c| c.prompt).unwrap_or(0),
        counts.iter().map(|c| c.generated(limit)).sum(),
    )
}

/// End `run`: its held piece goes out, then each of its choices not finished yet ends with
/// `reason` (chunks passed to `on_chunk` when streaming).
fn close_run(
    agg: &mut Aggregator,
    run: &mut Run,
    reason: &'static str,
    stream: bool,
    on_chunk: &mut (dyn FnMut(Chunk) + Send),
) {
    if let Some(((index, text, finish), entries)) = run.flush() {
        if let Some(chunk) = agg.delta(index, &text, finish.as_deref(), entries) {
            if stream {
                on_chunk(chunk);
            }
        }
    }
    for i in run.choices.clone() {
        if agg.finished(i) {
            continue;
        }
        if let Some(chunk) = agg.end_silently(i, reason) {
            if stream {
                on_chunk(chunk);
            }
        }
    }
}

/// One engine request of a [`GenerateRequest`]: the choices it produces, its token counter
/// and, when the request asked, its choice's log probabilities.
struct Run {
    choices: std::ops::Range<usize>,
    counter: TokenCounter,
    logprobs: Option<ChoiceLogprobs>,
    /// With log probabilities, the latest piece: its last token is known only at the next
    /// step (see `logprobs.rs`), so it waits for the next piece or the end.
    held: Option<Piece>,
}

impl Run {
    /// The pieces ready for the aggregator, each with the log-probability entries known by
    /// then: without log probabilities `piece` at once; with them the piece held before, and
    /// `piece` too when it ends the choice (else it is held).
    fn ready(&mut self, piece: Piece) -> Vec<(Piece, Vec<TokenLogprob>)> {
        let Some(lp) = self.logprobs.as_mut() else {
            return vec![(piece, Vec::new())];
        };
        let mut out = Vec::with_capacity(2);
        if let Some(held) = self.held.take() {
            let entries = lp.entries(&held.1, false);
            out.push((held, entries));
        }
        if piece.2.is_some() {
            let entries = lp.entries(&piece.1, true);
            out.push((piece, entries));
        } else {
            self.held = Some(piece);
        }
        out
    }

    /// The held piece, once the engine ended the choice without a final piece.
    fn flush(&mut self) -> Option<(Piece, Vec<TokenLogprob>)> {
        let held = self.held.take()?;
        let entries = self.logprobs.as_mut()?.entries(&held.1, true);
        Some((held, entries))
    }
}

/// What the mistral.rs backend cannot honour in `req`, named (with its verb) for the client.
fn unsupported(req: &GenerateRequest) -> Option<&'static str> {
    let s = req.sampling();
    match req {
        // mistral.rs renders chats with its own template call, which takes no options.
        GenerateRequest::Chat(c) if !c.template.is_default() => {
            return Some(
                "`add_generation_prompt`, `continue_final_message` and `chat_template_kwargs` \
                 are",
            )
        }
        // mistral.rs 0.8.1 computes no prompt logits and always generates a token.
        GenerateRequest::Completion(c) if c.echo && s.logprobs.is_some() => {
            return Some("`echo` with `logprobs` (prompt log probabilities) is")
        }
        _ if s.prompt_logprobs.is_some() => return Some("`prompt_logprobs` is"),
        _ if s.max_tokens == Some(0) => return Some("`max_tokens: 0` is"),
        _ => {}
    }
    if s.truncate_prompt_tokens.is_some() {
        // mistral.rs tokenizes the prompt itself; sluice cannot cut it before.
        return Some("`truncate_prompt_tokens` is");
    }
    // mistral.rs decodes a sequence's text without special tokens, with no option.
    s.keep_special_tokens
        .then_some("`skip_special_tokens: false` is")
}

/// The engine requests of `req` as `(sequences, best_of)`: one one-sequence request per
/// choice, or for a completion with `best_of > n` one request of `best_of` sequences keeping
/// `n` (see [`MistralRs::start_runs`]).
fn run_shapes(req: &GenerateRequest) -> Vec<(usize, Option<usize>)> {
    let n = req.sampling().n;
    match req {
        GenerateRequest::Completion(c) => match c.best_of.filter(|&b| b > n) {
            Some(b) => vec![(b as usize, Some(n as usize))],
            None => vec![(1, None); n as usize],
        },
        GenerateRequest::Chat(_) => vec![(1, None); n as usize],
    }
}

/// The messages of `req` as mistral.rs takes them; `best_of` for a best-of completion.
fn request_message(req: &GenerateRequest, best_of: Option<usize>) -> RequestMessage {
    match req {
        GenerateRequest::Chat(c) => RequestMessage::Chat {
            messages: c
                .prompt_messages()
                .iter()
                .map(|m| {
                    let mut map = IndexMap::new();
                    map.insert("role".to_string(), Either::Left(m.role.clone()));
                    map.insert("content".to_string(), Either::Left(m.content.clone()));
                    map
                })
                .collect(),
            enable_thinking: None,
            reasoning_effort: None,
        },
        GenerateRequest::Completion(c) => match c.prompt() {
            Prompt::Text(text) => RequestMessage::Completion {
                text: text.clone(),
                echo_prompt: false,
                best_of,
            },
            // mistral.rs ranks `best_of` for text prompts only: `start_runs` refuses the pair.
            Prompt::Tokens(ids) => RequestMessage::CompletionTokens(ids.clone()),
        },
    }
}

/// One engine response as `(choice index, text, finish reason)` pieces. `run_choice` is the
/// choice of a one-choice run (mistral.rs numbers every run's choice 0); a best-of run's
/// choices keep the engine's numbering.
type Piece = (usize, String, Option<String>);

fn fold(resp: Response, run_choice: usize) -> Result<Vec<Piece>, EngineError> {
    Ok(match resp {
        Response::Chunk(c) => c
            .choices
            .into_iter()
            .map(|ch| {
                let text = ch.delta.content.unwrap_or_default();
                (run_choice + ch.index, text, ch.finish_reason)
            })
            .collect(),
        Response::CompletionChunk(c) => c
            .choices
            .into_iter()
            .map(|ch| (run_choice + ch.index, ch.text, ch.finish_reason))
            .collect(),
        Response::CompletionDone(c) => c
            .choices
            .into_iter()
            .enumerate()
            .map(|(i, ch)| (i, ch.text, Some(ch.finish_reason)))
            .collect(),
        Response::ValidationError(e) => {
            return Err(EngineError::Invalid(for_client(&e.to_string())))
        }
        Response::InternalError(e) => {
            return Err(EngineError::Internal(for_client(&e.to_string())))
        }
        Response::ModelError(e, _) | Response::CompletionModelError(e, _) => {
            return Err(EngineError::Internal(for_client(&e)))
        }
        _ => return Err(EngineError::Internal("unexpected response kind".into())),
    })
}

/// What a client may read of an error mistral.rs reports. Its constraint errors carry
/// llguidance's whole state (tokens so far, the grammar, parser figures) after the first line:
/// that goes to the worker's log, and the client gets the first line, at most 200 characters,
/// said plainly when the constraint allowed no next token.
fn for_client(error: &str) -> String {
    tracing::warn!(error, "the engine reported an error");
    let first = error.lines().next().unwrap_or("").trim();
    if first.starts_with("NoExtensionBias") || error.contains("<state>") {
        return "the output constraint (the schema of `response_format`, `guided_json` or a \
                forced tool call) allowed no next token: the schema matches no value from here"
            .into();
    }
    first.chars().take(200).collect()
}

/// Whether mistral.rs's prefix cache may be on: the config's choice, or by default on GPUs
/// only. mistral.rs 0.8.1 evicts prefix-cache entries only from GPU memory
/// (`PrefixCacheManagerV2::evict_caches` skips caches on the CPU), so on a CPU worker every
/// finished sequence's KV cache would stay resident for the life of the process.
fn prefix_cache_for(setting: Option<bool>, on_cpu: bool) -> Result<bool, EngineError> {
    match (setting, on_cpu) {
        (Some(true), true) => Err(EngineError::Load(
            "engine.prefix_cache = true is not supported on CPU workers: mistral.rs 0.8.1 never \
             evicts prefix-cache entries held in CPU memory, so the worker would grow by every \
             request's KV cache (~22 MB per 64-token chat measured) until it is killed; remove \
             the setting (the default is off on CPU, on for GPUs)"
                .into(),
        )),
        (Some(on), _) => Ok(on),
        (None, on_cpu) => Ok(!on_cpu),
    }
}

/// mistral.rs's GGUF loader for the file at `path`, reading the tokenizer from `tokenizer_dir`
/// when given. Errors: [`EngineError::Load`] when `path` is not a file (mistral.rs would take
/// a missing local file for a Hugging Face id and go online).
fn gguf_loader(
    path: &Path,
    tokenizer_dir: Option<&Path>,
) -> Result<Box<dyn mistralrs::core::Loader>, EngineError> {
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
    // mistral.rs reads `tokenizer.json` and `tokenizer_config.json` (the chat template and
    // special tokens) from this "model id" when it is a local directory.
    let tok_model_id = tokenizer_dir.map(|d| d.to_string_lossy().into_owned());
    Ok(GGUFLoaderBuilder::new(
        None,
        tok_model_id,
        dir,
        vec![file],
        GGUFSpecificConfig { topology: None },
        false,
        None,
    )
    .build())
}

/// mistral.rs's loader for a safetensors repo in the directory of `weights` (its
/// `config.json` names the architecture; `tokenizer.json` and `tokenizer_config.json` beside).
fn safetensors_loader(weights: &Path) -> Result<Box<dyn mistralrs::core::Loader>, EngineError> {
    let dir = weights.parent().unwrap_or(Path::new("."));
    // mistral.rs would take a missing local directory for a Hugging Face id and go online.
    if !dir.join("config.json").is_file() {
        return Err(EngineError::Load(format!(
            "no config.json beside {}",
            weights.display()
        )));
    }
    let id = dir.to_string_lossy().into_owned();
    NormalLoaderBuilder::new(
        NormalSpecificConfig::default(),
        None,
        None,
        Some(id),
        false,
        None,
    )
    .build(None)
    .map_err(|e| EngineError::Load(format!("{e:#}")))
}

/// The structured-output constraint mistral.rs enforces with llguidance: a JSON Schema, a
/// pattern or a Lark grammar (the parser lets one through at most).
fn constraint_of(s: &Sampling) -> Constraint {
    match s.constraint() {
        Some(OutputConstraint::Schema(schema)) => Constraint::JsonSchema(schema.clone()),
        Some(OutputConstraint::Pattern(pattern)) => Constraint::Regex(pattern.to_string()),
        Some(OutputConstraint::Lark(lark)) => Constraint::Lark(lark.to_string()),
        None => Constraint::None,
    }
}

fn sampling_params(s: &Sampling) -> SamplingParams {
    let mut p = SamplingParams::neutral();
    // mistral.rs decodes greedily: a request that samples is sampled by `SeededSampler`
    // (temperature, top-k, top-p, min-p), which leaves mistral.rs one token to take.
    p.top_k = Some(1);
    p.presence_penalty = s.presence_penalty;
    p.frequency_penalty = s.frequency_penalty;
    p.repetition_penalty = s.repetition_penalty;
    p.max_len = s.max_tokens.map(|m| m as usize);
    // Stop sequences are matched on text by `shape::Aggregator`, not by the engine;
    // `logit_bias` is applied by `LogitBias` (mistral.rs ignores its own `logits_bias`).
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_errors_reach_clients_without_the_engines_state() {
        let dump =
            "NoExtensionBias\n<state>\nTokens: ⟦⟧\nParser: {}\n</state><grammar>\n</grammar>";
        let m = for_client(dump);
        assert!(
            m.contains("allowed no next token") && !m.contains("state"),
            "{m}"
        );
        assert_eq!(for_client("out of memory\nat frame 3"), "out of memory");
        assert_eq!(for_client(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn prefix_cache_is_off_on_cpu_unless_asked_and_refused_when_asked() {
        assert!(!prefix_cache_for(None, true).unwrap(), "CPU default: off");
        assert!(prefix_cache_for(None, false).unwrap(), "GPU default: on");
        assert!(!prefix_cache_for(Some(false), false).unwrap());
        let err = prefix_cache_for(Some(true), true).unwrap_err().to_string();
        assert!(err.contains("prefix_cache") && err.contains("CPU"), "{err}");
    }
}
