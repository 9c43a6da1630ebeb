//! Working one batch: start its jobs, call the provider until the batch has
//! an answer, write every job's outcome in one statement.
//!
//! ```text
//! start_attempt ─▶ provider call ─┬─ results ───────────▶ finish (succeeded / failed)
//!                        ▲        ├─ permanent error ───▶ finish (failed)
//!                        │        └─ transient error ─┬─ out of attempts ─▶ finish (dead)
//!                  begin_attempt ◀── backoff with jitter, ≥ Retry-After ◀──┘
//! ```
//!
//! Retries stay inside the delivery: the message is acknowledged only after
//! the outcome is committed, so a worker killed mid-retry leaves the message
//! unacknowledged and another worker picks the batch up where the attempt
//! counter in PostgreSQL says it was. Every provider call of a batch carries
//! the batch id as `Idempotency-Key`, so a replay after a crash is not billed
//! again; and `finish` only writes jobs still `running`, so a second delivery
//! writes nothing twice.

use std::collections::HashSet;
use std::time::Duration;

use rand::Rng;
use tracing::Instrument;
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use offpeak_core::clock::SharedClock;
use offpeak_store::batches::{self as db, Outcome, StartedJob};
use offpeak_core::job::{JobState, Priority};
use offpeak_core::prices::{Charge, PriceTable};
use offpeak_core::message::BatchMessage;

use crate::metrics;
use crate::provider::{CallItem, CallOutcome, ItemResult, Providers, Route};

/// Backoff between provider attempts: `base × 2^(attempt-1)`, capped, with
/// "equal jitter" (half fixed, half random) so retries of many batches spread
/// out, and never shorter than the provider's `Retry-After`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { base: Duration::from_secs(1), cap: Duration::from_secs(60) }
    }
}

impl Backoff {
    /// The pause after the `attempt`-th (1-based) failed attempt.
    pub fn delay(&self, attempt: i32, retry_after: Option<Duration>) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1)).unwrap_or(0).min(20);
        let full = self.base.saturating_mul(1u32 << exp).min(self.cap);
        let half = full / 2;
        let jitter = rand::thread_rng().gen_range(Duration::ZERO..=half);
        (half + jitter).max(retry_after.unwrap_or(Duration::ZERO))
    }
}

/// Everything a batch needs; shared by all batches of a worker.
#[derive(Debug, Clone)]
pub struct BatchContext {
    pub pool: PgPool,
    /// Every model's provider, protocol and limits.
    pub providers: Providers,
    pub prices: PriceTable,
    pub backoff: Backoff,
    pub clock: SharedClock,
}

/// What became of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Jobs the batch still had to work (0: a redelivery of a finished batch,
    /// or a message whose batch was never committed).
    pub started: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub dead: usize,
    /// Rows actually written (less than the sum above only if another worker
    /// wrote the same batch first).
    pub written: u64,
    pub provider_calls: u32,
    /// Identical jobs that waited for this batch's jobs (coalesced) and got
    /// a result, an error, or (their leader died) another chance.
    pub followers_succeeded: u64,
    pub followers_failed: u64,
    pub followers_requeued: u64,
}

/// Works one batch to the end.
///
/// # Errors
/// Database errors; the caller returns the message to the queue and the
/// batch is picked up again from the state PostgreSQL holds.
pub async fn process_batch(ctx: &BatchContext, msg: &BatchMessage) -> Result<BatchReport, sqlx::Error> {
    // A model the scheduler's configuration has and this worker's has not
    // (configuration rolled out to the scheduler first) is a transient
    // error: retried with backoff, and `dead` if it never gets one.
    let route = ctx.providers.route(&msg.model).cloned();
    // A provider batch API (openai-batch) works the batch for hours: the
    // worker hands it over and acks; the poller writes the outcomes.
    if let Some(route) = route.as_ref().filter(|r| r.adapter == offpeak_core::providers::Adapter::OpenaiBatch) {
        return crate::handover::hand_over(ctx, msg, route).await;
    }
    // Starts the batch and counts its first attempt: one write of the batch
    // row, where it once took six round trips, a row lock and two row
    // versions per job (BENCHMARKS.md, steps 1 and 9).
    let mut jobs = db::start_attempt(&ctx.pool, msg.batch_id, &msg.model, &msg.job_ids, ctx.clock.now()).await?;
    // The caller's `batch` span carries batch_id and model; the job ids are
    // here once, at debug level (a batch holds up to a hundred).
    tracing::debug!(job_ids = ?jobs.iter().map(|j| j.id).collect::<Vec<_>>(), "batch started");
    let mut report = BatchReport { started: jobs.len(), ..Default::default() };
    if jobs.is_empty() {
        return Ok(report);
    }
    // Send inputs in job id order, so every call of this batch, whoever
    // makes it and whichever message (first or republished) it came from,
    // has the same body under the same Idempotency-Key.
    jobs.sort_by_key(|j| j.id);

    let mut first = true;
    loop {
        if !first {
            db::begin_attempt(&ctx.pool, msg.batch_id, ctx.clock.now()).await?;
            for j in &mut jobs {
                j.attempts += 1;
            }
        }
        first = false;
        let items: Vec<CallItem<'_>> = jobs.iter().map(|j| CallItem { job_id: j.id, input: &j.input.0 }).collect();
        report.provider_calls += 1;
        let attempt = jobs.iter().map(|j| j.attempts).max().unwrap_or(1);
        let outcome = match &route {
            Some(route) => {
                route
                    .call(&msg.model, msg.batch_id, &items)
                    .instrument(tracing::info_span!("provider_call", attempt, inputs = items.len(), provider = %route.provider))
                    .await
            }
            None => CallOutcome::Transient {
                error: crate::provider::error_json(
                    "model_not_configured",
                    &format!("this worker's configuration has no provider for model '{}'", msg.model),
                ),
                retry_after: None,
            },
        };
        drop(items);
        // Per job: its final outcome, or the transient error it is tried
        // again for.
        let mut outcomes: Vec<Outcome> = Vec::with_capacity(jobs.len());
        let mut again: Vec<(StartedJob, Value, Option<Duration>)> = Vec::new();
        match outcome {
            CallOutcome::Results(items) => {
                for (job, item) in jobs.into_iter().zip(items) {
                    match item {
                        ItemResult::Output(result) => {
                            let Charge { list, charged } = charge(ctx, &msg.model, &job);
                            outcomes.push(Outcome {
                                id: job.id,
                                state: JobState::Succeeded,
                                result: Some(result),
                                error: None,
                                credits: charged,
                                list_credits: list,
                            });
                        }
                        ItemResult::Error(error) => outcomes.push(failed(&job, error)),
                        ItemResult::Transient { error, retry_after } => again.push((job, error, retry_after)),
                    }
                }
            }
            CallOutcome::Permanent { error } => outcomes.extend(jobs.iter().map(|j| failed(j, error.clone()))),
            CallOutcome::Transient { error, retry_after } => {
                again.extend(jobs.into_iter().map(|j| (j, error.clone(), retry_after)));
            }
        }
        // Jobs out of attempts are dead; the rest are tried again.
        let mut keep = Vec::with_capacity(again.len());
        let mut last_error = None;
        let mut wait = None;
        for (job, error, retry_after) in again {
            if job.attempts >= job.max_attempts {
                outcomes.push(Outcome { id: job.id, state: JobState::Dead, result: None, error: Some(error), credits: 0, list_credits: 0 });
            } else {
                wait = wait.max(retry_after);
                last_error = Some(error);
                keep.push(job);
            }
        }
        if !outcomes.is_empty() {
            report.written += finish(ctx, msg, route.as_deref(), &outcomes, &mut report).await?;
        }
        jobs = keep;
        let Some(error) = last_error else { return Ok(report) };
        db::record_transient_error(&ctx.pool, msg.batch_id, &error).await?;
        let attempt = jobs.iter().map(|j| j.attempts).max().unwrap_or(1);
        let pause = ctx.backoff.delay(attempt, wait);
        metrics::RETRIES.with_label_values(&[&msg.model]).inc();
        tracing::warn!(
            batch_id = %msg.batch_id, model = %msg.model, attempt, jobs = jobs.len(), retry_in_ms = pause.as_millis() as u64,
            error = %error, "transient provider error; retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

fn failed(job: &StartedJob, error: Value) -> Outcome {
    Outcome { id: job.id, state: JobState::Failed, result: None, error: Some(error), credits: 0, list_credits: 0 }
}

/// What a succeeded job is charged: the list price, times the off-peak
/// multiplier for a low-priority job (released in its window). A model the
/// price table does not know (the API refuses them; only a table changed
/// between submission and run) costs 0.
fn charge(ctx: &BatchContext, model: &str, job: &StartedJob) -> Charge {
    let priority: Priority = job.priority;
    ctx.prices.charge(model, priority).unwrap_or(Charge { list: 0, charged: 0 })
}

/// Writes outcomes through `batches::finish` and counts them (also the
/// hand-over's and the poller's write).
pub(crate) async fn finish(ctx: &BatchContext, msg: &BatchMessage, route: Option<&Route>, outcomes: &[Outcome], report: &mut BatchReport) -> Result<u64, sqlx::Error> {
    let list_price = ctx.prices.price(&msg.model).unwrap_or(0);
    // The provider the usage ledger reports the jobs under. A batch with no
    // route writes only `dead` jobs, which get no ledger row.
    let provider = route.map_or("none", |r| r.provider.as_str());
    // A batch at a provider's own batch API may still have its queued jobs
    // cancelled: its finish locks their rows first (`batches::finish`).
    let at_provider = route.is_some_and(|r| r.adapter == offpeak_core::providers::Adapter::OpenaiBatch);
    let finished = db::finish(&ctx.pool, msg.batch_id, outcomes, list_price, provider, at_provider, ctx.clock.now())
        .instrument(tracing::info_span!("write", outcomes = outcomes.len()))
        .await?;
    tracing::debug!(
        job_ids = ?finished.written, followers_succeeded = finished.followers_succeeded,
        followers_failed = finished.followers_failed, followers_requeued = finished.followers_requeued, "outcomes written"
    );
    for o in outcomes {
        match o.state {
            JobState::Succeeded => report.succeeded += 1,
            JobState::Failed => report.failed += 1,
            _ => report.dead += 1,
        }
    }
    report.followers_succeeded += finished.followers_succeeded;
    report.followers_failed += finished.followers_failed;
    report.followers_requeued += finished.followers_requeued;
    // Count only the jobs this worker wrote: a concurrent duplicate delivery
    // that lost the race for some of them must not count them again.
    let written_ids: HashSet<Uuid> = finished.written.iter().copied().collect();
    for o in outcomes.iter().filter(|o| written_ids.contains(&o.id)) {
        metrics::JOBS_FINISHED.with_label_values(&[&msg.model, o.state.as_str()]).inc();
        if o.credits > 0 {
            metrics::CREDITS_SPENT.with_label_values(&[&msg.model]).inc_by(o.credits as u64);
        }
        if o.list_credits > o.credits {
            metrics::CREDITS_SAVED.with_label_values(&[&msg.model, "offpeak"]).inc_by((o.list_credits - o.credits) as u64);
        }
    }
    if finished.followers_succeeded > 0 {
        metrics::JOBS_FINISHED.with_label_values(&[&msg.model, "succeeded"]).inc_by(finished.followers_succeeded);
        metrics::CACHE_HITS.with_label_values(&[&msg.model, "coalesced"]).inc_by(finished.followers_succeeded);
        metrics::CREDITS_SAVED
            .with_label_values(&[&msg.model, "cache"])
            .inc_by(finished.followers_succeeded * u64::try_from(list_price).unwrap_or(0));
    }
    if finished.followers_failed > 0 {
        metrics::JOBS_FINISHED.with_label_values(&[&msg.model, "failed"]).inc_by(finished.followers_failed);
    }
    Ok(finished.written.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let b = Backoff { base: Duration::from_millis(100), cap: Duration::from_secs(1) };
        for _ in 0..100 {
            let d1 = b.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100), "{d1:?}");
            let d3 = b.delay(3, None);
            assert!(d3 >= Duration::from_millis(200) && d3 <= Duration::from_millis(400), "{d3:?}");
            let d10 = b.delay(10, None);
            assert!(d10 >= Duration::from_millis(500) && d10 <= Duration::from_secs(1), "{d10:?}");
            assert!(b.delay(1, Some(Duration::from_secs(2))) >= Duration::from_secs(2));
        }
    }
}
