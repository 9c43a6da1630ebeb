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
    pub daily_credits: Option<i64>,
    pub created_at: DateTime<Utc>,
}

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
         RETURNING id, name, timezone, daily_credits, created_at",
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
    sqlx::query_as::<_, Tenant>(
        "SELECT t.id, t.name, t.timezone, t.daily_credits, t.created_at
         FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
         WHERE k.key_hash = $1 AND k.revoked_at IS NULL",
    )
    .bind(hash_api_key(key))
    .fetch_optional(db)
    .await
}

pub async fn list<'e>(db: impl PgExecutor<'e>) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>("SELECT id, name, timezone, daily_credits, created_at FROM tenants ORDER BY name")
        .fetch_all(db)
        .await
}

/// A tenant by its unique name.
pub async fn by_name<'e>(db: impl PgExecutor<'e>, name: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as::<_, Tenant>("SELECT id, name, timezone, daily_credits, created_at FROM tenants WHERE name = $1")
        .bind(name)
        .fetch_optional(db)
        .await
}
