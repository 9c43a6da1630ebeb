//! `GET /v1/windows/next?timezone=TZ&at=RFC3339`: when would a low-priority
//! job submitted at `at` run?

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use offpeak_core::tz::parse as parse_timezone;
use offpeak_core::window;

use super::error::{ApiError, ApiResult};
use super::extract::{AuthTenant, QueryParams};
use super::AppState;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NextParams {
    /// IANA zone; defaults to the tenant's.
    #[param(example = "Asia/Tokyo")]
    timezone: Option<String>,
    /// RFC 3339 instant; defaults to now.
    #[param(value_type = Option<DateTime<Utc>>)]
    at: Option<String>,
}

/// The window a low-priority job submitted at `at` would run in.
#[derive(Debug, Serialize, ToSchema)]
pub struct NextWindow {
    timezone: String,
    at: DateTime<Utc>,
    window: String,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    duration_seconds: i64,
    open_now: bool,
}

#[utoipa::path(
    get,
    path = "/v1/windows/next",
    tag = "windows",
    operation_id = "next_window",
    summary = "When would a low-priority job submitted at `at` run?",
    security(("api_key" = [])),
    params(NextParams),
    responses(
        (status = 200, description = "The next off-peak window, or the current one if `at` is inside it", body = NextWindow),
        (status = 400, description = "A bad `at` or an unknown query parameter (`invalid_query`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 422, description = "An unknown IANA timezone (`invalid_timezone`), an `at` so late that its window would close after 9999-12-31T23:59:59Z, or so early that it falls before 0000-01-01T00:00:00Z in UTC (`0000-01-01T00:00:00+00:01`), which RFC 3339 cannot write (`out_of_range`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn next(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(p): QueryParams<NextParams>,
) -> ApiResult<Json<NextWindow>> {
    let tz = match &p.timezone {
        Some(name) => parse_timezone(name).map_err(|e| ApiError::invalid("invalid_timezone", "timezone", e.to_string()))?,
        None => tenant.tz,
    };
    let tz_name = tz.name();
    let at = match p.at {
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map_err(|e| {
                ApiError::bad_request("invalid_query", format!("'at' must be an RFC 3339 instant like 2027-03-14T12:00:00Z: {e}"))
                    .with_field("at")
            })?
            .with_timezone(&Utc),
        None => state.clock.now(),
    };
    // The answer echoes `at` in UTC: an offset can move year 0000 back to
    // year -1, which RFC 3339 cannot write.
    if at < first_rfc3339_instant() {
        return Err(ApiError::invalid(
            "out_of_range",
            "at",
            "'at' falls before 0000-01-01T00:00:00Z in UTC, the first instant RFC 3339 can write; give a later 'at'",
        ));
    }
    let spec = tenant.window(&state.config.window);
    let w = window::next_window(tz, at, &spec);
    if w.closes_at > last_rfc3339_instant() {
        return Err(ApiError::invalid(
            "out_of_range",
            "at",
            format!(
                "the window after {} in {tz_name} would close at {}, after 9999-12-31T23:59:59Z, the last instant RFC 3339 can write; give an earlier 'at'",
                at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
                w.closes_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
        ));
    }
    Ok(Json(NextWindow {
        timezone: tz_name.to_owned(),
        at,
        window: spec.to_string(),
        opens_at: w.opens_at,
        closes_at: w.closes_at,
        duration_seconds: (w.closes_at - w.opens_at).num_seconds(),
        open_now: w.opens_at == at,
    }))
}

/// The first instant RFC 3339's four-digit years can write in UTC.
fn first_rfc3339_instant() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(0, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MIN_UTC) // unreachable: the date is valid
}

/// RFC 3339 writes four-digit years: an instant after this one would be
/// serialised as `+10000-01-01T…`, which no RFC 3339 parser reads.
fn last_rfc3339_instant() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 999_999_999))
        .map(|t| t.and_utc())
        .unwrap_or(DateTime::<Utc>::MAX_UTC) // unreachable: the date is valid
}
