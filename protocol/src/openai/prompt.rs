//! A text completion's `prompt` in OpenAI's four forms: a string, a list of strings, a list of
//! token ids, or a list of lists of token ids (eval harnesses such as lm-evaluation-harness
//! send token ids by default). Each prompt gets its own `n` choices, numbered prompt by
//! prompt, as OpenAI numbers them.

use super::{InvalidRequest, Result};

/// Most prompts one request may give.
pub const MAX_PROMPTS: usize = 64;

/// One prompt: text, or token ids of the model's vocabulary (used as they are).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// Text, tokenized by the model's tokenizer.
    Text(String),
    /// Token ids, at least one.
    Tokens(Vec<u32>),
}

/// `prompt` (or embeddings' `input`) as a client writes it, in one of the four forms.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(
    untagged,
    expecting = "a string, a list of strings, a list of token ids (integers from 0 to \
                 4294967295) or a list of lists of token ids"
)]
pub enum PromptInput {
    /// The prompt.
    Text(String),
    /// Several prompts (1 to 64), `n` choices each.
    Many(Vec<String>),
    /// One prompt as token ids.
    Tokens(Vec<u32>),
    /// Several prompts as token ids.
    ManyTokens(Vec<Vec<u32>>),
}

impl PromptInput {
    /// The prompts, 1 to [`MAX_PROMPTS`], token-id ones not empty. Errors name the field
    /// `name` the input came in.
    pub fn prompts(self, name: &str) -> Result<Vec<Prompt>> {
        let bad = |why: &str| InvalidRequest::new(name, why);
        let prompts = match self {
            PromptInput::Text(s) => vec![Prompt::Text(s)],
            PromptInput::Many(texts) => texts.into_iter().map(Prompt::Text).collect(),
            PromptInput::Tokens(ids) => vec![Prompt::Tokens(ids)],
            PromptInput::ManyTokens(lists) => lists.into_iter().map(Prompt::Tokens).collect(),
        };
        if prompts.is_empty() || prompts.len() > MAX_PROMPTS {
            return Err(bad(&format!("`{name}` takes 1 to {MAX_PROMPTS} prompts")));
        }
        if prompts
            .iter()
            .any(|p| matches!(p, Prompt::Tokens(t) if t.is_empty()))
        {
            return Err(bad("a token-id prompt needs at least one token"));
        }
        Ok(prompts)
    }
}

/// Why `ids` cannot be read by a model of `size` tokens: the first id outside its vocabulary.
/// Every place that takes client token ids (prompts, `allowed_token_ids`, `/detokenize`) asks
/// this, so they refuse alike.
pub fn outside_vocabulary(ids: &[u32], size: usize) -> Option<String> {
    ids.iter()
        .find(|&&id| id as usize >= size)
        .map(|id| format!("token id {id} is outside the vocabulary of {size} tokens"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn the_four_forms_and_their_limits() {
        let p = |v: Value| {
            serde_json::from_value::<PromptInput>(v)
                .map_err(|e| InvalidRequest::new("prompt", e.to_string()))
                .and_then(|i| i.prompts("prompt"))
        };
        assert_eq!(p(json!("a")).unwrap(), [Prompt::Text("a".into())]);
        assert_eq!(p(json!(["a", "b"])).unwrap().len(), 2);
        assert_eq!(p(json!([1, 2])).unwrap(), [Prompt::Tokens(vec![1, 2])]);
        assert_eq!(
            p(json!([[1], [2, 3]])).unwrap(),
            [Prompt::Tokens(vec![1]), Prompt::Tokens(vec![2, 3])]
        );
        for bad in [
            json!([]),
            json!(["a", 1]),
            json!([-1]),
            json!([[]]),
            json!(1),
            json!([[1], "a"]),
        ] {
            assert_eq!(
                p(bad.clone()).unwrap_err().param.as_deref(),
                Some("prompt"),
                "{bad}"
            );
        }
        assert!(p(json!(vec!["x"; MAX_PROMPTS + 1])).is_err());
    }

    #[test]
    fn ids_past_the_vocabulary_are_named() {
        assert_eq!(outside_vocabulary(&[0, 9], 10), None);
        assert_eq!(
            outside_vocabulary(&[0, 10, 11], 10).unwrap(),
            "token id 10 is outside the vocabulary of 10 tokens"
        );
    }
}
