//! Log probabilities in OpenAI's two shapes: chat's `logprobs.content` (one entry per token,
//! with its most likely alternatives) and completions' legacy parallel lists (`tokens`,
//! `token_logprobs`, `top_logprobs`, `text_offset`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most alternatives per token a request may ask for (OpenAI's `top_logprobs` limit, 20;
/// vLLM allows as many for completions' `logprobs`).
pub const MAX_TOP_LOGPROBS: u32 = 20;

/// One generated token: its text, natural-log probability, UTF-8 bytes, and the most likely
/// tokens at its position (as many as the request's `top_logprobs`, most likely first).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TokenLogprob {
    /// The token's text; the entries of a choice concatenate to its text.
    pub token: String,
    /// Natural log of the token's probability under the sampling distribution.
    pub logprob: f32,
    /// The token text's UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
    /// The most likely tokens at this position, most likely first.
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative at a position: text, natural-log probability, UTF-8 bytes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TopLogprob {
    /// The alternative token's text.
    pub token: String,
    /// Natural log of its probability.
    pub logprob: f32,
    /// Its text's UTF-8 bytes.
    pub bytes: Option<Vec<u8>>,
}

/// One entry of vLLM's `prompt_logprobs`: a token's natural-log probability at a prompt
/// position, its rank there (1: the most likely token), and its text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct PromptLogprob {
    /// Natural log of its probability at the position.
    pub logprob: f32,
    /// 1 for the most likely token at the position, 2 for the next, ...
    pub rank: usize,
    /// The token's text.
    pub decoded_token: String,
}

/// vLLM's `prompt_logprobs`: per prompt token, `null` for the first (nothing precedes it to
/// score it), else, by token id (as a string), the prompt's token and the most likely
/// alternatives at its position.
pub type PromptLogprobs = Vec<Option<BTreeMap<String, PromptLogprob>>>;

/// Chat's `logprobs` object: `{"content": [TokenLogprob, ...]}` (in a chunk, the tokens of
/// that chunk's text).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ChatLogprobs {
    /// One entry per token, in order.
    pub content: Vec<TokenLogprob>,
}

/// Completions' `logprobs` object: parallel lists, one item per token. With `echo`, the
/// prompt's tokens come first, the first of them with `null`s (nothing precedes it to score it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TextLogprobs {
    /// Token texts; those of generated tokens concatenate to the generated text.
    pub tokens: Vec<String>,
    /// Natural-log probability of each token (`null` for a prompt's first token).
    pub token_logprobs: Vec<Option<f32>>,
    /// Per token, its most likely alternatives as `{text: logprob}` (`null` for a prompt's
    /// first token).
    pub top_logprobs: Vec<Option<BTreeMap<String, f32>>>,
    /// Per token, its offset in the choice's text in characters (Unicode scalar values), as
    /// OpenAI's and vLLM's.
    pub text_offset: Vec<usize>,
}

impl TextLogprobs {
    /// The legacy lists of `entries`, the first starting at character `offset` of the text.
    pub fn from_entries(entries: &[TokenLogprob], offset: usize) -> Self {
        let mut out = TextLogprobs::default();
        out.extend(entries, offset);
        out
    }

    /// A scored prompt's lists (`echo` with `logprobs`): its first token's text, unscored,
    /// then the entries of the tokens after it, one per token.
    pub fn scored_prompt(first: &str, rest: &[TokenLogprob]) -> Self {
        let mut out = TextLogprobs {
            tokens: vec![first.to_string()],
            token_logprobs: vec![None],
            top_logprobs: vec![None],
            text_offset: vec![0],
        };
        out.extend(rest, first.chars().count());
        out
    }

    /// Add `entries`, the first starting at character `offset` of the text.
    pub fn extend(&mut self, entries: &[TokenLogprob], mut offset: usize) {
        for e in entries {
            self.tokens.push(e.token.clone());
            self.token_logprobs.push(Some(e.logprob));
            self.top_logprobs.push(Some(
                e.top_logprobs
                    .iter()
                    .map(|t| (t.token.clone(), t.logprob))
                    .collect(),
            ));
            self.text_offset.push(offset);
            offset += e.token.chars().count();
        }
    }
}

use super::{InvalidRequest, Result};

pub(super) fn check_top(param: &str, n: u32) -> Result<u32> {
    if n > MAX_TOP_LOGPROBS {
        return Err(InvalidRequest::new(
            param,
            format!("`{param}` must be between 0 and {MAX_TOP_LOGPROBS}"),
        ));
    }
    Ok(n)
}

/// Chat's `logprobs` (bool) and `top_logprobs` (0 to 20, only with `logprobs: true`), as
/// [`super::Sampling::logprobs`].
pub(super) fn read_chat(on: Option<bool>, top: Option<u32>) -> Result<Option<u32>> {
    match (on, top) {
        (Some(true), top) => Ok(Some(check_top("top_logprobs", top.unwrap_or(0))?)),
        (_, Some(_)) => Err(InvalidRequest::new(
            "top_logprobs",
            "`top_logprobs` needs `logprobs: true`",
        )),
        _ => Ok(None),
    }
}

/// Completions' `logprobs` (an int, 0 to 20: alternatives per token), as
/// [`super::Sampling::logprobs`].
pub(super) fn read_text(n: Option<u32>) -> Result<Option<u32>> {
    n.map(|n| check_top("logprobs", n)).transpose()
}
