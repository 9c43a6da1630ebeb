//! The `schedules` and `schedule_firings` tables: recurring schedules, the
//! firing loop's claim, and the record of every firing.
//!
//! Exactly-once firing rests on two things here: [`claim_due`] locks due
//! schedules with `FOR UPDATE SKIP LOCKED`, so replicas work on disjoint
//! schedules; and [`record_firings`] inserts `(schedule_id, fire_at)` rows
//! with `ON CONFLICT DO NOTHING` in the caller's transaction, returning only
//! the rows it inserted, so the caller creates a job for those alone. A
//! firing that was already recorded (by another replica, or before a crash
//! and restart) is never recorded, or its job created, twice.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use offpeak_core::job::Priority;
use offpeak_core::schedule::CatchUp;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};
use uuid::Uuid;

/// A schedule as stored.
#[derive(Debug, Clone, FromRow)]
pub struct ScheduleRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub cron: String,
    #[sqlx(try_from = "crate::edge::TzName")]
    pub timezone: Tz,
    #[sqlx(try_from = "String")]
    pub catch_up: CatchUp,
    pub paused: bool,
    pub model: String,
    pub input: Value,
    #[sqlx(try_from = "String")]
    pub priority: Priority,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub definition_hash: Vec<u8>,
    pub next_fire_at: Option<DateTime<Utc>>,
    pub last_fired_at: Option<DateTime<Utc>>,
    pub missed_firings: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The template's use case when it asked for `"model": "auto"`; `model`
    /// is the model it was routed to.
    pub use_case: Option<String>,
    /// `false`: the template's jobs opt out of the exact cache.
    pub cache: bool,
}

const COLUMNS: &str = "id, tenant_id, name, cron, timezone, catch_up, paused, model, input, priority, user_id, \
    metadata, definition_hash, next_fire_at, last_fired_at, missed_firings, created_at, updated_at, use_case, cache";

/// The outcome of creating a schedule by name.
#[derive(Debug)]
pub enum InsertOutcome {
    Inserted(ScheduleRow),
    /// The tenant already has a schedule of this name; the caller compares
    /// its `definition_hash`.
    Existing(ScheduleRow),
}

/// Inserts a schedule (`id`, `created_at` and `updated_at` as given), or
/// returns the tenant's schedule that already holds its name.
///
/// # Errors
/// Database errors only.
pub async fn insert(conn: &mut PgConnection, s: &ScheduleRow) -> Result<InsertOutcome, sqlx::Error> {
    let sql = format!(
        "INSERT INTO schedules ({COLUMNS})
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
         ON CONFLICT (tenant_id, name) DO NOTHING
         RETURNING {COLUMNS}"
    );
    let inserted = sqlx::query_as::<_, ScheduleRow>(&sql)
        .bind(s.id)
        .bind(s.tenant_id)
        .bind(&s.name)
        .bind(&s.cron)
        .bind(s.timezone.name())
        .bind(s.catch_up.as_str())
        .bind(s.paused)
        .bind(&s.model)
        .bind(&s.input)
        .bind(s.priority.as_str())
        .bind(&s.user_id)
        .bind(&s.metadata)
        .bind(&s.definition_hash)
        .bind(s.next_fire_at)
        .bind(s.last_fired_at)
        .bind(s.missed_firings)
        .bind(s.created_at)
        .bind(s.updated_at)
        .bind(&s.use_case)
        .bind(s.cache)
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(row) = inserted {
        return Ok(InsertOutcome::Inserted(row));
    }
    // ON CONFLICT waited for a concurrent creator to commit, so this finds it.
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE tenant_id = $1 AND name = $2");
    let existing = sqlx::query_as::<_, ScheduleRow>(&sql).bind(s.tenant_id).bind(&s.name).fetch_one(&mut *conn).await?;
    Ok(InsertOutcome::Existing(existing))
}

/// One of the tenant's schedules.
///
/// # Errors
/// Database errors only.
pub async fn get<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<ScheduleRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as::<_, ScheduleRow>(&sql).bind(tenant_id).bind(id).fetch_optional(db).await
}

/// Locks one schedule for the caller's transaction: the tenant's, or any
/// tenant's when `tenant_id` is `None` (operators).
///
/// # Errors
/// Database errors only.
pub async fn lock(conn: &mut PgConnection, tenant_id: Option<Uuid>, id: Uuid) -> Result<Option<ScheduleRow>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM schedules WHERE id = $1 AND ($2::uuid IS NULL OR tenant_id = $2) FOR UPDATE");
    sqlx::query_as::<_, ScheduleRow>(&sql).bind(id).bind(tenant_id).fetch_optional(conn).await
}

/// Writes every changeable column of a schedule (the definition, `paused`,
/// `next_fire_at`, `updated_at`); returns the stored row.
///
/// # Errors
/// Database errors only.
pub async fn update<'e>(db: impl PgExecutor<'e>, s: &ScheduleRow) -> Result<ScheduleRow, sqlx::Error> {
    let sql = format!(
        "UPDATE schedules SET cron = $2, timezone = $3, catch_up = $4, paused = $5, model = $6, input = $7,
                priority = $8, user_id = $9, metadata = $10, definition_hash = $11, next_fire_at = $12, updated_at = $13,
                use_case = $14, cache = $15
         WHERE id = $1
         RETURNING {COLUMNS}"
    );
    sqlx::query_as::<_, ScheduleRow>(&sql)
        .bind(s.id)
        .bind(&s.cron)
        .bind(s.timezone.name())
        .bind(s.catch_up.as_str())
        .bind(s.paused)
        .bind(&s.model)
        .bind(&s.input)
        .bind(s.priority.as_str())
        .bind(&s.user_id)
        .bind(&s.metadata)
        .bind(&s.definition_hash)
        .bind(s.next_fire_at)
        .bind(s.updated_at)
        .bind(&s.use_case)
        .bind(s.cache)
        .fetch_one(db)
        .await
}

/// Deletes one of the tenant's schedules (its firing records with it; the
/// jobs it created stay) and returns it as it was.
///
/// # Errors
/// Database errors only.
pub async fn delete<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<ScheduleRow>, sqlx::Error> {
    let sql = format!("DELETE FROM schedules WHERE tenant_id = $1 AND id = $2 RETURNING {COLUMNS}");
    sqlx::query_as::<_, ScheduleRow>(&sql).bind(tenant_id).bind(id).fetch_optional(db).await
}

/// The tenant's schedules, newest first; `before` is the previous page's
/// last id (ids are UUIDv7, so id order is creation order).
///
/// # Errors
/// Database errors only.
pub async fn list<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, before: Option<Uuid>, limit: i64) -> Result<Vec<ScheduleRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules
         WHERE tenant_id = $1 AND ($2::uuid IS NULL OR id < $2)
         ORDER BY id DESC LIMIT $3"
    );
    sqlx::query_as::<_, ScheduleRow>(&sql).bind(tenant_id).bind(before).bind(limit).fetch_all(db).await
}

/// A schedule with its tenant's name, for operators.
#[derive(Debug, Clone, FromRow)]
pub struct OperatorRow {
    #[sqlx(flatten)]
    pub schedule: ScheduleRow,
    pub tenant_name: String,
}

/// Every tenant's schedules, or one tenant's (operators), by tenant name
/// then schedule name.
///
/// # Errors
/// Database errors only.
pub async fn list_all<'e>(db: impl PgExecutor<'e>, tenant_id: Option<Uuid>, limit: i64) -> Result<Vec<OperatorRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {}, t.name AS tenant_name FROM schedules s JOIN tenants t ON t.id = s.tenant_id
         WHERE ($1::uuid IS NULL OR s.tenant_id = $1)
         ORDER BY t.name, s.name LIMIT $2",
        crate::edge::qualified(COLUMNS, "s")
    );
    sqlx::query_as::<_, OperatorRow>(&sql).bind(tenant_id).bind(limit).fetch_all(db).await
}

/// One recorded firing.
#[derive(Debug, Clone, FromRow, PartialEq, Eq)]
pub struct FiringRow {
    pub schedule_id: Uuid,
    pub fire_at: DateTime<Utc>,
    pub job_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// The schedule's most recent firings, newest first.
///
/// # Errors
/// Database errors only.
pub async fn recent_firings<'e>(db: impl PgExecutor<'e>, schedule_id: Uuid, limit: i64) -> Result<Vec<FiringRow>, sqlx::Error> {
    sqlx::query_as::<_, FiringRow>(
        "SELECT schedule_id, fire_at, job_id, created_at FROM schedule_firings
         WHERE schedule_id = $1 ORDER BY fire_at DESC LIMIT $2",
    )
    .bind(schedule_id)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A schedule [`claim_due`] locked: its row, or, for a row this build
/// cannot read (a stored timezone gone from its tz database, say), its id
/// and why, so that the caller can stop that schedule instead of failing
/// every round on it.
pub type Claimed = Result<ScheduleRow, (Uuid, sqlx::Error)>;

/// Locks up to `limit` schedules due at `now` (not paused, `next_fire_at <=
/// now`), oldest due first, for the caller's transaction. `SKIP LOCKED`: a
/// replica never waits for, or takes, a schedule another replica is firing.
///
/// # Errors
/// Database errors only; a row that does not decode is an `Err` item.
pub async fn claim_due(conn: &mut PgConnection, now: DateTime<Utc>, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM schedules
         WHERE NOT paused AND next_fire_at <= $1
         ORDER BY next_fire_at
         LIMIT $2
         FOR UPDATE SKIP LOCKED"
    );
    let rows = sqlx::query(&sql).bind(now).bind(limit).fetch_all(conn).await?;
    rows.iter()
        .map(|row| match ScheduleRow::from_row(row) {
            Ok(schedule) => Ok(Ok(schedule)),
            Err(e) => Ok(Err((sqlx::Row::try_get::<Uuid, _>(row, "id")?, e))),
        })
        .collect()
}

/// A firing about to be recorded, with the id its job will get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewFiring {
    pub schedule_id: Uuid,
    pub fire_at: DateTime<Utc>,
    pub job_id: Uuid,
}

/// Records firings in one statement, in the caller's transaction, and
/// returns those that were not recorded before: the caller creates exactly
/// these jobs, in the same transaction (the foreign key to `jobs` is checked
/// at commit).
///
/// # Errors
/// Database errors only.
pub async fn record_firings(conn: &mut PgConnection, firings: &[NewFiring], now: DateTime<Utc>) -> Result<Vec<NewFiring>, sqlx::Error> {
    let schedule_ids: Vec<Uuid> = firings.iter().map(|f| f.schedule_id).collect();
    let fire_ats: Vec<DateTime<Utc>> = firings.iter().map(|f| f.fire_at).collect();
    let job_ids: Vec<Uuid> = firings.iter().map(|f| f.job_id).collect();
    let rows: Vec<(Uuid, DateTime<Utc>, Option<Uuid>)> = sqlx::query_as(
        "INSERT INTO schedule_firings (schedule_id, fire_at, job_id, created_at)
         SELECT u.schedule_id, u.fire_at, u.job_id, $4
         FROM unnest($1::uuid[], $2::timestamptz[], $3::uuid[]) AS u(schedule_id, fire_at, job_id)
         ON CONFLICT (schedule_id, fire_at) DO NOTHING
         RETURNING schedule_id, fire_at, job_id",
    )
    .bind(&schedule_ids)
    .bind(&fire_ats)
    .bind(&job_ids)
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|(schedule_id, fire_at, job_id)| job_id.map(|job_id| NewFiring { schedule_id, fire_at, job_id }))
        .collect())
}

/// Where one schedule stands after a firing round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Advance {
    pub schedule_id: Uuid,
    pub next_fire_at: Option<DateTime<Utc>>,
    /// The latest firing created this round, if any.
    pub last_fired_at: Option<DateTime<Utc>>,
    /// Missed firings the catch-up policy skipped this round.
    pub missed: i64,
}

/// Moves claimed schedules on, in one statement.
///
/// # Errors
/// Database errors only.
pub async fn advance(conn: &mut PgConnection, advances: &[Advance]) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = advances.iter().map(|a| a.schedule_id).collect();
    let next: Vec<Option<DateTime<Utc>>> = advances.iter().map(|a| a.next_fire_at).collect();
    let last: Vec<Option<DateTime<Utc>>> = advances.iter().map(|a| a.last_fired_at).collect();
    let missed: Vec<i64> = advances.iter().map(|a| a.missed).collect();
    let res = sqlx::query(
        "UPDATE schedules s
         SET next_fire_at = u.next_fire_at,
             last_fired_at = GREATEST(s.last_fired_at, u.last_fired_at),
             missed_firings = s.missed_firings + u.missed
         FROM unnest($1::uuid[], $2::timestamptz[], $3::timestamptz[], $4::bigint[])
              AS u(id, next_fire_at, last_fired_at, missed)
         WHERE s.id = u.id",
    )
    .bind(&ids)
    .bind(&next)
    .bind(&last)
    .bind(&missed)
    .execute(conn)
    .await?;
    Ok(res.rows_affected())
}
