//! OpenAI's `logit_bias`, applied by sluice. mistral.rs 0.8.1 has
//! `SamplingParams::logits_bias`, but nothing reads it (its `sampler.rs` only defines and
//! defaults it), so a bias passed there would be silently ignored.

use mistralrs::{CustomLogitsProcessor, Tensor};
use std::collections::HashMap;
use std::sync::Arc;

/// Adds each token's bias (OpenAI's -100..=100) to its logit before sampling; ids outside
/// the vocabulary are ignored.
pub struct LogitBias(Vec<(u32, f32)>);

impl LogitBias {
    /// The processor for `bias` (token id -> bias), or `None` when there is none.
    pub fn processor(bias: &HashMap<u32, f32>) -> Option<Arc<dyn CustomLogitsProcessor>> {
        if bias.is_empty() {
            return None;
        }
        Some(Arc::new(LogitBias(
            bias.iter().map(|(k, v)| (*k, *v)).collect(),
        )))
    }
}

impl CustomLogitsProcessor for LogitBias {
    fn apply(&self, logits: &Tensor, _context: &[u32]) -> mistralrs::Result<Tensor> {
        let mut v = logits
            .flatten_all()?
            .to_dtype(mistralrs::DType::F32)?
            .to_vec1::<f32>()?;
        for (id, b) in &self.0 {
            if let Some(x) = v.get_mut(*id as usize) {
                *x += b;
            }
        }
        Tensor::from_vec(v, logits.shape(), logits.device())?.to_dtype(logits.dtype())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn biases_are_added_to_their_tokens_only() {
        let p = LogitBias::processor(&HashMap::from([(1, 5.0), (7, -3.0)])).unwrap();
        let logits = Tensor::new(&[1.0f32, 2.0, 3.0], &mistralrs::Device::Cpu).unwrap();
        let out = p.apply(&logits, &[]).unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(out, [1.0, 7.0, 3.0]);
        assert!(LogitBias::processor(&HashMap::new()).is_none());
    }
}
