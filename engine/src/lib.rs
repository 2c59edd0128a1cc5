//! The engine side of sluice: mistral.rs behind a small API ([`Engine`]), the OpenAI response
//! shapes it produces ([`shape`]), and the job handler that runs an LLM endpoint's jobs on it
//! ([`LlmHandler`], for the `worker` crate's loop).

#![warn(missing_docs)]

mod bias;
mod counter;
pub mod devices;
mod llm;
mod logprobs;
mod sampler;
pub mod shape;
mod tool_calls;

pub use llm::{Engine, EngineError, LlmHandler};
