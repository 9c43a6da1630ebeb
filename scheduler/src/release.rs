//! The release loop: moves due jobs from PostgreSQL to RabbitMQ in batches.
//!
//! Each round ([`Releaser::run_once`]):
//!
//! 1. **Roll over.** Held jobs whose window closed before they were released
//!    (capacity, backpressure) get the next window of their timezone.
//! 2. **Backpressure.** If the batch queue already holds `max_queue_depth`
//!    ready messages, publish nothing this round: workers are behind, and
//!    flooding the broker would only move the backlog from PostgreSQL (where
//!    it is cheap and queryable) into RabbitMQ memory.
//! 3. **Claim.** In one transaction, under the rounds' lock (one round at a
//!    time across replicas), read due jobs, the round split evenly between
//!    the tenants with due work, at most `per_tenant` each (fairness), and
//!    take the release lock of each model among them, which keeps out
//!    submissions of those models released at once (`crate::direct`) until
//!    the commit. They are not row-locked: each write below re-checks that a
//!    job is still `held`, so one cancelled meanwhile is left out.
//! 4. **Cache.** Claimed jobs identical to one that succeeded within the
//!    cache TTL are answered with its result; identical jobs already on
//!    their way to the provider, or claimed together, are coalesced so only
//!    one of them is sent (see [`crate::coalesce`]).
//! 5. **Batch and publish.** Group by model, cut into batches of at most
//!    `batch_max`, mark the jobs `queued` and record the batches, attach the
//!    followers of step 4 to their (now queued) leaders, publish every
//!    message and wait for the broker's confirms, and only then commit.
//!
//! Between rounds the loop sleeps until the first of: the next instant a
//! held job becomes due or a held job's window closes (read at the end of
//! a round that found nothing more to do, [`ReleaseReport::next_due`]), an
//! announcement that a job is due (`NOTIFY`, see [`crate::wake`]), or
//! `interval`, the poll that catches whatever was not announced. It never
//! spins on a job it cannot release: the next due instant is always after
//! the round's own instant (a job due at it and not released, held back by
//! backpressure or a round cut short, is not a reason to wake); a round
//! the queue's depth held back waits `interval`, deaf to announcements; and
//! announcements start at most one round per `notify_gap`.
//!
//! A crash after publishing but before the commit rolls the transaction back:
//! the jobs are still `held` and are released again in a new batch, and the
//! orphaned message finds no job with its batch id, so a worker acknowledges
//! it without effect. A crash before publishing loses nothing either. So a
//! batch is never lost and a job is never worked twice. A worker that gets a
//! message before its round has committed waits for the round's lock (see
//! `store::batches::start_attempt`), so it never mistakes a batch in the middle of
//! being committed for an orphan.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use offpeak_runtime::broker::{PublishError, Publisher};
use offpeak_core::clock::SharedClock;
use offpeak_store::release as db;
use offpeak_core::message::BatchMessage;
use offpeak_runtime::shutdown::ShutdownSignal;
use offpeak_core::window::WindowSpec;

use offpeak_core::prices::PriceTable;

use crate::admission::CacheConfig;
use crate::coalesce;
use crate::metrics;
use crate::rounds::{self, Next, Woke};
use crate::semantic::{SemanticCache, SemanticConfig};
use crate::wake::Wakeups;

/// Default longest pause between rounds when the last round found nothing
/// more to do: the poll for work nobody announced. Due instants and
/// announcements cut it short.
pub const RELEASE_INTERVAL_DEFAULT: Duration = Duration::from_millis(500);
/// Default least time from the start of a round to a round that an
/// announcement starts: under a stream of submissions due now, at most one
/// round per this, each releasing what arrived meanwhile.
pub const NOTIFY_GAP_DEFAULT: Duration = Duration::from_millis(50);
/// Default most jobs per batch message (per model).
pub const BATCH_MAX_DEFAULT: usize = 100;
/// Default most jobs one tenant gets per round; a round is split evenly
/// between the tenants with due jobs, up to this many each.
pub const PER_TENANT_DEFAULT: i64 = 5_000;
/// Default most jobs per round across tenants. Each round pays for its
/// claim's probe of every tenant with due work, its publish and its commit
/// whatever its size: in the 02:00 burst (1,000 tenants) rounds of 10,000
/// published 2–17% sooner than rounds of 5,000 in six pairs, at less
/// CPU a job, and rounds of 20,000 were slower, capped by the queue's room
/// and holding up the workers' starts longer (BENCHMARKS.md step 36).
pub const ROUND_MAX_DEFAULT: i64 = 10_000;
/// Default ready batch messages above which release pauses.
pub const MAX_QUEUE_DEPTH_DEFAULT: u32 = 200;

#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// The longest pause between rounds (see [`RELEASE_INTERVAL_DEFAULT`]).
    pub interval: Duration,
    /// See [`NOTIFY_GAP_DEFAULT`].
    pub notify_gap: Duration,
    pub batch_max: usize,
    pub per_tenant: i64,
    pub round_max: i64,
    pub max_queue_depth: u32,
    pub window: WindowSpec,
    /// The exact cache: identical due jobs are answered or coalesced.
    pub cache: CacheConfig,
    /// List prices, for what cache hits saved.
    pub prices: PriceTable,
    /// The semantic cache: due jobs that asked for it are answered by a
    /// rewording that succeeded (`crate::semantic`).
    pub semantic: SemanticConfig,
    /// Bulk submissions due at once may release their own jobs while a
    /// round leaves nothing due behind (`crate::direct`).
    pub at_submit: bool,
}

impl Default for ReleaseConfig {
    fn default() -> Self {
        Self {
            interval: RELEASE_INTERVAL_DEFAULT,
            notify_gap: NOTIFY_GAP_DEFAULT,
            batch_max: BATCH_MAX_DEFAULT,
            per_tenant: PER_TENANT_DEFAULT,
            round_max: ROUND_MAX_DEFAULT,
            max_queue_depth: MAX_QUEUE_DEPTH_DEFAULT,
            window: WindowSpec::default(),
            cache: CacheConfig::default(),
            prices: PriceTable::default(),
            semantic: SemanticConfig::default(),
            at_submit: true,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReleaseReport {
    pub rolled_over: u64,
    pub released: u64,
    pub batches: u64,
    /// Due jobs answered from the cache instead of released (semantic hits included).
    pub answered: u64,
    /// Of `answered`, those answered by a rewording (the semantic cache).
    pub answered_semantic: u64,
    /// Due jobs set to wait for an identical job on its way to the provider.
    pub coalesced: u64,
    /// The queue was at its depth limit; nothing was claimed.
    pub throttled: bool,
    /// The round was cut short by `round_max`, the depth limit or a
    /// tenant's share: more may be due.
    pub more: bool,
    /// For a round that found nothing more to do (not `more`): the first
    /// instant after the round's own, within `store::release::DUE_SOON`, at
    /// which a held job becomes due or a held job's window closes.
    pub next_due: Option<DateTime<Utc>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

impl ReleaseError {
    fn kind(&self) -> &'static str {
        match self {
            ReleaseError::Db(_) => "database",
            ReleaseError::Publish(_) | ReleaseError::Broker(_) => "broker",
        }
    }
}

/// Fault-test hook: with `OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS=N` set, a round
/// (or a submission released at once, `crate::direct`) pauses N ms after
/// its batches are confirmed and before it commits, and says so in the
/// log, so a fault test can SIGKILL the scheduler exactly there. Unset
/// (always, outside tests) it costs one cached lookup.
pub(crate) async fn failpoint_after_publish() {
    static PAUSE: std::sync::LazyLock<Option<Duration>> = std::sync::LazyLock::new(|| {
        std::env::var("OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS").ok().and_then(|v| v.parse().ok()).map(Duration::from_millis)
    });
    if let Some(pause) = *PAUSE {
        tracing::warn!(pause_ms = pause.as_millis() as u64, "failpoint: published, not committed; pausing");
        tokio::time::sleep(pause).await;
    }
}

/// Counts released batches once their release has committed (a round's, or
/// a submission's released at once, `crate::direct`): the jobs, the batches
/// per model and their sizes.
pub(crate) fn count_released(messages: &[BatchMessage]) {
    for m in messages {
        metrics::JOBS_RELEASED.inc_by(m.job_ids.len() as u64);
        metrics::BATCHES_PUBLISHED.with_label_values(&[&m.model]).inc();
        metrics::BATCH_SIZE.observe(m.job_ids.len() as f64);
    }
}

/// Whether the jobs' own pipeline is busy: a release round found batches
/// waiting in the queue or released jobs less than [`PRESSURE_HOLD`] ago.
/// Background work that competes with it for the same database (the
/// webhook delivery loop) holds back while it is, so a burst of jobs is not
/// slowed by the events it produces; they are sent when the burst is
/// through. Shared by the release loop, which marks it every busy round,
/// and whoever reads it.
#[derive(Debug, Clone, Default)]
pub struct Pressure(std::sync::Arc<std::sync::Mutex<PressureMarks>>);

#[derive(Debug, Default)]
struct PressureMarks {
    /// The last round that found the pipeline busy.
    last: Option<std::time::Instant>,
    /// The first round of the current busy spell.
    since: Option<std::time::Instant>,
}

/// How long the pipeline counts as busy after a round that found it so:
/// a few rounds, so a round that happens to find the queue empty for a
/// moment in the middle of a burst does not let background work loose.
pub const PRESSURE_HOLD: Duration = Duration::from_secs(2);

impl Pressure {
    /// How long the pipeline has been busy without a break; `None` if it is not.
    #[must_use]
    pub fn busy_for(&self) -> Option<Duration> {
        let marks = self.0.lock().ok()?;
        match (marks.last, marks.since) {
            (Some(last), Some(since)) if last.elapsed() < PRESSURE_HOLD => Some(since.elapsed()),
            _ => None,
        }
    }

    /// Marks the pipeline busy now (`true`), or not busy at once (`false`).
    pub fn set(&self, busy: bool) {
        if let Ok(mut marks) = self.0.lock() {
            if !busy {
                *marks = PressureMarks::default();
                return;
            }
            let now = std::time::Instant::now();
            if marks.last.is_none_or(|last| last.elapsed() >= PRESSURE_HOLD) {
                marks.since = Some(now);
            }
            marks.last = Some(now);
        }
    }
}

/// The next due instant as a round read it ([`db::next_due`]), trusted by
/// the rounds after it while nothing says otherwise (see
/// [`Releaser::next_due`]).
#[derive(Debug, Clone, Copy)]
struct DueReading {
    /// [`Wakeups::generation`] before the read.
    generation: u64,
    read_at: DateTime<Utc>,
    /// The end of the span read: `read_at` + `DUE_SOON`.
    until: DateTime<Utc>,
    due: Option<DateTime<Utc>>,
}

/// The release loop of one scheduler replica.
#[derive(Debug, Clone)]
pub struct Releaser {
    pool: PgPool,
    publisher: Publisher,
    clock: SharedClock,
    config: ReleaseConfig,
    pressure: Pressure,
    semantic: std::sync::Arc<SemanticCache>,
    wakeups: Wakeups,
    /// The last reading of the next due instant.
    due: Arc<Mutex<Option<DueReading>>>,
    /// Rounds run, by this releaser and its clones.
    rounds: Arc<AtomicU64>,
    /// Opened after each round that left nothing due behind, for
    /// submissions that release their own jobs (`crate::direct`).
    room: crate::direct::Room,
}

impl Releaser {
    pub fn new(pool: PgPool, publisher: Publisher, clock: SharedClock, config: ReleaseConfig) -> Self {
        let semantic = SemanticCache::new(config.semantic.clone()).unwrap_or_else(|e| {
            tracing::error!(error = %e, "the embeddings client cannot be built; the semantic cache is off");
            SemanticCache::disabled(config.semantic.clone())
        });
        Self {
            pool,
            publisher,
            clock,
            config,
            pressure: Pressure::default(),
            semantic: std::sync::Arc::new(semantic),
            wakeups: Wakeups::default(),
            due: Arc::default(),
            rounds: Arc::default(),
            room: crate::direct::Room::default(),
        }
    }

    /// Opens `room` after every round that leaves nothing due behind (and
    /// closes it after any other), if `at_submit` is set: the API of this
    /// replica then releases submissions due at once with their own
    /// transaction (see [`crate::direct`]).
    #[must_use]
    pub fn with_room(mut self, room: crate::direct::Room) -> Self {
        self.room = room;
        self
    }

    /// Rounds run so far by this releaser and its clones (the loop's
    /// included).
    #[must_use]
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// What wakes this releaser's loop ([`Releaser::run`]).
    #[must_use]
    pub fn wakeups(&self) -> &Wakeups {
        &self.wakeups
    }

    /// Sets `pressure` after every round (see [`Pressure`]).
    #[must_use]
    pub fn with_pressure(mut self, pressure: Pressure) -> Self {
        self.pressure = pressure;
        self
    }

    /// One round at the clock's current instant.
    ///
    /// # Errors
    /// Database or broker errors; the round's transaction is rolled back and
    /// nothing it claimed is lost.
    pub async fn run_once(&self) -> Result<ReleaseReport, ReleaseError> {
        let mut depth = None;
        let result = self.round(&mut depth).await;
        match (&result, depth) {
            (Ok(r), Some(depth)) => {
                // What the queue has room for after this round's batches;
                // open for a few rounds' time, so a loop that stops running
                // rounds does not leave it open.
                let left = i64::from(self.config.max_queue_depth) - i64::from(depth) - r.batches as i64;
                let fresh_for = (self.config.interval * 4).max(Duration::from_secs(1));
                let open = self.config.at_submit && !r.more && !r.throttled;
                self.room.after_round(open, left, self.config.batch_max, fresh_for);
            }
            _ => self.room.close(),
        }
        result
    }

    /// [`Self::run_once`]'s round; `depth`: the queue's depth it read.
    async fn round(&self, depth_read: &mut Option<u32>) -> Result<ReleaseReport, ReleaseError> {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now();
        let mut report = ReleaseReport { rolled_over: self.roll_over(now).await?, ..Default::default() };
        if report.rolled_over > 0 {
            // Due instants moved: read them again.
            self.forget_due();
        }

        let depth = self.publisher.depth().await?;
        *depth_read = Some(depth);
        metrics::QUEUE_DEPTH.set(i64::from(depth));
        // Batches waiting: the pipeline is busy whatever this round finds.
        if depth > 0 {
            self.pressure.set(true);
        }
        if depth >= self.config.max_queue_depth {
            metrics::RELEASE_THROTTLED.inc();
            report.throttled = true;
            report.more = true;
            return Ok(report);
        }
        // Never publish more batches than the queue has room for.
        let room = i64::from(self.config.max_queue_depth - depth) * self.config.batch_max as i64;
        let limit = self.config.round_max.min(room);

        let mut tx = self.pool.begin().await?;
        db::lock_release(&mut tx).await?;
        let claim = db::claim_due(&mut tx, now, self.config.per_tenant, limit).await?;
        if claim.jobs.is_empty() {
            // The round's lock is let go before the next due instant is read.
            tx.rollback().await?;
            report.next_due = self.next_due(now).await;
            return Ok(report);
        }
        report.more = claim.may_have_more(limit);
        let step = coalesce::run(&mut tx, claim.jobs, self.config.cache, &self.config.prices, now).await?;
        let semantic = self.semantic.run(&mut tx, step.send, self.config.cache, &self.config.prices, now).await?;
        report.answered = step.answered + semantic.answered;
        report.answered_semantic = semantic.answered;
        // Jobs the semantic search had no time for this round are still due.
        report.more |= semantic.deferred > 0;

        let mut by_model: BTreeMap<String, Vec<Uuid>> = BTreeMap::new();
        for job in semantic.send {
            by_model.entry(job.model).or_default().push(job.id);
        }
        let batches: Vec<db::NewBatch> =
            by_model.iter().flat_map(|(model, ids)| db::NewBatch::cut(model, ids, self.config.batch_max)).collect();
        // One statement for all jobs of the round and one for all batch rows.
        let batches = db::mark_queued_many(&mut tx, &batches, now).await?;
        report.released = batches.iter().map(|b| b.job_ids.len() as u64).sum();
        report.coalesced = coalesce::attach_followers(&mut tx, &step.follow, now).await?;
        let messages: Vec<BatchMessage> = batches.iter().map(|b| b.message(now)).collect();
        if !messages.is_empty() {
            for m in &messages {
                tracing::debug!(batch_id = %m.batch_id, model = %m.model, job_ids = ?m.job_ids, "publishing batch");
            }
            self.publisher.publish_all(&messages).await?;
            failpoint_after_publish().await;
        }
        tx.commit().await?;

        report.batches = messages.len() as u64;
        if report.released > 0 {
            self.pressure.set(true);
        }
        count_released(&messages);
        if !report.more {
            report.next_due = self.next_due(now).await;
        }
        Ok(report)
    }

    /// The first instant after `now` (a round's instant) and within
    /// `DUE_SOON` at which a held job becomes due or a held job's window
    /// closes; `None` if there is none, or if it cannot be read (logged and
    /// counted: the loop then polls).
    ///
    /// Reading it is a probe per tenant (about 4 ms for 1,000 tenants), so
    /// a reading is kept and trusted by later rounds until its instant has
    /// passed, its span ends, or a job due within `DUE_SOON` of its storing
    /// was announced since (every path that stores one announces it, see
    /// [`crate::wake`]); and only while the loop listens, so that it would
    /// hear of one. A job stored by a path that announces nothing is still
    /// found by the next poll, as before.
    async fn next_due(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let generation = self.wakeups.generation();
        if let Some(r) = *self.due.lock().unwrap_or_else(|e| e.into_inner()) {
            let fresh = self.wakeups.listening()
                && r.generation == generation
                && r.read_at <= now
                && now < r.until
                && r.due.is_none_or(|d| d > now);
            if fresh {
                return r.due;
            }
        }
        let until = now + chrono::Duration::from_std(db::DUE_SOON).unwrap_or_default();
        match db::next_due(&self.pool, now, until).await {
            Ok(due) => {
                *self.due.lock().unwrap_or_else(|e| e.into_inner()) = Some(DueReading { generation, read_at: now, until, due });
                due
            }
            Err(e) => {
                metrics::RELEASE_ERRORS.with_label_values(&["next_due"]).inc();
                tracing::warn!(error = %e, "could not read the next due instant; polling instead");
                None
            }
        }
    }

    fn forget_due(&self) {
        *self.due.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn roll_over(&self, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
        let mut moved = 0;
        for group in db::expired_held_groups(&self.pool, now).await? {
            // The tenant's own window, if it has one, else the deployment's.
            let w = group.next_window(now, &self.config.window);
            let n = db::roll_over(&self.pool, now, &group, w.opens_at, w.closes_at).await?;
            if n > 0 {
                let spec = offpeak_core::tenant::effective_window(group.window, &self.config.window);
                tracing::info!(timezone = %group.timezone.name(), window = %spec, jobs = n, opens_at = %w.opens_at, "window closed before release; rolled over");
            }
            moved += n;
        }
        metrics::JOBS_ROLLED_OVER.inc_by(moved);
        Ok(moved)
    }

    /// Runs rounds until shutdown: at once again while a round says there is
    /// more; otherwise at the next due instant, when a due job is announced
    /// (`LISTEN`, on a connection of its own), or after `interval`,
    /// whichever comes first (see the module's doc). Errors are logged and
    /// counted, and the loop carries on after a pause.
    pub async fn run(self, shutdown: ShutdownSignal) {
        tracing::info!(
            interval_ms = self.config.interval.as_millis() as u64,
            notify_gap_ms = self.config.notify_gap.as_millis() as u64,
            batch_max = self.config.batch_max,
            "release loop started"
        );
        let listen = self.wakeups.listen(self.pool.clone(), shutdown.clone());
        let this = &self;
        // The due instant the loop sleeps until, for the lateness metric.
        let planned: &Mutex<Option<DateTime<Utc>>> = &Mutex::new(None);
        let wake = rounds::Wake { notify: self.wakeups.notify(), gap: self.config.notify_gap };
        let rounds = rounds::run_woken("release", "nothing was lost", self.config.interval, shutdown, Some(wake), |woke| async move {
            use tracing::Instrument;
            metrics::RELEASE_WAKEUPS.with_label_values(&[woke.as_str()]).inc();
            let due = planned.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let (Woke::Due, Some(due)) = (woke, due) {
                if let Ok(late) = (this.clock.now() - due).to_std() {
                    metrics::RELEASE_WAKE_LATE.observe(late.as_secs_f64());
                }
            }
            match this.run_once().instrument(tracing::debug_span!("release_round", woke = woke.as_str())).await {
                Ok(r) => {
                    if r.released > 0 || r.rolled_over > 0 || r.answered > 0 || r.coalesced > 0 {
                        tracing::info!(
                            released = r.released, batches = r.batches, rolled_over = r.rolled_over,
                            answered_from_cache = r.answered, coalesced = r.coalesced, "release round"
                        );
                    }
                    Ok(if r.throttled {
                        Next::Blocked
                    } else if r.more {
                        Next::Now
                    } else if let Some(due) = r.next_due {
                        *planned.lock().unwrap_or_else(|e| e.into_inner()) = Some(due);
                        // From the clock's now, not the round's: a manual
                        // clock in a test decides how long this is.
                        Next::In((due - this.clock.now()).to_std().unwrap_or(Duration::ZERO))
                    } else {
                        Next::Later
                    })
                }
                Err(e) => {
                    metrics::RELEASE_ERRORS.with_label_values(&[e.kind()]).inc();
                    Err(e)
                }
            }
        });
        tokio::join!(listen, rounds);
    }
}
