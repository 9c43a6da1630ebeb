//! `GET /v1/usage` (requests and credits per model, day, user or provider, from the
//! usage ledger) and `GET /v1/tenant` (the tenant's settings and today's
//! usage).
//!
//! Days are the tenant's: a `YYYY-MM-DD` bound, the default range (today)
//! and `group_by=day` all use the local midnights of the tenant's timezone,
//! daylight saving included (a day may last 23 or 25 hours).

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use offpeak_store::usage::{self as db, DayRange, KeyColumn, UsageSums};
use offpeak_core::tz::{day_start, next_day};

use super::error::{ApiError, ApiResult};
use super::extract::{AuthTenant, QueryParams};
use super::AppState;

/// Most days one `group_by=day` answer covers.
pub const MAX_DAYS: usize = 366;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// First instant counted: RFC 3339, or `YYYY-MM-DD` for that day's local midnight in the tenant's
    /// timezone. Defaults to the start of today (tenant's timezone).
    #[param(value_type = Option<String>, example = "2027-06-01")]
    start: Option<String>,
    /// End of the range: an RFC 3339 instant (excluded), or `YYYY-MM-DD` for the whole of that day (included).
    /// Defaults to the end of today (tenant's timezone).
    #[param(value_type = Option<String>, example = "2027-06-30")]
    end: Option<String>,
    /// `model` (the default), `day` (in the tenant's timezone), `user` (`user_id`; jobs without one are
    /// under the key `""`) or `provider` (the configuration's name of the provider each job was sent to;
    /// jobs answered by offpeak's caches, which called no provider, are under the key `cache`).
    #[param(value_type = Option<GroupBy>, example = "model")]
    group_by: Option<String>,
}

/// Requests and credits of one group.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct UsageGroup {
    /// Jobs that succeeded (each one provider item, or a cache hit).
    pub requests: i64,
    /// Credits charged.
    pub credits: i64,
    /// What the same jobs cost at list price.
    pub list_credits: i64,
    /// Credits the off-peak multiplier saved (list price minus charged, cache hits aside).
    pub saved_offpeak: i64,
    /// Credits exact cache hits (and coalesced jobs) saved.
    pub saved_cache: i64,
    /// Credits semantic cache hits (rewordings of a prompt that succeeded) saved.
    pub saved_semantic: i64,
    /// Previews (jobs submitted with `preview`) among the jobs counted.
    pub previews: i64,
    /// Upgrades (jobs made by `POST /v1/jobs/{id}/upgrade`) among the jobs counted.
    pub upgrades: i64,
    /// What the preview-first pattern saved at list prices against rendering every preview request at full
    /// quality: for each preview, its upgrade target's list price minus its own, less the list price of every
    /// upgrade of a preview. Negative when more was upgraded than the previews saved. Apart from `saved_offpeak`
    /// and `saved_cache`, which are counted on the jobs that ran.
    pub saved_preview: i64,
}

impl From<&UsageSums> for UsageGroup {
    fn from(s: &UsageSums) -> Self {
        Self {
            requests: s.requests,
            credits: s.credits,
            list_credits: s.list_credits,
            saved_offpeak: s.saved_offpeak,
            saved_cache: s.saved_cache,
            saved_semantic: s.saved_semantic,
            previews: s.previews,
            upgrades: s.upgrades,
            saved_preview: s.saved_preview,
        }
    }
}

/// The tenant's usage in `[start, end)`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageResponse {
    /// `model`, `day`, `user` or `provider`.
    pub group_by: String,
    /// The tenant's timezone, which days are counted in.
    pub timezone: String,
    pub start: DateTime<Utc>,
    /// Excluded.
    pub end: DateTime<Utc>,
    /// One entry per model, day (`YYYY-MM-DD`), user or provider (`cache` for cache hits) with usage in the
    /// range, in key order, e.g.
    /// `{"flux-schnell": {"requests": 50000, "credits": 50000, ...}}`.
    pub groups: BTreeMap<String, UsageGroup>,
    /// All groups together.
    pub totals: UsageGroup,
}

/// What usage is grouped by: `model` (the default), `day`, `user` or `provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ToSchema)]
#[schema(as = UsageGroupBy, rename_all = "lowercase")]
pub enum GroupBy {
    Model,
    Day,
    User,
    Provider,
}

impl GroupBy {
    fn as_str(self) -> &'static str {
        match self {
            GroupBy::Model => "model",
            GroupBy::Day => "day",
            GroupBy::User => "user",
            GroupBy::Provider => "provider",
        }
    }
}

/// `GET /v1/usage?start=&end=&group_by=model|day|user|provider`.
#[utoipa::path(
    get,
    path = "/v1/usage",
    tag = "usage",
    operation_id = "get_usage",
    summary = "Requests, credits and savings per model, day, user or provider, from the usage ledger",
    security(("api_key" = [])),
    params(UsageParams),
    responses(
        (status = 200, description = "The tenant's usage in the range", body = UsageResponse),
        (status = 400, description = "A bad `start`, `end` or `group_by`, a bound outside the years 0000 to 9999 in UTC (a date is the tenant's local midnight), an empty range, more than 366 days by day, or an unknown query parameter (`invalid_query`); `field` names it when known", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn usage(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    QueryParams(p): QueryParams<UsageParams>,
) -> ApiResult<Json<UsageResponse>> {
    let tz = tenant.tz;
    let group_by = match p.group_by.as_deref() {
        None | Some("model") => GroupBy::Model,
        Some("day") => GroupBy::Day,
        Some("user") => GroupBy::User,
        Some("provider") => GroupBy::Provider,
        Some(_) => {
            return Err(ApiError::bad_request("invalid_query", "group_by must be one of: model, day, user, provider").with_field("group_by"))
        }
    };
    let today = state.clock.now().with_timezone(&tz).date_naive();
    let start = match p.start.as_deref() {
        Some(s) => writable(parse_bound(s, tz, "start", false)?, "start")?,
        None => day_start(tz, today),
    };
    let end = match p.end.as_deref() {
        Some(s) => writable(parse_bound(s, tz, "end", true)?, "end")?,
        None => day_start(tz, next_day(today)),
    };
    if end <= start {
        return Err(ApiError::bad_request("invalid_query", format!("end ({end}) must be after start ({start})")).with_field("end"));
    }
    let groups: Vec<(String, UsageSums)> = match group_by {
        GroupBy::Model | GroupBy::User | GroupBy::Provider => {
            let (column, none) = match group_by {
                GroupBy::Model => (KeyColumn::Model, ""),
                GroupBy::User => (KeyColumn::User, ""),
                // A NULL provider is a job no provider was called for: a cache answered it.
                _ => (KeyColumn::Provider, offpeak_core::providers::CACHE_PROVIDER),
            };
            db::by_key(&state.pool, tenant.id, column, start, end)
                .await?
                .into_iter()
                .map(|(k, s)| (k.unwrap_or_else(|| none.to_owned()), s))
                .collect()
        }
        GroupBy::Day => {
            let days = day_ranges(tz, start, end)?;
            db::by_day(&state.pool, tenant.id, &days)
                .await?
                .into_iter()
                .map(|(d, s)| (d.format("%Y-%m-%d").to_string(), s))
                .collect()
        }
    };
    let mut totals = UsageSums::default();
    for (_, s) in &groups {
        totals.add(s);
    }
    Ok(Json(UsageResponse {
        group_by: group_by.as_str().to_owned(),
        timezone: tenant.tz.name().to_owned(),
        start,
        end,
        groups: groups.iter().map(|(k, s)| (k.clone(), UsageGroup::from(s))).collect(),
        totals: UsageGroup::from(&totals),
    }))
}

/// Today's usage, in the tenant's timezone.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TodayUsage {
    /// Today's date in the tenant's timezone.
    #[schema(value_type = String, example = "2027-06-01")]
    pub date: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    #[serde(flatten)]
    pub usage: UsageGroup,
}

/// The tenant's own settings and today's usage.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct TenantView {
    pub id: Uuid,
    pub name: String,
    /// The default timezone of jobs and schedules, and the one usage days are counted in.
    pub timezone: String,
    /// The tenant's daily credit limit, if any.
    #[schema(required = true)]
    pub daily_credits: Option<i64>,
    /// The daily credit limit of each `user_id`, if any.
    #[schema(required = true)]
    pub user_daily_credits: Option<i64>,
    /// The off-peak window of the tenant's low-priority jobs, local wall-clock time, e.g. `02:00-06:00`.
    pub window: String,
    /// Today's quota: what counts against the daily limit so far.
    pub quota: QuotaView,
    /// What low-priority jobs pay as a multiple of the list price.
    pub offpeak_multiplier: f64,
    pub created_at: DateTime<Utc>,
    /// The cache of jobs that do not name one (`"cache": true` or absent): `exact` or `semantic`; set by the
    /// operator (`tenant update NAME --cache semantic`).
    #[schema(value_type = super::schema::CacheModeName)]
    pub cache: String,
    pub today: TodayUsage,
}

/// Today's quota of a tenant.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaView {
    /// The day (tenant's timezone) the quota counts.
    pub day: NaiveDate,
    /// Credits counted today: finished jobs' credits plus unfinished jobs' reservations (their price at
    /// submission), for the jobs submitted today (tenant's timezone).
    pub used: i64,
    /// `daily_credits - used`, if there is a limit.
    #[schema(required = true)]
    pub remaining: Option<i64>,
    /// When the day ends and the quota starts again.
    pub resets_at: DateTime<Utc>,
}

/// `GET /v1/tenant`.
#[utoipa::path(
    get,
    path = "/v1/tenant",
    tag = "usage",
    operation_id = "get_tenant",
    summary = "The tenant's own settings and today's usage",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "The tenant", body = TenantView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn tenant(State(state): State<AppState>, AuthTenant(tenant): AuthTenant) -> ApiResult<Json<TenantView>> {
    let tz = tenant.tz;
    let (today, end) = tenant.day(state.clock.now());
    let start = day_start(tz, today);
    let sums = db::totals(&state.pool, tenant.id, start, end).await?;
    let used = offpeak_store::quota::used(&state.pool, tenant.id, today, None).await?.tenant;
    let window = tenant.window(&state.config.window).to_string();
    Ok(Json(TenantView {
        id: tenant.id,
        name: tenant.name,
        timezone: tenant.tz.name().to_owned(),
        daily_credits: tenant.daily_credits,
        user_daily_credits: tenant.user_daily_credits,
        window,
        quota: QuotaView { day: today, used, remaining: tenant.daily_credits.map(|l| (l - used).max(0)), resets_at: end },
        offpeak_multiplier: state.config.prices.offpeak_multiplier(),
        created_at: tenant.created_at,
        cache: tenant.cache.as_str().to_owned(),
        today: TodayUsage { date: today, start, end, usage: UsageGroup::from(&sums) },
    }))
}

/// An RFC 3339 instant, or a `YYYY-MM-DD` local date: its midnight for a
/// start, the next midnight for an end (the day is included).
fn parse_bound(s: &str, tz: Tz, field: &str, is_end: bool) -> ApiResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    // RFC 3339's full-date exactly, as the document's `format: date` says:
    // chrono's `%Y-%m-%d` also reads `2027-6-1` and `+2027-06-01`.
    let full_date = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| if i == 4 || i == 7 { b == b'-' } else { b.is_ascii_digit() });
    match NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().filter(|_| full_date) {
        Some(d) if is_end => Ok(day_start(tz, next_day(d))),
        Some(d) => Ok(day_start(tz, d)),
        None => Err(ApiError::bad_request(
            "invalid_query",
            format!("{field} must be an RFC 3339 instant like 2027-06-01T00:00:00Z or a date like 2027-06-01"),
        )
        .with_field(field)),
    }
}

/// `t`, if RFC 3339 can write it: the answer gives `start` and `end` back as
/// date-times, and RFC 3339 has years 0000 to 9999 only. A date bound is a
/// local midnight, so `0000-01-01` east of UTC (or `9999-12-31` as `end`,
/// the midnight after it, west of UTC) lands outside: a 400 naming the field,
/// not an answer with `-0001-12-31T…` or `+10000-01-01T…` in it.
fn writable(t: DateTime<Utc>, field: &str) -> ApiResult<DateTime<Utc>> {
    use chrono::Datelike;
    if (0..=9999).contains(&t.year()) {
        return Ok(t);
    }
    Err(ApiError::bad_request(
        "invalid_query",
        format!("{field} is {t:?} in UTC, outside the years 0000 to 9999 an RFC 3339 instant can have"),
    )
    .with_field(field))
}

/// The local days `[start, end)` touches, each clipped to the range.
fn day_ranges(tz: Tz, start: DateTime<Utc>, end: DateTime<Utc>) -> ApiResult<Vec<DayRange>> {
    let mut days = Vec::new();
    let mut day = start.with_timezone(&tz).date_naive();
    loop {
        let (s, e) = (day_start(tz, day), day_start(tz, next_day(day)));
        if s >= end || e <= s {
            break;
        }
        if days.len() == MAX_DAYS {
            return Err(ApiError::bad_request("invalid_query", format!("group_by=day covers at most {MAX_DAYS} days; narrow start and end"))
                .with_field("end"));
        }
        days.push(DayRange { day, start: s.max(start), end: e.min(end) });
        day = next_day(day);
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn day_ranges_clip_to_the_range() {
        let tokyo: Tz = "Asia/Tokyo".parse().unwrap();
        let days = day_ranges(tokyo, at("2027-06-01T12:00:00Z"), at("2027-06-02T16:00:00Z")).unwrap();
        let got: Vec<_> = days.iter().map(|d| (d.day.to_string(), d.start, d.end)).collect();
        assert_eq!(
            got,
            [
                ("2027-06-01".to_string(), at("2027-06-01T12:00:00Z"), at("2027-06-01T15:00:00Z")),
                ("2027-06-02".to_string(), at("2027-06-01T15:00:00Z"), at("2027-06-02T15:00:00Z")),
                ("2027-06-03".to_string(), at("2027-06-02T15:00:00Z"), at("2027-06-02T16:00:00Z")),
            ]
        );
        assert!(day_ranges(tokyo, at("2027-01-01T00:00:00Z"), at("2029-01-01T00:00:00Z")).is_err());
    }
}
