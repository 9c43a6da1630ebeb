//! The dashboard's JSON reads, under `/ui/api/`: one endpoint per panel.
//! Every instant is UTC; each answer carries the `now` it was computed at
//! (the scheduler's clock), so the page and the tests can place it.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, DurationRound, NaiveDate, NaiveDateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use offpeak_runtime::broker::QueueStats;
use offpeak_store::operator::dashboard::{self as db, BatchRow, JobListRow, JobSearch};
use offpeak_store::usage::UsageSums;
use offpeak_store::{jobs as jobs_db, tenants};
use offpeak_core::job::JobState;

use super::auth::Operator;
use super::POLL_INTERVAL_MS;
use crate::api::error::{ApiError, ApiResult};
use crate::api::extract::{JobId, PathId, QueryParams};
use crate::api::jobs::JobView;
use crate::api::usage::UsageGroup;
use crate::api::AppState;

/// How the Now panel's provider error rate is defined (shown on the page).
pub const ERROR_RATE_DEFINITION: &str = "provider attempts that ended in a transient error (5xx, 429, timeout, refused \
    connection, unreadable answer), as a share of all attempts, over the jobs that finished in the last hour: every \
    attempt of a dead job, and every attempt but the last of a succeeded or failed one";
/// How long the Now panel waits for RabbitMQ before showing the queue as unknown.
pub const BROKER_TIMEOUT: Duration = Duration::from_secs(2);
/// Days the Spend panel shows by default, and at most.
pub const SPEND_DAYS_DEFAULT: i64 = 30;
pub const SPEND_DAYS_MAX: i64 = 90;
/// Jobs per page by default.
pub const PAGE_DEFAULT: i64 = 50;

/// A database error of a dashboard read: a statement cancelled by
/// [`db::STATEMENT_TIMEOUT_MS`] (SQLSTATE 57014) is a 503 that says so,
/// anything else what the API makes of it.
fn read_error(e: sqlx::Error) -> ApiError {
    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("57014") {
        tracing::warn!(error = %e, "dashboard query hit its statement timeout");
        return ApiError::unavailable(format!(
            "the query took longer than {} s; narrow the filters (a tenant, a state, a time range) and try again",
            db::STATEMENT_TIMEOUT_MS / 1000
        ));
    }
    ApiError::from(e)
}

/// A tenant, for the Jobs panel's filter.
#[derive(Debug, Serialize)]
pub struct TenantItem {
    pub id: Uuid,
    pub name: String,
    pub timezone: String,
}

/// `GET /ui/api/meta`: what the page needs to draw its filters.
#[derive(Debug, Serialize)]
pub struct Meta {
    pub now: DateTime<Utc>,
    pub poll_ms: u64,
    /// The off-peak window, local time, e.g. `02:00-06:00`.
    pub window: String,
    /// The price table's models.
    pub models: Vec<String>,
    pub states: Vec<&'static str>,
    pub tenants: Vec<TenantItem>,
    pub error_rate_definition: &'static str,
}

pub async fn meta(State(state): State<AppState>, _: Operator) -> ApiResult<Json<Meta>> {
    let tenants = tenants::list(&state.pool).await?;
    Ok(Json(Meta {
        now: state.clock.now(),
        poll_ms: POLL_INTERVAL_MS,
        window: state.config.window.to_string(),
        models: state.config.prices.models().map(str::to_owned).collect(),
        states: JobState::ALL.map(JobState::as_str).to_vec(),
        tenants: tenants.into_iter().map(|t| TenantItem { id: t.id, name: t.name, timezone: t.tz.name().to_owned() }).collect(),
        error_rate_definition: ERROR_RATE_DEFINITION,
    }))
}

/// One hour of the Tonight chart.
#[derive(Debug, Serialize)]
pub struct HourBucket {
    /// Start of the UTC hour.
    pub hour: DateTime<Utc>,
    pub total: i64,
    pub by_model: BTreeMap<String, i64>,
    /// Which timezones' windows the jobs wait for.
    pub by_timezone: BTreeMap<String, i64>,
}

/// `GET /ui/api/tonight`.
#[derive(Debug, Serialize)]
pub struct Tonight {
    pub now: DateTime<Utc>,
    /// Start of the current UTC hour: the first bar.
    pub from: DateTime<Utc>,
    /// `from` + 24 h: the end of the last bar.
    pub until: DateTime<Utc>,
    /// Held jobs due before `until` (the sum of the bars).
    pub total: i64,
    /// Of those, jobs already due and waiting for the release loop (in the first bar).
    pub due_now: i64,
    /// Held jobs due at or after `until`, not on the chart.
    pub later: i64,
    /// Models present, in the order the bars stack them.
    pub models: Vec<String>,
    /// 24 hours, in order, empty ones included.
    pub hours: Vec<HourBucket>,
}

/// The start of `t`'s UTC hour.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncation to a whole hour cannot fail for instants chrono represents.
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

fn minute_of(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::minutes(1)).unwrap_or(t)
}

pub async fn tonight(State(state): State<AppState>, _: Operator) -> ApiResult<Json<Tonight>> {
    let now = state.clock.now();
    let from = hour_of(now);
    let until = from + TimeDelta::hours(24);
    let mut tx = db::begin_read(&state.pool).await?;
    let groups = db::held_due_by_hour(&mut tx, now, until).await.map_err(read_error)?;
    let edges = db::held_edges(&mut tx, now, until).await.map_err(read_error)?;
    tx.commit().await?;
    let mut hours: Vec<HourBucket> = (0..24)
        .map(|i| HourBucket { hour: from + TimeDelta::hours(i), total: 0, by_model: BTreeMap::new(), by_timezone: BTreeMap::new() })
        .collect();
    let mut models = std::collections::BTreeSet::new();
    for g in groups {
        let i = (g.hour - from).num_hours();
        let Some(bucket) = usize::try_from(i).ok().and_then(|i| hours.get_mut(i)) else { continue };
        match (g.model, g.timezone) {
            (Some(m), _) => {
                bucket.total += g.jobs;
                models.insert(m.clone());
                bucket.by_model.insert(m, g.jobs);
            }
            (None, Some(tz)) => {
                bucket.by_timezone.insert(tz, g.jobs);
            }
            (None, None) => {}
        }
    }
    let total = hours.iter().map(|h| h.total).sum();
    Ok(Json(Tonight { now, from, until, total, due_now: edges.due_now, later: edges.later, models: models.into_iter().collect(), hours }))
}

/// Finished jobs in one minute, for the sparkline.
#[derive(Debug, Serialize)]
pub struct MinutePoint {
    pub minute: DateTime<Utc>,
    pub finished: i64,
}

/// The last hour's work.
#[derive(Debug, Serialize)]
pub struct Throughput {
    pub from: DateTime<Utc>,
    pub until: DateTime<Utc>,
    /// 60 minutes, in order, empty ones included.
    pub per_minute: Vec<MinutePoint>,
    /// Jobs that reached succeeded, failed or dead in `[from, until)`.
    pub finished: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
}

/// The provider error rate; see [`ERROR_RATE_DEFINITION`].
#[derive(Debug, Serialize)]
pub struct ErrorRate {
    pub attempts: i64,
    pub failed_attempts: i64,
    /// `failed_attempts / attempts`; null without attempts.
    pub rate: Option<f64>,
    pub definition: String,
}

/// `GET /ui/api/now`.
#[derive(Debug, Serialize)]
pub struct Now {
    pub now: DateTime<Utc>,
    /// Jobs per state (every state, zeros included).
    pub states: BTreeMap<String, i64>,
    /// Ready batch messages and connected workers; null if RabbitMQ did not answer.
    pub queue: Option<QueueStats>,
    /// Why `queue` is null.
    pub queue_error: Option<String>,
    pub throughput: Throughput,
    pub error_rate: ErrorRate,
}

pub async fn now(State(state): State<AppState>, _: Operator) -> ApiResult<Json<Now>> {
    let now = state.clock.now();
    let until = minute_of(now) + TimeDelta::minutes(1);
    let from = until - TimeDelta::hours(1);
    // The broker is asked while the database answers.
    let queue = async {
        match &state.publisher {
            None => Err("this scheduler has no broker connection".to_owned()),
            Some(p) => match tokio::time::timeout(BROKER_TIMEOUT, p.queue_stats()).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "dashboard: RabbitMQ did not answer the queue declare");
                    Err("RabbitMQ is unreachable".to_owned())
                }
                Err(_) => Err(format!("RabbitMQ did not answer within {} s", BROKER_TIMEOUT.as_secs())),
            },
        }
    };
    let reads = async {
        let mut tx = db::begin_read(&state.pool).await?;
        let states = db::count_by_state(&mut tx).await?;
        let minutes = db::finished_by_minute(&mut tx, from, until).await?;
        tx.commit().await?;
        Ok::<_, sqlx::Error>((states, minutes))
    };
    let (queue, reads) = tokio::join!(queue, reads);
    let (state_rows, minutes) = reads.map_err(read_error)?;
    let mut states: BTreeMap<String, i64> = JobState::ALL.iter().map(|s| (s.as_str().to_owned(), 0)).collect();
    for (s, n) in state_rows {
        states.insert(s, n);
    }
    let mut per_minute: Vec<MinutePoint> = (0..60).map(|i| MinutePoint { minute: from + TimeDelta::minutes(i), finished: 0 }).collect();
    let mut sums = db::MinuteRow::default();
    for m in minutes {
        if let Some(p) = usize::try_from((m.minute - from).num_minutes()).ok().and_then(|i| per_minute.get_mut(i)) {
            p.finished = m.finished;
        }
        sums.finished += m.finished;
        sums.succeeded += m.succeeded;
        sums.failed += m.failed;
        sums.dead += m.dead;
        sums.attempts += m.attempts;
        sums.failed_attempts += m.failed_attempts;
    }
    let rate = (sums.attempts > 0).then(|| sums.failed_attempts as f64 / sums.attempts as f64);
    let (queue, queue_error) = match queue {
        Ok(q) => (Some(q), None),
        Err(e) => (None, Some(e)),
    };
    Ok(Json(Now {
        now,
        states,
        queue,
        queue_error,
        throughput: Throughput {
            from,
            until,
            per_minute,
            finished: sums.finished,
            succeeded: sums.succeeded,
            failed: sums.failed,
            dead: sums.dead,
        },
        error_rate: ErrorRate {
            attempts: sums.attempts,
            failed_attempts: sums.failed_attempts,
            rate,
            definition: ERROR_RATE_DEFINITION.to_owned(),
        },
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendParams {
    /// Days to show, ending today (UTC): 1 to 90, 30 by default.
    days: Option<String>,
}

/// One model on one day.
#[derive(Debug, Serialize)]
pub struct SpendItem {
    pub day: NaiveDate,
    pub model: String,
    #[serde(flatten)]
    pub usage: UsageGroup,
}

/// `GET /ui/api/spend`.
#[derive(Debug, Serialize)]
pub struct Spend {
    pub now: DateTime<Utc>,
    /// Midnight UTC of the first day.
    pub from: DateTime<Utc>,
    /// Midnight UTC after the last day (today).
    pub until: DateTime<Utc>,
    /// Every day of the range, in order.
    pub days: Vec<NaiveDate>,
    /// Models with usage in the range, in the order the bars stack them.
    pub models: Vec<String>,
    /// Days × models with usage.
    pub rows: Vec<SpendItem>,
    pub by_model: BTreeMap<String, UsageGroup>,
    pub totals: UsageGroup,
}

pub async fn spend(State(state): State<AppState>, _: Operator, QueryParams(p): QueryParams<SpendParams>) -> ApiResult<Json<Spend>> {
    let days = match p.days.as_deref().filter(|d| !d.is_empty()) {
        None => SPEND_DAYS_DEFAULT,
        Some(d) => d.parse::<i64>().ok().filter(|d| (1..=SPEND_DAYS_MAX).contains(d)).ok_or_else(|| {
            ApiError::bad_request("invalid_query", format!("days must be an integer from 1 to {SPEND_DAYS_MAX}")).with_field("days")
        })?,
    };
    let now = state.clock.now();
    let today = now.date_naive();
    let first = today - TimeDelta::days(days - 1);
    let from = first.and_time(chrono::NaiveTime::MIN).and_utc();
    let until = (today + TimeDelta::days(1)).and_time(chrono::NaiveTime::MIN).and_utc();
    let mut tx = db::begin_read(&state.pool).await?;
    let rows = db::spend_by_day_and_model(&mut tx, from, until).await.map_err(read_error)?;
    tx.commit().await?;
    let mut by_model: BTreeMap<String, UsageSums> = BTreeMap::new();
    let mut totals = UsageSums::default();
    for r in &rows {
        by_model.entry(r.model.clone()).or_default().add(&r.sums);
        totals.add(&r.sums);
    }
    Ok(Json(Spend {
        now,
        from,
        until,
        days: (0..days).map(|i| first + TimeDelta::days(i)).collect(),
        models: by_model.keys().cloned().collect(),
        rows: rows.iter().map(|r| SpendItem { day: r.day, model: r.model.clone(), usage: UsageGroup::from(&r.sums) }).collect(),
        by_model: by_model.iter().map(|(m, s)| (m.clone(), UsageGroup::from(s))).collect(),
        totals: UsageGroup::from(&totals),
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobsParams {
    /// A tenant's id.
    tenant: Option<String>,
    model: Option<String>,
    state: Option<String>,
    /// Created at or after: RFC 3339, `YYYY-MM-DDTHH:MM[:SS]` (UTC) or `YYYY-MM-DD` (UTC midnight).
    from: Option<String>,
    /// Created before: the same forms; a bare date includes that whole day.
    to: Option<String>,
    /// Exactly this `user_id`.
    user_id: Option<String>,
    /// 1 to 500; 50 by default.
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// `GET /ui/api/jobs`: a page of every tenant's jobs, newest first.
#[derive(Debug, Serialize)]
pub struct JobsPage {
    pub jobs: Vec<JobListRow>,
    pub next_cursor: Option<String>,
}

/// An instant bound of a listing; a bare date is UTC midnight, or the next
/// one for an end bound (so that the day is included).
fn parse_instant(field: &str, s: &str, end: bool) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(t.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        let d = if end { d.succ_opt().unwrap_or(d) } else { d };
        return Ok(d.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    Err(ApiError::bad_request("invalid_query", format!("{field} must be an RFC 3339 instant, YYYY-MM-DDTHH:MM (UTC) or YYYY-MM-DD"))
        .with_field(field))
}

/// An optional query value; empty means absent (what an HTML form sends
/// for a field left blank).
fn given(v: Option<String>) -> Option<String> {
    v.filter(|s| !s.is_empty())
}

pub async fn jobs(State(state): State<AppState>, _: Operator, QueryParams(p): QueryParams<JobsParams>) -> ApiResult<Json<JobsPage>> {
    let bad = |field: &str, msg: String| ApiError::bad_request("invalid_query", msg).with_field(field);
    let tenant_id = given(p.tenant)
        .map(|t| Uuid::parse_str(&t))
        .transpose()
        .map_err(|_| bad("tenant", "tenant must be a tenant's id".into()))?;
    let job_state =
        given(p.state).map(|s| s.parse::<JobState>()).transpose().map_err(|e| bad("state", e.to_string()))?;
    let model = given(p.model);
    let user_id = given(p.user_id);
    for (field, v) in [("model", &model), ("user_id", &user_id)] {
        if v.as_deref().is_some_and(|v| v.len() > 200 || v.contains('\0')) {
            return Err(bad(field, format!("{field} must be at most 200 bytes without NUL characters")));
        }
    }
    let created_from = given(p.from).map(|s| parse_instant("from", &s, false)).transpose()?;
    let created_until = given(p.to).map(|s| parse_instant("to", &s, true)).transpose()?;
    let limit = match given(p.limit) {
        None => PAGE_DEFAULT,
        Some(l) => l
            .parse::<i64>()
            .ok()
            .filter(|l| (1..=db::MAX_PAGE).contains(l))
            .ok_or_else(|| bad("limit", format!("limit must be an integer from 1 to {}", db::MAX_PAGE)))?,
    };
    let before = given(p.cursor)
        .map(|c| Uuid::parse_str(&c))
        .transpose()
        .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not one this API returned").with_field("cursor"))?;
    let search = JobSearch { tenant_id, model, state: job_state, created_from, created_until, user_id, before, limit: limit + 1 };
    let mut tx = db::begin_read(&state.pool).await?;
    let mut rows: Vec<JobListRow> = db::search_jobs(&mut tx, &search).await.map_err(read_error)?;
    tx.commit().await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok(Json(JobsPage { jobs: rows, next_cursor }))
}

/// One moment of a job's life.
#[derive(Debug, Serialize)]
pub struct Event {
    /// `created`, `due` (release_at), `queued`, `started`, `finished`.
    pub event: String,
    pub at: DateTime<Utc>,
}

/// `GET /ui/api/jobs/{id}`.
#[derive(Debug, Serialize)]
pub struct JobPage {
    pub job: JobView,
    pub tenant: String,
    /// The batch it was (last) released in.
    pub batch: Option<BatchRow>,
    /// What has happened so far, in order.
    pub timeline: Vec<Event>,
    /// Whether the retry button applies (dead or failed).
    pub can_retry: bool,
    /// Whether the cancel button applies (held or queued).
    pub can_cancel: bool,
}

pub async fn job(State(state): State<AppState>, _: Operator, PathId(id, _): PathId<JobId>) -> ApiResult<Json<JobPage>> {
    let row = jobs_db::get_any(&state.pool, id).await?.ok_or_else(|| ApiError::not_found("job"))?;
    let tenant = db::tenant_name(&state.pool, row.tenant_id).await?.unwrap_or_default();
    let batch = match row.batch_id {
        Some(b) => db::batch(&state.pool, b).await?,
        None => None,
    };
    let job_state = Some(row.state);
    let mut timeline = vec![Event { event: "created".into(), at: row.created_at }, Event { event: "due".into(), at: row.release_at }];
    for (event, at) in [("queued", row.queued_at), ("started", row.started_at), ("finished", row.finished_at)] {
        if let Some(at) = at {
            timeline.push(Event { event: event.into(), at });
        }
    }
    timeline.sort_by_key(|e| e.at);
    Ok(Json(JobPage {
        can_retry: matches!(job_state, Some(JobState::Dead | JobState::Failed)),
        can_cancel: job_state.is_some_and(JobState::is_cancellable),
        job: JobView::read(&state.pool, row).await?,
        tenant,
        batch,
        timeline,
    }))
}

/// The webhooks panel: the outbox at a glance and every endpoint's health.
#[derive(Debug, Serialize)]
pub struct Webhooks {
    pub pending: i64,
    /// Job events not yet turned into deliveries (see `store::webhooks::fan_out`).
    pub events_waiting: i64,
    pub oldest_pending_seconds: f64,
    pub failed: i64,
    pub endpoints_disabled: i64,
    pub endpoints: Vec<crate::ops::webhooks::EndpointView>,
}

/// `GET /ui/api/webhooks`: the same query as `offpeak-scheduler webhooks list`.
pub async fn webhooks(State(state): State<AppState>, _: Operator) -> ApiResult<Json<Webhooks>> {
    use offpeak_store::webhooks as hooks;
    let mut tx = db::begin_read(&state.pool).await?;
    let stats = hooks::outbox_stats(&mut *tx, state.clock.now()).await.map_err(read_error)?;
    let rows = hooks::operator_list(&mut *tx, None).await.map_err(read_error)?;
    tx.commit().await?;
    Ok(Json(Webhooks {
        pending: stats.pending,
        events_waiting: stats.events_waiting,
        oldest_pending_seconds: stats.oldest_pending_seconds,
        failed: stats.failed,
        endpoints_disabled: stats.endpoints_disabled,
        endpoints: rows.into_iter().map(crate::ops::webhooks::EndpointView::from).collect(),
    }))
}
