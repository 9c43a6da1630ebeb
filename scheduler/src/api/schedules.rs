//! `/v1/schedules`: create, list, read, change and delete recurring
//! schedules.
//!
//! A schedule is a cron expression in an IANA timezone plus a job template
//! (nested under `job`); the firing loop (`crate::firing`) creates one job
//! per firing. Names are unique per tenant, and creating is idempotent: the
//! same definition again returns the existing schedule (200), another
//! definition under the same name is a 409. The definition is everything but
//! `paused`, so re-sending a schedule's create request after an operator
//! paused it still succeeds. The template is parsed as the job submission
//! it makes (`Submission::parse_template`), field names prefixed with `job.`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use offpeak_store::schedules::{self as db, FiringRow, InsertOutcome, ScheduleRow};
use offpeak_store::tenants::Tenant;
use offpeak_core::job::Priority;
use offpeak_core::schedule::{CatchUp, CronSchedule};
use offpeak_core::submission::{Inputs, Request, Submission, AUTO_MODEL};
use offpeak_core::tz::parse as parse_timezone;

use super::error::{ApiError, ApiResult};
use super::extract::{object_only, object_only_opt, AuthTenant, JsonBody, PathId, QueryParams, ScheduleId};
use super::page::Page;
use super::AppState;

const MAX_NAME_LEN: usize = 200;
const MAX_CRON_LEN: usize = 256;
/// How many upcoming fire times a schedule's page lists.
pub const NEXT_FIRE_TIMES: usize = 5;
/// How many recent firings a schedule's page lists.
pub const RECENT_FIRINGS: i64 = 10;

/// `POST /v1/schedules`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateScheduleRequest)]
pub struct CreateRequest {
    /// Unique per tenant: 1 to 200 characters without control characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000-\\u001F\\u007F-\\u009F]*$")]
    name: String,
    /// 5, 6 or 7 fields, or an `@` shorthand, in `timezone`; one that does not parse or never fires
    /// again is a 422 `invalid_cron` naming the field at fault. Format `cron`: JSON Schema cannot
    /// state the grammar.
    #[schema(max_length = 256, format = "cron", example = "0 3 * * *")]
    cron: String,
    /// Defaults to the tenant's timezone.
    timezone: Option<String>,
    #[serde(default)]
    #[schema(value_type = super::schema::CatchUpName)]
    catch_up: CatchUp,
    #[serde(default)]
    paused: bool,
    #[serde(deserialize_with = "object_only")]
    job: TemplateRequest,
}

/// The job each firing creates.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = JobTemplateRequest)]
pub struct TemplateRequest {
    /// A model of the price table, or `auto` to route by `use_case` (the model is chosen when the template
    /// is stored).
    #[schema(max_length = 100, example = "flux-schnell")]
    model: String,
    /// A JSON object, as a job's `input`.
    #[schema(value_type = Object)]
    input: Value,
    #[serde(default)]
    #[schema(value_type = super::schema::PriorityName)]
    priority: Priority,
    /// 1 to 200 characters, no NUL characters.
    #[schema(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    user_id: Option<String>,
    /// A JSON object; each job's gets `schedule_id`, `schedule_name` and `fire_at` added.
    #[schema(value_type = Option<Object>)]
    metadata: Option<Value>,
    /// With `model: "auto"` only (model routing): what the output is for, e.g. `thumbnail`.
    use_case: Option<String>,
    /// `false`: the jobs always call the provider, never answered from an identical job's result
    /// (for templates whose identical input should give a fresh generation each firing). Default `true`.
    #[serde(default = "yes")]
    #[schema(default = true)]
    cache: bool,
}

fn yes() -> bool {
    true
}

/// `PATCH /v1/schedules/{id}`: every field optional; `job` replaces the
/// whole template.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PatchScheduleRequest)]
pub struct PatchRequest {
    /// A new expression, as at creation (format `cron`).
    #[schema(max_length = 256, format = "cron", example = "0 4 * * *")]
    cron: Option<String>,
    timezone: Option<String>,
    #[schema(value_type = Option<super::schema::CatchUpName>)]
    catch_up: Option<CatchUp>,
    paused: Option<bool>,
    /// The new template; absent keeps the current one (null is refused).
    #[serde(default, deserialize_with = "object_only_opt")]
    #[schema(nullable = false)]
    job: Option<TemplateRequest>,
}

/// The job template as the API shows it.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = JobTemplate)]
pub struct TemplateView {
    pub model: String,
    #[schema(value_type = Object)]
    pub input: Value,
    #[schema(value_type = super::schema::PriorityName)]
    pub priority: String,
    #[schema(required = true)]
    pub user_id: Option<String>,
    #[schema(required = true)]
    pub metadata: Option<Value>,
    /// The use case of a template submitted with `model: "auto"`; `model` is the model it was routed to.
    #[schema(required = true)]
    pub use_case: Option<String>,
    /// Whether the jobs use the exact cache.
    pub cache: bool,
}

/// One upcoming fire time, in UTC and in the schedule's timezone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FireTime {
    pub utc: DateTime<Utc>,
    /// RFC 3339 with the local offset, e.g. `2027-03-14T03:00:00-04:00`.
    pub local: String,
}

/// One firing that happened.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Firing)]
pub struct FiringView {
    pub fire_at: DateTime<Utc>,
    #[schema(required = true)]
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl From<FiringRow> for FiringView {
    fn from(r: FiringRow) -> Self {
        Self { fire_at: r.fire_at, job_id: r.job_id, created_at: r.created_at }
    }
}

/// A schedule as the API shows it. `next_fire_times` and `recent_firings`
/// are given on a single schedule's responses, not in listings.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[schema(as = Schedule)]
pub struct ScheduleView {
    pub id: Uuid,
    pub name: String,
    pub cron: String,
    pub timezone: String,
    #[schema(value_type = super::schema::CatchUpName)]
    pub catch_up: String,
    pub paused: bool,
    pub job: TemplateView,
    /// The next firing not yet made; null while paused.
    #[schema(required = true)]
    pub next_fire_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Missed firings its `catch_up` policy skipped so far.
    pub missed_firings: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The next firings (none while paused); on a single schedule's responses only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_fire_times: Option<Vec<FireTime>>,
    /// The latest firings, newest first; on a single schedule's responses only.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub recent_firings: Option<Vec<FiringView>>,
}

impl From<ScheduleRow> for ScheduleView {
    fn from(r: ScheduleRow) -> Self {
        Self {
            id: r.id,
            name: r.name,
            cron: r.cron,
            timezone: r.timezone.name().to_owned(),
            catch_up: r.catch_up.as_str().to_owned(),
            paused: r.paused,
            job: TemplateView {
                model: r.model,
                input: r.input,
                priority: r.priority.as_str().to_owned(),
                user_id: r.user_id,
                metadata: r.metadata,
                use_case: r.use_case,
                cache: r.cache,
            },
            next_fire_at: r.next_fire_at,
            last_fired_at: r.last_fired_at,
            missed_firings: r.missed_firings,
            created_at: r.created_at,
            updated_at: r.updated_at,
            next_fire_times: None,
            recent_firings: None,
        }
    }
}

/// The next [`NEXT_FIRE_TIMES`] firings of a stored schedule, from its
/// `next_fire_at` on (none while paused).
#[must_use]
pub fn next_fire_times(row: &ScheduleRow) -> Vec<FireTime> {
    let (Some(first), tz) = (row.next_fire_at, row.timezone) else { return Vec::new() };
    let Ok(schedule) = CronSchedule::parse(&row.cron, tz) else { return Vec::new() };
    std::iter::once(first)
        .chain(schedule.upcoming(first))
        .take(NEXT_FIRE_TIMES)
        .map(|utc| FireTime { utc, local: utc.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::AutoSi, false) })
        .collect()
}

/// A single schedule's full view: with its next fire times and recent firings.
async fn detail(state: &AppState, row: ScheduleRow) -> ApiResult<ScheduleView> {
    let times = next_fire_times(&row);
    let firings = db::recent_firings(&state.pool, row.id, RECENT_FIRINGS).await?;
    let mut view = ScheduleView::from(row);
    view.next_fire_times = Some(times);
    view.recent_firings = Some(firings.into_iter().map(FiringView::from).collect());
    Ok(view)
}

/// A validated definition: what a create or a change stores.
struct Definition {
    schedule: CronSchedule,
    timezone: Tz,
    catch_up: CatchUp,
    template: TemplateRequest,
    /// The model the jobs get: the template's, or the one its use case is routed to.
    model: String,
}

impl Definition {
    /// SHA-256 of the canonical definition, compared on a repeated create.
    fn hash(&self) -> Vec<u8> {
        let t = &self.template;
        let mut job = json!({"model": t.model, "input": t.input, "priority": t.priority.as_str(), "user_id": t.user_id, "metadata": t.metadata});
        // Only when given, so that the hashes of schedules stored before
        // model routing existed stay the same.
        if let (Some(u), Some(job)) = (&t.use_case, job.as_object_mut()) {
            job.insert("use_case".into(), u.clone().into());
        }
        // Likewise only when it is not the default.
        if let (false, Some(job)) = (t.cache, job.as_object_mut()) {
            job.insert("cache".into(), false.into());
        }
        offpeak_core::hash::canonical_hash(&json!({
            "cron": self.schedule.expression(),
            "timezone": self.timezone.name(),
            "catch_up": self.catch_up.as_str(),
            "job": job,
        }))
    }
}

fn parse_cron(cron: &str, tz: Tz) -> ApiResult<CronSchedule> {
    if cron.len() > MAX_CRON_LEN {
        return Err(ApiError::invalid("invalid_cron", "cron", format!("cron expression is longer than {MAX_CRON_LEN} bytes")));
    }
    CronSchedule::parse(cron, tz).map_err(|e| ApiError::invalid("invalid_cron", "cron", e.to_string()))
}

fn parse_tz(name: &str) -> ApiResult<Tz> {
    parse_timezone(name).map_err(|e| ApiError::invalid("invalid_timezone", "timezone", e.to_string()))
}

/// The first firing after `now`; an expression that never fires again is a 422.
fn first_firing(schedule: &CronSchedule, now: DateTime<Utc>) -> ApiResult<DateTime<Utc>> {
    schedule.next_after(now).ok_or_else(|| {
        ApiError::invalid(
            "invalid_cron",
            "cron",
            format!("cron expression '{}' never fires after {}", schedule.expression(), now.to_rfc3339_opts(SecondsFormat::Secs, true)),
        )
    })
}

/// Parses a template as the job submission it makes
/// ([`Submission::parse_template`]) in the schedule's timezone `tz`; its
/// model is the one the jobs get (`auto` routed by `use_case`).
fn parse_template(state: &AppState, t: &TemplateRequest, tz: Tz) -> ApiResult<Submission> {
    let request = Request {
        model: t.model.clone(),
        use_case: t.use_case.clone(),
        priority: t.priority,
        timezone: None,
        user_id: t.user_id.clone(),
        metadata: t.metadata.clone(),
        inputs: Inputs::One(t.input.clone()),
        cache: offpeak_core::semantic::CacheChoice::from_bool(t.cache),
    };
    Ok(Submission::parse_template(request, tz, &super::jobs::rules(state))?)
}

fn check_name(name: &str) -> ApiResult<()> {
    // Characters, not bytes: what the document's `maxLength` counts.
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN || name.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "invalid_field",
            "name",
            format!("name must be 1 to {MAX_NAME_LEN} characters without control characters"),
        ));
    }
    Ok(())
}

/// `POST /v1/schedules`: 201 with the new schedule; 200 with the existing
/// one if the tenant already has this name with the same definition
/// (`Idempotent-Replayed: true`); 409 if with another.
#[utoipa::path(
    post,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "create_schedule",
    summary = "Create a recurring schedule",
    security(("api_key" = [])),
    request_body(content = CreateRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The schedule, stored, with its next fire times", body = ScheduleView),
        (status = 200, description = "The tenant already has a schedule of this name with the same definition: that one",
         body = ScheduleView, headers(("Idempotent-Replayed" = String, description = "Always `true`"))),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 409, description = "The tenant has a schedule of this name with another definition (`schedule_conflict`, `field` is `name`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body, the template's `input` or `metadata` is over its size limit (`payload_too_large`)", body = super::schema::ErrorBody),
        (status = 422, description = "Well-formed JSON that is not an acceptable schedule: a missing, unknown or mistyped field, a body that is not an object, a bad name (`invalid_field`), a bad cron expression or one that never fires again (`invalid_cron`), an unknown timezone (`invalid_timezone`) or model (`unknown_model`), an `input` that is not an object or holds NUL characters (`invalid_input`), `model: auto` without a known `use_case` (`unknown_use_case`, `invalid_field`) or a `use_case` without `model: auto` (`invalid_field`); `field` names it (template fields as `job.<field>`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    JsonBody(req): JsonBody<CreateRequest>,
) -> ApiResult<Response> {
    check_name(&req.name)?;
    let def = validate_new(&state, &tenant, &req)?;
    let now = state.clock.now();
    let next_fire_at = first_firing(&def.schedule, now)?;
    let row = ScheduleRow {
        id: Uuid::now_v7(),
        tenant_id: tenant.id,
        name: req.name.clone(),
        cron: def.schedule.expression().to_owned(),
        timezone: def.timezone,
        catch_up: def.catch_up,
        paused: req.paused,
        model: def.model.clone(),
        use_case: def.template.use_case.clone(),
        cache: def.template.cache,
        input: def.template.input.clone(),
        priority: def.template.priority,
        user_id: def.template.user_id.clone(),
        metadata: def.template.metadata.clone(),
        definition_hash: def.hash(),
        next_fire_at: (!req.paused).then_some(next_fire_at),
        last_fired_at: None,
        missed_firings: 0,
        created_at: now,
        updated_at: now,
    };
    let mut conn = state.pool.acquire().await?;
    match db::insert(&mut conn, &row).await? {
        InsertOutcome::Inserted(row) => Ok((StatusCode::CREATED, Json(detail(&state, row).await?)).into_response()),
        InsertOutcome::Existing(existing) if existing.definition_hash == row.definition_hash => {
            Ok((StatusCode::OK, [("idempotent-replayed", "true")], Json(detail(&state, existing).await?)).into_response())
        }
        InsertOutcome::Existing(existing) => Err(ApiError::conflict(
            "schedule_conflict",
            format!(
                "a schedule named '{}' already exists ({}) with a different definition; change it with PATCH /v1/schedules/{}",
                existing.name, existing.id, existing.id
            ),
        )
        .with_field("name")),
    }
}

fn validate_new(state: &AppState, tenant: &Tenant, req: &CreateRequest) -> ApiResult<Definition> {
    let timezone = match &req.timezone {
        Some(name) => parse_tz(name)?,
        None => tenant.tz,
    };
    let schedule = parse_cron(&req.cron, timezone)?;
    let model = parse_template(state, &req.job, timezone)?.model().to_owned();
    Ok(Definition { schedule, timezone, catch_up: req.catch_up, template: req.job.clone(), model })
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Schedules per page, 1 to 1000; 50 by default.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// One page of the tenant's schedules, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ScheduleList)]
pub struct ListResponse {
    schedules: Vec<ScheduleView>,
    /// Pass as `cursor` for the next page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// `GET /v1/schedules?limit=&cursor=`: newest first.
#[utoipa::path(
    get,
    path = "/v1/schedules",
    tag = "schedules",
    operation_id = "list_schedules",
    summary = "List the tenant's schedules, newest first, a page at a time",
    security(("api_key" = [])),
    params(ListParams),
    responses(
        (status = 200, description = "A page of schedules (without next fire times and firings)", body = ListResponse),
        (status = 400, description = "A bad or unknown query parameter (`invalid_query`, `invalid_cursor`)", body = super::schema::ErrorBody),
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
    let page = Page::parse(p.limit.as_deref(), p.cursor.as_deref())?;
    let (rows, next_cursor) = page.finish(db::list(&state.pool, tenant.id, page.before, page.fetch()).await?, |r| r.id);
    Ok(Json(ListResponse { schedules: rows.into_iter().map(ScheduleView::from).collect(), next_cursor }))
}

/// `GET /v1/schedules/{id}`: with the next fire times and recent firings.
#[utoipa::path(
    get,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "get_schedule",
    summary = "Read one schedule, with its next fire times and recent firings",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id; anything that is not one of the tenant's schedule ids is a 404")),
    responses(
        (status = 200, description = "The schedule", body = ScheduleView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No schedule of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<ScheduleId>,
) -> ApiResult<Json<ScheduleView>> {
    let row = db::get(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Json(detail(&state, row).await?))
}

/// `PATCH /v1/schedules/{id}`: pause, resume, or change the expression,
/// timezone, catch-up policy or template.
///
/// Pausing stops firings. Resuming, or changing the expression or timezone
/// of a running schedule, restarts it from now: the next firing is the first
/// after the change, with no burst of firings missed meanwhile.
#[utoipa::path(
    patch,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "patch_schedule",
    summary = "Pause, resume or change a schedule",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id; anything that is not one of the tenant's schedule ids is a 404")),
    request_body(content = PatchRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The schedule as changed", body = ScheduleView),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No schedule of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body, the template's `input` or `metadata` is over its size limit (`payload_too_large`)", body = super::schema::ErrorBody),
        (status = 422, description = "Well-formed JSON that is not an acceptable schedule: a missing, unknown or mistyped field, a body that is not an object, a bad name (`invalid_field`), a bad cron expression or one that never fires again (`invalid_cron`), an unknown timezone (`invalid_timezone`) or model (`unknown_model`), an `input` that is not an object or holds NUL characters (`invalid_input`), `model: auto` without a known `use_case` (`unknown_use_case`, `invalid_field`) or a `use_case` without `model: auto` (`invalid_field`); `field` names it (template fields as `job.<field>`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn patch(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<ScheduleId>,
    JsonBody(req): JsonBody<PatchRequest>,
) -> ApiResult<Json<ScheduleView>> {
    // Validate what can be validated before taking the row lock. The
    // template's checks do not depend on the schedule's timezone, which
    // is only known with the row.
    if let Some(t) = &req.job {
        parse_template(&state, t, Tz::UTC)?;
    }
    if let Some(tz) = &req.timezone {
        parse_tz(tz)?;
    }
    let mut tx = state.pool.begin().await?;
    let row = db::lock(&mut tx, Some(tenant.id), id).await?.ok_or_else(|| ApiError::not_found("schedule"))?;
    let now = state.clock.now();
    let updated = apply_patch(&state, row, req, now)?;
    let stored = db::update(&mut *tx, &updated).await?;
    tx.commit().await?;
    Ok(Json(detail(&state, stored).await?))
}

fn apply_patch(state: &AppState, mut row: ScheduleRow, req: PatchRequest, now: DateTime<Utc>) -> ApiResult<ScheduleRow> {
    let timezone = match &req.timezone {
        Some(name) => parse_tz(name)?,
        None => row.timezone,
    };
    let cron = req.cron.unwrap_or_else(|| row.cron.clone());
    let schedule = parse_cron(&cron, timezone)?;
    let timing_changed = schedule.expression() != row.cron || timezone != row.timezone;
    let (template, model) = match req.job {
        Some(t) => {
            let model = parse_template(state, &t, timezone)?.model().to_owned();
            (t, model)
        }
        // The stored template as it was given: `auto` if it was routed, so
        // the definition hash stays that of the create request.
        None => (
            TemplateRequest {
                model: if row.use_case.is_some() { AUTO_MODEL.to_owned() } else { row.model.clone() },
                input: row.input.clone(),
                priority: row.priority,
                user_id: row.user_id.clone(),
                metadata: row.metadata.clone(),
                use_case: row.use_case.clone(),
                cache: row.cache,
            },
            row.model.clone(),
        ),
    };
    let catch_up = match req.catch_up {
        Some(c) => c,
        None => row.catch_up,
    };
    let def = Definition { schedule, timezone, catch_up, template, model };
    let paused = req.paused.unwrap_or(row.paused);
    row.next_fire_at = if paused {
        None
    } else if row.paused || timing_changed || row.next_fire_at.is_none() {
        Some(first_firing(&def.schedule, now)?)
    } else {
        row.next_fire_at
    };
    row.paused = paused;
    row.definition_hash = def.hash();
    row.cron = def.schedule.expression().to_owned();
    row.timezone = def.timezone;
    row.catch_up = def.catch_up;
    row.model = def.model;
    row.use_case = def.template.use_case;
    row.cache = def.template.cache;
    row.input = def.template.input;
    row.priority = def.template.priority;
    row.user_id = def.template.user_id;
    row.metadata = def.template.metadata;
    row.updated_at = now;
    Ok(row)
}

/// `DELETE /v1/schedules/{id}`: 200 with the schedule as it was. The jobs
/// it created stay.
#[utoipa::path(
    delete,
    path = "/v1/schedules/{id}",
    tag = "schedules",
    operation_id = "delete_schedule",
    summary = "Delete a schedule; the jobs it created stay",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The schedule's id; anything that is not one of the tenant's schedule ids is a 404")),
    responses(
        (status = 200, description = "The schedule as it was", body = ScheduleView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No schedule of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<ScheduleId>,
) -> ApiResult<Json<ScheduleView>> {
    let row = db::delete(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("schedule"))?;
    Ok(Json(ScheduleView::from(row)))
}
