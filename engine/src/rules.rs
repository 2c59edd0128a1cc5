//! Which tokens may be drawn and which end a choice, as vLLM defines them: the model's
//! end-of-sequence tokens (unless `ignore_eos`), `stop_token_ids`, and `min_tokens`, before
//! which none of them may be generated; `allowed_token_ids`, outside which nothing is drawn;
//! `bad_words`, whose last token is never drawn right after the rest of the word.
//! Both backends apply the same rules: llama.cpp's scheduler asks [`TokenRules::ends`]
//! after each token and its chooser masks with [`TokenRules::mask`]; mistral.rs, which stops on
//! its end-of-sequence tokens itself and takes `stop_token_ids` as its stop tokens, gets the
//! mask as a logits processor ([`TokenMask`]).

#[cfg(feature = "mistralrs")]
use mistralrs::{CustomLogitsProcessor, Tensor};
use protocol::openai::Sampling;
use std::sync::Arc;
#[cfg(feature = "mistralrs")]
use std::sync::Mutex;

/// One request's ending tokens, when they are allowed, and the tokens it may draw at all.
#[derive(Clone, Debug, Default)]
pub struct TokenRules {
    /// The model's end-of-sequence tokens.
    eos: Arc<[u32]>,
    stop_ids: Vec<u32>,
    ignore_eos: bool,
    min_tokens: usize,
    /// `allowed_token_ids`, sorted: only these may be drawn.
    allowed: Option<Vec<u32>>,
    /// `bad_words` as token sequences (see [`bad_word_ids`]).
    bad_words: Vec<Vec<u32>>,
}

impl TokenRules {
    /// The rules of a request sampled with `s` on a model whose end-of-sequence tokens are
    /// `eos`.
    pub fn new(s: &Sampling, eos: Arc<[u32]>) -> Self {
        TokenRules {
            eos,
            stop_ids: s.stop_token_ids.clone(),
            ignore_eos: s.ignore_eos,
            min_tokens: s.min_tokens as usize,
            allowed: s.allowed_token_ids.as_ref().map(|ids| {
                let mut ids = ids.clone();
                ids.sort_unstable();
                ids
            }),
            bad_words: Vec::new(),
        }
    }

    /// The same rules with `bad_words` as token sequences (see [`bad_word_ids`]).
    pub fn with_bad_words(mut self, bad_words: Vec<Vec<u32>>) -> Self {
        self.bad_words = bad_words;
        self
    }

    /// Whether generating `id` ends the choice (`stop`).
    pub fn ends(&self, id: u32) -> bool {
        self.stop_ids.contains(&id) || (!self.ignore_eos && self.eos.contains(&id))
    }

    /// Set to -inf, after the `generated` tokens, the logits of the tokens that may not be
    /// drawn: first those outside `allowed_token_ids`; then those that would complete a bad
    /// word (vLLM's rule: the last token of a word whose other tokens end `generated`, the
    /// prompt not counted); then every ending token before `min_tokens`,
    /// and with `always_eos` (a backend that stops on end-of-sequence tokens by itself, so
    /// `ignore_eos` can only keep them from being drawn) the end-of-sequence tokens. A step
    /// that would leave nothing to draw (a complete structured-output constraint allows only
    /// the end) skips that part.
    pub fn mask(&self, generated: &[u32], always_eos: bool, logits: &mut [f32]) {
        if let Some(allowed) = &self.allowed {
            mask_outside(logits, allowed);
        }
        if !self.bad_words.is_empty() {
            mask_unless_empty(logits, self.completing_bad_words(generated, logits.len()));
        }
        let early = generated.len() < self.min_tokens;
        let eos_always = always_eos && self.ignore_eos;
        if !early && !eos_always {
            return;
        }
        let ending: Vec<usize> = self
            .eos
            .iter()
            .filter(|_| eos_always || (early && !self.ignore_eos))
            .chain(self.stop_ids.iter().filter(|_| early))
            .map(|&id| id as usize)
            .filter(|&id| id < logits.len())
            .collect();
        mask_unless_empty(logits, ending);
    }

    /// The last tokens of the bad words whose other tokens end `generated` (ids below `n`).
    fn completing_bad_words(&self, generated: &[u32], n: usize) -> Vec<usize> {
        self.bad_words
            .iter()
            .filter_map(|word| word.split_last())
            .filter(|(_, prefix)| generated.ends_with(prefix))
            .map(|(&last, _)| last as usize)
            .filter(|&id| id < n)
            .collect()
    }

    #[cfg(feature = "mistralrs")]
    /// Whether [`TokenRules::mask`] can change anything for a backend that stops on its
    /// end-of-sequence tokens by itself.
    fn masks_anything(&self) -> bool {
        self.min_tokens > 0
            || self.ignore_eos
            || self.allowed.is_some()
            || !self.bad_words.is_empty()
    }
}

/// vLLM's `bad_words` as token sequences: each word without its leading whitespace, as
/// `encode` tokenizes it (no special tokens), and again after a space when that spelling has
/// as many tokens and another first one (a word in the middle of text). `encode` may fail
/// (its error is returned); a word of no tokens is left out.
pub fn bad_word_ids<E>(
    words: &[String],
    mut encode: impl FnMut(&str) -> Result<Vec<u32>, E>,
) -> Result<Vec<Vec<u32>>, E> {
    let mut out = Vec::with_capacity(words.len() * 2);
    for word in words {
        let word = word.trim_start();
        let plain = encode(word)?;
        let spaced = encode(&format!(" {word}"))?;
        let differs = spaced.first() != plain.first() && spaced.len() == plain.len();
        if plain.is_empty() {
            continue;
        }
        out.push(plain);
        if differs {
            out.push(spaced);
        }
    }
    Ok(out)
}

/// Set every token outside `allowed` (sorted) to -inf, unless no allowed token is finite. One
/// pass, no allocation: this runs at every step over the whole vocabulary.
fn mask_outside(logits: &mut [f32], allowed: &[u32]) {
    let drawable = |id: &u32| logits.get(*id as usize).is_some_and(|l| l.is_finite());
    if !allowed.iter().any(drawable) {
        return;
    }
    let mut next = allowed.iter().map(|&id| id as usize).peekable();
    for (id, l) in logits.iter_mut().enumerate() {
        while next.next_if(|&a| a < id).is_some() {}
        if next.peek() != Some(&id) {
            *l = f32::NEG_INFINITY;
        }
    }
}

/// Set `ids` to -inf, unless that leaves no finite logit.
fn mask_unless_empty(logits: &mut [f32], mut ids: Vec<usize>) {
    ids.sort_unstable();
    ids.dedup();
    let finite = logits.iter().filter(|l| l.is_finite()).count();
    let finite_masked = ids.iter().filter(|&&id| logits[id].is_finite()).count();
    if finite > finite_masked {
        for id in ids {
            logits[id] = f32::NEG_INFINITY;
        }
    }
}

#[cfg(feature = "mistralrs")]
/// [`TokenRules::mask`] as a mistral.rs logits processor. It counts generated tokens from the
/// context it is called with: the first call's context is the prompt.
pub struct TokenMask {
    rules: TokenRules,
    prompt: Mutex<Option<usize>>,
}

#[cfg(feature = "mistralrs")]
impl TokenMask {
    /// The processor for `rules`, or `None` when they mask nothing.
    pub fn processor(rules: TokenRules) -> Option<Arc<dyn CustomLogitsProcessor>> {
        rules.masks_anything().then(|| {
            Arc::new(TokenMask {
                rules,
                prompt: Mutex::new(None),
            }) as Arc<dyn CustomLogitsProcessor>
        })
    }
}

#[cfg(feature = "mistralrs")]
impl CustomLogitsProcessor for TokenMask {
    fn apply(&self, logits: &Tensor, context: &[u32]) -> mistralrs::Result<Tensor> {
        let prompt = *self
            .prompt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(context.len());
        let mut v = logits
            .flatten_all()?
            .to_dtype(mistralrs::DType::F32)?
            .to_vec1::<f32>()?;
        let generated = context.get(prompt..).unwrap_or_default();
        self.rules.mask(generated, true, &mut v);
        Tensor::from_vec(v, logits.shape(), logits.device())?.to_dtype(logits.dtype())
    }
}

#[cfg(feature = "mistralrs")]
/// `stop_token_ids` on mistral.rs, the last logits processor: a step that chose one of them
/// chooses the model's first end-of-sequence token instead, with the same logit, so mistral.rs
/// ends the sequence as vLLM does for a stop token: `stop`, the token counted in usage, its
/// text left out. (mistral.rs's own stop ids refuse any token that is the prefix of another,
/// which most word tokens are.)
pub struct StopIdsAsEos {
    stop_ids: Vec<u32>,
    eos: u32,
}

#[cfg(feature = "mistralrs")]
impl StopIdsAsEos {
    /// The processor for `rules`, or `None` without `stop_token_ids` (or without an
    /// end-of-sequence token to stop with).
    pub fn processor(rules: &TokenRules) -> Option<Arc<dyn CustomLogitsProcessor>> {
        let eos = *rules.eos.first()?;
        (!rules.stop_ids.is_empty()).then(|| {
            Arc::new(StopIdsAsEos {
                stop_ids: rules.stop_ids.clone(),
                eos,
            }) as Arc<dyn CustomLogitsProcessor>
        })
    }

    /// Move the choice of `logits` (its greatest logit: mistral.rs then decodes greedily)
    /// from a stop id to the end-of-sequence token.
    fn redirect(&self, logits: &mut [f32]) {
        let chosen = crate::sampler::argmax(logits);
        if self.stop_ids.contains(&(chosen as u32)) && (self.eos as usize) < logits.len() {
            logits[self.eos as usize] = logits[chosen];
            logits[chosen] = f32::NEG_INFINITY;
        }
    }
}

#[cfg(feature = "mistralrs")]
impl CustomLogitsProcessor for StopIdsAsEos {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        let mut v = logits
            .flatten_all()?
            .to_dtype(mistralrs::DType::F32)?
            .to_vec1::<f32>()?;
        self.redirect(&mut v);
        Tensor::from_vec(v, logits.shape(), logits.device())?.to_dtype(logits.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(ignore_eos: bool, min_tokens: u32, stop_ids: &[u32]) -> TokenRules {
        let s = Sampling {
            ignore_eos,
            min_tokens,
            stop_token_ids: stop_ids.to_vec(),
            ..Sampling::default()
        };
        TokenRules::new(&s, Arc::from([0u32]))
    }

    #[test]
    fn ending_tokens_follow_ignore_eos_and_stop_token_ids() {
        assert!(rules(false, 0, &[]).ends(0));
        assert!(!rules(true, 0, &[]).ends(0), "ignore_eos");
        assert!(
            rules(true, 0, &[2]).ends(2),
            "a stop id ends even with ignore_eos"
        );
        assert!(!rules(false, 0, &[2]).ends(1));
    }

    #[test]
    fn min_tokens_masks_every_ending_token_until_reached() {
        let r = rules(false, 2, &[2]);
        let mut l = [1.0, 1.0, 1.0];
        r.mask(&[7], false, &mut l);
        assert_eq!(l, [f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY]);
        let mut l = [1.0, 1.0, 1.0];
        r.mask(&[7, 7], false, &mut l);
        assert_eq!(l, [1.0, 1.0, 1.0], "reached: nothing masked");
        // With ignore_eos, end-of-sequence tokens are not ending tokens on llama.cpp, but a
        // backend that stops on them by itself must never draw them.
        let r = rules(true, 0, &[]);
        let mut l = [1.0, 1.0];
        r.mask(&[7; 5], false, &mut l);
        assert_eq!(l, [1.0, 1.0]);
        r.mask(&[7; 5], true, &mut l);
        assert_eq!(l, [f32::NEG_INFINITY, 1.0]);
    }

    #[test]
    #[cfg(feature = "mistralrs")]
    fn a_chosen_stop_id_becomes_the_end_of_sequence() {
        let r = rules(false, 0, &[2]);
        let s = StopIdsAsEos {
            stop_ids: r.stop_ids.clone(),
            eos: 0,
        };
        let mut l = [0.5, 1.0, 3.0];
        s.redirect(&mut l);
        assert_eq!(l, [3.0, 1.0, f32::NEG_INFINITY]);
        let mut l = [0.5, 3.0, 1.0];
        s.redirect(&mut l);
        assert_eq!(l, [0.5, 3.0, 1.0], "another token: unchanged");
        assert!(StopIdsAsEos::processor(&rules(false, 0, &[])).is_none());
    }

    #[test]
    fn only_allowed_tokens_are_drawn() {
        let s = Sampling {
            allowed_token_ids: Some(vec![2, 1]),
            ..Sampling::default()
        };
        let r = TokenRules::new(&s, Arc::from([0u32]));
        let mut l = [1.0, 1.0, 1.0, 1.0];
        r.mask(&[], false, &mut l);
        let ninf = f32::NEG_INFINITY;
        assert_eq!(l, [ninf, 1.0, 1.0, ninf]);
    }

    #[test]
    fn the_end_stays_open_when_nothing_else_is_allowed() {
        let r = rules(false, 10, &[]);
        let mut l = [1.0, f32::NEG_INFINITY];
        r.mask(&[], false, &mut l);
        assert_eq!(l, [1.0, f32::NEG_INFINITY]);
    }

    #[test]
    fn a_bad_word_is_never_completed() {
        // "ab" is tokens [1, 2]; "c" is [3].
        let r = TokenRules::new(&Sampling::default(), Arc::from([0u32]))
            .with_bad_words(vec![vec![1, 2], vec![3]]);
        let ninf = f32::NEG_INFINITY;
        let mut l = [1.0; 4];
        r.mask(&[], false, &mut l);
        assert_eq!(l, [1.0, 1.0, 1.0, ninf], "one-token words: always");
        let mut l = [1.0; 4];
        r.mask(&[2, 1], false, &mut l);
        assert_eq!(l, [1.0, 1.0, ninf, ninf], "after its first token");
        let mut l = [1.0; 4];
        r.mask(&[1, 2], false, &mut l);
        assert_eq!(l, [1.0, 1.0, 1.0, ninf]);
    }

    #[test]
    fn bad_words_are_tokenized_at_the_start_and_after_a_space_as_vllm_does() {
        let encode = |t: &str| -> Result<Vec<u32>, ()> {
            Ok(match t {
                "hello" => vec![10],
                " hello" => vec![11],
                "ab" => vec![1, 2],
                " ab" => vec![5, 1, 2],
                _ => vec![],
            })
        };
        let words = ["  hello".to_string(), "ab".to_string(), "\t".to_string()];
        let ids = bad_word_ids(&words, encode).unwrap();
        assert_eq!(ids, [vec![10], vec![11], vec![1, 2]]);
    }
}
