//! `/v1/jobs`: submit one or many, read, list, cancel.
//!
//! A request becomes a [`Submission`] once, here at the edge: model known,
//! timezone parsed, input an object within limits, no NUL characters
//! (PostgreSQL's JSONB and TEXT cannot store them). Nothing is written
//! until all of that holds, so bad input stores nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use offpeak_shared::db::jobs::{self as db, CancelOutcome, InsertOutcome, JobRow, ListFilter, NewJob};
use offpeak_shared::db::tenants::Tenant;
use offpeak_shared::job::{JobState, Priority};
use offpeak_shared::window::{self, parse_timezone};

use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, AuthTenant, JsonBody, QueryParams};
use super::AppState;
use crate::metrics;

const MAX_MODEL_LEN: usize = 100;
const MAX_USER_ID_LEN: usize = 200;
const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    model: String,
    input: Value,
    #[serde(default)]
    priority: Priority,
    timezone: Option<String>,
    user_id: Option<String>,
    metadata: Option<Value>,
}

/// `POST /v1/jobs/bulk`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    model: String,
    inputs: Vec<Value>,
    #[serde(default)]
    priority: Priority,
    timezone: Option<String>,
    user_id: Option<String>,
    metadata: Option<Value>,
}

/// A job as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct JobView {
    pub id: Uuid,
    pub state: String,
    pub model: String,
    pub input: Value,
    pub priority: String,
    pub timezone: String,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub release_at: DateTime<Utc>,
    pub window_closes_at: Option<DateTime<Utc>>,
    pub batch_id: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub credits: Option<i64>,
    pub cache_hit: bool,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<JobRow> for JobView {
    fn from(r: JobRow) -> Self {
        Self {
            id: r.id,
            state: r.state,
            model: r.model,
            input: r.input,
            priority: r.priority,
            timezone: r.timezone,
            user_id: r.user_id,
            metadata: r.metadata,
            release_at: r.release_at,
            window_closes_at: r.window_closes_at,
            batch_id: r.batch_id,
            attempts: r.attempts,
            max_attempts: r.max_attempts,
            result: r.result,
            error: r.error,
            credits: r.credits,
            cache_hit: r.cache_hit,
            created_at: r.created_at,
            queued_at: r.queued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        }
    }
}

/// The fields every submission shares, validated.
struct Common {
    model: String,
    priority: Priority,
    timezone: String,
    release_at: DateTime<Utc>,
    window_closes_at: Option<DateTime<Utc>>,
    user_id: Option<String>,
    metadata: Option<Value>,
    now: DateTime<Utc>,
}

fn validate_common(
    state: &AppState,
    tenant: &Tenant,
    model: String,
    priority: Priority,
    timezone: Option<String>,
    user_id: Option<String>,
    metadata: Option<Value>,
) -> ApiResult<Common> {
    let limits = &state.config.limits;
    if model.len() > MAX_MODEL_LEN || state.config.prices.price(&model).is_none() {
        let known: Vec<&str> = state.config.prices.models().collect();
        return Err(ApiError::invalid(
            "unknown_model",
            "model",
            format!("unknown model '{}'; known models: {}", truncate(&model, MAX_MODEL_LEN), known.join(", ")),
        ));
    }
    let timezone = timezone.unwrap_or_else(|| tenant.timezone.clone());
    let tz = parse_timezone(&timezone).map_err(|e| ApiError::invalid("invalid_timezone", "timezone", e.to_string()))?;
    if let Some(u) = &user_id {
        if u.is_empty() || u.len() > MAX_USER_ID_LEN || u.contains('\0') {
            return Err(ApiError::invalid(
                "invalid_field",
                "user_id",
                format!("user_id must be 1 to {MAX_USER_ID_LEN} bytes without NUL characters"),
            ));
        }
    }
    if let Some(m) = &metadata {
        check_json("metadata", m, limits.max_metadata_bytes, false)?;
    }
    let now = state.clock.now();
    let (release_at, window_closes_at) = match priority {
        Priority::Normal => (now, None),
        Priority::Low => {
            let w = window::next_window(tz, now, &state.config.window);
            (w.opens_at, Some(w.closes_at))
        }
    };
    Ok(Common { model, priority, timezone, release_at, window_closes_at, user_id, metadata, now })
}

/// An input or metadata value: an object (for inputs), within the size
/// limit, with no NUL in any string or key.
fn check_json(field: &str, v: &Value, max_bytes: usize, must_be_object: bool) -> ApiResult<()> {
    if must_be_object && !v.is_object() {
        return Err(ApiError::invalid("invalid_input", field, format!("{field} must be a JSON object")));
    }
    let size = v.to_string().len();
    if size > max_bytes {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("{field} is {size} bytes; the limit is {max_bytes}"),
        )
        .with_field(field));
    }
    if has_nul(v) {
        return Err(ApiError::invalid("invalid_input", field, format!("{field} contains a NUL (\\u0000) character, which cannot be stored")));
    }
    Ok(())
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn new_job(tenant: &Tenant, c: &Common, input: Value, max_attempts: i32) -> NewJob {
    NewJob {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        model: c.model.clone(),
        input,
        priority: c.priority,
        timezone: c.timezone.clone(),
        user_id: c.user_id.clone(),
        metadata: c.metadata.clone(),
        release_at: c.release_at,
        window_closes_at: c.window_closes_at,
        max_attempts,
        created_at: c.now,
    }
}

/// `POST /v1/jobs`: 201 with the job; with an `Idempotency-Key` already
/// used for the same body, 200 with the original job
/// (`Idempotent-Replayed: true`); for another body, 409.
pub async fn submit(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let idempotency_key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "invalid_idempotency_key",
                        format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
                    )
                })?;
            Some(k.to_owned())
        }
    };
    let raw: Value = parse_json(&body)?;
    let req: SubmitRequest = parse_json(&body)?;
    check_json("input", &req.input, state.config.limits.max_input_bytes, true)?;
    let common = validate_common(&state, &tenant, req.model, req.priority, req.timezone, req.user_id, req.metadata)?;
    let job = new_job(&tenant, &common, req.input, state.config.max_attempts);
    let request_hash = offpeak_shared::canonical_hash(&raw);
    let idempotency = idempotency_key.as_deref().map(|k| (k, request_hash.as_slice()));
    match db::insert_one(&state.pool, &job, idempotency).await? {
        InsertOutcome::Inserted(row) => {
            metrics::JOBS_SUBMITTED.with_label_values(&[&row.model, &row.priority]).inc();
            Ok((StatusCode::CREATED, Json(JobView::from(row))).into_response())
        }
        InsertOutcome::Existing(row) => {
            if row.request_hash.as_deref() == Some(request_hash.as_slice()) {
                Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(JobView::from(row))).into_response())
            } else {
                Err(ApiError::conflict(
                    "idempotency_conflict",
                    "this Idempotency-Key was already used with a different request body",
                ))
            }
        }
    }
}

#[derive(Debug, Serialize)]
pub struct BulkResponse {
    ids: Vec<Uuid>,
    count: usize,
    state: &'static str,
    release_at: DateTime<Utc>,
    window_closes_at: Option<DateTime<Utc>>,
}

/// `POST /v1/jobs/bulk`: many inputs of one model, one transaction.
pub async fn submit_bulk(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    JsonBody(req): JsonBody<BulkRequest>,
) -> ApiResult<(StatusCode, Json<BulkResponse>)> {
    let limits = &state.config.limits;
    if req.inputs.is_empty() {
        return Err(ApiError::invalid("invalid_field", "inputs", "inputs must hold at least one input"));
    }
    if req.inputs.len() > limits.max_bulk_inputs {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_inputs",
            format!("{} inputs; one bulk request takes at most {}", req.inputs.len(), limits.max_bulk_inputs),
        )
        .with_field("inputs"));
    }
    for (i, input) in req.inputs.iter().enumerate() {
        check_json(&format!("inputs[{i}]"), input, limits.max_input_bytes, true)?;
    }
    let common = validate_common(&state, &tenant, req.model, req.priority, req.timezone, req.user_id, req.metadata)?;
    let template = new_job(&tenant, &common, Value::Null, state.config.max_attempts);
    let ids: Vec<Uuid> = req.inputs.iter().map(|_| Uuid::now_v7()).collect();
    db::insert_many(&state.pool, &template, &ids, &req.inputs).await?;
    metrics::JOBS_SUBMITTED
        .with_label_values(&[&template.model, template.priority.as_str()])
        .inc_by(ids.len() as u64);
    Ok((
        StatusCode::CREATED,
        Json(BulkResponse {
            count: ids.len(),
            ids,
            state: JobState::Held.as_str(),
            release_at: common.release_at,
            window_closes_at: common.window_closes_at,
        }),
    ))
}

fn parse_id(id: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(id).map_err(|_| ApiError::not_found("job"))
}

/// `GET /v1/jobs/{id}`.
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = parse_id(&id)?;
    db::get(&state.pool, tenant.id, id)
        .await?
        .map(|r| Json(r.into()))
        .ok_or_else(|| ApiError::not_found("job"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    state: Option<String>,
    model: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ListResponse {
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

const DEFAULT_PAGE: i64 = 50;
const MAX_PAGE: i64 = 1000;

/// `GET /v1/jobs?state=&model=&limit=&cursor=`: newest first.
pub async fn list(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(p): QueryParams<ListParams>,
) -> ApiResult<Json<ListResponse>> {
    let job_state = p
        .state
        .map(|s| s.parse::<JobState>())
        .transpose()
        .map_err(|e| ApiError::bad_request("invalid_query", e.to_string()).with_field("state"))?;
    let limit = match p.limit {
        None => DEFAULT_PAGE,
        Some(s) => s.parse::<i64>().ok().filter(|l| (1..=MAX_PAGE).contains(l)).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("limit must be an integer from 1 to {MAX_PAGE}")).with_field("limit")
        })?,
    };
    let before = p
        .cursor
        .map(|c| Uuid::parse_str(&c))
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned").with_field("cursor"))?;
    let filter = ListFilter { state: job_state, model: p.model, before, limit: limit + 1 };
    let mut rows = db::list(&state.pool, tenant.id, &filter).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(ListResponse { jobs: rows.into_iter().map(JobView::from).collect(), next_cursor }))
}

/// `DELETE /v1/jobs/{id}`: cancels a held or queued job; 409 once a worker
/// has started it or it has finished.
pub async fn cancel(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    Path(id): Path<String>,
) -> ApiResult<Json<JobView>> {
    let id = parse_id(&id)?;
    match db::cancel(&state.pool, tenant.id, id, state.clock.now()).await? {
        CancelOutcome::Cancelled(row) => {
            metrics::JOBS_CANCELLED.inc();
            Ok(Json(row.into()))
        }
        CancelOutcome::NotFound => Err(ApiError::not_found("job")),
        CancelOutcome::NotCancellable(row) => Err(ApiError::conflict(
            "not_cancellable",
            format!("job is {}; only held or queued jobs can be cancelled", row.state),
        )),
    }
}
