//! The usage ledger: what each finished job cost and saved.
//!
//! `usage_ledger` is a view of the rows of `job_outcomes` that are usage
//! (`counted`): a job a worker ended has one outcome row, its end and its
//! usage (BENCHMARKS.md step 33). Rows are written only in the statements
//! that give jobs their terminal state ([`super::batches::finish`], and for
//! cache hits [`super::jobs::insert_many`] and [`super::cache::answer`]);
//! this module reads them. Every query
//! is scoped by `tenant_id` and a time range `[start, end)` on
//! `finished_at`.

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgExecutor};
use uuid::Uuid;

/// Requests and credits of one group of ledger rows.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromRow)]
pub struct UsageSums {
    /// Jobs (ledger rows).
    pub requests: i64,
    /// Credits charged.
    pub credits: i64,
    /// Credits at list price, undiscounted.
    pub list_credits: i64,
    /// List minus charged for jobs that were not cache hits: what the off-peak multiplier saved.
    pub saved_offpeak: i64,
    /// List minus charged for exact cache hits (and coalesced jobs): what the exact cache saved.
    pub saved_cache: i64,
    /// List minus charged for semantic hits: what the semantic cache saved.
    pub saved_semantic: i64,
    /// Previews (jobs submitted with `"preview"`) that finished.
    pub previews: i64,
    /// Upgrades (jobs made by `POST /v1/jobs/{id}/upgrade`) that finished.
    pub upgrades: i64,
    /// What the preview-first pattern saved at list prices: each preview's
    /// target list price minus its own, less the list price of every
    /// upgrade of a preview.
    pub saved_preview: i64,
}

impl UsageSums {
    /// Adds another group's sums to these.
    pub fn add(&mut self, o: &UsageSums) {
        self.requests += o.requests;
        self.credits += o.credits;
        self.list_credits += o.list_credits;
        self.saved_offpeak += o.saved_offpeak;
        self.saved_cache += o.saved_cache;
        self.saved_semantic += o.saved_semantic;
        self.previews += o.previews;
        self.upgrades += o.upgrades;
        self.saved_preview += o.saved_preview;
    }
}

/// What a usage query groups by, besides the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    Model,
    User,
    /// The provider the job was sent to; `None` for rows a cache answered.
    Provider,
}

/// The aggregate columns every usage query selects (and the dashboard's
/// spend panel), over ledger columns.
pub(crate) const SUMS: &str = "count(*) AS requests,
    COALESCE(sum(credits), 0)::bigint AS credits,
    COALESCE(sum(list_credits), 0)::bigint AS list_credits,
    COALESCE(sum(list_credits - credits) FILTER (WHERE NOT cache_hit), 0)::bigint AS saved_offpeak,
    COALESCE(sum(list_credits - credits) FILTER (WHERE cache_hit AND NOT semantic), 0)::bigint AS saved_cache,
    COALESCE(sum(list_credits - credits) FILTER (WHERE semantic), 0)::bigint AS saved_semantic,
    count(*) FILTER (WHERE preview_target_list IS NOT NULL) AS previews,
    count(*) FILTER (WHERE parent_id IS NOT NULL) AS upgrades,
    (COALESCE(sum(preview_target_list - list_credits), 0)
     - COALESCE(sum(list_credits) FILTER (WHERE upgrade_of_preview), 0))::bigint AS saved_preview";

#[derive(Debug, FromRow)]
struct KeyedRow {
    key: Option<String>,
    #[sqlx(flatten)]
    sums: UsageSums,
}

/// The tenant's usage in `[start, end)` per model, per user (`None`: jobs
/// without a `user_id`) or per provider (`None`: jobs a cache answered, and
/// no provider was called for), in key order.
pub async fn by_key<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    column: KeyColumn,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<(Option<String>, UsageSums)>, sqlx::Error> {
    let column = match column {
        KeyColumn::Model => "model",
        KeyColumn::User => "user_id",
        KeyColumn::Provider => "provider",
    };
    let sql = format!(
        "SELECT {column} AS key, {SUMS}
         FROM usage_ledger
         WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3
         GROUP BY {column}
         ORDER BY {column}"
    );
    let rows = sqlx::query_as::<_, KeyedRow>(&sql).bind(tenant_id).bind(start).bind(end).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.key, r.sums)).collect())
}

#[derive(Debug, FromRow)]
struct DayRow {
    day: NaiveDate,
    #[sqlx(flatten)]
    sums: UsageSums,
}

/// A day in the tenant's timezone, as the instants it spans.
#[derive(Debug, Clone, Copy)]
pub struct DayRange {
    pub day: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The tenant's usage per day, the days given as instant ranges (the
/// caller computes them in the tenant's timezone, daylight saving
/// included); days without usage are left out.
pub async fn by_day<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, days: &[DayRange]) -> Result<Vec<(NaiveDate, UsageSums)>, sqlx::Error> {
    let names: Vec<NaiveDate> = days.iter().map(|d| d.day).collect();
    let starts: Vec<DateTime<Utc>> = days.iter().map(|d| d.start).collect();
    let ends: Vec<DateTime<Utc>> = days.iter().map(|d| d.end).collect();
    let sql = format!(
        "SELECT d.day, {SUMS}
         FROM unnest($2::date[], $3::timestamptz[], $4::timestamptz[]) AS d(day, s, e)
         JOIN usage_ledger l ON l.tenant_id = $1 AND l.finished_at >= d.s AND l.finished_at < d.e
         GROUP BY d.day
         ORDER BY d.day"
    );
    let rows = sqlx::query_as::<_, DayRow>(&sql).bind(tenant_id).bind(&names).bind(&starts).bind(&ends).fetch_all(db).await?;
    Ok(rows.into_iter().map(|r| (r.day, r.sums)).collect())
}

/// The tenant's usage in `[start, end)`, all together.
pub async fn totals<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<UsageSums, sqlx::Error> {
    let sql = format!("SELECT {SUMS} FROM usage_ledger WHERE tenant_id = $1 AND finished_at >= $2 AND finished_at < $3");
    sqlx::query_as::<_, UsageSums>(&sql).bind(tenant_id).bind(start).bind(end).fetch_one(db).await
}
