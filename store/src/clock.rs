//! The database's clock: the one time every scheduler replica decides by.
//!
//! PostgreSQL's `clock_timestamp()` is the instant the statement reads it,
//! not the start of its transaction (`now()`), so a caller that times the
//! round trip knows the server's time to within half of it. The scheduler's
//! clock (`offpeak_scheduler::clock`) samples it this way and extrapolates
//! between samples, so that no replica's own wall clock decides anything.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// PostgreSQL's current time, read as late as the server can
/// (`clock_timestamp()`). Time the call on a connection already acquired:
/// waiting for a pooled connection would count as round trip.
///
/// # Errors
/// The query's error.
pub async fn database_now<'e, E: PgExecutor<'e>>(executor: E) -> Result<DateTime<Utc>, sqlx::Error> {
    sqlx::query_scalar("SELECT clock_timestamp()").fetch_one(executor).await
}
