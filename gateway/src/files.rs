//! The gateway's file storage for the Files and Batch APIs: one directory on its disk
//! (`gateway.files_dir`), where each file is `files/<id>.data` with its object in
//! `files/<id>.json`, written to a temporary name and renamed, so a crash never leaves half a
//! file behind a valid object. Files older than the retention are deleted by [`FileStore::sweep`].

use crate::error::GatewayError;
use protocol::openai::batch::FileObject;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A file's object as saved, with the tenant (client key) it belongs to.
#[derive(Serialize, serde::Deserialize)]
struct Stored {
    #[serde(flatten)]
    object: FileObject,
    #[serde(default)]
    tenant: Option<String>,
}

impl Stored {
    /// Whether a caller of `tenant` sees the file (`None` sees all; see `auth::Caller::owns`).
    fn visible_to(&self, tenant: Option<&str>) -> bool {
        tenant.is_none() || self.tenant.as_deref() == tenant
    }
}

/// Files on the gateway's disk. Each call takes the caller's tenant: `None` sees every file;
/// a tenant sees its own (another's is a 404, as an unknown file).
pub struct FileStore {
    dir: PathBuf,
    retention: Duration,
}

/// Now, in Unix seconds.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A fresh id: `prefix` and 24 hex digits.
pub fn new_id(prefix: &str) -> String {
    // Milliseconds first (12 hex digits), then 48 random bits: ids sort by creation, so lists
    // ordered by (`created_at` in seconds, id) stay newest first within a second.
    let ms = protocol::health::epoch_ms();
    let random = rand::random::<u64>() >> 16;
    format!("{prefix}{:012x}{random:012x}", ms & 0xffff_ffff_ffff)
}

/// Whether `id` is `prefix` and 24 hex digits (anything else is never a path here).
pub fn valid_id(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

fn io<'a>(what: &str, path: &'a Path) -> impl FnOnce(std::io::Error) -> GatewayError + 'a {
    let what = what.to_string();
    move |e| GatewayError::Internal(format!("{what} {}: {e}", path.display()))
}

/// Write `bytes` to `path` atomically (a temporary name, then a rename).
pub async fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), GatewayError> {
    let tmp = path.with_extension(format!("tmp{:x}", rand::random::<u32>()));
    tokio::fs::write(&tmp, bytes)
        .await
        .map_err(io("writing", &tmp))?;
    tokio::fs::rename(&tmp, path)
        .await
        .map_err(io("renaming", path))
}

/// Write `value` as JSON to `path`, atomically.
pub async fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), GatewayError> {
    let bytes = serde_json::to_vec(value).map_err(|e| GatewayError::Internal(e.to_string()))?;
    write_atomic(path, &bytes).await
}

/// Read JSON from `path`; `None` if there is no such file.
pub async fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>, GatewayError> {
    match tokio::fs::read(path).await {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| GatewayError::Internal(format!("reading {}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io("reading", path)(e)),
    }
}

impl FileStore {
    /// The store in `dir` (created if missing), deleting files `retention` after they were
    /// stored. Errors: the directory cannot be created.
    pub fn open(dir: &Path, retention: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir.join("files"))?;
        Ok(FileStore {
            dir: dir.to_path_buf(),
            retention,
        })
    }

    /// The store's directory (the batch state lives beside the files).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: &str, ext: &str) -> PathBuf {
        self.dir.join("files").join(format!("{id}.{ext}"))
    }

    /// Store `bytes` as a new file of `tenant` named `filename` with `purpose`; returns its
    /// object.
    pub async fn create(
        &self,
        purpose: &str,
        filename: &str,
        bytes: &[u8],
        tenant: Option<&str>,
    ) -> Result<FileObject, GatewayError> {
        let id = new_id("file-");
        write_atomic(&self.path(&id, "data"), bytes).await?;
        self.publish(id, purpose, filename, bytes.len() as u64, tenant)
            .await
    }

    /// Store the file at `src` as a new file, as [`FileStore::create`] does, without copying
    /// it: the store's copy is a hard link (`src` stays; nothing writes either any more).
    pub async fn adopt(
        &self,
        purpose: &str,
        filename: &str,
        src: &Path,
        tenant: Option<&str>,
    ) -> Result<FileObject, GatewayError> {
        let id = new_id("file-");
        let data = self.path(&id, "data");
        tokio::fs::hard_link(src, &data)
            .await
            .map_err(io("linking", &data))?;
        let bytes = tokio::fs::metadata(&data)
            .await
            .map_err(io("reading", &data))?
            .len();
        self.publish(id, purpose, filename, bytes, tenant).await
    }

    /// Write the object of file `id`, whose content is in place: only then is it visible.
    async fn publish(
        &self,
        id: String,
        purpose: &str,
        filename: &str,
        bytes: u64,
        tenant: Option<&str>,
    ) -> Result<FileObject, GatewayError> {
        let created_at = unix_now();
        let stored = Stored {
            object: FileObject {
                id: id.clone(),
                object: "file".into(),
                bytes,
                created_at,
                filename: filename.to_string(),
                purpose: purpose.to_string(),
                status: "processed".into(),
                expires_at: Some(created_at + self.retention.as_secs()),
            },
            tenant: tenant.map(str::to_string),
        };
        write_json(&self.path(&id, "json"), &stored).await?;
        Ok(stored.object)
    }

    /// A file's object. Errors: [`GatewayError::NotFound`] for an unknown id or another
    /// tenant's file.
    pub async fn get(&self, id: &str, tenant: Option<&str>) -> Result<FileObject, GatewayError> {
        let missing = || GatewayError::NotFound(format!("No such File object: {id}"));
        if !valid_id(id, "file-") {
            return Err(missing());
        }
        let stored: Stored = read_json(&self.path(id, "json"))
            .await?
            .ok_or_else(missing)?;
        if !stored.visible_to(tenant) {
            return Err(missing());
        }
        Ok(stored.object)
    }

    /// A file's content. Errors: as [`FileStore::get`].
    pub async fn content(&self, id: &str, tenant: Option<&str>) -> Result<Vec<u8>, GatewayError> {
        self.get(id, tenant).await?;
        let path = self.path(id, "data");
        tokio::fs::read(&path).await.map_err(io("reading", &path))
    }

    /// Delete a file. Errors: as [`FileStore::get`].
    pub async fn delete(&self, id: &str, tenant: Option<&str>) -> Result<(), GatewayError> {
        self.get(id, tenant).await?;
        // The object first: a half-deleted file is no longer visible.
        for ext in ["json", "data"] {
            let path = self.path(id, ext);
            tokio::fs::remove_file(&path)
                .await
                .map_err(io("deleting", &path))?;
        }
        Ok(())
    }

    /// Every file's object the tenant may see, newest first.
    pub async fn list(&self, tenant: Option<&str>) -> Result<Vec<FileObject>, GatewayError> {
        let dir = self.dir.join("files");
        let mut entries = tokio::fs::read_dir(&dir)
            .await
            .map_err(io("listing", &dir))?;
        let mut out = Vec::new();
        while let Ok(Some(e)) = entries.next_entry().await {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json") {
                if let Ok(Some(f)) = read_json::<Stored>(&path).await {
                    if f.visible_to(tenant) {
                        out.push(f.object);
                    }
                }
            }
        }
        out.sort_by(|a, b| (b.created_at, &b.id).cmp(&(a.created_at, &a.id)));
        Ok(out)
    }

    /// Delete the files whose retention has passed; returns how many.
    pub async fn sweep(&self) -> Result<usize, GatewayError> {
        let now = unix_now();
        let mut n = 0;
        for f in self.list(None).await? {
            if f.expires_at.is_some_and(|t| t <= now) && self.delete(&f.id, None).await.is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_creation() {
        let first = new_id("batch_");
        std::thread::sleep(Duration::from_millis(2));
        let second = new_id("batch_");
        assert!(first < second, "{first} {second}");
        assert!(valid_id(&first, "batch_") && valid_id(&second, "batch_"));
    }

    #[tokio::test]
    async fn files_round_trip_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let f = store
            .create("batch", "in.jsonl", b"{}\n", Some("t1"))
            .await
            .unwrap();
        assert!(valid_id(&f.id, "file-"));
        assert_eq!(store.get(&f.id, Some("t1")).await.unwrap(), f);
        assert!(
            store.get(&f.id, Some("t2")).await.is_err(),
            "another tenant's file"
        );
        assert!(store.list(Some("t2")).await.unwrap().is_empty());
        assert_eq!(store.content(&f.id, None).await.unwrap(), b"{}\n");
        assert_eq!(store.list(None).await.unwrap(), vec![f.clone()]);
        assert!(matches!(
            store.get("file-../../etc", None).await,
            Err(GatewayError::NotFound(_))
        ));
        assert_eq!(store.sweep().await.unwrap(), 0);
        let gone = FileStore::open(dir.path(), Duration::ZERO).unwrap();
        let g = gone.create("batch", "x", b"x", None).await.unwrap();
        assert_eq!(gone.sweep().await.unwrap(), 1, "only the expired one");
        assert!(store.get(&g.id, None).await.is_err());
        store.delete(&f.id, None).await.unwrap();
        assert!(store.list(None).await.unwrap().is_empty());
    }
}
