//! `/v1/jobs`: submit one or many, read, list, cancel.
//!
//! A request becomes a [`Submission`] once, here at the edge
//! ([`Submission::parse`]: model routed and known, timezone parsed, inputs
//! objects within limits that PostgreSQL stores and that read back as
//! sent). Nothing is written until all of that holds, so bad input stores
//! nothing.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use offpeak_store::jobs::{self as db, Admission, CancelOutcome, InsertOutcome, JobRow, ListFilter, NewInput, NewJob};
use offpeak_store::quota::Scope;
use offpeak_store::tenants::Tenant;
use offpeak_core::job::{JobState, Priority};
use offpeak_core::semantic::{CacheChoice, CacheMode};
use offpeak_core::submission::{Input, Inputs, Request, Rules, Submission, MAX_MODEL_LEN};
use offpeak_core::tenant::release_times;

use super::error::{ApiError, ApiResult};
use super::page::Page;
use super::extract::{parse_json, AuthTenant, JobId, PathId, QueryParams, RawBody};
use super::AppState;
use crate::metrics;

const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// `POST /v1/jobs`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// A model of the price table, e.g. `flux-schnell`; any other is a 422 `unknown_model` listing them.
    /// `auto` routes by `use_case` (model routing).
    #[schema(max_length = 100, example = "flux-schnell")]
    model: String,
    #[schema(value_type = Object)]
    input: Value,
    #[serde(default)]
    #[schema(value_type = super::schema::PriorityName)]
    priority: Priority,
    /// IANA timezone whose off-peak window the job waits for; defaults to the tenant's.
    #[schema(example = "America/New_York")]
    timezone: Option<String>,
    /// The submitter's own user, for usage per user: 1 to 200 characters, no NUL characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    user_id: Option<String>,
    metadata: Option<Value>,
    /// With `"model": "auto"` only (model routing): what the output is for, e.g. `thumbnail`; the model is
    /// the routing table's for it. An unknown use case is a 422 `unknown_use_case` listing the known ones.
    #[schema(example = "thumbnail")]
    use_case: Option<String>,
    /// `true` (the default): the tenant's cache (`exact` unless the operator set it to `semantic`); `false`:
    /// neither answer this job from another job's result nor coalesce it with identical jobs, it always calls
    /// the provider; `"exact"`: the exact cache; `"semantic"`: the exact cache first, then a rewording of a
    /// prompt that succeeded (everything but the prompt equal, similarity at or above the threshold).
    #[serde(default)]
    #[schema(value_type = bool, default = true)]
    cache: CacheSetting,
    /// Adds the job to the tenant's group of this name (created by its first job): read the group with
    /// `GET /v1/groups/{id}` (`group_id` in the answer) and get `group.completed` when all its jobs have
    /// ended. 1 to 200 characters, no NUL characters. A group that has completed takes no new job (409
    /// `group_completed`).
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$", example = "thumbnails-2026-12-04")]
    group: Option<String>,
    /// Preview first: run this job now on the preview's cheap model, and record the submission's own `model`
    /// (and `use_case`) as its `upgrade` target, so that `POST /v1/jobs/{id}/upgrade` with an empty body makes
    /// the full-quality job from it. `priority` defaults to `normal` here (the preview runs now).
    #[serde(default, deserialize_with = "super::extract::object_only_opt")]
    #[schema(nullable = false)]
    preview: Option<PreviewRequest>,
}

/// `preview` of a submission: the cheap model the job runs on, as a `model` or a `use_case` (routed), not both.
/// An unknown one is a 422 naming `preview.model` or `preview.use_case`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    /// A model of the price table, e.g. `flux-schnell`.
    #[schema(max_length = 100, example = "flux-schnell")]
    model: Option<String>,
    /// A use case of the routing table, e.g. `thumbnail`.
    #[schema(example = "thumbnail")]
    use_case: Option<String>,
}

/// Whether a request body gives `priority` (a preview's defaults to `normal`).
/// Called only on a body that already parsed as a request.
fn priority_given(body: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default)]
        priority: Option<serde::de::IgnoredAny>,
    }
    serde_json::from_slice::<Probe>(body).is_ok_and(|p| p.priority.is_some())
}

/// The longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 200;

/// The `cache` field of a submission: `true`, `false`, `"exact"` or
/// `"semantic"` (see [`CacheChoice`]); anything else is a 422 naming it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheSetting(pub CacheChoice);

impl<'de> Deserialize<'de> for CacheSetting {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = CacheSetting;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("true, false, \"exact\" or \"semantic\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<CacheSetting, E> {
                Ok(CacheSetting(CacheChoice::from_bool(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CacheSetting, E> {
                match v {
                    "exact" => Ok(CacheSetting(CacheChoice::Mode(CacheMode::Exact))),
                    "semantic" => Ok(CacheSetting(CacheChoice::Mode(CacheMode::Semantic))),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for CacheSetting {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            CacheChoice::TenantDefault => s.serialize_bool(true),
            CacheChoice::Mode(CacheMode::Off) => s.serialize_bool(false),
            CacheChoice::Mode(m) => s.serialize_str(m.as_str()),
        }
    }
}

/// `POST /v1/jobs/bulk`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRequest {
    /// A model of the price table, e.g. `flux-schnell`; any other is a 422 `unknown_model` listing them.
    /// `auto` routes by `use_case` (model routing).
    #[schema(max_length = 100, example = "flux-schnell")]
    model: String,
    #[schema(value_type = Vec<Object>, min_items = 1)]
    inputs: Vec<Value>,
    #[serde(default)]
    #[schema(value_type = super::schema::PriorityName)]
    priority: Priority,
    /// IANA timezone whose off-peak window the jobs wait for; defaults to the tenant's.
    #[schema(example = "America/New_York")]
    timezone: Option<String>,
    /// The submitter's own user, for usage per user: 1 to 200 characters, no NUL characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    user_id: Option<String>,
    metadata: Option<Value>,
    /// With `"model": "auto"` only (model routing): what the output is for, e.g. `thumbnail`; the model is
    /// the routing table's for it. An unknown use case is a 422 `unknown_use_case` listing the known ones.
    #[schema(example = "thumbnail")]
    use_case: Option<String>,
    /// As `cache` of `POST /v1/jobs`, for every job of the request.
    #[serde(default)]
    #[schema(value_type = bool, default = true)]
    cache: CacheSetting,
    /// Preview first, for every job: each runs on the preview's cheap model and records the submission's own
    /// `model` (and `use_case`) as its `upgrade` target. `priority` defaults to `normal` here.
    #[serde(default, deserialize_with = "super::extract::object_only_opt")]
    #[schema(nullable = false)]
    preview: Option<PreviewRequest>,
}

/// A job as the API shows it. Every property is always present; those
/// without a value yet are `null`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct JobView {
    pub id: Uuid,
    #[schema(value_type = super::schema::JobStateName)]
    pub state: String,
    pub model: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = super::schema::PriorityName)]
    pub priority: String,
    pub timezone: String,
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(required = true)]
    pub metadata: Option<Value>,
    /// When the job is (or was) due for release: the window's opening for `low`, the submission for `normal`.
    pub release_at: DateTime<Utc>,
    /// When the job's window closes (`low` only).
    #[schema(required = true)]
    pub window_closes_at: Option<DateTime<Utc>>,
    /// The batch it was released in.
    #[schema(required = true)]
    pub batch_id: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// The provider's result, once `succeeded`.
    #[schema(required = true)]
    pub result: Option<Value>,
    /// The last error, once `failed` or `dead` (or from a failed attempt).
    #[schema(required = true)]
    pub error: Option<Value>,
    /// Credits charged, once finished.
    #[schema(required = true)]
    pub credits: Option<i64>,
    pub cache_hit: bool,
    pub created_at: DateTime<Utc>,
    #[schema(required = true)]
    pub queued_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub started_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub finished_at: Option<DateTime<Utc>>,
    /// The use case of a job submitted with `"model": "auto"`; `model` is the model it was routed to.
    #[schema(required = true)]
    pub use_case: Option<String>,
    /// The job whose result this one got (`cache_hit`) or, while `queued`, waits for: an identical job
    /// already on its way to the provider (coalescing).
    #[schema(required = true)]
    pub cache_source: Option<Uuid>,
    /// The job's group: the bulk submission it came in, or the group a single submission named.
    #[schema(required = true)]
    pub group_id: Option<Uuid>,
    /// For a cache hit, which cache answered: `exact` (the same model and input) or `semantic` (a rewording of
    /// `cache_source`'s prompt, everything else equal); null otherwise.
    #[schema(required = true, value_type = Option<super::schema::CacheKindName>)]
    pub cache_kind: Option<String>,
    /// For a `semantic` hit, the cosine similarity of this job's prompt to `cache_source`'s; null otherwise.
    #[schema(required = true)]
    pub cache_similarity: Option<f32>,
    /// The cache the job asked for, with the tenant's default applied: `exact` or `semantic` (`off`: `"cache": false`).
    #[schema(value_type = super::schema::CacheModeName)]
    pub cache: String,
    /// The job this one was upgraded from (`POST /v1/jobs/{id}/upgrade`).
    #[schema(required = true)]
    pub parent_id: Option<Uuid>,
    /// The jobs upgraded from this one, oldest first; `[]` when none.
    pub children: Vec<Uuid>,
    /// A preview's upgrade target (the submission's own `model` and `use_case`): what
    /// `POST /v1/jobs/{id}/upgrade` with an empty body upgrades it to. `null` for a job submitted without `preview`.
    #[schema(required = true)]
    pub upgrade: Option<UpgradeTarget>,
}

/// A preview's upgrade target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UpgradeTarget {
    /// The model the upgrade runs on (for a routed submission, the one its `use_case` was routed to).
    pub model: String,
    /// The use case of a routed submission.
    #[schema(required = true)]
    pub use_case: Option<String>,
}

impl From<JobRow> for JobView {
    fn from(r: JobRow) -> Self {
        let (cache_kind, cache) = (r.cache_kind().map(str::to_owned), r.cache_mode().as_str().to_owned());
        Self {
            id: r.id,
            state: r.state.as_str().to_owned(),
            model: r.model,
            input: r.input,
            priority: r.priority.as_str().to_owned(),
            timezone: r.timezone.name().to_owned(),
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
            use_case: r.use_case,
            cache_source: r.cache_source,
            group_id: r.group_id,
            cache_kind,
            cache_similarity: r.cache_similarity,
            cache,
            parent_id: r.parent_id,
            children: Vec::new(),
            upgrade: r.upgrade_model.map(|model| UpgradeTarget { model, use_case: r.upgrade_use_case }),
        }
    }
}

impl JobView {
    /// The view of `row` with its children, read from the database (only a
    /// succeeded job can have any).
    pub(crate) async fn read(pool: &sqlx::PgPool, row: JobRow) -> Result<Self, sqlx::Error> {
        let tenant_id = row.tenant_id;
        let mut views = [Self::from(row)];
        Self::fill_children(pool, tenant_id, &mut views).await?;
        let [view] = views;
        Ok(view)
    }

    /// Fills in the `children` of these views of the tenant's jobs, in one
    /// query for all of them. Only succeeded jobs are looked up: an upgrade
    /// needs a succeeded parent, and a succeeded job stays succeeded.
    pub(crate) async fn fill_children(pool: &sqlx::PgPool, tenant_id: Uuid, views: &mut [Self]) -> Result<(), sqlx::Error> {
        let ids: Vec<Uuid> = views.iter().filter(|v| v.state == JobState::Succeeded.as_str()).map(|v| v.id).collect();
        if ids.is_empty() {
            return Ok(());
        }
        let mut children = db::children(pool, tenant_id, &ids).await?;
        for v in views.iter_mut() {
            if let Some(c) = children.remove(&v.id) {
                v.children = c;
            }
        }
        Ok(())
    }
}

/// The rules submissions are parsed by: the API's prices, routes and limits.
pub(crate) fn rules(state: &AppState) -> Rules<'_> {
    let config = &state.config;
    Rules { prices: &config.prices, routes: &config.routes, limits: config.limits.submission() }
}

/// Parses a job submission by the API's rules, with the tenant's timezone
/// as the default.
fn parse_submission(state: &AppState, tenant: &Tenant, request: Request) -> ApiResult<Submission> {
    Ok(Submission::parse(request, tenant.tz, &rules(state))?)
}

impl From<SubmitRequest> for Request {
    fn from(r: SubmitRequest) -> Self {
        Self {
            model: r.model,
            use_case: r.use_case,
            priority: r.priority,
            timezone: r.timezone,
            user_id: r.user_id,
            metadata: r.metadata,
            inputs: Inputs::One(r.input),
            cache: r.cache.0,
        }
    }
}

impl From<BulkRequest> for Request {
    fn from(r: BulkRequest) -> Self {
        Self {
            model: r.model,
            use_case: r.use_case,
            priority: r.priority,
            timezone: r.timezone,
            user_id: r.user_id,
            metadata: r.metadata,
            inputs: Inputs::Many(r.inputs),
            cache: r.cache.0,
        }
    }
}

/// The job every input of a submission becomes (its `input` aside),
/// released at `now` (`normal`) or when the window opens in the
/// submission's timezone (`low`).
fn new_job(state: &AppState, tenant: &Tenant, s: &Submission, now: DateTime<Utc>) -> NewJob {
    let (release_at, window_closes_at) = release_times(s.priority(), s.tz(), now, &tenant.window(&state.config.window));
    NewJob {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        model: s.model().to_owned(),
        input: Value::Null,
        priority: s.priority(),
        timezone: s.tz(),
        user_id: s.user_id().map(str::to_owned),
        metadata: s.metadata().cloned(),
        release_at,
        window_closes_at,
        max_attempts: state.config.max_attempts,
        created_at: now,
        use_case: s.use_case().map(str::to_owned),
        group_id: None,
        semantic: s.cache().resolve(tenant.cache).is_semantic(),
        lineage: Default::default(),
    }
}

/// `POST /v1/jobs`: 201 with the job; with an `Idempotency-Key` already
/// used for the same body, 200 with the original job
/// (`Idempotent-Replayed: true`); for another body, 409.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "submit_job",
    summary = "Submit one job",
    security(("api_key" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, min_length = 1, nullable = false,
         pattern = "^[\\x21-\\x7E]([\\t\\x20-\\x7E]*[\\x21-\\x7E])?$",
         description = "1 to 255 visible ASCII characters (spaces and tabs inside). A replay with the same body (compared as JSON, key order \
                        and whitespace aside) returns the original job with 200; another body under the same key is a 409."),
    ),
    request_body(content = SubmitRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The job, stored", body = JobView),
        (status = 200, description = "A replay of an earlier request with the same `Idempotency-Key` and body: the original job",
         body = JobView, headers(("Idempotent-Replayed" = String, description = "Always `true`"))),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`), or the `Idempotency-Key` is malformed (`invalid_idempotency_key`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used with another body (`idempotency_conflict`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body, `input` or `metadata` is over its size limit (`payload_too_large`, `field` names which)", body = super::schema::ErrorBody),
        (status = 429, description = "A daily credit limit of the tenant or of the `user_id` would be exceeded (`quota_exceeded`): the message names the limit, what the day has used and when it resets; `details` has `scope`, `limit`, `used`, `requested`, `day`, `resets_at`, and `Retry-After` the seconds until the reset. Nothing is stored", body = super::schema::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds until the tenant's day resets"))),
        (status = 422, description = "Well-formed JSON that is not an acceptable job: a missing, unknown or mistyped field (`invalid_field`), an unknown model (`unknown_model`) or timezone (`invalid_timezone`), an `input` that is not an object or holds NUL characters (`invalid_input`), `model: auto` without a known `use_case` (`unknown_use_case`, `invalid_field`) or a `use_case` without `model: auto` (`invalid_field`); `field` names it", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn submit(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let idempotency_key = idempotency_key(&headers)?;
    super::extract::require_object(&body)?;
    let mut req: SubmitRequest = parse_json(&body)?;
    let group = req.group.take().map(group_name).transpose()?;
    let preview = req.preview.take();
    if preview.is_some() && !priority_given(&body) {
        req.priority = Priority::Normal;
    }
    let submission = parse_submission(&state, &tenant, req.into())?;
    let mut job = new_job(&state, &tenant, &submission, state.clock.now());
    if let Some(p) = preview {
        apply_preview(&state, &mut job, &submission, p)?;
    }
    let use_cache = submission.cache().resolve(tenant.cache).uses_cache();
    let input = submission
        .into_inputs()
        .pop()
        .map(Input::into_value)
        .ok_or_else(|| ApiError::internal("a single job's submission parsed into no input"))?;
    // The body's canonical hash is stored and compared only under an
    // Idempotency-Key, so only then is the body parsed a second time, as
    // plain JSON (it already parsed as a request above).
    let request_hash = match &idempotency_key {
        Some(_) => offpeak_core::hash::canonical_hash(&parse_json::<Value>(&body)?),
        None => Vec::new(),
    };
    let idempotency = idempotency_key.as_deref().map(|k| (k, request_hash.as_slice()));
    // A replay is answered before admission: it must return the original
    // job even once the day's quota is spent (the insert below still
    // settles a replay racing the original).
    if let Some(key) = &idempotency_key {
        if let Some(row) = db::by_idempotency_key(&state.pool, tenant.id, key).await? {
            return replay(&state.pool, row, &request_hash).await;
        }
    }
    let list_price = state.config.prices.charge(&job.model, job.priority).map_or(0, |c| c.list);
    if idempotency.is_none() && group.is_none() && state.groups.enabled() {
        // Without a key, the submission is committed together with others
        // waiting at the same moment (see `crate::group_commit`).
        let created_at = job.created_at;
        let single = crate::admission::Single { tenant: tenant.clone(), job, input, use_cache };
        return match state.groups.submit(single).await.map_err(ApiError::internal)?? {
            Ok(row) => Ok(created(&tenant, row, list_price)),
            Err(refused) => Err(refusal(&tenant, created_at, &refused)),
        };
    }
    let mut tx = state.pool.begin().await?;
    // A named group is found or created, and locked until this commits:
    // a completion pass cannot close it before the job is counted in it.
    if let Some(name) = &group {
        match offpeak_store::groups::open_named(&mut tx, tenant.id, name, job.created_at).await? {
            offpeak_store::groups::Named::Open(id) => job.group_id = Some(id),
            offpeak_store::groups::Named::Completed(id) => {
                return Err(ApiError::conflict(
                    "group_completed",
                    format!("group '{name}' ({id}) has completed: every job it held has ended, and it takes no new job; name another group"),
                )
                .with_field("group"))
            }
        }
    }
    let (inputs, admission) = admit(&mut tx, &state, &tenant, &job, vec![(job.id, input)], use_cache).await?;
    let outcome = db::insert_one(&mut tx, &job, &inputs[0], &admission, idempotency).await?;
    match outcome {
        InsertOutcome::Inserted(row) => {
            if let Some(group_id) = job.group_id {
                offpeak_store::groups::count_job(&mut tx, group_id, row.id).await?;
            }
            tx.commit().await?;
            state.due.rows([&row]);
            Ok(created(&tenant, row, list_price))
        }
        InsertOutcome::Existing(row) => {
            // Nothing was stored: the transaction ends without a commit.
            drop(tx);
            replay(&state.pool, row, &request_hash).await
        }
    }
}

/// A group name as submitted: 1 to [`MAX_GROUP_NAME_CHARS`] characters,
/// no NUL (PostgreSQL cannot store one).
fn group_name(name: String) -> ApiResult<String> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_GROUP_NAME_CHARS || name.contains('\0') {
        return Err(ApiError::invalid(
            "invalid_field",
            "group",
            format!("group must be 1 to {MAX_GROUP_NAME_CHARS} characters without NUL characters"),
        ));
    }
    Ok(name)
}

/// A submission's `preview` applied to its job: the job runs on the
/// preview's model, and the submission's own model and use case become its
/// upgrade target, with the target's list price (what `saved_preview`
/// counts the preview against).
fn apply_preview(state: &AppState, job: &mut NewJob, s: &Submission, preview: PreviewRequest) -> ApiResult<()> {
    let p = offpeak_core::preview::parse_preview(preview.model, preview.use_case, &rules(state))?;
    let list_credits = state.config.prices.price(s.model()).unwrap_or(0);
    job.lineage.upgrade =
        Some(db::UpgradeTarget { model: s.model().to_owned(), use_case: s.use_case().map(str::to_owned), list_credits });
    job.model = p.model().to_owned();
    job.use_case = p.use_case().map(str::to_owned);
    Ok(())
}

/// The 201 of a stored submission, logged and counted.
fn created(tenant: &Tenant, row: JobRow, list_price: i64) -> Response {
    tracing::debug!(job_id = %row.id, tenant_id = %tenant.id, model = %row.model, state = %row.state,
        release_at = %row.release_at, cache_hit = row.cache_hit, "job submitted");
    metrics::JOBS_SUBMITTED.with_label_values(&[row.model.as_str(), row.priority.as_str()]).inc();
    if row.cache_hit {
        count_cache_hits(&row.model, "submit", 1, list_price);
    }
    (StatusCode::CREATED, Json(JobView::from(row))).into_response()
}

/// The request's `Idempotency-Key`, if it has one.
fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else { return Ok(None) };
    let k = v.to_str().ok().filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY_LEN).ok_or_else(|| {
        ApiError::bad_request(
            "invalid_idempotency_key",
            format!("Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"),
        )
    })?;
    Ok(Some(k.to_owned()))
}

/// The 409 of an `Idempotency-Key` reused with another body, single or bulk.
fn idempotency_conflict() -> ApiError {
    ApiError::conflict("idempotency_conflict", "this Idempotency-Key was already used with a different request body")
}

/// The answer to a bulk request whose `Idempotency-Key` is taken: the
/// original submission's jobs for the same body, a 409 for another.
fn bulk_replay(original: offpeak_store::groups::KeyedBulk, request_hash: &[u8], now: DateTime<Utc>) -> ApiResult<Response> {
    if original.request_hash != request_hash {
        return Err(idempotency_conflict());
    }
    let answer = BulkResponse {
        count: original.ids.len(),
        ids: original.ids,
        state: original.state.as_str(),
        cache_hits: original.cache_hits,
        // Jobs pruned since (past the retention period) are gone from the
        // answer; their instants are then those of the group's creation.
        release_at: original.release_at.unwrap_or(now),
        window_closes_at: original.window_closes_at,
        group_id: original.group_id,
    };
    Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(answer)).into_response())
}

/// The answer to a request whose `Idempotency-Key` is taken: the original
/// job for the same body, a 409 for another.
async fn replay(pool: &sqlx::PgPool, row: JobRow, request_hash: &[u8]) -> ApiResult<Response> {
    if row.request_hash.as_deref() == Some(request_hash) {
        Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(JobView::read(pool, row).await?)).into_response())
    } else {
        Err(idempotency_conflict())
    }
}

/// Admits a submission's inputs (cache, quota; see [`crate::admission`]),
/// turning a quota refusal into a 429 that names the limit, what is used
/// and when it resets.
async fn admit(
    tx: &mut sqlx::PgConnection,
    state: &AppState,
    tenant: &Tenant,
    template: &NewJob,
    inputs: Vec<(Uuid, Value)>,
    use_cache: bool,
) -> ApiResult<(Vec<NewInput>, Admission)> {
    match crate::admission::admit(tx, tenant, template, inputs, use_cache, state.config.cache, &state.config.prices).await? {
        Ok(admitted) => Ok(admitted),
        Err(refused) => Err(refusal(tenant, template.created_at, &refused)),
    }
}

/// A quota refusal as the 429 that names the limit, what is used and when
/// it resets (`Retry-After`: the seconds until then from `submitted_at`).
fn refusal(tenant: &Tenant, submitted_at: DateTime<Utc>, refused: &crate::admission::Refused) -> ApiError {
    let scope = match &refused.exceeded.scope {
        Scope::Tenant => "tenant",
        Scope::User(_) => "user",
    };
    metrics::QUOTA_REFUSALS.with_label_values(&[scope]).inc();
    let retry_after = (refused.resets_at.with_timezone(&Utc) - submitted_at).num_seconds().max(1) as u64;
    let mut err =
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, "quota_exceeded", crate::admission::refusal_message(tenant, refused));
    if let Scope::User(_) = refused.exceeded.scope {
        err = err.with_field("user_id");
    }
    err.details = Some(serde_json::json!({
        "scope": scope,
        "limit": refused.exceeded.limit,
        "used": refused.exceeded.used,
        "requested": refused.exceeded.requested,
        "day": refused.day,
        "resets_at": refused.resets_at.with_timezone(&Utc),
    }));
    err.retry_after = Some(retry_after);
    err
}

/// Counts cache hits and what they saved.
fn count_cache_hits(model: &str, kind: &str, hits: u64, list_price: i64) {
    metrics::CACHE_HITS.with_label_values(&[model, kind]).inc_by(hits);
    metrics::CREDITS_SAVED.with_label_values(&[model, "cache"]).inc_by(hits * u64::try_from(list_price).unwrap_or(0));
}

/// The jobs of a bulk submission, all stored in one transaction.
#[derive(Debug, Serialize, ToSchema)]
pub struct BulkResponse {
    /// The jobs' ids, in the order of `inputs`.
    ids: Vec<Uuid>,
    count: usize,
    /// The state of the jobs that were not cache hits: `queued` when all of them were released with the
    /// submission (it was due at once and nothing else waited for the queue), else `held`: some or all wait
    /// for the release loop (a job identical to one on its way to the provider waits to share its result).
    #[schema(value_type = super::schema::JobStateName)]
    state: &'static str,
    /// Inputs answered at once from an identical job's result (`succeeded`, 0 credits); read them with
    /// `GET /v1/jobs/{id}`.
    cache_hits: u64,
    release_at: DateTime<Utc>,
    #[schema(required = true)]
    window_closes_at: Option<DateTime<Utc>>,
    /// The group these jobs form: `GET /v1/groups/{id}` counts them by state, `/results` streams them, and
    /// `group.completed` is sent when the last has ended.
    group_id: Uuid,
}

/// `POST /v1/jobs/bulk`: many inputs of one model, one transaction.
#[utoipa::path(
    post,
    path = "/v1/jobs/bulk",
    tag = "jobs",
    operation_id = "submit_jobs_bulk",
    summary = "Submit many jobs of one model, all or none",
    security(("api_key" = [])),
    params(
        ("Idempotency-Key" = Option<String>, Header, max_length = 255, min_length = 1, nullable = false,
         pattern = "^[\\x21-\\x7E]([\\t\\x20-\\x7E]*[\\x21-\\x7E])?$",
         description = "1 to 255 visible ASCII characters (spaces and tabs inside). Makes the submission safe to retry: the same key with the same body answers the original jobs (200) instead of storing them again, for as long as their group is kept; with another body it is a 409. Keys of bulk submissions and of single ones are apart."),
    ),
    request_body(content = BulkRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Every job, stored", body = BulkResponse),
        (status = 200, description = "A replay of an earlier request with the same `Idempotency-Key` and body: the original jobs",
         body = BulkResponse, headers(("Idempotent-Replayed" = String, description = "Always `true`"))),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`), or the `Idempotency-Key` is malformed (`invalid_idempotency_key`)", body = super::schema::ErrorBody),
        (status = 409, description = "The `Idempotency-Key` was used with another body (`idempotency_conflict`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body, an input or `metadata` is over its size limit (`payload_too_large`, `field` names which)", body = super::schema::ErrorBody),
        (status = 429, description = "A daily credit limit of the tenant or of the `user_id` would be exceeded (`quota_exceeded`): the message names the limit, what the day has used and when it resets; `details` has `scope`, `limit`, `used`, `requested`, `day`, `resets_at`, and `Retry-After` the seconds until the reset. Nothing is stored", body = super::schema::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds until the tenant's day resets"))),
        (status = 422, description = "Well-formed JSON that is not acceptable: a missing, unknown or mistyped field or no inputs (`invalid_field`), more inputs than one request takes (`too_many_inputs`, the `maxItems` of `inputs`), an unknown model (`unknown_model`) or timezone (`invalid_timezone`), an input that is not an object or holds NUL characters (`invalid_input`, `field` e.g. `inputs[3]`), `model: auto` without a known `use_case` (`unknown_use_case`, `invalid_field`) or a `use_case` without `model: auto` (`invalid_field`); nothing is stored", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn submit_bulk(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let idempotency_key = idempotency_key(&headers)?;
    super::extract::require_object(&body)?;
    let mut req: BulkRequest = parse_json(&body)?;
    let preview = req.preview.take();
    if preview.is_some() && !priority_given(&body) {
        req.priority = Priority::Normal;
    }
    // As for a single job: the canonical hash, only under a key.
    let request_hash = match &idempotency_key {
        Some(_) => offpeak_core::hash::canonical_hash(&parse_json::<Value>(&body)?),
        None => Vec::new(),
    };
    // Not held while the jobs are inserted: it may be megabytes.
    drop(body);
    // A replay is answered before admission, as for a single job.
    if let Some(key) = &idempotency_key {
        if let Some(original) = offpeak_store::groups::by_idempotency_key(&state.pool, tenant.id, key).await? {
            return bulk_replay(original, &request_hash, state.clock.now());
        }
    }
    let submission = parse_submission(&state, &tenant, req.into())?;
    let mut template = new_job(&state, &tenant, &submission, state.clock.now());
    if let Some(p) = preview {
        apply_preview(&state, &mut template, &submission, p)?;
    }
    let group_id = Uuid::now_v7();
    template.group_id = Some(group_id);
    let use_cache = submission.cache().resolve(tenant.cache).uses_cache();
    let inputs: Vec<(Uuid, Value)> =
        submission.into_inputs().into_iter().map(|i| (Uuid::now_v7(), i.into_value())).collect();
    let ids: Vec<Uuid> = inputs.iter().map(|i| i.0).collect();
    let mut tx = state.pool.begin().await?;
    let (mut inputs, admission) = admit(&mut tx, &state, &tenant, &template, inputs, use_cache).await?;
    // The group first: the insert's cache hits count as done in it at once.
    let keyed = idempotency_key.as_deref().map(|k| (k, request_hash.as_slice()));
    if !offpeak_store::groups::create(&mut tx, group_id, tenant.id, &ids, template.created_at, keyed).await? {
        // The same key committed by a request racing this one: nothing of
        // this one is kept, and the answer is that one's.
        tx.rollback().await?;
        let key = idempotency_key.as_deref().unwrap_or_default();
        let original = offpeak_store::groups::by_idempotency_key(&state.pool, tenant.id, key)
            .await?
            .ok_or_else(|| ApiError::internal("a bulk submission's Idempotency-Key was taken, and its group is not found"))?;
        return bulk_replay(original, &request_hash, state.clock.now());
    }
    // Released by this transaction, if nothing else waits for the queue.
    let direct = match &state.publisher {
        Some(publisher) => crate::direct::prepare(&mut tx, &state.room, state.config.cache, &template, &mut inputs)
            .await?
            .map(|released| (released, publisher)),
        None => None,
    };
    let cache_hits = db::insert_many(&mut tx, &template, &inputs, &admission).await?;
    let published = match direct {
        Some((released, publisher)) => released.publish(&mut tx, publisher).await?,
        None => Vec::new(),
    };
    let released: u64 = published.iter().map(|m| m.job_ids.len() as u64).sum();
    let held = (ids.len() as u64).saturating_sub(cache_hits + released);
    // `queued` only when every job that was not a cache hit was released.
    let answered_state = if held > 0 || released == 0 { JobState::Held } else { JobState::Queued };
    if keyed.is_some() && (cache_hits > 0 || answered_state != JobState::Held) {
        offpeak_store::groups::set_answer(&mut tx, group_id, cache_hits, answered_state).await?;
    }
    tx.commit().await?;
    crate::direct::count(&published);
    if held > 0 {
        state.due.job(template.release_at, template.created_at);
    }
    tracing::debug!(tenant_id = %tenant.id, model = %template.model, jobs = ids.len(), cache_hits,
        first_job_id = %ids[0], last_job_id = %ids[ids.len() - 1], "jobs submitted in bulk");
    metrics::JOBS_SUBMITTED
        .with_label_values(&[&template.model, template.priority.as_str()])
        .inc_by(ids.len() as u64);
    if cache_hits > 0 {
        count_cache_hits(&template.model, "submit", cache_hits, admission.list_price);
    }
    Ok((
        StatusCode::CREATED,
        Json(BulkResponse {
            count: ids.len(),
            ids,
            state: answered_state.as_str(),
            cache_hits,
            release_at: template.release_at,
            window_closes_at: template.window_closes_at,
            group_id,
        }),
    )
        .into_response())
}

/// `GET /v1/jobs/{id}`.
#[utoipa::path(
    get,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "get_job",
    summary = "Read one job",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The job's id; anything that is not one of the tenant's job ids is a 404")),
    responses(
        (status = 200, description = "The job", body = JobView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No job of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<JobId>,
) -> ApiResult<Json<JobView>> {
    let row = db::get(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    Ok(Json(JobView::read(&state.pool, row).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only jobs in this state.
    #[param(value_type = Option<super::schema::JobStateName>)]
    state: Option<String>,
    /// Only jobs of this model: at most 100 characters, no NUL characters.
    #[param(max_length = 100, pattern = "^[^\\u0000]*$")]
    model: Option<String>,
    /// Jobs per page, 1 to 1000; 50 by default.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// One page of the tenant's jobs, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ListResponse {
    jobs: Vec<JobView>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}


/// `GET /v1/jobs?state=&model=&limit=&cursor=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    tag = "jobs",
    operation_id = "list_jobs",
    summary = "List the tenant's jobs, newest first, a page at a time",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of jobs", body = ListResponse),
        (status = 400, description = "A bad or unknown query parameter (`invalid_query`, `invalid_cursor`); `field` names it when known", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
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
    let page = Page::parse(p.limit.as_deref(), p.cursor.as_deref())?;
    if p.model.as_deref().is_some_and(|m| m.chars().count() > MAX_MODEL_LEN || m.contains('\0')) {
        return Err(ApiError::bad_request("invalid_query", format!("model must be at most {MAX_MODEL_LEN} characters without NUL characters"))
            .with_field("model"));
    }
    let filter = ListFilter { state: job_state, model: p.model, before: page.before, limit: page.fetch() };
    let (rows, next_cursor) = page.finish(db::list(&state.pool, tenant.id, &filter).await?, |r| r.id);
    let mut jobs: Vec<JobView> = rows.into_iter().map(JobView::from).collect();
    JobView::fill_children(&state.pool, tenant.id, &mut jobs).await?;
    Ok(Json(ListResponse { jobs, next_cursor }))
}

/// `DELETE /v1/jobs/{id}`: cancels a held or queued job; 409 once a worker
/// has started it or it has finished.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "cancel_job",
    summary = "Cancel a job that has not started",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The job's id; anything that is not one of the tenant's job ids is a 404")),
    responses(
        (status = 200, description = "The job, now `cancelled`", body = JobView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No job of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 409, description = "A worker has started the job, or it has finished (`not_cancellable`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn cancel(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<JobId>,
) -> ApiResult<Json<JobView>> {
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

/// `POST /v1/jobs/{id}/upgrade`: every field is optional, and so is the body (none is `{}`).
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpgradeRequest)]
pub struct UpgradeBody {
    /// The model to upgrade to: a model of the price table, or `auto` with `use_case` (model routing). Without
    /// `model` and `use_case`, the job's recorded `upgrade` target (a preview's); a job without one is a 422
    /// `invalid_field` naming `model`.
    #[schema(max_length = 100, example = "flux-pro")]
    model: Option<String>,
    /// Model routing, as `"model": "auto"` with `use_case` on `POST /v1/jobs`: the model is the routing table's
    /// for it. Given alone, it means `"model": "auto"`.
    #[schema(example = "hero-image")]
    use_case: Option<String>,
    /// Fields merged over the job's input: each replaces the field of that name (e.g. a larger `width`); the
    /// merged input obeys the limits of a submitted one.
    #[schema(value_type = Option<Object>)]
    input: Option<Value>,
    /// `low` (the default): the full-quality render waits for the off-peak price. `normal`: it runs now.
    #[schema(value_type = Option<super::schema::PriorityName>)]
    priority: Option<Priority>,
    /// The new job's metadata; the upgraded job's when absent.
    metadata: Option<Value>,
}

impl From<UpgradeBody> for offpeak_core::preview::UpgradeRequest {
    fn from(b: UpgradeBody) -> Self {
        Self { model: b.model, use_case: b.use_case, input: b.input, priority: b.priority, metadata: b.metadata }
    }
}

/// `POST /v1/jobs/{id}/upgrade`: a new job from a succeeded one (preview
/// first, full quality on demand), once per request body.
#[utoipa::path(
    post,
    path = "/v1/jobs/{id}/upgrade",
    tag = "jobs",
    operation_id = "upgrade_job",
    summary = "Make the full-quality job from a succeeded one (a preview), once",
    description = "Creates a job (a child, with `parent_id`) from a succeeded job of the tenant: on the body's `model` or \
                   `use_case`, or else the job's recorded `upgrade` target (a job submitted with `preview`); with the job's \
                   input, the body's `input` fields merged over it; the job's timezone and `user_id`; the body's \
                   `metadata` or the job's; `low` priority unless the body says otherwise. The child goes through the \
                   same checks, daily limits, exact cache and prices as a submitted job. The same upgrade again (the \
                   same job and body, compared as JSON: key order and whitespace aside) answers the child it made with \
                   200, also when both are sent at once: a double click costs once. Another body makes another child.",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The job to upgrade; anything that is not one of the tenant's job ids is a 404")),
    request_body(content = Option<UpgradeBody>, content_type = "application/json",
                 description = "Optional: no body is `{}`, the upgrade to the job's recorded target"),
    responses(
        (status = 201, description = "The new job, stored, with `parent_id`", body = JobView),
        (status = 200, description = "The same upgrade (job and body) was made before: the job it made",
         body = JobView, headers(("Idempotent-Replayed" = String, description = "Always `true`"))),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No job of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 409, description = "The job has not succeeded (`not_upgradable`; the message names its state). Nothing is stored", body = super::schema::ErrorBody),
        (status = 413, description = "The body, the merged `input` or `metadata` is over its size limit (`payload_too_large`, `field` names which)", body = super::schema::ErrorBody),
        (status = 429, description = "A daily credit limit of the tenant or of the job's `user_id` would be exceeded (`quota_exceeded`), as for a submission: `details` and `Retry-After` say which and until when. Nothing is stored", body = super::schema::ErrorBody,
         headers(("Retry-After" = u64, description = "Seconds until the tenant's day resets"))),
        (status = 422, description = "Not an acceptable upgrade: an unknown or mistyped field (`invalid_field`), no `model` or `use_case` for a job without a recorded target (`invalid_field`, `field` `model`), an unknown model (`unknown_model`) or use case (`unknown_use_case`), `model: auto` without a `use_case` or a `use_case` with another model (`invalid_field`), an `input` that is not an object or a merged input or `metadata` holding NUL characters (`invalid_input`); `field` names it. Nothing is stored", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn upgrade(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<JobId>,
    RawBody(body): RawBody,
) -> ApiResult<Response> {
    let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"{}" } else { &body };
    super::extract::require_object(body)?;
    let req: UpgradeBody = parse_json(body)?;
    let upgrade_hash = offpeak_core::hash::canonical_hash(&parse_json::<Value>(body)?);
    let parent = db::get(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    if parent.state != JobState::Succeeded {
        return Err(ApiError::conflict(
            "not_upgradable",
            format!("job is {}; only a succeeded job can be upgraded", parent.state),
        ));
    }
    // The same upgrade again (a double click) answers the job it made,
    // before admission: also once the day's quota is spent. The unique
    // index below settles two that race.
    if let Some(child) = db::upgrade_child(&state.pool, tenant.id, id, &upgrade_hash).await? {
        return upgrade_replayed(&state, child).await;
    }
    let target = parent.upgrade_model.as_deref().map(|m| (m, parent.upgrade_use_case.as_deref()));
    let from = offpeak_core::preview::Parent {
        input: &parent.input,
        user_id: parent.user_id.as_deref(),
        metadata: parent.metadata.as_ref(),
        target,
    };
    let parsed = offpeak_core::preview::parse_upgrade(req.into(), &from, parent.timezone, &rules(&state))?;
    let use_case = parsed.use_case().map(str::to_owned);
    let submission = parsed.into_submission();
    let mut job = new_job(&state, &tenant, &submission, state.clock.now());
    job.use_case = use_case;
    job.lineage = db::Lineage {
        upgrade: None,
        parent: Some((parent.id, upgrade_hash.clone())),
        upgrade_of_preview: target.is_some(),
    };
    let use_cache = submission.cache().resolve(tenant.cache).uses_cache();
    let input = submission
        .into_inputs()
        .pop()
        .map(Input::into_value)
        .ok_or_else(|| ApiError::internal("an upgrade parsed into no input"))?;
    let list_price = state.config.prices.charge(&job.model, job.priority).map_or(0, |c| c.list);
    let mut tx = state.pool.begin().await?;
    let (inputs, admission) = admit(&mut tx, &state, &tenant, &job, vec![(job.id, input)], use_cache).await?;
    match db::insert_one(&mut tx, &job, &inputs[0], &admission, None).await {
        Ok(InsertOutcome::Inserted(row)) => {
            tx.commit().await?;
            state.due.rows([&row]);
            metrics::JOBS_UPGRADED.with_label_values(&[row.model.as_str()]).inc();
            Ok(created(&tenant, row, list_price))
        }
        Ok(InsertOutcome::Existing(_)) => Err(ApiError::internal("an upgrade without an Idempotency-Key found a keyed job")),
        Err(e) if db::is_upgrade_conflict(&e) => {
            // The same upgrade, sent at the same moment, committed first:
            // this transaction is aborted, and the other's job is the answer.
            drop(tx);
            let child = db::upgrade_child(&state.pool, tenant.id, id, &upgrade_hash)
                .await?
                .ok_or_else(|| ApiError::internal("an upgrade conflicted with a job that is not there"))?;
            upgrade_replayed(&state, child).await
        }
        Err(e) => Err(e.into()),
    }
}

/// The 200 of an upgrade made before: the job it made.
async fn upgrade_replayed(state: &AppState, child: JobRow) -> ApiResult<Response> {
    let view = JobView::read(&state.pool, child).await?;
    Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(view)).into_response())
}
