//! Log probabilities computed where mistral.rs samples. mistral.rs 0.8.1 reports its own
//! (`return_logprobs`), but in base 10, after top-k/top-p truncation (every alternative of a
//! greedy step is -inf), and its greedy path takes the log of raw logits (`sampler.rs`), so
//! sluice computes OpenAI's: the natural-log softmax of the logits a logits processor sees
//! (after penalties and `logit_bias`, before temperature and top-k/top-p, as vLLM's default
//! raw log probabilities), one position per sampled token, read back in order as the tokens
//! arrive.

use crate::counter::is_resample;
use mistralrs::{CustomLogitsProcessor, Tensor};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

/// One sampled position's distribution: every token's natural-log probability.
struct Position(Vec<f32>);

/// What one position gives a response: the sampled token's log probability and the
/// `top_n` most likely `(token id, log probability)`, most likely first.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionLogprobs {
    /// Natural log of the sampled token's probability.
    pub chosen: f32,
    /// The most likely tokens, most likely first.
    pub top: Vec<(u32, f32)>,
}

/// Records each sampled position of one sequence (a run with one choice).
#[derive(Clone, Default)]
pub struct LogprobRecorder(Arc<Mutex<VecDeque<Position>>>);

impl LogprobRecorder {
    /// The processor to hand to mistral.rs with the request.
    pub fn processor(&self) -> Arc<dyn CustomLogitsProcessor> {
        Arc::new(self.clone())
    }

    /// The next `ids.len()` positions, in order, with `ids` the tokens sampled there (read
    /// back from a chunk's text), each with its `top_n` alternatives. `None` if a position
    /// was not recorded (never expected: the processor runs before the token is sent).
    pub fn take(&self, ids: &[u32], top_n: usize) -> Option<Vec<PositionLogprobs>> {
        let mut q = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = Vec::with_capacity(ids.len());
        for &id in ids {
            let Position(lp) = q.pop_front()?;
            let chosen = lp.get(id as usize).copied().unwrap_or(f32::NEG_INFINITY);
            out.push(PositionLogprobs {
                chosen,
                top: top_n_of(&lp, top_n),
            });
        }
        Some(out)
    }
}

impl CustomLogitsProcessor for LogprobRecorder {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        // A constraint's resample of the same step: the first call already recorded it.
        if !is_resample(logits)? {
            let values = logits
                .flatten_all()?
                .to_dtype(mistralrs::DType::F32)?
                .to_vec1::<f32>()?;
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_back(Position(log_softmax(values)));
        }
        Ok(logits.clone())
    }
}

/// Natural-log softmax, computed stably (max subtracted first).
fn log_softmax(mut v: Vec<f32>) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_natural_log_probabilities_read_in_order() {
        let r = LogprobRecorder::default();
        let dev = &mistralrs::Device::Cpu;
        let step1 = Tensor::new(&[2.0f32, 1.0, 0.0], dev).unwrap();
        let step2 = Tensor::new(&[0.0f32, 0.0, 5.0], dev).unwrap();
        let masked = Tensor::new(&[f32::NEG_INFINITY, 1.0, f32::NEG_INFINITY], dev).unwrap();
        for t in [&step1, &step2, &masked] {
            r.apply(t, &[]).unwrap();
        }
        let got = r.take(&[0, 2], 2).unwrap();
        let z1 = (2f32.exp() + 1f32.exp() + 1.0).ln();
        assert!((got[0].chosen - (2.0 - z1)).abs() < 1e-5);
        assert_eq!(got[0].top.iter().map(|t| t.0).collect::<Vec<_>>(), [0, 1]);
        let total: f32 = [2.0f32, 1.0, 0.0].iter().map(|x| (x - z1).exp()).sum();
        assert!((total - 1.0).abs() < 1e-5);
        assert!(got[1].chosen > -0.02 && got[1].top[0].0 == 2);
        assert!(
            r.take(&[0], 1).is_none(),
            "the masked resample was not a position"
        );
    }
}
