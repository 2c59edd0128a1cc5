//! Moves batches forward, twice a second: queues their lines as low-priority jobs (never
//! filling more than half an endpoint's queue, so interactive requests keep their room),
//! collects the answers of finished jobs, and ends a batch when every line has ended, when it
//! is cancelled, or when its window passes. A line whose job vanished (the in-memory store
//! restarted, or the job expired) is queued again. Files past their retention are deleted
//! hourly.

use super::record::{counts, non_empty, Answers, BatchRecord, Outcome};
use super::Batches;
use crate::error::GatewayError;
use crate::files::{new_id, unix_now};
use crate::AppState;
use protocol::job::{JobPolicy, OpenAiJobInput};
use protocol::openai::batch::{
    check_input, BatchStatus, CheckedLine, LineError, LineResponse, OutputLine,
    PURPOSE_BATCH_OUTPUT,
};
use protocol::JobStatus;
use queue::NewJob;
use std::sync::Arc;
use std::time::Duration;

const TICK: Duration = Duration::from_millis(500);
/// Jobs looked at per batch and tick (they finish roughly in order, so the first ones).
const POLL_PER_TICK: usize = 512;
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Run the batch driver and the file sweeper for as long as the process lives.
pub fn spawn(gw: AppState) {
    let Some(batches) = gw.batches.clone() else {
        return;
    };
    let b = batches.clone();
    tokio::spawn(async move {
        loop {
            for id in b.active_ids().await {
                if let Err(e) = advance(&gw, &b, &id).await {
                    tracing::warn!(batch = %id, error = %e, "batch step failed; retrying");
                }
            }
            tokio::time::sleep(TICK).await;
        }
    });
    tokio::spawn(async move {
        loop {
            match batches.files.sweep().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(files = n, "deleted files past their retention"),
                Err(e) => tracing::warn!(error = %e, "file sweep failed"),
            }
            let n = batches.forget_ended().await;
            if n > 0 {
                tracing::info!(batches = n, "forgot batches ended before the retention");
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    });
}

/// One step of batch `id`, under the batch lock.
async fn advance(gw: &AppState, b: &Batches, id: &str) -> Result<(), GatewayError> {
    let mut records = b.records.lock().await;
    let Some(r) = records.get_mut(id) else {
        return Ok(());
    };
    let before = r.clone();
    collect(gw, b, r).await?;
    let expired = r.batch.expires_at.is_some_and(|t| unix_now() >= t);
    match r.batch.status {
        BatchStatus::Cancelling => {
            drop_rest(gw, b, r, "batch_cancelled", "the batch was cancelled").await?;
            finalize(b, r, BatchStatus::Cancelled).await?;
        }
        s if !s.is_final() && expired => {
            let why = "the batch's completion window passed first";
            drop_rest(gw, b, r, "batch_expired", why).await?;
            finalize(b, r, BatchStatus::Expired).await?;
        }
        BatchStatus::Validating | BatchStatus::InProgress => {
            submit(gw, b, r).await?;
            if r.all_queued() {
                r.batch.in_progress_at.get_or_insert_with(unix_now);
                r.batch.status = BatchStatus::InProgress;
            }
            if r.lines.iter().all(|l| l.outcome.is_some()) {
                finalize(b, r, BatchStatus::Completed).await?;
            }
        }
        _ => {}
    }
    r.batch.request_counts = counts(&r.lines);
    if *r != before {
        b.dir.save(r).await?;
    }
    Ok(())
}

/// Record the answers of the lines whose jobs have ended.
async fn collect(gw: &AppState, b: &Batches, r: &mut BatchRecord) -> Result<(), GatewayError> {
    let batch_id = r.batch.id.clone();
    let usage = &mut r.batch.usage;
    let running = r
        .lines
        .iter_mut()
        .filter(|l| l.outcome.is_none() && l.job.is_some());
    for line in running.take(POLL_PER_TICK) {
        let job = line.job.clone().unwrap_or_default();
        let Some(view) = gw.store.get(&protocol::JobId(job.clone())).await? else {
            // Gone before it was collected: run it again.
            line.job = None;
            continue;
        };
        let (outcome, status_code, body) = match view.status {
            JobStatus::Completed => (Outcome::Completed, 200, view.output.unwrap_or_default()),
            JobStatus::Failed | JobStatus::TimedOut | JobStatus::Cancelled => {
                let error = match view.status {
                    JobStatus::Failed => {
                        GatewayError::job_failed(view.error.unwrap_or_else(|| "failed".into()))
                    }
                    JobStatus::TimedOut => {
                        GatewayError::Timeout("the request exceeded its execution timeout".into())
                    }
                    _ => GatewayError::Internal("the request's job was cancelled".into()),
                };
                let body = serde_json::to_value(error.openai_body()).unwrap_or_default();
                (Outcome::Failed, error.status().as_u16(), body)
            }
            _ => continue,
        };
        let answer = OutputLine {
            id: new_id("batch_req_"),
            custom_id: line.custom_id.clone(),
            response: Some(LineResponse {
                status_code,
                request_id: job,
                body,
            }),
            error: None,
        };
        let which = match outcome {
            Outcome::Completed => Answers::Output,
            _ => Answers::Errors,
        };
        if outcome == Outcome::Completed {
            if let Some(r) = &answer.response {
                usage.add(&r.body);
            }
        }
        b.dir.append(&batch_id, which, &answer).await?;
        line.outcome = Some(outcome);
    }
    Ok(())
}

/// Queue the lines that have no job yet, as low-priority jobs, while the endpoint's queue
/// holds less than half its limit of low-priority work.
async fn submit(gw: &AppState, b: &Batches, r: &mut BatchRecord) -> Result<(), GatewayError> {
    if r.all_queued() {
        // Queued: the parsed input is no longer needed.
        r.input = None;
        return Ok(());
    }
    let input = match &r.input {
        Some(input) => input.clone(),
        None => {
            let input = Arc::new(read_input(b, &r.batch.input_file_id).await?);
            r.input = Some(input.clone());
            input
        }
    };
    let remaining_ms = r
        .batch
        .expires_at
        .map_or(86_400_000, |t| t.saturating_sub(unix_now()).max(1) * 1000);
    let room = gw.settings.max_queue / 2;
    let mut queued_low = std::collections::HashMap::new();
    for (line, c) in r.lines.iter_mut().zip(input.iter()) {
        if line.job.is_some() || line.outcome.is_some() {
            continue;
        }
        let Some(model) = gw.models.get(c.request.model()) else {
            continue;
        };
        let name = &model.config.name;
        let low = match queued_low.get(name) {
            Some(n) => *n,
            None => gw.store.metrics(name).await?.in_queue_low_priority,
        };
        if low >= room {
            continue;
        }
        queued_low.insert(name.clone(), low + 1);
        let input = OpenAiJobInput {
            openai_route: c.line.url.clone(),
            openai_input: c.line.body.clone(),
        };
        let job = NewJob {
            input: serde_json::to_value(input)
                .map_err(|e| GatewayError::Internal(e.to_string()))?,
            policy: JobPolicy {
                execution_timeout: model.config.scaling.execution_timeout_secs * 1000,
                ttl: remaining_ms,
                low_priority: true,
            },
            tenant: r.tenant.clone(),
            ..NewJob::default()
        };
        match gw.store.submit(name, job).await {
            Ok(id) => line.job = Some(id.0),
            Err(queue::QueueError::QueueFull(_)) => break,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The input file's lines, parsed (on a blocking thread: CPU work of the file's size). They
/// checked at upload, so a failure here is the gateway's.
async fn read_input(b: &Batches, file: &str) -> Result<Vec<CheckedLine>, GatewayError> {
    let text = String::from_utf8(b.files.content(file, None).await?)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    tokio::task::spawn_blocking(move || check_input(&text, usize::MAX))
        .await
        .map_err(|e| GatewayError::Internal(e.to_string()))?
        .map_err(|_| GatewayError::Internal("the input file no longer checks".into()))
}

/// End every line that has not ended: stop its job and write it to the error file with
/// `code`.
async fn drop_rest(
    gw: &AppState,
    b: &Batches,
    r: &mut BatchRecord,
    code: &str,
    message: &str,
) -> Result<(), GatewayError> {
    let batch_id = r.batch.id.clone();
    for line in r.lines.iter_mut().filter(|l| l.outcome.is_none()) {
        if let Some(job) = &line.job {
            // Already ended is fine: only its answer is dropped.
            let _ = gw.store.cancel(&protocol::JobId(job.clone())).await;
        }
        let answer = OutputLine {
            id: new_id("batch_req_"),
            custom_id: line.custom_id.clone(),
            response: None,
            error: Some(LineError {
                code: code.into(),
                message: message.into(),
            }),
        };
        b.dir.append(&batch_id, Answers::Errors, &answer).await?;
        line.outcome = Some(Outcome::Dropped);
    }
    Ok(())
}

/// Write the output and error files and end the batch with `status`.
async fn finalize(
    b: &Batches,
    r: &mut BatchRecord,
    status: BatchStatus,
) -> Result<(), GatewayError> {
    let now = unix_now();
    r.batch.finalizing_at.get_or_insert(now);
    let id = r.batch.id.clone();
    for which in [Answers::Output, Answers::Errors] {
        let path = b.dir.answers(&id, which);
        if !non_empty(&path).await {
            continue;
        }
        let kind = match which {
            Answers::Output => "output",
            Answers::Errors => "error",
        };
        let name = format!("{id}_{kind}.jsonl");
        let file = b
            .files
            .adopt(PURPOSE_BATCH_OUTPUT, &name, &path, r.tenant.as_deref())
            .await?;
        match which {
            Answers::Output => r.batch.output_file_id = Some(file.id),
            Answers::Errors => r.batch.error_file_id = Some(file.id),
        }
    }
    let at = match status {
        BatchStatus::Cancelled => &mut r.batch.cancelled_at,
        BatchStatus::Expired => &mut r.batch.expired_at,
        _ => &mut r.batch.completed_at,
    };
    *at = Some(now);
    r.batch.status = status;
    Ok(())
}
