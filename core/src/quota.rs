//! Daily credit quotas, the rule without the storage: a limit per tenant and
//! one per user of the tenant, over a day of the tenant's timezone
//! ([`crate::tz::day_of`]). `offpeak-store`'s `quota` module sums what a day
//! has used and holds the day's lock; [`check`] decides.

/// A tenant's daily limits, in credits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// For the whole tenant.
    pub tenant: Option<i64>,
    /// For each `user_id` of the tenant.
    pub per_user: Option<i64>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.tenant.is_some() || self.per_user.is_some()
    }
}

/// Which limit a submission would exceed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Tenant,
    User(String),
}

/// A refused reservation: the limit, what the day has used, and what the
/// submission asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub scope: Scope,
    pub limit: i64,
    pub used: i64,
    pub requested: i64,
}

/// What a day has used, for the tenant and for one user.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Used {
    pub tenant: i64,
    pub user: i64,
}

/// Whether `requested` more credits fit `limits` on top of `used` (read
/// under the store's day lock): the tenant's limit first, then the user's.
///
/// # Errors
/// The limit that would be exceeded.
pub fn check(limits: Limits, used: Used, user_id: Option<&str>, requested: i64) -> Result<(), Exceeded> {
    if let Some(limit) = limits.tenant {
        if used.tenant.saturating_add(requested) > limit {
            return Err(Exceeded { scope: Scope::Tenant, limit, used: used.tenant, requested });
        }
    }
    if let (Some(limit), Some(user)) = (limits.per_user, user_id) {
        if used.user.saturating_add(requested) > limit {
            return Err(Exceeded { scope: Scope::User(user.to_owned()), limit, used: used.user, requested });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tenant_limit_is_checked_before_the_users() {
        let limits = Limits { tenant: Some(10), per_user: Some(5) };
        let used = Used { tenant: 8, user: 4 };
        assert_eq!(check(limits, used, Some("u"), 2), Err(Exceeded { scope: Scope::User("u".into()), limit: 5, used: 4, requested: 2 }));
        assert_eq!(check(limits, used, Some("u"), 3).unwrap_err().scope, Scope::Tenant);
        assert_eq!(check(limits, used, None, 2), Ok(()));
        assert_eq!(check(Limits::default(), Used { tenant: i64::MAX, user: 0 }, None, i64::MAX), Ok(()));
        assert!(!Limits::default().any());
    }
}
