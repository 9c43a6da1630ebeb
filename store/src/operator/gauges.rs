//! Gauges of the jobs table for `/metrics`: jobs by state and model, and
//! held jobs by how soon their window opens; and the webhook outbox's.
//! Refreshed every few seconds by each scheduler replica, so every query is
//! one bounded `GROUP BY`, or counts through partial indexes.

use chrono::{DateTime, Utc};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};

/// Begins the transaction a pass of the gauges counts in, one backend
/// without JIT: the caller reads every gauge of the pass through it
/// ([`by_state_and_model`], [`held_by_hours_until_due`],
/// [`crate::webhooks::outbox_stats`]) and commits. A count is a scan that
/// PostgreSQL's planner would otherwise give two parallel workers and
/// compile with LLVM, costs that no monitoring query should take from the
/// jobs' own statements on a busy server: in the middle of the 02:00 burst,
/// [`by_state_and_model`] took 0.75–1.0 s in three processes, and its part
/// over open batches spent 250 ms of its 310 in JIT compilation alone
/// (BENCHMARKS.md step 36). The caller's pause after a pass grows with the
/// pass's time, so one backend is what it bounds.
///
/// # Errors
/// Database errors only.
pub async fn begin_counting(pool: &PgPool) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL jit = off").execute(&mut *tx).await?;
    sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0").execute(&mut *tx).await?;
    Ok(tx)
}

/// Jobs per (state, model), as `job_view` states them.
///
/// Counted from where each state is written rather than through the view,
/// whose join of every job with its outcome is most of a count's cost (at
/// 1,000,000 jobs, half of them ended by a worker: 0.77–0.85 s through the
/// view, 0.21–0.33 s so, BENCHMARKS.md step 34):
/// - `held`: the rows of `held_jobs`;
/// - an end written in the job's own row (a cancel, a cache hit, a refused
///   firing): the rows with `finished_at`, which the schema's check
///   `jobs_terminal_has_finished_at` makes exactly the rows in a terminal
///   state, read through the partial index `jobs_finished`. (As `state NOT
///   IN ('held', 'queued')` it read every row of `jobs`: over 1,000,000
///   narrow rows with 1,000 ended, 63 ms so against 1.6 ms through the
///   index; the whole count took 0.68 s a refresh in the burst,
///   BENCHMARKS.md step 35.)
/// - an end a worker wrote, or a leader's answer to a follower: the outcome
///   rows with a state, one per live job row that ended;
/// - a live member of a batch not finished (a batch is marked finished only
///   once none of its jobs is open): `queued`, `running` once the batch has
///   started; or a follower waiting for its leader, with no batch of its
///   own. Both read through indexes that hold only open work: the open
///   batches (`batches_unfinished`), each batch's members, their jobs and
///   outcomes by primary key. The `LATERAL` subquery with `OFFSET 0` keeps
///   that order: joined flat, the planner hashed every member, job and
///   outcome row instead (at 1,000,000 jobs, half ended: 27–38 ms so, and
///   most of a second the other way, step 36).
pub async fn by_state_and_model<'e>(db: impl PgExecutor<'e>) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    sqlx::query_as(concat!(
        "SELECT state, model, sum(n)::bigint FROM (
             SELECT 'held' AS state, model, count(*) AS n FROM held_jobs GROUP BY model
             UNION ALL
             SELECT state, model, count(*) FROM jobs WHERE finished_at IS NOT NULL GROUP BY state, model
             UNION ALL
             SELECT state, model, count(*) FROM job_outcomes WHERE state IS NOT NULL GROUP BY state, model
             UNION ALL
             SELECT CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE 'queued' END, o.model, count(*)
             FROM batches b CROSS JOIN LATERAL (
                 SELECT j.model FROM batch_members m JOIN jobs j ON j.id = m.job_id
                 WHERE m.batch_id = b.id AND ", crate::edge::live!("j"), "
                 OFFSET 0
             ) o
             WHERE NOT b.finished
             GROUP BY 1, 2
             UNION ALL
             SELECT 'queued', j.model, count(*) FROM jobs j
             WHERE j.state = 'queued' AND j.cache_source IS NOT NULL AND ",
        crate::edge::not_ended!("j"), "
             GROUP BY 2
         ) s
         GROUP BY state, model"
    ))
    .fetch_all(db)
    .await
}

/// Held jobs by the hours until they are due, as of `now`: `"0"` for those
/// due already (waiting for capacity or the next round), `"1"` to `"24"`
/// for those due within that many hours (`"1"`: within the next hour), and
/// `"later"`.
pub async fn held_by_hours_until_due<'e>(db: impl PgExecutor<'e>, now: DateTime<Utc>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT CASE WHEN release_at <= $1 THEN '0'
                     WHEN release_at > $1 + interval '24 hours' THEN 'later'
                     ELSE ceil(extract(epoch FROM release_at - $1) / 3600)::int::text END AS bucket,
                count(*)
         FROM held_jobs
         GROUP BY 1",
    )
    .bind(now)
    .fetch_all(db)
    .await
}

/// Every bucket [`held_by_hours_until_due`] can return, in order.
pub fn due_buckets() -> impl Iterator<Item = String> {
    (0..=24).map(|h| h.to_string()).chain(std::iter::once("later".to_owned()))
}
