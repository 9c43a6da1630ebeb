//! Batches of ours handed to a provider's own batch API (the `openai-batch`
//! adapter): the record of the provider's batch on our batch row, the
//! poller's claim and lease, and what becomes of jobs the provider batch
//! did not answer.
//!
//! ```text
//! worker: start_attempt ─▶ upload + create (or find by metadata) ─▶ record ─▶ ack
//! poller: claim_due (lease) ─▶ GET status ─┬─ not ended ─▶ reschedule
//!                                          └─ ended ─▶ batches::finish (answered jobs)
//!                                                     ─▶ requeue (held, or dead by finish) ─▶ close
//! ```
//!
//! A poll that fails on the database, or outlives its lease, gives the
//! lease back ([`give_back`]); a poller killed mid-poll leaves it to run out.
//!
//! A batch with a `provider_batch_id` belongs to the poller: the rescuer
//! (`batches::claim_stale_batches`) leaves it alone, and its queued jobs may
//! be cancelled while it runs ([`at_provider`], used by `jobs::cancel`).
//! Every write here re-checks the state it moves from, so a poll redone
//! after a crash, or by a second poller after a lease ran out, writes
//! nothing twice.

use chrono::{DateTime, Utc};
use offpeak_core::job::Priority;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::batches::lock_batch;

/// The provider batch recorded on our batch, if any.
///
/// # Errors
/// Database errors only.
pub async fn recorded(pool: &PgPool, batch_id: Uuid) -> Result<Option<String>, sqlx::Error> {
    let row: Option<(Option<String>,)> =
        sqlx::query_as("SELECT provider_batch_id FROM batches WHERE id = $1").bind(batch_id).fetch_optional(pool).await?;
    Ok(row.and_then(|r| r.0))
}

/// When our batch was published: no provider batch made for it can be
/// older, which bounds the search for one by its metadata tag.
///
/// # Errors
/// Database errors only.
pub async fn published_at(pool: &PgPool, batch_id: Uuid) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar("SELECT published_at FROM batches WHERE id = $1").bind(batch_id).fetch_optional(pool).await
}

/// Records the provider's batch on ours, under our batch's lock, with its
/// first poll due at `poll_at`. The first record wins: if another worker
/// recorded one first, that one is returned, and the caller's is not kept.
///
/// # Errors
/// Database errors only.
pub async fn record(
    pool: &PgPool,
    batch_id: Uuid,
    provider_batch_id: &str,
    status: &str,
    poll_at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String, sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    sqlx::query(
        "UPDATE batches SET provider_batch_id = $2, provider_status = $3, poll_at = $4, polls = 0, touched_at = $5
         WHERE id = $1 AND provider_batch_id IS NULL",
    )
    .bind(batch_id)
    .bind(provider_batch_id)
    .bind(status)
    .bind(poll_at)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    let kept: String = sqlx::query_scalar("SELECT provider_batch_id FROM batches WHERE id = $1").bind(batch_id).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(kept)
}

/// A provider batch whose poll is due, leased to the caller.
#[derive(Debug, Clone, FromRow)]
pub struct DueBatch {
    pub id: Uuid,
    pub model: String,
    pub provider_batch_id: String,
    /// Polls so far, this one included.
    pub polls: i32,
}

/// Leases up to `limit` provider batches whose poll is due at `now`: each
/// gets `poll_at = lease_until`, so no other poller takes it until the
/// lease runs out (a poller that dies mid-poll leaves it to the next one
/// then). `FOR UPDATE SKIP LOCKED`: pollers of several replicas claim
/// disjoint batches.
///
/// # Errors
/// Database errors only.
pub async fn claim_due(pool: &PgPool, now: DateTime<Utc>, lease_until: DateTime<Utc>, limit: i64) -> Result<Vec<DueBatch>, sqlx::Error> {
    sqlx::query_as::<_, DueBatch>(
        "WITH due AS (
             SELECT id FROM batches
             WHERE poll_at IS NOT NULL AND poll_at <= $1
             ORDER BY poll_at
             LIMIT $3
             FOR UPDATE SKIP LOCKED
         )
         UPDATE batches b SET poll_at = $2, polls = b.polls + 1
         FROM due WHERE b.id = due.id
         RETURNING b.id, b.model, b.provider_batch_id, b.polls",
    )
    .bind(now)
    .bind(lease_until)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Sets the next poll of a provider batch still running, and its status.
///
/// # Errors
/// Database errors only.
pub async fn reschedule(pool: &PgPool, batch_id: Uuid, status: Option<&str>, poll_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE batches SET poll_at = $3, provider_status = COALESCE($2, provider_status)
         WHERE id = $1 AND poll_at IS NOT NULL",
    )
    .bind(batch_id)
    .bind(status)
    .bind(poll_at)
    .execute(pool)
    .await?;
    Ok(())
}

/// Gives back a lease taken by [`claim_due`] whose poll did not end
/// (a database error, or a poll that outlived its lease): the batch is due
/// again at `poll_at`. Only the caller's own lease is given back: if the
/// poll rescheduled it already, or the lease ran out and another poller
/// holds it now, `poll_at` is no longer `lease_until` and nothing changes.
///
/// # Errors
/// Database errors only.
pub async fn give_back(pool: &PgPool, batch_id: Uuid, lease_until: DateTime<Utc>, poll_at: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE batches SET poll_at = $3 WHERE id = $1 AND poll_at = $2")
        .bind(batch_id)
        .bind(lease_until)
        .bind(poll_at)
        .execute(pool)
        .await?;
    Ok(())
}

/// A job of a provider batch still waiting for its answer.
#[derive(Debug, Clone, FromRow)]
pub struct OpenJob {
    pub id: Uuid,
    /// Attempts the job used in the batches before this one.
    pub earlier_attempts: i32,
    /// Attempts of this batch (its upload and create tries).
    pub batch_attempts: i32,
    pub max_attempts: i32,
    #[sqlx(try_from = "String")]
    pub priority: Priority,
}

impl OpenJob {
    /// Every attempt the job has used, this batch's included.
    pub fn attempts(&self) -> i32 {
        self.earlier_attempts + self.batch_attempts
    }
}

/// The jobs of our batch still live in it (not finished, not cancelled).
///
/// # Errors
/// Database errors only.
pub async fn open_jobs(pool: &PgPool, batch_id: Uuid) -> Result<Vec<OpenJob>, sqlx::Error> {
    sqlx::query_as::<_, OpenJob>(
        concat!(
        "SELECT j.id, j.attempts AS earlier_attempts, b.attempts AS batch_attempts, j.max_attempts, j.priority
         FROM batch_members m JOIN jobs j ON j.id = m.job_id JOIN batches b ON b.id = m.batch_id
         WHERE m.batch_id = $1 AND ", crate::edge::live!("j"), "
         ORDER BY j.id"),
    )
    .bind(batch_id)
    .fetch_all(pool)
    .await
}

/// Puts jobs the provider batch did not answer back to waiting (`held`,
/// their `held_jobs` rows, out of the batch), for a batch of their own
/// later, each with its last error and the attempts it has used
/// (`jobs.attempts`, which its next batch adds to). Only jobs still live in
/// this batch move; their followers (identical jobs waiting for them) go
/// back to waiting too, and a release loop is told. Returns the jobs moved.
///
/// # Errors
/// Database errors only.
pub async fn requeue(pool: &PgPool, batch_id: Uuid, jobs: &[(Uuid, Value)]) -> Result<Vec<Uuid>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = jobs.iter().map(|j| j.0).collect();
    let errors: Vec<Value> = jobs.iter().map(|j| j.1.clone()).collect();
    let mut tx = lock_batch(pool, batch_id).await?;
    let sql = format!(
        "WITH c AS (
             UPDATE jobs j SET state = 'held', batch_id = NULL, queued_at = NULL, error = u.error,
                    attempts = j.attempts + b.attempts
             FROM unnest($2::uuid[], $3::jsonb[]) AS u(id, error), batches b, batch_members m
             WHERE b.id = $1 AND j.id = u.id AND m.job_id = j.id AND m.batch_id = $1 AND {live}
             RETURNING {held_j}
         ),
         out_of_batch AS (DELETE FROM batch_members WHERE job_id IN (SELECT id FROM c)),
         waiting AS (INSERT INTO held_jobs ({held}) SELECT {held} FROM c),
         {free}
         SELECT id FROM c",
        live = crate::edge::live!("j"),
        held = crate::edge::HELD_COLUMNS,
        held_j = crate::edge::qualified(crate::edge::HELD_COLUMNS, "j"),
        free = &*crate::jobs::FREE_FOLLOWERS_OF_C,
    );
    let moved: Vec<Uuid> = sqlx::query_scalar(&sql)
    .bind(batch_id)
    .bind(&ids)
    .bind(&errors)
    .fetch_all(&mut *tx)
    .await?;
    if !moved.is_empty() {
        crate::release::notify_due(&mut *tx, crate::release::Due::Now).await?;
    }
    tx.commit().await?;
    Ok(moved)
}

/// Ends the poller's work on a provider batch: no more polls, its last
/// status kept, and our batch `finished` once none of its jobs is open.
///
/// # Errors
/// Database errors only.
pub async fn close(pool: &PgPool, batch_id: Uuid, status: &str) -> Result<(), sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    sqlx::query(
        concat!(
        "UPDATE batches SET poll_at = NULL, provider_status = $2,
                finished = NOT EXISTS (SELECT 1 FROM batch_members m JOIN jobs j ON j.id = m.job_id
                                       WHERE m.batch_id = $1 AND ", crate::edge::live!("j"), ")
         WHERE id = $1"),
    )
    .bind(batch_id)
    .bind(status)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Whether our batch is at a provider, still polled: its queued jobs may
/// then be cancelled though it has started (the one case a running job
/// may be; the provider may still bill their requests, we charge nothing).
///
/// # Errors
/// Database errors only.
pub async fn at_provider(conn: &mut PgConnection, batch_id: Uuid) -> Result<bool, sqlx::Error> {
    let at: Option<bool> =
        sqlx::query_scalar("SELECT provider_batch_id IS NOT NULL AND poll_at IS NOT NULL FROM batches WHERE id = $1")
            .bind(batch_id)
            .fetch_optional(conn)
            .await?;
    Ok(at.unwrap_or(false))
}

/// After a cancel: a provider batch left with no open job is due for a
/// poll at once, which cancels it at the provider and closes it.
///
/// # Errors
/// Database errors only.
pub async fn poll_now_if_empty(conn: &mut PgConnection, batch_id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query(
        concat!(
        "UPDATE batches SET poll_at = LEAST(poll_at, $2)
         WHERE id = $1 AND provider_batch_id IS NOT NULL AND poll_at IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM batch_members m JOIN jobs j ON j.id = m.job_id
                           WHERE m.batch_id = $1 AND ", crate::edge::live!("j"), ")"),
    )
    .bind(batch_id)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}
