//! The engine side of sluice: mistral.rs behind a small API ([`Engine`]), the OpenAI response
//! shapes it produces ([`shape`]), and the worker loop that pulls jobs from a gateway over the
//! RunPod worker protocol ([`worker`]).

#![warn(missing_docs)]

mod bias;
mod counter;
pub mod devices;
mod llm;
mod logprobs;
mod sampler;
pub mod shape;
mod tool_calls;
pub mod worker;

pub use llm::{Engine, EngineError, LlmHandler};
pub use worker::{run_worker, EchoHandler, JobHandler, StreamSink, WorkerOptions};
