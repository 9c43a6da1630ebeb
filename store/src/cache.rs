//! The exact cache and in-flight coalescing, in the `jobs` table and the
//! jobs' outcomes.
//!
//! A job's `cache_key` ([`offpeak_core::hash::cache_key`]) names its (tenant, model,
//! canonical input). The cache is the set of jobs that *succeeded from a
//! provider call* with that key within the TTL (their outcome rows, copied
//! the key: `job_outcomes_cache_source`); there is no separate cache store
//! to keep in step, expire or lose.
//!
//! - At submission, a job whose key is in the cache is stored `succeeded` at
//!   once with that result, `cache_hit`, 0 credits (`db::jobs::insert_many`).
//! - At release, inside the release round's transaction, each due job with
//!   a key is, in this order: answered from the cache (a job with its key
//!   succeeded since it was submitted); or attached to the job with its key
//!   already on its way to the provider (its *leader*: a member of a batch,
//!   live, `batch_members_cache_key`), as a `queued` follower with
//!   `cache_source` = leader and no batch; or, for the first of several
//!   identical due jobs, sent as the leader of the others. Each leaves
//!   `held_jobs` in the statement that moves it.
//! - When a leader finishes (`db::batches::finish`), its followers finish in
//!   the same statement: an outcome each, succeeded as cache hits with its
//!   result, failed with its error, or, if it died or was cancelled, back to
//!   `held` to get their own chance.
//!
//! One leader per key in flight: release rounds run
//! one at a time across scheduler replicas (`release::lock_release`) and
//! hold the release lock of each model they claimed (`release::claim_due`),
//! and a submission released at once holds the lock of its tenant's
//! submissions of its model, with the model's shared
//! (`release::lock_release_for`; a key belongs to one tenant and one
//! model), so they do not race to send a key. Until outcomes (BENCHMARKS.md
//! step 33) a unique index over queued leaders was the backstop; a leader
//! keeps its `batch_members` row at its end, so the index
//! (`batch_members_cache_key`) is not unique.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A succeeded job whose result answers jobs with its key.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct CacheHit {
    pub source: Uuid,
    pub result: Value,
}

#[derive(FromRow)]
struct KeyedHit {
    cache_key: Vec<u8>,
    source: Uuid,
    result: Value,
}

/// The newest provider-made result of each key that finished at or after
/// `since` (the TTL's start).
///
/// # Errors
/// Database errors only.
pub async fn lookup(conn: &mut PgConnection, keys: &[Vec<u8>], since: DateTime<Utc>) -> Result<HashMap<Vec<u8>, CacheHit>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    // Results are outcome rows (`job_outcomes_cache_source`); those stored
    // before outcomes existed are in `jobs` (`jobs_cache_source`): one
    // probe of each per key, the newer result wins.
    //
    // One probe of `jobs_cache_source` (cache_key, finished_at) per key, by
    // construction: with `cache_key = ANY($1)` as a filter, statistics
    // taken while a backlog was held (no finished jobs) let the planner scan
    // every recently finished job instead and test each against the whole
    // array, which grew with every round of the 02:00 burst (28 s for one
    // round's 5,000 keys at 300,000 jobs; BENCHMARKS.md).
    //
    // The TTL is checked outside the per-key subquery on purpose: a
    // condition on `finished_at` inside it lets the planner pick the
    // `jobs_finished` index (a backward scan filtered by key) whenever its
    // statistics say few jobs have finished; without one, only
    // `jobs_cache_source` fits. The newest result per key decides, as before.
    let rows = sqlx::query_as::<_, KeyedHit>(
        "SELECT k.key AS cache_key, h.id AS source, h.result
         FROM unnest($1::bytea[]) AS k(key)
         CROSS JOIN LATERAL (
             SELECT id, result, finished_at FROM (
                 (SELECT job_id AS id, result, finished_at FROM job_outcomes
                  WHERE cache_key = k.key AND state = 'succeeded' AND NOT cache_hit AND result IS NOT NULL
                  ORDER BY finished_at DESC
                  LIMIT 1)
                 UNION ALL
                 (SELECT id, result, finished_at FROM jobs
                  WHERE cache_key = k.key AND state = 'succeeded' AND NOT cache_hit AND result IS NOT NULL
                  ORDER BY finished_at DESC
                  LIMIT 1)
             ) s
             ORDER BY finished_at DESC
             LIMIT 1
         ) h
         WHERE h.finished_at >= $2",
    )
    .bind(keys)
    .bind(since)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.cache_key, CacheHit { source: r.source, result: r.result })).collect())
}

/// The jobs with these keys on their way to the provider (leaders), held for
/// the caller's transaction so that followers it attaches are seen by the
/// leaders' finish.
///
/// Each leader is locked `FOR KEY SHARE` (a cancel, which locks the job `FOR
/// UPDATE`, waits for the round) and its batch's lock shared. A
/// leader's finish takes that lock exclusively *before* its `UPDATE`
/// (`db::jobs::finish`), so either the finish waits for this transaction
/// to commit and then finds its followers, or this waits for the finish to
/// commit; then the leaders are read again, a finished one is dropped, and
/// the caller's cache lookup, made after this, finds its result. (This was a
/// `FOR UPDATE` of every job in the finish: a row lock writes each tuple
/// and its WAL, in every batch, for a race that needs a cache key in flight
/// twice; the advisory lock is taken in memory.)
///
/// # Errors
/// Database errors only.
pub async fn lock_leaders(conn: &mut PgConnection, keys: &[Vec<u8>]) -> Result<HashMap<Vec<u8>, Uuid>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<(Vec<u8>, Uuid, Option<Uuid>)> = sqlx::query_as(
        // Through `batch_members_cache_key` (members with a key), whatever
        // the statistics say: no other index of the members has the key.
        // (Over `jobs`, a batch index scanned with stale statistics once
        // cost 458 ms a round; BENCHMARKS.md step 5.)
        concat!(
        "SELECT m.cache_key, j.id, m.batch_id FROM batch_members m JOIN jobs j ON j.id = m.job_id
         WHERE m.cache_key = ANY($1) AND ", crate::edge::live!("j"), "
         FOR KEY SHARE OF j"),
    )
    .bind(keys)
    .fetch_all(&mut *conn)
    .await?;
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    // The leaders' batches' locks (`db::jobs::lock_batch`), shared, in key order.
    let batch_keys = crate::batches::batch_lock_keys(rows.iter().filter_map(|r| r.2));
    sqlx::query("SELECT pg_advisory_xact_lock_shared(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS b(k, n) ORDER BY n")
        .bind(&batch_keys)
        .execute(&mut *conn)
        .await?;
    // A new statement, so a new snapshot: a finish that held the lock has committed.
    let ids: Vec<Uuid> = rows.iter().map(|r| r.1).collect();
    let open: std::collections::HashSet<Uuid> =
        sqlx::query_scalar::<_, Uuid>(concat!(
            "SELECT id FROM jobs j WHERE id = ANY($1) AND ",
            crate::edge::live!("j")
        ))
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .collect();
    Ok(rows.into_iter().filter(|r| open.contains(&r.1)).map(|r| (r.0, r.1)).collect())
}

/// A held job answered from the cache at release.
#[derive(Debug, Clone)]
pub struct Answer {
    pub id: Uuid,
    pub hit: CacheHit,
    /// The model's list price: what the cache saved.
    pub list_credits: i64,
    /// For a semantic hit, the prompts' similarity (`None`: an exact hit).
    pub similarity: Option<f32>,
}

/// The SQL of [`answer`], built once: its text is fixed (the outbox's
/// CTEs included), and this runs in every release round.
static ANSWER_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
    "WITH waiting AS (
         DELETE FROM held_jobs WHERE id = ANY($1) RETURNING id
     ),
     done AS (
         UPDATE jobs j SET state = 'succeeded', result = u.result, cache_hit = true, cache_source = u.source,
                credits = 0, finished_at = $5, cache_similarity = u.similarity
         FROM unnest($1::uuid[], $2::uuid[], $3::jsonb[], $4::bigint[], $6::real[])
             AS u(id, source, result, list_credits, similarity)
         WHERE j.id = u.id AND j.id IN (SELECT id FROM waiting) AND j.state = 'held'
         RETURNING {cols}, j.use_case, j.priority, u.list_credits, u.similarity IS NOT NULL AS semantic_hit,
                   j.preview_target_list, j.parent_id, j.upgrade_of_preview
     ),
     ledger AS (
         INSERT INTO job_outcomes (job_id, tenant_id, user_id, model, use_case, priority,
                                   credits, list_credits, cache_hit, finished_at, semantic,
                                   preview_target_list, parent_id, upgrade_of_preview)
         SELECT id, tenant_id, user_id, model, use_case, priority, 0, list_credits, true, finished_at, semantic_hit,
                preview_target_list, parent_id, upgrade_of_preview FROM done
         ON CONFLICT (job_id) DO NOTHING
     ){effects}
     SELECT id FROM done",
    cols = crate::outbox::effect_columns("j"),
    effects = crate::outbox::terminal_effects("done"),
    )
});

/// Finishes held jobs as cache hits (0 credits, the source's result; a
/// semantic hit with its similarity) and
/// writes their usage ledger rows, in one statement; only jobs still
/// waiting (their `held_jobs` row, which this deletes: a job cancelled
/// since the claim has none). Returns the ids written.
///
/// # Errors
/// Database errors only.
pub async fn answer(conn: &mut PgConnection, answers: &[Answer], now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    if answers.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = answers.iter().map(|a| a.id).collect();
    let sources: Vec<Uuid> = answers.iter().map(|a| a.hit.source).collect();
    let results: Vec<Value> = answers.iter().map(|a| a.hit.result.clone()).collect();
    let list: Vec<i64> = answers.iter().map(|a| a.list_credits).collect();
    let similarity: Vec<Option<f32>> = answers.iter().map(|a| a.similarity).collect();
    sqlx::query_scalar(&ANSWER_SQL)
    .bind(&ids)
    .bind(&sources)
    .bind(&results)
    .bind(&list)
    .bind(now)
    .bind(&similarity)
    .fetch_all(conn)
    .await
}

/// Attaches held jobs to their leaders: `queued`, no batch, `cache_source`
/// = the leader; they leave `held_jobs`. Returns the jobs attached.
///
/// Only to a leader that is queued or running when this runs: call it after
/// the round has queued its own leaders. A leader claimed by the round but
/// cancelled before it was queued is not, and its would-be followers stay
/// `held` for the next round (attached, they would wait for a job that
/// never runs). A leader in flight is held by [`lock_leaders`].
///
/// # Errors
/// Database errors only.
pub async fn attach(conn: &mut PgConnection, pairs: &[(Uuid, Uuid)], now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    if pairs.is_empty() {
        return Ok(Vec::new());
    }
    let followers: Vec<Uuid> = pairs.iter().map(|p| p.0).collect();
    let leaders: Vec<Uuid> = pairs.iter().map(|p| p.1).collect();
    sqlx::query_scalar(
        concat!(
        "WITH waiting AS (
             DELETE FROM held_jobs h USING unnest($1::uuid[], $2::uuid[]) AS u(id, leader)
             WHERE h.id = u.id
               AND EXISTS (SELECT 1 FROM batch_members lm JOIN jobs l ON l.id = lm.job_id
                           WHERE lm.job_id = u.leader AND ", crate::edge::live!("l"), ")
             RETURNING h.id, u.leader
         )
         UPDATE jobs j SET state = 'queued', cache_source = w.leader, queued_at = $3
         FROM waiting w
         WHERE j.id = w.id AND j.state = 'held'
         RETURNING j.id"),
    )
    .bind(&followers)
    .bind(&leaders)
    .bind(now)
    .fetch_all(conn)
    .await
}
