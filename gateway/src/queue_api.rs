//! The client-facing queue API (`/v2/{endpoint}/...`, RunPod's shapes).

use crate::error::{GatewayError, RunpodError};
use crate::AppState;
use axum::extract::{Path, State};
use axum::Json;
use protocol::job::JobView;
use protocol::JobId;

/// `GET|POST /v2/{endpoint}/status/{id}`: the job's status object; 404 when unknown or expired.
pub async fn status(
    State(gw): State<AppState>,
    Path((endpoint, job)): Path<(String, String)>,
) -> Result<Json<JobView>, RunpodError> {
    gw.endpoint(&endpoint)?;
    let id = JobId(job);
    match gw.store.get(&id).await? {
        Some(view) => Ok(Json(view)),
        None => Err(GatewayError::NotFound(format!("job `{id}` not found")).into()),
    }
}
