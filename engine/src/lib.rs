//! The engine side of sluice: the backends (mistral.rs, and llama.cpp with the `llamacpp`
//! feature) behind one type ([`Engine`]), the OpenAI response shapes they produce ([`shape`]),
//! and the job handler that runs an LLM endpoint's jobs on it ([`LlmHandler`], for the
//! `worker` crate's loop).

#![warn(missing_docs)]

mod backend;
#[cfg(feature = "mistralrs")]
mod bias;
#[cfg(feature = "mistralrs")]
mod counter;
pub mod devices;
mod error;
mod handler;
#[cfg(feature = "llamacpp")]
mod llamacpp;
#[cfg(feature = "mistralrs")]
mod llm;
mod logprobs;
mod prompts;
mod rules;
mod sampler;
pub mod shape;
mod tool_calls;

pub use backend::{Backend, Engine, ModelFiles};
pub use error::EngineError;
pub use handler::LlmHandler;
#[cfg(feature = "mistralrs")]
pub use llm::MistralRs;
