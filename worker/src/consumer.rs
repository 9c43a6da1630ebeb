//! The consume loop: competing consumers on the batch queue.
//!
//! Each worker holds at most `prefetch` unacknowledged batches (RabbitMQ's
//! `basic.qos`), works them concurrently, and acknowledges each only after
//! its outcome is committed. If the connection drops, the broker requeues
//! what this worker held and the loop reconnects with backoff, logging and
//! counting each outage. On shutdown it cancels its consumer (no new
//! deliveries), gives batches in hand a grace period to finish, and closes
//! the channel, which returns anything unfinished to the queue.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions};
use lapin::types::FieldTable;
use tokio::task::JoinSet;
use tracing::Instrument;

use offpeak_runtime::broker::{self, Topology};
use offpeak_core::message::BatchMessage;
use offpeak_runtime::shutdown::ShutdownSignal;

use crate::metrics;
use crate::process::{process_batch, BatchContext};

/// Default unacknowledged batches per worker: the batches it works at once.
/// Each waits on the provider most of its time, so a worker's throughput is
/// this times the batch size over the provider's latency: 8 (it was 4)
/// doubled the slow provider's rate (run 4: 3,099 against 1,539 jobs/s) and
/// took the immediate path 7–14% further (run 9), at half a MiB more per
/// worker, with the burst no slower (BENCHMARKS.md step 32).
pub const PREFETCH_DEFAULT: u16 = 8;
/// Default time batches in hand get to finish after SIGTERM.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    pub amqp_url: String,
    pub topology: Topology,
    pub prefetch: u16,
    pub shutdown_grace: Duration,
    /// This worker's consumer tag, kept across reconnections so RabbitMQ's
    /// list of consumers names the same worker as its `/readyz` does.
    pub consumer_tag: String,
}

/// A consumer tag no other worker has: `offpeak-worker-<uuid>`.
pub fn new_consumer_tag() -> String {
    format!("offpeak-worker-{}", uuid::Uuid::new_v4())
}

/// Consumes until shutdown, reconnecting whenever the broker goes away.
pub async fn run(ctx: Arc<BatchContext>, config: ConsumerConfig, mut shutdown: ShutdownSignal) {
    let mut backoff = Duration::from_millis(200);
    let mut first = true;
    while !shutdown.is_triggered() {
        if !first {
            metrics::RECONNECTS.inc();
        }
        first = false;
        match consume(&ctx, &config, shutdown.clone()).await {
            Ok(()) => {
                if shutdown.is_triggered() {
                    break;
                }
                tracing::warn!("lost the RabbitMQ consumer; reconnecting");
                backoff = Duration::from_millis(200);
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "RabbitMQ unavailable; reconnecting");
            }
        }
        metrics::CONNECTED.set(0);
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(10));
    }
    tracing::info!("worker stopped consuming");
}

/// One connection's life: returns when shutdown fires (after draining) or the
/// connection is lost.
async fn consume(ctx: &Arc<BatchContext>, config: &ConsumerConfig, mut shutdown: ShutdownSignal) -> Result<(), lapin::Error> {
    let conn = broker::connect(&config.amqp_url, "offpeak-worker", Duration::ZERO).await?;
    let channel = broker::consumer_channel(&conn, &config.topology, config.prefetch).await?;
    let tag = &config.consumer_tag;
    let mut consumer = channel
        .basic_consume(&config.topology.queue, tag, BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    metrics::CONNECTED.set(1);
    tracing::info!(queue = %config.topology.queue, prefetch = config.prefetch, consumer_tag = %tag, "consuming");

    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            next = consumer.next() => match next {
                Some(Ok(delivery)) => {
                    let ctx = Arc::clone(ctx);
                    tasks.spawn(handle(ctx, delivery));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer error");
                    break;
                }
                None => break,
            },
        }
    }

    if shutdown.is_triggered() {
        // Stop new deliveries, then give batches in hand their grace period.
        let _ = channel.basic_cancel(tag, BasicCancelOptions::default()).await;
        let in_hand = tasks.len();
        if in_hand > 0 {
            tracing::info!(batches = in_hand, grace_s = config.shutdown_grace.as_secs(), "finishing batches in hand");
        }
        let drained = tokio::time::timeout(config.shutdown_grace, async { while tasks.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(batches = tasks.len(), "grace period over; returning unfinished batches to the queue");
            tasks.abort_all();
        }
        let _ = channel.close(200, "worker shutting down").await;
        let _ = conn.close(200, "worker shutting down").await;
    } else {
        // Connection lost: unacked deliveries are already back in the queue;
        // the work in flight cannot ack anymore, so stop it.
        tasks.abort_all();
    }
    Ok(())
}

async fn handle(ctx: Arc<BatchContext>, delivery: lapin::message::Delivery) {
    metrics::IN_FLIGHT.inc();
    let msg = match BatchMessage::from_bytes(&delivery.data) {
        Ok(m) => m,
        Err(e) => {
            // Not a batch we can work: dead-letter it for an operator.
            tracing::error!(error = %e, bytes = delivery.data.len(), "rejecting unparsable batch message to the dead-letter queue");
            metrics::BATCHES.with_label_values(&["rejected"]).inc();
            let _ = delivery.nack(BasicNackOptions { requeue: false, ..Default::default() }).await;
            metrics::IN_FLIGHT.dec();
            return;
        }
    };
    let span = tracing::info_span!("batch", batch_id = %msg.batch_id, model = %msg.model, jobs = msg.job_ids.len());
    work(&ctx, delivery, &msg).instrument(span).await;
    metrics::IN_FLIGHT.dec();
}

async fn work(ctx: &BatchContext, delivery: lapin::message::Delivery, msg: &BatchMessage) {
    match process_batch(ctx, msg).await {
        Ok(report) => {
            if report.started == 0 {
                tracing::debug!("batch has no unfinished jobs (redelivery or uncommitted release); acknowledging");
                metrics::BATCHES.with_label_values(&["empty"]).inc();
            } else {
                tracing::info!(
                    succeeded = report.succeeded, failed = report.failed, dead = report.dead,
                    calls = report.provider_calls, written = report.written, "batch done"
                );
                metrics::BATCHES.with_label_values(&["done"]).inc();
            }
            if let Err(e) = delivery.ack(BasicAckOptions::default()).await {
                // The outcome is committed; a redelivery will find nothing to do.
                tracing::warn!(error = %e, "ack failed after commit; a redelivery will be a no-op");
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "database error working batch; returning it to the queue");
            metrics::BATCHES.with_label_values(&["requeued"]).inc();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = delivery.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
        }
    }
}
