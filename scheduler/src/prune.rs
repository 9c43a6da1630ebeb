//! The pruner: deletes finished jobs once they are older than the retention
//! period, so the jobs table holds the backlog plus the retention window,
//! not every job ever run.
//!
//! Each pass ([`Pruner::run_once`]) deletes finished jobs (`succeeded`,
//! `failed`, `dead`, `cancelled`) whose `finished_at` is older than
//! `retention`, in chunks of `chunk` rows (short statements: short locks,
//! small WAL bursts), at most [`PRUNE_CHUNKS_PER_PASS_DEFAULT`] chunks per
//! pass; a pass cut short by that bound says so and the loop runs again at
//! once. Then the batches left without jobs go too. The usage ledger is
//! kept: usage stays answerable after its jobs are gone. A job a worker
//! ended is found by its outcome's `finished_at` (`job_outcomes_finished`);
//! its outcome row keeps its usage without the result, error and state, or
//! goes with the job when it is not usage (a failure that cost nothing).
//!
//! Chunks are claimed with `FOR UPDATE SKIP LOCKED`, so replicas pruning at
//! the same time delete disjoint rows instead of waiting on each other. The
//! partial index `jobs_finished` makes each chunk read only what it deletes.
//! Deleted rows leave dead tuples that (auto)vacuum reclaims for new jobs:
//! with pruning the table's size follows the retention window.
//!
//! ```rust,no_run
//! # async fn example(pool: sqlx::PgPool, clock: offpeak_core::clock::SharedClock) -> Result<(), sqlx::Error> {
//! use offpeak_scheduler::prune::{PruneConfig, Pruner};
//! let report = Pruner::new(pool, clock, PruneConfig::default()).run_once().await?;
//! println!("{} finished jobs deleted", report.jobs);
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use sqlx::PgPool;

use offpeak_core::clock::SharedClock;
use offpeak_store::operator as ops;
use offpeak_runtime::shutdown::ShutdownSignal;

use crate::rounds::{self, Next};

/// Default pause between passes when the last one found nothing more.
pub const PRUNE_INTERVAL_DEFAULT: Duration = Duration::from_secs(5 * 60);
/// Default age of a finished job before it is deleted (also the `prune`
/// command's default, `OFFPEAK_RETENTION_DAYS`).
pub const RETENTION_DAYS_DEFAULT: i64 = 30;
/// Default rows per `DELETE`.
pub const PRUNE_CHUNK_DEFAULT: i64 = 5_000;
/// Most chunks one pass deletes before it yields.
pub const PRUNE_CHUNKS_PER_PASS_DEFAULT: u32 = 20;

#[derive(Debug, Clone)]
pub struct PruneConfig {
    pub interval: Duration,
    /// Finished jobs older than this are deleted.
    pub retention: chrono::Duration,
    pub chunk: i64,
    pub chunks_per_pass: u32,
}

impl Default for PruneConfig {
    fn default() -> Self {
        Self {
            interval: PRUNE_INTERVAL_DEFAULT,
            retention: chrono::Duration::days(RETENTION_DAYS_DEFAULT),
            chunk: PRUNE_CHUNK_DEFAULT,
            chunks_per_pass: PRUNE_CHUNKS_PER_PASS_DEFAULT,
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Finished jobs deleted.
    pub jobs: u64,
    /// The pass stopped at its chunk bound: more may be prunable.
    pub more: bool,
}

/// The pruner of one scheduler replica.
#[derive(Debug, Clone)]
pub struct Pruner {
    pool: PgPool,
    clock: SharedClock,
    config: PruneConfig,
}

impl Pruner {
    pub fn new(pool: PgPool, clock: SharedClock, config: PruneConfig) -> Self {
        Self { pool, clock, config }
    }

    /// One pass at the clock's current instant.
    ///
    /// # Errors
    /// Database errors; chunks deleted before stay deleted.
    pub async fn run_once(&self) -> Result<PruneReport, sqlx::Error> {
        let before = self.clock.now() - self.config.retention;
        let mut report = PruneReport::default();
        for _ in 0..self.config.chunks_per_pass.max(1) {
            let n = ops::prune_chunk(&self.pool, before, self.config.chunk).await?;
            report.jobs += n;
            report.more = n as i64 >= self.config.chunk;
            if !report.more {
                break;
            }
        }
        // Webhook deliveries delivered or given up, and completed groups,
        // go after the same retention as jobs (one chunk a pass).
        offpeak_store::webhooks::prune_chunk(&self.pool, before, self.config.chunk).await?;
        offpeak_store::groups::prune_completed(&self.pool, before, self.config.chunk).await?;
        Ok(report)
    }

    /// Runs passes until shutdown; logs only passes that deleted something.
    pub async fn run(self, shutdown: ShutdownSignal) {
        tracing::info!(interval_s = self.config.interval.as_secs(), retention_days = self.config.retention.num_days(), "pruner started");
        let this = &self;
        rounds::run("prune", "nothing was lost", self.config.interval, shutdown, || async move {
            let r = this.run_once().await?;
            if r.jobs > 0 {
                tracing::info!(jobs = r.jobs, more = r.more, "pruned finished jobs past the retention period");
            }
            Ok::<_, sqlx::Error>(if r.more { Next::Now } else { Next::Later })
        })
        .await;
    }
}
