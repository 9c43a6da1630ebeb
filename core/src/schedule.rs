//! Recurring schedules: when a cron expression fires in a timezone, and what
//! a firing loop does about firings it missed.
//!
//! A [`CronSchedule`] is a cron expression (the [`cron`] crate's syntax) read
//! in an IANA timezone. It accepts 5 fields (`minute hour day-of-month month
//! day-of-week`, as in a crontab), 6 with seconds first, 7 with a year last,
//! and the shorthands `@hourly`, `@daily`, `@weekly`, `@monthly`, `@yearly`.
//! Day-of-week numbers follow the `cron` crate: `1` is Sunday and `7` is
//! Saturday, so names (`Mon-Fri`) are the unambiguous way to write them.
//!
//! # Daylight saving, as cron(8) does it
//!
//! The expression matches *local wall-clock times*. Mapping them to instants
//! is where daylight saving matters, and the `cron` crate on its own skips
//! local times that do not exist and picks one of two instants for local
//! times that happen twice. So this module asks the crate only for matching
//! local times (computed in UTC, where every local time exists once) and
//! maps each one to instants itself:
//!
//! - **A local time in a spring-forward gap fires when the gap ends.**
//!   02:30 in `America/New_York` on 2027-03-14 does not exist (01:59:59 EST
//!   is followed by 03:00 EDT), so `30 2 * * *` fires at 03:00 EDT =
//!   07:00Z that day, not a day later. Several gap times (`*/15 2 * * *`)
//!   are one firing at the gap's end, and that is also the firing of a
//!   schedule that matches the end itself (03:00 EDT).
//! - **A fixed hour fires once on a fall-back day, at the first
//!   occurrence.** 01:30 in `America/New_York` on 2027-11-07 happens at 01:30
//!   EDT (05:30Z) and again at 01:30 EST (06:30Z); `30 1 * * *` fires at
//!   05:30Z only.
//! - **A wildcard or step hour fires on every matching instant**, both
//!   passes of a repeated hour included: `30 * * * *` fires at 05:30Z and
//!   06:30Z that night.
//!
//! The hour field is *fixed* unless its text contains `*` or `/` (`*`,
//! `*/2`, `1-23/2` repeat; `1`, `1,13`, `0-23` are fixed); `@hourly` repeats,
//! the other shorthands are fixed at midnight. This is the distinction
//! cron(8) draws, applied to the hour field as the product contract states
//! it.
//!
//! ```
//! use chrono::{DateTime, Utc};
//! use offpeak_core::schedule::CronSchedule;
//! use offpeak_core::tz;
//!
//! let nightly = CronSchedule::parse("30 2 * * *", tz::parse("America/New_York")?)?;
//! let after: DateTime<Utc> = "2027-03-13T12:00:00Z".parse()?;
//! let times: Vec<_> = nightly.upcoming(after).take(2).collect();
//! // 02:30 does not exist on the 14th: it fires when the gap ends, 03:00 EDT.
//! assert_eq!(times[0], "2027-03-14T07:00:00Z".parse::<DateTime<Utc>>()?);
//! assert_eq!(times[1], "2027-03-15T06:30:00Z".parse::<DateTime<Utc>>()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Missed firings
//!
//! [`plan_due`] decides what a firing loop does with the firings that fell
//! due since it last looked: firings at most a grace period old are on time
//! and always fire; older ones were missed (the scheduler was down) and
//! follow the schedule's [`CatchUp`] policy.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::job::UnknownValue;
use crate::tz::{next_offset_change, utc_offset};


/// Upper bound on the offset changes and repeated hours one search walks
/// past. The `cron` crate's years end in 2099, so a schedule that still
/// matches is found long before this; the bound only keeps the loop finite.
const MAX_SEARCH_STEPS: usize = 10_000;

/// Most missed firings [`plan_due`] counts one by one; past this, it counts
/// this many and finds the latest ones by looking back from the cut-off.
pub const MISSED_COUNT_LIMIT: usize = 10_000;

/// Most on-time firings one plan holds (a schedule firing every second with
/// a long grace period).
const ON_TIME_LIMIT: usize = 1_000;

const ONE_SECOND: TimeDelta = TimeDelta::seconds(1);

/// What a firing loop does with firings it missed (older than the grace
/// period when it looks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    /// Fire only the most recent missed firing (none if an on-time one
    /// follows it).
    #[default]
    Latest,
    /// Fire every missed firing, the most recent ones up to a cap.
    All,
    /// Fire none of them; carry on with the next one.
    None,
}

impl CatchUp {
    pub const ALL: [CatchUp; 3] = [CatchUp::Latest, CatchUp::All, CatchUp::None];

    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
            CatchUp::None => "none",
        }
    }
}

impl fmt::Display for CatchUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for CatchUp {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CatchUp::ALL.into_iter().find(|c| c.as_str() == s).ok_or_else(|| UnknownValue {
            what: "catch_up",
            value: s.to_owned(),
            expected: "latest, all, none".into(),
        })
    }
}

/// Rows store the policy as text; the store converts it here, once.
impl TryFrom<String> for CatchUp {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A cron expression that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not 5, 6 or 7 fields (or a known `@` shorthand).
    #[error("cron expression '{expression}' has {count} fields; expected 5 (minute hour day-of-month month day-of-week), 6 with seconds first, or 7 with a year last")]
    FieldCount { expression: String, count: usize },
    /// One field does not parse or is out of range.
    #[error("cron expression '{expression}': the {field} field '{value}' is invalid ({reason})")]
    Field { expression: String, field: &'static str, value: String, reason: String },
    /// The crate refused the expression as a whole.
    #[error("cron expression '{expression}' is invalid: {reason}")]
    Invalid { expression: String, reason: String },
}

/// Field names of the 7-field form the `cron` crate reads.
const FIELD_NAMES: [&str; 7] = ["seconds", "minute", "hour", "day-of-month", "month", "day-of-week", "year"];

/// A cron expression in a timezone, with the daylight-saving rules of the
/// module docs.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    schedule: cron::Schedule,
    tz: Tz,
    recurring_hour: bool,
}

impl CronSchedule {
    /// Parses `expression` (5, 6 or 7 fields, or an `@` shorthand) for
    /// timezone `tz`.
    ///
    /// # Errors
    /// [`CronError`] naming the field that is wrong and why.
    pub fn parse(expression: &str, tz: Tz) -> Result<Self, CronError> {
        let expression = expression.split_whitespace().collect::<Vec<_>>().join(" ");
        if expression.starts_with('@') {
            let schedule = cron::Schedule::from_str(&expression)
                .map_err(|e| CronError::Invalid { expression: expression.clone(), reason: e.to_string() })?;
            let recurring_hour = expression == "@hourly";
            return Ok(Self { expression, schedule, tz, recurring_hour });
        }
        let mut fields: Vec<&str> = expression.split(' ').collect();
        match fields.len() {
            5 => fields.insert(0, "0"),
            6 | 7 => {}
            count => return Err(CronError::FieldCount { expression, count }),
        }
        // The crate's own message does not say which field is wrong, so
        // check each alone against an otherwise match-all expression.
        for (i, value) in fields.iter().enumerate() {
            let mut probe = ["0", "*", "*", "*", "*", "*", "*"];
            probe[i] = value;
            if let Err(e) = cron::Schedule::from_str(&probe[..fields.len()].join(" ")) {
                return Err(CronError::Field {
                    expression: expression.clone(),
                    field: FIELD_NAMES[i],
                    value: (*value).to_owned(),
                    reason: first_line(&e.to_string()),
                });
            }
        }
        let schedule = cron::Schedule::from_str(&fields.join(" "))
            .map_err(|e| CronError::Invalid { expression: expression.clone(), reason: first_line(&e.to_string()) })?;
        let recurring_hour = fields[2].contains(['*', '/']);
        Ok(Self { expression, schedule, tz, recurring_hour })
    }

    /// The expression as given, whitespace normalised.
    #[must_use]
    pub fn expression(&self) -> &str {
        &self.expression
    }

    #[must_use]
    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// Whether the hour field is a wildcard or a step, so that a repeated
    /// hour fires twice (see the module docs).
    #[must_use]
    pub fn has_recurring_hour(&self) -> bool {
        self.recurring_hour
    }

    /// The first firing strictly after `t`.
    #[must_use]
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.first_at_or_after(floor_second(t) + ONE_SECOND)
    }

    /// Firings strictly after `t`, in order.
    pub fn upcoming(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        std::iter::successors(self.next_after(t), move |prev| self.next_after(*prev))
    }

    /// Firings in `[from, until)`, at most `limit`; the flag says whether
    /// that is all of them.
    #[must_use]
    pub fn firings_in(&self, from: DateTime<Utc>, until: DateTime<Utc>, limit: usize) -> (Vec<DateTime<Utc>>, bool) {
        let mut out = Vec::new();
        let mut next = self.first_at_or_after(from);
        while let Some(t) = next.filter(|t| *t < until) {
            if out.len() == limit {
                return (out, false);
            }
            out.push(t);
            next = self.next_after(t);
        }
        (out, true)
    }

    /// The first firing at or after `from`.
    ///
    /// # How it is computed
    ///
    /// Between two offset changes the local clock runs like UTC shifted by a
    /// fixed offset, so the crate's next matching local time (asked in UTC)
    /// minus that offset is the next firing, unless an offset change comes
    /// first. Then the walk moves to the change: if the clock jumped forward
    /// over a matching local time, the change itself is the firing (the gap
    /// rule); otherwise the search goes on with the new offset. A fixed-hour
    /// candidate whose local time already happened before a fall-back is
    /// skipped together with the rest of the repeated run.
    #[must_use]
    pub fn first_at_or_after(&self, from: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = ceil_second(from);
        // A gap that ends exactly at `from` is not seen by the walk below,
        // which starts with the offset after it.
        let before = from - ONE_SECOND;
        let (o_before, o_from) = (utc_offset(self.tz, before), utc_offset(self.tz, from));
        if o_before < o_from && self.matches_in(from.naive_utc() + o_before, from.naive_utc() + o_from) {
            return Some(from);
        }
        let mut cursor = from;
        for _ in 0..MAX_SEARCH_STEPS {
            let o = utc_offset(self.tz, cursor);
            let local = self.next_local_at_or_after(cursor.naive_utc() + o)?;
            let candidate = instant(local - o);
            match next_offset_change(self.tz, cursor, candidate) {
                None => {
                    if !self.recurring_hour {
                        if let Some(resume) = self.repeated_run_end(local, candidate) {
                            cursor = resume;
                            continue;
                        }
                    }
                    return Some(candidate);
                }
                Some(change) => {
                    let o_after = utc_offset(self.tz, change);
                    // `local` is the first match at or after the clock's
                    // reading just before the change; if the clock jumps
                    // past it, it lies in the gap.
                    if o_after > o && local < change.naive_utc() + o_after {
                        return Some(change);
                    }
                    cursor = change;
                }
            }
        }
        None
    }

    /// The first matching local time at or after `local`.
    fn next_local_at_or_after(&self, local: NaiveDateTime) -> Option<NaiveDateTime> {
        let before = Utc.from_utc_datetime(&(local - ONE_SECOND));
        self.schedule.after(&before).next().map(|t| t.naive_utc())
    }

    /// Whether a matching local time lies in `[from, until)`.
    fn matches_in(&self, from: NaiveDateTime, until: NaiveDateTime) -> bool {
        self.next_local_at_or_after(from).is_some_and(|l| l < until)
    }

    /// If `candidate` is a later pass of `local` (a time the clock already
    /// showed before falling back), the first instant after the repeated
    /// run, where the search resumes.
    fn repeated_run_end(&self, local: NaiveDateTime, candidate: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let earliest = match self.tz.from_local_datetime(&local) {
            LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
            _ => return None,
        };
        if earliest >= candidate {
            return None;
        }
        // The clock fell back between the two passes; the run of repeated
        // local times ends where the clock again reads what it read just
        // before falling back.
        let o_first = utc_offset(self.tz, earliest);
        let o_now = utc_offset(self.tz, candidate);
        let change = next_offset_change(self.tz, earliest, candidate).unwrap_or(candidate);
        Some((change + (o_first - o_now)).max(candidate + ONE_SECOND))
    }
}

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// `t` rounded down to a whole second.
fn floor_second(t: DateTime<Utc>) -> DateTime<Utc> {
    // Same timestamp, no fraction: always representable.
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// `t` rounded up to a whole second.
fn ceil_second(t: DateTime<Utc>) -> DateTime<Utc> {
    let floor = floor_second(t);
    if floor == t {
        t
    } else {
        floor + ONE_SECOND
    }
}

fn instant(naive_utc: NaiveDateTime) -> DateTime<Utc> {
    Utc.from_utc_datetime(&naive_utc)
}

/// What a firing loop does with one schedule's due firings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DuePlan {
    /// Firings to create, oldest first.
    pub fire: Vec<DateTime<Utc>>,
    /// Missed firings the policy skips (counted up to
    /// [`MISSED_COUNT_LIMIT`]).
    pub skipped: u64,
    /// Missed firings among `fire` (catch-up runs).
    pub caught_up: u64,
    /// The schedule's next firing strictly after `now`.
    pub next_fire_at: Option<DateTime<Utc>>,
}

/// Knobs of [`plan_due`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatchUpLimits {
    /// A firing at most this old when the loop looks is on time.
    pub grace: TimeDelta,
    /// Most missed firings `CatchUp::All` fires; older ones are skipped.
    pub max_catch_up: usize,
}

/// Decides which of the firings in `[next_fire_at, now]` to create.
///
/// Firings no older than `limits.grace` are on time and always fire. Older
/// ones were missed: [`CatchUp::All`] fires the most recent
/// `limits.max_catch_up` of them, [`CatchUp::Latest`] the most recent one
/// unless an on-time firing follows it, [`CatchUp::None`] none.
#[must_use]
pub fn plan_due(
    schedule: &CronSchedule,
    next_fire_at: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: CatchUp,
    limits: CatchUpLimits,
) -> DuePlan {
    let next = schedule.next_after(now);
    if next_fire_at > now {
        return DuePlan { next_fire_at: Some(next_fire_at), ..Default::default() };
    }
    let cutoff = (now - limits.grace).max(next_fire_at);
    let (on_time, _) = schedule.firings_in(cutoff, now + ONE_SECOND, ON_TIME_LIMIT);
    let (mut missed, complete) = schedule.firings_in(next_fire_at, cutoff, MISSED_COUNT_LIMIT);
    let missed_count = missed.len() as u64;
    let keep = match policy {
        CatchUp::All => limits.max_catch_up,
        CatchUp::Latest if on_time.is_empty() => 1,
        CatchUp::Latest | CatchUp::None => 0,
    };
    if !complete && keep > 0 {
        missed = latest_before(schedule, next_fire_at, cutoff, keep);
    }
    let kept: Vec<_> = missed.iter().rev().take(keep).rev().copied().collect();
    let caught_up = kept.len() as u64;
    let mut fire = kept;
    fire.extend(on_time);
    DuePlan { fire, skipped: missed_count.saturating_sub(caught_up), caught_up, next_fire_at: next }
}

/// The last (up to) `n` firings in `[floor, until)`, found by looking back
/// from `until` over growing spans, for when there are too many to walk
/// from `floor`.
fn latest_before(schedule: &CronSchedule, floor: DateTime<Utc>, until: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
    let mut span = TimeDelta::minutes(1);
    loop {
        let from = until.checked_sub_signed(span).map_or(floor, |t| t.max(floor));
        let (found, complete) = schedule.firings_in(from, until, usize::MAX);
        if found.len() >= n || from == floor || !complete {
            return found.iter().rev().take(n).rev().copied().collect();
        }
        span = span * 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn sched(expr: &str, tz: &str) -> CronSchedule {
        CronSchedule::parse(expr, tz.parse().unwrap()).unwrap()
    }

    fn next_n(expr: &str, tz: &str, after: &str, n: usize) -> Vec<DateTime<Utc>> {
        sched(expr, tz).upcoming(utc(after)).take(n).collect()
    }

    fn utcs(list: &[&str]) -> Vec<DateTime<Utc>> {
        list.iter().map(|s| utc(s)).collect()
    }

    // ----- Parsing ------------------------------------------------------------------

    #[test]
    fn five_fields_mean_minute_level_and_six_add_seconds() {
        assert_eq!(next_n("*/20 * * * *", "UTC", "2027-01-01T00:00:00Z", 2), utcs(&["2027-01-01T00:20:00Z", "2027-01-01T00:40:00Z"]));
        assert_eq!(next_n("*/20 * * * * *", "UTC", "2027-01-01T00:00:00Z", 2), utcs(&["2027-01-01T00:00:20Z", "2027-01-01T00:00:40Z"]));
        assert_eq!(next_n("0 0 12 1 1 * 2030", "UTC", "2027-01-01T00:00:00Z", 2), utcs(&["2030-01-01T12:00:00Z"]));
        assert_eq!(next_n("@daily", "UTC", "2027-01-01T00:00:00Z", 1), utcs(&["2027-01-02T00:00:00Z"]));
        assert_eq!(next_n("  0   3 * * Mon-Fri ", "UTC", "2027-01-01T00:00:00Z", 1), utcs(&["2027-01-01T03:00:00Z"]));
        assert_eq!(sched("  0   3 * * Mon-Fri ", "UTC").expression(), "0 3 * * Mon-Fri");
    }

    #[test]
    fn invalid_expressions_name_the_field_and_the_problem() {
        let tz = chrono_tz::UTC;
        let err = CronSchedule::parse("61 * * * *", tz).unwrap_err();
        assert!(matches!(&err, CronError::Field { field: "minute", value, .. } if value == "61"), "{err}");
        assert!(err.to_string().contains("minute field '61'"), "{err}");
        let err = CronSchedule::parse("* 24 * * *", tz).unwrap_err();
        assert!(matches!(err, CronError::Field { field: "hour", .. }), "{err}");
        let err = CronSchedule::parse("* * * * Funday", tz).unwrap_err();
        assert!(matches!(err, CronError::Field { field: "day-of-week", .. }), "{err}");
        let err = CronSchedule::parse("* * *", tz).unwrap_err();
        assert_eq!(err, CronError::FieldCount { expression: "* * *".into(), count: 3 });
        assert!(CronSchedule::parse("", tz).is_err());
        assert!(CronSchedule::parse("@fortnightly", tz).is_err());
        assert!(CronSchedule::parse("* * * * * * * *", tz).is_err());
    }

    #[test]
    fn an_expression_that_never_matches_has_no_next_firing() {
        assert_eq!(sched("0 0 30 2 *", "UTC").next_after(utc("2027-01-01T00:00:00Z")), None);
        assert_eq!(sched("0 0 0 1 1 * 2020", "UTC").next_after(utc("2027-01-01T00:00:00Z")), None);
    }

    #[test]
    fn hour_kind_follows_the_hour_field_text() {
        for (expr, recurring) in [
            ("30 * * * *", true),
            ("0 */2 * * *", true),
            ("0 1-23/2 * * *", true),
            ("30 1 * * *", false),
            ("0 1,13 * * *", false),
            ("0 0-23 * * *", false),
            ("0 30 1 * * *", false),
            ("0 30 * * * *", true),
            ("@hourly", true),
            ("@daily", false),
        ] {
            assert_eq!(sched(expr, "UTC").has_recurring_hour(), recurring, "{expr}");
        }
    }

    #[test]
    fn catch_up_parses_and_prints() {
        for c in CatchUp::ALL {
            assert_eq!(c.as_str().parse::<CatchUp>().unwrap(), c);
        }
        assert!("sometimes".parse::<CatchUp>().is_err());
        assert_eq!(CatchUp::default(), CatchUp::Latest);
    }

    // ----- Daylight saving: the named cases -----------------------------------------

    #[test]
    fn spring_forward_gap_fires_when_the_gap_ends_not_a_day_later() {
        // New York 2027-03-14: 01:59:59 EST is followed by 03:00 EDT (07:00Z).
        assert_eq!(
            next_n("30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 3),
            utcs(&["2027-03-14T07:00:00Z", "2027-03-15T06:30:00Z", "2027-03-16T06:30:00Z"])
        );
    }

    #[test]
    fn spring_forward_gap_fires_at_the_gap_end_with_seconds_too() {
        assert_eq!(next_n("15 30 2 * * *", "America/New_York", "2027-03-13T12:00:00Z", 1), utcs(&["2027-03-14T07:00:00Z"]));
    }

    #[test]
    fn several_gap_times_are_one_firing_shared_with_the_gap_end() {
        assert_eq!(
            next_n("*/15 * * * *", "America/New_York", "2027-03-14T06:40:00Z", 3),
            utcs(&["2027-03-14T06:45:00Z", "2027-03-14T07:00:00Z", "2027-03-14T07:15:00Z"])
        );
        assert_eq!(
            next_n("*/15 2 * * *", "America/New_York", "2027-03-14T00:00:00Z", 2),
            utcs(&["2027-03-14T07:00:00Z", "2027-03-15T06:00:00Z"])
        );
    }

    #[test]
    fn wildcard_hour_through_a_gap_fires_at_the_gap_end_and_on_after_it() {
        assert_eq!(
            next_n("30 * * * *", "America/New_York", "2027-03-14T06:00:00Z", 3),
            utcs(&["2027-03-14T06:30:00Z", "2027-03-14T07:00:00Z", "2027-03-14T07:30:00Z"])
        );
        // 02:00 is in the gap and 03:00 is its end: one firing.
        assert_eq!(
            next_n("0 * * * *", "America/New_York", "2027-03-14T05:30:00Z", 3),
            utcs(&["2027-03-14T06:00:00Z", "2027-03-14T07:00:00Z", "2027-03-14T08:00:00Z"])
        );
    }

    #[test]
    fn fixed_hour_fires_once_on_a_fall_back_day_at_the_first_occurrence() {
        // New York 2027-11-07: 01:59:59 EDT (05:59:59Z) is followed by 01:00 EST.
        assert_eq!(
            next_n("30 1 * * *", "America/New_York", "2027-11-06T12:00:00Z", 2),
            utcs(&["2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z"])
        );
        // Every minute of a fixed hour: the first pass only.
        let fired: Vec<_> = next_n("* 1 * * *", "America/New_York", "2027-11-07T04:00:00Z", 61);
        assert_eq!(fired[0], utc("2027-11-07T05:00:00Z"));
        assert_eq!(fired[59], utc("2027-11-07T05:59:00Z"));
        assert_eq!(fired[60], utc("2027-11-08T06:00:00Z"));
    }

    #[test]
    fn wildcard_hour_fires_in_both_passes_of_the_repeated_hour() {
        assert_eq!(
            next_n("30 * * * *", "America/New_York", "2027-11-07T05:00:00Z", 3),
            utcs(&["2027-11-07T05:30:00Z", "2027-11-07T06:30:00Z", "2027-11-07T07:30:00Z"])
        );
    }

    #[test]
    fn step_hour_fires_in_both_passes_of_the_repeated_hour() {
        // Berlin 2027-10-31: 02:59:59 CEST (00:59:59Z) is followed by 02:00 CET.
        assert_eq!(
            next_n("0 */2 * * *", "Europe/Berlin", "2027-10-30T21:30:00Z", 4),
            utcs(&["2027-10-30T22:00:00Z", "2027-10-31T00:00:00Z", "2027-10-31T01:00:00Z", "2027-10-31T03:00:00Z"])
        );
        // The same hours as a fixed list: once.
        assert_eq!(
            next_n("0 0,2,4 * * *", "Europe/Berlin", "2027-10-30T21:30:00Z", 3),
            utcs(&["2027-10-30T22:00:00Z", "2027-10-31T00:00:00Z", "2027-10-31T03:00:00Z"])
        );
    }

    #[test]
    fn half_hour_shift_gap_fires_at_its_end() {
        // Lord Howe 2027-10-03: 02:00 +10:30 (15:30Z on the 2nd) becomes 02:30 +11.
        assert_eq!(
            next_n("15 2 * * *", "Australia/Lord_Howe", "2027-10-02T12:00:00Z", 2),
            utcs(&["2027-10-02T15:30:00Z", "2027-10-03T15:15:00Z"])
        );
    }

    #[test]
    fn a_search_starting_exactly_at_a_gap_end_sees_the_gap() {
        let s = sched("30 2 * * *", "America/New_York");
        assert_eq!(s.first_at_or_after(utc("2027-03-14T07:00:00Z")), Some(utc("2027-03-14T07:00:00Z")));
        assert_eq!(s.next_after(utc("2027-03-14T06:59:59.5Z")), Some(utc("2027-03-14T07:00:00Z")));
        assert_eq!(s.next_after(utc("2027-03-14T07:00:00Z")), Some(utc("2027-03-15T06:30:00Z")));
    }

    // ----- Missed firings -------------------------------------------------------------

    const LIMITS: CatchUpLimits = CatchUpLimits { grace: TimeDelta::seconds(30), max_catch_up: 100 };

    #[test]
    fn five_missed_minutes_follow_the_catch_up_policy() {
        let s = sched("* * * * *", "UTC");
        let next = utc("2027-01-01T10:01:00Z");
        let now = utc("2027-01-01T10:05:40Z");
        let latest = plan_due(&s, next, now, CatchUp::Latest, LIMITS);
        assert_eq!(latest.fire, utcs(&["2027-01-01T10:05:00Z"]));
        assert_eq!((latest.skipped, latest.caught_up), (4, 1));
        assert_eq!(latest.next_fire_at, Some(utc("2027-01-01T10:06:00Z")));
        let all = plan_due(&s, next, now, CatchUp::All, LIMITS);
        assert_eq!(all.fire.len(), 5);
        assert_eq!(all.skipped, 0);
        let none = plan_due(&s, next, now, CatchUp::None, LIMITS);
        assert!(none.fire.is_empty());
        assert_eq!(none.skipped, 5);
        assert_eq!(none.next_fire_at, Some(utc("2027-01-01T10:06:00Z")));
    }

    #[test]
    fn an_on_time_firing_fires_whatever_the_policy() {
        let s = sched("* * * * *", "UTC");
        for policy in CatchUp::ALL {
            let plan = plan_due(&s, utc("2027-01-01T10:01:00Z"), utc("2027-01-01T10:01:05Z"), policy, LIMITS);
            assert_eq!(plan.fire, utcs(&["2027-01-01T10:01:00Z"]), "{policy}");
            assert_eq!(plan.skipped, 0);
        }
        let plan = plan_due(&s, utc("2027-01-01T10:02:00Z"), utc("2027-01-01T10:01:05Z"), CatchUp::All, LIMITS);
        assert!(plan.fire.is_empty());
        assert_eq!(plan.next_fire_at, Some(utc("2027-01-01T10:02:00Z")));
    }

    #[test]
    fn latest_skips_missed_firings_when_an_on_time_one_follows() {
        let s = sched("*/10 * * * * *", "UTC");
        let plan = plan_due(&s, utc("2027-01-01T10:00:00Z"), utc("2027-01-01T10:02:05Z"), CatchUp::Latest, LIMITS);
        // 10:01:40, 10:01:50, 10:02:00 are within 30 s; the 10 before were missed.
        assert_eq!(plan.fire, utcs(&["2027-01-01T10:01:40Z", "2027-01-01T10:01:50Z", "2027-01-01T10:02:00Z"]));
        assert_eq!(plan.skipped, 10);
    }

    #[test]
    fn all_is_capped_to_the_most_recent_missed_firings() {
        let s = sched("* * * * *", "UTC");
        let limits = CatchUpLimits { max_catch_up: 3, ..LIMITS };
        let plan = plan_due(&s, utc("2027-01-01T10:00:00Z"), utc("2027-01-01T11:00:40Z"), CatchUp::All, limits);
        assert_eq!(plan.fire, utcs(&["2027-01-01T10:58:00Z", "2027-01-01T10:59:00Z", "2027-01-01T11:00:00Z"]));
        assert_eq!(plan.skipped, 58);
    }

    #[test]
    fn a_very_long_outage_of_a_per_second_schedule_stays_cheap() {
        let s = sched("* * * * * *", "UTC");
        let plan = plan_due(&s, utc("2027-01-01T00:00:00Z"), utc("2027-01-02T00:00:00Z"), CatchUp::Latest, LIMITS);
        // On time: the last 31 seconds; the missed ones are counted up to the limit.
        assert_eq!(plan.fire.len(), 31);
        assert_eq!(plan.skipped, MISSED_COUNT_LIMIT as u64);
        let plan = plan_due(&s, utc("2027-01-01T00:00:00Z"), utc("2027-01-02T00:00:00Z"), CatchUp::All, CatchUpLimits { max_catch_up: 2, ..LIMITS });
        assert_eq!(plan.fire[..2], utcs(&["2027-01-01T23:59:28Z", "2027-01-01T23:59:29Z"])[..]);
    }

    // ----- Property test against a minute-by-minute reference -----------------------

    /// The rules of the module docs applied literally, one whole-minute
    /// instant at a time, with chrono's own local-time conversion: `x` fires
    /// if its local time matches (for a fixed hour: and `x` is that local
    /// time's earliest instant), or if the clock jumped forward at `x` over a
    /// matching local minute.
    fn reference(expr: &str, tz: Tz, from: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let s = CronSchedule::parse(expr, tz).unwrap();
        let matches = |l: NaiveDateTime| s.schedule.includes(Utc.from_utc_datetime(&l));
        let local = |x: DateTime<Utc>| x.with_timezone(&tz).naive_local();
        let minute = TimeDelta::minutes(1);
        let mut out = Vec::new();
        let mut x = from;
        while x < until {
            let l = local(x);
            let earliest = tz.from_local_datetime(&l).earliest().map(|e| e.with_timezone(&Utc));
            let mut fire = matches(l) && (s.has_recurring_hour() || earliest == Some(x));
            let mut skipped = local(x - minute) + minute;
            while skipped < l {
                fire |= matches(skipped);
                skipped += minute;
            }
            if fire {
                out.push(x);
            }
            x += minute;
        }
        out
    }

    const FIRST_MINUTE: i64 = 1_577_836_800 / 60; // 2020-01-01
    const LAST_MINUTE: i64 = 2_208_988_800 / 60; // 2040-01-01

    fn minute_instant(minute: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(minute * 60, 0).unwrap()
    }

    /// A whole-minute instant `lead` minutes before the zone's next offset
    /// change after `minute` (or `minute` itself for zones without one).
    fn near_offset_change(tz: Tz, minute: i64, lead: i64) -> DateTime<Utc> {
        let from = minute_instant(minute);
        match next_offset_change(tz, from, from + TimeDelta::days(366)) {
            Some(change) => change - TimeDelta::minutes(lead),
            None => from,
        }
    }

    fn any_zone() -> impl Strategy<Value = Tz> {
        prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
    }

    fn minute_field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (1..31u32).prop_map(|k| format!("*/{k}")),
            (0..60u32).prop_map(|m| m.to_string()),
            (0..60u32, 0..60u32).prop_map(|(a, b)| format!("{},{}", a.min(b), a.max(b))),
            (0..60u32, 0..60u32, 1..20u32).prop_map(|(a, b, k)| format!("{}-{}/{k}", a.min(b), a.max(b))),
        ]
    }

    fn hour_field() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("*".to_owned()),
            (1..7u32).prop_map(|k| format!("*/{k}")),
            (0..24u32).prop_map(|h| h.to_string()),
            (0..24u32, 0..24u32).prop_map(|(a, b)| format!("{},{}", a.min(b), a.max(b))),
            (0..24u32, 0..24u32).prop_map(|(a, b)| format!("{}-{}", a.min(b), a.max(b))),
            (0..24u32, 0..24u32, 1..5u32).prop_map(|(a, b, k)| format!("{}-{}/{k}", a.min(b), a.max(b))),
        ]
    }

    fn expression() -> impl Strategy<Value = String> {
        let dom = prop_oneof![4 => Just("*".to_owned()), 1 => (1..29u32).prop_map(|d| d.to_string())];
        let dow = prop_oneof![4 => Just("*".to_owned()), 1 => Just("Mon-Fri".to_owned()), 1 => Just("Sun".to_owned())];
        (minute_field(), hour_field(), dom, dow).prop_map(|(m, h, d, w)| format!("{m} {h} {d} * {w}"))
    }

    fn check_against_reference(expr: &str, tz: Tz, from: DateTime<Utc>) -> Result<(), TestCaseError> {
        let until = from + TimeDelta::days(2);
        let s = CronSchedule::parse(expr, tz).unwrap();
        let got: Vec<_> = s.upcoming(from - ONE_SECOND).take_while(|t| *t < until).collect();
        prop_assert_eq!(got, reference(expr, tz, from, until), "{} in {}", expr, tz);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn firings_match_a_minute_by_minute_scan_near_offset_changes(
            tz in any_zone(),
            minute in FIRST_MINUTE..LAST_MINUTE - 366 * 1440,
            lead in 0..1440i64,
            expr in expression(),
        ) {
            check_against_reference(&expr, tz, near_offset_change(tz, minute, lead))?;
        }

        #[test]
        fn firings_match_a_minute_by_minute_scan_anywhere(
            tz in any_zone(),
            minute in FIRST_MINUTE..LAST_MINUTE,
            expr in expression(),
        ) {
            check_against_reference(&expr, tz, minute_instant(minute))?;
        }
    }
}
