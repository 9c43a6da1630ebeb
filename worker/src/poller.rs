//! The poller: asks providers' batch APIs about the batches handed to them
//! (`crate::handover`) until they end, and writes their outcomes through
//! the same finish as every other job.
//!
//! Every worker runs one; any of them may poll any provider batch. A pass
//! ([`Poller::run_once`]) leases the provider batches whose poll is due
//! (`store::provider_batches::claim_due`: `FOR UPDATE SKIP LOCKED`, and
//! `poll_at` moved past [`PollerConfig::lease`]), so one poller at a time
//! works each. A poll that fails on the database, or is still running at
//! four fifths of its lease, is given back at once (`give_back`): due again
//! after one pass interval. A poller killed mid-poll leaves its lease to run
//! out, so the lease is what such a kill costs: by default what one poll
//! may take ([`lease_for`]), `OFFPEAK_POLL_LEASE_SECS` to set it.
//!
//! | the provider batch | what the poll does |
//! |---|---|
//! | `validating`, `in_progress`, `finalizing`, `cancelling` | the next poll after the provider's poll interval, doubling with each poll up to its maximum |
//! | `completed`, `expired`, `cancelled`, `failed` | reads the output and error files; a 2xx line → `succeeded` (charged), another 4xx → `failed`; a job with a 429/5xx line, an `error` line (`batch_expired`, ...) or no line → back to `held` for another batch, or `dead` once its attempts (over all its batches) reach `max_attempts`, keeping the last error; the batch is closed |
//! | every job of it cancelled | `POST /v1/batches/{id}/cancel`, and the batch is closed |
//! | a call fails (429, 5xx, timeout, a file that is not JSONL) | the next poll, as above: nothing is written from a partial read |
//!
//! A poll redone (a crash after the finish, a lease that ran out) writes
//! nothing twice: `finish` writes only jobs still running in the batch,
//! `requeue` only jobs still `queued` in it, and the provider bills a
//! request when it runs it, not when its file is read.

use std::sync::Arc;
use std::time::Duration;

use offpeak_core::job::JobState;
use offpeak_core::message::BatchMessage;
use offpeak_core::prices::Charge;
use offpeak_runtime::shutdown::ShutdownSignal;
use offpeak_store::batches::Outcome;
use offpeak_store::provider_batches::{self as pdb, DueBatch};
use serde_json::Value;
use tracing::Instrument;

use crate::process::{BatchContext, BatchReport};
use crate::provider::openai_batch::{answers, Failure, OpenaiBatchClient, ProviderBatch};
use crate::provider::{error_json, Client, ItemResult, Route};

/// Default pause between passes.
pub const POLL_PASS_INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default lease of a claimed provider batch, for the default provider
/// timeout of 120 s: [`lease_for`] it.
pub const POLL_LEASE_DEFAULT: Duration = lease_for(Duration::from_secs(120));
/// Provider calls one poll makes at most: the status, then the output and
/// error files (or a cancel alone).
const CALLS_PER_POLL: u32 = 3;

/// The lease of one poll whose provider calls each take up to `timeout`:
/// [`CALLS_PER_POLL`] timeouts, and a quarter more. A poll still running
/// at four fifths of its lease (its calls' timeouts) is cut and given
/// back, so the last fifth is a margin that no live poller outlives.
pub const fn lease_for(timeout: Duration) -> Duration {
    let calls = timeout.saturating_mul(CALLS_PER_POLL);
    calls.saturating_add(Duration::from_millis(calls.as_millis() as u64 / 4))
}
/// Default most provider batches polled per pass.
pub const POLL_LIMIT_DEFAULT: i64 = 16;

#[derive(Debug, Clone)]
pub struct PollerConfig {
    pub interval: Duration,
    pub lease: Duration,
    pub limit: i64,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self { interval: POLL_PASS_INTERVAL_DEFAULT, lease: POLL_LEASE_DEFAULT, limit: POLL_LIMIT_DEFAULT }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Provider batches polled.
    pub polled: u64,
    /// Of them, those that ended and were closed.
    pub closed: u64,
    /// Jobs written (succeeded, failed, dead).
    pub written: u64,
    /// Jobs sent back to `held`.
    pub requeued: u64,
    /// Provider batches cancelled because every job of theirs was.
    pub cancelled: u64,
    /// Polls that failed on the database or outlived their lease; their
    /// leases were given back (when the database allowed).
    pub given_back: u64,
}

#[derive(Debug, Clone)]
pub struct Poller {
    ctx: Arc<BatchContext>,
    config: PollerConfig,
}

impl Poller {
    pub fn new(ctx: Arc<BatchContext>, config: PollerConfig) -> Self {
        Self { ctx, config }
    }

    /// One pass at the clock's instant: every due provider batch polled.
    /// A poll that fails on the database, or outlives four fifths of its
    /// lease, is logged, counted (`offpeak_worker_polls_total`) and given
    /// back, and the pass goes on with the others.
    ///
    /// # Errors
    /// Database errors of the claim itself (nothing is leased then).
    pub async fn run_once(&self) -> Result<PollReport, sqlx::Error> {
        let now = self.ctx.clock.now();
        let lease = chrono::Duration::from_std(self.config.lease).unwrap_or(chrono::Duration::MAX);
        let lease_until = now.checked_add_signed(lease).unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC);
        let due = pdb::claim_due(&self.ctx.pool, now, lease_until, self.config.limit).await?;
        let mut report = PollReport::default();
        let results = futures_util::future::join_all(due.iter().map(|b| self.poll_leased(b, lease_until))).await;
        for one in results {
            report.polled += 1;
            report.closed += one.closed;
            report.written += one.written;
            report.requeued += one.requeued;
            report.cancelled += one.cancelled;
            report.given_back += one.given_back;
        }
        Ok(report)
    }

    /// One leased poll, cut at four fifths of the lease; a poll that did
    /// not end gives its lease back.
    async fn poll_leased(&self, due: &DueBatch, lease_until: chrono::DateTime<chrono::Utc>) -> PollReport {
        let span = tracing::info_span!("poll", batch_id = %due.id, provider_batch_id = %due.provider_batch_id, polls = due.polls);
        let budget = self.config.lease.mul_f64(0.8);
        let outcome = match tokio::time::timeout(budget, self.poll_one(due).instrument(span.clone())).await {
            Ok(Ok(report)) => {
                let outcome = match (report.closed, report.cancelled) {
                    (0, _) => "rescheduled",
                    (_, 0) => "ended",
                    _ => "cancelled",
                };
                crate::metrics::POLLS.with_label_values(&[outcome]).inc();
                return report;
            }
            Ok(Err(e)) => {
                span.in_scope(|| tracing::warn!(error = %e, "polling the provider batch failed on the database; giving its lease back"));
                "database_error"
            }
            Err(_) => {
                span.in_scope(|| tracing::warn!(budget_ms = budget.as_millis() as u64, "polling the provider batch outlived its lease; cut, and its lease given back"));
                "lease_exceeded"
            }
        };
        crate::metrics::POLLS.with_label_values(&[outcome]).inc();
        let again = self.ctx.clock.now() + chrono::Duration::from_std(self.config.interval).unwrap_or(chrono::Duration::zero());
        if let Err(e) = pdb::give_back(&self.ctx.pool, due.id, lease_until, again).await {
            span.in_scope(|| tracing::warn!(error = %e, "giving the lease back failed; the batch is polled again when its lease runs out"));
        }
        PollReport { given_back: 1, ..PollReport::default() }
    }

    /// Passes until shutdown; errors are logged and the pass is retried.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        while !shutdown.is_triggered() {
            match self.run_once().await {
                Ok(r) if r.polled > 0 => tracing::debug!(?r, "poll pass"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "poll pass failed; retrying next pass"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.interval) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    async fn poll_one(&self, due: &DueBatch) -> Result<PollReport, sqlx::Error> {
        let ctx = &self.ctx;
        let Some(route) = ctx.providers.route(&due.model).cloned() else {
            tracing::warn!(model = %due.model, "no provider configured for this model; polling again later");
            self.later(due, None, Duration::from_secs(60)).await?;
            return Ok(PollReport::default());
        };
        let Client::OpenaiBatch(client) = &route.client else {
            tracing::warn!(model = %due.model, "the model's provider no longer speaks openai-batch; polling again later");
            self.later(due, None, Duration::from_secs(60)).await?;
            return Ok(PollReport::default());
        };
        let mut report = PollReport::default();
        let open = pdb::open_jobs(&ctx.pool, due.id).await?;
        if open.is_empty() {
            // Every job was cancelled (or written by an earlier poll).
            let status = match client.cancel(&route.gate, &due.provider_batch_id).await {
                Ok(b) => b.status,
                Err(Failure::Transient { error, retry_after }) => {
                    tracing::warn!(%error, "cancelling the provider batch failed; trying again");
                    self.later(due, None, client.poll_pause(due.polls).max(retry_after.unwrap_or_default())).await?;
                    return Ok(report);
                }
                // Ended already: nothing left to cancel.
                Err(Failure::Permanent { .. }) => "ended".to_owned(),
            };
            pdb::close(&ctx.pool, due.id, &status).await?;
            report.closed = 1;
            report.cancelled = 1;
            return Ok(report);
        }
        let batch = match client.get(&route.gate, &due.provider_batch_id).await {
            Ok(b) => b,
            Err(f) => {
                tracing::warn!(error = %f.error(), "polling the provider batch failed; polling again later");
                let wait = match &f {
                    Failure::Transient { retry_after, .. } => retry_after.unwrap_or_default(),
                    Failure::Permanent { .. } => client.poll_interval_max,
                };
                self.later(due, None, client.poll_pause(due.polls).max(wait)).await?;
                return Ok(report);
            }
        };
        if !batch.ended() {
            self.later(due, Some(&batch.status), client.poll_pause(due.polls)).await?;
            return Ok(report);
        }
        let lines = match read_files(client, &route, &batch).await {
            Ok(lines) => lines,
            Err(f) => {
                tracing::warn!(error = %f.error(), "reading the provider batch's files failed; polling again later");
                self.later(due, Some(&batch.status), client.poll_pause(due.polls)).await?;
                return Ok(report);
            }
        };
        let mut answered = answers(lines);
        let batch_error = match batch.status.as_str() {
            "failed" => batch.error(),
            status => error_json(&format!("provider_batch_{status}"), &format!("the provider batch ended {status} without an answer for this job")),
        };
        let mut outcomes = Vec::new();
        let mut again: Vec<(uuid::Uuid, Value)> = Vec::new();
        for job in &open {
            match answered.remove(&job.id) {
                Some(ItemResult::Output(result)) => {
                    let Charge { list, charged } = ctx.prices.charge(&due.model, job.priority).unwrap_or(Charge { list: 0, charged: 0 });
                    outcomes.push(Outcome { id: job.id, state: JobState::Succeeded, result: Some(result), error: None, credits: charged, list_credits: list });
                }
                Some(ItemResult::Error(error)) => {
                    outcomes.push(Outcome { id: job.id, state: JobState::Failed, result: None, error: Some(error), credits: 0, list_credits: 0 });
                }
                other => {
                    let error = match other {
                        Some(ItemResult::Transient { error, .. }) => error,
                        _ => batch_error.clone(),
                    };
                    if job.attempts() >= job.max_attempts {
                        outcomes.push(Outcome { id: job.id, state: JobState::Dead, result: None, error: Some(error), credits: 0, list_credits: 0 });
                    } else {
                        again.push((job.id, error));
                    }
                }
            }
        }
        if !outcomes.is_empty() {
            let msg = BatchMessage::new(due.id, due.model.clone(), outcomes.iter().map(|o| o.id).collect(), ctx.clock.now());
            let mut batch_report = BatchReport::default();
            report.written = crate::process::finish(ctx, &msg, Some(&route), &outcomes, &mut batch_report).await?;
        }
        report.requeued = pdb::requeue(&ctx.pool, due.id, &again).await?.len() as u64;
        pdb::close(&ctx.pool, due.id, &batch.status).await?;
        report.closed = 1;
        tracing::info!(
            status = %batch.status, written = report.written, requeued = report.requeued, "provider batch ended; outcomes written"
        );
        Ok(report)
    }

    async fn later(&self, due: &DueBatch, status: Option<&str>, pause: Duration) -> Result<(), sqlx::Error> {
        let at = self.ctx.clock.now() + chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::zero());
        pdb::reschedule(&self.ctx.pool, due.id, status, at).await
    }
}

/// The lines of an ended provider batch's output and error files.
async fn read_files(client: &OpenaiBatchClient, route: &Route, batch: &ProviderBatch) -> Result<Vec<crate::provider::openai_batch::Line>, Failure> {
    let mut lines = Vec::new();
    for file in [&batch.output_file_id, &batch.error_file_id].into_iter().flatten() {
        lines.extend(client.lines(&route.gate, file).await?);
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lease_covers_three_calls_and_a_quarter_more() {
        // The figure the README and docs/spec.md give for the default.
        assert_eq!(POLL_LEASE_DEFAULT, Duration::from_secs(450));
        assert_eq!(lease_for(Duration::from_secs(2)), Duration::from_millis(7_500));
        assert_eq!(lease_for(Duration::MAX), Duration::MAX, "saturates, never overflows");
    }
}
