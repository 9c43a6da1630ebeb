//! Tenants: who submits jobs, in which timezone, with which limits and which
//! off-peak window.
//!
//! A tenant may have a window of its own (`tenant update --window
//! 22:00-06:00`); otherwise the deployment's (`OFFPEAK_WINDOW_START/END`)
//! applies. [`effective_window`] is the one rule that says which, and every
//! path that computes a `release_at` goes through it: submission, schedule
//! firing, the release loop's roll-over, and the operator's retry from the
//! command line or the dashboard.
//!
//! ```
//! use offpeak_core::tenant::effective_window;
//! use offpeak_core::window::WindowSpec;
//!
//! let deployment = WindowSpec::default(); // 02:00-06:00
//! let own: WindowSpec = "22:00-06:00".parse()?;
//! assert_eq!(effective_window(Some(own), &deployment), own);
//! assert_eq!(effective_window(None, &deployment), deployment);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use uuid::Uuid;

use crate::job::Priority;
use crate::quota::Limits;
use crate::window::WindowSpec;

/// A tenant as stored, already parsed: an invalid stored timezone or window
/// is an error where the row is read, never a silent default.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    /// The tenant's timezone: its jobs' default, and where its days (quotas,
    /// usage by day) begin.
    #[serde(serialize_with = "crate::tz::serialize_name")]
    pub tz: Tz,
    /// Daily credit limit of the whole tenant.
    pub daily_credits: Option<i64>,
    /// Daily credit limit of each `user_id` of the tenant.
    pub user_daily_credits: Option<i64>,
    /// The tenant's own off-peak window, if not the deployment's.
    pub window: Option<WindowSpec>,
    pub created_at: DateTime<Utc>,
    /// The cache its jobs use unless a job says otherwise
    /// (`tenant update NAME --cache semantic`).
    #[serde(serialize_with = "serialize_cache_mode")]
    pub cache: crate::semantic::CacheMode,
}

fn serialize_cache_mode<S: serde::Serializer>(m: &crate::semantic::CacheMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

impl Tenant {
    /// The tenant's daily limits.
    #[must_use]
    pub fn limits(&self) -> Limits {
        Limits { tenant: self.daily_credits, per_user: self.user_daily_credits }
    }

    /// The window the tenant's low-priority jobs wait for: its own, or
    /// `default` (the deployment's).
    #[must_use]
    pub fn window(&self, default: &WindowSpec) -> WindowSpec {
        effective_window(self.window, default)
    }

    /// The tenant's day at `now` and the instant the next one begins.
    #[must_use]
    pub fn day(&self, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
        crate::tz::day_of(self.tz, now)
    }
}

/// When a job of `priority` submitted (or retried) at `now` in `tz` is due,
/// and when its window closes: a `normal` job at once, with no window; a
/// `low` one at the opening of its next window (`now` itself inside one).
/// `window` is the tenant's effective window ([`Tenant::window`]).
#[must_use]
pub fn release_times(priority: Priority, tz: Tz, now: DateTime<Utc>, window: &WindowSpec) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    match priority {
        Priority::Normal => (now, None),
        Priority::Low => {
            let w = crate::window::next_window(tz, now, window);
            (w.opens_at, Some(w.closes_at))
        }
    }
}

/// The window of a tenant whose own window is `own`: that one if set, else
/// the deployment's `default`.
#[must_use]
pub fn effective_window(own: Option<WindowSpec>, default: &WindowSpec) -> WindowSpec {
    own.unwrap_or(*default)
}
