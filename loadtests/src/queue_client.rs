//! One job through a RunPod-style queue API (`/v2/{endpoint}/...`), timed: `run` then poll
//! `status`, `runsync`, or `run` then poll `stream`. The server's own `delayTime` (queued) and
//! `executionTime` are recorded beside the client's end-to-end time.

use crate::metrics::RequestRecord;
use protocol::job::{JobAccepted, JobView, StreamView};
use protocol::openai::response::Usage;
use protocol::vllm::VllmBatch;
use protocol::{JobId, JobStatus};
use serde::Deserialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// `--queue-mode`: how a job sent through the queue API is followed to its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueMode {
    /// POST /run, then GET /status/{id} until final.
    Run,
    /// POST /runsync (polling /status if the wait runs out).
    Runsync,
    /// POST /run, then GET /stream/{id} until final; TTFT is the first streamed chunk.
    Stream,
}

async fn send<T: serde::de::DeserializeOwned>(req: reqwest::RequestBuilder) -> Result<T, String> {
    let r = req
        .send()
        .await
        .map_err(|e| crate::client::error_kind(&e).to_string())?;
    if !r.status().is_success() {
        return Err(format!("HTTP {}", r.status().as_u16()));
    }
    r.json().await.map_err(|_| "body".to_string())
}

/// Completion tokens of a job's output: anything with OpenAI's `usage` (a completion), or
/// RunPod's vLLM-worker batches (usage on the last).
fn output_tokens(output: &Value) -> Option<usize> {
    /// Only the usage of an OpenAI-shaped object (other servers' may lack other fields).
    #[derive(Deserialize)]
    struct WithUsage {
        usage: Option<Usage>,
    }
    if let Ok(batches) = Vec::<VllmBatch>::deserialize(output) {
        return batches.last()?.usage.map(|u| u.output);
    }
    WithUsage::deserialize(output)
        .ok()?
        .usage
        .map(|u| u.completion_tokens)
}

/// Where a followed job stands: its status, chunks seen in the last poll, and (once read)
/// its status object.
struct Followed {
    status: JobStatus,
    chunks: usize,
    view: Option<JobView>,
}

/// One poll of a job, by `mode`'s route.
async fn poll(
    http: &reqwest::Client,
    base: &str,
    id: &str,
    mode: QueueMode,
) -> Result<Followed, String> {
    Ok(match mode {
        QueueMode::Stream => {
            let s: StreamView = send(http.get(format!("{base}/stream/{id}"))).await?;
            Followed {
                status: s.status,
                chunks: s.stream.len(),
                view: None,
            }
        }
        _ => {
            let v: JobView = send(http.get(format!("{base}/status/{id}"))).await?;
            Followed {
                status: v.status,
                chunks: 0,
                view: Some(v),
            }
        }
    })
}

/// One job through the queue API by `mode` (`/runsync`; `/run` then `/status` polls; `/run`
/// then `/stream` polls), timed like an OpenAI request: TTFT is the first streamed chunk (or
/// the whole latency without streaming), ITL the gaps between polls that brought chunks; the
/// server's `delayTime` and `executionTime` are kept beside. Errors land in the record.
pub async fn request(
    http: &reqwest::Client,
    base: &str,
    input: Value,
    mode: QueueMode,
    poll_every: Duration,
) -> RequestRecord {
    let mut rec = RequestRecord::default();
    let t0 = Instant::now();
    let job = match follow(http, base, input, mode, poll_every, t0, &mut rec).await {
        Ok(job) => job,
        Err(e) => {
            rec.error = Some(e);
            return rec;
        }
    };
    rec.latency = t0.elapsed();
    let view = job.view.as_ref();
    rec.delay = view.and_then(|v| v.delay_time).map(Duration::from_millis);
    rec.execution = view
        .and_then(|v| v.execution_time)
        .map(Duration::from_millis);
    match job.status {
        JobStatus::Completed => {
            rec.ok = true;
            rec.output_tokens = view
                .and_then(|v| v.output.as_ref())
                .and_then(output_tokens)
                .unwrap_or(0);
            if mode != QueueMode::Stream {
                rec.ttft = rec.latency;
            }
        }
        other => rec.error = Some(format!("job {other}")),
    }
    rec
}

/// Submit, then poll until the job is final and its stream drained (chunks may still arrive
/// with the final status); the chunk times go into `rec`. The last state, with its status
/// view when there is one.
async fn follow(
    http: &reqwest::Client,
    base: &str,
    input: Value,
    mode: QueueMode,
    poll_every: Duration,
    t0: Instant,
    rec: &mut RequestRecord,
) -> Result<Followed, String> {
    let (id, mut job) = submit(http, base, input, mode).await?;
    let mut last_chunk: Option<Instant> = None;
    while !job.status.is_final() || job.chunks > 0 {
        tokio::time::sleep(poll_every).await;
        job = poll(http, base, &id.0, mode).await?;
        if job.chunks > 0 {
            let now = Instant::now();
            match last_chunk {
                None => rec.ttft = now - t0,
                Some(p) => rec.itl.push(now - p),
            }
            last_chunk = Some(now);
        }
    }
    if job.view.is_none() {
        // The stream route reports no output or times; read them from the status, if it is
        // (still) there.
        if let Ok(v) = send::<JobView>(http.get(format!("{base}/status/{}", id.0))).await {
            job.view = Some(v).filter(|v| v.status.is_final());
        }
    }
    Ok(job)
}

/// `/runsync` (the answer may already be final) or `/run`.
async fn submit(
    http: &reqwest::Client,
    base: &str,
    input: Value,
    mode: QueueMode,
) -> Result<(JobId, Followed), String> {
    let body = json!({ "input": input });
    if mode == QueueMode::Runsync {
        let v: JobView = send(http.post(format!("{base}/runsync")).json(&body)).await?;
        let id = v.id.clone();
        let job = Followed {
            status: v.status,
            chunks: 0,
            view: Some(v),
        };
        return Ok((id, job));
    }
    let a: JobAccepted = send(http.post(format!("{base}/run")).json(&body)).await?;
    let job = Followed {
        status: a.status,
        chunks: 0,
        view: None,
    };
    Ok((a.id, job))
}
