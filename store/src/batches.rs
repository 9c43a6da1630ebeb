//! A batch's life on the worker's side: its lock, the start of an attempt,
//! the record of a transient error, the write-back of its results, and the
//! rescuer's search for stalled batches.
//!
//! Every write of a batch (start, attempt, finish) takes the batch's
//! advisory lock ([`lock_batch`]) exclusively; a release round attaching
//! followers and a cancel of a queued job take it shared. `finish` writes
//! only jobs still running in this batch, so a batch delivered twice is
//! written once.

use chrono::{DateTime, Utc};
use offpeak_core::job::{JobState, Priority};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::release::wait_for_release;

/// A job a worker is about to send to the provider.
#[derive(Debug, Clone, FromRow)]
pub struct StartedJob {
    pub id: Uuid,
    /// The job's input as the JSON text PostgreSQL returns, passed to the
    /// provider as it is. The worker never looks inside an input, and
    /// parsing each one into a `serde_json::Value` tree (and cloning it for
    /// every attempt) was most of the worker's allocations in the 02:00
    /// burst (BENCHMARKS.md step 16).
    pub input: Json<Box<RawValue>>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// Whether the off-peak multiplier applies.
    #[sqlx(try_from = "String")]
    pub priority: Priority,
}

/// What a worker does when a batch arrives: starts the batch, counts its
/// first provider attempt, and returns its jobs still to do.
///
/// The start is one write of the batch's row (`started_at` the first time,
/// `attempts + 1` every time), not of its jobs: a member of a started batch
/// is `running` (the schema's `job_view`; BENCHMARKS.md step 9). The jobs are
/// found by the ids the message carries and their `batch_members` rows of
/// this batch, and only those still live: jobs finished (a redelivered
/// batch) or cancelled are not sent again. A batch started before (its worker died, or the rescuer
/// published it again) starts again, and the provider's idempotency key,
/// the batch id, makes the replayed call free. Runs under the batch's lock
/// ([`lock_batch`]), which a cancel of its queued jobs takes too.
///
/// The release publishes a batch *before* it commits, so a worker fast
/// enough may read the jobs before they are members of this batch. A submission
/// released at once holds the batch's lock until its commit
/// (`release::lock_new_batches`), so the start waits for the commit in
/// [`lock_batch`]. A release round does not: the start finds nothing, and
/// the worker waits for the round in progress to end: it takes the locks
/// a round holds exclusive, shared ([`wait_for_release`]: the batch's
/// `model`'s), lets them go at once, holding no lock of the batch, and
/// tries again, which then sees the committed release. If the release
/// rolled back, the message was an orphan and nothing starts. (It waited on the jobs' row locks before,
/// `FOR UPDATE`, which wrote a lock into every job row: 8% of the batches
/// of a 1,000,000-job burst came this way; BENCHMARKS.md step 11.)
///
/// # Errors
/// Database errors only.
pub async fn start_attempt(
    pool: &PgPool,
    batch_id: Uuid,
    model: &str,
    job_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<Vec<StartedJob>, sqlx::Error> {
    let started = try_start(pool, batch_id, job_ids, now).await?;
    if !started.is_empty() {
        return Ok(started);
    }
    let mut tx = pool.begin().await?;
    wait_for_release(&mut tx, model).await?;
    tx.commit().await?;
    try_start(pool, batch_id, job_ids, now).await
}

async fn try_start(pool: &PgPool, batch_id: Uuid, job_ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<StartedJob>, sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    let started = sqlx::query_as::<_, StartedJob>(
        concat!(
        "WITH open AS (
             SELECT j.id, j.input, j.max_attempts, j.priority
             FROM batch_members m JOIN jobs j ON j.id = m.job_id
             WHERE m.job_id = ANY($2) AND m.batch_id = $1 AND ", crate::edge::live!("j"), "
         ),
         b AS (
             UPDATE batches SET started_at = COALESCE(started_at, $3), attempts = attempts + 1, touched_at = $3
             WHERE id = $1 AND EXISTS (SELECT 1 FROM open)
             RETURNING attempts
         )
         SELECT open.id, open.input, b.attempts, open.max_attempts, open.priority FROM open CROSS JOIN b"),
    )
    .bind(batch_id)
    .bind(job_ids)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(started)
}

/// Begins a transaction holding the batch's lock, waiting for any other
/// holder. Every write a worker makes for a batch (start, attempt,
/// transient error, finish) runs in one, so two deliveries of one batch
/// write one after the other instead of locking its jobs' rows in
/// different orders (a deadlock); and a release round attaching followers
/// to a job of the batch holds the lock shared (see `cache::lock_leaders`),
/// so the finish sees them. An advisory lock, taken in memory: it writes
/// nothing to the jobs' rows.
///
/// # Errors
/// Database errors only.
pub async fn lock_batch(pool: &PgPool, batch_id: Uuid) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(batch_lock_key(batch_id)).execute(&mut *tx).await?;
    Ok(tx)
}

/// The key of a batch's advisory lock ([`lock_batch`]): the two halves of
/// its id folded into one `bigint` (a collision only makes one holder wait
/// for the other).
pub(crate) fn batch_lock_key(batch_id: Uuid) -> i64 {
    let v = batch_id.as_u128();
    ((v >> 64) as u64 ^ v as u64) as i64
}

/// The lock keys of several batches, sorted and without repeats: the order
/// in which every taker of more than one batch's lock takes them, so that
/// two such takers never wait for each other in a cycle.
pub(crate) fn batch_lock_keys(batch_ids: impl IntoIterator<Item = Uuid>) -> Vec<i64> {
    let mut keys: Vec<i64> = batch_ids.into_iter().map(batch_lock_key).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// Counts one more provider attempt for the batch (the same for all its
/// jobs, which are sent together) and marks it as making progress, under
/// the batch's lock.
///
/// # Errors
/// Database errors only.
pub async fn begin_attempt(pool: &PgPool, batch_id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    sqlx::query("UPDATE batches SET attempts = attempts + 1, touched_at = $2 WHERE id = $1")
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A batch with unfinished jobs that nobody has touched since `cutoff`.
#[derive(Debug, Clone, FromRow)]
pub struct StaleBatch {
    pub id: Uuid,
    pub model: String,
    /// Its jobs still `queued` or `running`.
    pub job_ids: Vec<Uuid>,
}

/// Locks up to `limit` stale batches for the caller's transaction (`SKIP
/// LOCKED`: scheduler replicas rescue disjoint batches) and returns them with
/// their unfinished jobs.
///
/// A batch recorded at a provider's own batch API (`provider_batch_id`,
/// the `openai-batch` adapter) is never a candidate: its message was acked
/// on purpose, and the poller (`provider_batches`) owns it until it ends.
///
/// Candidates are the batches not `finished` (index `batches_unfinished`; BENCHMARKS.md step 11)
/// touched before `cutoff`, oldest first; those of them with no open job
/// left (their last jobs were cancelled) are marked `finished` on the way,
/// so no pass looks at them again.
pub async fn claim_stale_batches(conn: &mut PgConnection, cutoff: DateTime<Utc>, limit: i64) -> Result<Vec<StaleBatch>, sqlx::Error> {
    sqlx::query_as::<_, StaleBatch>(
        concat!(
        "WITH candidates AS MATERIALIZED (
             SELECT b.id, b.model, b.touched_at FROM batches b
             WHERE NOT b.finished AND b.touched_at < $1 AND b.provider_batch_id IS NULL
             ORDER BY b.touched_at
             LIMIT $2
             FOR UPDATE OF b SKIP LOCKED
         ),
         stale AS MATERIALIZED (
             SELECT c.id, c.model, c.touched_at, array_agg(j.id ORDER BY j.id) AS job_ids
             FROM candidates c JOIN batch_members m ON m.batch_id = c.id
                  JOIN jobs j ON j.id = m.job_id AND ", crate::edge::live!("j"), "
             GROUP BY c.id, c.model, c.touched_at
         ),
         closed AS (
             UPDATE batches SET finished = true
             WHERE id IN (SELECT id FROM candidates) AND id NOT IN (SELECT id FROM stale)
         )
         SELECT id, model, job_ids FROM stale ORDER BY touched_at"),
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records that a stale batch was published again.
pub async fn mark_republished(conn: &mut PgConnection, batch_ids: &[Uuid], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE batches SET touched_at = $2, republished = republished + 1 WHERE id = ANY($1)")
        .bind(batch_ids)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the last transient error on the batch's unfinished (running) jobs, so a client polling
/// a job that is being retried can see why. Under the batch's lock.
pub async fn record_transient_error(pool: &PgPool, batch_id: Uuid, error: &Value) -> Result<u64, sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    let res = sqlx::query(concat!(
        "UPDATE jobs j SET error = $2 FROM batch_members m WHERE m.batch_id = $1 AND j.id = m.job_id AND ",
        crate::edge::live!("j")
    ))
        .bind(batch_id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(res.rows_affected())
}

/// The final outcome of one job of a batch.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    pub state: JobState,
    /// The provider's output, as the JSON text it sent (PostgreSQL parses
    /// it into `jsonb`; the worker does not need it as a tree).
    pub result: Option<Box<RawValue>>,
    pub error: Option<Value>,
    /// Credits charged.
    pub credits: i64,
    /// The list price (undiscounted) of what was charged; `credits` for a
    /// job that cost nothing.
    pub list_credits: i64,
}

/// What [`finish`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The batch's jobs written (still `running` in this batch until now).
    pub written: Vec<Uuid>,
    /// Followers (coalesced identical jobs) answered with a leader's result.
    pub followers_succeeded: u64,
    /// Followers failed with a leader's permanent error.
    pub followers_failed: u64,
    /// Followers of a dead leader, back to `held` for a chance of their own.
    pub followers_requeued: u64,
}

/// The columns of an outcome row, in the order the finish's two `INSERT`s give them.
const OUTCOME_COLUMNS: &str = "job_id, tenant_id, user_id, model, use_case, priority, state, result, error, credits, \
    list_credits, cache_hit, cache_key, quota_day, reserved_credits, started_at, finished_at, attempts, provider, \
    preview_target_list, parent_id, upgrade_of_preview, counted";

/// The SQL of [`finish`], built once per variant: its text is fixed (the
/// outbox's CTEs included), and this runs for every batch. `lock_jobs`
/// locks the batch's job rows (`FOR NO KEY UPDATE`, no new version) before
/// their outcomes are written: only for a batch at a provider's own batch
/// API, whose queued jobs a cancel may still end (see `jobs::cancel`).
fn finish_sql(lock_jobs: bool) -> String {
    format!(
    "WITH src AS (
         SELECT j.id, j.tenant_id, u.state, u.result, u.error, u.credits, false AS cache_hit, j.group_id, j.model,
                j.user_id, j.metadata, j.created_at, b.started_at, $6::timestamptz AS finished_at,
                j.attempts + b.attempts AS attempts,
                j.use_case, j.priority, u.list_credits, j.preview_target_list, j.parent_id, j.upgrade_of_preview,
                j.cache_key, j.quota_day, j.reserved_credits
         FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $7::bigint[], $8::bigint[])
              AS u(id, state, result, error, credits, list_credits)
         JOIN batch_members m ON m.job_id = u.id AND m.batch_id IS NOT DISTINCT FROM $1
         JOIN jobs j ON j.id = u.id AND j.state IN ('held', 'queued')
         JOIN batches b ON b.id = $1 AND b.started_at IS NOT NULL
         {lock}
     ),
     written AS (
         INSERT INTO job_outcomes ({OUTCOME_COLUMNS})
         SELECT id, tenant_id, user_id, model, use_case, priority, state, result, error, credits,
                list_credits, cache_hit, cache_key, quota_day, reserved_credits, started_at, finished_at, attempts, $10,
                preview_target_list, parent_id, upgrade_of_preview,
                state = 'succeeded' OR credits > 0 OR list_credits > 0
         FROM src
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id
     ),
     done AS (
         SELECT src.* FROM src JOIN written w ON w.job_id = src.id
     ),
     answered AS (
         SELECT f.id, f.tenant_id, d.state,
                CASE WHEN d.state = 'succeeded' THEN d.result END AS result,
                CASE WHEN d.state = 'failed' THEN d.error END AS error,
                0::bigint AS credits, d.state = 'succeeded' AS cache_hit, f.group_id, f.model, f.user_id, f.metadata,
                f.created_at, NULL::timestamptz AS started_at, d.finished_at, f.attempts, f.use_case, f.priority,
                f.preview_target_list, f.parent_id, f.upgrade_of_preview, f.cache_key, f.quota_day, f.reserved_credits
         FROM jobs f JOIN done d ON f.cache_source = d.id
         WHERE f.state = 'queued' AND d.state IN ('succeeded', 'failed')
         FOR NO KEY UPDATE OF f
     ),
     answered_written AS (
         INSERT INTO job_outcomes ({OUTCOME_COLUMNS})
         SELECT id, tenant_id, user_id, model, use_case, priority, state, result, error, 0,
                CASE WHEN state = 'succeeded' THEN $9::bigint ELSE 0 END, cache_hit, cache_key, quota_day, reserved_credits,
                started_at, finished_at, attempts, $10, preview_target_list, parent_id, upgrade_of_preview,
                state = 'succeeded'
         FROM answered
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id
     ),
     freed AS (
         UPDATE jobs f SET state = 'held', cache_source = NULL, queued_at = NULL
         FROM done d
         WHERE f.cache_source = d.id AND f.state = 'queued' AND d.state NOT IN ('succeeded', 'failed')
         RETURNING {follower_cols}
     ),
     freed_waiting AS (
         INSERT INTO held_jobs ({held})
         SELECT {held} FROM jobs f WHERE f.id IN (SELECT id FROM freed)
     ),
     followers AS (
         SELECT {effect_columns} FROM answered a JOIN answered_written w ON w.job_id = a.id
         UNION ALL
         SELECT {effect_columns} FROM freed
     ),
     closed AS (
         UPDATE batches SET finished = true
         WHERE id = $1 AND EXISTS (SELECT 1 FROM done)
           AND NOT EXISTS (SELECT 1 FROM batch_members om JOIN jobs o ON o.id = om.job_id
                           WHERE om.batch_id = $1 AND om.job_id <> ALL($2) AND {live})
     ),
     ended AS (
         SELECT {effect_columns} FROM done UNION ALL SELECT {effect_columns} FROM followers
     ){effects}
     SELECT id, NULL::text FROM done
     UNION ALL
     SELECT id, state FROM followers",
    live = crate::edge::live!("o"),
    held = crate::edge::HELD_COLUMNS,
    lock = if lock_jobs { "FOR NO KEY UPDATE OF j" } else { "" },
    follower_cols = crate::outbox::effect_columns("f"),
    effect_columns = crate::outbox::EFFECT_COLUMNS,
    effects = crate::outbox::terminal_effects("ended"),
    )
}

static FINISH_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| finish_sql(false));
static FINISH_LOCKING_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| finish_sql(true));

/// Writes the outcomes of a batch, the outcomes of the jobs coalesced with
/// its jobs (see [`super::cache`]), and the usage ledger rows of the jobs
/// that succeeded, in one statement. Only jobs still running in this
/// batch (`queued` in it, once it has started) are written, each with the
/// batch's `started_at` and `attempts`; the batch is marked `finished` when
/// none of its jobs is left open, and only the jobs written get a ledger row, so a
/// second delivery of the same batch writes nothing and counts no credits
/// twice, and the ledger always agrees with the jobs table.
/// `list_price` is the model's list price, recorded as what the cache saved
/// for each follower that succeeded. `provider` is the name of the provider
/// the batch's model went to, recorded on every ledger row written (the
/// followers' too: the same call answered them), for usage by provider.
pub async fn finish(
    pool: &PgPool,
    batch_id: Uuid,
    outcomes: &[Outcome],
    list_price: i64,
    provider: &str,
    at_provider: bool,
    now: DateTime<Utc>,
) -> Result<Finished, sqlx::Error> {
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state.as_str()).collect();
    let results: Vec<Option<Json<&RawValue>>> = outcomes.iter().map(|o| o.result.as_deref().map(Json)).collect();
    let errors: Vec<Option<Value>> = outcomes.iter().map(|o| o.error.clone()).collect();
    let credits: Vec<i64> = outcomes.iter().map(|o| o.credits).collect();
    let list_credits: Vec<i64> = outcomes.iter().map(|o| o.list_credits).collect();
    // Take the batch's lock first, in a statement of its own: a release
    // round that is attaching followers to its jobs holds it shared, so this
    // waits for the round to commit, and the statement below, with a new
    // snapshot, finds those followers (see `cache::lock_leaders`).
    let mut tx = lock_batch(pool, batch_id).await?;
    // The batch's jobs are reached only through the primary keys, from the
    // ids given: `m.batch_id IS NOT DISTINCT FROM $1` (the same as `=`, as
    // $1 is never NULL) is a filter no index can serve. With `=`,
    // PostgreSQL's generic plan for the prepared statement (used after
    // five runs) read the batch's jobs through `jobs_open_batch`, which
    // statistics can say holds one row (when taken while every job was
    // held, as before a burst), and joined them to `unnest(...)` by a
    // nested loop that unnested all six arrays, results included, once per
    // job: 100 × 100 rows, 37 of the 42 ms a finish took in the 02:00 burst
    // (auto_explain, BENCHMARKS.md step 10). Forcing a custom plan per call
    // fixed that but planned every finish again, about 1 ms of CPU for 100
    // jobs; with the primary key as the only path the generic plan is the
    // good one, and is kept (step 13).
    //
    // The outcome rows are the jobs' ends and their usage: the jobs' own
    // rows are only read (BENCHMARKS.md step 33). A job already ended has
    // its outcome, so `ON CONFLICT DO NOTHING` leaves it out of `done`: a
    // second delivery of the batch writes nothing and counts no credits
    // twice. Followers answered by a leader are locked `FOR NO KEY UPDATE`
    // (a lock, not a new version) so that a cancel, which locks the job
    // `FOR UPDATE`, and their answer take turns.
    let sql: &str = if at_provider { &FINISH_LOCKING_SQL } else { &FINISH_SQL };
    let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(sql)
    .bind(batch_id)
    .bind(&ids)
    .bind(&states)
    .bind(&results)
    .bind(&errors)
    .bind(now)
    .bind(&credits)
    .bind(&list_credits)
    .bind(list_price)
    .bind(provider)
    .fetch_all(&mut *tx)
    .await?;
    // Followers of a dead leader are back to `held`, due (they were due
    // when claimed): a release loop is told at the commit, in this
    // transaction. Rare, so its notification's commit lock costs nothing.
    if rows.iter().any(|(_, follower)| follower.as_deref() == Some("held")) {
        crate::release::notify_due(&mut *tx, crate::release::Due::Now).await?;
    }
    tx.commit().await?;
    let mut out = Finished::default();
    for (id, follower_state) in rows {
        match follower_state.as_deref() {
            None => out.written.push(id),
            Some("succeeded") => out.followers_succeeded += 1,
            Some("failed") => out.followers_failed += 1,
            Some(_) => out.followers_requeued += 1,
        }
    }
    Ok(out)
}
