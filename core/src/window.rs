//! The off-peak window: when a low-priority job may run.
//!
//! A [`WindowSpec`] names a range of local wall-clock times, `[start, end)`,
//! such as 02:00–06:00. It may wrap midnight (22:00–06:00). In a given
//! timezone the window is **the set of instants whose local wall-clock time
//! lies in `[start, end)`**. That one definition is the whole contract; every
//! daylight-saving case follows from it rather than from special rules:
//!
//! - **Spring forward through the start.** In `America/New_York` on
//!   2027-03-14 the clock jumps from 01:59:59 EST to 03:00 EDT, so no instant
//!   has a local time of 02:00–02:59. The first instant in the window is the
//!   jump itself (03:00 EDT), and that night's window is 3 hours long.
//! - **Fall back inside the window.** In `Europe/Berlin` on 2027-10-31 the
//!   clock goes from 02:59:59 CEST back to 02:00 CET. Both runs of 02:00–02:59
//!   are in the window, which is 5 hours long (00:00Z to 05:00Z).
//! - **An end inside a gap.** A window 00:00–02:30 in `America/New_York` on
//!   2027-03-14 closes at the jump (03:00 EDT): after 01:59:59 EST, the jump
//!   is the first instant whose local time is not before 02:30.
//! - **A start inside a repeated hour** splits the window in two: 01:30–03:00
//!   in `America/New_York` on 2027-11-07 holds 01:30–01:59 EDT, then the
//!   clock returns to 01:00 EST (outside), then 01:30–02:59 EST.
//!   [`next_window`] reports the first piece; a job arriving between the
//!   pieces gets the second.
//! - **Half-hour and 45-minute zones and shifts** (`Asia/Kolkata`,
//!   `Australia/Lord_Howe`, `Pacific/Chatham`) need nothing special.
//!
//! [`next_window`] answers "when does a low-priority job submitted at `at`
//! run?": the window's `opens_at` is the first instant at or after `at` that
//! lies in the window (`at` itself when the job arrives inside it) and
//! `closes_at` is the first instant after that which does not.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use offpeak_core::{tz, window::{next_window, WindowSpec}};
//!
//! let tz = tz::parse("America/New_York")?;
//! let at: DateTime<Utc> = "2027-03-13T17:00:00Z".parse()?;
//! let window = next_window(tz, at, &WindowSpec::default());
//!
//! // 02:00 does not exist that night: the window opens at 03:00 EDT...
//! assert_eq!(window.opens_at, "2027-03-14T07:00:00Z".parse::<DateTime<Utc>>()?);
//! // ...and closes at 06:00 EDT, three hours later.
//! assert_eq!(window.closes_at, "2027-03-14T10:00:00Z".parse::<DateTime<Utc>>()?);
//! assert_eq!(window.duration(), chrono::TimeDelta::hours(3));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveTime, TimeDelta, Timelike, Utc};
use chrono_tz::Tz;

use crate::tz::{next_offset_change, utc_offset};
use serde::{Deserialize, Serialize};

/// Start of the default off-peak window, 02:00 local time.
pub const DEFAULT_WINDOW_START: NaiveTime = hour_minute(2, 0);

/// End (exclusive) of the default off-peak window, 06:00 local time.
pub const DEFAULT_WINDOW_END: NaiveTime = hour_minute(6, 0);

/// Upper bound on the boundaries [`first_instant_with`] walks past.
///
/// A valid window is entered and left again within a few days, which is a
/// handful of steps (each step reaches the next start or end crossing or
/// offset change). The bound only keeps the loop finite at the far end of
/// chrono's representable range, where time cannot advance further.
const MAX_BOUNDARY_STEPS: usize = 64;

const ONE_DAY: TimeDelta = TimeDelta::days(1);

const fn hour_minute(hour: u32, minute: u32) -> NaiveTime {
    match NaiveTime::from_hms_opt(hour, minute, 0) {
        Some(time) => time,
        // Only reachable from a constant above, so this fails the build, not
        // a running program.
        None => panic!("invalid constant time of day"),
    }
}

/// Everything that can be wrong with a window given by a user.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// Start and end are the same time, so the window would be empty.
    #[error("window start and end are the same time, so the window would be empty")]
    EmptyWindow,
    /// A time of day that is not `HH:MM` or `HH:MM:SS` (or is a leap second).
    #[error("invalid time of day '{0}': expected HH:MM or HH:MM:SS")]
    InvalidTime(String),
    /// A window that is not written `START-END`, e.g. `02:00-06:00`.
    #[error("invalid window '{0}': expected START-END, e.g. 02:00-06:00")]
    InvalidWindow(String),
}

/// Local wall-clock window `[start, end)`; may wrap midnight (`start > end`,
/// e.g. 22:00–06:00). `start == end` is invalid.
///
/// [`WindowSpec::new`], [`WindowSpec::parse`], [`FromStr`] and
/// deserialisation all refuse an empty window. The fields are public for
/// reading; a value built by hand with `start == end` contains no time at all
/// (see [`WindowSpec::contains_local`] and [`next_window`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawWindowSpec")]
pub struct WindowSpec {
    /// First local time in the window.
    pub start: NaiveTime,
    /// First local time after the window (exclusive end).
    pub end: NaiveTime,
}

/// The unchecked shape a [`WindowSpec`] is deserialised from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWindowSpec {
    start: NaiveTime,
    end: NaiveTime,
}

impl TryFrom<RawWindowSpec> for WindowSpec {
    type Error = WindowError;

    fn try_from(raw: RawWindowSpec) -> Result<Self, Self::Error> {
        WindowSpec::new(raw.start, raw.end)
    }
}

impl WindowSpec {
    /// A window from `start` (inclusive) to `end` (exclusive), local time.
    ///
    /// `start > end` makes a window that wraps midnight.
    ///
    /// # Errors
    ///
    /// [`WindowError::EmptyWindow`] if `start == end`;
    /// [`WindowError::InvalidTime`] if either is a leap second (23:59:60),
    /// which no timezone's wall clock shows.
    pub fn new(start: NaiveTime, end: NaiveTime) -> Result<Self, WindowError> {
        for time in [start, end] {
            if time.nanosecond() >= 1_000_000_000 {
                return Err(WindowError::InvalidTime(time.to_string()));
            }
        }
        if start == end {
            return Err(WindowError::EmptyWindow);
        }
        Ok(Self { start, end })
    }

    /// Parses a window from two times of day, e.g. `"02:00"` and `"06:00"`.
    ///
    /// Each is `HH:MM` or `HH:MM:SS` (a fraction of a second is accepted too).
    ///
    /// # Errors
    ///
    /// [`WindowError::InvalidTime`] naming the text that is not a time of
    /// day, or [`WindowError::EmptyWindow`] if both are the same time.
    pub fn parse(start: &str, end: &str) -> Result<Self, WindowError> {
        Self::new(parse_time_of_day(start)?, parse_time_of_day(end)?)
    }

    /// Whether the wall-clock time `t` lies in `[start, end)`.
    ///
    /// For a wrapping window (`start > end`) that is `t >= start || t < end`.
    /// A hand-built spec with `start == end` contains nothing.
    #[must_use]
    pub fn contains_local(&self, t: NaiveTime) -> bool {
        match self.start.cmp(&self.end) {
            Ordering::Less => self.start <= t && t < self.end,
            Ordering::Greater => self.start <= t || t < self.end,
            Ordering::Equal => false,
        }
    }

    /// Start and end as the text stored for a tenant's own window
    /// (`HH:MM`, or `HH:MM:SS` when there are seconds); they parse back with
    /// [`WindowSpec::parse`].
    #[must_use]
    pub fn bounds_text(&self) -> (String, String) {
        let text = self.to_string();
        // Display writes START-END, and a time of day has no '-'.
        match text.split_once('-') {
            Some((start, end)) => (start.to_owned(), end.to_owned()),
            None => (text, String::new()),
        }
    }

    /// Whether the window runs past midnight (`start > end`).
    #[must_use]
    pub fn wraps_midnight(&self) -> bool {
        self.start > self.end
    }
}

/// The spec's default off-peak window, 02:00–06:00.
impl Default for WindowSpec {
    fn default() -> Self {
        Self {
            start: DEFAULT_WINDOW_START,
            end: DEFAULT_WINDOW_END,
        }
    }
}

/// Parses `START-END`, e.g. `02:00-06:00` or `22:00-06:00`. An en dash
/// (`02:00–06:00`) and spaces around the dash are accepted.
impl FromStr for WindowSpec {
    type Err = WindowError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (start, end) = text
            .split_once(['-', '–'])
            .ok_or_else(|| WindowError::InvalidWindow(text.to_owned()))?;
        Self::parse(start, end)
    }
}

/// Writes `START-END` as `HH:MM`, adding seconds only when there are any, so
/// that the output parses back with [`FromStr`].
impl fmt::Display for WindowSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_time_of_day(f, self.start)?;
        f.write_str("-")?;
        write_time_of_day(f, self.end)
    }
}

fn parse_time_of_day(text: &str) -> Result<NaiveTime, WindowError> {
    // chrono's parser takes HH:MM with optional :SS and fraction.
    text.trim()
        .parse::<NaiveTime>()
        .map_err(|_| WindowError::InvalidTime(text.to_owned()))
}

fn write_time_of_day(f: &mut fmt::Formatter<'_>, time: NaiveTime) -> fmt::Result {
    if time.second() == 0 && time.nanosecond() == 0 {
        write!(f, "{}", time.format("%H:%M"))
    } else {
        write!(f, "{time}")
    }
}

/// One concrete off-peak window, `[opens_at, closes_at)` in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Window {
    /// First instant in the window (for [`next_window`], at or after the
    /// submission).
    pub opens_at: DateTime<Utc>,
    /// First instant after `opens_at` that is outside the window.
    pub closes_at: DateTime<Utc>,
}

impl Window {
    /// How long the window is open. Not always `end - start`: a
    /// daylight-saving change inside it makes it shorter or longer.
    #[must_use]
    pub fn duration(&self) -> TimeDelta {
        self.closes_at - self.opens_at
    }

    /// Whether `instant` lies in `[opens_at, closes_at)`.
    #[must_use]
    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.opens_at <= instant && instant < self.closes_at
    }
}

/// Whether the local wall-clock time of `instant` in `tz` lies in the window.
///
/// At the instant of a daylight-saving change the new offset already
/// applies: in `America/New_York`, 2027-03-14T07:00Z is 03:00 EDT, never
/// 02:00 EST.
#[must_use]
pub fn in_window(tz: Tz, instant: DateTime<Utc>, spec: &WindowSpec) -> bool {
    spec.contains_local(local_time_of_day(tz, instant))
}

/// The window a low-priority job submitted at `at` runs in.
///
/// `opens_at` is the first instant at or after `at` that is in the window
/// (exactly `at`, to the nanosecond, if `at` is already inside); `closes_at`
/// is the first instant after `opens_at` that is not. A job submitted exactly
/// at the window's end belongs to the next day's window.
///
/// A hand-built spec with `start == end` has no window at all; for it this
/// returns the empty window `[at, at)`.
///
/// # How it is computed
///
/// Whether an instant is in the window can only change where the local time
/// reaches `start` or `end`, or where the zone's UTC offset changes. Between
/// two such points the offset is fixed and the local time runs on like a
/// clock, so the next crossing of `start` or `end` is plain arithmetic. The
/// walk goes from boundary to boundary: a few steps, each at most a day's
/// worth of hourly offset probes, never a scan minute by minute.
#[must_use]
pub fn next_window(tz: Tz, at: DateTime<Utc>, spec: &WindowSpec) -> Window {
    if spec.start == spec.end {
        return Window {
            opens_at: at,
            closes_at: at,
        };
    }
    let opens_at = first_instant_with(tz, spec, at, true);
    let closes_at = first_instant_with(tz, spec, opens_at, false);
    Window {
        opens_at,
        closes_at,
    }
}

/// The local wall-clock time of `instant` in `tz`. Same as
/// `instant.with_timezone(&tz).time()`, but cannot overflow at the ends of
/// chrono's range.
fn local_time_of_day(tz: Tz, instant: DateTime<Utc>) -> NaiveTime {
    instant
        .time()
        .overflowing_add_signed(utc_offset(tz, instant))
        .0
}

/// The first instant at or after `from` whose membership in the window is
/// `wanted`.
fn first_instant_with(
    tz: Tz,
    spec: &WindowSpec,
    from: DateTime<Utc>,
    wanted: bool,
) -> DateTime<Utc> {
    let mut cursor = from;
    for _ in 0..MAX_BOUNDARY_STEPS {
        if in_window(tz, cursor, spec) == wanted {
            return cursor;
        }
        match next_boundary(tz, spec, cursor) {
            Some(next) => cursor = next,
            None => break,
        }
    }
    cursor
}

/// The first instant after `after` where membership in the window may
/// change: the next time the local clock reads `start` or `end`, or the next
/// offset change if that comes first. Membership is the same on every
/// instant of `[after, boundary)`.
///
/// `None` only past the end of chrono's representable range.
fn next_boundary(tz: Tz, spec: &WindowSpec, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let local = local_time_of_day(tz, after);
    let until_edge = time_until(local, spec.start).min(time_until(local, spec.end));
    // Correct only while the offset stays as it is at `after`; an offset
    // change on the way is the earlier boundary.
    let crossing = after.checked_add_signed(until_edge)?;
    Some(next_offset_change(tz, after, crossing).unwrap_or(crossing))
}

/// Time from wall-clock time `from` until the clock next reads `to`, in
/// `(0, 24h]`: if it reads `to` now, the next time is a day away.
fn time_until(from: NaiveTime, to: NaiveTime) -> TimeDelta {
    let delta = to.signed_duration_since(from);
    if delta <= TimeDelta::zero() {
        delta + ONE_DAY
    } else {
        delta
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Offset;
    use proptest::prelude::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("test instants are valid RFC 3339")
            .with_timezone(&Utc)
    }

    fn spec(text: &str) -> WindowSpec {
        text.parse().expect("test windows are valid")
    }

    fn window(opens_at: &str, closes_at: &str) -> Window {
        Window {
            opens_at: utc(opens_at),
            closes_at: utc(closes_at),
        }
    }

    // ----- The cases docs/spec.md names ---------------------------------

    #[test]
    fn new_york_spring_forward_opens_at_three_edt_and_lasts_three_hours() {
        // 2027-03-14: 01:59:59 EST (-05:00) is followed by 03:00 EDT (-04:00)
        // at 07:00Z. Local 02:00 never happens; 03:00 EDT = 07:00Z is the first
        // instant in the window and 06:00 EDT = 10:00Z the first after it.
        let got = next_window(
            chrono_tz::America::New_York,
            utc("2027-03-13T12:00:00-05:00"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(3));
    }

    #[test]
    fn berlin_fall_back_window_covers_both_two_oclock_hours() {
        // 2027-10-31: 02:59:59 CEST (+02:00) is followed by 02:00 CET (+01:00)
        // at 01:00Z. 02:00 CEST = 00:00Z opens; 06:00 CET = 05:00Z closes.
        let tz = chrono_tz::Europe::Berlin;
        let default = WindowSpec::default();
        let got = next_window(tz, utc("2027-10-30T12:00:00+02:00"), &default);
        assert_eq!(got, window("2027-10-31T00:00:00Z", "2027-10-31T05:00:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(5));

        // A job in either run of 02:30 is inside and due at once.
        for at in ["2027-10-31T02:30:00+02:00", "2027-10-31T02:30:00+01:00"] {
            let got = next_window(tz, utc(at), &default);
            assert_eq!(
                got,
                Window {
                    opens_at: utc(at),
                    closes_at: utc("2027-10-31T05:00:00Z")
                }
            );
        }
        // The instant of the change itself is 02:00 CET: still inside.
        assert!(in_window(tz, utc("2027-10-31T01:00:00Z"), &default));
    }

    #[test]
    fn kolkata_half_hour_offset_without_daylight_saving() {
        // Asia/Kolkata is +05:30 all year. 02:00 IST on 2027-06-02 is
        // 2027-06-01T20:30Z; 06:00 IST is 00:30Z.
        let got = next_window(
            chrono_tz::Asia::Kolkata,
            utc("2027-06-01T12:00:00+05:30"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-06-01T20:30:00Z", "2027-06-02T00:30:00Z"));
    }

    #[test]
    fn lord_howe_half_hour_spring_forward_shortens_window_to_three_and_a_half_hours() {
        // tz data: 2027-10-02T15:30Z the offset goes +10:30 -> +11:00, local
        // 02:00 jumps to 02:30 on 2027-10-03. 02:00-02:29 never happens, so
        // the window opens at the jump (15:30Z = 02:30 +11:00) and closes at
        // 06:00 +11:00 = 19:00Z.
        let got = next_window(
            chrono_tz::Australia::Lord_Howe,
            utc("2027-10-02T12:00:00+10:30"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-10-02T15:30:00Z", "2027-10-02T19:00:00Z"));
        assert_eq!(got.duration(), TimeDelta::minutes(210));
    }

    #[test]
    fn lord_howe_half_hour_fall_back_repeats_half_an_hour_of_the_window() {
        // tz data: 2027-04-03T15:00Z the offset goes +11:00 -> +10:30, local
        // 02:00 falls back to 01:30 on 2027-04-04; 01:30-01:59 happens twice.
        // Window 01:00-05:00 opens 01:00 +11:00 = 14:00Z and closes
        // 05:00 +10:30 = 18:30Z: four and a half hours.
        let got = next_window(
            chrono_tz::Australia::Lord_Howe,
            utc("2027-04-03T12:00:00+11:00"),
            &spec("01:00-05:00"),
        );
        assert_eq!(got, window("2027-04-03T14:00:00Z", "2027-04-03T18:30:00Z"));
        assert_eq!(got.duration(), TimeDelta::minutes(270));
    }

    #[test]
    fn lord_howe_fall_back_at_the_window_start_gives_a_single_two_oclock() {
        // The change (15:00Z) comes exactly when the clock would read 02:00
        // +11:00, but at that instant it already reads 01:30 +10:30. So 02:00
        // happens once, at 02:00 +10:30 = 15:30Z; 06:00 +10:30 = 19:30Z.
        let tz = chrono_tz::Australia::Lord_Howe;
        let default = WindowSpec::default();
        assert!(!in_window(tz, utc("2027-04-03T15:00:00Z"), &default));
        let got = next_window(tz, utc("2027-04-03T14:59:59Z"), &default);
        assert_eq!(got, window("2027-04-03T15:30:00Z", "2027-04-03T19:30:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(4));
    }

    #[test]
    fn chatham_45_minute_zone_spring_forward_inside_window() {
        // tz data: 2027-09-25T14:00Z the offset goes +12:45 -> +13:45, local
        // 02:45 jumps to 03:45 on 2027-09-26. Opens 02:00 +12:45 = 13:15Z,
        // closes 06:00 +13:45 = 16:15Z: three hours.
        let got = next_window(
            chrono_tz::Pacific::Chatham,
            utc("2027-09-25T00:00:00Z"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-09-25T13:15:00Z", "2027-09-25T16:15:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(3));
    }

    #[test]
    fn chatham_45_minute_zone_fall_back_inside_window() {
        // tz data: 2027-04-03T14:00Z the offset goes +13:45 -> +12:45, local
        // 03:45 falls back to 02:45 on 2027-04-04. Opens 02:00 +13:45 =
        // 12:15Z, closes 06:00 +12:45 = 17:15Z: five hours.
        let got = next_window(
            chrono_tz::Pacific::Chatham,
            utc("2027-04-03T00:00:00Z"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-04-03T12:15:00Z", "2027-04-03T17:15:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(5));
    }

    // ----- Submission relative to the window ------------------------------------

    #[test]
    fn job_submitted_inside_window_opens_at_once_to_the_nanosecond() {
        let at = utc("2027-06-15T03:17:42.123456789+02:00");
        let got = next_window(chrono_tz::Europe::Berlin, at, &WindowSpec::default());
        assert_eq!(got.opens_at, at);
        assert_eq!(got.closes_at, utc("2027-06-15T06:00:00+02:00"));
    }

    #[test]
    fn job_submitted_exactly_at_window_end_waits_for_next_day() {
        let got = next_window(
            chrono_tz::America::New_York,
            utc("2027-06-15T06:00:00-04:00"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-06-16T06:00:00Z", "2027-06-16T10:00:00Z"));
    }

    #[test]
    fn job_submitted_a_nanosecond_before_window_end_is_inside() {
        let at = utc("2027-06-15T05:59:59.999999999-04:00");
        let got = next_window(chrono_tz::America::New_York, at, &WindowSpec::default());
        assert_eq!(
            got,
            Window {
                opens_at: at,
                closes_at: utc("2027-06-15T10:00:00Z")
            }
        );
        assert_eq!(got.duration(), TimeDelta::nanoseconds(1));
    }

    #[test]
    fn job_submitted_exactly_at_window_start_opens_at_once() {
        let at = utc("2027-06-15T02:00:00-04:00");
        let got = next_window(chrono_tz::America::New_York, at, &WindowSpec::default());
        assert_eq!(
            got,
            Window {
                opens_at: at,
                closes_at: utc("2027-06-15T10:00:00Z")
            }
        );
    }

    // ----- Wrapping windows --------------------------------------------------------

    #[test]
    fn wrapping_window_job_at_23_is_inside_and_closes_next_morning() {
        let at = utc("2027-06-15T23:00:00+02:00");
        let got = next_window(chrono_tz::Europe::Berlin, at, &spec("22:00-06:00"));
        assert_eq!(
            got,
            Window {
                opens_at: at,
                closes_at: utc("2027-06-16T06:00:00+02:00")
            }
        );
    }

    #[test]
    fn wrapping_window_job_at_07_opens_at_22_same_day() {
        let got = next_window(
            chrono_tz::Europe::Berlin,
            utc("2027-06-15T07:00:00+02:00"),
            &spec("22:00-06:00"),
        );
        assert_eq!(
            got,
            window("2027-06-15T22:00:00+02:00", "2027-06-16T06:00:00+02:00")
        );
        assert_eq!(got.duration(), TimeDelta::hours(8));
    }

    #[test]
    fn wrapping_window_job_after_midnight_closes_same_morning() {
        let at = utc("2027-06-16T03:00:00+02:00");
        let got = next_window(chrono_tz::Europe::Berlin, at, &spec("22:00-06:00"));
        assert_eq!(
            got,
            Window {
                opens_at: at,
                closes_at: utc("2027-06-16T06:00:00+02:00")
            }
        );
    }

    #[test]
    fn wrapping_window_spanning_spring_forward_loses_an_hour() {
        // Berlin 2027-03-28: 02:00 CET jumps to 03:00 CEST at 01:00Z.
        // 22:00 CET on the 27th = 21:00Z; 06:00 CEST on the 28th = 04:00Z.
        let got = next_window(
            chrono_tz::Europe::Berlin,
            utc("2027-03-27T12:00:00+01:00"),
            &spec("22:00-06:00"),
        );
        assert_eq!(got, window("2027-03-27T21:00:00Z", "2027-03-28T04:00:00Z"));
        assert_eq!(got.duration(), TimeDelta::hours(7));
    }

    #[test]
    fn window_ending_at_midnight_closes_at_midnight() {
        let got = next_window(
            chrono_tz::UTC,
            utc("2027-06-15T21:00:00Z"),
            &spec("22:00-00:00"),
        );
        assert_eq!(got, window("2027-06-15T22:00:00Z", "2027-06-16T00:00:00Z"));
    }

    #[test]
    fn window_starting_at_midnight_opens_at_midnight() {
        let got = next_window(
            chrono_tz::UTC,
            utc("2027-06-15T21:00:00Z"),
            &spec("00:00-03:00"),
        );
        assert_eq!(got, window("2027-06-16T00:00:00Z", "2027-06-16T03:00:00Z"));
    }

    // ----- Edges falling into gaps and repeated hours ------------------------------

    #[test]
    fn window_end_in_spring_forward_gap_closes_at_the_jump() {
        // New_York 2027-03-14: 01:59:59 EST is followed by 03:00 EDT at 07:00Z.
        // 00:00 EST = 05:00Z opens; the first instant not before 02:30 local
        // is the jump itself, 03:00 EDT = 07:00Z.
        let got = next_window(
            chrono_tz::America::New_York,
            utc("2027-03-13T12:00:00-05:00"),
            &spec("00:00-02:30"),
        );
        assert_eq!(got, window("2027-03-14T05:00:00Z", "2027-03-14T07:00:00Z"));
    }

    #[test]
    fn window_entirely_inside_spring_forward_gap_skips_to_next_night() {
        // 02:00-02:30 never happens in New_York on 2027-03-14, so the job
        // waits for 02:00 EDT on the 15th = 06:00Z.
        let got = next_window(
            chrono_tz::America::New_York,
            utc("2027-03-13T12:00:00-05:00"),
            &spec("02:00-02:30"),
        );
        assert_eq!(got, window("2027-03-15T06:00:00Z", "2027-03-15T06:30:00Z"));
    }

    #[test]
    fn window_starting_in_repeated_hour_is_split_in_two() {
        // New_York 2027-11-07: 01:59:59 EDT is followed by 01:00 EST at 06:00Z.
        // Window 01:30-03:00 holds 01:30-01:59 EDT (05:30Z-06:00Z); at 06:00Z
        // the clock reads 01:00 EST, outside; it is back in at 01:30 EST
        // (06:30Z) until 03:00 EST (08:00Z).
        let tz = chrono_tz::America::New_York;
        let split = spec("01:30-03:00");
        let first = next_window(tz, utc("2027-11-06T12:00:00-04:00"), &split);
        assert_eq!(
            first,
            window("2027-11-07T05:30:00Z", "2027-11-07T06:00:00Z")
        );
        let second = next_window(tz, first.closes_at, &split);
        assert_eq!(
            second,
            window("2027-11-07T06:30:00Z", "2027-11-07T08:00:00Z")
        );
    }

    // ----- Zones without daylight saving ------------------------------------------

    #[test]
    fn utc_zone_window_is_plain_utc_times() {
        let got = next_window(
            chrono_tz::UTC,
            utc("2027-01-01T07:00:00Z"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-01-02T02:00:00Z", "2027-01-02T06:00:00Z"));
    }

    #[test]
    fn zone_without_daylight_saving_keeps_four_hours_through_march() {
        // Asia/Tokyo is +09:00 all year, also on New_York's change date.
        let got = next_window(
            chrono_tz::Asia::Tokyo,
            utc("2027-03-14T00:00:00Z"),
            &WindowSpec::default(),
        );
        assert_eq!(got, window("2027-03-14T17:00:00Z", "2027-03-14T21:00:00Z"));
    }

    // ----- Specs, parsing and serialisation -----------------------------------------

    #[test]
    fn default_spec_is_two_to_six() {
        assert_eq!(
            WindowSpec::default(),
            WindowSpec::parse("02:00", "06:00").unwrap()
        );
        assert_eq!(WindowSpec::default().to_string(), "02:00-06:00");
    }

    #[test]
    fn spec_parses_hours_minutes_and_optional_seconds() {
        let spec = WindowSpec::parse("01:30:15", "02:30").unwrap();
        assert_eq!(spec.start, NaiveTime::from_hms_opt(1, 30, 15).unwrap());
        assert_eq!(spec.end, NaiveTime::from_hms_opt(2, 30, 0).unwrap());
        assert_eq!(spec.to_string(), "01:30:15-02:30");
    }

    #[test]
    fn spec_from_str_and_display_round_trip() {
        for text in [
            "02:00-06:00",
            "22:00-06:00",
            "00:00-03:00",
            "01:30:15-02:30:45.500",
        ] {
            assert_eq!(spec(text).to_string(), text);
        }
        assert_eq!(spec(" 22:00 – 06:00 "), spec("22:00-06:00"));
        assert!(spec("22:00-06:00").wraps_midnight());
        assert!(!spec("02:00-06:00").wraps_midnight());
    }

    #[test]
    fn spec_rejects_bad_times_and_empty_windows() {
        assert_eq!(
            WindowSpec::parse("02:00", "02:00"),
            Err(WindowError::EmptyWindow)
        );
        assert_eq!(
            WindowSpec::parse("25:00", "06:00"),
            Err(WindowError::InvalidTime("25:00".into()))
        );
        assert_eq!(
            WindowSpec::parse("02:00", "6am"),
            Err(WindowError::InvalidTime("6am".into()))
        );
        assert_eq!(
            WindowSpec::parse("23:59:60", "06:00"),
            Err(WindowError::InvalidTime("23:59:60".into()))
        );
        assert_eq!(
            "02:00".parse::<WindowSpec>(),
            Err(WindowError::InvalidWindow("02:00".into()))
        );
        assert_eq!(
            "06:00-06:00".parse::<WindowSpec>(),
            Err(WindowError::EmptyWindow)
        );
    }

    #[test]
    fn spec_contains_local_is_half_open() {
        let default = WindowSpec::default();
        let at = |h, m| NaiveTime::from_hms_opt(h, m, 0).unwrap();
        assert!(!default.contains_local(at(1, 59)));
        assert!(default.contains_local(at(2, 0)));
        assert!(default.contains_local(at(5, 59)));
        assert!(!default.contains_local(at(6, 0)));
        let wrapping = spec("22:00-06:00");
        assert!(wrapping.contains_local(at(23, 0)));
        assert!(wrapping.contains_local(at(0, 0)));
        assert!(!wrapping.contains_local(at(6, 0)));
        assert!(!wrapping.contains_local(at(21, 59)));
    }

    #[test]
    fn hand_built_empty_spec_has_an_empty_window() {
        let empty = WindowSpec {
            start: DEFAULT_WINDOW_START,
            end: DEFAULT_WINDOW_START,
        };
        let at = utc("2027-06-15T03:00:00Z");
        assert!(!in_window(chrono_tz::UTC, at, &empty));
        assert_eq!(
            next_window(chrono_tz::UTC, at, &empty),
            Window {
                opens_at: at,
                closes_at: at
            }
        );
    }

    #[test]
    fn spec_serde_round_trips_and_refuses_empty_windows() {
        let json = serde_json::to_string(&spec("22:00-06:00")).unwrap();
        assert_eq!(json, r#"{"start":"22:00:00","end":"06:00:00"}"#);
        assert_eq!(
            serde_json::from_str::<WindowSpec>(&json).unwrap(),
            spec("22:00-06:00")
        );
        assert_eq!(
            serde_json::from_str::<WindowSpec>(r#"{"start":"02:00","end":"06:00"}"#).unwrap(),
            WindowSpec::default()
        );
        let empty = serde_json::from_str::<WindowSpec>(r#"{"start":"02:00","end":"02:00"}"#);
        assert!(empty.unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn window_serialises_as_rfc3339_utc() {
        let json =
            serde_json::to_value(window("2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"opens_at": "2027-03-14T07:00:00Z", "closes_at": "2027-03-14T10:00:00Z"})
        );
    }

    // ----- Property tests -----------------------------------------------------------

    /// Whole-minute instants, 2020-01-01 to 2040-01-01: in that span every
    /// zone's offsets and changes fall on whole minutes, so a scan minute by
    /// minute sees every boundary.
    const FIRST_MINUTE: i64 = 1_577_836_800 / 60;
    const LAST_MINUTE: i64 = 2_208_988_800 / 60;

    fn minute_instant(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(minute * 60, 0).expect("test minutes are in range")
    }

    fn any_zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    fn whole_minute_spec() -> impl Strategy<Value = WindowSpec> {
        let random = (0..1440u32, 0..1440u32)
            .prop_filter("start != end", |(start, end)| start != end)
            .prop_map(|(start, end)| {
                let time = |m: u32| NaiveTime::from_hms_opt(m / 60, m % 60, 0).unwrap();
                WindowSpec::new(time(start), time(end)).unwrap()
            });
        prop_oneof![
            Just(spec("02:00-06:00")),
            Just(spec("22:00-06:00")),
            Just(spec("01:30-02:30")),
            Just(spec("00:00-03:00")),
            random,
        ]
    }

    /// The definition, applied literally: local time via chrono's own
    /// conversion, one minute at a time.
    fn brute_force_window(tz: Tz, at: DateTime<Utc>, spec: &WindowSpec) -> Window {
        let inside = |t: DateTime<Utc>| spec.contains_local(t.with_timezone(&tz).time());
        let limit = at + TimeDelta::days(5);
        let mut t = at;
        while !inside(t) {
            t += TimeDelta::minutes(1);
            assert!(t < limit, "no window within 5 days of {at}");
        }
        let opens_at = t;
        while inside(t) {
            t += TimeDelta::minutes(1);
            assert!(t < limit, "window from {opens_at} does not close");
        }
        Window {
            opens_at,
            closes_at: t,
        }
    }

    /// A whole-minute instant up to two days before the zone's next offset
    /// change after `minute` (found by an hourly scan of up to a year), or the
    /// minute itself for zones without one. Uniform instants almost never
    /// land near a change; these always do.
    fn near_offset_change(tz: Tz, minute: i64, lead_minutes: i64) -> DateTime<Utc> {
        let from = minute_instant(minute);
        let offset = |t: DateTime<Utc>| t.with_timezone(&tz).offset().fix();
        let mut t = from;
        while t < from + TimeDelta::days(366) {
            t += TimeDelta::hours(1);
            if offset(t) != offset(from) {
                return t - TimeDelta::minutes(lead_minutes);
            }
        }
        from
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]

        #[test]
        fn next_window_matches_minute_by_minute_scan(
            tz in any_zone(),
            minute in FIRST_MINUTE..LAST_MINUTE,
            spec in whole_minute_spec(),
        ) {
            let at = minute_instant(minute);
            prop_assert_eq!(next_window(tz, at, &spec), brute_force_window(tz, at, &spec));
        }

    }

    proptest! {
        // Uniform instants rarely land near an offset change; these all do,
        // so they carry most of the daylight-saving coverage.
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn next_window_matches_minute_by_minute_scan_near_offset_changes(
            tz in any_zone(),
            minute in FIRST_MINUTE..LAST_MINUTE - 366 * 1440,
            lead_minutes in 0..2 * 1440i64,
            spec in whole_minute_spec(),
        ) {
            let at = near_offset_change(tz, minute, lead_minutes);
            prop_assert_eq!(next_window(tz, at, &spec), brute_force_window(tz, at, &spec));
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        /// Any instant from 1900 to 2100 to the nanosecond, any window to the
        /// second, including pre-1970 offsets with odd seconds.
        #[test]
        fn next_window_opens_inside_closes_outside_and_never_early(
            tz in any_zone(),
            seconds in -2_208_988_800i64..4_102_444_800,
            nanos in 0..1_000_000_000u32,
            start in 0..86_400u32,
            end in 0..86_400u32,
        ) {
            prop_assume!(start != end);
            let time = |s: u32| NaiveTime::from_num_seconds_from_midnight_opt(s, 0).unwrap();
            let spec = WindowSpec::new(time(start), time(end)).unwrap();
            let at = DateTime::from_timestamp(seconds, nanos).unwrap();
            let got = next_window(tz, at, &spec);

            prop_assert!(got.opens_at >= at);
            prop_assert!(got.closes_at > got.opens_at);
            prop_assert!(in_window(tz, got.opens_at, &spec));
            prop_assert!(!in_window(tz, got.closes_at, &spec));
            prop_assert!(in_window(tz, got.closes_at - TimeDelta::nanoseconds(1), &spec));
            prop_assert_eq!(got.opens_at == at, in_window(tz, at, &spec));
            if got.opens_at > at {
                prop_assert!(!in_window(tz, got.opens_at - TimeDelta::nanoseconds(1), &spec));
            }
            prop_assert!(got.opens_at - at < TimeDelta::days(3));
            prop_assert!(got.duration() < TimeDelta::days(2));
        }
    }
}
