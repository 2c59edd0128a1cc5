//! The model's tokenizer and chat template, read from the GGUF's metadata, so the gateway can
//! count prompt tokens (and reject over-long prompts) before a job is enqueued, without
//! loading the weights. The tokenizer is built exactly as mistral.rs 0.8.1 builds it from a GGUF
//! (`gguf/gguf_tokenizer.rs`, byte-level BPE), so the gateway's counts are the engine's. At pull
//! time it is written next to the weights as a Hugging Face tokenizer directory
//! ([`PromptTokenizer::save_hf`]), which workers hand to mistral.rs instead of letting it
//! rebuild the tokenizer from the GGUF on every start (a cold-start cost), and which the
//! gateway and the load tester read back with [`PromptTokenizer::from_hf_dir`].

use crate::{io, Result, WeightsError};
use candle_core::quantized::gguf_file::{Content, Value};
use protocol::openai::template::ChatTemplate;
use protocol::openai::ChatMessage;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;
use tokenizers::models::bpe::BPE;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::tokenizer::normalizer::SplitDelimiterBehavior;
use tokenizers::{AddedToken, PreTokenizerWrapper, Tokenizer};

/// The GGUF token type of ordinary text tokens (llama.cpp's `LLAMA_TOKEN_TYPE_NORMAL`); every
/// other type is added as a special token, as mistral.rs does.
const NORMAL: i32 = 1;

/// The pre-tokenizer split mistral.rs 0.8.1 applies to GGUF `gpt2` tokenizers.
const SPLIT_REGEX: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

/// Files of a Hugging Face tokenizer directory.
pub const TOKENIZER_JSON: &str = "tokenizer.json";
/// The Hugging Face tokenizer config file: chat template and bos/eos/unk tokens.
pub const TOKENIZER_CONFIG_JSON: &str = "tokenizer_config.json";

/// A model's tokenizer (byte-level BPE) and chat template, built from a GGUF's metadata or
/// read from a Hugging Face tokenizer directory; counts prompt tokens as mistral.rs does.
pub struct PromptTokenizer {
    tokenizer: Tokenizer,
    chat_template: Option<String>,
    bos: String,
    eos: String,
    unk: Option<String>,
}

fn meta<'a>(c: &'a Content, key: &str) -> Option<&'a Value> {
    c.metadata.get(key)
}

fn tok_err(e: impl std::fmt::Display) -> WeightsError {
    WeightsError::Tokenizer(e.to_string())
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
        let token_at = |key: &str| {
            meta(&c, key)
                .and_then(|v| v.to_u32().ok())
                .and_then(|i| tokens.get(i as usize).cloned())
        };
        let (bos, eos, unk) = (
            token_at("tokenizer.ggml.bos_token_id"),
            token_at("tokenizer.ggml.eos_token_id")
                .ok_or_else(|| bad("missing tokenizer.ggml.eos_token_id".into()))?,
            token_at("tokenizer.ggml.unknown_token_id"),
        );
        let mut tokenizer = bpe_tokenizer(&tokens, merges, unk.as_deref())?;
        let types: Vec<i32> = match meta(&c, "tokenizer.ggml.token_type").map(Value::to_vec) {
            Some(Ok(v)) => v.iter().map(|t| t.to_i32().unwrap_or(NORMAL)).collect(),
            _ => Vec::new(),
        };
        let mut specials: Vec<AddedToken> = Vec::new();
        if types.len() == tokens.len() {
            specials.extend(
                tokens
                    .iter()
                    .zip(&types)
                    .filter(|(_, t)| **t != NORMAL)
                    .map(|(tok, _)| AddedToken::from(tok.clone(), true)),
            );
        }
        specials.extend(
            [bos.as_ref(), Some(&eos), unk.as_ref()]
                .into_iter()
                .flatten()
                .map(|t| AddedToken::from(t.clone(), true)),
        );
        tokenizer.add_special_tokens(&specials);
        Ok(PromptTokenizer {
            bos: bos.unwrap_or_default(),
            eos,
            unk,
            chat_template: meta(&c, "tokenizer.chat_template")
                .and_then(|v| v.to_string().ok())
                .cloned(),
            tokenizer,
        })
    }

    /// Read a tokenizer directory written by [`PromptTokenizer::save_hf`]: `tokenizer.json`
    /// and `tokenizer_config.json` (chat template, bos/eos/unk tokens).
    pub fn from_hf_dir(dir: &Path) -> Result<Self> {
        let tokenizer = Tokenizer::from_file(dir.join(TOKENIZER_JSON)).map_err(|e| {
            WeightsError::Tokenizer(format!("{}: {e}", dir.join(TOKENIZER_JSON).display()))
        })?;
        let path = dir.join(TOKENIZER_CONFIG_JSON);
        let text =
            std::fs::read_to_string(&path).map_err(io(format!("reading {}", path.display())))?;
        let config: HfTokenizerConfig = serde_json::from_str(&text)
            .map_err(|e| WeightsError::Tokenizer(format!("{}: {e}", path.display())))?;
        Ok(PromptTokenizer {
            tokenizer,
            chat_template: config.chat_template,
            bos: config.bos_token.unwrap_or_default(),
            eos: config.eos_token,
            unk: config.unk_token,
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
        self.render_chat_with(messages, &ChatTemplate::default())
    }

    /// [`PromptTokenizer::render_chat`] with vLLM's template options: the assistant turn opened
    /// only with `add_generation_prompt`, the template's extra variables, and with
    /// `continue_final_message` the prompt cut right after the last message's content (as
    /// Hugging Face's `apply_chat_template` cuts it), so the model continues that message.
    pub fn render_chat_with(
        &self,
        messages: &[ChatMessage],
        opts: &ChatTemplate,
    ) -> Result<String> {
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
        let mut ctx = opts.kwargs.clone();
        let fixed = serde_json::json!({
            "messages": messages,
            "add_generation_prompt": opts.add_generation_prompt,
            "bos_token": self.bos,
            "eos_token": self.eos,
        });
        ctx.extend(fixed.as_object().cloned().unwrap_or_default());
        let text = env
            .get_template("chat")
            .and_then(|t| t.render(minijinja::Value::from_serialize(&ctx)))
            .map_err(|e| WeightsError::Tokenizer(format!("chat template: {e}")))?;
        match messages.last().filter(|_| opts.continue_final_message) {
            None => Ok(text),
            Some(last) => match text.rfind(last.content.as_str()) {
                Some(at) => Ok(text[..at + last.content.len()].to_string()),
                None => Err(WeightsError::Tokenizer(
                    "the template does not write the last message's content as it is, so it \
                     cannot be continued"
                        .into(),
                )),
            },
        }
    }

    /// Token ids of `text` (special-token strings as one id each).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.tokenizer
            .encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))
    }

    /// Token ids of `text`, with the tokenizer's own special tokens added around it when
    /// `add_special` (a BOS for models whose tokenizer adds one; vLLM's `add_special_tokens`).
    pub fn encode_with(&self, text: &str, add_special: bool) -> Result<Vec<u32>> {
        self.tokenizer
            .encode_fast(text, add_special)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| WeightsError::Tokenizer(e.to_string()))
    }

    /// Each token's string in the vocabulary (byte-level BPE's form, e.g. `Ġword`); ids
    /// outside the vocabulary are an error.
    pub fn token_strs(&self, ids: &[u32]) -> Result<Vec<String>> {
        ids.iter()
            .map(|&id| {
                self.tokenizer
                    .id_to_token(id)
                    .ok_or_else(|| WeightsError::Tokenizer(format!("no token has id {id}")))
            })
            .collect()
    }

    /// The beginning- and end-of-sequence tokens' text (`None` for a model without a BOS).
    pub fn bos_eos(&self) -> (Option<&str>, &str) {
        (
            (!self.bos.is_empty()).then_some(self.bos.as_str()),
            &self.eos,
        )
    }

    /// The chat template (Jinja), when the model has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// Tokens in the vocabulary, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
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
    /// `tokenizer_config.json` with the chat template and special tokens): workers give it to
    /// mistral.rs, and tools that load tokenizers with `transformers` (aiperf, guidellm, vLLM's
    /// scripts) can count tokens offline.
    pub fn save_hf(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        self.tokenizer
            .save(dir.join(TOKENIZER_JSON), false)
            .map_err(tok_err)?;
        let config = HfTokenizerConfig {
            tokenizer_class: "PreTrainedTokenizerFast".into(),
            bos_token: (!self.bos.is_empty()).then(|| self.bos.clone()),
            eos_token: self.eos.clone(),
            unk_token: self.unk.clone(),
            chat_template: self.chat_template.clone(),
            model_max_length: 1_000_000_000,
        };
        let text = serde_json::to_string(&config).map_err(tok_err)?;
        std::fs::write(dir.join(TOKENIZER_CONFIG_JSON), text)
            .map_err(io(format!("writing {}", dir.display())))
    }

    /// Prompt tokens of a chat request: [`PromptTokenizer::count`] of
    /// [`PromptTokenizer::render_chat`]. Fails with [`WeightsError::Tokenizer`] if the
    /// template fails to render or the text to encode.
    pub fn count_chat(&self, messages: &[ChatMessage], opts: &ChatTemplate) -> Result<usize> {
        self.count(&self.render_chat_with(messages, opts)?)
    }
}

/// Byte-level BPE over `tokens` and `merges`, with mistral.rs's pre-tokenizer, decoder and
/// post-processor for GGUF `gpt2` tokenizers (special tokens are added by the caller).
fn bpe_tokenizer(
    tokens: &[String],
    merges: Vec<(String, String)>,
    unk: Option<&str>,
) -> Result<Tokenizer> {
    let vocab: tokenizers::models::bpe::Vocab = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let mut bpe = BPE::builder().vocab_and_merges(vocab, merges);
    if let Some(u) = unk {
        bpe = bpe.unk_token(u.to_string());
    }
    let mut tokenizer = Tokenizer::new(bpe.build().map_err(tok_err)?);
    let split = Split::new(
        SplitPattern::Regex(SPLIT_REGEX.to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(tok_err)?;
    tokenizer.with_pre_tokenizer(Some(Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, false, false)),
    ])));
    tokenizer.with_decoder(Some(ByteLevel::new(false, false, false)));
    tokenizer.with_post_processor(Some(ByteLevel::new(false, false, false)));
    Ok(tokenizer)
}

/// The keys of `tokenizer_config.json` that sluice writes and reads (Hugging Face's names;
/// mistral.rs reads `chat_template`, `bos_token`, `eos_token` and `unk_token` from it).
#[derive(serde::Serialize, serde::Deserialize)]
struct HfTokenizerConfig {
    #[serde(default)]
    tokenizer_class: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    bos_token: Option<String>,
    eos_token: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    unk_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_template: Option<String>,
    #[serde(default)]
    model_max_length: u64,
}
