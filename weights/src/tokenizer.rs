//! The model's tokenizer and chat template, read from the GGUF's metadata, so the gateway can
//! count prompt tokens (and reject over-long prompts) before a job is enqueued, without
//! loading the weights.

use crate::{io, Result, WeightsError};
use candle_core::quantized::gguf_file::{Content, Value};
use protocol::openai::ChatMessage;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

/// GGUF token types (llama.cpp's `llama_token_type`) that are special, not text.
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;

pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    chat_template: Option<String>,
    bos: String,
    eos: String,
}

fn meta<'a>(c: &'a Content, key: &str) -> Option<&'a Value> {
    c.metadata.get(key)
}

impl PromptTokenizer {
    /// Build the tokenizer described by a GGUF's `tokenizer.ggml.*` keys. Only the `gpt2`
    /// (byte-level BPE) model is supported, which is what llama-architecture GGUFs of
    /// SmolLM, Qwen and Llama 3 carry.
    pub fn from_gguf(path: &Path) -> Result<Self> {
        let bad = |detail: String| WeightsError::Gguf {
            path: path.to_path_buf(),
            detail,
        };
        let mut r =
            BufReader::new(File::open(path).map_err(io(format!("opening {}", path.display())))?);
        let c = Content::read(&mut r).map_err(|e| bad(e.to_string()))?;
        let model = meta(&c, "tokenizer.ggml.model").and_then(|v| v.to_string().ok());
        if model.map(String::as_str) != Some("gpt2") {
            return Err(bad(format!(
                "tokenizer model {model:?} is not supported (only gpt2 BPE)"
            )));
        }
        let strings = |key: &str| -> Result<Vec<String>> {
            let v = meta(&c, key).ok_or_else(|| bad(format!("missing {key}")))?;
            let items = v.to_vec().map_err(|e| bad(e.to_string()))?;
            items
                .iter()
                .map(|s| s.to_string().cloned().map_err(|e| bad(e.to_string())))
                .collect()
        };
        let tokens = strings("tokenizer.ggml.tokens")?;
        let merges: Vec<(String, String)> = strings("tokenizer.ggml.merges")?
            .into_iter()
            .filter_map(|m| {
                m.split_once(' ')
                    .map(|(a, b)| (a.to_string(), b.to_string()))
            })
            .collect();
        let types: Vec<i32> = match meta(&c, "tokenizer.ggml.token_type").map(Value::to_vec) {
            Some(Ok(v)) => v.iter().map(|t| t.to_i32().unwrap_or(1)).collect(),
            _ => vec![1; tokens.len()],
        };
        let vocab: tokenizers::models::bpe::Vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let bpe = BPE::builder()
            .vocab_and_merges(vocab, merges)
            .build()
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))?;
        let mut tokenizer = Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, t)| **t == CONTROL || **t == USER_DEFINED)
            .map(|(tok, _)| AddedToken::from(tok.clone(), true))
            .collect();
        tokenizer.add_special_tokens(&specials);
        let token_at = |key: &str| {
            meta(&c, key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|i| tokens.get(i as usize).cloned())
                .unwrap_or_default()
        };
        Ok(PromptTokenizer {
            bos: token_at("tokenizer.ggml.bos_token_id"),
            eos: token_at("tokenizer.ggml.eos_token_id"),
            chat_template: meta(&c, "tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            tokenizer,
        })
    }

    /// Tokens in `text`, special-token strings counted as one token each.
    pub fn count(&self, text: &str) -> Result<usize> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.len())
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))
    }

    /// The prompt the engine will see for `messages`: the GGUF's chat template rendered with a
    /// generation prompt (the model's own template, as mistral.rs applies it).
    pub fn render_chat(&self, messages: &[ChatMessage]) -> Result<String> {
        let Some(template) = &self.chat_template else {
            // No template: a plain transcript, one message per line.
            return Ok(messages
                .iter()
                .map(|m| format!("{}: {}\n", m.role, m.content))
                .collect());
        };
        let mut env = minijinja::Environment::new();
        env.add_function(
            "raise_exception",
            |msg: String| -> std::result::Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", template)
            .map_err(|e| WeightsError::Tokenizer(format!("chat template: {e}")))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => true,
            bos_token => &self.bos,
            eos_token => &self.eos,
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| WeightsError::Tokenizer(format!("chat template: {e}")))
    }

    /// Token ids of `text` (special-token strings as one id each).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))
    }

    /// Text of `ids`, special tokens dropped.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))
    }

    /// Ids of ordinary (non-special) tokens: `0..n` minus the special ones.
    pub fn text_token_ids(&self) -> Vec<u32> {
        let specials: std::collections::HashSet<u32> = self
            .tokenizer
            .get_added_vocabulary()
            .get_vocab()
            .values()
            .copied()
            .collect();
        (0..self.tokenizer.get_vocab_size(false) as u32)
            .filter(|i| !specials.contains(i))
            .collect()
    }

    /// Write the tokenizer as a Hugging Face tokenizer directory (`tokenizer.json` and
    /// `tokenizer_config.json` with the chat template), so tools that load tokenizers with
    /// `transformers` (aiperf, guidellm, vLLM's scripts) can count tokens offline.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        self.tokenizer
            .save(dir.join("tokenizer.json"), false)
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))?;
        let config = serde_json::json!({
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": self.bos,
            "eos_token": self.eos,
            "chat_template": self.chat_template,
            "model_max_length": 1_000_000_000,
        });
        std::fs::write(dir.join("tokenizer_config.json"), config.to_string())
            .map_err(io(format!("writing {}", dir.display())))
    }

    pub fn count_chat(&self, messages: &[ChatMessage]) -> Result<usize> {
        self.count(&self.render_chat(messages)?)
    }
}
