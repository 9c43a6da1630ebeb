//! The operator dashboard's queries (`/ui` in the scheduler): what becomes
//! due tonight, what the system is doing now, what was spent and saved, and
//! the jobs of every tenant. Retry and cancel of one job are the operator's
//! statements of [`super`], shared with the command line.
//!
//! These ignore tenant scoping on purpose: only the operator token reaches
//! them. Every query is bounded, by a time range on an indexed column, by a
//! `LIMIT`, or by the few groups it returns (hours × models, minutes, days ×
//! models):
//!
//! - Queries by time over `held_jobs` and `usage_ledger` visit the
//!   tenants one by one (`CROSS JOIN LATERAL`), so the per-tenant indexes
//!   `held_jobs_due_order (tenant_id, release_at, id)` and
//!   `usage_ledger_tenant_time (tenant_id, finished_at)` serve them as range
//!   scans instead of a scan of the whole table.
//! - The last hour's finished jobs come from `jobs_finished (finished_at)`
//!   (the baseline schema says why each index is there).
//! - Listings page by id (UUIDv7, creation order) with the primary key or
//!   `jobs_tenant_list (tenant_id, id)`.
//!
//! Reads run in [`begin_read`]'s transaction: one snapshot for all the
//! numbers of a panel, read only, and a statement timeout so that a
//! dashboard left open can never hold a connection the release loop needs
//! for long.
//!
//! ```rust,no_run
//! # async fn example(pool: sqlx::PgPool) -> Result<(), sqlx::Error> {
//! use offpeak_store::operator::dashboard;
//! let now = chrono::Utc::now();
//! let mut tx = dashboard::begin_read(&pool).await?;
//! let due = dashboard::held_due_by_hour(&mut tx, now, now + chrono::Duration::hours(24)).await?;
//! tx.commit().await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

use crate::usage::UsageSums;
use offpeak_core::job::{JobState, Priority};

/// How long one dashboard statement may run before PostgreSQL cancels it.
pub const STATEMENT_TIMEOUT_MS: u32 = 5_000;
/// Most rows [`held_due_by_hour`] returns: 24 hours × (models + timezones)
/// stays far below it; the cap only guards against the unforeseen.
pub const MAX_DUE_GROUPS: i64 = 50_000;
/// Most rows [`spend_by_day_and_model`] returns (days × models).
pub const MAX_SPEND_GROUPS: i64 = 20_000;
/// Most jobs one listing page holds.
pub const MAX_PAGE: i64 = 500;

/// Begins a read-only transaction with one snapshot (`REPEATABLE READ`, so
/// the numbers of a panel agree with each other) and a statement timeout of
/// [`STATEMENT_TIMEOUT_MS`].
///
/// # Errors
/// Database errors.
pub async fn begin_read(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    // SET cannot take a bind parameter; the value is our constant.
    sqlx::query(&format!("SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")).execute(&mut *tx).await?;
    Ok(tx)
}

/// Held jobs due in one UTC hour, either of one model (`timezone` is
/// `None`) or of one timezone (`model` is `None`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DueGroup {
    pub hour: DateTime<Utc>,
    pub model: Option<String>,
    pub timezone: Option<String>,
    pub jobs: i64,
}

/// Held jobs that become due before `until`, grouped by the UTC hour they
/// become due in and by model, and again by hour and timezone (one scan,
/// `GROUPING SETS`). Jobs already due (`release_at <= now`, waiting for
/// the release loop) count in `now`'s hour.
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn held_due_by_hour(conn: &mut PgConnection, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<DueGroup>, sqlx::Error> {
    // `model` and `timezone` are NOT NULL columns, so a NULL in the output
    // says which grouping set a row belongs to. date_trunc takes the zone
    // explicitly: with two arguments it would truncate in the session's.
    sqlx::query_as::<_, DueGroup>(
        "SELECT hour, model, timezone, count(*) AS jobs
         FROM (
             SELECT date_trunc('hour', GREATEST(j.release_at, $1), 'UTC') AS hour, j.model, j.timezone
             FROM tenants t
             CROSS JOIN LATERAL (
                 SELECT release_at, model, timezone FROM held_jobs
                 WHERE tenant_id = t.id AND release_at < $2
             ) j
         ) due
         GROUP BY GROUPING SETS ((hour, model), (hour, timezone))
         ORDER BY hour, model NULLS LAST, timezone NULLS LAST
         LIMIT $3",
    )
    .bind(now)
    .bind(until)
    .bind(MAX_DUE_GROUPS)
    .fetch_all(conn)
    .await
}

/// Held jobs already due and waiting for the release loop, and held jobs
/// due at or after `until`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, FromRow)]
pub struct HeldEdges {
    /// `release_at <= now`: due, not yet released (backpressure, a release
    /// loop that is not running, or simply the next round).
    pub due_now: i64,
    /// `release_at >= until`: beyond the chart.
    pub later: i64,
}

/// See [`HeldEdges`].
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn held_edges(conn: &mut PgConnection, now: DateTime<Utc>, until: DateTime<Utc>) -> Result<HeldEdges, sqlx::Error> {
    sqlx::query_as::<_, HeldEdges>(
        "SELECT count(*) FILTER (WHERE j.release_at <= $1) AS due_now,
                count(*) FILTER (WHERE j.release_at >= $2) AS later
         FROM tenants t
         CROSS JOIN LATERAL (SELECT release_at FROM held_jobs WHERE tenant_id = t.id) j",
    )
    .bind(now)
    .bind(until)
    .fetch_one(conn)
    .await
}

/// Jobs per state, every tenant's.
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn count_by_state(conn: &mut PgConnection) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT state, count(*) FROM job_view GROUP BY state ORDER BY state").fetch_all(conn).await
}

/// The jobs that finished (succeeded, failed or dead) in one UTC minute.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct MinuteRow {
    pub minute: DateTime<Utc>,
    pub finished: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    /// Provider attempts these jobs made.
    pub attempts: i64,
    /// Attempts that ended in a transient error: every attempt of a dead
    /// job, every attempt but the last of a succeeded or failed one (the
    /// last one got the provider's answer).
    pub failed_attempts: i64,
}

/// Finished jobs per UTC minute in `[from, until)`; minutes without any are
/// left out. Cancelled jobs are not counted: they did no work.
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn finished_by_minute(conn: &mut PgConnection, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<MinuteRow>, sqlx::Error> {
    sqlx::query_as::<_, MinuteRow>(
        "SELECT date_trunc('minute', finished_at, 'UTC') AS minute,
                count(*) AS finished,
                count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
                count(*) FILTER (WHERE state = 'failed') AS failed,
                count(*) FILTER (WHERE state = 'dead') AS dead,
                COALESCE(sum(attempts), 0)::bigint AS attempts,
                COALESCE(sum(CASE WHEN state = 'dead' THEN attempts ELSE GREATEST(attempts - 1, 0) END), 0)::bigint
                    AS failed_attempts
         FROM (
             SELECT finished_at, state, attempts FROM jobs
             WHERE finished_at >= $1 AND finished_at < $2 AND state IN ('succeeded', 'failed', 'dead')
             UNION ALL
             -- The jobs a worker ended: their end is their outcome row.
             SELECT finished_at, state, attempts FROM job_outcomes
             WHERE finished_at >= $1 AND finished_at < $2 AND state IS NOT NULL
         ) f
         GROUP BY 1
         ORDER BY 1",
    )
    .bind(from)
    .bind(until)
    .fetch_all(conn)
    .await
}

/// Usage of one model on one UTC day, every tenant's.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct SpendRow {
    pub day: NaiveDate,
    pub model: String,
    #[sqlx(flatten)]
    pub sums: UsageSums,
}

/// Credits per UTC day and model in `[from, until)`, from the usage ledger
/// (the same ledger `GET /v1/usage` reads), with what the off-peak price
/// and the cache saved. Days without usage are left out.
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn spend_by_day_and_model(conn: &mut PgConnection, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<SpendRow>, sqlx::Error> {
    // The sums are `db::usage`'s own (one copy of what each saving means).
    sqlx::query_as::<_, SpendRow>(&format!(
        "SELECT (l.finished_at AT TIME ZONE 'UTC')::date AS day, l.model, {sums}
         FROM tenants t
         CROSS JOIN LATERAL (
             SELECT model, credits, list_credits, cache_hit, semantic, finished_at,
                    preview_target_list, parent_id, upgrade_of_preview FROM usage_ledger
             WHERE tenant_id = t.id AND finished_at >= $1 AND finished_at < $2
         ) l
         GROUP BY 1, 2
         ORDER BY 1, 2
         LIMIT $3",
        sums = crate::usage::SUMS
    ))
    .bind(from)
    .bind(until)
    .bind(MAX_SPEND_GROUPS)
    .fetch_all(conn)
    .await
}

/// What a job listing looks for; every filter is optional.
#[derive(Debug, Clone, Default)]
pub struct JobSearch {
    pub tenant_id: Option<Uuid>,
    pub model: Option<String>,
    pub state: Option<JobState>,
    /// `created_at >= created_from`.
    pub created_from: Option<DateTime<Utc>>,
    /// `created_at < created_until`.
    pub created_until: Option<DateTime<Utc>>,
    /// Exactly this submitter's user.
    pub user_id: Option<String>,
    /// Jobs older than this id (the previous page's last id).
    pub before: Option<Uuid>,
    /// Rows to return, at most [`MAX_PAGE`] (plus one, to see a next page).
    pub limit: i64,
}

/// A job in a listing: what a table row shows, without input and result.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct JobListRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub tenant: String,
    pub model: String,
    #[sqlx(try_from = "String")]
    pub state: JobState,
    #[sqlx(try_from = "String")]
    pub priority: Priority,
    #[sqlx(try_from = "crate::edge::TzName")]
    #[serde(serialize_with = "offpeak_core::tz::serialize_name")]
    pub timezone: chrono_tz::Tz,
    pub user_id: Option<String>,
    pub release_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub credits: Option<i64>,
    pub cache_hit: bool,
}

/// Jobs of every tenant (or one) matching `s`, newest first.
///
/// Filters that match few jobs can make PostgreSQL walk many ids to fill a
/// page; the statement timeout of [`begin_read`] bounds that.
///
/// # Errors
/// Database errors, including the statement timeout.
pub async fn search_jobs(conn: &mut PgConnection, s: &JobSearch) -> Result<Vec<JobListRow>, sqlx::Error> {
    sqlx::query_as::<_, JobListRow>(
        "SELECT j.id, j.tenant_id, t.name AS tenant, j.model, j.state, j.priority, j.timezone, j.user_id,
                j.release_at, j.created_at, j.finished_at, j.attempts, j.max_attempts, j.credits, j.cache_hit
         FROM job_view j JOIN tenants t ON t.id = j.tenant_id
         WHERE ($1::uuid IS NULL OR j.tenant_id = $1)
           AND ($2::text IS NULL OR j.model = $2)
           AND ($3::text IS NULL OR j.state = $3)
           AND ($4::timestamptz IS NULL OR j.created_at >= $4)
           AND ($5::timestamptz IS NULL OR j.created_at < $5)
           AND ($6::text IS NULL OR j.user_id = $6)
           AND ($7::uuid IS NULL OR j.id < $7)
         ORDER BY j.id DESC
         LIMIT $8",
    )
    .bind(s.tenant_id)
    .bind(&s.model)
    .bind(s.state.map(JobState::as_str))
    .bind(s.created_from)
    .bind(s.created_until)
    .bind(&s.user_id)
    .bind(s.before)
    .bind(s.limit.clamp(1, MAX_PAGE + 1))
    .fetch_all(conn)
    .await
}

/// A tenant's name by id.
///
/// # Errors
/// Database errors.
pub async fn tenant_name<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar("SELECT name FROM tenants WHERE id = $1").bind(id).fetch_optional(db).await
}

/// The batch a job was released in.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct BatchRow {
    pub id: Uuid,
    pub model: String,
    pub job_count: i32,
    pub published_at: DateTime<Utc>,
    /// Last sign of a worker's progress (or of the rescuer's republish).
    pub touched_at: DateTime<Utc>,
    /// Times the rescuer published it again.
    pub republished: i32,
}

/// A batch by id.
///
/// # Errors
/// Database errors.
pub async fn batch<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<BatchRow>, sqlx::Error> {
    sqlx::query_as::<_, BatchRow>("SELECT id, model, job_count, published_at, touched_at, republished FROM batches WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}
