//! The operator's statements, one copy of each, shared by the command line
//! (`offpeak-scheduler jobs ...`, `prune`) and the dashboard (`/ui`):
//! counts across tenants, retry of dead or failed jobs, cancellation of
//! unstarted ones, pruning. [`dashboard`] holds the dashboard's read-only
//! panels, [`gauges`] the `/metrics` gauges of the jobs table.
//!
//! These ignore tenant scoping on purpose: only the operator (its CLI, or the
//! dashboard behind the operator token) reaches them.

pub mod dashboard;
pub mod gauges;

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use offpeak_core::job::JobState;

use crate::release::WindowGroup;

/// Jobs per (state, model, tenant).
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct CountRow {
    #[sqlx(try_from = "String")]
    pub state: JobState,
    pub model: String,
    pub tenant: String,
    pub jobs: i64,
}

pub async fn counts<'e>(db: impl PgExecutor<'e>) -> Result<Vec<CountRow>, sqlx::Error> {
    sqlx::query_as::<_, CountRow>(
        "SELECT j.state, j.model, t.name AS tenant, count(*) AS jobs
         FROM job_view j JOIN tenants t ON t.id = j.tenant_id
         GROUP BY j.state, j.model, t.name
         ORDER BY t.name, j.model, j.state",
    )
    .fetch_all(db)
    .await
}

/// Which unstarted jobs an operator cancels.
#[derive(Debug, Clone)]
pub struct CancelFilter {
    /// `held` or `queued`; `None` for both.
    pub state: Option<JobState>,
    pub tenant_id: Option<Uuid>,
    pub model: Option<String>,
    pub limit: i64,
}

/// Cancels matching jobs that no worker has started; returns their ids.
/// The followers of a cancelled leader (see `db::cache`) go back to `held`.
pub async fn cancel(pool: &sqlx::PgPool, f: &CancelFilter, now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Lock first, then update in a new statement, so followers a release
    // round was attaching to these jobs are committed and seen (see
    // `db::cache::lock_leaders`). `job_view`: a queued job of a started
    // batch is running, not cancellable.
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "SELECT j.id, j.cache_source IS NOT NULL FROM jobs j
         WHERE j.id IN (
             SELECT id FROM job_view
             WHERE state IN ('held', 'queued') AND ($1::text IS NULL OR state = $1)
               AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::text IS NULL OR model = $3)
             ORDER BY id LIMIT $4)
         FOR UPDATE OF j SKIP LOCKED",
    )
    .bind(f.state.map(JobState::as_str))
    .bind(f.tenant_id)
    .bind(&f.model)
    .bind(f.limit)
    .fetch_all(&mut *tx)
    .await?;
    let all: Vec<Uuid> = rows.iter().map(|r| r.0).collect();
    // Where each stands. The jobs still waiting, locked: a round releasing
    // one holds its `held_jobs` row to its commit and is skipped here (this
    // takes them after the jobs' rows, the other order from a round's, so
    // it never waits). Then, in a new statement, the batches of the others
    // (`jobs::Standing`, as a tenant's cancel reads them).
    let waiting: std::collections::HashSet<Uuid> =
        sqlx::query_scalar("SELECT id FROM held_jobs WHERE id = ANY($1) FOR UPDATE SKIP LOCKED")
            .bind(&all)
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect();
    let standing = crate::jobs::Standing::read(&mut tx, &all, waiting).await?;
    // Waiting jobs, followers, members of batches still unstarted (held so
    // until commit). A member of a started batch is running; a job between
    // waiting and a batch (a round releasing it) is left for the next
    // cancel.
    let ids: Vec<Uuid> = rows
        .iter()
        .filter(|(id, follower)| standing.of(*id, *follower) == crate::jobs::Cancellable::Yes)
        .map(|r| r.0)
        .collect();
    let cancelled = crate::jobs::write_cancel(&mut tx, &ids, now).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// Deletes up to `chunk` finished jobs that finished before `before`, with
/// their `batch_members` rows, and then the batches published before
/// `before` that have no unfinished job left (found through
/// `batch_members_batch`; a finished job kept longer than its batch shows
/// no batch on its dashboard page). Returns the jobs deleted; call again
/// until it returns 0 (small chunks keep locks and WAL bursts short).
pub async fn prune_chunk<'e, E>(db: E, before: DateTime<Utc>, chunk: i64) -> Result<u64, sqlx::Error>
where
    E: PgExecutor<'e> + Copy,
{
    let sql = format!(
        "WITH deleted AS (
             DELETE FROM jobs WHERE id IN (
                 SELECT id FROM jobs
                 WHERE state IN {TERMINAL_STATES} AND finished_at < $1
                 LIMIT $2
                 FOR UPDATE SKIP LOCKED)
             RETURNING id
         ),
         members AS (DELETE FROM batch_members WHERE job_id IN (SELECT id FROM deleted))
         SELECT count(*) FROM deleted",
        TERMINAL_STATES = crate::edge::TERMINAL_STATES
    );
    let in_row: i64 = sqlx::query_scalar(&sql)
    .bind(before)
    .bind(chunk)
    .fetch_one(db)
    .await?;
    // Jobs a worker ended: their end is their outcome row. The job goes;
    // the outcome keeps its usage (the ledger outlives pruning) without the
    // result, error and state, or goes too when it is not usage.
    let ended: i64 = sqlx::query_scalar(
        "WITH gone AS (
             SELECT job_id FROM job_outcomes
             WHERE state IS NOT NULL AND finished_at < $1
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ),
         deleted AS (DELETE FROM jobs WHERE id IN (SELECT job_id FROM gone) RETURNING id),
         members AS (DELETE FROM batch_members WHERE job_id IN (SELECT job_id FROM gone)),
         dropped AS (DELETE FROM job_outcomes WHERE job_id IN (SELECT job_id FROM gone) AND NOT counted),
         kept AS (
             UPDATE job_outcomes SET state = NULL, result = NULL, error = NULL
             WHERE job_id IN (SELECT job_id FROM gone) AND counted
         )
         SELECT count(*) FROM deleted",
    )
    .bind(before)
    .bind(chunk)
    .fetch_one(db)
    .await?;
    sqlx::query(
        concat!(
        "DELETE FROM batches b WHERE b.published_at < $1
           AND NOT EXISTS (SELECT 1 FROM batch_members m JOIN jobs j ON j.id = m.job_id
                           WHERE m.batch_id = b.id AND ", crate::edge::live!("j"), ")"),
    )
        .bind(before)
        .execute(db)
        .await?;
    Ok(u64::try_from(in_row).unwrap_or(0) + u64::try_from(ended).unwrap_or(0))
}

/// Which finished jobs an operator gives another chance.
#[derive(Debug, Clone)]
pub struct RetryFilter {
    /// `dead`, `failed`, or both (the dashboard's retry of one job).
    pub states: Vec<JobState>,
    /// One job only (the dashboard).
    pub job_id: Option<Uuid>,
    pub tenant_id: Option<Uuid>,
    pub model: Option<String>,
    pub limit: i64,
}

/// The filter's `WHERE` over `jobs j JOIN tenants t`, parameters `$1` to `$5`.
/// A job's state is its outcome's when its row is live and it has one.
const RETRY_MATCH: &str = "(CASE WHEN j.state IN ('held', 'queued')
        THEN (SELECT x.state FROM job_outcomes x WHERE x.job_id = j.id AND x.state IS NOT NULL)
        ELSE j.state END) = ANY($1) AND ($2::uuid IS NULL OR j.id = $2)
    AND ($3::uuid IS NULL OR j.tenant_id = $3) AND ($4::text IS NULL OR j.model = $4)";

/// The (timezone, tenant window) groups of the jobs a retry would move: the
/// caller computes each group's next window once, with the tenant's own
/// window where it has one ([`offpeak_core::tenant::effective_window`]),
/// then calls [`retry`] per group.
///
/// # Errors
/// Database errors, or a stored timezone or window that does not parse.
pub async fn retry_groups<'e>(db: impl PgExecutor<'e>, f: &RetryFilter) -> Result<Vec<WindowGroup>, sqlx::Error> {
    let sql = format!(
        "SELECT DISTINCT j.timezone, t.window_start, t.window_end
         FROM jobs j JOIN tenants t ON t.id = j.tenant_id
         WHERE {RETRY_MATCH}"
    );
    sqlx::query(&sql)
        .bind(f.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(f.job_id)
        .bind(f.tenant_id)
        .bind(&f.model)
        .try_map(crate::release::window_group)
        .fetch_all(db)
        .await
}

/// Puts the filter's jobs of one group back to `held` with fresh attempts:
/// low-priority ones due at `release_at` (rolling over at
/// `window_closes_at`), normal-priority ones at `now`. Their last error is
/// kept until they run again. At most `f.limit` jobs, oldest first; jobs
/// locked by another writer are skipped. Returns the ids moved.
///
/// # Errors
/// Database errors.
pub async fn retry<'e>(
    db: impl PgExecutor<'e>,
    f: &RetryFilter,
    group: &WindowGroup,
    release_at: DateTime<Utc>,
    window_closes_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    // A retried job is open again: its group counts it as not done (one
    // `group_progress` row of minus the jobs moved, per group), so a group
    // still open waits for it. A group that has completed stays completed:
    // its event was sent, and it is not sent again (see `crate::groups`).
    let sql = format!(
        "WITH moved AS (
             UPDATE jobs SET state = 'held', attempts = 0, result = NULL, credits = NULL, finished_at = NULL,
                    error = COALESCE((SELECT x.error FROM job_outcomes x WHERE x.job_id = jobs.id AND x.state IS NOT NULL), error),
                    batch_id = NULL, queued_at = NULL, started_at = NULL, cache_source = NULL,
                    release_at = CASE WHEN priority = 'normal' THEN $11 ELSE $9 END,
                    window_closes_at = CASE WHEN priority = 'normal' THEN NULL ELSE $10 END
             WHERE id IN (
                 SELECT j.id FROM jobs j JOIN tenants t ON t.id = j.tenant_id
                 WHERE {RETRY_MATCH}
                   AND j.timezone = $6 AND t.window_start IS NOT DISTINCT FROM $7 AND t.window_end IS NOT DISTINCT FROM $8
                 ORDER BY j.id LIMIT $5
                 FOR UPDATE OF j SKIP LOCKED)
             RETURNING {held}, group_id
         ),
         -- Waiting again: out of the batch that ran them, into `held_jobs`
         -- with the instant they are due again.
         out_of_batch AS (DELETE FROM batch_members WHERE job_id IN (SELECT id FROM moved)),
         waiting AS (INSERT INTO held_jobs ({held}) SELECT {held} FROM moved),
         -- A worker's end of a moved job is its outcome row: it goes (a
         -- failed or dead job's is never usage: no credits, no list price).
         unended AS (
             DELETE FROM job_outcomes WHERE job_id IN (SELECT id FROM moved) AND state IS NOT NULL
         ),
         reopened AS (
             INSERT INTO group_progress (group_id, done)
             SELECT group_id, -count(*) FROM moved WHERE group_id IS NOT NULL GROUP BY group_id
         ),
         -- Their events not yet fanned out are fanned out now (with the
         -- others listed beside them), from the jobs' rows as this statement
         -- sees them (before the update): the state the jobs reached, not
         -- the one they are sent back to.
         events AS (
             DELETE FROM webhook_events WHERE job_ids && ARRAY(SELECT id FROM moved)
             RETURNING job_ids
         ){fan_out}
         SELECT id FROM moved",
        fan_out = crate::outbox::fan_out("events"),
        held = crate::edge::HELD_COLUMNS,
    );
    let (timezone, window_start, window_end) = group.stored();
    sqlx::query_scalar(&sql)
        .bind(f.states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        .bind(f.job_id)
        .bind(f.tenant_id)
        .bind(&f.model)
        .bind(f.limit)
        .bind(timezone)
        .bind(window_start)
        .bind(window_end)
        .bind(release_at)
        .bind(window_closes_at)
        .bind(now)
        .fetch_all(db)
        .await
}
