//! PostgreSQL, the system of record: all of offpeak's SQL, with typed rows.
//!
//! The modules follow the steps of a job's flow: [`tenants`] (who submits),
//! [`jobs`] (submit, read, list, cancel), [`clock`] (the database's time, which
//! every decision of the scheduler is taken by), [`cache`] and [`quota`] (what
//! admission checks), [`release`] (the release loop's lock, fair claim,
//! marking and roll-over), [`batches`] (a worker's start, attempts and
//! write-back, and the rescuer's search), [`provider_batches`] (batches
//! at a provider's own batch API: record, poll lease, requeue), [`usage`]
//! (the ledger's sums), [`schedules`] (recurring schedules and their
//! firings), [`limits`] (the provider calls' limits shared by every
//! worker), [`semantic`]
//! (the semantic cache's embeddings and source checks) and [`operator`]
//! (retry, cancel, prune, counts, the dashboard's panels and the metrics
//! gauges). Rows become `offpeak-core` types once, at the edge ([`edge`]):
//! no caller parses a state, priority or timezone again. The binaries call
//! typed functions and never build SQL themselves. Functions that change many rows do it in one set-based
//! statement (arrays of ids and values through `unnest`), not in a loop.
//! Functions take an executor where the caller may want to choose the
//! transaction.

pub mod batches;
pub mod cache;
pub mod clock;
pub mod edge;
pub mod groups;
pub mod jobs;
pub mod limits;
pub mod operator;
pub(crate) mod outbox;
pub mod provider_batches;
pub mod quota;
pub mod release;
pub mod schedules;
pub mod semantic;
pub mod tenants;
pub mod usage;
pub mod webhooks;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use std::str::FromStr;

/// The embedded migrations of `migrations/`.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// Connects a pool, retrying with backoff until `give_up_after` has passed,
/// so a process started before PostgreSQL is up waits instead of dying.
///
/// # Errors
/// An invalid URL at once; the last connection error once `give_up_after` has passed.
pub async fn connect(url: &str, max_connections: u32, give_up_after: Duration) -> Result<PgPool, sqlx::Error> {
    let options = PgConnectOptions::from_str(url)?;
    retry_unreachable(give_up_after, || {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
    })
    .await
}

/// Runs `attempt` until it succeeds, retrying with backoff (200 ms doubling
/// to 5 s, each retry logged) until `give_up_after` has passed: for the
/// first contact with a PostgreSQL server that may not be up yet.
///
/// # Errors
/// The last error once `give_up_after` has passed.
pub async fn retry_unreachable<T, F, Fut>(give_up_after: Duration, mut attempt: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, sqlx::Error>>,
{
    let started = std::time::Instant::now();
    let mut delay = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(e) if started.elapsed() < give_up_after => {
                tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "PostgreSQL not reachable, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects a pool from parsed options, without retrying.
///
/// # Errors
/// The connection error.
pub async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<PgPool, sqlx::Error> {
    PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await
}

/// Applies every pending migration.
///
/// # Errors
/// A migration that fails, or one already applied whose file has changed.
pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
    MIGRATOR.run(pool).await
}

/// `true` when a trivial query succeeds.
pub async fn ping(pool: &PgPool) -> bool {
    sqlx::query("SELECT 1").execute(pool).await.is_ok()
}
