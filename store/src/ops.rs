//! Operator queries: statistics across tenants, bulk cancellation, pruning.
//! These ignore tenant scoping on purpose; only the operator CLI calls them.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

use offpeak_core::job::JobState;

/// Jobs per (state, model, tenant).
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct CountRow {
    pub state: String,
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

/// Held jobs that become due in each hour of `[from, until)`, by UTC hour.
#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct DueRow {
    pub hour: DateTime<Utc>,
    pub jobs: i64,
}

pub async fn due_by_hour<'e>(db: impl PgExecutor<'e>, from: DateTime<Utc>, until: DateTime<Utc>) -> Result<Vec<DueRow>, sqlx::Error> {
    sqlx::query_as::<_, DueRow>(
        "SELECT date_trunc('hour', GREATEST(release_at, $1)) AS hour, count(*) AS jobs
         FROM jobs WHERE state = 'held' AND release_at < $2
         GROUP BY 1 ORDER BY 1",
    )
    .bind(from)
    .bind(until)
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
    let rows: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT j.id, CASE WHEN j.state = 'queued' THEN j.batch_id END FROM jobs j
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
    // Queued jobs only of batches still unstarted, held so until commit.
    let batches: Vec<Uuid> = rows.iter().filter_map(|r| r.1).collect();
    let unstarted: std::collections::HashSet<Uuid> =
        super::jobs::hold_unstarted_batches(&mut tx, &batches).await?.into_iter().collect();
    let ids: Vec<Uuid> = rows.iter().filter(|r| r.1.is_none_or(|b| unstarted.contains(&b))).map(|r| r.0).collect();
    let sql = format!(
        "WITH c AS (
             UPDATE jobs SET state = 'cancelled', finished_at = $2
             WHERE id = ANY($1) AND state IN ('held', 'queued')
             RETURNING id
         ),
         freed AS ({})
         SELECT id FROM c",
        super::jobs::FREE_FOLLOWERS_OF_C
    );
    let cancelled = sqlx::query_scalar(&sql).bind(&ids).bind(now).fetch_all(&mut *tx).await?;
    tx.commit().await?;
    Ok(cancelled)
}

/// Deletes up to `chunk` finished jobs that finished before `before`, and
/// then the batches published before `before` that have no unfinished job
/// left (found through `jobs_open_batch`; a finished job kept longer than
/// its batch shows no batch on its dashboard page). Returns the jobs deleted; call again
/// until it returns 0 (small chunks keep locks and WAL bursts short).
pub async fn prune_chunk<'e, E>(db: E, before: DateTime<Utc>, chunk: i64) -> Result<u64, sqlx::Error>
where
    E: PgExecutor<'e> + Copy,
{
    let res = sqlx::query(
        "DELETE FROM jobs WHERE id IN (
             SELECT id FROM jobs
             WHERE state IN ('succeeded', 'failed', 'dead', 'cancelled') AND finished_at < $1
             LIMIT $2
             FOR UPDATE SKIP LOCKED)",
    )
    .bind(before)
    .bind(chunk)
    .execute(db)
    .await?;
    sqlx::query("DELETE FROM batches b WHERE b.published_at < $1 AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state IN ('queued', 'running'))")
        .bind(before)
        .execute(db)
        .await?;
    Ok(res.rows_affected())
}
