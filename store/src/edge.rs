//! The edge where rows become core types, once.
//!
//! PostgreSQL keeps states, priorities, catch-up policies, timezones and
//! windows as text (with `CHECK` constraints where a fixed set applies).
//! Every row type of this crate converts them here, when the row is read:
//! the rest of offpeak holds a `JobState`, a `Priority` or a `Tz`, never a
//! string to parse again. A stored value that does not parse is a decode
//! error of that row (`sqlx::Error::ColumnDecode` / `Decode`), never a
//! silent default.
//!
//! Enums of `offpeak-core` implement `TryFrom<String>`, so a `FromRow` field
//! reads `#[sqlx(try_from = "String")]`; a timezone reads
//! `#[sqlx(try_from = "TzName")]`.

/// The terminal job states ([`offpeak_core::job::JobState::is_terminal`])
/// as an SQL list, for `state IN {TERMINAL_STATES}` in a statement's text.
pub(crate) const TERMINAL_STATES: &str = "('succeeded', 'failed', 'dead', 'cancelled')";

/// The SQL condition "this job has not ended" over a `jobs` row named
/// `$alias`, for statements that need a job still open: a job a worker
/// ended keeps its row as the release left it and has an outcome row (`job_outcomes`,
/// BENCHMARKS.md step 33). A string literal, so a statement written with
/// `concat!` stays a `&'static str`.
macro_rules! not_ended {
    ($alias:literal) => {
        concat!("NOT EXISTS (SELECT 1 FROM job_outcomes x WHERE x.job_id = ", $alias, ".id)")
    };
}
pub(crate) use not_ended;

/// The SQL condition "this job is live" over a `jobs` row named `$alias`:
/// not ended in its own row (a live row is `held` or `queued`, migration
/// `20261212000000`) nor by an outcome. Where it stands (waiting, in a
/// batch, a follower) is said by the statement's join: `held_jobs`,
/// `batch_members`, `cache_source`.
macro_rules! live {
    ($alias:literal) => {
        concat!($alias, ".state IN ('held', 'queued') AND ", crate::edge::not_ended!($alias))
    };
}
pub(crate) use live;

/// The columns of a `held_jobs` row, named as in `jobs`: a statement that
/// puts jobs back to waiting inserts them `SELECT`ed from the jobs' rows.
pub(crate) const HELD_COLUMNS: &str = "id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic";

/// A column list (`"a, b"`) qualified by a table alias (`"t.a, t.b"`), for a
/// `RETURNING` or `SELECT` whose FROM list has more than one table.
pub(crate) fn qualified(columns: &str, alias: &str) -> String {
    columns.split(", ").map(|c| format!("{alias}.{c}")).collect::<Vec<_>>().join(", ")
}

use chrono_tz::Tz;
use offpeak_core::tenant::Tenant;
use offpeak_core::tz::{self, UnknownTimezone};
use offpeak_core::window::WindowSpec;
use sqlx::postgres::PgRow;
use sqlx::Row;

/// A timezone column as read, before it is parsed into a [`Tz`].
#[derive(Debug, sqlx::Type)]
#[sqlx(transparent)]
pub struct TzName(String);

impl TryFrom<TzName> for Tz {
    type Error = UnknownTimezone;
    fn try_from(name: TzName) -> Result<Self, Self::Error> {
        tz::parse(&name.0)
    }
}

/// A value that did not parse, as the decode error of `column`.
fn bad(column: &str, e: impl std::error::Error + Send + Sync + 'static) -> sqlx::Error {
    sqlx::Error::ColumnDecode { index: column.to_owned(), source: Box::new(e) }
}

/// The timezone in `column`.
///
/// # Errors
/// A missing column, or a name that is not an IANA timezone.
pub fn tz_column(row: &PgRow, column: &str) -> Result<Tz, sqlx::Error> {
    let name: String = row.try_get(column)?;
    tz::parse(&name).map_err(|e| bad(column, e))
}

/// A tenant's own window from its two columns (`HH:MM` text, both or
/// neither set, as a `CHECK` constraint keeps them).
///
/// # Errors
/// Missing columns, or text that is not a window.
pub fn window_columns(row: &PgRow, start: &str, end: &str) -> Result<Option<WindowSpec>, sqlx::Error> {
    let s: Option<String> = row.try_get(start)?;
    let e: Option<String> = row.try_get(end)?;
    match (s, e) {
        (Some(s), Some(e)) => WindowSpec::parse(&s, &e).map(Some).map_err(|err| bad(start, err)),
        _ => Ok(None),
    }
}

/// A [`Tenant`] from a row of `TENANT_COLUMNS` (see `tenants`).
///
/// # Errors
/// Missing columns, or a stored timezone or window that does not parse.
pub fn tenant(row: PgRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        tz: tz_column(&row, "timezone")?,
        daily_credits: row.try_get("daily_credits")?,
        user_daily_credits: row.try_get("user_daily_credits")?,
        window: window_columns(&row, "window_start", "window_end")?,
        created_at: row.try_get("created_at")?,
        cache: {
            let mode: String = row.try_get("cache_mode")?;
            mode.parse().map_err(|e: String| sqlx::Error::ColumnDecode { index: "cache_mode".into(), source: e.into() })?
        },
    })
}

#[cfg(test)]
mod tests {
    use offpeak_core::job::JobState;

    #[test]
    fn the_sql_list_of_terminal_states_is_the_domains() {
        let states: Vec<String> = JobState::ALL.iter().filter(|s| s.is_terminal()).map(|s| format!("'{}'", s.as_str())).collect();
        assert_eq!(super::TERMINAL_STATES, format!("({})", states.join(", ")));
    }
}
