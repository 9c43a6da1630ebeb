//! Limits on provider calls shared by every worker replica: the SQL behind
//! `worker::limits` (issue #20). Tables in
//! `migrations/20261208000001_provider_limits.sql`.
//!
//! A limit key (`provider:NAME`, `model:NAME`) may have a number of
//! requests per minute and a number of calls in flight:
//!
//! - **requests per minute** is a sliding log (`provider_calls`): a call is
//!   allowed while fewer than the limit were allowed in the last `window`
//!   (a minute plus the caller's guard margin), by PostgreSQL's clock. It is
//!   exact over *any* window of that length, where a token bucket whose
//!   burst is the limit lets up to twice the limit into some minute.
//! - **calls in flight** are leases (`provider_leases`): a row per call in
//!   flight, deleted by [`release`] when its answer is in, and no longer
//!   counted once `expires_at` has passed, so a killed worker's calls stop
//!   counting on their own.
//!
//! # Locking
//!
//! [`acquire`] runs one transaction per attempt. It first takes every key's
//! transaction-scoped advisory lock, in the order of the keys (the caller
//! sorts them, so two calls under the same two keys never wait for each
//! other); then, in a **new statement** (a new snapshot under READ
//! COMMITTED, so the rows of the previous holder's commit are seen), it
//! reads each key's window and leases, decides, and inserts the call's rows
//! for every key or for none. The locks are released by the commit, after
//! its rows are visible, so the next holder counts them. Reads of the time
//! use `clock_timestamp()` after the locks are held: `now()` is the start of
//! the transaction, before a wait for the lock, and would date a call too
//! early. Every time is PostgreSQL's, one clock for every worker.
//!
//! [`release`] needs no lock: deleting a lease only frees room, and a
//! waiter that read before the delete committed waits one poll longer.

use std::time::Duration;

use sqlx::{PgPool, Row};
use uuid::Uuid;

use offpeak_core::providers::Limits;

/// Seed of the advisory lock keys' hash, so that a key's lock does not
/// share its number with the other advisory locks of the schema.
const LOCK_SEED: i64 = 20;

/// One key's limits, as [`acquire`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLimits {
    pub key: String,
    pub limits: Limits,
}

/// What one call asks for.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Sorted by key, without duplicates: the locks are taken in this order.
    pub keys: &'a [KeyLimits],
    /// The worker process asking (kept on its leases).
    pub holder: Uuid,
    /// How far back calls count against a per-minute limit: a minute plus
    /// the caller's guard margin.
    pub window: Duration,
    /// How long a lease counts if it is never released.
    pub lease: Duration,
}

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    RequestsPerMinute,
    Concurrency,
}

impl LimitKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::RequestsPerMinute => "requests_per_minute",
            LimitKind::Concurrency => "concurrency",
        }
    }
}

/// One key's refusal, and when it may allow the call.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub key: String,
    pub kind: LimitKind,
    /// `RequestsPerMinute`: when the oldest call of the window leaves it
    /// (exact, unless more calls than the limit are in the window, after
    /// the limit was lowered). `Concurrency`: when the first lease expires,
    /// an upper bound: a release usually comes before.
    pub retry_in: Duration,
}

/// The answer of [`acquire`].
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The call may start; it was recorded under every key. `lease_id` names
    /// its leases (keys with a concurrency limit); give it to [`release`]
    /// when the call's answer is in.
    Granted { lease_id: Option<Uuid> },
    /// At least one key refused; nothing was recorded.
    Refused(Vec<Refusal>),
}

/// Records one call under every key of `req`, if every key allows one more
/// now; else says which refuse and until when. See the module's locking.
///
/// # Errors
/// Database errors only; nothing is recorded then.
pub async fn acquire(pool: &PgPool, req: &Request<'_>) -> Result<Verdict, sqlx::Error> {
    if req.keys.is_empty() {
        return Ok(Verdict::Granted { lease_id: None });
    }
    let keys: Vec<&str> = req.keys.iter().map(|k| k.key.as_str()).collect();
    let window_us = micros(req.window);
    let mut tx = pool.begin().await?;
    // The keys' locks, in the caller's (sorted) order, held until the commit.
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended('offpeak.limit/' || k, $2))
         FROM unnest($1::text[]) WITH ORDINALITY AS u(k, n) ORDER BY n",
    )
    .bind(&keys)
    .bind(LOCK_SEED)
    .execute(&mut *tx)
    .await?;
    // A new statement under the locks: its snapshot has every call and
    // lease committed before we got them. One reading of the clock for all
    // keys; the waits are computed here, on PostgreSQL's clock.
    let rows = sqlx::query(
        "WITH now AS MATERIALIZED (SELECT clock_timestamp() AS t)
         SELECT u.k AS key, c.calls, l.leased,
                COALESCE(EXTRACT(EPOCH FROM c.oldest + $2::bigint * interval '1 microsecond' - now.t), 0)::float8 AS calls_wait,
                COALESCE(EXTRACT(EPOCH FROM l.first_expiry - now.t), 0)::float8 AS lease_wait
         FROM unnest($1::text[]) AS u(k) CROSS JOIN now
         CROSS JOIN LATERAL (
             SELECT count(*) AS calls, min(started_at) AS oldest FROM provider_calls
             WHERE key = u.k AND started_at > now.t - $2::bigint * interval '1 microsecond') c
         CROSS JOIN LATERAL (
             SELECT count(*) AS leased, min(expires_at) AS first_expiry FROM provider_leases
             WHERE key = u.k AND expires_at > now.t) l",
    )
    .bind(&keys)
    .bind(window_us)
    .fetch_all(&mut *tx)
    .await?;

    let mut refusals = Vec::new();
    for row in &rows {
        let key: String = row.try_get("key")?;
        let Some(k) = req.keys.iter().find(|k| k.key == key) else { continue };
        let (calls, leased): (i64, i64) = (row.try_get("calls")?, row.try_get("leased")?);
        let secs = |col: &str| -> Result<Duration, sqlx::Error> {
            let s: f64 = row.try_get(col)?;
            Ok(Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::ZERO))
        };
        if k.limits.requests_per_minute.is_some_and(|rpm| calls >= i64::from(rpm)) {
            refusals.push(Refusal { key: key.clone(), kind: LimitKind::RequestsPerMinute, retry_in: secs("calls_wait")? });
        }
        if k.limits.max_concurrent.is_some_and(|max| leased >= i64::from(max)) {
            refusals.push(Refusal { key, kind: LimitKind::Concurrency, retry_in: secs("lease_wait")? });
        }
    }
    if !refusals.is_empty() {
        // Nothing written: the rollback only ends the transaction and its locks.
        tx.rollback().await?;
        return Ok(Verdict::Refused(refusals));
    }

    let rpm_keys: Vec<&str> = req.keys.iter().filter(|k| k.limits.requests_per_minute.is_some()).map(|k| k.key.as_str()).collect();
    let lease_keys: Vec<&str> = req.keys.iter().filter(|k| k.limits.max_concurrent.is_some()).map(|k| k.key.as_str()).collect();
    let lease_id = (!lease_keys.is_empty()).then(Uuid::new_v4);
    // The call's rows, and the prune of these keys' rows that no longer
    // count (calls out of the window, leases expired): one statement. The
    // DELETEs and INSERTs touch different rows.
    sqlx::query(
        "WITH old_calls AS (
             DELETE FROM provider_calls
             WHERE key = ANY($1) AND started_at <= clock_timestamp() - $2::bigint * interval '1 microsecond'),
         old_leases AS (
             DELETE FROM provider_leases WHERE key = ANY($1) AND expires_at <= clock_timestamp()),
         calls AS (
             INSERT INTO provider_calls (key, started_at) SELECT k, clock_timestamp() FROM unnest($3::text[]) AS k)
         INSERT INTO provider_leases (key, lease_id, holder, expires_at)
         SELECT k, $4, $5, clock_timestamp() + $6::bigint * interval '1 microsecond' FROM unnest($7::text[]) AS k",
    )
    .bind(&keys)
    .bind(window_us)
    .bind(&rpm_keys)
    .bind(lease_id.unwrap_or_else(Uuid::nil))
    .bind(req.holder)
    .bind(micros(req.lease))
    .bind(&lease_keys)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Verdict::Granted { lease_id })
}

/// Ends a call's leases under `keys`: its slots are free for the next
/// call. No lock needed (see the module's locking).
///
/// # Errors
/// Database errors only; the leases then count until they expire.
pub async fn release(pool: &PgPool, keys: &[String], lease_id: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM provider_leases WHERE key = ANY($1) AND lease_id = $2")
        .bind(keys)
        .bind(lease_id)
        .execute(pool)
        .await?;
    Ok(done.rows_affected())
}

/// Ends every lease of a worker process (at its shutdown).
///
/// # Errors
/// Database errors only.
pub async fn release_holder(pool: &PgPool, holder: Uuid) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM provider_leases WHERE holder = $1").bind(holder).execute(pool).await?;
    Ok(done.rows_affected())
}

/// A key's calls in the window and leases in force now, by PostgreSQL's
/// clock: what [`acquire`] counts (for tests and operators).
///
/// # Errors
/// Database errors only.
pub async fn usage(pool: &PgPool, key: &str, window: Duration) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM provider_calls
                 WHERE key = $1 AND started_at > clock_timestamp() - $2::bigint * interval '1 microsecond'),
                (SELECT count(*) FROM provider_leases WHERE key = $1 AND expires_at > clock_timestamp())",
    )
    .bind(key)
    .bind(micros(window))
    .fetch_one(pool)
    .await
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}
