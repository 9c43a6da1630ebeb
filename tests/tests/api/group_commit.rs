//! Group commit of single submissions: `POST /v1/jobs` without an
//! `Idempotency-Key` is committed together with the submissions waiting at
//! the same moment, and each keeps the outcome it would have had alone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::group_commit::GroupCommitConfig;
use offpeak_store::{quota, tenants::{self, TenantUpdate}};
use offpeak_tests::harness::{EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// One lane, so concurrent submissions must share transactions; 03:00 UTC,
/// inside every UTC tenant's window.
async fn env_with_one_lane() -> TestEnv {
    let api = ApiConfig { group_commit: GroupCommitConfig { lanes: 1, max_group: 64 }, ..ApiConfig::default() };
    TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), api, ..Default::default() }).await
}

async fn set_limits(env: &TestEnv, name: &str, tenant: Option<i64>, per_user: Option<i64>) {
    let u = TenantUpdate { daily_credits: Some(tenant), user_daily_credits: Some(per_user), ..Default::default() };
    tenants::update(&env.pool, name, &u).await.unwrap().unwrap();
}

/// Submits all `(key, body)` at once; the statuses, in order.
async fn submit_all(env: &TestEnv, requests: &[(String, Value)]) -> Vec<(u16, Value)> {
    futures_util::future::join_all(requests.iter().map(|(key, body)| env.post(key, "/v1/jobs", body))).await
}

/// (jobs, distinct transactions that inserted them) of a tenant.
async fn jobs_and_transactions(env: &TestEnv, tenant: &str) -> (i64, i64) {
    sqlx::query_as(
        "SELECT count(*), count(DISTINCT j.xmin::text) FROM jobs j JOIN tenants t ON t.id = j.tenant_id WHERE t.name = $1",
    )
    .bind(tenant)
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn concurrent_submissions_share_transactions_and_every_limit_holds_exactly() {
    let env = env_with_one_lane().await;
    let (a, b, c) = (env.tenant("ann-co", "UTC").await, env.tenant("bob-co", "UTC").await, env.tenant("cat-co", "UTC").await);
    set_limits(&env, "ann-co", Some(40), None).await; // flux-dev costs 2: 20 of 50 fit
    set_limits(&env, "bob-co", None, Some(6)).await; // flux-schnell costs 1: 6 per user
    let mut requests = Vec::new();
    for i in 0..50 {
        requests.push((a.clone(), json!({"model": "flux-dev", "input": {"i": i}})));
        if i < 20 {
            let user = if i % 2 == 0 { "u1" } else { "u2" };
            requests.push((b.clone(), json!({"model": "flux-schnell", "input": {"i": i}, "user_id": user})));
        }
        if i < 30 {
            requests.push((c.clone(), json!({"model": "flux-pro", "input": {"i": i}})));
        }
    }
    let results = submit_all(&env, &requests).await;

    let count = |key: &str, status: u16| requests.iter().zip(&results).filter(|((k, _), (s, _))| k == key && *s == status).count();
    assert_eq!((count(&a, 201), count(&a, 429)), (20, 30), "{results:?}");
    assert_eq!((count(&b, 201), count(&b, 429)), (12, 8), "{results:?}");
    assert_eq!(count(&c, 201), 30, "{results:?}");
    let refused = results.iter().find(|(s, _)| *s == 429).map(|(_, b)| b).unwrap();
    assert_eq!(refused["error"]["code"], "quota_exceeded", "{refused}");

    // What is stored is exactly what was accepted, reservations included.
    let (ann_jobs, ann_txs) = jobs_and_transactions(&env, "ann-co").await;
    let (bob_jobs, _) = jobs_and_transactions(&env, "bob-co").await;
    let (cat_jobs, cat_txs) = jobs_and_transactions(&env, "cat-co").await;
    assert_eq!((ann_jobs, bob_jobs, cat_jobs), (20, 12, 30));
    let per_user: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT user_id, sum(reserved_credits)::bigint FROM jobs j JOIN tenants t ON t.id = j.tenant_id
         WHERE t.name = 'bob-co' GROUP BY user_id ORDER BY user_id",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    assert_eq!(per_user, vec![(Some("u1".into()), 6), (Some("u2".into()), 6)]);
    let (_, tenant) = env.get(&a, "/v1/tenant").await;
    assert_eq!(tenant["quota"]["used"], 40, "{tenant}");

    // One lane and 100 concurrent requests: submissions were committed
    // together (jobs inserted by one transaction share its xmin).
    assert!(ann_txs + cat_txs < ann_jobs + cat_jobs, "every job had its own transaction: {ann_txs} + {cat_txs}");

    // Each answer is its own job.
    let ids: std::collections::HashSet<&str> =
        results.iter().filter(|(s, _)| *s == 201).map(|(_, b)| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 62);
}

#[tokio::test]
async fn a_group_whose_transaction_fails_is_retried_one_submission_at_a_time() {
    let env = env_with_one_lane().await;
    let good = env.tenant("good", "UTC").await;
    let gone = env.tenant("gone", "UTC").await;
    set_limits(&env, "good", Some(1000), None).await;
    // `gone`'s key is in the API's key cache, then the tenant is deleted:
    // its next job violates the jobs → tenants foreign key.
    let (status, _) = env.get(&gone, "/v1/tenant").await;
    assert_eq!(status, 200);
    sqlx::query("DELETE FROM tenants WHERE name = 'gone'").execute(&env.pool).await.unwrap();

    // Hold the lane: its first group waits for `good`'s quota lock, held
    // here, while the rest queue up behind it and form one group.
    let good_id: uuid::Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'good'").fetch_one(&env.pool).await.unwrap();
    let mut holder = env.pool.begin().await.unwrap();
    quota::lock_day(&mut holder, good_id, at("2027-06-01T03:00:00Z").date_naive()).await.unwrap();
    let first = tokio::spawn({
        let (url, key) = (env.url("/v1/jobs"), good.clone());
        async move { reqwest::Client::new().post(url).bearer_auth(key).json(&json!({"model": "flux-schnell", "input": {"first": 1}})).send().await }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut requests: Vec<(String, Value)> = (0..10).map(|i| (good.clone(), json!({"model": "flux-schnell", "input": {"i": i}}))).collect();
    requests.insert(5, (gone.clone(), json!({"model": "flux-schnell", "input": {"doomed": true}})));
    let rest = tokio::spawn({
        let env_url = env.url("/v1/jobs");
        async move {
            let http = reqwest::Client::new();
            futures_util::future::join_all(
                requests.iter().map(|(key, body)| http.post(&env_url).bearer_auth(key).json(body).send()),
            )
            .await
        }
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    holder.commit().await.unwrap();

    assert_eq!(first.await.unwrap().unwrap().status().as_u16(), 201);
    let statuses: Vec<u16> = rest.await.unwrap().into_iter().map(|r| r.unwrap().status().as_u16()).collect();
    assert_eq!(statuses[5], 500, "{statuses:?}");
    assert!(statuses.iter().enumerate().all(|(i, s)| i == 5 || *s == 201), "{statuses:?}");
    // The ten that shared the failed group were each committed alone.
    assert_eq!(jobs_and_transactions(&env, "good").await, (11, 11));
    let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE input ? 'doomed'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(orphans, 0);
    // Nor a `held_jobs` row (no foreign key) of a job that was not stored.
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM held_jobs h WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.id = h.id)")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(waiting, 0, "a held row without its job");
}
