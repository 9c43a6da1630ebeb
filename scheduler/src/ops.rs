//! Operator commands: `jobs stats|retry|cancel`, `prune`. Each prints a
//! table a person can read, or JSON with `--json` for scripts.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use offpeak_store::jobs::{self as jobs_db, RetryFilter};
use offpeak_store::{ops, tenants};
use offpeak_core::job::JobState;
use offpeak_core::tz::parse as parse_timezone;
use offpeak_core::window::{next_window, WindowSpec};

/// A tenant's id from its name.
///
/// # Errors
/// No tenant by that name.
pub async fn tenant_id(pool: &PgPool, name: Option<&str>) -> anyhow::Result<Option<Uuid>> {
    match name {
        None => Ok(None),
        Some(n) => Ok(Some(tenants::by_name(pool, n).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{n}'"))?.id)),
    }
}

/// Counts by state, model and tenant, and the releases due in the next 24
/// hours by UTC hour.
///
/// # Errors
/// Database errors.
pub async fn stats(pool: &PgPool, as_json: bool) -> anyhow::Result<()> {
    let rows = ops::counts(pool).await?;
    let now = Utc::now();
    let due = ops::due_by_hour(pool, now, now + Duration::hours(24)).await?;
    let mut by_state: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_model: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for r in &rows {
        *by_state.entry(&r.state).or_default() += r.jobs;
        *by_model.entry(&r.model).or_default().entry(&r.state).or_default() += r.jobs;
        *by_tenant.entry(&r.tenant).or_default().entry(&r.state).or_default() += r.jobs;
    }
    if as_json {
        println!(
            "{}",
            json!({"by_state": by_state, "by_model": by_model, "by_tenant": by_tenant, "due_next_24h": due})
        );
        return Ok(());
    }
    let states = JobState::ALL.map(JobState::as_str);
    let table = |title: &str, groups: &BTreeMap<&str, BTreeMap<&str, i64>>| {
        print!("{title:<24}");
        for s in states {
            print!(" {s:>10}");
        }
        println!();
        for (name, counts) in groups {
            print!("{name:<24}");
            for s in states {
                print!(" {:>10}", counts.get(s).copied().unwrap_or(0));
            }
            println!();
        }
        println!();
    };
    let mut all = BTreeMap::new();
    all.insert("all", by_state.clone());
    table("JOBS", &all);
    table("MODEL", &by_model);
    table("TENANT", &by_tenant);
    println!("{:<24} {:>10}", "DUE (UTC HOUR)", "JOBS");
    for d in &due {
        println!("{:<24} {:>10}", d.hour.format("%Y-%m-%d %H:00"), d.jobs);
    }
    if due.is_empty() {
        println!("(nothing due in the next 24 hours)");
    }
    Ok(())
}

/// Puts dead or failed jobs back to `held` with fresh attempts.
///
/// # Errors
/// A state other than dead/failed, or database errors.
pub async fn retry(pool: &PgPool, filter: RetryFilter, release_now: bool, window: &WindowSpec, as_json: bool) -> anyhow::Result<()> {
    if !matches!(filter.state, JobState::Dead | JobState::Failed) {
        anyhow::bail!("--state must be dead or failed");
    }
    let now = Utc::now();
    let mut moved = Vec::new();
    for tz_name in jobs_db::retry_timezones(pool, &filter).await? {
        let left = filter.limit - moved.len() as i64;
        if left <= 0 {
            break;
        }
        let (release_at, closes) = if release_now {
            (now, None)
        } else {
            let w = next_window(parse_timezone(&tz_name)?, now, window);
            (w.opens_at, Some(w.closes_at))
        };
        let ids = jobs_db::retry(pool, &RetryFilter { limit: left, ..filter.clone() }, &tz_name, release_at, closes, now).await?;
        moved.extend(ids.into_iter().map(|id| (tz_name.clone(), id, release_at)));
    }
    if as_json {
        let jobs: Vec<_> = moved.iter().map(|(tz, id, at)| json!({"id": id, "timezone": tz, "release_at": at})).collect();
        println!("{}", json!({"retried": jobs.len(), "jobs": jobs}));
    } else {
        println!("{:<36}  {:<24}  RELEASE_AT (LOW PRIORITY)", "JOB", "TIMEZONE");
        for (tz, id, at) in &moved {
            println!("{id:<36}  {tz:<24}  {}", at.to_rfc3339());
        }
        println!("{} {} job(s) back to held", moved.len(), filter.state);
    }
    Ok(())
}

/// Cancels held or queued jobs matching the filter.
///
/// # Errors
/// Database errors.
pub async fn cancel(pool: &PgPool, filter: ops::CancelFilter, as_json: bool) -> anyhow::Result<()> {
    if filter.state.is_some_and(|s| !s.is_cancellable()) {
        anyhow::bail!("--state must be held or queued: only jobs no worker has started can be cancelled");
    }
    let ids = ops::cancel(pool, &filter, Utc::now()).await?;
    if as_json {
        println!("{}", json!({"cancelled": ids.len(), "ids": ids}));
    } else {
        for id in &ids {
            println!("{id}");
        }
        println!("{} job(s) cancelled", ids.len());
    }
    Ok(())
}

/// Deletes finished jobs older than the retention period, in chunks.
///
/// # Errors
/// Database errors (what was deleted before stays deleted).
pub async fn prune(pool: &PgPool, older_than_days: i64, chunk: i64, as_json: bool) -> anyhow::Result<()> {
    let before = Utc::now() - Duration::days(older_than_days);
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
