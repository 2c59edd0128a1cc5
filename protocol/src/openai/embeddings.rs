//! OpenAI's `POST /v1/embeddings`: `input` as text, a list of texts, token ids or lists of
//! token ids (the prompt forms of completions), `encoding_format` `float` or `base64`. One type
//! is the body's parser and schema; the answer is [`EmbeddingResponse`].

use super::prompt::{Prompt, PromptInput};
use super::{InvalidRequest, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// The route whose jobs embed.
pub const EMBEDDINGS_ROUTE: &str = "/v1/embeddings";

/// How the vectors are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// A list of numbers.
    #[default]
    Float,
    /// The little-endian `f32` bytes, base64 (what the `openai` client asks for by default).
    Base64,
}

/// The body of `POST /v1/embeddings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingRequest {
    /// The served model's name.
    pub model: String,
    /// A text, up to 64 texts, token ids, or up to 64 lists of token ids.
    pub input: PromptInput,
    /// `float` (default) or `base64`.
    pub encoding_format: Option<EncodingFormat>,
    /// Refused: the model's vectors have one size.
    pub dimensions: Option<u32>,
    /// The caller's end-user id.
    pub user: Option<String>,
}

impl EmbeddingRequest {
    /// Read a body; errors name the field.
    pub fn parse(body: Value) -> Result<Self> {
        let req: EmbeddingRequest = serde_json::from_value(body)
            .map_err(|e| InvalidRequest::new("input", format!("invalid request: {e}")))?;
        if req.dimensions.is_some() {
            return Err(InvalidRequest::new(
                "dimensions",
                "`dimensions` is not supported: the model's embeddings have one size",
            ));
        }
        req.inputs()?;
        Ok(req)
    }

    /// The inputs, each a text or token ids.
    pub fn inputs(&self) -> Result<Vec<Prompt>> {
        self.input.clone().prompts("input")
    }
}

/// The answer of `POST /v1/embeddings`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingResponse {
    /// Always `list`.
    pub object: String,
    /// One vector per input, in order.
    pub data: Vec<Embedding>,
    /// The model that embedded.
    pub model: String,
    /// Tokens read.
    pub usage: EmbeddingUsage,
}

/// One input's vector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Embedding {
    /// Always `embedding`.
    pub object: String,
    /// The input's place.
    pub index: usize,
    /// The vector (unit length).
    pub embedding: Vector,
}

/// A vector as `encoding_format` asks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Vector {
    /// `float`: the numbers.
    Float(Vec<f32>),
    /// `base64`: the little-endian `f32` bytes, base64.
    Base64(String),
}

/// `usage` of an embedding answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EmbeddingUsage {
    /// Tokens of every input.
    pub prompt_tokens: usize,
    /// The same: nothing is generated.
    pub total_tokens: usize,
}

impl EmbeddingResponse {
    /// The answer for `vectors` (in input order) of `tokens` input tokens, written as `format`.
    pub fn new(model: &str, vectors: Vec<Vec<f32>>, tokens: usize, format: EncodingFormat) -> Self {
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| Embedding {
                object: "embedding".into(),
                index,
                embedding: match format {
                    EncodingFormat::Float => Vector::Float(v),
                    EncodingFormat::Base64 => Vector::Base64(base64_f32(&v)),
                },
            })
            .collect();
        EmbeddingResponse {
            object: "list".into(),
            data,
            model: model.into(),
            usage: EmbeddingUsage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        }
    }
}

fn base64_f32(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn inputs_formats_and_refusals() {
        let r = EmbeddingRequest::parse(json!({"model": "m", "input": ["a", "b"]})).unwrap();
        assert_eq!(r.inputs().unwrap().len(), 2);
        let e = EmbeddingRequest::parse(json!({"model": "m", "input": "a", "dimensions": 8}));
        assert_eq!(e.unwrap_err().param.as_deref(), Some("dimensions"));
        let e = EmbeddingRequest::parse(json!({"model": "m", "input": []})).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("input"));
        let a = EmbeddingResponse::new("m", vec![vec![1.0, -2.0]], 3, EncodingFormat::Base64);
        assert_eq!(a.data[0].embedding, Vector::Base64("AACAPwAAAMA=".into()));
        assert_eq!(a.usage.total_tokens, 3);
    }
}
