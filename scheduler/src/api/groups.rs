//! `/v1/groups`: the groups jobs are submitted in (every bulk submission,
//! and single submissions naming one): counts by state, and every job's
//! outcome as JSON Lines. See `offpeak_store::groups` for when a group
//! completes.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use offpeak_store::groups::{self as db, GroupRow};

use super::error::{ApiError, ApiResult};
use super::extract::{AuthTenant, PathId, Resource};
use super::AppState;

/// `/v1/groups/{id}`.
pub struct GroupId;
impl Resource for GroupId {
    const NAME: &'static str = "group";
}

/// Jobs read per page of the results stream: each page is one query, and
/// only one page is held at a time, whatever the group's size.
pub const RESULTS_PAGE: i64 = 500;

/// A group's jobs counted by state.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupCounts {
    pub held: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub cancelled: i64,
    pub total: i64,
}

/// A group as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct GroupView {
    pub id: Uuid,
    /// The name single submissions gave it (`"group"`); null for a bulk submission's.
    #[schema(required = true)]
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub counts: GroupCounts,
    /// Credits charged so far to its finished jobs.
    pub credits: i64,
    /// When its last job ended and `group.completed` was written; null while any job is open.
    #[schema(required = true)]
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<GroupRow> for GroupView {
    fn from(r: GroupRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            created_at: r.created_at,
            counts: GroupCounts {
                held: r.held,
                queued: r.queued,
                running: r.running,
                succeeded: r.succeeded,
                failed: r.failed,
                dead: r.dead,
                cancelled: r.cancelled,
                total: r.total,
            },
            credits: r.credits,
            completed_at: r.completed_at,
        }
    }
}

/// `GET /v1/groups/{id}`.
#[utoipa::path(
    get,
    path = "/v1/groups/{id}",
    tag = "groups",
    operation_id = "get_group",
    summary = "Read a group: its jobs counted by state, credits so far, and when it completed",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The group's id (`group_id` of a bulk submission or of a job); anything else is a 404")),
    responses(
        (status = 200, description = "The group", body = GroupView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No group of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<GroupId>,
) -> ApiResult<Json<GroupView>> {
    db::get(&state.pool, tenant.id, id).await?.map(|g| Json(GroupView::from(g))).ok_or_else(|| ApiError::not_found("group"))
}

/// One line of `GET /v1/groups/{id}/results`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResultLine {
    pub id: Uuid,
    #[schema(value_type = super::schema::JobStateName)]
    pub state: &'static str,
    /// The provider's output (`succeeded` only; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub result: Option<serde_json::Value>,
    /// The error (`failed`, `dead`, or the last transient one; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub error: Option<serde_json::Value>,
    #[schema(required = true)]
    pub credits: Option<i64>,
    /// The job's `metadata`, as submitted (any JSON).
    #[schema(required = true)]
    pub metadata: Option<serde_json::Value>,
}

/// `GET /v1/groups/{id}/results`: every job of the group as JSON Lines,
/// ordered by id, read from the database a page at a time as the client
/// reads the response, so neither side holds the group in memory.
#[utoipa::path(
    get,
    path = "/v1/groups/{id}/results",
    tag = "groups",
    operation_id = "get_group_results",
    summary = "Every job of a group, one JSON object per line",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The group's id; anything else is a 404")),
    responses(
        (status = 200, description = "JSON Lines (`application/jsonl`), one `ResultLine` per job, in id order; streamed. A \
                                      database failure mid-stream ends the response early (the client sees a truncated \
                                      body, not a last line)", content_type = "application/jsonl", body = ResultLine),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No group of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn results(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<GroupId>,
) -> ApiResult<Response> {
    // The group's tenant is checked once; its jobs are all the tenant's.
    if !db::exists(&state.pool, tenant.id, id).await? {
        return Err(ApiError::not_found("group"));
    }
    let pool = state.pool.clone();
    // One page per poll of the body: the next query runs only when hyper
    // has sent the previous page and asks for more.
    let pages = futures_util::stream::try_unfold(Some(None::<Uuid>), move |cursor| {
        let pool = pool.clone();
        async move {
            let Some(after) = cursor else { return Ok::<_, std::io::Error>(None) };
            let rows = db::results_page(&pool, id, after, RESULTS_PAGE).await.map_err(|e| {
                tracing::warn!(group_id = %id, error = %e, "group results stream ended early");
                std::io::Error::other(e)
            })?;
            if rows.is_empty() {
                return Ok(None);
            }
            let next = if (rows.len() as i64) < RESULTS_PAGE { None } else { rows.last().map(|r| Some(r.id)) };
            let mut out = Vec::with_capacity(rows.len() * 128);
            for r in rows {
                let line = ResultLine {
                    id: r.id,
                    state: r.state.as_str(),
                    result: r.result,
                    error: r.error,
                    credits: r.credits,
                    metadata: r.metadata,
                };
                serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
                out.push(b'\n');
            }
            Ok(Some((Bytes::from(out), next)))
        }
    });
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], Body::from_stream(pages)).into_response())
}
