//! The dashboard's two changes, one job at a time: retry a dead or failed
//! job, cancel a held or queued one. Both are POSTs that need the operator
//! ([`Operator`]) and the anti-CSRF header ([`UiHeader`]); a job in another
//! state is a 409 saying which state it is in.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};

use offpeak_core::job::JobState;
use offpeak_store::jobs::{self as jobs_db, CancelOutcome};
use offpeak_store::operator::RetryFilter;

use super::auth::{Operator, UiHeader};
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{parse_json, require_object, JobId, PathId, RawBody};
use crate::api::jobs::JobView;
use crate::api::AppState;
use crate::metrics;

/// The body of a retry; none at all means the defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    /// Release at once, instead of in the job's next off-peak window
    /// (`low` priority; a `normal` job is always released at once).
    #[serde(default)]
    pub now: bool,
}

/// The job after the change.
#[derive(Debug, Serialize)]
pub struct ActionResponse {
    pub job: JobView,
}

fn not_retryable(state: JobState) -> ApiError {
    ApiError::conflict("not_retryable", format!("job is {state}; only dead or failed jobs can be retried"))
}

/// `POST /ui/api/jobs/{id}/retry`: a dead or failed job goes back to
/// `held` with fresh attempts, due in its next off-peak window (or at once
/// with `{"now": true}`, and always for `normal` priority), exactly as
/// `offpeak-scheduler jobs retry` does.
pub async fn retry(
    State(state): State<AppState>,
    _: Operator,
    _: UiHeader,
    PathId(id, _): PathId<JobId>,
    RawBody(body): RawBody,
) -> ApiResult<Json<ActionResponse>> {
    let req: RetryRequest = if body.iter().all(u8::is_ascii_whitespace) {
        RetryRequest::default()
    } else {
        require_object(&body)?;
        parse_json(&body)?
    };
    let job = jobs_db::get_any(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    if !matches!(job.state, JobState::Dead | JobState::Failed) {
        return Err(not_retryable(job.state));
    }
    let filter = RetryFilter { states: vec![JobState::Dead, JobState::Failed], job_id: Some(id), tenant_id: None, model: None, limit: 1 };
    let moved = crate::ops::retry_jobs(&state.pool, &filter, req.now, &state.config.window, state.clock.now()).await?;
    if moved.is_empty() {
        // Another operator got there first.
        let current = jobs_db::get_any(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
        return Err(not_retryable(current.state));
    }
    tracing::info!(job_id = %id, tenant_id = %job.tenant_id, release_now = req.now, "operator retried a job from the dashboard");
    let row = jobs_db::get_any(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    Ok(Json(ActionResponse { job: row.into() }))
}

/// `POST /ui/api/jobs/{id}/cancel`: a held or queued job is cancelled, as
/// its tenant's `DELETE /v1/jobs/{id}` would.
pub async fn cancel(
    State(state): State<AppState>,
    _: Operator,
    _: UiHeader,
    PathId(id, _): PathId<JobId>,
) -> ApiResult<Json<ActionResponse>> {
    let job = jobs_db::get_any(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    match jobs_db::cancel(&state.pool, job.tenant_id, id, state.clock.now()).await? {
        CancelOutcome::Cancelled(row) => {
            metrics::JOBS_CANCELLED.inc();
            tracing::info!(job_id = %id, tenant_id = %row.tenant_id, "operator cancelled a job from the dashboard");
            Ok(Json(ActionResponse { job: row.into() }))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found("job")),
        CancelOutcome::NotCancellable(row) => Err(ApiError::conflict(
            "not_cancellable",
            format!("job is {}; only held or queued jobs can be cancelled", row.state),
        )),
    }
}
