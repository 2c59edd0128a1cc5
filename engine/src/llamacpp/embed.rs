//! Embeddings on the llama.cpp backend: a second context of the same model, made on the
//! first embedding request (generation never pays for it), with embeddings on and the
//! model's pooling (`engine.pooling`, else the GGUF's `{architecture}.pooling_type`), one
//! sequence of up to `context_length` tokens decoded at a time. Inputs run one after the
//! other, so a batch's vectors are exactly those of its inputs sent alone; each is
//! L2-normalised, as OpenAI's and llama.cpp's server's `/v1/embeddings` answer.

use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use protocol::hardware::Pooling;
use std::num::NonZeroU32;
use tokio::sync::oneshot;

/// Inputs to embed (token ids, each at least one token and at most the context).
pub struct EmbedRequest {
    /// The inputs' tokens.
    pub inputs: Vec<Vec<u32>>,
    /// Where the vectors go, in input order, or why there are none.
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// The embedding context, made on first use.
pub struct Embedder<'m> {
    model: &'m LlamaModel,
    backend: &'static LlamaBackend,
    context_length: usize,
    threads: i32,
    /// The config's pooling (`None`: the GGUF's, if it says one).
    pooling: Option<Pooling>,
    ctx: Option<LlamaContext<'m>>,
}

impl<'m> Embedder<'m> {
    /// An embedder of `model` for inputs of up to `context_length` tokens, pooling as
    /// `pooling` says (`None`: as the GGUF says).
    pub fn new(
        model: &'m LlamaModel,
        backend: &'static LlamaBackend,
        (context_length, threads): (usize, i32),
        pooling: Option<Pooling>,
    ) -> Self {
        Embedder {
            model,
            backend,
            context_length,
            threads,
            pooling,
            ctx: None,
        }
    }

    /// The pooling: the config's, else the GGUF's (`{architecture}.pooling_type`, llama.cpp's
    /// numbering). Errors: neither says one, or the GGUF's is not a vector per input.
    fn pooling(&self) -> Result<LlamaPoolingType, String> {
        let from_config = self.pooling.map(|p| match p {
            Pooling::Mean => LlamaPoolingType::Mean,
            Pooling::Cls => LlamaPoolingType::Cls,
            Pooling::Last => LlamaPoolingType::Last,
        });
        let meta = |key: &str| self.model.meta_val_str(key).ok();
        let from_gguf = meta("general.architecture")
            .and_then(|arch| meta(&format!("{arch}.pooling_type")))
            .and_then(|v| match v.trim() {
                "1" => Some(LlamaPoolingType::Mean),
                "2" => Some(LlamaPoolingType::Cls),
                "3" => Some(LlamaPoolingType::Last),
                _ => None,
            });
        from_config.or(from_gguf).ok_or_else(|| {
            "this model serves no embeddings: its GGUF names no pooling and its config sets \
             no `engine.pooling` (mean, cls or last)"
                .to_string()
        })
    }

    /// The embedding context, made on first use: the whole input is one micro-batch, as
    /// pooling needs every token at once.
    fn context(&self) -> Result<LlamaContext<'m>, String> {
        let n = NonZeroU32::new(self.context_length as u32);
        let params = LlamaContextParams::default()
            .with_embeddings(true)
            .with_pooling_type(self.pooling()?)
            .with_n_ctx(n)
            .with_n_batch(self.context_length as u32)
            .with_n_ubatch(self.context_length as u32)
            .with_n_seq_max(1)
            .with_n_threads(self.threads)
            .with_n_threads_batch(self.threads);
        let made = self.model.new_context(self.backend, params);
        made.map_err(|e| format!("the embedding context: {e}"))
    }

    /// Answer `req`.
    pub fn run(&mut self, req: EmbedRequest) {
        let vectors = req.inputs.iter().map(|t| self.embed(t)).collect();
        let _ = req.reply.send(vectors);
    }

    fn embed(&mut self, tokens: &[u32]) -> Result<Vec<f32>, String> {
        if tokens.is_empty() || tokens.len() > self.context_length {
            return Err(format!(
                "an input has {} tokens: 1 to {} are embedded",
                tokens.len(),
                self.context_length
            ));
        }
        let ctx = match self.ctx.take() {
            Some(ctx) => ctx,
            None => self.context()?,
        };
        let ctx = self.ctx.insert(ctx);
        ctx.clear_kv_cache();
        let mut batch = LlamaBatch::new(tokens.len(), 1);
        for (pos, &t) in tokens.iter().enumerate() {
            batch
                .add(LlamaToken(t as i32), pos as i32, &[0], true)
                .map_err(|e| e.to_string())?;
        }
        ctx.decode(&mut batch)
            .map_err(|e| format!("llama.cpp could not embed: {e}"))?;
        let v = ctx.embeddings_seq_ith(0).map_err(|e| e.to_string())?;
        Ok(normalized(v))
    }
}

/// `v` scaled to unit length (a zero vector stays zero).
fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    let scale = if norm > 0.0 { 1.0 / norm } else { 0.0 };
    v.iter().map(|x| x * scale).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn vectors_have_unit_length() {
        assert_eq!(super::normalized(&[3.0, 4.0]), [0.6, 0.8]);
        assert_eq!(super::normalized(&[0.0]), [0.0]);
    }
}
