//! Handing a batch to a provider's own batch API (the `openai-batch`
//! adapter): the worker's part, which ends once the provider's batch is
//! recorded on ours and the message can be acknowledged. The poller
//! (`crate::poller`) takes it from there.
//!
//! ```text
//! recorded already? ─▶ ack
//! start_attempt ─▶ [hand-over lock] recorded? ─▶ ack
//!                  find by metadata.offpeak_batch_id ─┬─ found ─────────────────▶ record ─▶ ack
//!                                                     └─ none ─▶ upload ─▶ create ─▶ record ─▶ ack
//!   transient failure: backoff (≥ retry-after), attempt + 1, or dead when out of attempts
//!   permanent failure: the jobs fail
//! ```
//!
//! A worker that dies between creating the provider batch and recording it
//! leaves the message unacknowledged (or the rescuer publishes the batch
//! again, as nothing is recorded): the next worker finds the provider batch
//! by its metadata tag, our batch id, and records it instead of creating a
//! second one, so nothing is billed twice. Two deliveries of one batch at
//! once take turns on a transaction-scoped advisory lock of their own
//! (not the batch's lock, which the attempt and record writes take), and
//! the second finds the first's record.

use serde_json::Value;
use tracing::Instrument;

use offpeak_core::job::JobState;
use offpeak_core::message::BatchMessage;
use offpeak_store::batches::{self as db, Outcome};
use offpeak_store::provider_batches as pdb;

use crate::metrics;
use crate::process::{BatchContext, BatchReport};
use crate::provider::openai_batch::{input_file, Failure, OpenaiBatchClient};
use crate::provider::{error_json, CallItem, Client, Route};

/// How far back, before our batch was published, a provider batch made
/// for it may have been created (the provider's clock against ours).
pub const CLOCK_SKEW_ALLOWANCE: chrono::Duration = chrono::Duration::hours(1);

/// Hands one batch to its route's provider batch API.
///
/// # Errors
/// Database errors; the caller returns the message to the queue.
pub async fn hand_over(ctx: &BatchContext, msg: &BatchMessage, route: &Route) -> Result<BatchReport, sqlx::Error> {
    let Client::OpenaiBatch(client) = &route.client else {
        return Ok(BatchReport::default());
    };
    // A redelivery of a batch already at the provider: nothing to do.
    if pdb::recorded(&ctx.pool, msg.batch_id).await?.is_some() {
        return Ok(BatchReport::default());
    }
    let mut jobs = db::start_attempt(&ctx.pool, msg.batch_id, &msg.model, &msg.job_ids, ctx.clock.now()).await?;
    let mut report = BatchReport { started: jobs.len(), ..Default::default() };
    if jobs.is_empty() {
        return Ok(report);
    }
    jobs.sort_by_key(|j| j.id);
    let mut first = true;
    loop {
        if !first {
            db::begin_attempt(&ctx.pool, msg.batch_id, ctx.clock.now()).await?;
        }
        first = false;
        report.provider_calls += 1;
        let items: Vec<CallItem<'_>> = jobs.iter().map(|j| CallItem { job_id: j.id, input: &j.input.0 }).collect();
        let failure = match try_hand_over(ctx, msg, route, client, &items)
            .instrument(tracing::info_span!("hand_over", inputs = items.len(), provider = %route.provider))
            .await?
        {
            Ok(provider_batch_id) => {
                tracing::info!(provider_batch_id, jobs = jobs.len(), "batch handed to the provider's batch API");
                return Ok(report);
            }
            Err(f) => f,
        };
        drop(items);
        let (error, retry_after) = match failure {
            Failure::Permanent { error } => {
                let outcomes: Vec<Outcome> = jobs.iter().map(|j| failed(j.id, JobState::Failed, error.clone())).collect();
                report.written += crate::process::finish(ctx, msg, Some(route), &outcomes, &mut report).await?;
                return Ok(report);
            }
            Failure::Transient { error, retry_after } => (error, retry_after),
        };
        // Attempts count across the batches a job was in (a provider batch
        // that expired sent it back to held).
        let open = pdb::open_jobs(&ctx.pool, msg.batch_id).await?;
        let (dead, keep): (Vec<_>, Vec<_>) = open.into_iter().partition(|j| j.attempts() >= j.max_attempts);
        if !dead.is_empty() {
            let outcomes: Vec<Outcome> = dead.iter().map(|j| failed(j.id, JobState::Dead, error.clone())).collect();
            report.written += crate::process::finish(ctx, msg, Some(route), &outcomes, &mut report).await?;
        }
        jobs.retain(|j| keep.iter().any(|k| k.id == j.id));
        if jobs.is_empty() {
            return Ok(report);
        }
        db::record_transient_error(&ctx.pool, msg.batch_id, &error).await?;
        let attempt = keep.iter().map(|j| j.batch_attempts).max().unwrap_or(1);
        let pause = ctx.backoff.delay(attempt, retry_after);
        metrics::RETRIES.with_label_values(&[&msg.model]).inc();
        tracing::warn!(
            batch_id = %msg.batch_id, model = %msg.model, attempt, jobs = jobs.len(), retry_in_ms = pause.as_millis() as u64,
            error = %error, "transient error handing the batch to the provider; retrying"
        );
        tokio::time::sleep(pause).await;
    }
}

fn failed(id: uuid::Uuid, state: JobState, error: Value) -> Outcome {
    Outcome { id, state, result: None, error: Some(error), credits: 0, list_credits: 0 }
}

/// One try: under the hand-over lock, the record, else the provider batch
/// tagged with ours, else a new one; recorded. `Ok(Err(_))`: a provider
/// call failed.
async fn try_hand_over(
    ctx: &BatchContext,
    msg: &BatchMessage,
    route: &Route,
    client: &OpenaiBatchClient,
    items: &[CallItem<'_>],
) -> Result<Result<String, Failure>, sqlx::Error> {
    let mut lock = ctx.pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('offpeak_handover:' || $1::text, 0))")
        .bind(msg.batch_id)
        .execute(&mut *lock)
        .await?;
    if let Some(id) = pdb::recorded(&ctx.pool, msg.batch_id).await? {
        return Ok(Ok(id));
    }
    let published = pdb::published_at(&ctx.pool, msg.batch_id).await?.unwrap_or_else(|| ctx.clock.now());
    let not_before = (published - CLOCK_SKEW_ALLOWANCE).timestamp();
    let found = match client.find(&route.gate, msg.batch_id, not_before).await {
        Ok(found) => found,
        Err(f) => return Ok(Err(f)),
    };
    let batch = match found {
        Some(b) => {
            tracing::info!(provider_batch_id = %b.id, "found the provider batch made for this batch before; not creating another");
            b
        }
        None => {
            let jsonl = match input_file(items, &route.endpoint, &route.provider_model) {
                Ok(f) => f,
                Err(e) => return Ok(Err(Failure::Permanent { error: error_json("invalid_input", &format!("an input is not a JSON object: {e}")) })),
            };
            let file_id = match client.upload(&route.gate, &format!("offpeak-{}.jsonl", msg.batch_id), jsonl).await {
                Ok(id) => id,
                Err(f) => return Ok(Err(f)),
            };
            match client.create(&route.gate, &file_id, &route.endpoint, msg.batch_id).await {
                Ok(b) => b,
                Err(f) => return Ok(Err(f)),
            }
        }
    };
    let now = ctx.clock.now();
    let first_poll = now + chrono::Duration::from_std(client.poll_pause(1)).unwrap_or(chrono::Duration::zero());
    let kept = pdb::record(&ctx.pool, msg.batch_id, &batch.id, &batch.status, first_poll, now).await?;
    lock.commit().await?;
    Ok(Ok(kept))
}
