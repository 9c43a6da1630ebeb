//! The release round's cache step: before due jobs are batched, identical
//! ones are answered from the cache or coalesced, so each distinct request
//! reaches the provider once (see `offpeak_store::cache` for the
//! states and locks).
//!
//! For the claimed jobs that have a cache key, in the round's transaction:
//!
//! 1. lock the keys' leaders already in flight (queued or running);
//! 2. look the other keys up in the cache (after step 1, so a leader that
//!    finished while step 1 waited is found here);
//! 3. [`plan`]: a job whose key has a result is answered; a job whose key
//!    has a leader in flight follows it; of several due jobs with one key,
//!    the first (lowest id) leads and the others follow it;
//! 4. write the answers; only the leaders (and jobs without a key) go on
//!    to be batched;
//! 5. once the round has queued its leaders, [`attach_followers`].

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use offpeak_store::cache::{self, Answer, CacheHit};
use offpeak_store::release::ClaimedJob;
use offpeak_core::prices::PriceTable;

use crate::admission::CacheConfig;
use crate::metrics;

/// What [`plan`] decided for a round's claimed jobs.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Jobs to batch and send to the provider.
    pub send: Vec<ClaimedJob>,
    /// Jobs answered from the cache: (job, model, hit).
    pub answer: Vec<(Uuid, String, CacheHit)>,
    /// Jobs to wait for a leader: (follower, leader, model).
    pub follow: Vec<(Uuid, Uuid, String)>,
}

/// Decides, without touching the database, what becomes of each claimed
/// job given the leaders in flight and the cached results of their keys.
pub fn plan(mut claimed: Vec<ClaimedJob>, in_flight: &HashMap<Vec<u8>, Uuid>, cached: &HashMap<Vec<u8>, CacheHit>) -> Plan {
    claimed.sort_by_key(|j| j.id);
    let mut plan = Plan::default();
    let mut leaders: HashMap<Vec<u8>, Uuid> = HashMap::new();
    for job in claimed {
        let Some(key) = job.cache_key.clone() else {
            plan.send.push(job);
            continue;
        };
        if let Some(hit) = cached.get(&key) {
            plan.answer.push((job.id, job.model, hit.clone()));
        } else if let Some(&leader) = in_flight.get(&key).or_else(|| leaders.get(&key)) {
            plan.follow.push((job.id, leader, job.model));
        } else {
            leaders.insert(key, job.id);
            plan.send.push(job);
        }
    }
    plan
}

/// What the cache step decided and did in a round, before the round's jobs
/// are queued.
#[derive(Debug, Default)]
pub struct CacheStep {
    /// Jobs to batch and send to the provider.
    pub send: Vec<ClaimedJob>,
    /// Jobs answered from the cache (written).
    pub answered: u64,
    /// Jobs to attach to their leader once the round's leaders are queued:
    /// (follower, leader, model).
    pub follow: Vec<(Uuid, Uuid, String)>,
}

/// Runs the cache step on a round's claimed jobs in the round's
/// transaction: answers what the cache can, and returns the jobs still to
/// send and the followers to attach.
///
/// # Errors
/// Database errors; the round rolls back.
pub async fn run(
    conn: &mut PgConnection,
    claimed: Vec<ClaimedJob>,
    config: CacheConfig,
    prices: &PriceTable,
    now: DateTime<Utc>,
) -> Result<CacheStep, sqlx::Error> {
    if !claimed.iter().any(|j| j.cache_key.is_some()) || !config.enabled() {
        return Ok(CacheStep { send: claimed, ..Default::default() });
    }
    let plan = plan_locked(conn, claimed, config, now).await?;

    let answers: Vec<Answer> = plan
        .answer
        .iter()
        .map(|(id, model, hit)| Answer { id: *id, hit: hit.clone(), list_credits: prices.price(model).unwrap_or(0), similarity: None })
        .collect();
    let answered = cache::answer(conn, &answers, now).await?;

    // Counted before the commit: a round that then fails counts jobs that
    // will be counted again. Rare (the publish or commit failing), and these
    // counters are for dashboards, not accounts; the ledger is the account.
    let answered_ids: std::collections::HashSet<Uuid> = answered.iter().copied().collect();
    for a in answers.iter().filter(|a| answered_ids.contains(&a.id)) {
        let model = plan.answer.iter().find(|(id, _, _)| *id == a.id).map_or("", |(_, m, _)| m.as_str());
        metrics::CACHE_HITS.with_label_values(&[model, "release"]).inc();
        metrics::CREDITS_SAVED.with_label_values(&[model, "cache"]).inc_by(u64::try_from(a.list_credits).unwrap_or(0));
    }
    Ok(CacheStep { send: plan.send, answered: answered.len() as u64, follow: plan.follow })
}

/// Steps 1 to 3 on `claimed`, in the caller's transaction, which holds the
/// release lock of every model among them: the leaders in flight of their keys are locked until it
/// ends, and the plan is made from them and the cache. Shared by a release
/// round and a submission released at once (`crate::direct`), so both
/// follow one rule.
///
/// # Errors
/// Database errors only.
pub async fn plan_locked(conn: &mut PgConnection, claimed: Vec<ClaimedJob>, config: CacheConfig, now: DateTime<Utc>) -> Result<Plan, sqlx::Error> {
    let mut keys: Vec<Vec<u8>> = claimed.iter().filter_map(|j| j.cache_key.clone()).collect();
    if keys.is_empty() || !config.enabled() {
        return Ok(Plan { send: claimed, ..Default::default() });
    }
    keys.sort();
    keys.dedup();
    let in_flight = cache::lock_leaders(conn, &keys).await?;
    let rest: Vec<Vec<u8>> = keys.into_iter().filter(|k| !in_flight.contains_key(k)).collect();
    let cached = cache::lookup(conn, &rest, config.since(now)).await?;
    Ok(plan(claimed, &in_flight, &cached))
}

/// Step 5: attaches the round's followers to their leaders, after the round
/// has queued its own leaders (see `cache::attach`). Returns how many were
/// attached.
///
/// # Errors
/// Database errors; the round rolls back.
pub async fn attach_followers(conn: &mut PgConnection, follow: &[(Uuid, Uuid, String)], now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let pairs: Vec<(Uuid, Uuid)> = follow.iter().map(|(f, l, _)| (*f, *l)).collect();
    let attached: std::collections::HashSet<Uuid> = cache::attach(conn, &pairs, now).await?.into_iter().collect();
    for (_, _, model) in follow.iter().filter(|(f, _, _)| attached.contains(f)) {
        metrics::JOBS_COALESCED.with_label_values(&[model]).inc();
    }
    Ok(attached.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn job(key: Option<u8>) -> ClaimedJob {
        ClaimedJob { id: Uuid::now_v7(), tenant_id: Uuid::nil(), model: "flux-dev".into(), cache_key: key.map(|k| vec![k]), semantic: false }
    }

    #[test]
    fn identical_due_jobs_send_one_leader_and_the_rest_follow_it() {
        let jobs: Vec<ClaimedJob> = (0..10).map(|_| job(Some(1))).collect();
        let first = jobs[0].id;
        let p = plan(jobs, &HashMap::new(), &HashMap::new());
        assert_eq!(p.send.len(), 1);
        assert_eq!(p.send[0].id, first);
        assert_eq!(p.follow.len(), 9);
        assert!(p.follow.iter().all(|(_, leader, _)| *leader == first));
    }

    #[test]
    fn a_cached_result_answers_and_a_leader_in_flight_is_followed() {
        let leader = Uuid::now_v7();
        let hit = CacheHit { source: Uuid::now_v7(), result: json!({"url": "x"}) };
        let in_flight = HashMap::from([(vec![2], leader)]);
        let cached = HashMap::from([(vec![1], hit.clone())]);
        let (a, b, c, d) = (job(Some(1)), job(Some(2)), job(Some(3)), job(None));
        let p = plan(vec![a.clone(), b.clone(), c.clone(), d.clone()], &in_flight, &cached);
        assert_eq!(p.answer, vec![(a.id, a.model.clone(), hit)]);
        assert_eq!(p.follow, vec![(b.id, leader, b.model.clone())]);
        let sent: Vec<Uuid> = p.send.iter().map(|j| j.id).collect();
        assert_eq!(sent, vec![c.id, d.id]);
    }

    #[test]
    fn jobs_without_a_key_are_all_sent() {
        let p = plan(vec![job(None), job(None)], &HashMap::new(), &HashMap::new());
        assert_eq!(p.send.len(), 2);
        assert!(p.follow.is_empty() && p.answer.is_empty());
    }
}
