//! `GET /v1/windows/next?timezone=TZ&at=RFC3339`: when would a low-priority
//! job submitted at `at` run?

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use offpeak_shared::window::{self, parse_timezone};

use super::error::{ApiError, ApiResult};
use super::extract::{AuthTenant, QueryParams};
use super::AppState;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NextParams {
    /// IANA zone; defaults to the tenant's.
    timezone: Option<String>,
    /// RFC 3339 instant; defaults to now.
    at: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NextWindow {
    timezone: String,
    at: DateTime<Utc>,
    window: String,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
    duration_seconds: i64,
    open_now: bool,
}

pub async fn next(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(p): QueryParams<NextParams>,
) -> ApiResult<Json<NextWindow>> {
    let tz_name = p.timezone.unwrap_or(tenant.timezone);
    let tz = parse_timezone(&tz_name).map_err(|e| ApiError::invalid("invalid_timezone", "timezone", e.to_string()))?;
    let at = match p.at {
        Some(s) => DateTime::parse_from_rfc3339(&s)
            .map_err(|e| {
                ApiError::bad_request("invalid_query", format!("'at' must be an RFC 3339 instant like 2027-03-14T12:00:00Z: {e}"))
                    .with_field("at")
            })?
            .with_timezone(&Utc),
        None => state.clock.now(),
    };
    let spec = state.config.window;
    let w = window::next_window(tz, at, &spec);
    Ok(Json(NextWindow {
        timezone: tz_name,
        at,
        window: spec.to_string(),
        opens_at: w.opens_at,
        closes_at: w.closes_at,
        duration_seconds: (w.closes_at - w.opens_at).num_seconds(),
        open_now: w.opens_at == at,
    }))
}
