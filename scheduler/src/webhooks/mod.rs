//! The delivery loop: closes the groups whose jobs have all ended, and posts
//! the outbox's due webhook deliveries to their endpoints.
//!
//! Every replica may run it. A pass leases due deliveries in one short
//! statement (`FOR UPDATE SKIP LOCKED`, then `next_attempt_at` moved past
//! the attempt's timeout): two replicas never take the same delivery while
//! one is trying it, and a replica killed mid-attempt leaves it to be taken
//! again when the lease runs out (at least once; a double delivery needs a
//! crash or an attempt longer than the lease). Attempts run as tasks the
//! pass does not wait for, at most [`DeliveryConfig::per_endpoint`] per
//! endpoint and [`DeliveryConfig::max_in_flight`] in all: an endpoint that
//! hangs holds its own slots until the timeout, never anyone else's. The
//! loop runs again as soon as an attempt ends or a pass found a full page,
//! otherwise every [`DeliveryConfig::interval`].
//!
//! Each attempt is signed as the Standard Webhooks specification says
//! (`offpeak_core::webhook`): `webhook-id` is the event's id, the same for
//! every attempt; `webhook-timestamp` the attempt's time; the signature
//! covers both and the body stored with the event. Failures are retried
//! on the schedule of `offpeak_core::webhook::RETRY_SCHEDULE` (over a day),
//! no sooner than a `Retry-After`; an endpoint that has failed every
//! delivery for [`DeliveryConfig::disable_after`] is disabled.

pub mod http;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Notify};
use uuid::Uuid;

use offpeak_core::clock::SharedClock;
use offpeak_core::webhook::{retry_delay, signature_header};
use offpeak_runtime::shutdown::ShutdownSignal;
use offpeak_store::groups;
use offpeak_store::webhooks::{self as db, AttemptRecord, Due};

use crate::metrics;
use http::{Sender, SenderConfig};

/// Default pause between passes when there is nothing to do.
pub const INTERVAL_DEFAULT: Duration = Duration::from_secs(1);
/// Default most attempts in flight at once for one endpoint.
pub const PER_ENDPOINT_DEFAULT: usize = 16;
/// Default most attempts in flight at once in this replica.
pub const MAX_IN_FLIGHT_DEFAULT: usize = 256;
/// Default most attempts in flight at once in this replica while the jobs'
/// pipeline is busy (see [`crate::release::Pressure`]): none. Measured
/// (BENCHMARKS.md, step 19): even 8 attempts in flight made the million-job
/// burst with every tenant subscribed 42% longer, as an attempt's rows cost
/// the database more than a job's.
pub const BUSY_IN_FLIGHT_DEFAULT: usize = 0;
/// Default longest the loop holds back for a busy pipeline without a break:
/// past it, deliveries run beside the jobs (a night of sustained load does
/// not hold every event until morning).
pub const MAX_PAUSE_DEFAULT: Duration = Duration::from_secs(120);
/// Most rows of job events fanned out into deliveries per statement (each
/// row the jobs one statement ended: up to a batch, 100 by default).
pub const FAN_OUT_MAX: i64 = 20;
/// How long a pass that found no job event to fan out skips looking again.
pub const FAN_OUT_IDLE: Duration = Duration::from_millis(100);
/// Default time an endpoint may fail every delivery before it is disabled.
pub const DISABLE_AFTER_DEFAULT: Duration = Duration::from_secs(5 * 24 * 3600);
/// How long the loop waits, after an attempt ends, for others to end
/// before it claims more.
pub const GATHER: Duration = Duration::from_millis(5);
/// Groups closed per statement.
pub const GROUPS_PER_PASS: i64 = 500;
/// What a lease adds to the attempt's timeout: the attempt's record must
/// be written before another replica may take the delivery again.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// The delivery loop's settings.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub interval: Duration,
    pub sender: SenderConfig,
    pub per_endpoint: usize,
    pub max_in_flight: usize,
    /// [`Self::max_in_flight`] while the jobs' pipeline is busy (0: pause).
    pub busy_in_flight: usize,
    /// Longest the loop holds back (runs at [`Self::busy_in_flight`]) for
    /// one busy spell of the pipeline; then it runs at full size.
    pub max_pause: Duration,
    pub disable_after: Duration,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            interval: INTERVAL_DEFAULT,
            sender: SenderConfig::default(),
            per_endpoint: PER_ENDPOINT_DEFAULT,
            max_in_flight: MAX_IN_FLIGHT_DEFAULT,
            busy_in_flight: BUSY_IN_FLIGHT_DEFAULT,
            max_pause: MAX_PAUSE_DEFAULT,
            disable_after: DISABLE_AFTER_DEFAULT,
        }
    }
}

/// What one pass started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    /// Groups completed (their `group.completed` written).
    pub groups_completed: usize,
    /// Job events fanned out into deliveries.
    pub events_fanned_out: usize,
    /// Attempts started (they finish in the background).
    pub attempts_started: usize,
    /// Whether the claim was cut by the room left: more may be due now.
    pub more: bool,
}

/// The delivery loop of one replica.
#[derive(Clone)]
pub struct Deliverer {
    pool: PgPool,
    clock: SharedClock,
    cfg: DeliveryConfig,
    sender: Arc<Sender>,
    /// Attempts in flight, per endpoint.
    in_flight: Arc<Mutex<HashMap<Uuid, usize>>>,
    /// Woken when an attempt ends.
    ended: Arc<Notify>,
    /// Attempts to record, with who waits for the write (see [`record_in_batches`]).
    records: mpsc::UnboundedSender<(AttemptRecord, oneshot::Sender<()>)>,
    /// Set while the jobs' pipeline is busy: the loop runs smaller.
    pressure: crate::release::Pressure,
    /// When a fan-out last found nothing (see [`FAN_OUT_IDLE`]), and the
    /// page of `webhook_events` the next one starts from (see
    /// `store::webhooks::fan_out`).
    fan_out_state: Arc<Mutex<FanOutState>>,
}

impl std::fmt::Debug for Deliverer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deliverer").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Deliverer {
    /// # Errors
    /// If the HTTP client cannot be built (its TLS setup).
    pub fn new(pool: PgPool, clock: SharedClock, cfg: DeliveryConfig) -> Result<Self, reqwest::Error> {
        let sender = Arc::new(Sender::new(cfg.sender.clone())?);
        let (records, queue) = mpsc::unbounded_channel();
        let disable_before = {
            let (clock, after) = (clock.clone(), cfg.disable_after);
            move || clock.now() - chrono::TimeDelta::from_std(after).unwrap_or(chrono::TimeDelta::days(5))
        };
        tokio::spawn(record_in_batches(pool.clone(), queue, disable_before));
        Ok(Self {
            pool,
            clock,
            cfg,
            sender,
            in_flight: Arc::default(),
            ended: Arc::new(Notify::new()),
            records,
            pressure: crate::release::Pressure::default(),
            fan_out_state: Arc::default(),
        })
    }

    /// Runs smaller ([`DeliveryConfig::busy_in_flight`]) while `pressure`
    /// says the jobs' pipeline is busy.
    #[must_use]
    pub fn with_pressure(mut self, pressure: crate::release::Pressure) -> Self {
        self.pressure = pressure;
        self
    }

    fn lease(&self) -> Duration {
        self.cfg.sender.timeout + LEASE_MARGIN
    }

    /// Whether the loop holds back for a busy pipeline now (for at most
    /// [`DeliveryConfig::max_pause`] of one busy spell).
    fn holding_back(&self) -> bool {
        self.pressure.busy_for().is_some_and(|d| d < self.cfg.max_pause)
    }

    /// Attempts in flight in this replica.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().map(|m| m.values().sum()).unwrap_or(0)
    }

    /// One pass: closes completed groups, then leases what is due and room
    /// allows and starts its attempts.
    ///
    /// # Errors
    /// Database errors; nothing is lost (leases run out, groups are looked at again).
    pub async fn run_once(&self) -> Result<DeliveryPass, sqlx::Error> {
        let groups_completed = self.complete_groups().await?;
        let mut pass = self.deliver_once().await?;
        pass.groups_completed = groups_completed;
        Ok(pass)
    }

    /// Closes the groups whose jobs have all ended (their `group.completed`
    /// written); returns how many.
    ///
    /// # Errors
    /// Database errors; the groups are looked at again next time.
    pub async fn complete_groups(&self) -> Result<usize, sqlx::Error> {
        let now = self.clock.now();
        let mut completed = 0;
        loop {
            let closed = groups::complete(&self.pool, now, GROUPS_PER_PASS).await?;
            completed += closed.len();
            metrics::GROUPS_COMPLETED.inc_by(closed.len() as u64);
            for g in &closed {
                tracing::debug!(group_id = %g.id, tenant_id = %g.tenant_id, "group completed");
            }
            if (closed.len() as i64) < GROUPS_PER_PASS {
                return Ok(completed);
            }
        }
    }

    /// Fans job events out into deliveries (a few while the jobs' pipeline
    /// is busy, see [`crate::release::Pressure`]), then leases what is due
    /// and room allows, and starts its attempts.
    ///
    /// # Errors
    /// Database errors; nothing is leased then.
    pub async fn deliver_once(&self) -> Result<DeliveryPass, sqlx::Error> {
        self.pass(false).await
    }

    /// [`Self::deliver_once`]; the loop's passes (`may_skip_fan_out`) do
    /// not look for events again for [`FAN_OUT_IDLE`] after finding none.
    async fn pass(&self, may_skip_fan_out: bool) -> Result<DeliveryPass, sqlx::Error> {
        let now = self.clock.now();
        let mut pass = DeliveryPass::default();
        let yielding = self.holding_back();
        metrics::WEBHOOK_YIELDING.set(i64::from(yielding));
        let cap = if yielding { self.cfg.busy_in_flight } else { self.cfg.max_in_flight };
        let (room, busy) = {
            let map = self.in_flight.lock().map_err(|_| sqlx::Error::Protocol("delivery in-flight map poisoned".into()))?;
            let total: usize = map.values().sum();
            let busy: Vec<Uuid> = map.iter().filter(|(_, n)| **n >= self.cfg.per_endpoint).map(|(id, _)| *id).collect();
            (cap.saturating_sub(total), busy)
        };
        if room == 0 {
            return Ok(pass);
        }
        // Events first, so what they make can be claimed by this same pass.
        let chunk = if yielding { 1 } else { FAN_OUT_MAX };
        let state = self.fan_out_state.lock().map(|s| *s).unwrap_or_default();
        let idle = may_skip_fan_out && state.found_nothing_at.is_some_and(|t| t.elapsed() < FAN_OUT_IDLE);
        if !idle {
            let fanned = db::fan_out(&self.pool, chunk, state.from_block).await?;
            metrics::WEBHOOK_EVENTS_FANNED_OUT.inc_by(fanned.events as u64);
            pass.events_fanned_out = fanned.events as usize;
            pass.more |= fanned.rows >= chunk;
            if let Ok(mut s) = self.fan_out_state.lock() {
                *s = FanOutState {
                    found_nothing_at: (fanned.rows == 0).then(tokio::time::Instant::now),
                    from_block: fanned.next_block,
                };
            }
        }
        let lease_until = now + chrono::TimeDelta::from_std(self.lease()).unwrap_or(chrono::TimeDelta::minutes(1));
        let due = db::claim_due(&self.pool, now, lease_until, self.cfg.per_endpoint as i64, room as i64, &busy).await?;
        pass.more |= due.len() >= room;
        pass.attempts_started = due.len();
        for d in due {
            if let Ok(mut map) = self.in_flight.lock() {
                *map.entry(d.endpoint_id).or_insert(0) += 1;
            }
            let this = self.clone();
            tokio::spawn(async move {
                let endpoint = d.endpoint_id;
                this.attempt(d).await;
                if let Ok(mut map) = this.in_flight.lock() {
                    if let Some(n) = map.get_mut(&endpoint) {
                        *n -= 1;
                        if *n == 0 {
                            map.remove(&endpoint);
                        }
                    }
                }
                this.ended.notify_one();
            });
        }
        Ok(pass)
    }

    /// Sends one delivery and records the attempt.
    async fn attempt(&self, d: Due) {
        let msg_id = format!("msg_{}", d.event_id.simple());
        let sent_at = self.clock.now();
        let timestamp = sent_at.timestamp();
        let keys: Vec<&[u8]> = d.keys.iter().map(Vec::as_slice).collect();
        let body = d.payload.into_bytes();
        let signature = signature_header(&keys, &msg_id, timestamp, &body);
        let headers = [("webhook-id", msg_id.clone()), ("webhook-timestamp", timestamp.to_string()), ("webhook-signature", signature)];
        let outcome = self.sender.send(&d.url, &headers, body).await;
        metrics::WEBHOOK_DELIVERY_SECONDS.observe(outcome.latency.as_secs_f64());
        let attempts_made = u32::try_from(d.attempts).unwrap_or(0) + 1;
        let retry_at: Option<DateTime<Utc>> = if outcome.success {
            None
        } else {
            retry_delay(attempts_made, outcome.retry_after, rand::random::<f64>())
                .and_then(|delay| chrono::TimeDelta::from_std(delay).ok())
                .map(|delay| self.clock.now() + delay)
        };
        let outcome_label = match (outcome.success, retry_at) {
            (true, _) => "delivered",
            (false, Some(_)) => "retry",
            (false, None) => "failed",
        };
        metrics::WEBHOOK_DELIVERIES.with_label_values(&[outcome_label]).inc();
        if !outcome.success {
            // The URL is the tenant's own; the signature and secret never appear here.
            tracing::info!(delivery_id = %d.id, webhook_id = %d.endpoint_id, tenant_id = %d.tenant_id, event = %d.event_type,
                status = ?outcome.status, error = outcome.error.as_deref().unwrap_or(""), attempt = attempts_made,
                retry_at = ?retry_at, "webhook delivery failed");
        }
        let record = AttemptRecord {
            delivery_id: d.id,
            endpoint_id: d.endpoint_id,
            attempted_at: sent_at,
            status: outcome.status.map(i32::from),
            latency_ms: i32::try_from(outcome.latency.as_millis()).unwrap_or(i32::MAX),
            error: outcome.error,
            success: outcome.success,
            attempts_before: d.attempts,
            retry_at,
        };
        // The record joins the others waiting (see `record_in_batches`);
        // the attempt's slot is held until it is written.
        let (ack, written) = oneshot::channel();
        if self.records.send((record, ack)).is_err() || written.await.is_err() {
            tracing::error!(delivery_id = %d.id, "webhook attempt not recorded; it is sent again when its lease runs out");
        }
    }

    /// Runs passes until shutdown, then waits (up to the send timeout) for
    /// the attempts in flight.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        tracing::info!(interval_ms = self.cfg.interval.as_millis() as u64, "webhook delivery loop started");
        // Groups are looked at once per interval, however often deliveries wake the loop.
        let mut groups_due = tokio::time::Instant::now();
        while !shutdown.is_triggered() {
            // Group completion holds back with the deliveries (its events
            // would only wait), see `crate::release::Pressure`.
            if tokio::time::Instant::now() >= groups_due && !self.holding_back() {
                if let Err(e) = self.complete_groups().await {
                    metrics::WEBHOOK_LOOP_ERRORS.inc();
                    tracing::warn!(error = %e, "group completion pass failed; retrying");
                }
                groups_due = tokio::time::Instant::now() + self.cfg.interval;
            }
            let pause = match self.pass(true).await {
                Ok(pass) if pass.more => Duration::ZERO,
                Ok(_) => self.cfg.interval,
                Err(e) => {
                    metrics::WEBHOOK_LOOP_ERRORS.inc();
                    tracing::warn!(error = %e, "webhook delivery pass failed; retrying");
                    self.cfg.interval.max(Duration::from_secs(1))
                }
            };
            if pause.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(pause.min(self.cfg.interval)) => {}
                // An attempt ended: let the others ending about now end too,
                // so the next claim fills their slots with one statement.
                _ = self.ended.notified() => tokio::time::sleep(GATHER).await,
                _ = shutdown.wait() => {}
            }
        }
        let deadline = tokio::time::Instant::now() + self.cfg.sender.timeout;
        while self.in_flight() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tracing::info!("webhook delivery loop stopped");
    }
}

/// Where the loop's fan-outs are.
#[derive(Debug, Clone, Copy, Default)]
struct FanOutState {
    found_nothing_at: Option<tokio::time::Instant>,
    from_block: i64,
}

/// Most attempts written by one statement.
pub const RECORD_BATCH_MAX: usize = 500;

/// Writes the attempts' records: whatever is waiting when the previous
/// write ends, up to [`RECORD_BATCH_MAX`], in one statement
/// (`store::webhooks::record_attempts`). Under load that is one commit for
/// hundreds of attempts instead of one each; idle, a lone record is written
/// at once. A write that fails is tried again three times (the records are
/// idempotent); then its attempts are left to their leases, and are sent
/// again (a second delivery, never a lost one). Ends when every
/// [`Deliverer`] is dropped.
async fn record_in_batches(
    pool: PgPool,
    mut queue: mpsc::UnboundedReceiver<(AttemptRecord, oneshot::Sender<()>)>,
    disable_before: impl Fn() -> DateTime<Utc>,
) {
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < RECORD_BATCH_MAX {
            match queue.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let records: Vec<AttemptRecord> = batch.iter().map(|(r, _)| r.clone()).collect();
        let mut written = false;
        for pause in [Duration::from_millis(100), Duration::from_secs(1), Duration::from_secs(5), Duration::ZERO] {
            match db::record_attempts(&pool, &records, disable_before()).await {
                Ok(disabled) => {
                    for endpoint in disabled {
                        metrics::WEBHOOK_ENDPOINTS_DISABLED_TOTAL.inc();
                        tracing::warn!(webhook_id = %endpoint, "webhook endpoint disabled: every delivery failed for too long");
                    }
                    written = true;
                    break;
                }
                Err(e) => {
                    metrics::WEBHOOK_LOOP_ERRORS.inc();
                    tracing::warn!(attempts = records.len(), error = %e, "could not record webhook attempts; retrying");
                    tokio::time::sleep(pause).await;
                }
            }
        }
        if written {
            for (_, ack) in batch {
                // The attempt's task may be gone (shutdown): nothing waits then.
                let _ = ack.send(());
            }
        } else {
            tracing::error!(attempts = records.len(), "webhook attempts not recorded; they are sent again when their leases run out");
        }
    }
}
