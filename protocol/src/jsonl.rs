//! JSON Lines files (one JSON value per line), as the load tester's datasets and the
//! simulator's traces are written: blank lines are skipped, and errors name the file and line.

use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

/// Why a JSON Lines file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file could not be read (missing, unreadable, or not UTF-8).
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not valid JSON, or does not decode as the expected type.
    #[error("{path}:{line}: {source}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line's number: counts from 1, blank lines included, as editors do.
        line: usize,
        /// serde_json's error (its column is within the line).
        source: serde_json::Error,
    },
}

/// Every non-blank line of `path`, decoded as `T`, in file order.
///
/// Errors: [`JsonlError::Read`] if the file cannot be read, [`JsonlError::Line`] for the first
/// line that does not decode.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    Ok(read_numbered(path)?.into_iter().map(|(_, v)| v).collect())
}

/// Like [`read`], each value with its line number (from 1), for errors found later.
pub fn read_numbered<T: DeserializeOwned>(path: &Path) -> Result<Vec<(usize, T)>, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonlError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map(|v| (i + 1, v))
                .map_err(|source| JsonlError::Line {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skips_blank_lines_and_names_the_bad_one() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("t.jsonl");
        std::fs::write(&p, "1\n\n  \n2\n").unwrap();
        assert_eq!(read::<u32>(&p).unwrap(), [1, 2]);
        std::fs::write(&p, "1\n\n{oops\n").unwrap();
        let e = read::<u32>(&p).unwrap_err().to_string();
        assert!(e.contains("t.jsonl:3: "), "{e}");
        let e = read::<u32>(&tmp.path().join("none"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("reading "), "{e}");
    }
}
