//! `sluice bench`: a load generator for any OpenAI-compatible server (sluice, llama.cpp's
//! server, vLLM, mistral.rs's server), measuring streamed requests the way vLLM's
//! `benchmark_serving` does. Flag names follow `vllm bench serve`.
//!
//! Workloads: fixed concurrency, open-loop arrivals (Poisson or gamma), phases of different
//! rates (bursts, ramps, idle gaps), sweeps over concurrencies or rates, and A/B runs that
//! alternate two servers. Every run is bounded by a request count and a time limit.

#![warn(missing_docs)]

mod args;
pub mod arrivals;
mod client;
pub mod dataset;
pub mod metrics;
mod modes;
pub mod queue_client;
pub mod report;
mod runner;

pub use args::{Api, BenchArgs, DatasetName};
pub use dataset::BUILTIN as BUILTIN_PROMPTS;
pub use modes::main;
pub use runner::{run, Run};
