//! Admission: what happens to a submission's inputs before they are stored.
//!
//! Every way jobs enter offpeak (`POST /v1/jobs`, `POST /v1/jobs/bulk`, a
//! schedule's firing) goes through [`admit`], inside the transaction that
//! inserts the jobs:
//!
//! 1. **Cache.** Each input's cache key is looked up; an input whose key
//!    has a result within the TTL is stored `succeeded` at once, a cache
//!    hit, for 0 credits (see `offpeak_store::cache`).
//! 2. **Quota.** The other inputs' price is reserved against the tenant's
//!    (and the user's) daily limit, under a lock on the tenant's day, or the
//!    whole submission is refused (see `offpeak_store::quota`).

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use offpeak_store::cache::{self, CacheHit};
use offpeak_store::jobs::{Admission, Admitted, NewInput, NewJob};
use offpeak_store::quota::{self, Exceeded};
use offpeak_store::tenants::{self as tenants_db, QuotaSettings, Tenant};
use offpeak_core::prices::PriceTable;

/// Default time a provider result answers identical jobs.
pub const CACHE_TTL_DEFAULT: Duration = Duration::from_secs(24 * 3600);

/// The cache settings of a deployment.
#[derive(Debug, Clone, Copy)]
pub struct CacheConfig {
    /// How long a result answers identical jobs; zero turns the cache (and
    /// coalescing) off.
    pub ttl: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { ttl: CACHE_TTL_DEFAULT }
    }
}

impl CacheConfig {
    pub fn enabled(&self) -> bool {
        !self.ttl.is_zero()
    }

    /// The cache key of an input, or `None` when the cache is off or the
    /// submitter opted out (`use_cache` false).
    pub fn key(&self, use_cache: bool, tenant_id: Uuid, model: &str, input: &Value) -> Option<Vec<u8>> {
        (use_cache && self.enabled()).then(|| offpeak_core::hash::cache_key(tenant_id, model, input))
    }

    /// The oldest finish time of a result that still answers at `now`.
    pub fn since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        now - TimeDelta::from_std(self.ttl).unwrap_or(TimeDelta::MAX)
    }
}

/// A submission refused by a quota, with when the day resets.
#[derive(Debug, Clone)]
pub struct Refused {
    pub exceeded: Exceeded,
    pub day: NaiveDate,
    pub resets_at: DateTime<chrono_tz::Tz>,
}

/// The tenant's day (in its timezone) at `now`, and when it ends.
pub fn tenant_day(tenant: &Tenant, now: DateTime<Utc>) -> (NaiveDate, DateTime<chrono_tz::Tz>) {
    let (day, next) = tenant.day(now);
    (day, next.with_timezone(&tenant.tz))
}

/// Decides what becomes of each input of a submission of `template`'s
/// tenant, model and priority, and reserves quota for those that will run.
/// Must run in the transaction that then inserts the jobs with
/// `insert_one`/`insert_many`, which holds the quota lock until commit.
///
/// `use_cache`: the submitter did not opt out (`"cache": false`).
///
/// # Errors
/// Database errors only; a refusal is `Ok(Err(..))`.
pub async fn admit(
    conn: &mut PgConnection,
    tenant: &Tenant,
    template: &NewJob,
    inputs: Vec<(Uuid, Value)>,
    use_cache: bool,
    cache_config: CacheConfig,
    prices: &PriceTable,
) -> Result<Result<(Vec<NewInput>, Admission), Refused>, sqlx::Error> {
    let now = template.created_at;
    let keys: Vec<Option<Vec<u8>>> = inputs
        .iter()
        .map(|(_, input)| cache_config.key(use_cache, tenant.id, &template.model, input))
        .collect();
    let hits = lookup_hits(conn, &keys, cache_config.since(now)).await?;

    let charge = prices.charge(&template.model, template.priority);
    let reserved_per_job = charge.map_or(0, |c| c.charged);
    let list_price = charge.map_or(0, |c| c.list);
    let misses = keys.iter().filter(|k| k.as_ref().is_none_or(|k| !hits.contains_key(k))).count() as i64;

    // Every job counts against the tenant's day of its submission, limit
    // or not, so a limit set at noon counts the morning's work too; only a
    // tenant with a limit takes the lock and checks.
    // The limits and timezone as stored now, not as the API's key cache
    // (a few seconds old) has them: a limit applies from the next submission.
    let settings = tenants_db::quota_settings(&mut *conn, tenant.id).await?;
    let current = as_stored(tenant, settings);
    let tenant = &current;
    let limits = tenant.limits();
    let (day, resets_at) = tenant_day(tenant, now);
    let requested = misses.saturating_mul(reserved_per_job);
    if limits.any() && requested > 0 {
        if let Err(exceeded) = quota::reserve(conn, tenant.id, day, template.user_id.as_deref(), limits, requested).await? {
            return Ok(Err(Refused { exceeded, day, resets_at }));
        }
    }
    let quota_day = Some(day);

    let admitted = inputs
        .into_iter()
        .zip(keys)
        .map(|((id, input), cache_key)| {
            let admitted = match cache_key.as_ref().and_then(|k| hits.get(k)) {
                Some(hit) => Admitted::CacheHit(hit.clone()),
                None => Admitted::Held,
            };
            NewInput { id, input, cache_key, admitted }
        })
        .collect();
    Ok(Ok((admitted, Admission { quota_day, reserved_per_job, list_price })))
}

/// The results within the TTL (from `since`) of the distinct keys among
/// `keys` (`None`: an input that opted out of the cache).
async fn lookup_hits(
    conn: &mut PgConnection,
    keys: &[Option<Vec<u8>>],
    since: DateTime<Utc>,
) -> Result<HashMap<Vec<u8>, CacheHit>, sqlx::Error> {
    let mut distinct: Vec<Vec<u8>> = keys.iter().flatten().cloned().collect();
    distinct.sort();
    distinct.dedup();
    cache::lookup(conn, &distinct, since).await
}

/// The tenant with its timezone and limits as stored now (`settings`, from
/// `tenants::quota_settings`), not as the API's key cache has them.
fn as_stored(tenant: &Tenant, settings: Option<QuotaSettings>) -> Tenant {
    let mut current = tenant.clone();
    if let Some(QuotaSettings { tz, limits }) = settings {
        (current.tz, current.daily_credits, current.user_daily_credits) = (tz, limits.tenant, limits.per_user);
    }
    current
}

/// One single submission (`POST /v1/jobs` without an `Idempotency-Key`)
/// of a group admitted and inserted together (see [`crate::group_commit`]).
#[derive(Debug, Clone)]
pub struct Single {
    pub tenant: Tenant,
    pub job: NewJob,
    pub input: Value,
    /// The submitter did not opt out of the cache.
    pub use_cache: bool,
}

/// [`admit`] for a group of single submissions, each of its own tenant,
/// model and user, in one transaction and a few set-based statements: one
/// cache lookup for all, one read of the tenants' limits, one lock per
/// tenant's day that has a limit (taken in sorted order, so groups admitted
/// concurrently cannot deadlock) and one sum per day and user. The group is
/// admitted in order, each submission counting the ones admitted before it,
/// exactly as if each had been admitted alone in that order: a refusal
/// refuses that submission only.
///
/// # Errors
/// Database errors only; a refusal is that submission's `Err(..)`.
pub async fn admit_each(
    conn: &mut PgConnection,
    group: &[Single],
    cache_config: CacheConfig,
    prices: &PriceTable,
) -> Result<Vec<Result<(NewInput, Admission), Refused>>, sqlx::Error> {
    let keys: Vec<Option<Vec<u8>>> =
        group.iter().map(|s| cache_config.key(s.use_cache, s.tenant.id, &s.job.model, &s.input)).collect();
    // The newest submission's TTL start: a result is used only if it is
    // within the TTL for every submission of the group.
    let newest = group.iter().map(|s| s.job.created_at).max().unwrap_or_default();
    let hits = lookup_hits(conn, &keys, cache_config.since(newest)).await?;

    let mut tenant_ids: Vec<Uuid> = group.iter().map(|s| s.tenant.id).collect();
    tenant_ids.sort();
    tenant_ids.dedup();
    let mut settings = tenants_db::quota_settings_many(&mut *conn, &tenant_ids).await?;
    let current: HashMap<Uuid, Tenant> = group
        .iter()
        .map(|s| (s.tenant.id, as_stored(&s.tenant, settings.remove(&s.tenant.id))))
        .collect();

    struct Plan<'a> {
        tenant: &'a Tenant,
        hit: Option<CacheHit>,
        admission: Admission,
        requested: i64,
        day: NaiveDate,
        resets_at: DateTime<chrono_tz::Tz>,
    }
    let plans: Vec<Plan> = group
        .iter()
        .zip(&keys)
        .map(|(s, key)| {
            let tenant = &current[&s.tenant.id];
            let charge = prices.charge(&s.job.model, s.job.priority);
            let hit = key.as_ref().and_then(|k| hits.get(k)).cloned();
            let (day, resets_at) = tenant_day(tenant, s.job.created_at);
            let reserved_per_job = charge.map_or(0, |c| c.charged);
            let requested = if hit.is_some() || !tenant.limits().any() { 0 } else { reserved_per_job };
            let admission = Admission { quota_day: Some(day), reserved_per_job, list_price: charge.map_or(0, |c| c.list) };
            Plan { tenant, hit, admission, requested, day, resets_at }
        })
        .collect();

    let mut days: Vec<(Uuid, NaiveDate)> = plans.iter().filter(|p| p.requested > 0).map(|p| (p.tenant.id, p.day)).collect();
    days.sort();
    days.dedup();
    for (tenant_id, day) in &days {
        quota::lock_day(&mut *conn, *tenant_id, *day).await?;
    }

    // What each locked day and each of its users has used, read once and
    // then counted on as the group is admitted.
    let mut day_used: HashMap<(Uuid, NaiveDate), i64> = HashMap::new();
    let mut user_used: HashMap<(Uuid, NaiveDate, String), i64> = HashMap::new();
    let mut out = Vec::with_capacity(group.len());
    for ((s, key), p) in group.iter().zip(keys).zip(plans) {
        let day = p.day;
        if p.requested > 0 {
            let user = s.job.user_id.as_deref();
            let user_key = user.map(|u| (p.tenant.id, day, u.to_owned()));
            let known_user = user_key.as_ref().is_none_or(|k| user_used.contains_key(k));
            if !day_used.contains_key(&(p.tenant.id, day)) || !known_user {
                let read = quota::used(&mut *conn, p.tenant.id, day, user).await?;
                day_used.entry((p.tenant.id, day)).or_insert(read.tenant);
                if let Some(k) = &user_key {
                    user_used.entry(k.clone()).or_insert(read.user);
                }
            }
            let used = quota::Used {
                tenant: day_used[&(p.tenant.id, day)],
                user: user_key.as_ref().map_or(0, |k| user_used[k]),
            };
            if let Err(exceeded) = quota::check(p.tenant.limits(), used, user, p.requested) {
                out.push(Err(Refused { exceeded, day, resets_at: p.resets_at }));
                continue;
            }
            *day_used.entry((p.tenant.id, day)).or_default() += p.requested;
            if let Some(k) = user_key {
                *user_used.entry(k).or_default() += p.requested;
            }
        }
        let admitted = match p.hit {
            Some(hit) => Admitted::CacheHit(hit),
            None => Admitted::Held,
        };
        out.push(Ok((NewInput { id: s.job.id, input: s.input.clone(), cache_key: key, admitted }, p.admission)));
    }
    Ok(out)
}

/// The message of a quota refusal: which limit, what the day has used,
/// what was asked for, and when the day resets.
pub fn refusal_message(tenant: &Tenant, r: &Refused) -> String {
    let who = match &r.exceeded.scope {
        quota::Scope::Tenant => format!("tenant '{}'", tenant.name),
        quota::Scope::User(u) => format!("user_id '{u}'"),
    };
    format!(
        "daily credit limit of {} for {who} reached: {} credits used on {} ({}), this submission needs {}; the limit resets at {}",
        r.exceeded.limit,
        r.exceeded.used,
        r.day,
        tenant.tz.name(),
        r.exceeded.requested,
        r.resets_at.to_rfc3339()
    )
}
