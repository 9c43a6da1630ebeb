//! `prune`: deletes finished jobs past the retention period.

use chrono::Duration;
use serde_json::json;
use sqlx::PgPool;

use offpeak_store::operator as ops;

use crate::cli::PruneArgs;

/// Deletes finished jobs older than the retention period, in chunks.
///
/// # Errors
/// Database errors (what was deleted before stays deleted).
pub async fn prune(pool: &PgPool, older_than_days: i64, chunk: i64, as_json: bool) -> anyhow::Result<()> {
    let before = offpeak_store::clock::database_now(pool).await? - Duration::days(older_than_days);
    let mut total = 0u64;
    loop {
        let n = ops::prune_chunk(pool, before, chunk).await?;
        total += n;
        if n == 0 {
            break;
        }
    }
    if as_json {
        println!("{}", json!({"pruned": total, "finished_before": before}));
    } else {
        println!("{total} finished job(s) older than {older_than_days} days deleted (finished before {})", before.to_rfc3339());
    }
    Ok(())
}

/// `prune` from its flags.
///
/// # Errors
/// Flags out of range, or database errors.
pub async fn run(a: PruneArgs) -> anyhow::Result<()> {
    if a.older_than_days < 0 || a.chunk < 1 {
        anyhow::bail!("--older-than-days must be >= 0 and --chunk >= 1");
    }
    let pool = offpeak_store::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    prune(&pool, a.older_than_days, a.chunk, a.json).await
}
