//! mistral.rs's side of log probabilities: a logits processor records each position's
//! distribution ([`LogprobRecorder`]), and [`ChoiceLogprobs`] aligns the positions with the
//! text mistral.rs streams.

use super::{log_softmax, position, shown, Entries, Position, Vocab};
use mistralrs::{CustomLogitsProcessor, Tensor};
use protocol::openai::logprobs::TokenLogprob;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

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
