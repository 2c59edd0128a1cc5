//! Wire contracts shared by every sluice role: the OpenAI request schema, the job
//! (RunPod-style) schema and worker protocol, SSE framing and the deployment config schema.
//!
//! This crate has no I/O beyond reading config files, so every other crate can depend on it.

#![warn(missing_docs)]

pub mod anthropic;
pub mod config;
pub mod hardware;
pub mod health;
pub mod job;
pub mod jsonl;
pub mod keys;
pub mod metrics;
pub mod nesting;
pub mod openai;
pub mod openapi;
pub mod responses;
pub mod routes;
pub mod sizing;
pub mod sse;
pub mod vllm;

pub use config::{
    ActivationDType, ConfigError, CustomEndpoint, Deployment, EngineSettings, GatewaySettings,
    GpuChoice, ModelConfig, ScalingSettings, SluiceConfig, SourceSettings, WeightFormat,
};
pub use hardware::{Architecture, EngineBackend, GpuTable, GpuType};
pub use job::{JobId, JobStatus};
