//! Remote sources over HTTP(S): a plain URL, or a Hugging Face Hub repo through the Hub's
//! `resolve` URLs (`{HF_ENDPOINT}/{repo}/resolve/{revision}/{file}`, the protocol `hf-hub`
//! and `huggingface_hub` speak; redirects to the Hub's CDN are followed). Downloads go to a
//! `.part` file next to the destination and resume from its length (an HTTP `Range`
//! request) after an interruption; the caller verifies the sha256 and renames it into place.

use crate::{io, Result, WeightsError};
use std::io::{Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to fetch and with which credentials.
pub(crate) struct Remote {
    /// The URL to GET.
    pub url: String,
    /// Sent as `Authorization: Bearer` (the Hub's `HF_TOKEN`).
    pub token: Option<String>,
}

/// The Hub's base URL: `$HF_ENDPOINT`, default `https://huggingface.co`.
fn hub_endpoint() -> String {
    std::env::var("HF_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "https://huggingface.co".into())
        .trim_end_matches('/')
        .to_string()
}

/// `HF_HUB_OFFLINE` set to a true value (`1`, `true`, `yes`, `on`): no Hub requests.
pub(crate) fn hub_offline() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

impl Remote {
    /// The Hub file `file` of `repo` at `revision` (a commit hash pins it), with `$HF_TOKEN`
    /// (or `$HUGGING_FACE_HUB_TOKEN`) if set.
    pub fn hub(repo: &str, revision: &str, file: &str) -> Remote {
        let token = ["HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|t| !t.is_empty()));
        Remote {
            url: format!("{}/{repo}/resolve/{revision}/{file}", hub_endpoint()),
            token,
        }
    }

    /// Download to `dest`'s `.part` file, resuming it; the `.part` path when complete.
    pub fn download(&self, dest: &Path) -> Result<PathBuf> {
        let part = part_path(dest);
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(io(format!("opening {}", part.display())))?;
        let have = file.metadata().map(|m| m.len()).unwrap_or(0);
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(30))
            .timeout_read(Duration::from_secs(120))
            .build();
        let mut req = agent.get(&self.url);
        if let Some(t) = &self.token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        if have > 0 {
            req = req.set("Range", &format!("bytes={have}-"));
        }
        let resp = match req.call() {
            Ok(r) => r,
            // The whole file is there already.
            Err(ureq::Error::Status(416, _)) if have > 0 => return Ok(part),
            Err(ureq::Error::Status(code, r)) => {
                return Err(WeightsError::Download {
                    url: self.url.clone(),
                    detail: format!("HTTP {code}: {}", r.into_string().unwrap_or_default()),
                })
            }
            Err(e) => {
                return Err(WeightsError::Download {
                    url: self.url.clone(),
                    detail: format!("{e} (is the source reachable from here? set HF_HUB_OFFLINE=1 to use the cache only)"),
                })
            }
        };
        if resp.status() != 206 && have > 0 {
            // The server ignored the range: start over.
            file.set_len(0)
                .map_err(io(format!("truncating {}", part.display())))?;
            file.seek(std::io::SeekFrom::Start(0))
                .map_err(io(format!("seeking {}", part.display())))?;
        }
        let total = resp
            .header("Content-Length")
            .and_then(|l| l.parse::<u64>().ok());
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
        let bar = crate::progress::bar(
            total.unwrap_or(0),
            name.as_deref().unwrap_or("download"),
            true,
        );
        let mut reader = resp.into_reader();
        let copied = std::io::copy(&mut bar.wrap_read(&mut reader), &mut file);
        bar.finish_and_clear();
        copied.map_err(|e| WeightsError::Download {
            url: self.url.clone(),
            detail: format!("interrupted ({e}); the next pull resumes it"),
        })?;
        file.flush()
            .map_err(io(format!("writing {}", part.display())))?;
        Ok(part)
    }
}

/// `x.gguf` -> `.x.gguf.part` in the same directory: kept across attempts (resumed), unlike
/// the per-process temporary names.
fn part_path(dest: &Path) -> PathBuf {
    crate::cache::hidden_sibling(dest, "part")
}
