//! Where prompts come from: a small built-in set, random prompts of an exact token length
//! (with the model's tokenizer, as vLLM's `random` dataset), or a JSONL file (one
//! `{"prompt": ...}` per line, or ShareGPT's `{"conversations": [{"from": "human", ...}]}`).

use anyhow::Context;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::path::Path;
use weights::PromptTokenizer;

/// One request's prompt, and its own output length when the dataset gives one.
#[derive(Clone, Debug, PartialEq)]
pub struct Prompt {
    /// The prompt: the user message of a chat request, or a completion's `prompt`.
    pub text: String,
    /// The request's `max_tokens` when the dataset sets it (a JSONL `output_len`, or the
    /// token count of ShareGPT's recorded reply, as vLLM does); `None`: `--random-output-len`.
    pub output_len: Option<u32>,
}

/// Prompts that make a small instruct model write at length.
pub const BUILTIN: &[&str] = &[
    "Write a long story about a dragon who learns to bake bread.",
    "Explain in detail how a bicycle works, part by part.",
    "Describe a day in the life of a lighthouse keeper.",
    "Write a detailed travel guide for a city by the sea.",
    "Explain how rain forms, step by step, for a curious child.",
    "Write a letter from a sailor to his family at home.",
    "Describe how to plant and care for a vegetable garden.",
    "Tell the history of a small mountain village over a century.",
];

/// `n` prompts from [`BUILTIN`], cycled; no output lengths of their own.
pub fn builtin(n: usize) -> Vec<Prompt> {
    (0..n)
        .map(|i| Prompt {
            text: BUILTIN[i % BUILTIN.len()].to_string(),
            output_len: None,
        })
        .collect()
}

/// `n` prompts of exactly `input_len` tokens: random ordinary tokens, decoded, then trimmed
/// or extended until the text re-encodes to the asked length.
pub fn random(
    tok: &PromptTokenizer,
    lens: &[(usize, u32)],
    seed: u64,
) -> anyhow::Result<Vec<Prompt>> {
    let ids = tok.text_token_ids();
    anyhow::ensure!(!ids.is_empty(), "the tokenizer has no ordinary tokens");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(lens.len());
    for &(input_len, output_len) in lens {
        let mut toks: Vec<u32> = (0..input_len)
            .map(|_| ids[rng.random_range(0..ids.len())])
            .collect();
        let mut text = tok.decode(&toks)?;
        // Decoding and re-encoding can merge or split tokens; adjust a few times.
        for _ in 0..8 {
            let re = tok.encode(&text)?;
            match re.len().cmp(&input_len) {
                std::cmp::Ordering::Equal => break,
                std::cmp::Ordering::Greater => toks = re[..input_len].to_vec(),
                std::cmp::Ordering::Less => {
                    toks = re;
                    while toks.len() < input_len {
                        toks.push(ids[rng.random_range(0..ids.len())]);
                    }
                }
            }
            text = tok.decode(&toks)?;
        }
        out.push(Prompt {
            text,
            output_len: Some(output_len),
        });
    }
    Ok(out)
}

/// vLLM's random dataset lengths: each request's input and output lengths drawn uniformly
/// from the integers in [floor(len x (1 - ratio)), ceil(len x (1 + ratio))] (output at least 1); all exactly `len` at ratio 0. Errors: a ratio outside [0, 1).
pub fn random_lens(
    n: usize,
    input_len: usize,
    output_len: u32,
    ratio: f64,
    seed: u64,
) -> anyhow::Result<Vec<(usize, u32)>> {
    anyhow::ensure!(
        (0.0..1.0).contains(&ratio),
        "--random-range-ratio must be in [0, 1)"
    );
    let bounds = |len: f64| {
        (
            (len * (1.0 - ratio)).floor() as u64,
            (len * (1.0 + ratio)).ceil() as u64,
        )
    };
    let (ilo, ihi) = bounds(input_len as f64);
    let (olo, ohi) = bounds(f64::from(output_len));
    // Its own stream, so prompts stay the same whatever the ratio.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed_1e45);
    Ok((0..n)
        .map(|_| {
            let i = rng.random_range(ilo..=ihi) as usize;
            let o = rng.random_range(olo..=ohi).max(1) as u32;
            (i, o)
        })
        .collect())
}

/// Prompts from a JSONL file, cycled to `n`.
pub fn jsonl(path: &Path, n: usize, tok: Option<&PromptTokenizer>) -> anyhow::Result<Vec<Prompt>> {
    let lines: Vec<(usize, Value)> = protocol::jsonl::read_numbered(path)?;
    let all = lines
        .iter()
        .map(|(line, v)| prompt_of(v, tok).with_context(|| format!("{}:{line}", path.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(!all.is_empty(), "{} has no prompts", path.display());
    Ok((0..n).map(|i| all[i % all.len()].clone()).collect())
}

fn prompt_of(v: &Value, tok: Option<&PromptTokenizer>) -> anyhow::Result<Prompt> {
    if let Some(p) = v.get("prompt").and_then(Value::as_str) {
        let output_len = v
            .get("output_len")
            .and_then(Value::as_u64)
            .map(|n| n as u32);
        return Ok(Prompt {
            text: p.to_string(),
            output_len,
        });
    }
    let turns = v
        .get("conversations")
        .and_then(Value::as_array)
        .context("expected `prompt` or ShareGPT `conversations`")?;
    let said = |who: &str| {
        turns
            .iter()
            .find(|t| t.get("from").and_then(Value::as_str) == Some(who))
            .and_then(|t| t.get("value").and_then(Value::as_str))
    };
    let text = said("human").context("no human turn")?.to_string();
    // The recorded reply's length becomes this request's output length, as vLLM does.
    let output_len = match (said("gpt"), tok) {
        (Some(reply), Some(tok)) => Some(tok.count(reply)?.max(1) as u32),
        _ => None,
    };
    Ok(Prompt { text, output_len })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonl_reads_prompts_and_sharegpt() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("prompts.jsonl");
        let lines = [
            json!({"prompt": "hello", "output_len": 7}).to_string(),
            json!({"conversations": [{"from": "human", "value": "hi there"}, {"from": "gpt", "value": "yo"}]}).to_string(),
        ];
        std::fs::write(&p, lines.join("\n")).unwrap();
        let got = jsonl(&p, 3, None).unwrap();
        assert_eq!(
            got[0],
            Prompt {
                text: "hello".into(),
                output_len: Some(7)
            }
        );
        assert_eq!(got[1].text, "hi there");
        assert_eq!(got[2], got[0], "cycled to n");
        std::fs::write(&p, "{\"x\": 1}\n").unwrap();
        let err = format!("{:#}", jsonl(&p, 1, None).unwrap_err());
        assert!(err.contains(":1") && err.contains("conversations"), "{err}");
    }

    #[test]
    fn builtin_cycles() {
        let b = builtin(10);
        assert_eq!(b.len(), 10);
        assert_eq!(b[8], b[0]);
    }
}
