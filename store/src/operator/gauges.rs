//! Gauges of the jobs table for `/metrics`: jobs by state and model, and
//! held jobs by how soon their window opens. Refreshed every few seconds by
//! each scheduler replica, so every query is one bounded `GROUP BY`.

use chrono::{DateTime, Utc};
use sqlx::PgExecutor;

/// Jobs per (state, model).
pub async fn by_state_and_model<'e>(db: impl PgExecutor<'e>) -> Result<Vec<(String, String, i64)>, sqlx::Error> {
    // `job_view`: `running` is a queued job of a started batch.
    sqlx::query_as("SELECT state, model, count(*) FROM job_view GROUP BY state, model").fetch_all(db).await
}

/// Held jobs by the hours until they are due, as of `now`: `"0"` for those
/// due already (waiting for capacity or the next round), `"1"` to `"24"`
/// for those due within that many hours (`"1"`: within the next hour), and
/// `"later"`.
pub async fn held_by_hours_until_due<'e>(db: impl PgExecutor<'e>, now: DateTime<Utc>) -> Result<Vec<(String, i64)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT CASE WHEN release_at <= $1 THEN '0'
                     WHEN release_at > $1 + interval '24 hours' THEN 'later'
                     ELSE ceil(extract(epoch FROM release_at - $1) / 3600)::int::text END AS bucket,
                count(*)
         FROM jobs WHERE state = 'held'
         GROUP BY 1",
    )
    .bind(now)
    .fetch_all(db)
    .await
}

/// Every bucket [`held_by_hours_until_due`] can return, in order.
pub fn due_buckets() -> impl Iterator<Item = String> {
    (0..=24).map(|h| h.to_string()).chain(std::iter::once("later".to_owned()))
}
