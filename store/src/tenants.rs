//! Tenants and their API keys.
//!
//! A key is `op_` followed by 64 hex characters (256 random bits). It is shown once, at creation; only its SHA-256 is stored, and a
//! request is authenticated by looking that hash up.

use chrono::{DateTime, Utc};
use rand::RngCore;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

#[derive(Debug, Clone, FromRow, serde::Serialize)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub timezone: String,
    /// Daily credit limit of the whole tenant.
    pub daily_credits: Option<i64>,
    /// Daily credit limit of each `user_id` of the tenant.
    pub user_daily_credits: Option<i64>,
    /// The tenant's own off-peak window (`HH:MM`), if not the deployment's.
    pub window_start: Option<String>,
    pub window_end: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl Tenant {
    pub fn limits(&self) -> crate::quota::Limits {
        crate::quota::Limits { tenant: self.daily_credits, per_user: self.user_daily_credits }
    }

    /// The tenant's window, or `default` when it has none of its own.
    pub fn window(&self, default: &offpeak_core::window::WindowSpec) -> offpeak_core::window::WindowSpec {
        match (&self.window_start, &self.window_end) {
            (Some(s), Some(e)) => format!("{s}-{e}").parse().unwrap_or(*default),
            _ => *default,
        }
    }
}

const TENANT_COLUMNS: &str = "t.id, t.name, t.timezone, t.daily_credits, t.user_daily_credits, t.window_start, t.window_end, t.created_at";

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
    timezone: &str,
    daily_credits: Option<i64>,
) -> Result<(Tenant, String), TenantError> {
    let mut tx = pool.begin().await?;
    let tenant = sqlx::query_as::<_, Tenant>(
        "INSERT INTO tenants (id, name, timezone, daily_credits) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING
         RETURNING id, name, timezone, daily_credits, user_daily_credits, window_start, window_end, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name)
    .bind(timezone)
    .bind(daily_credits)
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
    sqlx::query_as::<_, Tenant>(&format!(
        "SELECT {TENANT_COLUMNS}
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL"
    ))
    .bind(hash_api_key(key))
    .fetch_optional(db)
    .await
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>(&format!("SELECT {TENANT_COLUMNS} FROM tenants t ORDER BY name"))
        .fetch_all(db)
        .await
}

/// A tenant by its unique name.
pub async fn by_name<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>(&format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE name = $1"))
        .bind(name)
        .fetch_optional(db)
        .await
}

/// A tenant by id.
pub async fn get<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>(&format!("SELECT {TENANT_COLUMNS} FROM tenants t WHERE id = $1"))
        .bind(id)
        .fetch_optional(db)
        .await
}

/// A change of a tenant's settings: `None` leaves a setting as it is;
/// `Some(None)` clears a limit or the tenant's own window.
#[derive(Debug, Clone, Default)]
pub struct TenantUpdate {
    pub timezone: Option<String>,
    pub daily_credits: Option<Option<i64>>,
    pub user_daily_credits: Option<Option<i64>>,
    /// `(start, end)` as `HH:MM`.
    pub window: Option<Option<(String, String)>>,
}

/// Changes a tenant's settings; returns the tenant as it now is, or `None`
/// if there is no tenant of that name. Jobs already held keep the release
/// time they were given; the new window applies to submissions from now
/// on and to held jobs when they roll over.
pub async fn update<'e>(db: impl PgExecutor<'e>, name: &str, u: &TenantUpdate) -> Result<Option<Tenant>, sqlx::Error> {
    let (window_set, window) = match &u.window {
        None => (false, None),
        Some(w) => (true, w.clone()),
    };
    sqlx::query_as::<_, Tenant>(
        "UPDATE tenants t SET
             timezone = COALESCE($2, timezone),
             daily_credits = CASE WHEN $3 THEN $4 ELSE daily_credits END,
             user_daily_credits = CASE WHEN $5 THEN $6 ELSE user_daily_credits END,
             window_start = CASE WHEN $7 THEN $8 ELSE window_start END,
             window_end = CASE WHEN $7 THEN $9 ELSE window_end END
         WHERE name = $1
         RETURNING t.id, t.name, t.timezone, t.daily_credits, t.user_daily_credits, t.window_start, t.window_end, t.created_at",
    )
    .bind(name)
    .bind(&u.timezone)
    .bind(u.daily_credits.is_some())
    .bind(u.daily_credits.flatten())
    .bind(u.user_daily_credits.is_some())
    .bind(u.user_daily_credits.flatten())
    .bind(window_set)
    .bind(window.as_ref().map(|w| w.0.clone()))
    .bind(window.as_ref().map(|w| w.1.clone()))
    .fetch_optional(db)
    .await
}

/// A tenant's quota settings as stored now: timezone and limits. Read in
/// the submission's transaction, so a limit changed by `tenant update`
/// applies to the next submission, whatever the API's key cache holds.
pub async fn quota_settings<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<(String, Option<i64>, Option<i64>)>, sqlx::Error> {
    sqlx::query_as("SELECT timezone, daily_credits, user_daily_credits FROM tenants WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// [`quota_settings`] of many tenants in one query, by id; unknown ids are
/// left out.
///
/// # Errors
/// Database errors only.
pub async fn quota_settings_many<'e>(
    db: impl PgExecutor<'e>,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, (String, Option<i64>, Option<i64>)>, sqlx::Error> {
    let rows: Vec<(Uuid, String, Option<i64>, Option<i64>)> =
        sqlx::query_as("SELECT id, timezone, daily_credits, user_daily_credits FROM tenants WHERE id = ANY($1)")
            .bind(ids)
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().map(|(id, tz, daily, user)| (id, (tz, daily, user))).collect())
}
