//! Limits on provider calls shared by every worker replica: requests per
//! minute and calls in flight, per provider key and optionally per model
//! (issue #20).
//!
//! Every HTTP request a provider adapter makes first passes its route's
//! [`Gate`], and holds the [`Permit`] it gets until the answer is in:
//!
//! ```rust,no_run
//! # async fn example(route: &offpeak_worker::provider::Route) {
//! let _permit = route.gate.pass().await; // waits while a limit is reached
//! // ... send the request, read the answer ...
//! // dropping the permit gives its concurrency slots back
//! # }
//! ```
//!
//! The limits are kept in PostgreSQL, the one thing every worker already
//! shares (`offpeak_store::limits` has the SQL and its locking):
//!
//! - **requests per minute**: a sliding log of the calls' start times, by
//!   PostgreSQL's clock. A call is allowed while fewer than the limit
//!   started in the last [`WINDOW`] (a minute plus [`GUARD`]); else the
//!   worker sleeps until the oldest leaves the window. The guard margin is
//!   there because the provider counts a call when it *arrives*, a moment
//!   after we recorded it: two calls recorded 60 s + `GUARD` apart arrive at
//!   least 60 s apart unless the first took `GUARD` longer than the second
//!   to get there.
//! - **calls in flight**: a lease per call, deleted when the permit drops
//!   and counted only until `expires_at` (the provider's timeout plus
//!   [`LEASE_MARGIN`]), so a SIGKILLed worker's slots come back.
//!
//! A route without limits has a gate without keys: [`Gate::pass`] returns
//! at once and touches no database.
//!
//! # When PostgreSQL is unreachable
//!
//! `pass` cannot fail. A database error is logged, counted
//! (`offpeak_provider_limit_errors_total`) and retried after a pause (100 ms
//! doubling to 5 s) for as long as it lasts: the gate **fails closed**. A
//! worker that cannot reach PostgreSQL cannot write a result back either,
//! so calling the provider meanwhile would only spend the provider's budget
//! (and the submitter's money) on answers it could not store, with no limit
//! at all. The batch waits in `pass`; a shutdown's grace period or the
//! rescuer's visibility timeout end the wait like any other stuck work.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use sqlx::PgPool;
use tokio::sync::Notify;
use uuid::Uuid;

use offpeak_store::limits::{self as db, KeyLimits, LimitKind, Request, Verdict};

use crate::metrics;
use crate::provider::LimitKey;

/// How far back a call counts against a per-minute limit beyond the minute
/// itself: the longest a call may take from being recorded to reaching the
/// provider (a commit, a connection, the request's first bytes) without
/// putting one call too many into the provider's minute. It costs 1/61 of
/// the budget.
pub const GUARD: Duration = Duration::from_secs(1);

/// The sliding window of requests per minute, guard margin included.
pub const WINDOW: Duration = Duration::from_secs(60 + GUARD.as_secs());

/// A lease counts this much longer than the call's timeout, so that it
/// outlives every call that may still be in flight under it.
pub const LEASE_MARGIN: Duration = Duration::from_secs(30);

/// First and longest pause between polls while a concurrency limit is
/// reached (a release by another worker is not announced; one by this
/// worker wakes its waiters at once).
pub const POLL_FIRST: Duration = Duration::from_millis(20);
pub const POLL_MAX: Duration = Duration::from_millis(250);

/// Spread added to a computed wait, so that the waiters for one instant do
/// not all ask at once.
pub const JITTER_MAX: Duration = Duration::from_millis(25);

/// First and longest pause after a database error.
pub const DB_RETRY_FIRST: Duration = Duration::from_millis(100);
pub const DB_RETRY_MAX: Duration = Duration::from_secs(5);

/// This worker process's handle on the shared limits: the pool and the
/// process's holder id, written on its leases. One per process, cloned
/// into every gate.
#[derive(Debug, Clone)]
pub struct Limiter {
    inner: Arc<LimiterInner>,
}

#[derive(Debug)]
struct LimiterInner {
    pool: PgPool,
    holder: Uuid,
    /// Woken when one of this process's permits has given its slots back.
    released: Notify,
}

impl Limiter {
    pub fn new(pool: PgPool) -> Self {
        Self { inner: Arc::new(LimiterInner { pool, holder: Uuid::new_v4(), released: Notify::new() }) }
    }

    /// The id written on this process's leases.
    pub fn holder(&self) -> Uuid {
        self.inner.holder
    }

    /// Gives back every slot this process holds (at shutdown, once no call
    /// is in flight). Errors are logged: the leases then expire.
    pub async fn release_all(&self) {
        if let Err(e) = db::release_holder(&self.inner.pool, self.inner.holder).await {
            tracing::warn!(error = %e, "could not release this worker's provider call leases; they expire on their own");
        }
    }
}

/// What a route's calls must get past: its limit keys, sorted (the order
/// their locks are taken in).
#[derive(Debug, Clone, Default)]
pub struct Gate {
    keys: Vec<KeyLimits>,
    /// `None` only for a gate without keys.
    limiter: Option<Limiter>,
    /// How long a lease counts if its permit is never dropped (a killed
    /// worker): the call's timeout plus [`LEASE_MARGIN`].
    lease: Duration,
}

impl Gate {
    /// A gate for calls under `keys` (unlimited ones are left out), whose
    /// HTTP requests time out after `call_timeout`.
    pub fn new(limiter: &Limiter, keys: Vec<LimitKey>, call_timeout: Duration) -> Self {
        let mut keys: Vec<KeyLimits> =
            keys.into_iter().filter(|k| !k.limits.is_unlimited()).map(|k| KeyLimits { key: k.key, limits: k.limits }).collect();
        keys.sort_by(|a, b| a.key.cmp(&b.key));
        keys.dedup_by(|a, b| a.key == b.key);
        let limiter = (!keys.is_empty()).then(|| limiter.clone());
        Self { keys, limiter, lease: call_timeout.saturating_add(LEASE_MARGIN) }
    }

    /// Whether any limit applies.
    pub fn is_limited(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.key.as_str())
    }

    /// Waits until one more call is allowed under every key, and returns
    /// the permit to hold while it is in flight. Without keys: at once, no
    /// query. Never fails: see the module's "When PostgreSQL is unreachable".
    pub async fn pass(&self) -> Permit {
        let Some(limiter) = self.limiter.as_ref().filter(|_| !self.keys.is_empty()) else {
            return Permit { release: None };
        };
        let req = Request { keys: &self.keys, holder: limiter.inner.holder, window: WINDOW, lease: self.lease };
        let started = Instant::now();
        // Time slept while each key refused, and by which of its limits.
        let mut waited: BTreeMap<&str, Duration> = BTreeMap::new();
        let mut counted: Vec<(String, LimitKind)> = Vec::new();
        let mut poll = POLL_FIRST;
        let mut db_pause = DB_RETRY_FIRST;
        loop {
            match db::acquire(&limiter.inner.pool, &req).await {
                Ok(Verdict::Granted { lease_id }) => {
                    for k in &self.keys {
                        let w = waited.get(k.key.as_str()).copied().unwrap_or_default();
                        metrics::LIMIT_WAIT.with_label_values(&[&k.key]).observe(w.as_secs_f64());
                    }
                    if !waited.is_empty() {
                        tracing::debug!(keys = ?waited.keys().collect::<Vec<_>>(), waited_ms = started.elapsed().as_millis() as u64, "provider call allowed after waiting on its limits");
                    }
                    let release = lease_id.map(|lease_id| Release {
                        limiter: limiter.clone(),
                        keys: self.keys.iter().filter(|k| k.limits.max_concurrent.is_some()).map(|k| k.key.clone()).collect(),
                        lease_id,
                    });
                    return Permit { release };
                }
                Ok(Verdict::Refused(refusals)) => {
                    db_pause = DB_RETRY_FIRST;
                    // Every key must allow the call: sleep until the latest
                    // known instant one of them can (a per-minute wait is
                    // exact), at most a poll for a concurrency limit (a
                    // release is not announced across workers).
                    let mut pause = Duration::ZERO;
                    let mut only_concurrency = true;
                    for r in &refusals {
                        let p = match r.kind {
                            LimitKind::RequestsPerMinute => {
                                only_concurrency = false;
                                r.retry_in + jitter()
                            }
                            LimitKind::Concurrency => r.retry_in.min(poll),
                        };
                        pause = pause.max(p);
                        if !counted.iter().any(|(k, kind)| *k == r.key && *kind == r.kind) {
                            metrics::LIMIT_WAITS.with_label_values(&[&r.key, r.kind.as_str()]).inc();
                            counted.push((r.key.clone(), r.kind));
                        }
                    }
                    tracing::debug!(refusals = ?refusals, pause_ms = pause.as_millis() as u64, "provider call waits for its limits");
                    let slept = Instant::now();
                    if only_concurrency {
                        // A permit of this process given back ends the pause early.
                        let notified = limiter.inner.released.notified();
                        tokio::select! {
                            () = tokio::time::sleep(pause) => {}
                            () = notified => {}
                        }
                        poll = (poll * 2).min(POLL_MAX);
                    } else {
                        tokio::time::sleep(pause).await;
                    }
                    let slept = slept.elapsed();
                    // Once per key per pause, whichever of its limits refused.
                    for k in self.keys.iter().filter(|k| refusals.iter().any(|r| r.key == k.key)) {
                        *waited.entry(k.key.as_str()).or_default() += slept;
                    }
                }
                Err(e) => {
                    metrics::LIMIT_ERRORS.inc();
                    tracing::warn!(error = %e, retry_in_ms = db_pause.as_millis() as u64, keys = ?self.keys().collect::<Vec<_>>(),
                        "provider limits unreachable in PostgreSQL; the call waits (limits fail closed)");
                    tokio::time::sleep(db_pause).await;
                    db_pause = (db_pause * 2).min(DB_RETRY_MAX);
                }
            }
        }
    }
}

fn jitter() -> Duration {
    rand::thread_rng().gen_range(Duration::ZERO..=JITTER_MAX)
}

/// One call's place under its limits: its concurrency slots are given back
/// when it is dropped (in a task of its own: dropping never blocks).
#[derive(Debug)]
#[must_use = "a permit gives its slots back when dropped: hold it while the call is in flight"]
pub struct Permit {
    release: Option<Release>,
}

#[derive(Debug)]
struct Release {
    limiter: Limiter,
    keys: Vec<String>,
    lease_id: Uuid,
}

impl Permit {
    /// Whether dropping this permit gives slots back (a route with a
    /// concurrency limit).
    pub fn holds_slots(&self) -> bool {
        self.release.is_some()
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let Some(Release { limiter, keys, lease_id }) = self.release.take() else { return };
        // Outside a runtime (a permit dropped while the process ends) the
        // lease is left to expire.
        let Ok(handle) = tokio::runtime::Handle::try_current() else { return };
        handle.spawn(async move {
            if let Err(e) = db::release(&limiter.inner.pool, &keys, lease_id).await {
                metrics::LIMIT_ERRORS.inc();
                tracing::warn!(error = %e, ?keys, "could not give a provider call's slots back; they count until the lease expires");
            }
            limiter.inner.released.notify_waiters();
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpeak_core::providers::Limits;
    use sqlx::postgres::PgPoolOptions;

    /// A pool that never reached a server: it opens a connection only when
    /// a query needs one, and that connection fails.
    fn unreachable_pool() -> PgPool {
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://nobody@127.0.0.1:1/none")
            .expect("a valid URL")
    }

    #[tokio::test]
    async fn a_gate_without_keys_passes_at_once_and_makes_no_query() {
        let pool = unreachable_pool();
        let limiter = Limiter::new(pool.clone());
        let unlimited = LimitKey { key: "provider:sim".into(), limits: Limits::default() };
        for gate in [Gate::new(&limiter, vec![], Duration::from_secs(10)), Gate::new(&limiter, vec![unlimited], Duration::from_secs(10)), Gate::default()] {
            assert!(!gate.is_limited());
            let permit = tokio::time::timeout(Duration::from_millis(50), gate.pass()).await.expect("passes at once");
            assert!(!permit.holds_slots());
            drop(permit);
        }
        tokio::task::yield_now().await;
        assert_eq!(pool.size(), 0, "no connection was ever opened");
    }

    #[tokio::test]
    async fn a_limited_gate_waits_while_postgres_is_unreachable() {
        let limiter = Limiter::new(unreachable_pool());
        let key = LimitKey { key: "provider:sim".into(), limits: Limits { requests_per_minute: Some(10), max_concurrent: None } };
        let gate = Gate::new(&limiter, vec![key], Duration::from_secs(10));
        assert!(gate.is_limited());
        let before = metrics::LIMIT_ERRORS.get();
        assert!(tokio::time::timeout(Duration::from_millis(700), gate.pass()).await.is_err(), "fails closed: no permit without the database");
        assert!(metrics::LIMIT_ERRORS.get() > before, "each failed attempt is counted");
    }

    #[tokio::test]
    async fn keys_are_sorted_and_unlimited_ones_left_out() {
        let limiter = Limiter::new(unreachable_pool());
        let l = Limits { requests_per_minute: Some(1), max_concurrent: None };
        let gate = Gate::new(
            &limiter,
            vec![
                LimitKey { key: "provider:b".into(), limits: l },
                LimitKey { key: "model:a".into(), limits: Limits::default() },
                LimitKey { key: "model:c".into(), limits: l },
            ],
            Duration::from_secs(5),
        );
        assert_eq!(gate.keys().collect::<Vec<_>>(), ["model:c", "provider:b"]);
        assert_eq!(gate.lease, Duration::from_secs(35));
    }
}
