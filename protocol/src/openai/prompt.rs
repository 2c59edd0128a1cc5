//! A text completion's `prompt` in OpenAI's four forms: a string, a list of strings, a list of
//! token ids, or a list of lists of token ids (eval harnesses such as lm-evaluation-harness
//! send token ids by default). Each prompt gets its own `n` choices, numbered prompt by
//! prompt, as OpenAI numbers them.

use super::{InvalidRequest, Result};
use serde_json::Value;

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

/// Read `prompt` (see the module's text). Errors name `prompt`.
pub(crate) fn parse(value: Option<Value>) -> Result<Vec<Prompt>> {
    parse_named(value, "prompt")
}

/// Read prompts in the four forms from the field `name` (embeddings' `input` takes them too).
pub(crate) fn parse_named(value: Option<Value>, name: &str) -> Result<Vec<Prompt>> {
    let bad = |why: &str| InvalidRequest::new(name, why);
    let prompts = match value {
        None => return Err(bad(&format!("`{name}` is required"))),
        Some(Value::String(s)) => vec![Prompt::Text(s)],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items
            .into_iter()
            .map(|v| Prompt::Text(v.as_str().unwrap_or_default().to_string()))
            .collect(),
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Prompt::Tokens(token_ids(Value::Array(items), name)?)]
        }
        Some(Value::Array(items)) if items.iter().all(Value::is_array) => items
            .into_iter()
            .map(|v| token_ids(v, name).map(Prompt::Tokens))
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(bad(&format!(
                "`{name}` must be a string, a list of strings, a list of token ids or a list \
                 of lists of token ids"
            )))
        }
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

/// Why `ids` cannot be read by a model of `size` tokens: the first id outside its vocabulary.
/// Every place that takes client token ids (prompts, `allowed_token_ids`, `/detokenize`) asks
/// this, so they refuse alike.
pub fn outside_vocabulary(ids: &[u32], size: usize) -> Option<String> {
    ids.iter()
        .find(|&&id| id as usize >= size)
        .map(|id| format!("token id {id} is outside the vocabulary of {size} tokens"))
}

fn token_ids(v: Value, name: &str) -> Result<Vec<u32>> {
    serde_json::from_value(v)
        .map_err(|_| InvalidRequest::new(name, "token ids must be integers from 0 to 4294967295"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_four_forms_and_their_limits() {
        let p = |v: Value| parse(Some(v));
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
        assert!(parse(None).is_err());
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
