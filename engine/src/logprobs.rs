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

use protocol::openai::logprobs::{PromptLogprob, TokenLogprob, TopLogprob};
use protocol::openai::prompt::Prompt;
use std::collections::BTreeMap;
use std::sync::Arc;

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

    /// A token's bytes with special tokens written out (`<|im_start|>`), for vLLM's
    /// `skip_special_tokens: false`.
    pub(crate) fn shown(&self, id: u32) -> &[u8] {
        self.shown.get(id as usize).map_or(&[], Vec::as_slice)
    }

    /// The text `echo` puts first: the prompt, or its tokens' text.
    pub(crate) fn echo_text(&self, prompt: &Prompt) -> String {
        match prompt {
            Prompt::Text(t) => t.clone(),
            Prompt::Tokens(ids) => {
                let bytes: Vec<u8> = ids.iter().flat_map(|&id| self.text(id)).copied().collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// A prompt token's entry, one per token (eval harnesses count prompt entries by token),
    /// special tokens written out as the prompt's text writes them, with `top` alternatives.
    pub(crate) fn prompt_entry(&self, p: &Position, top: usize) -> TokenLogprob {
        let bytes = self.shown(p.id).to_vec();
        TokenLogprob {
            token: String::from_utf8_lossy(&bytes).into_owned(),
            logprob: p.logprob,
            bytes: Some(bytes),
            top_logprobs: p
                .top
                .iter()
                .take(top)
                .map(|t| self.alternative(t))
                .collect(),
        }
    }

    /// A prompt token's entry of vLLM's `prompt_logprobs`: the token and the `top` most
    /// likely at its position, by id, with their ranks and texts.
    pub(crate) fn prompt_logprobs_entry(
        &self,
        p: &Position,
        top: usize,
    ) -> BTreeMap<String, PromptLogprob> {
        let entry = |id: u32, logprob, rank| {
            let text = String::from_utf8_lossy(self.shown(id)).into_owned();
            let e = PromptLogprob {
                logprob,
                rank,
                decoded_token: text,
            };
            (id.to_string(), e)
        };
        let alternatives = p.top.iter().take(top).enumerate();
        alternatives
            .map(|(i, &(id, logprob))| entry(id, logprob, i + 1))
            // Scored prompt positions are always ranked (`ranked_position`).
            .chain([entry(p.id, p.logprob, p.rank.unwrap_or(0))])
            .collect()
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
    /// Its rank among all tokens at the position, 1 + how many were more likely: computed
    /// for scored prompt tokens only (vLLM's `prompt_logprobs`), not on the decode path.
    pub rank: Option<usize>,
    /// The most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

pub(crate) fn position(lp: &[f32], id: u32, top_n: usize) -> Position {
    Position {
        id,
        logprob: lp.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY),
        rank: None,
        top: top_n_of(lp, top_n),
    }
}

/// A scored prompt token's [`position`], with its rank.
pub(crate) fn ranked_position(lp: &[f32], id: u32, top_n: usize) -> Position {
    let p = position(lp, id, top_n);
    let rank = 1 + lp.iter().filter(|&&l| l > p.logprob).count();
    Position {
        rank: Some(rank),
        ..p
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
        // A character split over tokens is one entry: wait for its last byte.
        let whole = complete_len(&acc);
        if whole < acc.len() && acc.len() < 8 {
            self.partial = Some(Partial {
                bytes: acc,
                logprob,
            });
            return None;
        }
        // Past 8 bytes, what is whole is this entry and the incomplete character waits for
        // the next one (the text cuts at the same place, so lossy replacements fall alike).
        let tail = acc.split_off(whole);
        if !tail.is_empty() {
            self.partial = Some(Partial {
                bytes: tail,
                logprob: 0.0,
            });
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

/// How many leading bytes of `bytes` make whole text: all of them but an incomplete character
/// at the end (which waits for its next byte). Invalid bytes before it count (they are shown
/// replaced, as lossy text). Text and log-probability entries both cut here, so their lossy
/// replacements fall alike and the entries' tokens always concatenate to the text.
pub(crate) fn complete_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    loop {
        match std::str::from_utf8(&bytes[at..]) {
            Ok(_) => return bytes.len(),
            Err(e) => match e.error_len() {
                Some(bad) => at += e.valid_up_to() + bad,
                None => return at + e.valid_up_to(),
            },
        }
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

    #[test]
    fn whole_text_stops_before_an_incomplete_character_only() {
        assert_eq!(complete_len("ab".as_bytes()), 2);
        assert_eq!(
            complete_len(b"ab\xE2\x82"),
            2,
            "an incomplete euro sign waits"
        );
        assert_eq!(
            complete_len(b"\xFFa"),
            2,
            "an invalid byte is text (replaced)"
        );
        assert_eq!(complete_len(b"\xFF\xE2"), 1, "invalid, then incomplete");
        // Cut there, lossy text of the pieces is the lossy text of the whole.
        let bytes = b"\xFF\xE2\x82\xAC";
        let cut = complete_len(&bytes[..2]);
        let pieces =
            [&bytes[..cut], &bytes[cut..]].map(|b| String::from_utf8_lossy(b).into_owned());
        assert_eq!(pieces.concat(), String::from_utf8_lossy(bytes));
    }
}

#[cfg(feature = "mistralrs")]
mod recorder;
#[cfg(feature = "mistralrs")]
pub use recorder::{ChoiceLogprobs, LogprobRecorder};
