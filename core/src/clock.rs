//! Injected time.
//!
//! Everything in offpeak that asks "what time is it?" asks a [`Clock`], never
//! `Utc::now()` directly. Production code uses [`SystemClock`]; tests use a
//! [`ManualClock`] they can set to 02:00 in any timezone, or to either side of
//! a daylight-saving change, without waiting.
//!
//! ```
//! use offpeak_core::clock::{Clock, ManualClock};
//! use chrono::{TimeZone, Utc};
//!
//! let clock = ManualClock::new(Utc.with_ymd_and_hms(2027, 3, 14, 6, 0, 0).unwrap());
//! clock.advance(chrono::Duration::hours(1));
//! assert_eq!(clock.now(), Utc.with_ymd_and_hms(2027, 3, 14, 7, 0, 0).unwrap());
//! ```

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current instant.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// Shared, dynamically typed clock handed to every component.
pub type SharedClock = Arc<dyn Clock>;

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        // Microseconds, PostgreSQL's precision, as the scheduler's database
        // clock does: an instant handed back to a client (a normal job's
        // `release_at`, a job submitted inside its window) then reads back
        // the same from the database. With nanoseconds, a bulk replay's
        // answer differed from the original between 02:00 and 06:00 UTC.
        micros(Utc::now())
    }
}

/// `at` truncated to microseconds, PostgreSQL's precision.
fn micros(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(at.timestamp_micros()).unwrap_or(at)
}

/// A clock that only moves when told to. Cloning shares the same instant,
/// kept to microseconds like the real clocks.
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    pub fn new(at: DateTime<Utc>) -> Self {
        Self { now: Arc::new(Mutex::new(micros(at))) }
    }

    pub fn set(&self, at: DateTime<Utc>) {
        // A poisoned lock only means another test thread panicked while
        // holding it; the stored instant is still valid.
        *self.now.lock().unwrap_or_else(|e| e.into_inner()) = micros(at);
    }

    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
        *now = micros(*now + by);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().unwrap_or_else(|e| e.into_inner())
    }
}
