//! The rescuer: publishes again the batches that stopped making progress.
//!
//! A batch's jobs can be stranded in `queued` (its message was lost: a queue
//! deleted by hand, a message dead-lettered after too many deliveries) or in
//! `running` (its worker died and the message did not come back). Workers
//! touch a batch when they start it and before every provider attempt; a
//! batch with unfinished jobs that nobody touched for `visibility_timeout` is
//! published again **under the same batch id**, with the ids of its
//! unfinished jobs. The same id is the provider's `Idempotency-Key`, so if
//! the lost worker had already been answered, the replay is not billed; and
//! `finish` writes only jobs still `running`, so if the original message
//! turns up after all, the two deliveries write each result once.
//!
//! The timeout must be longer than a batch can legitimately go untouched: the
//! provider timeout plus the longest retry pause plus the time a message may
//! wait in the queue (bounded by the release loop's depth limit).

use std::time::Duration;

use sqlx::PgPool;

use offpeak_runtime::broker::Publisher;
use offpeak_core::clock::SharedClock;
use offpeak_store::batches as db;
use offpeak_core::message::BatchMessage;
use offpeak_runtime::shutdown::ShutdownSignal;

use crate::metrics;
use crate::release::ReleaseError;

/// Default time a batch may go untouched before it is published again.
pub const VISIBILITY_TIMEOUT_DEFAULT: Duration = Duration::from_secs(15 * 60);
/// Default pause between rescue passes.
pub const RESCUE_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
/// Default most batches rescued per pass.
pub const RESCUE_LIMIT_DEFAULT: i64 = 100;

#[derive(Debug, Clone)]
pub struct RescueConfig {
    pub interval: Duration,
    pub visibility_timeout: Duration,
    pub limit: i64,
}

impl Default for RescueConfig {
    fn default() -> Self {
        Self { interval: RESCUE_INTERVAL_DEFAULT, visibility_timeout: VISIBILITY_TIMEOUT_DEFAULT, limit: RESCUE_LIMIT_DEFAULT }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RescueReport {
    pub batches: u64,
    pub jobs: u64,
}

#[derive(Debug, Clone)]
pub struct Rescuer {
    pool: PgPool,
    publisher: Publisher,
    clock: SharedClock,
    config: RescueConfig,
}

impl Rescuer {
    pub fn new(pool: PgPool, publisher: Publisher, clock: SharedClock, config: RescueConfig) -> Self {
        Self { pool, publisher, clock, config }
    }

    /// One pass at the clock's instant.
    ///
    /// # Errors
    /// Database or broker errors; the pass's transaction rolls back and the
    /// batches are found again next pass.
    pub async fn run_once(&self) -> Result<RescueReport, ReleaseError> {
        let now = self.clock.now();
        let timeout = chrono::Duration::from_std(self.config.visibility_timeout).unwrap_or(chrono::Duration::MAX);
        let cutoff = now - timeout;
        let mut tx = self.pool.begin().await?;
        let stale = db::claim_stale_batches(&mut tx, cutoff, self.config.limit).await?;
        if stale.is_empty() {
            // Commit what the search marked finished on its way.
            tx.commit().await?;
            return Ok(RescueReport::default());
        }
        let messages: Vec<BatchMessage> =
            stale.iter().map(|b| BatchMessage::new(b.id, b.model.clone(), b.job_ids.clone(), now)).collect();
        let ids: Vec<_> = stale.iter().map(|b| b.id).collect();
        db::mark_republished(&mut tx, &ids, now).await?;
        // As in the release loop: confirmed first, committed after.
        self.publisher.publish_all(&messages).await?;
        tx.commit().await?;
        let report = RescueReport {
            batches: messages.len() as u64,
            jobs: messages.iter().map(|m| m.job_ids.len() as u64).sum(),
        };
        for m in &messages {
            tracing::warn!(batch_id = %m.batch_id, jobs = m.job_ids.len(), "batch made no progress within the visibility timeout; published again");
        }
        metrics::BATCHES_RESCUED.inc_by(report.batches);
        Ok(report)
    }

    /// Passes until shutdown; errors are logged, counted and retried.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        while !shutdown.is_triggered() {
            if let Err(e) = self.run_once().await {
                metrics::RELEASE_ERRORS.with_label_values(&["rescue"]).inc();
                tracing::warn!(error = %e, "rescue pass failed; retrying next pass");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}
