//! A batch's state on the gateway's disk: `batches/<id>.json` holds the batch object and each
//! line's job and outcome; `batches/<id>.output.jsonl` and `.errors.jsonl` collect the answers
//! as they come. A line's answer is appended before its outcome is saved, and on load the
//! answers already written decide the outcome, so a crash between the two neither loses nor
//! repeats a line.

use crate::error::GatewayError;
use crate::files::write_json;
use protocol::openai::batch::{Batch, CheckedLine, OutputLine, RequestCounts};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// How a batch line ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Answered 200: in the output file.
    Completed,
    /// Answered with an error: in the error file.
    Failed,
    /// Never answered (the batch was cancelled or expired first).
    Dropped,
}

/// One line of a batch: where it is in the input file, its job, its outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LineState {
    /// The input line's `custom_id`.
    pub custom_id: String,
    /// Its line number in the input file, from 1.
    pub number: usize,
    /// The job running it, once queued.
    pub job: Option<String>,
    /// How it ended, once it has.
    pub outcome: Option<Outcome>,
}

/// A batch and its lines, as saved.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchRecord {
    /// The batch object clients see.
    pub batch: Batch,
    /// The endpoint whose `/v2/{endpoint}/openai/v1` route created it, if one did.
    pub scope: Option<String>,
    /// The tenant (client key) it belongs to; `None` for an admin key or no keys.
    #[serde(default)]
    pub tenant: Option<String>,
    /// Every request, in input order.
    pub lines: Vec<LineState>,
    /// The input file's lines, parsed once while some are still to be queued (not saved).
    #[serde(skip)]
    pub input: Option<Arc<Vec<CheckedLine>>>,
}

impl BatchRecord {
    /// Whether every line has a job or has ended.
    pub fn all_queued(&self) -> bool {
        self.lines
            .iter()
            .all(|l| l.job.is_some() || l.outcome.is_some())
    }
}

/// Which of a batch's answer files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answers {
    /// 200 answers.
    Output,
    /// Error answers and requests that got none.
    Errors,
}

/// Where a batch's state lives.
pub struct BatchDir(pub PathBuf);

impl BatchDir {
    fn record(&self, id: &str) -> PathBuf {
        self.0.join(format!("{id}.json"))
    }

    /// The answer file of `which` for batch `id`.
    pub fn answers(&self, id: &str, which: Answers) -> PathBuf {
        let kind = match which {
            Answers::Output => "output",
            Answers::Errors => "errors",
        };
        self.0.join(format!("{id}.{kind}.jsonl"))
    }

    /// Save a record.
    pub async fn save(&self, r: &BatchRecord) -> Result<(), GatewayError> {
        write_json(&self.record(&r.batch.id), r).await
    }

    /// Delete batch `id`'s state and answer files (what is already gone is fine).
    pub async fn remove(&self, id: &str) {
        let paths = [
            self.record(id),
            self.answers(id, Answers::Output),
            self.answers(id, Answers::Errors),
        ];
        for p in paths {
            let _ = tokio::fs::remove_file(p).await;
        }
    }

    /// Append `line` to batch `id`'s answers of `which`.
    pub async fn append(
        &self,
        id: &str,
        which: Answers,
        line: &OutputLine,
    ) -> Result<(), GatewayError> {
        let path = self.answers(id, which);
        let mut text =
            serde_json::to_string(line).map_err(|e| GatewayError::Internal(e.to_string()))?;
        text.push('\n');
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .await
            .map_err(|e| GatewayError::Internal(format!("{}: {e}", path.display())))?;
        f.write_all(text.as_bytes())
            .await
            .map_err(|e| GatewayError::Internal(format!("{}: {e}", path.display())))
    }

    /// Every saved record, its outcomes made to agree with the answers already written. Run
    /// once at start-up, before the gateway serves (so it reads synchronously).
    pub fn load_all(&self) -> std::io::Result<Vec<BatchRecord>> {
        std::fs::create_dir_all(&self.0)?;
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.0)? {
            let path = e?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match serde_json::from_slice::<BatchRecord>(&std::fs::read(&path)?) {
                Ok(mut r) => {
                    // An ended batch's outcomes were saved with its status: nothing to redo.
                    if !r.batch.status.is_final() {
                        self.reconcile(&mut r);
                    }
                    out.push(r);
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable batch state skipped")
                }
            }
        }
        Ok(out)
    }

    fn reconcile(&self, r: &mut BatchRecord) {
        let mut written: HashMap<String, Outcome> = HashMap::new();
        r.batch.usage = Default::default();
        for (which, outcome) in [
            (Answers::Output, Outcome::Completed),
            (Answers::Errors, Outcome::Failed),
        ] {
            let text =
                std::fs::read_to_string(self.answers(&r.batch.id, which)).unwrap_or_default();
            for line in text.lines() {
                if let Ok(l) = serde_json::from_str::<OutputLine>(line) {
                    let o = match &l.response {
                        Some(resp) if outcome == Outcome::Completed => {
                            r.batch.usage.add(&resp.body);
                            outcome
                        }
                        Some(_) => outcome,
                        None => Outcome::Dropped,
                    };
                    written.insert(l.custom_id, o);
                }
            }
        }
        for l in &mut r.lines {
            if let Some(o) = written.get(&l.custom_id) {
                l.outcome = Some(*o);
            }
        }
        r.batch.request_counts = counts(&r.lines);
    }
}

/// The request counts of `lines`.
pub fn counts(lines: &[LineState]) -> RequestCounts {
    let n = |o: Outcome| lines.iter().filter(|l| l.outcome == Some(o)).count();
    RequestCounts {
        total: lines.len(),
        completed: n(Outcome::Completed),
        failed: n(Outcome::Failed),
    }
}

/// Whether `path` exists and holds something.
pub async fn non_empty(path: &Path) -> bool {
    tokio::fs::metadata(path).await.is_ok_and(|m| m.len() > 0)
}
