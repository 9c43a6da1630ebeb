//! The firing loop: turns due schedule firings into jobs, each exactly once.
//!
//! Each round ([`Firer::run_once`]), in one transaction:
//!
//! 1. **Claim.** Lock the schedules whose `next_fire_at` has come
//!    (`FOR UPDATE SKIP LOCKED`, oldest first, at most `claim_limit`), so
//!    replicas fire disjoint schedules and never wait on each other.
//! 2. **Plan.** For each, the firings in `[next_fire_at, now]`: those at most
//!    `misfire_grace` old are on time and fire; older ones were missed (the
//!    scheduler was down) and follow the schedule's `catch_up` policy
//!    (`offpeak_core::schedule::plan_due`).
//! 3. **Record, then create.** Insert one `schedule_firings` row per firing
//!    with `ON CONFLICT (schedule_id, fire_at) DO NOTHING`; only the rows
//!    actually inserted get their job, inserted by the same function as a
//!    bulk API submission (`db::jobs::insert_many`), in the same transaction.
//!    The template goes through the same parse as every submission
//!    (`Submission::parse_template`, with the rules the API runs with): a
//!    template that no longer passes (its model was taken out of the price
//!    table, a limit was lowered since it was stored) makes a job stored
//!    `failed` with the parse's error, for the tenant to see, as a quota
//!    refusal does. A low-priority job is held until its window like any
//!    other.
//! 4. **Advance** every claimed schedule's `next_fire_at` past `now`, and
//!    commit; a round that made a job due now or soon tells the release
//!    loops in the same transaction (`NOTIFY`, delivered at the commit,
//!    see [`crate::wake`]).
//!
//! So a firing exists once and has one job: a second replica skips the
//! locked schedules, finds them advanced after the commit, and even with
//! skewed clocks cannot record a firing again (the unique key); a crash
//! before the commit rolls back the firings and their jobs together, and the
//! next round (on any replica) makes them again.
//!
//! ```rust,no_run
//! use std::sync::Arc;
//! use offpeak_scheduler::firing::{Firer, FiringConfig};
//! use offpeak_core::clock::SystemClock;
//!
//! # async fn example(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
//! let firer = Firer::new(pool, Arc::new(SystemClock), FiringConfig::default());
//! // One round, as tests drive it (production runs `firer.run(shutdown)`).
//! let report = firer.run_once().await?;
//! println!("{} jobs created, {} missed firings skipped", report.created, report.skipped);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use offpeak_core::clock::SharedClock;
use offpeak_store::jobs::{self as jobs_db, Admission, Admitted, NewInput, NewJob};
use offpeak_store::quota::Scope;
use offpeak_store::release::Due;
use offpeak_store::schedules::{self as db, Advance, NewFiring, ScheduleRow};
use offpeak_store::tenants::{self as tenants_db, Tenant};
use offpeak_core::prices::{PriceTable, RouteTable};
use offpeak_core::submission::{Inputs, Limits, Request, Rules, Submission, SubmissionError};
use offpeak_core::schedule::{plan_due, CatchUp, CatchUpLimits, CronSchedule};
use offpeak_runtime::shutdown::ShutdownSignal;
use offpeak_core::tenant::release_times;
use offpeak_core::window::WindowSpec;

use crate::admission::{self, CacheConfig, Refused};
use crate::metrics;
use crate::rounds::{self, Next};

/// Default pause between rounds when nothing more is due. Cron firings are
/// at most once a second, and a round that finds nothing is one indexed query.
pub const FIRING_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default most schedules one round claims.
pub const CLAIM_LIMIT_DEFAULT: i64 = 100;
/// Default most missed firings `catch_up: all` creates per schedule after an
/// outage; older missed firings are skipped.
pub const MAX_CATCH_UP_DEFAULT: usize = 100;
/// Default age up to which a due firing counts as on time rather than
/// missed. Longer than any pause of a healthy loop, short enough that
/// `catch_up: none` means what it says after an outage.
pub const MISFIRE_GRACE_DEFAULT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct FiringConfig {
    pub interval: Duration,
    pub claim_limit: i64,
    pub max_catch_up: usize,
    pub misfire_grace: Duration,
    /// The off-peak window low-priority jobs wait for (as for the API).
    pub window: WindowSpec,
    /// Provider attempts of each created job (as for the API).
    pub max_attempts: i32,
    /// The exact cache (as for the API).
    pub cache: CacheConfig,
    /// Prices, for quota reservations and what cache hits saved, and the
    /// models a template may name (as for the API).
    pub prices: PriceTable,
    /// What an input and `metadata` may hold (as for the API).
    pub limits: Limits,
}

impl Default for FiringConfig {
    fn default() -> Self {
        Self {
            interval: FIRING_INTERVAL_DEFAULT,
            claim_limit: CLAIM_LIMIT_DEFAULT,
            max_catch_up: MAX_CATCH_UP_DEFAULT,
            misfire_grace: MISFIRE_GRACE_DEFAULT,
            window: WindowSpec::default(),
            max_attempts: 5,
            cache: CacheConfig::default(),
            prices: PriceTable::default(),
            limits: Limits::default(),
        }
    }
}

fn quota_scope(r: &Refused) -> &'static str {
    match r.exceeded.scope {
        Scope::Tenant => "tenant",
        Scope::User(_) => "user",
    }
}

/// A firing's job stored `failed` with `error`, counting against no quota.
fn failed(job: &NewJob, row: &ScheduleRow, error: Value) -> (Vec<NewInput>, Admission) {
    let input = NewInput { id: job.id, input: row.input.clone(), cache_key: None, admitted: Admitted::Refused(error) };
    (vec![input], Admission::default())
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FiringReport {
    /// Schedules claimed.
    pub schedules: u64,
    /// Jobs created (on-time firings and caught-up ones).
    pub created: u64,
    /// Of `created`, missed firings fired by `catch_up`.
    pub caught_up: u64,
    /// Missed firings that `catch_up` skipped.
    pub skipped: u64,
    /// Firings already recorded (by another replica); no job was created.
    pub duplicates: u64,
    /// Of `created`, jobs stored `failed` because a daily credit limit was reached.
    pub refused: u64,
    /// Of `created`, jobs stored `failed` because their schedule's template
    /// no longer parses under the running rules.
    pub invalid: u64,
    /// The round claimed `claim_limit` schedules: more may be due.
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FiringError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// The firing loop of one scheduler replica.
#[derive(Debug, Clone)]
pub struct Firer {
    pool: PgPool,
    clock: SharedClock,
    config: FiringConfig,
}

impl Firer {
    pub fn new(pool: PgPool, clock: SharedClock, config: FiringConfig) -> Self {
        Self { pool, clock, config }
    }

    /// One round at the clock's current instant.
    ///
    /// # Errors
    /// Database errors; the round's transaction rolls back, and its firings
    /// are made by a later round.
    pub async fn run_once(&self) -> Result<FiringReport, FiringError> {
        let now = self.clock.now();
        let mut tx = self.pool.begin().await?;
        let claimed = db::claim_due(&mut tx, now, self.config.claim_limit).await?;
        if claimed.is_empty() {
            return Ok(FiringReport::default());
        }
        let mut report = FiringReport {
            schedules: claimed.len() as u64,
            more: claimed.len() as i64 >= self.config.claim_limit,
            ..Default::default()
        };
        let mut advances = Vec::with_capacity(claimed.len());
        let claimed: Vec<ScheduleRow> = claimed
            .into_iter()
            .filter_map(|c| match c {
                Ok(row) => Some(row),
                Err((schedule_id, e)) => {
                    // A stored value this build cannot read (a zone gone from
                    // a newer tz database): stop the schedule, as one whose
                    // cron cannot be evaluated, rather than fail every round.
                    tracing::error!(%schedule_id, error = %e, "schedule cannot be read; it will not fire until changed");
                    metrics::SCHEDULE_ERRORS.with_label_values(&["invalid_schedule"]).inc();
                    advances.push(Advance { schedule_id, next_fire_at: None, last_fired_at: None, missed: 0 });
                    None
                }
            })
            .collect();
        let limits = CatchUpLimits {
            grace: TimeDelta::from_std(self.config.misfire_grace).unwrap_or(TimeDelta::MAX),
            max_catch_up: self.config.max_catch_up,
        };

        let mut firings = Vec::new();
        for row in &claimed {
            let (schedule, policy) = match parse_row(row) {
                Ok(parsed) => parsed,
                Err(e) => {
                    // Only validated schedules are stored; a zone gone from a
                    // newer tz database would land here. Stop it rather than
                    // claim it again every round.
                    tracing::error!(schedule_id = %row.id, error = %e, "schedule cannot be evaluated; it will not fire until changed");
                    metrics::SCHEDULE_ERRORS.with_label_values(&["invalid_schedule"]).inc();
                    advances.push(Advance { schedule_id: row.id, next_fire_at: None, last_fired_at: None, missed: 0 });
                    continue;
                }
            };
            // Claimed rows are due, so next_fire_at is set; `now` is a safe
            // stand-in that plans no missed firings.
            let due_from = row.next_fire_at.unwrap_or(now);
            let plan = plan_due(&schedule, due_from, now, policy, limits);
            report.skipped += plan.skipped;
            report.caught_up += plan.caught_up;
            if plan.skipped > 0 {
                tracing::info!(schedule_id = %row.id, skipped = plan.skipped, catch_up = %policy, "missed firings skipped");
            }
            firings.extend(plan.fire.iter().map(|&fire_at| NewFiring { schedule_id: row.id, fire_at, job_id: Uuid::now_v7() }));
            advances.push(Advance {
                schedule_id: row.id,
                next_fire_at: plan.next_fire_at,
                last_fired_at: None,
                missed: i64::try_from(plan.skipped).unwrap_or(i64::MAX),
            });
        }

        let recorded = if firings.is_empty() { Vec::new() } else { db::record_firings(&mut tx, &firings, now).await? };
        report.duplicates = (firings.len() - recorded.len()) as u64;
        let rows: HashMap<Uuid, &ScheduleRow> = claimed.iter().map(|r| (r.id, r)).collect();
        // Admission locks each tenant's day that has a limit; taking them in
        // tenant order, as group commit does (`admission::admit_each`), means
        // this round and a group never wait for each other in a cycle. The
        // sort is stable: each schedule's firings keep their order.
        let mut recorded = recorded;
        recorded.sort_by_key(|f| rows.get(&f.schedule_id).map(|r| r.tenant_id));
        let mut last_fired: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
        let mut tenants: HashMap<Uuid, Tenant> = HashMap::new();
        // The strongest announcement the round's held jobs call for.
        let mut due: Option<Due> = None;
        for firing in &recorded {
            let Some(row) = rows.get(&firing.schedule_id) else { continue };
            let tenant = match tenants.get(&row.tenant_id) {
                Some(t) => t.clone(),
                None => {
                    // The schedule's foreign key keeps its tenant.
                    let Some(t) = tenants_db::get(&mut *tx, row.tenant_id).await? else { continue };
                    tenants.insert(t.id, t.clone());
                    t
                }
            };
            let job = self.job_for(row, &tenant, firing, now);
            let (inputs, admission) = match self.parse(row) {
                Err(e) => {
                    tracing::warn!(schedule_id = %row.id, job_id = %job.id, code = e.code.as_str(), field = %e.field,
                        error = %e.message, "schedule template no longer parses; its job is stored failed");
                    metrics::SCHEDULE_ERRORS.with_label_values(&["invalid_template"]).inc();
                    report.invalid += 1;
                    let error = json!({"code": e.code.as_str(), "message": e.message, "field": e.field});
                    failed(&job, row, error)
                }
                Ok(parsed) => {
                    // The same admission (cache, quota) and insert as `POST /v1/jobs/bulk`,
                    // one job at a time because each carries its own fire time in `metadata`.
                    // A template is one input (`Inputs::One`), moved out of the parse.
                    let inputs: Vec<(Uuid, Value)> = parsed.into_inputs().into_iter().map(|i| (job.id, i.into_value())).collect();
                    match admission::admit(&mut tx, &tenant, &job, inputs, row.cache, self.config.cache, &self.config.prices).await? {
                        Ok(admitted) => admitted,
                        Err(refused) => {
                            // Nobody waits for an answer to a firing: the job is
                            // stored `failed` with the refusal, for the tenant to see.
                            metrics::QUOTA_REFUSALS.with_label_values(&[quota_scope(&refused)]).inc();
                            report.refused += 1;
                            let error =
                                json!({"code": "quota_exceeded", "message": admission::refusal_message(&tenant, &refused)});
                            failed(&job, row, error)
                        }
                    }
                }
            };
            jobs_db::insert_many(&mut tx, &job, &inputs, &admission).await?;
            if inputs.iter().any(|i| matches!(i.admitted, Admitted::Held)) {
                due = due.max(Due::of(job.release_at, now));
            }
            let last = last_fired.entry(row.id).or_insert(firing.fire_at);
            *last = (*last).max(firing.fire_at);
        }
        for advance in &mut advances {
            advance.last_fired_at = last_fired.get(&advance.schedule_id).copied();
        }
        db::advance(&mut tx, &advances).await?;
        // One firing round at a time per replica: its notification's commit
        // lock (see `notify_due`) holds up nobody.
        if let Some(due) = due {
            offpeak_store::release::notify_due(&mut *tx, due).await?;
        }
        tx.commit().await?;

        report.created = recorded.len() as u64;
        metrics::SCHEDULE_FIRINGS.with_label_values(&["created"]).inc_by(report.created - report.caught_up.min(report.created));
        metrics::SCHEDULE_FIRINGS.with_label_values(&["caught_up"]).inc_by(report.caught_up.min(report.created));
        metrics::SCHEDULE_FIRINGS.with_label_values(&["skipped"]).inc_by(report.skipped);
        metrics::SCHEDULE_FIRINGS.with_label_values(&["duplicate"]).inc_by(report.duplicates);
        for firing in &recorded {
            tracing::debug!(schedule_id = %firing.schedule_id, fire_at = %firing.fire_at, job_id = %firing.job_id, "schedule fired");
        }
        Ok(report)
    }

    /// The schedule's template through the one parse of a submission, in
    /// the schedule's timezone, under the running prices and limits. The
    /// model is the one stored: a template of `"model": "auto"` was routed
    /// when the schedule was stored or changed, and keeps that model, as it
    /// did before firings were parsed (no routes are given: none is used).
    fn parse(&self, row: &ScheduleRow) -> Result<Submission, SubmissionError> {
        let request = Request {
            model: row.model.clone(),
            use_case: None,
            priority: row.priority,
            timezone: None,
            user_id: row.user_id.clone(),
            metadata: row.metadata.clone(),
            inputs: Inputs::One(row.input.clone()),
            cache: offpeak_core::semantic::CacheChoice::from_bool(row.cache),
        };
        let no_routes = RouteTable::none();
        let rules = Rules { prices: &self.config.prices, routes: &no_routes, limits: self.config.limits };
        Submission::parse_template(request, row.timezone, &rules)
    }

    /// The job a firing creates: the schedule's template in the schedule's
    /// timezone, `metadata` telling which schedule and fire time made it.
    fn job_for(&self, row: &ScheduleRow, tenant: &Tenant, firing: &NewFiring, now: DateTime<Utc>) -> NewJob {
        let priority = row.priority;
        let (release_at, window_closes_at) = release_times(priority, row.timezone, now, &tenant.window(&self.config.window));
        NewJob {
            id: firing.job_id,
            tenant_id: row.tenant_id,
            model: row.model.clone(),
            input: Value::Null,
            priority,
            timezone: row.timezone,
            user_id: row.user_id.clone(),
            metadata: Some(firing_metadata(row, firing.fire_at)),
            release_at,
            window_closes_at,
            max_attempts: self.config.max_attempts,
            created_at: now,
            use_case: row.use_case.clone(),
            group_id: None,
            // `"cache": true` of a template takes the tenant's mode, as a submission's does.
            semantic: row.cache && tenant.cache.is_semantic(),
            lineage: Default::default(),
        }
    }

    /// Runs rounds until shutdown: at once again while a round says there is
    /// more, otherwise after `interval`. Errors are logged and counted, and
    /// the loop carries on after a pause.
    pub async fn run(self, shutdown: ShutdownSignal) {
        tracing::info!(interval_ms = self.config.interval.as_millis() as u64, "firing loop started");
        // Every outcome appears at 0 from the first scrape, so rates and
        // alerts work before the first firing.
        for outcome in ["created", "caught_up", "skipped", "duplicate"] {
            metrics::SCHEDULE_FIRINGS.with_label_values(&[outcome]).inc_by(0);
        }
        let this = &self;
        rounds::run("firing", "nothing was recorded", self.config.interval, shutdown, || async move {
            match this.run_once().await {
                Ok(r) => {
                    if r.created > 0 || r.skipped > 0 {
                        tracing::info!(created = r.created, caught_up = r.caught_up, skipped = r.skipped, schedules = r.schedules, "firing round");
                    }
                    Ok(if r.more { Next::Now } else { Next::Later })
                }
                Err(e) => {
                    metrics::SCHEDULE_ERRORS.with_label_values(&["database"]).inc();
                    Err(e)
                }
            }
        })
        .await;
    }
}

/// A stored schedule's expression and policy.
fn parse_row(row: &ScheduleRow) -> Result<(CronSchedule, CatchUp), String> {
    let schedule = CronSchedule::parse(&row.cron, row.timezone).map_err(|e| e.to_string())?;
    Ok((schedule, row.catch_up))
}

/// The template's metadata object with `schedule_id`, `schedule_name` and
/// `fire_at` set (these win over template keys of the same name).
pub fn firing_metadata(row: &ScheduleRow, fire_at: DateTime<Utc>) -> Value {
    let mut metadata = match &row.metadata {
        Some(Value::Object(map)) => map.clone(),
        _ => serde_json::Map::new(),
    };
    metadata.insert("schedule_id".into(), json!(row.id));
    metadata.insert("schedule_name".into(), json!(row.name));
    metadata.insert("fire_at".into(), json!(fire_at));
    Value::Object(metadata)
}
