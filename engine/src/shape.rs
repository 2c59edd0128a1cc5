//! OpenAI response objects, built from generation events: the streamed chunks
//! (`chat.completion.chunk` / `text_completion`) and the final object they add up to. Building
//! both from the same events guarantees that a streamed answer concatenates to the
//! non-streamed one.

use crate::tool_calls::{Emit, ToolOutput};
use protocol::openai::logprobs::{ChatLogprobs, PromptLogprobs, TextLogprobs, TokenLogprob};
use protocol::openai::response::{
    AssistantMessage, ChatChoice, ChatChunkChoice, Chunk, Completion, Delta, Envelope, StopReason,
    TextChoice, Usage,
};
use protocol::openai::tools::{ToolCall, Tools};
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Which OpenAI API a response is for: it sets the objects' `object`, id prefix and choice
/// shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `/v1/chat/completions`: `chat.completion(.chunk)` objects, ids `chatcmpl-...`.
    Chat,
    /// `/v1/completions`: `text_completion` objects, ids `cmpl-...`.
    Completion,
}

#[derive(Clone, Debug, Default)]
struct Choice {
    text: String,
    finish_reason: Option<String>,
    started: bool,
    /// Text held back because it may be the start of a stop sequence.
    pending: String,
    /// Token log probabilities whose text is not all emitted yet, with the byte offset where
    /// each token's text ends in the generated text.
    lp_pending: VecDeque<(usize, TokenLogprob)>,
    /// Bytes of generated text the log-probability entries received so far cover. Entries
    /// can lag the text (an engine holds a token back until its character is whole, while the
    /// text before it is already sent), so their offsets count their own bytes: their tokens
    /// concatenate to the text.
    logged: usize,
    /// Log probabilities emitted so far; their tokens concatenate to `text`.
    logprobs: Vec<TokenLogprob>,
    /// How a chat choice's text is read: as the message, or as tool calls.
    tool: ToolOutput,
    /// A chat choice's tool calls, once it ended.
    calls: Vec<ToolCall>,
    /// Characters of prompt `echo` put first.
    prompt_chars: usize,
    /// The echoed prompt's log probabilities, when scored.
    echoed: Option<TextLogprobs>,
    /// The stop string or stop token that ended the choice (vLLM's `stop_reason`).
    stop_reason: Option<StopReason>,
    /// Its prompt's scores, when asked for (vLLM's `prompt_logprobs`).
    prompt_logprobs: Option<PromptLogprobs>,
}

impl Choice {
    /// Read `text` (and the choice's end, when `finish`) through the choice's tools; returns
    /// what to send and the finish reason, which becomes `tool_calls` for an answer of calls.
    fn read_tools(&mut self, text: &str, finish: Option<String>) -> (Emit, Option<String>) {
        let mut emit = self.tool.feed(text);
        let finish = finish.map(|f| {
            let (last, reason, calls) = self.tool.end(f);
            emit.content.push_str(&last.content);
            emit.calls.extend(last.calls);
            self.calls = calls;
            self.finish_reason = Some(reason.clone());
            reason
        });
        (emit, finish)
    }

    /// Log probabilities whose text is now all emitted. Once the choice finished, a token cut
    /// by a stop sequence keeps only its emitted part, and later ones are dropped, so the
    /// tokens always concatenate to the text.
    fn release(&mut self) -> Vec<TokenLogprob> {
        let done = self.text.len();
        let mut out = Vec::new();
        while let Some((end, _)) = self.lp_pending.front() {
            if *end <= done {
                out.extend(self.lp_pending.pop_front().map(|(_, e)| e));
                continue;
            }
            if self.finish_reason.is_some() {
                if let Some((end, mut e)) = self.lp_pending.pop_front() {
                    let start = end - e.token.len();
                    if start < done {
                        let mut keep = done - start;
                        while !e.token.is_char_boundary(keep) {
                            keep -= 1;
                        }
                        e.token.truncate(keep);
                        e.bytes = Some(e.token.as_bytes().to_vec());
                        out.push(e);
                    }
                }
                self.lp_pending.clear();
            }
            break;
        }
        self.logprobs.extend(out.iter().cloned());
        out
    }
}

/// A chat message's or delta's `content`: OpenAI sends `null` where there are calls and no
/// text.
fn message_content(content: String, has_calls: bool) -> Option<String> {
    (!has_calls || !content.is_empty()).then_some(content)
}

/// Stop sequences are matched here, on text, as OpenAI defines them. (mistral.rs turns a stop
/// string that is one token into a token id, so `"Blue"` would not stop `" Blue"`.)
/// Returns the text safe to emit and the stop sequence hit, if one was; a hit drops the stop
/// sequence and everything after it.
/// With `keep` (vLLM's `include_stop_str_in_output`) the stop sequence itself stays.
fn scan_stops<'s>(
    pending: &mut String,
    text: &str,
    stops: &'s [String],
    keep: bool,
) -> (String, Option<&'s str>) {
    pending.push_str(text);
    let hit = stops
        .iter()
        .filter_map(|s| pending.find(s.as_str()).map(|pos| (pos, s)))
        .min_by_key(|&(pos, _)| pos);
    if let Some((pos, stop)) = hit {
        let out = pending[..if keep { pos + stop.len() } else { pos }].to_string();
        pending.clear();
        return (out, Some(stop));
    }
    // Keep back the longest tail of `pending` that a stop sequence starts with.
    let keep = stops
        .iter()
        .flat_map(|s| {
            (1..s.len().min(pending.len() + 1))
                .rev()
                .filter(|&n| s.is_char_boundary(n) && pending.ends_with(&s[..n]))
                .take(1)
        })
        .max()
        .unwrap_or(0);
    let out = pending[..pending.len() - keep].to_string();
    pending.drain(..pending.len() - keep);
    (out, None)
}

/// Accumulates one request's output.
#[derive(Debug)]
pub struct Aggregator {
    kind: Kind,
    id: String,
    created: u64,
    model: String,
    choices: Vec<Choice>,
    stops: Vec<String>,
    /// Streamed chunks carry `"usage": null` (OpenAI's shape when the client asked for usage
    /// with `stream_options.include_usage`; the last chunk then carries the real usage).
    include_usage: bool,
    /// Streamed chunks carry the usage so far (vLLM's `continuous_usage_stats`): the caller
    /// keeps [`Aggregator::usage`] current.
    continuous_usage: bool,
    /// A stop sequence that ends a choice stays in its text (`include_stop_str_in_output`).
    keep_stop: bool,
    /// Whether the request asked for log probabilities (the `logprobs` fields are `null`
    /// otherwise).
    logprobs: bool,
    /// Token usage (prompt and completion tokens) for the final object and the usage chunk;
    /// zero until the caller sets it from its own counts (nothing here counts tokens).
    pub usage: Usage,
}

/// OpenAI's finish reasons; mistral.rs says `canceled` for a stopped sequence.
fn finish_reason(r: &str) -> String {
    match r {
        "stop" | "length" | "tool_calls" | "content_filter" => r.to_string(),
        _ => "stop".to_string(),
    }
}

impl Aggregator {
    /// An empty response for `n` choices (at least 1) of model name `model`, with a fresh id
    /// and `created` time (Unix seconds). `stops`: the request's stop sequences, matched on
    /// text; `include_usage`: streamed chunks carry `"usage": null`.
    pub fn new(kind: Kind, model: &str, n: usize, stops: Vec<String>, include_usage: bool) -> Self {
        let prefix = match kind {
            Kind::Chat => "chatcmpl",
            Kind::Completion => "cmpl",
        };
        Aggregator {
            kind,
            id: format!("{prefix}-{:032x}", rand::random::<u128>()),
            created: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            model: model.to_string(),
            choices: vec![Choice::default(); n.max(1)],
            stops,
            include_usage,
            continuous_usage: false,
            keep_stop: false,
            logprobs: false,
            usage: Usage::default(),
        }
    }

    /// The aggregator of `req`'s choices: its route's shape, stop strings, usage chunk, log
    /// probabilities and tools; `model` is the served name.
    pub fn for_request(req: &protocol::openai::GenerateRequest, model: &str) -> Self {
        use protocol::openai::GenerateRequest;
        let (kind, tools) = match req {
            GenerateRequest::Chat(c) => (Kind::Chat, c.tools.clone().map(Arc::new)),
            GenerateRequest::Completion(_) => (Kind::Completion, None),
        };
        let sampling = req.sampling();
        Aggregator::new(
            kind,
            model,
            sampling.n as usize,
            sampling.stop.clone(),
            req.stream() && req.include_usage(),
        )
        .with_logprobs(sampling.logprobs.is_some())
        .with_tools(tools.as_ref())
        .with_vllm_options(
            req.stream() && req.continuous_usage(),
            sampling.include_stop_str_in_output,
        )
    }

    /// vLLM's options: `continuous_usage` (every streamed chunk carries the usage so far,
    /// which the caller keeps current in [`Aggregator::usage`]) and `keep_stop` (a stop
    /// sequence that ends a choice stays in its text).
    pub fn with_vllm_options(mut self, continuous_usage: bool, keep_stop: bool) -> Self {
        self.continuous_usage = continuous_usage;
        self.keep_stop = keep_stop;
        self
    }

    /// Whether streamed chunks carry the usage so far (the caller updates [`Self::usage`]
    /// before each [`Self::delta`]).
    pub fn continuous_usage(&self) -> bool {
        self.continuous_usage
    }

    /// Read every choice's text as the request's tools say (see [`ToolOutput`]); chat only.
    pub fn with_tools(mut self, tools: Option<&Arc<Tools>>) -> Self {
        for c in &mut self.choices {
            c.tool = ToolOutput::new(tools);
        }
        self
    }

    /// Return log probabilities (`true` when the request asked for them).
    pub fn with_logprobs(mut self, on: bool) -> Self {
        self.logprobs = on;
        self
    }

    /// Record text for choice `index`, with the log probabilities of its tokens when the
    /// request asked (their token strings concatenate to `text`); returns the chunk a
    /// streaming client gets, if any (nothing after the choice finished, nothing while text
    /// is held back). An entry is released with the chunk that completes its text.
    pub fn delta(
        &mut self,
        index: usize,
        text: &str,
        finish: Option<&str>,
        logprobs: Vec<TokenLogprob>,
    ) -> Option<Chunk> {
        if index >= self.choices.len() {
            self.choices.resize(index + 1, Choice::default());
        }
        let stops = &self.stops;
        let c = &mut self.choices[index];
        if c.finish_reason.is_some() {
            return None;
        }
        for e in logprobs {
            c.logged += e.token.len();
            c.lp_pending.push_back((c.logged, e));
        }
        let (mut text, hit) = scan_stops(&mut c.pending, text, stops, self.keep_stop);
        let finish = if let Some(stop) = hit {
            c.stop_reason = Some(StopReason::Text(stop.to_string()));
            Some("stop".to_string())
        } else {
            finish.map(finish_reason)
        };
        if finish.is_some() {
            text.push_str(&std::mem::take(&mut c.pending));
            c.finish_reason = finish.clone();
        }
        if text.is_empty() && finish.is_none() {
            return None;
        }
        let (emit, finish) = c.read_tools(&text, finish);
        if self.kind == Kind::Chat && emit == Emit::default() && finish.is_none() {
            c.text.push_str(&text);
            return None;
        }
        // Completions' `text_offset` counts characters, as OpenAI's and vLLM's do.
        let offset = c.text.chars().count();
        c.text.push_str(&text);
        let released = c.release();
        let first = !c.started;
        c.started = true;
        let stop_reason = finish.as_ref().and(c.stop_reason.clone());
        let usage = self.chunk_usage();
        Some(match self.kind {
            Kind::Chat => {
                let delta = Delta {
                    role: first.then(|| "assistant".to_string()),
                    // OpenAI's tool-call chunks carry `content: null`.
                    content: message_content(emit.content, !emit.calls.is_empty()),
                    tool_calls: (!emit.calls.is_empty()).then_some(emit.calls),
                };
                let choice = ChatChunkChoice {
                    index,
                    delta,
                    logprobs: self.logprobs.then_some(ChatLogprobs { content: released }),
                    finish_reason: finish,
                    stop_reason,
                };
                Chunk::Chat(self.envelope("chat.completion.chunk", vec![choice], usage))
            }
            Kind::Completion => {
                let choice = TextChoice {
                    index,
                    text,
                    logprobs: self
                        .logprobs
                        .then(|| TextLogprobs::from_entries(&released, offset)),
                    finish_reason: finish,
                    stop_reason,
                    prompt_logprobs: None,
                };
                Chunk::Text(self.envelope("text_completion", vec![choice], usage))
            }
        })
    }

    /// Finish choice `index`, which the engine ended without a final chunk, with `reason`
    /// (`"length"` or `"stop"`): mistral.rs sends nothing for a last token that ends inside a
    /// multi-byte character, so such a choice would otherwise never carry a finish reason. Its
    /// dangling bytes are not text and are dropped, streamed or not. Returns the final chunk;
    /// `None` if the choice had already finished.
    pub fn end_silently(&mut self, index: usize, reason: &str) -> Option<Chunk> {
        self.delta(index, "", Some(reason), Vec::new())
    }

    /// Choice `index` is ending on `token`, one of the request's `stop_token_ids` (vLLM's
    /// `stop_reason`); call before the [`Aggregator::delta`] that finishes it.
    pub fn stopped_by_token(&mut self, index: usize, token: u32) {
        if let Some(c) = self.choices.get_mut(index) {
            if c.finish_reason.is_none() {
                c.stop_reason = Some(StopReason::Token(token));
            }
        }
    }

    /// Whether choice `index` has finished (by the engine or by a stop sequence).
    pub fn finished(&self, index: usize) -> bool {
        self.choices
            .get(index)
            .is_some_and(|c| c.finish_reason.is_some())
    }

    /// Every choice has finished (by the engine or by a stop sequence).
    pub fn all_done(&self) -> bool {
        self.choices.iter().all(|c| c.finish_reason.is_some())
    }

    /// A streamed chunk's `usage`: absent, `null` (`include_usage`), or the counts so far
    /// (`continuous_usage_stats`).
    fn chunk_usage(&self) -> Option<Option<Usage>> {
        if self.continuous_usage {
            Some(Some(self.usage))
        } else {
            self.include_usage.then_some(None)
        }
    }

    /// The final chunk OpenAI sends when `stream_options.include_usage` is set: no choices.
    pub fn usage_chunk(&self) -> Chunk {
        let usage = Some(Some(self.usage));
        match self.kind {
            Kind::Chat => Chunk::Chat(self.envelope("chat.completion.chunk", vec![], usage)),
            Kind::Completion => Chunk::Text(self.envelope("text_completion", vec![], usage)),
        }
    }

    /// The text of choice `index` so far, as emitted (a stop sequence and what follows it
    /// removed, text held back not included); empty for a choice that does not exist.
    pub fn text(&self, index: usize) -> &str {
        self.choices
            .get(index)
            .map(|c| c.text.as_str())
            .unwrap_or("")
    }

    /// Completions' `echo`: every choice's text starts with the prompt. Returns the chunks
    /// that stream it, one per choice, as OpenAI streams an echoed prompt (first, before any
    /// generated text). Call before the first [`Aggregator::delta`]; the prompt is never
    /// matched against stop sequences.
    pub fn echo(&mut self, prompt: &str) -> Vec<Chunk> {
        (0..self.choices.len())
            .map(|index| self.echo_scored(index, prompt, None))
            .collect()
    }

    /// `echo` for choice `index` alone, with its prompt's log probabilities when scored
    /// (`echo` with `logprobs`): the chunk that streams it. Call before the choice's first
    /// [`Aggregator::delta`].
    pub fn echo_scored(
        &mut self,
        index: usize,
        prompt: &str,
        scored: Option<TextLogprobs>,
    ) -> Chunk {
        if index >= self.choices.len() {
            self.choices.resize(index + 1, Choice::default());
        }
        let c = &mut self.choices[index];
        c.text.insert_str(0, prompt);
        c.prompt_chars = prompt.chars().count();
        c.echoed.clone_from(&scored);
        let choice = TextChoice {
            index,
            text: prompt.to_string(),
            logprobs: scored,
            finish_reason: None,
            stop_reason: None,
            prompt_logprobs: None,
        };
        let usage = self.chunk_usage();
        Chunk::Text(self.envelope("text_completion", vec![choice], usage))
    }

    /// Record choice `index`'s prompt scores (vLLM's `prompt_logprobs`), for the final
    /// object: in the choice of a text completion, at the top of a chat completion.
    pub fn prompt_logprobs(&mut self, index: usize, scores: PromptLogprobs) {
        if index >= self.choices.len() {
            self.choices.resize(index + 1, Choice::default());
        }
        self.choices[index].prompt_logprobs = Some(scores);
    }

    /// The non-streamed response object.
    pub fn finish(&self) -> Completion {
        let reason = |c: &Choice| Some(c.finish_reason.clone().unwrap_or_else(|| "stop".into()));
        let usage = Some(Some(self.usage));
        let choices = self.choices.iter().enumerate();
        match self.kind {
            Kind::Chat => {
                let choices = choices
                    .map(|(index, c)| ChatChoice {
                        index,
                        message: AssistantMessage {
                            role: "assistant".into(),
                            content: message_content(
                                c.tool.content(&c.text, !c.calls.is_empty()).to_string(),
                                !c.calls.is_empty(),
                            ),
                            tool_calls: (!c.calls.is_empty()).then(|| c.calls.clone()),
                        },
                        logprobs: self.logprobs.then(|| ChatLogprobs {
                            content: c.logprobs.clone(),
                        }),
                        finish_reason: reason(c),
                        stop_reason: c.stop_reason.clone(),
                    })
                    .collect();
                let mut chat = self.envelope("chat.completion", choices, usage);
                chat.prompt_logprobs = self.choices.first().and_then(|c| c.prompt_logprobs.clone());
                Completion::Chat(chat)
            }
            Kind::Completion => {
                let choices = choices
                    .map(|(index, c)| TextChoice {
                        index,
                        text: c.text.clone(),
                        logprobs: self.logprobs.then(|| {
                            let mut lists = c.echoed.clone().unwrap_or_default();
                            lists.extend(&c.logprobs, c.prompt_chars);
                            lists
                        }),
                        finish_reason: reason(c),
                        stop_reason: c.stop_reason.clone(),
                        prompt_logprobs: c.prompt_logprobs.clone(),
                    })
                    .collect();
                Completion::Text(self.envelope("text_completion", choices, usage))
            }
        }
    }

    fn envelope<C>(
        &self,
        object: &str,
        choices: Vec<C>,
        usage: Option<Option<Usage>>,
    ) -> Envelope<C> {
        Envelope {
            id: self.id.clone(),
            object: object.to_string(),
            created: self.created,
            model: self.model.clone(),
            system_fingerprint: None,
            choices,
            usage,
            prompt_logprobs: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// The wire form of a chunk or response.
    fn j<T: serde::Serialize>(t: T) -> Value {
        serde_json::to_value(t).unwrap()
    }

    #[test]
    fn chat_chunks_add_up_to_the_final_object() {
        let mut a = Aggregator::new(Kind::Chat, "m", 1, vec![], false);
        let c1 = j(a.delta(0, "Hel", None, vec![]).unwrap());
        let c2 = j(a.delta(0, "lo", Some("length"), vec![]).unwrap());
        assert_eq!(c1["choices"][0]["delta"]["role"], "assistant");
        assert!(
            c2["choices"][0]["delta"].get("role").is_none(),
            "role only in the first chunk"
        );
        assert_eq!(c2["choices"][0]["finish_reason"], "length");
        a.usage = Usage::new(3, 2);
        let f = j(a.finish());
        assert_eq!(f["object"], "chat.completion");
        assert_eq!(f["choices"][0]["message"]["content"], "Hello");
        assert_eq!(f["usage"]["total_tokens"], 5);
        assert_eq!(f["id"], c1["id"], "one id for the whole response");
        let u = j(a.usage_chunk());
        assert_eq!(u["choices"], json!([]));
        assert_eq!(u["usage"]["prompt_tokens"], 3);
    }

    #[test]
    fn completion_shape_and_reasons() {
        let mut a = Aggregator::new(Kind::Completion, "m", 2, vec![":".into()], false);
        // `echo` streams the prompt first, one chunk per choice, not matched against stops.
        let echoed: Vec<Value> = a.echo("p:").into_iter().map(j).collect();
        assert_eq!(echoed.len(), 2);
        assert_eq!(echoed[1]["choices"][0]["text"], "p:");
        assert_eq!(echoed[1]["choices"][0]["finish_reason"], Value::Null);
        let c = j(a.delta(1, "x", Some("canceled"), vec![]).unwrap());
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["choices"][0]["finish_reason"], "stop");
        let f = j(a.finish());
        assert_eq!(f["choices"][0]["text"], "p:");
        assert_eq!(f["choices"][1]["text"], "p:x");
    }

    #[test]
    fn stop_sequences_cut_text_and_hold_back_prefixes() {
        let stops = vec!["Blue".to_string(), "\n\n".to_string()];
        let mut a = Aggregator::new(Kind::Chat, "m", 1, stops, false);
        let emitted: Vec<String> = [" Red,", " Bl", "ack, B", "lue!"]
            .iter()
            .filter_map(|t| a.delta(0, t, None, vec![]))
            .map(|c| {
                j(c)["choices"][0]["delta"]["content"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        // "Bl" is held back until it turns out to be "Black", "B" until it becomes "Blue".
        assert_eq!(emitted, vec![" Red,", " ", "Black, ", ""]);
        assert!(a.all_done());
        let f = j(a.finish());
        assert_eq!(f["choices"][0]["message"]["content"], " Red, Black, ");
        assert_eq!(f["choices"][0]["finish_reason"], "stop");
        assert!(
            a.delta(0, "more", None, vec![]).is_none(),
            "nothing after a stop"
        );
    }

    #[test]
    fn the_stop_string_or_stop_token_that_ended_a_choice_is_its_stop_reason() {
        let mut a = Aggregator::new(Kind::Chat, "m", 3, vec!["END".into(), "x".into()], false);
        let streamed = j(a.delta(0, "ab END", None, vec![]).unwrap());
        assert_eq!(streamed["choices"][0]["stop_reason"], "END");
        a.stopped_by_token(1, 7);
        let by_token = j(a.delta(1, "c", Some("stop"), vec![]).unwrap());
        assert_eq!(by_token["choices"][0]["stop_reason"], 7);
        let eos = j(a.delta(2, "d", Some("stop"), vec![]).unwrap());
        assert!(eos["choices"][0].get("stop_reason").is_none(), "{eos}");
        let done = serde_json::to_value(a.finish()).unwrap();
        let reasons: Vec<&Value> = (0..3).map(|i| &done["choices"][i]["stop_reason"]).collect();
        assert_eq!(reasons, [&json!("END"), &json!(7), &Value::Null]);
    }

    #[test]
    fn held_back_text_is_released_at_the_end() {
        let mut p = String::new();
        assert_eq!(
            scan_stops(&mut p, "ab", &["bc".to_string()], false),
            ("a".to_string(), None)
        );
        assert_eq!(p, "b");
        let mut a = Aggregator::new(Kind::Completion, "m", 1, vec!["bc".into()], false);
        a.delta(0, "ab", None, vec![]);
        let last = j(a.delta(0, "", Some("length"), vec![]).unwrap());
        assert_eq!(last["choices"][0]["text"], "b");
        assert_eq!(a.text(0), "ab");
    }

    #[test]
    fn a_silent_end_still_finishes_the_choice_once() {
        let mut a = Aggregator::new(Kind::Chat, "m", 1, vec![], true);
        let first = j(a.delta(0, "\u{1F34F}", None, vec![]).unwrap());
        assert_eq!(first["usage"], Value::Null, "usage: null on every chunk");
        let last = j(a.end_silently(0, "length").unwrap());
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(last["choices"][0]["delta"]["content"], "");
        assert!(a.end_silently(0, "stop").is_none(), "finished once");
        assert_eq!(j(a.finish())["choices"][0]["finish_reason"], "length");
        // A choice with no chunk at all gets one, with the role, when it ends.
        let mut a = Aggregator::new(Kind::Chat, "m", 1, vec![], false);
        let only = j(a.end_silently(0, "length").unwrap());
        assert_eq!(only["choices"][0]["delta"]["role"], "assistant");
        assert!(only.get("usage").is_none());
    }

    fn lp(token: &str, logprob: f32) -> Vec<TokenLogprob> {
        vec![TokenLogprob {
            token: token.into(),
            logprob,
            bytes: Some(token.as_bytes().to_vec()),
            top_logprobs: vec![],
        }]
    }

    #[test]
    fn logprobs_follow_the_text_through_held_back_and_cut_stops() {
        // "Hello wor|ld": the stop "wor" is held back as "wo", then cuts inside " world".
        let mut a =
            Aggregator::new(Kind::Chat, "m", 1, vec!["wor".into()], false).with_logprobs(true);
        let chunks: Vec<Value> = [("Hello", -0.1), (" wo", -0.2), ("rld", -0.3)]
            .into_iter()
            .filter_map(|(t, p)| a.delta(0, t, None, lp(t, p)))
            .map(j)
            .collect();
        let tokens: Vec<String> = chunks
            .iter()
            .flat_map(|c| {
                c["choices"][0]["logprobs"]["content"]
                    .as_array()
                    .unwrap()
                    .clone()
            })
            .map(|e| e["token"].as_str().unwrap().to_string())
            .collect();
        let text: String = chunks
            .iter()
            .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
            .collect();
        assert_eq!(text, "Hello ");
        assert_eq!(tokens.concat(), text, "{chunks:?}");
        let done = j(a.finish());
        let content = done["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(content.len(), 2);
        assert_eq!(content[1]["token"], " ");
        // Completions: the legacy lists, offsets into the text.
        let mut t = Aggregator::new(Kind::Completion, "m", 1, vec![], false).with_logprobs(true);
        t.delta(0, "\u{e9}b", None, lp("\u{e9}b", -1.0));
        t.delta(0, "c", Some("stop"), lp("c", -2.0));
        let done = j(t.finish());
        assert_eq!(
            done["choices"][0]["logprobs"]["tokens"],
            json!(["\u{e9}b", "c"])
        );
        // Offsets in characters, as OpenAI's.
        assert_eq!(done["choices"][0]["logprobs"]["text_offset"], json!([0, 2]));
        // Not asked: null.
        let mut n = Aggregator::new(Kind::Chat, "m", 1, vec![], false);
        n.delta(0, "x", Some("stop"), vec![]);
        assert_eq!(j(n.finish())["choices"][0]["logprobs"], Value::Null);
    }

    #[test]
    fn entries_that_lag_the_text_still_end_where_their_text_ends() {
        // The text sends " " at once; the engine holds the entry " \u{F0}\u{9F}" back until
        // the emoji is whole, then sends " 🍏" with the emoji's text.
        let mut a = Aggregator::new(Kind::Chat, "m", 1, vec![], false).with_logprobs(true);
        a.delta(0, "a.", None, lp("a.", -0.1));
        a.delta(0, " ", None, vec![]);
        a.delta(0, "🍏", None, lp(" 🍏", -0.2));
        a.delta(0, "", Some("length"), vec![]);
        let done = j(a.finish());
        let tokens: Vec<&str> = done["choices"][0]["logprobs"]["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["token"].as_str().unwrap())
            .collect();
        assert_eq!(tokens, ["a.", " 🍏"]);
        assert_eq!(done["choices"][0]["message"]["content"], "a. 🍏");
    }
}
