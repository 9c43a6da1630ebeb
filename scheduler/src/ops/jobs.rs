//! `jobs stats`, `jobs retry` (and the dashboard's retry of one job), `jobs cancel`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use chrono_tz::Tz;
use offpeak_core::job::JobState;
use offpeak_core::window::WindowSpec;
use offpeak_store::operator::{self as ops, RetryFilter};
use offpeak_store::{self as db, operator};

use crate::cli::{JobsCancelArgs, JobsRetryArgs, JsonArgs};

/// Held jobs that become due in one UTC hour.
#[derive(Debug, serde::Serialize)]
struct DueHour {
    hour: DateTime<Utc>,
    jobs: i64,
}

/// Counts by state, model and tenant, and the releases due in the next 24
/// hours by UTC hour.
///
/// # Errors
/// Database errors.
pub async fn stats(pool: &PgPool, as_json: bool) -> anyhow::Result<()> {
    let rows = ops::counts(pool).await?;
    let now = offpeak_store::clock::database_now(pool).await?;
    // The dashboard's "due tonight" query, summed over models per hour.
    let mut tx = ops::dashboard::begin_read(pool).await?;
    let groups = ops::dashboard::held_due_by_hour(&mut tx, now, now + Duration::hours(24)).await?;
    tx.commit().await?;
    let mut hours: BTreeMap<DateTime<Utc>, i64> = BTreeMap::new();
    for g in groups.iter().filter(|g| g.model.is_some()) {
        *hours.entry(g.hour).or_default() += g.jobs;
    }
    let due: Vec<_> = hours.into_iter().map(|(hour, jobs)| DueHour { hour, jobs }).collect();
    let mut by_state: BTreeMap<&str, i64> = BTreeMap::new();
    let mut by_model: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    let mut by_tenant: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for r in &rows {
        *by_state.entry(r.state.as_str()).or_default() += r.jobs;
        *by_model.entry(&r.model).or_default().entry(r.state.as_str()).or_default() += r.jobs;
        *by_tenant.entry(&r.tenant).or_default().entry(r.state.as_str()).or_default() += r.jobs;
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

/// A job an operator put back to `held`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retried {
    pub id: Uuid,
    pub timezone: Tz,
    /// When it is due if low priority (a normal-priority job is due at once).
    pub release_at: DateTime<Utc>,
}

/// Puts the filter's dead or failed jobs back to `held` with fresh attempts:
/// the one retry of both the command line (`jobs retry`) and the dashboard.
/// A low-priority job waits for its next window, in its timezone, with its
/// tenant's own window where the tenant has one (else `default_window`, the
/// deployment's); `release_now` makes every job due at `now`.
///
/// # Errors
/// Database errors, or a stored timezone or window that does not parse.
pub async fn retry_jobs(
    pool: &PgPool,
    filter: &RetryFilter,
    release_now: bool,
    default_window: &WindowSpec,
    now: DateTime<Utc>,
) -> Result<Vec<Retried>, sqlx::Error> {
    let mut moved = Vec::new();
    for group in operator::retry_groups(pool, filter).await? {
        let left = filter.limit - moved.len() as i64;
        if left <= 0 {
            break;
        }
        let (release_at, closes) = if release_now {
            (now, None)
        } else {
            let w = group.next_window(now, default_window);
            (w.opens_at, Some(w.closes_at))
        };
        let ids = operator::retry(pool, &RetryFilter { limit: left, ..filter.clone() }, &group, release_at, closes, now).await?;
        moved.extend(ids.into_iter().map(|id| Retried { id, timezone: group.timezone, release_at }));
    }
    // Retried jobs may be due now (`release_now`, normal priority, a
    // window open): the release loops are told, after the retry committed
    // (as `soon`, so they also read the next due instant again). A failure
    // to tell them costs only their next poll.
    if !moved.is_empty() {
        if let Err(e) = offpeak_store::release::notify_due(pool, offpeak_store::release::Due::Soon).await {
            tracing::warn!(error = %e, "could not announce the retried jobs to the release loops; they are released at their next poll");
        }
    }
    Ok(moved)
}

/// `jobs retry`: puts dead or failed jobs back to `held` with fresh attempts.
///
/// # Errors
/// A state other than dead/failed, or database errors.
pub async fn retry(pool: &PgPool, filter: RetryFilter, release_now: bool, window: &WindowSpec, as_json: bool) -> anyhow::Result<()> {
    if filter.states.iter().any(|s| !matches!(s, JobState::Dead | JobState::Failed)) {
        anyhow::bail!("--state must be dead or failed");
    }
    let moved = retry_jobs(pool, &filter, release_now, window, offpeak_store::clock::database_now(pool).await?).await?;
    if as_json {
        let jobs: Vec<_> = moved.iter().map(|r| json!({"id": r.id, "timezone": r.timezone.name(), "release_at": r.release_at})).collect();
        println!("{}", json!({"retried": jobs.len(), "jobs": jobs}));
    } else {
        println!("{:<36}  {:<24}  RELEASE_AT (LOW PRIORITY)", "JOB", "TIMEZONE");
        for r in &moved {
            println!("{:<36}  {:<24}  {}", r.id, r.timezone.name(), r.release_at.to_rfc3339());
        }
        let states: Vec<&str> = filter.states.iter().map(|s| s.as_str()).collect();
        println!("{} {} job(s) back to held", moved.len(), states.join("/"));
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
    let ids = ops::cancel(pool, &filter, offpeak_store::clock::database_now(pool).await?).await?;
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

/// `jobs retry` from its flags.
///
/// # Errors
/// An unknown tenant or state, or database errors.
pub async fn run_retry(a: JobsRetryArgs) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let filter = offpeak_store::operator::RetryFilter {
        states: vec![a.state.parse()?],
        job_id: None,
        tenant_id: super::tenant_id(&pool, a.filter.tenant.as_deref()).await?,
        model: a.filter.model,
        limit: a.filter.limit,
    };
    super::retry(&pool, filter, a.now, &a.window, a.json).await
}

/// `jobs stats` from its flags.
///
/// # Errors
/// Database errors.
pub async fn run_stats(a: JsonArgs) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    stats(&pool, a.json).await
}

/// `jobs cancel` from its flags.
///
/// # Errors
/// An unknown tenant or state, or database errors.
pub async fn run_cancel(a: JobsCancelArgs) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let state = a.state.as_deref().map(str::parse::<JobState>).transpose()?;
    let filter = ops::CancelFilter {
        state,
        tenant_id: super::tenant_id(&pool, a.filter.tenant.as_deref()).await?,
        model: a.filter.model,
        limit: a.filter.limit,
    };
    cancel(&pool, filter, a.json).await
}
