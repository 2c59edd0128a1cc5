//! One sequence's choice of its next token from the raw logits llama.cpp computed, in the
//! order vLLM applies them: penalties (repetition over prompt and output, frequency and
//! presence over the output), `logit_bias`, the log probabilities (natural-log softmax of
//! these logits, before temperature and truncation, as vLLM's default raw log probabilities
//! and the mistral.rs backend's), the structured-output constraint (llguidance's mask, the
//! same compiler the gateway checks schemas with), then greedy or seeded sampling
//! ([`crate::sampler::SeededSampler`], shared with the mistral.rs backend).

use crate::logprobs::{log_softmax, position, Position};
use crate::rules::TokenRules;
use crate::sampler::{argmax, SeededSampler};
use llguidance::Matcher;
use protocol::openai::Sampling;
use std::collections::HashMap;

/// What decides a sequence's tokens; lives on the scheduler's thread.
pub struct TokenChooser {
    sampler: Option<SeededSampler>,
    bias: Vec<(usize, f32)>,
    repetition: f32,
    frequency: f32,
    presence: f32,
    /// Tokens of the prompt (for the repetition penalty).
    prompt_seen: Vec<bool>,
    /// Each generated token's count (frequency and presence penalties).
    generated: HashMap<u32, u32>,
    top_n: Option<usize>,
    constraint: Option<Matcher>,
    /// What may be drawn and what ends the sequence, and when (`allowed_token_ids`,
    /// `bad_words`, `ignore_eos`, `stop_token_ids`, `min_tokens`).
    ends: TokenRules,
    /// The tokens chosen so far, in order.
    history: Vec<u32>,
}

/// The token chosen, with its position's log probabilities when asked for.
pub struct Choice {
    /// The token.
    pub id: u32,
    /// Its log probability and the most likely alternatives, when the request asked.
    pub position: Option<Position>,
}

impl TokenChooser {
    /// The chooser of choice `choice` of a request sampled with `s`, whose prompt is `prompt`
    /// in a vocabulary of `n_vocab`, constrained by `constraint` if it has a schema, ended as
    /// `ends` says. `ranked`: its sequence competes in `best_of`, so every token's log
    /// probability is computed.
    pub fn new(
        s: &Sampling,
        (choice, ranked): (usize, bool),
        (prompt, n_vocab): (&[u32], usize),
        constraint: Option<Matcher>,
        ends: TokenRules,
    ) -> Self {
        let repetition = s.repetition_penalty.unwrap_or(1.0);
        let mut prompt_seen = Vec::new();
        if repetition != 1.0 {
            prompt_seen = vec![false; n_vocab];
            for &t in prompt {
                if let Some(seen) = prompt_seen.get_mut(t as usize) {
                    *seen = true;
                }
            }
        }
        TokenChooser {
            sampler: SeededSampler::new(s, choice, false),
            bias: s
                .logit_bias
                .iter()
                .map(|(&id, &b)| (id as usize, b))
                .collect(),
            repetition,
            frequency: s.frequency_penalty.unwrap_or(0.0),
            presence: s.presence_penalty.unwrap_or(0.0),
            prompt_seen,
            generated: HashMap::new(),
            top_n: s.logprobs.map(|n| n as usize).or(ranked.then_some(0)),
            constraint,
            ends,
            history: Vec::new(),
        }
    }

    /// Choose the next token from `logits` (changed in place). Errors: the constraint failed
    /// or allows no token (its reason, for the worker's log).
    pub fn choose(&mut self, logits: &mut [f32]) -> Result<Choice, String> {
        self.penalize(logits);
        for &(id, b) in &self.bias {
            if let Some(l) = logits.get_mut(id) {
                *l += b;
            }
        }
        let logprobs = self.top_n.map(|_| log_softmax(logits.to_vec()));
        if let Some(m) = self.constraint.as_mut() {
            let mask = m.compute_mask().map_err(|e| e.to_string())?;
            let mut any = false;
            for (id, l) in logits.iter_mut().enumerate() {
                if id < mask.len() && mask.is_allowed(id as u32) {
                    any |= l.is_finite();
                } else {
                    *l = f32::NEG_INFINITY;
                }
            }
            if !any {
                return Err("the constraint allows no token".into());
            }
        }
        self.ends.mask(&self.history, false, logits);
        let id = match &self.sampler {
            Some(s) => s.pick(logits),
            None => argmax(logits),
        } as u32;
        if let Some(m) = self.constraint.as_mut() {
            m.consume_token(id).map_err(|e| e.to_string())?;
        }
        *self.generated.entry(id).or_default() += 1;
        self.history.push(id);
        let position = logprobs.map(|lp| position(&lp, id, self.top_n.unwrap_or(0)));
        Ok(Choice { id, position })
    }

    /// Whether generating `id` ends the sequence (an end-of-sequence token unless
    /// `ignore_eos`, or one of `stop_token_ids`).
    pub fn ends(&self, id: u32) -> bool {
        self.ends.ends(id)
    }

    /// Whether the constraint is complete (it accepts nothing more).
    pub fn constraint_done(&self) -> bool {
        self.constraint.as_ref().is_some_and(Matcher::is_stopped)
    }

    fn penalize(&self, logits: &mut [f32]) {
        if self.repetition != 1.0 {
            let seen = |id: usize| {
                self.prompt_seen.get(id).copied().unwrap_or(false)
                    || self.generated.contains_key(&(id as u32))
            };
            for (id, l) in logits.iter_mut().enumerate() {
                if seen(id) {
                    *l = if *l > 0.0 {
                        *l / self.repetition
                    } else {
                        *l * self.repetition
                    };
                }
            }
        }
        if self.frequency != 0.0 || self.presence != 0.0 {
            for (&id, &n) in &self.generated {
                if let Some(l) = logits.get_mut(id as usize) {
                    *l -= self.frequency * n as f32 + self.presence;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sampling(extra: serde_json::Value) -> Sampling {
        let mut body = json!({"model": "m", "prompt": "x"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        protocol::openai::CompletionRequest::parse(body)
            .unwrap()
            .sampling
    }

    #[test]
    fn greedy_with_bias_and_penalties_as_vllm_applies_them() {
        let s = sampling(json!({"temperature": 0, "logit_bias": {"2": 100}}));
        let mut c = TokenChooser::new(&s, (0, false), (&[], 4), None, TokenRules::default());
        assert_eq!(c.choose(&mut [3.0, 2.0, 0.0, 1.0]).unwrap().id, 2);
        // Presence and frequency fall on generated tokens only: token 0 was never generated.
        let s = sampling(json!({"temperature": 0, "frequency_penalty": 2.0}));
        let mut c = TokenChooser::new(&s, (0, false), (&[0], 3), None, TokenRules::default());
        assert_eq!(c.choose(&mut [3.0, 2.5, 0.0]).unwrap().id, 0);
        assert_eq!(c.choose(&mut [3.0, 2.5, 0.0]).unwrap().id, 1, "3 - 2 < 2.5");
        // Repetition divides a positive logit of a token seen in the prompt.
        let s = sampling(json!({"temperature": 0, "repetition_penalty": 2.0}));
        let mut c = TokenChooser::new(&s, (0, false), (&[0], 3), None, TokenRules::default());
        assert_eq!(c.choose(&mut [3.0, 2.0, 0.0]).unwrap().id, 1, "3 / 2 < 2");
    }

    #[test]
    fn log_probabilities_come_from_the_biased_logits_before_sampling() {
        let s = sampling(json!({"temperature": 0, "logprobs": 2}));
        let mut c = TokenChooser::new(&s, (0, false), (&[], 3), None, TokenRules::default());
        let p = c
            .choose(&mut [0.0, 0.0, f32::ln(2.0)])
            .unwrap()
            .position
            .unwrap();
        assert_eq!(p.id, 2);
        assert!((p.logprob - 0.5f32.ln()).abs() < 1e-5, "{}", p.logprob);
        assert_eq!(p.top.len(), 2);
    }
}
