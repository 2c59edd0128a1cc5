//! The output of RunPod's vLLM worker (runpod-workers/worker-vllm) for its standard input form
//! (`{"prompt" | "messages", "sampling_params", "stream"}`): a list of batches, streamed batch
//! by batch when the input streams. sluice's LLM workers answer that form with these types.

use serde::{Deserialize, Serialize};

/// One batch: `{"choices": [{"tokens": [text, ...]}, ...], "usage": {"input", "output"}}`;
/// `usage` on the last batch only.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VllmBatch {
    /// One entry per choice of the request (`n`), in order: the text the batch adds to it.
    pub choices: Vec<VllmChoice>,
    /// Token counts of the whole request; on the last batch only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<VllmUsage>,
}

/// The text pieces of one choice in a batch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VllmChoice {
    /// Decoded text, in order, despite the name (not token ids): from sluice, one streamed
    /// delta per batch, or the choice's whole text when not streaming; may be empty.
    pub tokens: Vec<String>,
}

/// Prompt (`input`) and generated (`output`) tokens of the whole request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VllmUsage {
    /// Prompt tokens.
    pub input: usize,
    /// Generated tokens, summed over all choices.
    pub output: usize,
}

impl VllmBatch {
    /// A batch holding `text` for choice `index` of `n` (the other choices empty).
    pub fn one(index: usize, n: usize, text: &str) -> Self {
        VllmBatch {
            choices: (0..n.max(index + 1))
                .map(|i| VllmChoice {
                    tokens: if i == index {
                        vec![text.to_string()]
                    } else {
                        vec![]
                    },
                })
                .collect(),
            usage: None,
        }
    }
}
