//! One clock: PostgreSQL's.
//!
//! Every decision a scheduler replica takes by the time (a job's
//! `release_at`, which held jobs are due, which windows have closed, which
//! schedules fire, which batches are stale, which finished jobs are old
//! enough to prune) asks the [`Clock`] it was given. A replica whose host
//! clock ran 10 minutes fast used to release a tenant's held jobs before its
//! window opened, and to give submissions a `release_at` inside the window
//! instead of its opening. [`DbClock`] gives every replica the database's
//! time instead, at no cost per decision:
//!
//! - [`ClockSync`] reads PostgreSQL's `clock_timestamp()` a few times on one
//!   connection and keeps the reading with the shortest round trip; the
//!   server read its clock somewhere within that round trip, so taking its
//!   midpoint is off by at most half of it (a fraction of a millisecond on a
//!   local network).
//! - [`DbClock::now`] is that reading plus the time elapsed since, measured
//!   on the **monotonic** clock: the replica's wall clock is never read for
//!   a decision, so neither its offset nor a step of it (an operator's
//!   `date -s`, NTP stepping) moves a decision. Between two measurements the
//!   monotonic clock's rate error (NTP keeps it under 500 ppm: 2.5 ms per
//!   5 s) is all that accumulates.
//! - The measurement is repeated every [`CLOCK_REFRESH_DEFAULT`]. One that
//!   fails (PostgreSQL unreachable) keeps the last in use: it stays exact to
//!   the rate error, and no decision can be carried out without the
//!   database anyway.
//! - `now` never goes backwards: a new measurement that lands a little
//!   earlier than the extrapolation of the last holds the clock still
//!   until it catches up.
//!
//! The replica's wall clock is still compared with the database's, because
//! a wrong host clock harms everything else on the host (logs, TLS, other
//! programs): the offset is the gauge `offpeak_clock_offset_seconds`
//! (replica minus database), logged as a warning beyond
//! [`CLOCK_WARN_OFFSET`], and `deploy/prometheus/alerts.yaml` raises
//! `OffpeakClockSkew` on it.
//!
//! Before its first measurement a replica has no time to decide by, so
//! `offpeak-scheduler serve` measures synchronously before it serves
//! anything ([`ClockSync::start`]) and does not start without it.
//!
//! ```no_run
//! # async fn example(pool: sqlx::PgPool, shutdown: offpeak_runtime::shutdown::ShutdownSignal) -> Result<(), sqlx::Error> {
//! use offpeak_core::clock::{Clock, SharedClock};
//! use offpeak_scheduler::clock::{ClockSync, ClockSyncConfig};
//!
//! let sync = ClockSync::start(pool, ClockSyncConfig::default()).await?;
//! let clock: SharedClock = std::sync::Arc::new(sync.clock());
//! tokio::spawn(sync.run(shutdown));
//! let _now = clock.now(); // the database's time, whatever this host's says
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use offpeak_core::clock::Clock;
use offpeak_runtime::shutdown::ShutdownSignal;

use crate::metrics;

/// Default pause between two measurements of the database's clock.
pub const CLOCK_REFRESH_DEFAULT: Duration = Duration::from_secs(5);
/// Default number of round trips per measurement; the shortest is kept.
pub const CLOCK_SAMPLES_DEFAULT: usize = 5;
/// A replica whose wall clock is further than this from the database's logs
/// a warning (and `OffpeakClockSkew` fires on the gauge).
pub const CLOCK_WARN_OFFSET: Duration = Duration::from_secs(1);

/// How [`ClockSync`] measures.
#[derive(Debug, Clone)]
pub struct ClockSyncConfig {
    pub refresh: Duration,
    pub samples: usize,
    pub warn_offset: Duration,
}

impl Default for ClockSyncConfig {
    fn default() -> Self {
        Self { refresh: CLOCK_REFRESH_DEFAULT, samples: CLOCK_SAMPLES_DEFAULT, warn_offset: CLOCK_WARN_OFFSET }
    }
}

/// One reading of the database's clock.
#[derive(Debug, Clone, Copy)]
pub struct Measurement {
    /// The database's time, taken to be at `at`.
    pub database: DateTime<Utc>,
    /// The midpoint of the round trip, on the monotonic clock.
    pub at: Instant,
    /// The round trip; `database` is right to within half of it.
    pub round_trip: Duration,
    /// This replica's wall clock minus the database's, at the midpoint.
    pub offset: chrono::Duration,
}

impl Measurement {
    /// The offset in seconds (positive: this replica's clock is ahead).
    #[must_use]
    pub fn offset_seconds(&self) -> f64 {
        self.offset.num_microseconds().map_or(f64::MAX, |us| us as f64 / 1e6)
    }
}

/// The database's time, extrapolated on the monotonic clock from the last
/// [`Measurement`]. Cloning shares it; [`ClockSync`] keeps it current.
#[derive(Debug, Clone)]
pub struct DbClock {
    anchor: Arc<RwLock<(DateTime<Utc>, Instant)>>,
    /// The latest instant returned, in microseconds since the epoch, so that
    /// `now` never goes backwards when a new measurement is adopted.
    latest: Arc<AtomicI64>,
}

impl DbClock {
    /// A clock that reads `m.database` at `m.at`.
    #[must_use]
    pub fn new(m: &Measurement) -> Self {
        Self { anchor: Arc::new(RwLock::new((m.database, m.at))), latest: Arc::new(AtomicI64::new(i64::MIN)) }
    }

    /// Takes `m` as the reference from now on.
    pub fn adopt(&self, m: &Measurement) {
        // A poisoned lock only means a thread panicked while writing two
        // plain values; the pair is still whole.
        *self.anchor.write().unwrap_or_else(|e| e.into_inner()) = (m.database, m.at);
    }
}

impl Clock for DbClock {
    fn now(&self) -> DateTime<Utc> {
        let (database, at) = *self.anchor.read().unwrap_or_else(|e| e.into_inner());
        let elapsed = chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::zero());
        let now = database + elapsed;
        // Microseconds, PostgreSQL's precision: every instant returned is
        // one it stores exactly, and comparing them is comparing integers.
        let us = now.timestamp_micros();
        let latest = self.latest.fetch_max(us, Ordering::AcqRel).max(us);
        DateTime::from_timestamp_micros(latest).unwrap_or(now)
    }
}

/// Keeps a [`DbClock`] measured against PostgreSQL: the scheduler's
/// background duty for time.
#[derive(Debug, Clone)]
pub struct ClockSync {
    pool: PgPool,
    clock: DbClock,
    config: ClockSyncConfig,
}

impl ClockSync {
    /// Measures once, synchronously, and returns the duty holding a clock
    /// set by that measurement (so nothing ever decides by an unmeasured
    /// clock).
    ///
    /// # Errors
    /// The database's error if it cannot be read.
    pub async fn start(pool: PgPool, config: ClockSyncConfig) -> Result<Self, sqlx::Error> {
        let m = measure(&pool, config.samples).await?;
        let sync = Self { clock: DbClock::new(&m), pool, config };
        sync.report(&m);
        Ok(sync)
    }

    /// The clock this duty keeps current.
    #[must_use]
    pub fn clock(&self) -> DbClock {
        self.clock.clone()
    }

    /// One measurement, adopted.
    ///
    /// # Errors
    /// The database's error; the clock keeps its last measurement.
    pub async fn run_once(&self) -> Result<Measurement, sqlx::Error> {
        let m = measure(&self.pool, self.config.samples).await?;
        self.clock.adopt(&m);
        self.report(&m);
        Ok(m)
    }

    fn report(&self, m: &Measurement) {
        let offset = m.offset_seconds();
        metrics::CLOCK_OFFSET.set(offset);
        metrics::CLOCK_ROUND_TRIP.set(m.round_trip.as_secs_f64());
        if offset.abs() > self.config.warn_offset.as_secs_f64() {
            tracing::warn!(
                offset_seconds = offset,
                round_trip_ms = m.round_trip.as_secs_f64() * 1e3,
                "this host's clock disagrees with PostgreSQL's; the scheduler decides by PostgreSQL's time, but fix the host's (NTP)"
            );
        }
    }

    /// Measures every `refresh` until shutdown.
    pub async fn run(self, mut shutdown: ShutdownSignal) {
        while !shutdown.is_triggered() {
            tokio::select! {
                _ = tokio::time::sleep(self.config.refresh) => {}
                _ = shutdown.wait() => break,
            }
            if let Err(e) = self.run_once().await {
                metrics::CLOCK_SYNC_ERRORS.inc();
                tracing::warn!(error = %e, "could not read PostgreSQL's clock; extrapolating the last reading");
            }
        }
    }
}

/// Reads the database's clock `samples` times (at least once) on one
/// connection and keeps the reading with the shortest round trip.
///
/// # Errors
/// The database's error, if no reading succeeded.
pub async fn measure(pool: &PgPool, samples: usize) -> Result<Measurement, sqlx::Error> {
    // One connection for every sample: waiting for the pool is not round trip.
    let mut conn = pool.acquire().await?;
    let mut best: Option<Measurement> = None;
    for _ in 0..samples.max(1) {
        let sent = Instant::now();
        // The host's wall clock, read only to report how far off it is.
        let sent_wall = Utc::now();
        let database = offpeak_store::clock::database_now(&mut *conn).await?;
        let round_trip = sent.elapsed();
        let at = sent + round_trip / 2;
        let wall = sent_wall + chrono::Duration::from_std(round_trip / 2).unwrap_or(chrono::Duration::zero());
        let m = Measurement { database, at, round_trip, offset: wall - database };
        if best.as_ref().is_none_or(|b| m.round_trip < b.round_trip) {
            best = Some(m);
        }
    }
    // `samples.max(1)` iterations ran, each either set `best` or returned.
    best.ok_or(sqlx::Error::RowNotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measurement(database: DateTime<Utc>, at: Instant) -> Measurement {
        Measurement { database, at, round_trip: Duration::from_millis(1), offset: chrono::Duration::zero() }
    }

    #[test]
    fn now_is_the_reading_plus_the_monotonic_time_since() {
        let db = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant");
        let at = Instant::now() - Duration::from_secs(3);
        let clock = DbClock::new(&measurement(db, at));
        let now = clock.now();
        assert!(now >= db + chrono::Duration::seconds(3) && now < db + chrono::Duration::seconds(4), "{now}");
    }

    #[test]
    fn adopting_an_earlier_reading_never_moves_now_backwards() {
        let db = DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant");
        let clock = DbClock::new(&measurement(db, Instant::now()));
        let before = clock.now();
        clock.adopt(&measurement(db - chrono::Duration::seconds(5), Instant::now()));
        assert!(clock.now() >= before, "held at {before}, not 5 s back");
        clock.adopt(&measurement(db + chrono::Duration::seconds(60), Instant::now()));
        assert!(clock.now() >= db + chrono::Duration::seconds(60), "a later reading is taken at once");
    }
}
