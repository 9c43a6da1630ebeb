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
//! the jobs table.
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

/// A tenant's daily limits, in credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// For the whole tenant.
    pub tenant: Option<i64>,
    /// For each `user_id` of the tenant.
    pub per_user: Option<i64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.tenant.is_some() || self.per_user.is_some()
    }
}

/// Which limit a submission would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    User(String),
}

/// A refused reservation: the limit, what the day has used, and what the
/// submission asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: Scope,
    pub limit: i64,
    pub used: i64,
    pub requested: i64,
}

/// What a day has used, for the tenant and for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub tenant: i64,
    pub user: i64,
}

/// Credits a day has used (finished jobs' credits plus unfinished jobs'
/// reservations), for the tenant and for `user_id`.
///
/// # Errors
/// Database errors only.
pub async fn used<'e>(db: impl sqlx::PgExecutor<'e>, tenant_id: Uuid, day: NaiveDate, user_id: Option<&str>) -> Result<Used, sqlx::Error> {
    let (tenant, user): (i64, i64) = sqlx::query_as(
        "SELECT COALESCE(sum(CASE WHEN finished_at IS NULL THEN reserved_credits ELSE COALESCE(credits, 0) END), 0)::bigint,
                COALESCE(sum(CASE WHEN finished_at IS NULL THEN reserved_credits ELSE COALESCE(credits, 0) END)
                         FILTER (WHERE user_id = $3), 0)::bigint
         FROM jobs WHERE tenant_id = $1 AND quota_day = $2",
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

/// Whether `requested` more credits fit `limits` on top of `used` (read
/// under [`lock_day`]): the tenant's limit first, then the user's.
///
/// # Errors
/// The limit that would be exceeded.
pub fn check(limits: Limits, used: Used, user_id: Option<&str>, requested: i64) -> Result<(), Exceeded> {
    if let Some(limit) = limits.tenant {
        if used.tenant.saturating_add(requested) > limit {
            return Err(Exceeded { scope: Scope::Tenant, limit, used: used.tenant, requested });
        }
    }
    if let (Some(limit), Some(user)) = (limits.per_user, user_id) {
        if used.user.saturating_add(requested) > limit {
            return Err(Exceeded { scope: Scope::User(user.to_owned()), limit, used: used.user, requested });
        }
    }
    Ok(())
}
