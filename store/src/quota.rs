//! Daily credit quotas: a limit per tenant and one per user of the tenant,
//! over a day of the tenant's timezone.
//!
//! There is no counter to keep in step: what a day has used is computed from
//! the jobs that count against it (`jobs.quota_day`), each counting what it
//! cost once finished (`credits`; 0 for a failure, a cache hit or a
//! cancellation) and what was reserved for it until then
//! (`reserved_credits`, its price at submission). So a reservation is
//! released or settled by the very statement that finishes the job, on
//! every path that can finish one, and the quota can never disagree with
//! the jobs table. A job a worker ended keeps its reservation in its own
//! row and its charge in its outcome row (`job_outcomes`, which copies the
//! day and the reservation): the sum adds `credits - reserved_credits` of
//! each outcome of the day, so it counts the charge instead.
//!
//! Every job records its quota day, whether or not its tenant has a limit,
//! so a limit set during the day counts the work already submitted that day.
//! Concurrent submissions of one tenant are serialised by a transaction
//! advisory lock on (tenant, day), taken before the sum is read and held
//! until the jobs are committed, so fifty submissions racing for the last
//! credits cannot together overshoot the limit. Tenants without a limit take
//! no lock.

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

pub use offpeak_core::quota::{check, Exceeded, Limits, Scope, Used};

/// Credits a day has used (finished jobs' credits plus unfinished jobs'
/// reservations), for the tenant and for `user_id`.
///
/// # Errors
/// Database errors only.
pub async fn used<'e>(db: impl sqlx::PgExecutor<'e>, tenant_id: Uuid, day: NaiveDate, user_id: Option<&str>) -> Result<Used, sqlx::Error> {
    let (tenant, user): (i64, i64) = sqlx::query_as(
        "WITH parts AS (
             SELECT CASE WHEN finished_at IS NULL THEN reserved_credits ELSE COALESCE(credits, 0) END AS used, user_id
             FROM jobs WHERE tenant_id = $1 AND quota_day = $2
             UNION ALL
             SELECT credits - reserved_credits, user_id
             FROM job_outcomes WHERE tenant_id = $1 AND quota_day = $2 AND state IS NOT NULL
         )
         SELECT COALESCE(sum(used), 0)::bigint, COALESCE(sum(used) FILTER (WHERE user_id = $3), 0)::bigint FROM parts",
    )
    .bind(tenant_id)
    .bind(day)
    .bind(user_id)
    .fetch_one(db)
    .await?;
    Ok(Used { tenant, user })
}

/// Checks that `requested` more credits fit the day's limits and, if they
/// do, keeps the tenant's day locked until the caller's transaction ends:
/// the caller then inserts its jobs with `quota_day = day` and their
/// reservations, and commits. Returns the limit that would be exceeded
/// instead; the caller then rolls back.
///
/// # Errors
/// Database errors only.
pub async fn reserve(
    conn: &mut PgConnection,
    tenant_id: Uuid,
    day: NaiveDate,
    user_id: Option<&str>,
    limits: Limits,
    requested: i64,
) -> Result<Result<Used, Exceeded>, sqlx::Error> {
    lock_day(&mut *conn, tenant_id, day).await?;
    let used = used(&mut *conn, tenant_id, day, user_id).await?;
    Ok(check(limits, used, user_id, requested).map(|()| used))
}

/// Locks the tenant's day until the caller's transaction ends: every
/// reservation against that day waits for it. A transaction that locks
/// several days must lock them in one order (sorted), or two such
/// transactions could wait for each other.
///
/// # Errors
/// Database errors only.
pub async fn lock_day(conn: &mut PgConnection, tenant_id: Uuid, day: NaiveDate) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1::text || '/' || $2::text, 2026))")
        .bind(tenant_id)
        .bind(day)
        .execute(conn)
        .await?;
    Ok(())
}
