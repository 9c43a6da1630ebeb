//! Tenants and their API keys.
//!
//! A key is `op_` followed by 64 hex characters (256 random bits). It is shown once, at creation; only its SHA-256 is stored, and a
//! request is authenticated by looking that hash up.

use rand::RngCore;
use sha2::{Digest, Sha256};
use chrono_tz::Tz;
use offpeak_core::window::WindowSpec;
use sqlx::{PgExecutor, PgPool};

use crate::edge;
use uuid::Uuid;

pub use offpeak_core::tenant::Tenant;

/// The columns [`crate::edge::tenant`] reads.
const TENANT_COLUMNS: &str = "t.id, t.name, t.timezone, t.daily_credits, t.user_daily_credits, t.window_start, t.window_end, t.created_at, t.cache_mode";

/// SHA-256 of an API key, as stored.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// A new random API key.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("op_{}", hex::encode(bytes))
}

#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    #[error("a tenant named '{0}' already exists")]
    NameTaken(String),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Creates a tenant and its first API key; returns the tenant and the key
/// in clear (the only time it exists in clear).
///
/// # Errors
/// [`TenantError::NameTaken`] when the name is in use.
pub async fn create(
    pool: &PgPool,
    name: &str,
    tz: Tz,
    daily_credits: Option<i64>,
) -> Result<(Tenant, String), TenantError> {
    let mut tx = pool.begin().await?;
    let tenant = sqlx::query(
        "INSERT INTO tenants (id, name, timezone, daily_credits) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING
         RETURNING id, name, timezone, daily_credits, user_daily_credits, window_start, window_end, created_at, cache_mode",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(tz.name())
    .bind(daily_credits)
    .try_map(edge::tenant)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| TenantError::NameTaken(name.to_owned()))?;
    let key = generate_api_key();
    sqlx::query("INSERT INTO api_keys (key_hash, tenant_id, prefix) VALUES ($1, $2, $3)")
        .bind(hash_api_key(&key))
        .bind(tenant.id)
        .bind(&key[..11])
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((tenant, key))
}

/// The tenant owning a (non-revoked) key, if any.
pub async fn by_api_key<'e>(db: impl PgExecutor<'e>, key: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query(&format!(
        "SELECT {TENANT_COLUMNS}
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
    ))
    .bind(hash_api_key(key))
    .try_map(edge::tenant)
    .fetch_optional(db)
    .await
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants t ORDER BY name"))
        .try_map(edge::tenant)
        .fetch_all(db)
        .await
}

/// A tenant by its unique name.
pub async fn by_name<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE name = $1"))
        .bind(name)
        .try_map(edge::tenant)
        .fetch_optional(db)
        .await
}

/// A tenant by id.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query(&format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE id = $1"))
        .bind(id)
        .try_map(edge::tenant)
        .fetch_optional(db)
        .await
}

/// A change of a tenant's settings: `None` leaves a setting as it is;
/// `Some(None)` clears a limit or the tenant's own window.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    pub tz: Option<Tz>,
    pub daily_credits: Option<Option<i64>>,
    pub user_daily_credits: Option<Option<i64>>,
    pub window: Option<Option<WindowSpec>>,
    /// The default cache of the tenant's jobs (`exact` or `semantic`).
    pub cache: Option<offpeak_core::semantic::CacheMode>,
}

/// Changes a tenant's settings; returns the tenant as it now is, or `None`
/// if there is no tenant of that name. Jobs already held keep the release
/// time they were given; the new window applies to submissions from now
/// on and to held jobs when they roll over.
pub async fn update<'e>(db: impl PgExecutor<'e>, name: &str, u: &TenantUpdate) -> Result<Option<Tenant>, sqlx::Error> {
    let (window_set, window) = match &u.window {
        None => (false, None),
        Some(w) => (true, w.map(|w| w.bounds_text())),
    };
    sqlx::query(
        "UPDATE tenants t SET
             timezone = COALESCE($2, timezone),
             daily_credits = CASE WHEN $3 THEN $4 ELSE daily_credits END,
             user_daily_credits = CASE WHEN $5 THEN $6 ELSE user_daily_credits END,
             window_start = CASE WHEN $7 THEN $8 ELSE window_start END,
             window_end = CASE WHEN $7 THEN $9 ELSE window_end END,
             cache_mode = COALESCE($10, cache_mode)
         WHERE name = $1
         RETURNING t.id, t.name, t.timezone, t.daily_credits, t.user_daily_credits, t.window_start, t.window_end, t.created_at,
                   t.cache_mode",
    )
    .bind(name)
    .bind(u.tz.map(|tz| tz.name()))
    .bind(u.daily_credits.is_some())
    .bind(u.daily_credits.flatten())
    .bind(u.user_daily_credits.is_some())
    .bind(u.user_daily_credits.flatten())
    .bind(window_set)
    .bind(window.as_ref().map(|w| w.0.clone()))
    .bind(window.as_ref().map(|w| w.1.clone()))
    .bind(u.cache.map(|m| m.as_str()))
    .try_map(edge::tenant)
    .fetch_optional(db)
    .await
}

/// A tenant's quota settings as stored now: timezone and limits. Read in
/// the submission's transaction, so a limit changed by `tenant update`
/// applies to the next submission, whatever the API's key cache holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuotaSettings {
    pub tz: Tz,
    pub limits: offpeak_core::quota::Limits,
}

fn quota_settings_row(row: sqlx::postgres::PgRow) -> Result<(uuid::Uuid, QuotaSettings), sqlx::Error> {
    use sqlx::Row;
    Ok((
        row.try_get("id")?,
        QuotaSettings {
            tz: edge::tz_column(&row, "timezone")?,
            limits: offpeak_core::quota::Limits { tenant: row.try_get("daily_credits")?, per_user: row.try_get("user_daily_credits")? },
        },
    ))
}

/// [`QuotaSettings`] of one tenant.
///
/// # Errors
/// Database errors, or a stored timezone that does not parse.
pub async fn quota_settings<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<QuotaSettings>, sqlx::Error> {
    Ok(sqlx::query("SELECT id, timezone, daily_credits, user_daily_credits FROM tenants WHERE id = $1")
        .bind(id)
        .try_map(quota_settings_row)
        .fetch_optional(db)
        .await?
        .map(|(_, q)| q))
}

/// [`quota_settings`] of many tenants in one query, by id; unknown ids are
/// left out.
///
/// # Errors
/// Database errors, or a stored timezone that does not parse.
pub async fn quota_settings_many<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, QuotaSettings>, sqlx::Error> {
    sqlx::query("SELECT id, timezone, daily_credits, user_daily_credits FROM tenants WHERE id = ANY($1)")
        .bind(ids)
        .try_map(quota_settings_row)
        .fetch_all(db)
        .await
        .map(|rows| rows.into_iter().collect())
}
