//! Random sampling with each request's own generator.
//!
//! mistral.rs 0.8.1 samples with one generator per engine, seeded with a constant
//! (`engine/mod.rs`: `SEED = 0`), so every fresh worker gave the same first answer, and the
//! same second one, to the same prompt at `temperature: 1`; and no request could ask for its
//! own `seed`. sluice samples here instead, in the last logits processor: temperature, then
//! `top_k`, `top_p` and `min_p` (mistral.rs's order), then one draw from a generator seeded
//! with the request's `seed` (plus the choice's index, so `n` choices differ) or from the
//! operating system's entropy. It returns the logits with every token but the drawn one at
//! -inf, and the request runs mistral.rs's greedy path, which then takes that token. The
//! processors before it (token counting, `logit_bias`, log probabilities) see the logits as
//! they were; mistral.rs applies the penalties before any processor; a constrained step that
//! mistral.rs samples again under its mask runs this again, over the allowed tokens only.

#[cfg(feature = "mistralrs")]
use mistralrs::{CustomLogitsProcessor, DType, Tensor};
use protocol::openai::Sampling;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
#[cfg(feature = "mistralrs")]
use std::sync::Arc;
use std::sync::Mutex;

/// The sampling of one engine request (see the module's text).
pub struct SeededSampler {
    /// The generator, and the candidates' buffer kept from step to step (a vocabulary's worth
    /// of pairs is too much to allocate at every token).
    state: Mutex<(StdRng, Vec<(u32, f32)>)>,
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
    min_p: Option<f32>,
    /// The run ranks its sequences (`best_of`): the token left keeps its probability (read
    /// by the mistral.rs processor only; llama.cpp ranks from its own log probabilities).
    #[cfg_attr(not(feature = "mistralrs"), allow(dead_code))]
    ranked: bool,
}

impl SeededSampler {
    /// The sampler of choice `choice` of a request sampled with `s`; `None` for greedy
    /// decoding, which mistral.rs does itself. `ranked`: the run is a `best_of` run, whose
    /// sequences mistral.rs ranks by their tokens' probabilities.
    #[cfg(feature = "mistralrs")]
    pub fn for_choice(
        s: &Sampling,
        choice: usize,
        ranked: bool,
    ) -> Option<Arc<dyn CustomLogitsProcessor>> {
        Self::new(s, choice, ranked).map(|s| Arc::new(s) as Arc<dyn CustomLogitsProcessor>)
    }

    pub(crate) fn new(s: &Sampling, choice: usize, ranked: bool) -> Option<Self> {
        if s.is_greedy() {
            return None;
        }
        let rng = match s.seed {
            Some(seed) => StdRng::seed_from_u64((seed as u64).wrapping_add(choice as u64)),
            None => StdRng::from_os_rng(),
        };
        Some(SeededSampler {
            state: Mutex::new((rng, Vec::new())),
            ranked,
            // OpenAI's default temperature is 1.
            temperature: s.temperature.unwrap_or(1.0) as f32,
            top_k: s.top_k.map(|k| k as usize),
            top_p: s.top_p.map(|p| p as f32).filter(|p| *p < 1.0),
            min_p: s.min_p.map(|p| p as f32).filter(|p| *p > 0.0),
        })
    }

    /// Draw a token from `logits`.
    pub(crate) fn pick(&self, logits: &[f32]) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (rng, kept) = &mut *state;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // Unnormalised probabilities after the temperature; -inf logits weigh nothing.
        let scale = 1.0 / self.temperature;
        kept.clear();
        kept.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, &l)| (i as u32, ((l - max) * scale).exp()))
                .filter(|&(_, w)| w > 0.0),
        );
        if kept.is_empty() {
            return argmax(logits);
        }
        if let Some(k) = self.top_k {
            keep_heaviest(kept, k);
        }
        if let Some(p) = self.top_p {
            nucleus(kept, p);
        }
        if let Some(p) = self.min_p {
            let heaviest = kept.iter().map(|&(_, w)| w).fold(0.0, f32::max);
            kept.retain(|&(_, w)| w >= heaviest * p);
        }
        let total: f64 = kept.iter().map(|&(_, w)| f64::from(w)).sum();
        let mut u = rng.random::<f64>() * total;
        for &(i, w) in kept.iter() {
            u -= f64::from(w);
            if u < 0.0 {
                return i as usize;
            }
        }
        kept.last()
            .map_or_else(|| argmax(logits), |&(i, _)| i as usize)
    }
}

#[cfg(feature = "mistralrs")]
impl CustomLogitsProcessor for SeededSampler {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        let values: Vec<f32> = logits.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let chosen = self.pick(&values);
        let mut only = vec![f32::NEG_INFINITY; values.len()];
        // In a `best_of` run the token left holds its probability under the model:
        // mistral.rs's greedy path takes the log of the value it picks, and ranks the
        // sequences by their sums. (Elsewhere nothing reads it.)
        only[chosen] = if self.ranked {
            let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let total: f32 = values.iter().map(|l| (l - max).exp()).sum();
            (values[chosen] - max).exp() / total
        } else {
            0.0
        };
        Tensor::from_vec(only, logits.dims(), logits.device())?.to_dtype(logits.dtype())
    }
}

/// The index of the largest value (the first of equals): the greedy choice.
pub(crate) fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
            if v > best.1 {
                (i, v)
            } else {
                best
            }
        })
        .0
}

/// Keep the `k` heaviest of `kept` (in no order), in time linear in its length.
fn keep_heaviest(kept: &mut Vec<(u32, f32)>, k: usize) {
    if k < kept.len() {
        kept.select_nth_unstable_by(k, |a, b| b.1.total_cmp(&a.1));
        kept.truncate(k);
    }
}

/// Keep the smallest set of the heaviest whose weights reach `p` of the total, heaviest
/// first. Sorts a growing head of candidates, not the whole vocabulary: a nucleus is usually
/// a few tokens.
fn nucleus(kept: &mut Vec<(u32, f32)>, p: f32) {
    let total: f32 = kept.iter().map(|&(_, w)| w).sum();
    let target = total * p;
    let mut head = 64.min(kept.len());
    loop {
        if head < kept.len() {
            kept.select_nth_unstable_by(head, |a, b| b.1.total_cmp(&a.1));
        }
        kept[..head].sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        let mut sum = 0.0;
        if let Some(n) = kept[..head].iter().position(|&(_, w)| {
            sum += w;
            sum >= target
        }) {
            kept.truncate(n + 1);
            return;
        }
        if head == kept.len() {
            return;
        }
        head = (head * 4).min(kept.len());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sampler(json: serde_json::Value) -> SeededSampler {
        let mut body = serde_json::json!({"model": "m", "prompt": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(json.as_object().unwrap().clone());
        let req = protocol::openai::CompletionRequest::parse(body).unwrap();
        SeededSampler::new(&req.sampling, 0, true).unwrap()
    }

    /// 1,000 logits, falling gently: many tokens are likely enough to be drawn.
    fn flat() -> Vec<f32> {
        (0..1000).map(|i| -(i as f32) / 200.0).collect()
    }

    #[test]
    fn draws_differ_without_a_seed_and_repeat_with_one() {
        let draws = |s: &SeededSampler| (0..20).map(|_| s.pick(&flat())).collect::<Vec<_>>();
        let (a, b) = (
            sampler(serde_json::json!({})),
            sampler(serde_json::json!({})),
        );
        assert_ne!(draws(&a), draws(&b), "two unseeded generators differ");
        let seeded = |seed| sampler(serde_json::json!({"seed": seed, "temperature": 0.8}));
        assert_eq!(draws(&seeded(7)), draws(&seeded(7)));
        assert_ne!(draws(&seeded(7)), draws(&seeded(8)));
        let greedy: Sampling = Sampling {
            temperature: Some(0.0),
            ..Sampling::default()
        };
        assert!(SeededSampler::new(&greedy, 0, false).is_none());
    }

    #[test]
    fn truncations_keep_only_the_likeliest() {
        let logits = flat();
        let s = sampler(serde_json::json!({"top_k": 3}));
        assert!((0..200).all(|_| s.pick(&logits) < 3));
        // A peaked distribution: two tokens hold nearly all the mass.
        let mut peaked = vec![-30.0f32; 50_000];
        (peaked[10], peaked[20]) = (5.0, 4.0);
        let s = sampler(serde_json::json!({"top_p": 0.9}));
        let seen: std::collections::BTreeSet<usize> = (0..200).map(|_| s.pick(&peaked)).collect();
        assert_eq!(
            seen,
            [10, 20].into(),
            "the nucleus, and nothing from the tail"
        );
        let s = sampler(serde_json::json!({"min_p": 0.5}));
        assert!(
            (0..200).all(|_| s.pick(&peaked) == 10),
            "e^-1 < 0.5 of the top"
        );
        // Masked logits (a constraint's resample): only the allowed tokens.
        let mut masked = vec![f32::NEG_INFINITY; 100];
        (masked[3], masked[7]) = (0.0, 0.0);
        let s = sampler(serde_json::json!({}));
        assert!((0..100).all(|_| [3, 7].contains(&s.pick(&masked))));
    }

    #[test]
    #[cfg(feature = "mistralrs")]
    fn the_logits_come_back_with_one_token_left() {
        let s = sampler(serde_json::json!({"seed": 1, "temperature": 1}));
        let logits = Tensor::new(flat(), &mistralrs::Device::Cpu).unwrap();
        let out: Vec<f32> = s.apply(&logits, &[]).unwrap().to_vec1().unwrap();
        assert_eq!(out.len(), 1000);
        let left: Vec<&f32> = out.iter().filter(|v| v.is_finite()).collect();
        assert_eq!(left.len(), 1);
        assert!(
            *left[0] > 0.0 && *left[0] < 0.1,
            "its probability: {}",
            left[0]
        );
    }
}
