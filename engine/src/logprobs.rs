//! Log probabilities computed where mistral.rs samples. mistral.rs 0.8.1 reports its own
//! (`return_logprobs`), but in base 10, after top-k/top-p truncation (every alternative of a
//! greedy step is -inf), and its greedy path takes the log of raw logits (`sampler.rs`), so
//! sluice computes OpenAI's: the natural-log softmax of the logits a logits processor sees
//! (after penalties and `logit_bias`, before temperature and top-k/top-p, as vLLM's default
//! raw log probabilities).
//!
//! Which token was sampled at a position is read from the next step's context (a logits
//! processor sees the sequence so far), never by re-encoding text: the last position of a
//! sequence, which has no next step, is resolved against the text the engine sent.
//! [`ChoiceLogprobs`] turns positions into entries whose token strings concatenate to the
//! text mistral.rs streams: tokens are decoded with the same token trie mistral.rs decodes
//! with, pieces of one character are one entry, and the first entry loses its leading
//! whitespace as mistral.rs's first delta does (`Sequence::peek_delta`).

use mistralrs::{CustomLogitsProcessor, Tensor};
use protocol::openai::logprobs::{TokenLogprob, TopLogprob};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// Every token's bytes, as mistral.rs's token trie decodes them: `text` without special
/// tokens (what a sequence's text is made of), `shown` with them (how an alternative is
/// named, e.g. `<|im_end|>`). Indexed by token id.
pub struct Vocab {
    text: Vec<Vec<u8>>,
    shown: Vec<Vec<u8>>,
}

impl Vocab {
    /// The vocabulary of `n` tokens decoded by `decode(id, include_special)`.
    pub fn new(n: usize, decode: impl Fn(u32, bool) -> Vec<u8>) -> Self {
        let ids = 0..n as u32;
        Vocab {
            text: ids.clone().map(|id| decode(id, false)).collect(),
            shown: ids.map(|id| decode(id, true)).collect(),
        }
    }

    /// Tokens in the vocabulary.
    pub(crate) fn len(&self) -> usize {
        self.text.len()
    }

    pub(crate) fn text(&self, id: u32) -> &[u8] {
        self.text.get(id as usize).map_or(&[], Vec::as_slice)
    }

    fn alternative(&self, &(id, logprob): &(u32, f32)) -> TopLogprob {
        let bytes = self.shown.get(id as usize).cloned().unwrap_or_default();
        TopLogprob {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            logprob,
            bytes: Some(bytes),
        }
    }
}

/// One sampled position: the token chosen, its natural-log probability, and the `top_n` most
/// likely `(token id, log probability)`, most likely first.
#[derive(Clone, Debug, PartialEq)]
pub struct Position {
    /// The sampled token's id.
    pub id: u32,
    /// Natural log of its probability.
    pub logprob: f32,
    /// The most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

#[derive(Default)]
struct Recorded {
    /// Positions whose sampled token is known, oldest first.
    known: VecDeque<Position>,
    /// The latest position's distribution (natural-log softmax); its token is known at the
    /// next step, or from the text once the sequence ends.
    latest: Option<Vec<f32>>,
}

/// Records each sampled position of one sequence (a run with one choice).
#[derive(Clone)]
pub struct LogprobRecorder {
    state: Arc<Mutex<Recorded>>,
    top_n: usize,
}

impl LogprobRecorder {
    /// A recorder keeping `top_n` alternatives per position.
    pub fn new(top_n: usize) -> Self {
        LogprobRecorder {
            state: Arc::default(),
            top_n,
        }
    }

    /// The processor to hand to mistral.rs with the request.
    pub fn processor(&self) -> Arc<dyn CustomLogitsProcessor> {
        Arc::new(self.clone())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The positions whose token is known and not taken yet, in order.
    fn take_known(&self) -> Vec<Position> {
        self.lock().known.drain(..).collect()
    }

    /// The latest position with its token chosen by `pick` from the distribution, once the
    /// sequence has ended (no step will name it); `None` when nothing is pending or `pick`
    /// finds no token.
    fn take_latest(&self, pick: impl Fn(&[f32]) -> Option<u32>) -> Option<Position> {
        let lp = self.lock().latest.take()?;
        pick(&lp).map(|id| position(&lp, id, self.top_n))
    }
}

impl CustomLogitsProcessor for LogprobRecorder {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let values = logits
            .flatten_all()?
            .to_dtype(mistralrs::DType::F32)?
            .to_vec1::<f32>()?;
        // A constraint's resample of the same step (its mask puts some logits at -inf; a
        // model's own are finite): the first call already recorded it. Read from the copy
        // made anyway, not with a second pass over the tensor (`counter::is_resample`).
        if !values.contains(&f32::NEG_INFINITY) {
            let mut s = self.lock();
            // The context ends with the token sampled at the previous position.
            if let (Some(lp), Some(&id)) = (s.latest.take(), context.last()) {
                s.known.push_back(position(&lp, id, self.top_n));
            }
            s.latest = Some(log_softmax(values));
        }
        Ok(logits.clone())
    }
}

pub(crate) fn position(lp: &[f32], id: u32, top_n: usize) -> Position {
    Position {
        id,
        logprob: lp.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY),
        top: top_n_of(lp, top_n),
    }
}

/// Natural-log softmax, computed stably (max subtracted first).
pub(crate) fn log_softmax(mut v: Vec<f32>) -> Vec<f32> {
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = v.iter().map(|x| (x - max).exp()).sum();
    let log_z = max + sum.ln();
    v.iter_mut().for_each(|x| *x -= log_z);
    v
}

/// The `n` largest entries as `(index, value)`, largest first.
fn top_n_of(v: &[f32], n: usize) -> Vec<(u32, f32)> {
    let n = n.min(v.len());
    if n == 0 {
        return Vec::new();
    }
    let mut all: Vec<(u32, f32)> = v.iter().enumerate().map(|(i, x)| (i as u32, *x)).collect();
    let by_value = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1);
    all.select_nth_unstable_by(n - 1, by_value);
    all.truncate(n);
    all.sort_by(by_value);
    all
}

/// Bytes of tokens that do not make a whole character yet, with their summed log probability.
struct Partial {
    bytes: Vec<u8>,
    logprob: f32,
}

/// Turns sampled positions into OpenAI entries: a character split over several tokens is one
/// entry (their log probabilities summed), special tokens (no text) have none, and, when
/// `strip_first`, the first entry loses its leading whitespace as mistral.rs's first delta does.
pub struct Entries {
    vocab: Arc<Vocab>,
    strip_first: bool,
    /// Tokens that do not make a whole character yet.
    partial: Option<Partial>,
    /// Bytes of text the entries made so far cover.
    covered: usize,
    /// Whether an entry was made.
    started: bool,
}

impl Entries {
    /// Entries decoded with `vocab`.
    pub fn new(vocab: Arc<Vocab>, strip_first: bool) -> Self {
        Entries {
            vocab,
            strip_first,
            partial: None,
            covered: 0,
            started: false,
        }
    }

    /// Add one position; returns its entry once its bytes complete a character.
    pub fn push(&mut self, p: Position) -> Option<TokenLogprob> {
        let bytes = self.vocab.text(p.id);
        // A special token (end of sequence) has no text.
        if bytes.is_empty() {
            return None;
        }
        let (mut acc, logprob) = match self.partial.take() {
            Some(Partial { bytes, logprob }) => (bytes, logprob + p.logprob),
            None => (Vec::new(), p.logprob),
        };
        acc.extend_from_slice(bytes);
        if std::str::from_utf8(&acc).is_err() && acc.len() < 8 {
            self.partial = Some(Partial {
                bytes: acc,
                logprob,
            });
            return None;
        }
        let token = shown(&acc, self.strip_first && !self.started);
        self.started = true;
        self.covered += token.len();
        Some(TokenLogprob {
            bytes: Some(token.as_bytes().to_vec()),
            token,
            logprob,
            top_logprobs: p.top.iter().map(|t| self.vocab.alternative(t)).collect(),
        })
    }
}

/// One choice's log probabilities as OpenAI entries, aligned with the text mistral.rs sends
/// for it: feed each piece of text with [`ChoiceLogprobs::entries`].
pub struct ChoiceLogprobs {
    recorder: LogprobRecorder,
    entries: Entries,
    /// The text received so far.
    text: String,
}

impl ChoiceLogprobs {
    /// Entries for the choice recorded by `recorder`, decoded with `vocab`.
    pub fn new(recorder: LogprobRecorder, vocab: Arc<Vocab>) -> Self {
        ChoiceLogprobs {
            recorder,
            entries: Entries::new(vocab, true),
            text: String::new(),
        }
    }

    /// Record `text` (the next piece the engine sent) and return the entries of every token
    /// known so far. When `last`, the choice has ended and its latest token is resolved from
    /// the text left uncovered. A piece's own last token is known only once a later step ran,
    /// so a caller holds a piece until the next one arrives or the choice ends; entries are
    /// released against the text by [`crate::shape::Aggregator`].
    pub fn entries(&mut self, text: &str, last: bool) -> Vec<TokenLogprob> {
        self.text.push_str(text);
        let mut out: Vec<TokenLogprob> = self
            .recorder
            .take_known()
            .into_iter()
            .filter_map(|p| self.entries.push(p))
            .collect();
        if last {
            let e = &self.entries;
            let left = self.text[e.covered.min(self.text.len())..].to_string();
            let partial = e.partial.as_ref().map_or(&[][..], |p| p.bytes.as_slice());
            let first = e.strip_first && !e.started;
            let vocab = e.vocab.clone();
            let pick = |lp: &[f32]| {
                (0..lp.len() as u32)
                    .filter(|&id| !vocab.text(id).is_empty())
                    .filter(|&id| shown(&[partial, vocab.text(id)].concat(), first) == left)
                    .max_by(|a, b| lp[*a as usize].total_cmp(&lp[*b as usize]))
            };
            if !left.is_empty() {
                out.extend(
                    self.recorder
                        .take_latest(pick)
                        .and_then(|p| self.entries.push(p)),
                );
            }
        }
        out
    }
}

/// A token's text as the engine shows it: lossy UTF-8, the first delta without leading
/// whitespace.
fn shown(bytes: &[u8], first: bool) -> String {
    let s = String::from_utf8_lossy(bytes);
    if first {
        s.trim_start().to_string()
    } else {
        s.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vocab() -> Arc<Vocab> {
        // 0: " Hi", 1: "!", 2: first byte of "é", 3: its second byte, 4: an end token.
        let tokens: [&[u8]; 5] = [b" Hi", b"!", &[0xc3], &[0xa9], b""];
        Arc::new(Vocab::new(5, |id, special| {
            if id == 4 && special {
                b"<end>".to_vec()
            } else {
                tokens[id as usize].to_vec()
            }
        }))
    }

    fn step(r: &LogprobRecorder, logits: &[f32], context: &[u32]) {
        let t = Tensor::new(logits, &mistralrs::Device::Cpu).unwrap();
        r.apply(&t, context).unwrap();
    }

    #[test]
    fn positions_are_natural_log_probabilities_of_the_tokens_sampled() {
        let r = LogprobRecorder::new(2);
        step(&r, &[2.0, 1.0, 0.0, 0.0, 0.0], &[9]);
        step(&r, &[0.0, 5.0, 0.0, 0.0, 0.0], &[9, 0]);
        // The constraint's masked resample of the same step is not a position.
        step(&r, &[f32::NEG_INFINITY, 1.0, 0.0, 0.0, 0.0], &[9, 0]);
        let known = r.take_known();
        assert_eq!(known.len(), 1, "the latest token is not known yet");
        let z = (2f32.exp() + 1f32.exp() + 3.0).ln();
        assert!((known[0].logprob - (2.0 - z)).abs() < 1e-5);
        assert_eq!(known[0].id, 0);
        assert_eq!(known[0].top.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1]);
        let latest = r.take_latest(|_| Some(1)).unwrap();
        assert!(latest.logprob > -0.03 && latest.top[0].0 == 1);
    }

    #[test]
    fn entries_concatenate_to_the_engines_text() {
        // Tokens " Hi", "é" (two byte tokens), "!", then the end token; the engine sends
        // "Hi" (first delta trimmed), nothing for the half character, "é", "!", "".
        let r = LogprobRecorder::new(1);
        let mut c = ChoiceLogprobs::new(r.clone(), vocab());
        let flat = [0.0f32; 5];
        let mut got = Vec::new();
        step(&r, &flat, &[7]);
        step(&r, &flat, &[7, 0]);
        got.extend(c.entries("Hi", false));
        step(&r, &flat, &[7, 0, 2]);
        step(&r, &flat, &[7, 0, 2, 3]);
        got.extend(c.entries("\u{e9}", false));
        step(&r, &flat, &[7, 0, 2, 3, 1]);
        got.extend(c.entries("!", false));
        got.extend(c.entries("", true));
        let tokens: Vec<&str> = got.iter().map(|e| e.token.as_str()).collect();
        assert_eq!(tokens, ["Hi", "\u{e9}", "!"]);
        let lp5 = -(5f32.ln());
        assert!(
            (got[1].logprob - 2.0 * lp5).abs() < 1e-5,
            "two tokens summed"
        );
        assert_eq!(got[2].top_logprobs.len(), 1);

        // A sequence cut by its length: the last token is read from the text left over.
        let r = LogprobRecorder::new(0);
        let mut c = ChoiceLogprobs::new(r.clone(), vocab());
        step(&r, &[0.0, 3.0, 0.0, 0.0, 0.0], &[7]);
        let last = c.entries("!", true);
        assert_eq!(last.len(), 1);
        assert_eq!(last[0].token, "!");
        assert!(last[0].logprob > -0.2);
    }
}
