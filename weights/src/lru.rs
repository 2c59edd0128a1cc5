//! The disk tier's budget: each model directory's last use (the mtime of its `.last-use`
//! file, touched when a worker takes the model), the workers using it now (each holds a
//! shared flock(2) on its `.in-use` file for its life), and eviction of the least recently
//! used models not in use until the cache fits a byte budget. Removal takes the `.in-use`
//! lock exclusively (a worker starting meanwhile waits, then pulls again) and renames the
//! directory away before deleting it, so no reader ever sees half a model.

use crate::cache::Cache;
use crate::{io, Result};
use fs2::FileExt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const IN_USE: &str = ".in-use";
const LAST_USE: &str = ".last-use";

/// A worker's hold on a cached model: while it lives, eviction and `models rm` leave the
/// model alone.
#[derive(Debug)]
pub struct InUse {
    _lock: File,
}

/// One model directory of the disk tier, as `sluice models ls` shows it.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The model's name (its directory under `models/`).
    pub name: String,
    /// Bytes of every file in it.
    pub bytes: u64,
    /// When a worker last took it (else when it was pulled); `None` if unknown.
    pub last_use: Option<SystemTime>,
    /// A live worker holds it.
    pub in_use: bool,
    /// Its directory.
    pub dir: PathBuf,
}

/// Total bytes of the regular files under `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map(|m| m.len()).unwrap_or(0),
            Err(_) => 0,
        })
        .sum()
}

/// Whether some process holds `dir`'s `.in-use` lock.
fn held(dir: &Path) -> bool {
    let Ok(f) = File::open(dir.join(IN_USE)) else {
        return false;
    };
    match f.try_lock_exclusive() {
        Ok(()) => {
            let _ = FileExt::unlock(&f);
            false
        }
        Err(_) => true,
    }
}

impl Cache {
    /// Mark model `name` as used by this process until the returned hold is dropped, and
    /// record the use (LRU order). Errors: the directory cannot be written.
    pub fn hold(&self, name: &str) -> Result<InUse> {
        let dir = self.root().join("models").join(name);
        let path = dir.join(IN_USE);
        loop {
            std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
            let f = File::create(&path).map_err(io(format!("creating {}", path.display())))?;
            f.lock_shared()
                .map_err(io(format!("locking {}", path.display())))?;
            // An eviction may have removed the directory while we waited: our lock would be
            // on a deleted file. Start over on the current one.
            let same = {
                use std::os::unix::fs::MetadataExt;
                let (a, b) = (f.metadata(), std::fs::metadata(&path));
                matches!((a, b), (Ok(a), Ok(b)) if a.ino() == b.ino() && a.dev() == b.dev())
            };
            if same {
                let stamp = dir.join(LAST_USE);
                std::fs::write(&stamp, b"").map_err(io(format!("writing {}", stamp.display())))?;
                return Ok(InUse { _lock: f });
            }
        }
    }

    /// Every model directory of the disk tier, least recently used first.
    pub fn entries(&self) -> Vec<Entry> {
        let Ok(rd) = std::fs::read_dir(self.root().join("models")) else {
            return Vec::new();
        };
        let mut out: Vec<Entry> = rd
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .map(|e| {
                let dir = e.path();
                let mtime = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
                Entry {
                    name: e.file_name().to_string_lossy().into_owned(),
                    bytes: dir_bytes(&dir),
                    last_use: mtime(dir.join(LAST_USE))
                        .or_else(|| mtime(dir.join("manifest.json"))),
                    in_use: held(&dir),
                    dir,
                }
            })
            .collect();
        out.sort_by_key(|e| e.last_use);
        out
    }

    /// Remove model `name` from the disk tier unless a worker holds it; whether it was
    /// there. Errors: it is in use, or the removal failed.
    pub fn remove(&self, name: &str) -> Result<bool> {
        let dir = self.root().join("models").join(name);
        if !dir.is_dir() {
            return Ok(false);
        }
        let lock_path = dir.join(IN_USE);
        let lock =
            File::create(&lock_path).map_err(io(format!("creating {}", lock_path.display())))?;
        if lock.try_lock_exclusive().is_err() {
            return Err(crate::WeightsError::InUse(name.to_string()));
        }
        let trash = self
            .root()
            .join("models")
            .join(format!(".trash-{name}-{}", std::process::id()));
        std::fs::rename(&dir, &trash).map_err(io(format!("moving {} away", dir.display())))?;
        drop(lock);
        std::fs::remove_dir_all(&trash).map_err(io(format!("removing {}", trash.display())))?;
        Ok(true)
    }

    /// Evict least recently used models not in use (never `keep`) until the disk tier holds
    /// at most `budget` bytes; the names evicted. A budget the models in use exceed alone is
    /// left exceeded (said in the log).
    pub fn evict_to(&self, budget: u64, keep: Option<&str>) -> Result<Vec<String>> {
        let entries = self.entries();
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut evicted = Vec::new();
        for e in &entries {
            if total <= budget {
                break;
            }
            if e.in_use || Some(e.name.as_str()) == keep {
                continue;
            }
            match self.remove(&e.name) {
                Ok(true) => {
                    tracing::info!(model = %e.name, bytes = e.bytes, "evicted from the disk tier (least recently used)");
                    total = total.saturating_sub(e.bytes);
                    evicted.push(e.name.clone());
                }
                Ok(false) => {}
                // Taken by a worker since we looked: skip it.
                Err(crate::WeightsError::InUse(_)) => {}
                Err(err) => return Err(err),
            }
        }
        if total > budget {
            tracing::warn!(
                total,
                budget,
                "the disk tier is over its budget with models in use"
            );
        }
        Ok(evicted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(c: &Cache, name: &str, bytes: usize) {
        let d = c.root().join("models").join(name);
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("w.gguf"), vec![0u8; bytes]).unwrap();
        std::fs::write(d.join("manifest.json"), b"{}").unwrap();
    }

    #[test]
    fn least_recently_used_models_go_first_and_models_in_use_never() {
        let tmp = tempfile::tempdir().unwrap();
        let c = Cache::new(tmp.path());
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            model(&c, n, 1000);
            let stamp = c.root().join("models").join(n).join(LAST_USE);
            std::fs::write(&stamp, b"").unwrap();
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000 + i as u64);
            File::options()
                .write(true)
                .open(&stamp)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        let names = |c: &Cache| c.entries().into_iter().map(|e| e.name).collect::<Vec<_>>();
        assert_eq!(names(&c), ["a", "b", "c"], "oldest use first");
        // `a` is the least recently used but a worker holds it: `b` goes instead.
        let hold = c.hold("a").unwrap();
        assert!(c.entries().iter().find(|e| e.name == "a").unwrap().in_use);
        assert_eq!(c.evict_to(2100, None).unwrap(), ["b"]);
        assert!(matches!(c.remove("a"), Err(crate::WeightsError::InUse(_))));
        drop(hold);
        // Held again (its use is now the newest): `c` goes next; then `a`, once released.
        assert_eq!(names(&c), ["c", "a"]);
        assert_eq!(c.evict_to(1100, None).unwrap(), ["c"]);
        assert_eq!(c.evict_to(0, Some("a")).unwrap(), Vec::<String>::new());
        assert!(c.remove("a").unwrap());
        assert!(names(&c).is_empty() && !c.remove("a").unwrap());
    }
}
