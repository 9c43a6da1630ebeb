//! Timezones: the one place that parses an IANA name and the one search for
//! a zone's UTC offset changes.
//!
//! The off-peak window ([`crate::window`]), schedules' daylight-saving rules
//! ([`crate::schedule`]) and the tenant's days (quotas and usage by day) all
//! need to know where a zone's offset changes. chrono-tz does not expose its
//! transition table, so [`next_offset_change`] probes the offset and bisects;
//! every caller goes through it, so they agree on every DST case.
//!
//! ```
//! use chrono::{DateTime, NaiveDate, Utc};
//! use offpeak_core::tz;
//!
//! let berlin = tz::parse("Europe/Berlin")?;
//! let after: DateTime<Utc> = "2027-10-30T12:00:00Z".parse()?;
//! let until: DateTime<Utc> = "2027-11-01T00:00:00Z".parse()?;
//! // Clocks go back from 03:00 CEST to 02:00 CET at 01:00 UTC.
//! assert_eq!(tz::next_offset_change(berlin, after, until), Some("2027-10-31T01:00:00Z".parse()?));
//!
//! // Santiago moves its clocks at midnight: 2027-09-05 begins at 01:00 local.
//! let santiago = tz::parse("America/Santiago")?;
//! let day = NaiveDate::from_ymd_opt(2027, 9, 5).unwrap();
//! assert_eq!(tz::day_start(santiago, day), "2027-09-05T04:00:00Z".parse::<DateTime<Utc>>()?);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use chrono::{DateTime, LocalResult, NaiveDate, NaiveTime, Offset, TimeDelta, TimeZone, Utc};
pub use chrono_tz::Tz;

/// How far apart [`next_offset_change`] probes the zone's UTC offset.
///
/// Two offset changes closer together than this that cancel out (A → B → A)
/// would go unseen. In the tz data bundled with chrono-tz 0.10 no two offset
/// changes of one zone are less than a week apart, so an hour leaves a wide
/// margin while keeping a full day's probe to 24 table look-ups.
pub const OFFSET_PROBE_STEP: TimeDelta = TimeDelta::hours(1);

/// A name that is not an IANA timezone known to the bundled tz data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown IANA timezone '{0}'")]
pub struct UnknownTimezone(pub String);

/// Parses an IANA timezone name such as `America/New_York`.
///
/// # Errors
/// [`UnknownTimezone`] for a name the bundled tz data does not know.
pub fn parse(name: &str) -> Result<Tz, UnknownTimezone> {
    name.parse::<Tz>().map_err(|_| UnknownTimezone(name.to_owned()))
}

/// Writes a [`Tz`] as its IANA name, for `#[serde(serialize_with = ...)]`
/// (chrono-tz's own serde support is not enabled).
///
/// # Errors
/// The serializer's.
pub fn serialize_name<S: serde::Serializer>(tz: &Tz, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(tz.name())
}

/// The zone's offset east of UTC at `instant`.
#[must_use]
pub fn utc_offset(tz: Tz, instant: DateTime<Utc>) -> TimeDelta {
    let seconds = tz.offset_from_utc_datetime(&instant.naive_utc()).fix().local_minus_utc();
    TimeDelta::seconds(i64::from(seconds))
}

/// The first whole-second instant in `(after, until]` whose UTC offset in
/// `tz` differs from the offset at `after`, if any.
///
/// The offset is probed every [`OFFSET_PROBE_STEP`] and the first probe that
/// differs is bisected down to the second (tz transitions fall on whole
/// seconds).
#[must_use]
pub fn next_offset_change(tz: Tz, after: DateTime<Utc>, until: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let offset = utc_offset(tz, after);
    let mut previous = after;
    while previous < until {
        let probe = previous.checked_add_signed(OFFSET_PROBE_STEP).map_or(until, |next| next.min(until));
        if utc_offset(tz, probe) != offset {
            return Some(bisect_offset_change(tz, offset, previous, probe));
        }
        previous = probe;
    }
    None
}

/// The first whole second in `(before, changed]` whose offset is not
/// `offset`, given `before` has that offset and `changed` does not.
fn bisect_offset_change(tz: Tz, offset: TimeDelta, before: DateTime<Utc>, changed: DateTime<Utc>) -> DateTime<Utc> {
    // Offsets only change on whole seconds, so flooring either end keeps its
    // offset: no change can lie between a floored second and the instant.
    let mut low = before.timestamp();
    let mut high = changed.timestamp();
    while high - low > 1 {
        let middle = low + (high - low) / 2;
        // `middle` lies between two representable instants, so it is one too;
        // the fallback is never taken.
        let Some(instant) = DateTime::from_timestamp(middle, 0) else {
            break;
        };
        if utc_offset(tz, instant) == offset {
            low = middle;
        } else {
            high = middle;
        }
    }
    // As above, `high` is representable; `changed` would still be a boundary
    // inside the searched range if it were not.
    DateTime::from_timestamp(high, 0).unwrap_or(changed)
}

/// The first instant of local date `date` in `tz`: its midnight, the first
/// of two on a fall-back midnight, or the end of the gap when the clocks
/// jump over midnight (some zones change at 00:00, e.g. America/Santiago).
///
/// This is where a tenant's day starts, for quotas and usage by day.
#[must_use]
pub fn day_start(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let midnight = date.and_time(NaiveTime::MIN);
    match tz.from_local_datetime(&midnight) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(first, _) => first.with_timezone(&Utc),
        LocalResult::None => {
            // Midnight lies in a gap: the day starts where the gap ends, which
            // is an offset change. Offsets are within ±18 h, so that change
            // lies within a day either side of midnight read as UTC; no zone
            // changes its offset twice in two days.
            let as_utc = Utc.from_utc_datetime(&midnight);
            let from = as_utc.checked_sub_signed(TimeDelta::days(1)).unwrap_or(as_utc);
            let until = as_utc.checked_add_signed(TimeDelta::days(1)).unwrap_or(as_utc);
            next_offset_change(tz, from, until).unwrap_or(as_utc)
        }
    }
}

/// The day after `date`; the last representable date stays itself (a range
/// ending there is empty).
#[must_use]
pub fn next_day(date: NaiveDate) -> NaiveDate {
    date.succ_opt().unwrap_or(date)
}

/// The local day of `tz` that `now` falls in, and the first instant of the
/// next one (when that day's quota resets).
#[must_use]
pub fn day_of(tz: Tz, now: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let day = now.with_timezone(&tz).date_naive();
    (day, day_start(tz, next_day(day)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn d(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn parse_accepts_iana_names_and_names_the_bad_one() {
        assert_eq!(parse("Pacific/Chatham").unwrap(), chrono_tz::Pacific::Chatham);
        assert_eq!(parse("UTC").unwrap(), chrono_tz::UTC);
        let err = parse("Mars/Olympus").unwrap_err();
        assert_eq!(err, UnknownTimezone("Mars/Olympus".into()));
        assert_eq!(err.to_string(), "unknown IANA timezone 'Mars/Olympus'");
    }

    #[test]
    fn days_start_at_local_midnight_through_daylight_saving() {
        let ny = parse("America/New_York").unwrap();
        assert_eq!(day_start(ny, d("2027-03-14")), at("2027-03-14T05:00:00Z"));
        assert_eq!(day_start(ny, d("2027-03-15")), at("2027-03-15T04:00:00Z"), "a 23-hour day before");
        // Santiago moves its clocks at midnight: 2027-09-05 00:00 does not exist.
        let scl = parse("America/Santiago").unwrap();
        assert_eq!(day_start(scl, d("2027-09-05")), at("2027-09-05T04:00:00Z"));
        // ...and back at midnight in April: 23:00-23:59 of 04-03 happens twice, midnight once.
        assert_eq!(day_start(scl, d("2027-04-04")), at("2027-04-04T04:00:00Z"));
        let (day, next) = day_of(scl, at("2027-09-04T12:00:00Z"));
        assert_eq!((day, next), (d("2027-09-04"), at("2027-09-05T04:00:00Z")));
    }

    #[test]
    fn offset_changes_are_found_to_the_second() {
        let lord_howe = parse("Australia/Lord_Howe").unwrap();
        // Half-hour shift: 02:00 LHST (+10:30) becomes 02:30 (+11) on 2027-10-03.
        let change = next_offset_change(lord_howe, at("2027-10-01T00:00:00Z"), at("2027-10-05T00:00:00Z")).unwrap();
        assert_eq!(change, at("2027-10-02T15:30:00Z"));
        assert_eq!(utc_offset(lord_howe, change), TimeDelta::minutes(11 * 60));
        assert_eq!(next_offset_change(lord_howe, at("2027-06-01T00:00:00Z"), at("2027-06-08T00:00:00Z")), None);
    }
}
