//! Which tenant a bearer key belongs to, with a short-lived in-process cache.
//!
//! Every `/v1` request needs its tenant. Looking the key's hash up in
//! PostgreSQL each time costs a round trip and a pool connection per request,
//! which at thousands of submissions per second is a third of the work of a
//! submission. So a replica remembers a key it has seen, by the key's
//! SHA-256 (never the key itself), for [`AUTH_CACHE_TTL_DEFAULT`]
//! (`OFFPEAK_AUTH_CACHE_SECS`; 0 turns the cache off).
//!
//! What that means for operators: revoking a key (`api_keys.revoked_at`),
//! deleting a tenant or changing its settings (timezone, daily credits)
//! takes effect on each replica within the TTL, not at once. Unknown keys
//! are never cached, so a new key works at once and random keys cannot fill
//! the cache; the cache holds at most [`AUTH_CACHE_MAX_ENTRIES`] keys and
//! starts over when full.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sqlx::PgPool;

use offpeak_store::tenants::{self, Tenant};

/// Default time a replica trusts a key it looked up.
pub const AUTH_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(5);
/// Most keys remembered at once.
pub const AUTH_CACHE_MAX_ENTRIES: usize = 10_000;

/// Tenants by key hash, each trusted until its deadline.
#[derive(Debug)]
pub struct AuthCache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, (Instant, Tenant)>>,
}

impl AuthCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, entries: Mutex::new(HashMap::new()) }
    }

    /// The tenant owning a non-revoked `key`, if any.
    ///
    /// # Errors
    /// Database errors of the lookup.
    pub async fn tenant(&self, pool: &PgPool, key: &str) -> Result<Option<Tenant>, sqlx::Error> {
        if self.ttl.is_zero() {
            return tenants::by_api_key(pool, key).await;
        }
        let hash = tenants::hash_api_key(key);
        let now = Instant::now();
        if let Some((until, tenant)) = self.lock().get(&hash) {
            if *until > now {
                return Ok(Some(tenant.clone()));
            }
        }
        let found = tenants::by_api_key(pool, key).await?;
        let mut entries = self.lock();
        match &found {
            Some(t) => {
                if entries.len() >= AUTH_CACHE_MAX_ENTRIES {
                    entries.clear();
                }
                entries.insert(hash, (now + self.ttl, t.clone()));
            }
            None => {
                entries.remove(&hash);
            }
        }
        Ok(found)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (Instant, Tenant)>> {
        // The map stays consistent whatever panicked while holding it.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for AuthCache {
    fn default() -> Self {
        Self::new(AUTH_CACHE_TTL_DEFAULT)
    }
}
