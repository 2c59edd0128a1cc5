//! The replies of `store.lua`'s operations, decoded with serde from the JSON text each
//! operation returns (`cjson.encode`). Field names are the script's; stored JSON (inputs,
//! outputs, chunks) arrives as the text it was stored as.

use protocol::job::JobView;
use protocol::{JobId, JobStatus};
use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

/// What every operation answers: its values, or why not.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome<T> {
    Ok(T),
    /// No such job.
    NotFound,
    /// The job is held by another worker (or none).
    NotHeld,
    /// The job's status does not allow the change.
    Bad {
        from: JobStatus,
        to: JobStatus,
    },
    /// The endpoint's queue is at its limit.
    Full,
    /// The worker asked to stop (`stopPod`): no new jobs.
    Retired,
}

/// An operation that answers nothing but success.
#[derive(Deserialize)]
pub struct Done {}

/// A count of jobs the operation changed (`sweep`, `lost`, `purge`).
#[derive(Deserialize)]
pub struct Count {
    pub n: usize,
}

/// A stored response's record, as the JSON text it was stored as (`response`).
#[derive(Deserialize)]
pub struct Record {
    pub r: Option<String>,
}

/// A job's status object as stored: times in ms since 1970 (Redis's clock).
#[derive(Deserialize)]
pub struct View {
    pub status: JobStatus,
    pub sub: u64,
    pub start: Option<u64>,
    pub end: Option<u64>,
    pub out: Option<String>,
    pub err: Option<String>,
    pub retries: u32,
    pub worker: Option<String>,
}

impl View {
    /// The RunPod status object of job `id`, read at `now` ms (a running job's execution time
    /// counts up to it).
    pub fn into_job_view(self, id: JobId, now: u64) -> JobView {
        JobView {
            id,
            status: self.status,
            delay_time: self.start.map(|s| s.saturating_sub(self.sub)),
            execution_time: self
                .start
                .map(|s| self.end.unwrap_or(now).saturating_sub(s)),
            output: self.out.as_deref().map(stored_json),
            error: self.err,
            retries: self.retries,
            worker_id: self.worker,
            cold_start: None,
            started_at_ms: self.start,
        }
    }
}

/// `rate`: one answer per bucket.
#[derive(Deserialize)]
pub struct Rates {
    // An empty Lua table encodes as `{}`, not `[]`: no buckets reads as none.
    #[serde(default, deserialize_with = "list_or_empty_object")]
    pub takes: Vec<Rate>,
}

fn list_or_empty_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Rate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Takes {
        List(Vec<Rate>),
        Empty {},
    }
    Ok(match Takes::deserialize(d)? {
        Takes::List(l) => l,
        Takes::Empty {} => Vec::new(),
    })
}

/// A token bucket's answer (see `crate::RateTake`).
#[derive(Deserialize)]
pub struct Rate {
    pub allowed: bool,
    pub remaining: u64,
    pub reset_ms: u64,
    pub retry_ms: u64,
}

/// `get`: the job at Redis's `now`.
#[derive(Deserialize)]
pub struct Got {
    pub now: u64,
    pub view: View,
}

/// One job handed out by `take`; `s3` is '' when the job has no S3 config, `tp` '' when it
/// has no trace context.
#[derive(Deserialize)]
pub struct Taken {
    pub id: String,
    pub input: String,
    pub s3: String,
    #[serde(default)]
    pub tp: String,
}

/// `read` / `take_stream`: the job's status, its chunk count, the chunks from the cursor.
#[derive(Deserialize)]
pub struct Read {
    pub status: JobStatus,
    pub len: usize,
    #[serde(deserialize_with = "list")]
    pub chunks: Vec<String>,
}

/// `cancel`: the status the job ended in.
#[derive(Deserialize)]
pub struct Cancelled {
    pub status: JobStatus,
}

/// `fleet`: the stored fleet view's JSON, if one is fresh.
#[derive(Deserialize)]
pub struct Fleet {
    pub fleet: Option<String>,
}

/// `is_retired`.
#[derive(Deserialize)]
pub struct Retired {
    pub retired: bool,
}

/// One job whose webhook is due.
#[derive(Deserialize)]
pub struct Hook {
    pub id: String,
    pub hook: String,
    pub view: View,
}

/// `hooks`: due webhooks at Redis's `now`.
#[derive(Deserialize)]
pub struct Hooks {
    pub now: u64,
    #[serde(deserialize_with = "list")]
    pub due: Vec<Hook>,
}

/// A list, which cjson writes as `{}` when it is empty.
pub fn list<'de, D: Deserializer<'de>, T: DeserializeOwned>(d: D) -> Result<Vec<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either<T> {
        List(Vec<T>),
        Empty {},
    }
    Ok(match Either::deserialize(d)? {
        Either::List(v) => v,
        Either::Empty {} => Vec::new(),
    })
}

/// A list reply (`take`, `stops`, `workers`), which cjson writes as `{}` when it is empty.
#[derive(Deserialize)]
#[serde(transparent)]
pub struct List<T: DeserializeOwned>(#[serde(deserialize_with = "list")] pub Vec<T>);

/// A stored JSON text (written by this store, so valid); anything else reads as a string.
pub fn stored_json(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_decode_as_the_script_writes_them() {
        let empty: Outcome<List<Taken>> = serde_json::from_str(r#"{"ok":{}}"#).unwrap();
        assert!(matches!(empty, Outcome::Ok(List(v)) if v.is_empty()));
        let nf: Outcome<Done> = serde_json::from_str(r#""not_found""#).unwrap();
        assert!(matches!(nf, Outcome::NotFound));
        let bad: Outcome<Done> =
            serde_json::from_str(r#"{"bad":{"from":"COMPLETED","to":"CANCELLED"}}"#).unwrap();
        assert!(matches!(
            bad,
            Outcome::Bad {
                from: JobStatus::Completed,
                to: JobStatus::Cancelled
            }
        ));
        // A job still running: no `end`, execution time counts to `now`.
        let got: Outcome<Got> = serde_json::from_str(
            r#"{"ok":{"now":1700000005000,"view":{"status":"IN_PROGRESS","sub":1700000000000,
            "start":1700000001000,"retries":1,"worker":"w1","out":"{\"a\":1}"}}}"#,
        )
        .unwrap();
        let Outcome::Ok(got) = got else { panic!() };
        let v = got.view.into_job_view(JobId("j".into()), got.now);
        assert_eq!(v.delay_time, Some(1000));
        assert_eq!(v.execution_time, Some(4000));
        assert_eq!(v.output, Some(serde_json::json!({"a": 1})));
        assert_eq!((v.retries, v.worker_id.as_deref()), (1, Some("w1")));
    }
}
