//! Operator commands (`offpeak-scheduler migrate`, `tenant ...`,
//! `jobs stats|retry|cancel`, `prune`, `schedules ...`, `webhooks ...`): what each does,
//! once its flags are parsed by `cli.rs`. Each prints a table a person can
//! read, or JSON with `--json` for scripts. The SQL is the store's
//! `operator` module, shared with the dashboard.
//!
//! "Now" is PostgreSQL's (`offpeak_store::clock::database_now`), read once
//! per command, as the serving replicas decide by it (`crate::clock`): a
//! `jobs retry` run on a host with a wrong clock gives the same `release_at`.

pub mod jobs;
pub mod prune;
pub mod schedules;
pub mod tenants;
pub mod webhooks;

use sqlx::migrate::MigrateDatabase;
use sqlx::PgPool;
use uuid::Uuid;

use offpeak_runtime::config::DatabaseArgs;
use offpeak_store::{self as db, tenants as tenants_db};

pub use jobs::{cancel, retry, retry_jobs, stats, Retried};
pub use prune::prune;

/// A tenant's id from its name.
///
/// # Errors
/// No tenant by that name.
pub async fn tenant_id(pool: &PgPool, name: Option<&str>) -> anyhow::Result<Option<Uuid>> {
    match name {
        None => Ok(None),
        Some(n) => Ok(Some(tenants_db::by_name(pool, n).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{n}'"))?.id)),
    }
}

/// Creates the database if it does not exist, then applies every pending
/// migration.
///
/// # Errors
/// The database unreachable past the connect timeout, or a migration that fails.
pub async fn migrate(db_args: &DatabaseArgs) -> anyhow::Result<()> {
    // A migration step usually starts beside its database (compose, a
    // Kubernetes Job): wait for the server as `db::connect` does, rather
    // than take "unreachable" for "no such database".
    let exists = db::retry_unreachable(db_args.connect_timeout(), || {
        sqlx::Postgres::database_exists(&db_args.database_url)
    })
    .await?;
    if !exists {
        sqlx::Postgres::create_database(&db_args.database_url).await?;
        tracing::info!("created the database");
    }
    let pool = db::connect(&db_args.database_url, 2, db_args.connect_timeout()).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

