//! Cost controls, second part: the exact cache (answers at submission and
//! at release, TTL, `"cache": false`), in-flight coalescing of identical
//! jobs, and daily credit quotas per tenant and per user (exact under
//! concurrency, released by failures, cache hits and cancellations).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::firing::{FiringConfig, Firer};
use offpeak_core::clock::Clock;
use offpeak_store::cache;
use offpeak_store::tenants::{self, TenantUpdate};
use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;
use offpeak_worker::process::process_batch;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn id_of(body: &Value) -> Uuid {
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).parse().unwrap()
}

/// A UTC tenant at 03:00 UTC: inside its window, so every job is due at once.
async fn env_in_window() -> (TestEnv, String) {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    (env, key)
}

async fn submit(env: &TestEnv, key: &str, body: Value) -> Uuid {
    let (status, resp) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{resp}");
    id_of(&resp)
}

/// Ledger rows that disagree with the jobs table (see costs.rs), cache hits included.
async fn ledger_disagreements(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_view j FULL JOIN usage_ledger l ON l.job_id = j.id
         WHERE (j.state = 'succeeded' OR l.job_id IS NOT NULL)
           AND (j.id IS NULL OR l.job_id IS NULL OR j.state <> 'succeeded'
                OR l.tenant_id <> j.tenant_id OR l.user_id IS DISTINCT FROM j.user_id OR l.model <> j.model
                OR l.credits <> j.credits OR l.finished_at <> j.finished_at OR l.cache_hit <> j.cache_hit)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_second_identical_job_is_answered_at_submission_for_zero_credits_without_calling_the_provider() {
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    let first = submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "a red fox", "size": [512, 512]}})).await;
    env.release_and_work(&ctx).await;
    assert_eq!(env.sim.sim.stats().items, 1);

    // The same input, keys in another order and spaced differently.
    let body = r#"{"model": "flux-dev", "input": { "size": [512,512], "prompt": "a red fox" }}"#;
    let resp = env.http.post(env.url("/v1/jobs")).bearer_auth(&key).header("content-type", "application/json").body(body).send().await.unwrap();
    let (status, second) = TestEnv::read(resp).await;
    assert_eq!(status, 201, "{second}");
    assert_eq!(second["state"], "succeeded", "{second}");
    assert_eq!(second["cache_hit"], true);
    assert_eq!(second["credits"], 0);
    assert_eq!(second["cache_source"], first.to_string());
    let first_row = env.job(first).await;
    assert_eq!(first_row.credits, Some(2));
    assert!(!first_row.cache_hit);
    assert_eq!(second["result"], first_row.result.unwrap());

    // Nothing more reached the provider, and the usage shows the saving.
    env.release_and_work(&ctx).await;
    assert_eq!(env.sim.sim.stats().items, 1);
    let (_, usage) = env.get(&key, "/v1/usage?group_by=model").await;
    assert_eq!(usage["groups"]["flux-dev"]["requests"], 2, "{usage}");
    assert_eq!(usage["groups"]["flux-dev"]["credits"], 2, "{usage}");
    assert_eq!(usage["groups"]["flux-dev"]["saved_cache"], 2, "{usage}");
    assert_eq!(ledger_disagreements(&env).await, 0);

    // A bulk submission counts its cache hits.
    let (status, bulk) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": [{"prompt": "a red fox", "size": [512, 512]}, {"prompt": "new"}]})).await;
    assert_eq!(status, 201, "{bulk}");
    assert_eq!(bulk["cache_hits"], 1, "{bulk}");
}

#[tokio::test]
async fn ten_identical_concurrent_jobs_cost_one_provider_item() {
    let mut env = TestEnv::with(EnvOptions { sim: SimConfig { latency: Duration::from_millis(200), ..Default::default() }, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    env.start_release_loop();
    env.start_worker();
    let body = json!({"model": "flux-pro", "input": {"prompt": "same"}, "priority": "normal"});
    let ids: Vec<Uuid> =
        futures_util::future::join_all((0..10).map(|_| submit(&env, &key, body.clone()))).await;
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"), "{:?}", rows.iter().map(|r| &r.state).collect::<Vec<_>>());
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 1, "{stats:?}");
    let charged: Vec<&offpeak_store::jobs::JobRow> = rows.iter().filter(|r| !r.cache_hit).collect();
    assert_eq!(charged.len(), 1);
    assert_eq!(charged[0].credits, Some(5));
    for r in rows.iter().filter(|r| r.cache_hit) {
        assert_eq!(r.credits, Some(0));
        assert_eq!(r.cache_source, Some(charged[0].id));
        assert_eq!(r.result, charged[0].result);
    }
    assert_eq!(ledger_disagreements(&env).await, 0);
}

#[tokio::test]
async fn a_job_released_while_an_identical_one_is_in_flight_waits_for_it() {
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    let leader = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": 1}})).await;
    env.release_once().await;
    assert_eq!(env.job(leader).await.state, "queued");

    let follower = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": 1}})).await;
    let report = env.release_once().await;
    assert_eq!((report.released, report.coalesced), (0, 1), "{report:?}");
    let (_, view) = env.get(&key, &format!("/v1/jobs/{follower}")).await;
    assert_eq!(view["state"], "queued");
    assert_eq!(view["cache_source"], leader.to_string());

    env.work_released(&ctx).await;
    let f = env.job(follower).await;
    assert_eq!((f.state.as_str(), f.cache_hit, f.credits), ("succeeded", true, Some(0)));
    assert_eq!(f.result, env.job(leader).await.result);
    assert_eq!(env.sim.sim.stats().items, 1);
}

/// The race the finish's lock is for: a release round attaches a follower to
/// a leader whose batch is finishing at that moment. The finish waits for
/// the round to commit and answers the follower with the leader; without
/// the wait the follower would stay `queued` behind a finished leader.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_finishing_while_a_round_attaches_a_follower_answers_the_follower() {
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    let leader = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "race"}})).await;
    env.release_once().await;
    let batch = env.queued_batches().await.pop().expect("the leader's batch");
    let follower = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "race"}})).await;
    let cache_key: Vec<u8> = sqlx::query_scalar("SELECT cache_key FROM jobs WHERE id = $1").bind(follower).fetch_one(&env.pool).await.unwrap();

    // The follower's round, up to its commit.
    let mut round = env.pool.begin().await.unwrap();
    let leaders = cache::lock_leaders(&mut round, std::slice::from_ref(&cache_key)).await.unwrap();
    assert_eq!(leaders.get(&cache_key), Some(&leader));
    assert_eq!(cache::attach(&mut round, &[(follower, leader)], env.clock.now()).await.unwrap(), vec![follower]);

    // The leader's batch is worked meanwhile: its finish must wait.
    let worker = tokio::spawn({
        let ctx = ctx.clone();
        async move { process_batch(&ctx, &batch).await }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_locks WHERE NOT granted").fetch_one(&env.pool).await.unwrap();
        if waiting > 0 || worker.is_finished() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the batch neither finished nor waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    round.commit().await.unwrap();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.succeeded, 1, "{report:?}");

    let f = env.job(follower).await;
    assert_eq!((f.state.as_str(), f.cache_hit, f.credits), ("succeeded", true, Some(0)), "{f:?}");
    assert_eq!(f.result, env.job(leader).await.result);
    assert_eq!(env.sim.sim.stats().items, 1);
    assert_eq!(ledger_disagreements(&env).await, 0);
}

#[tokio::test]
async fn followers_share_a_permanent_failure_and_get_their_own_chance_when_the_leader_is_cancelled() {
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    // Cancelling the leader puts its follower back; it is then sent itself.
    let leader = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "c"}})).await;
    env.release_once().await;
    let follower = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "c"}})).await;
    env.release_once().await;
    assert_eq!(env.job(follower).await.cache_source, Some(leader));
    let (status, _) = env.delete(&key, &format!("/v1/jobs/{leader}")).await;
    assert_eq!(status, 200);
    let f = env.job(follower).await;
    assert_eq!((f.state.as_str(), f.cache_source), ("held", None));
    env.work_released(&ctx).await; // the cancelled leader's batch: nothing to do
    env.release_and_work(&ctx).await;
    let f = env.job(follower).await;
    assert_eq!((f.state.as_str(), f.cache_hit, f.credits), ("succeeded", false, Some(1)));

    // A rejected prompt fails its followers the same way, for 0 credits.
    env.sim.sim.set_config(SimConfig { item_error_rate: 1.0, ..Default::default() });
    let ids: Vec<Uuid> = futures_util::future::join_all(
        (0..3).map(|_| submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "rejected"}}))),
    )
    .await;
    env.release_and_work(&ctx).await;
    for id in ids {
        let j = env.job(id).await;
        assert_eq!((j.state.as_str(), j.credits), ("failed", Some(0)), "{j:?}");
        assert_eq!(j.error.unwrap()["code"], "content_rejected");
    }
    assert_eq!(env.sim.sim.stats().item_errors, 1);
}

#[tokio::test]
async fn cache_false_and_an_expired_ttl_call_the_provider_again() {
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": 1}})).await;
    env.release_and_work(&ctx).await;
    let opted_out = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": 1}, "cache": false})).await;
    env.release_and_work(&ctx).await;
    let j = env.job(opted_out).await;
    assert_eq!((j.state.as_str(), j.cache_hit, j.credits), ("succeeded", false, Some(1)));
    assert_eq!(env.sim.sim.stats().items, 2);

    // A day (the default TTL) and a second later, the results no longer answer.
    env.clock.advance(TimeDelta::hours(24) + TimeDelta::seconds(1));
    let (_, view) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": 1}, "priority": "normal"})).await;
    assert_eq!(view["state"], "held", "{view}");
    env.release_and_work(&ctx).await;
    assert_eq!(env.sim.sim.stats().items, 3);
}

#[tokio::test]
async fn a_held_job_is_answered_at_release_by_an_identical_job_that_ran_since() {
    // 03:00 UTC: UTC's window is open, New York's (02:00 EDT = 06:00 UTC) is not.
    let (env, key) = env_in_window().await;
    let ctx = env.batch_context();
    let ny = submit(&env, &key, json!({"model": "flux-dev", "input": {"p": "x"}, "timezone": "America/New_York"})).await;
    let utc = submit(&env, &key, json!({"model": "flux-dev", "input": {"p": "x"}})).await;
    env.release_and_work(&ctx).await;
    assert_eq!(env.job(utc).await.state, "succeeded");
    assert_eq!(env.job(ny).await.state, "held");

    env.clock.set(at("2027-06-01T06:00:00Z"));
    let report = env.release_once().await;
    assert_eq!((report.answered, report.released), (1, 0), "{report:?}");
    let j = env.job(ny).await;
    assert_eq!((j.state.as_str(), j.cache_hit, j.credits, j.cache_source), ("succeeded", true, Some(0), Some(utc)));
    assert_eq!(env.sim.sim.stats().items, 1);
    assert_eq!(ledger_disagreements(&env).await, 0);
}

#[tokio::test]
async fn the_cache_is_per_tenant() {
    let (env, a) = env_in_window().await;
    let b = env.tenant("other", "UTC").await;
    let ctx = env.batch_context();
    submit(&env, &a, json!({"model": "flux-schnell", "input": {"p": 1}})).await;
    env.release_and_work(&ctx).await;
    let (_, view) = env.post(&b, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": 1}})).await;
    assert_eq!(view["state"], "held", "another tenant's result must not answer: {view}");
}

/// Submits the `i`-th job of the quota test under `Idempotency-Key: k-i`.
async fn replay_with_key(env: &TestEnv, key: &str, i: usize) -> (u16, Value) {
    let body = json!({"model": "flux-dev", "input": {"n": i}});
    let resp = env.http.post(env.url("/v1/jobs")).bearer_auth(key).header("idempotency-key", format!("k-{i}")).json(&body).send().await.unwrap();
    TestEnv::read(resp).await
}

async fn set_limits(env: &TestEnv, tenant: Option<i64>, per_user: Option<i64>) {
    let u = TenantUpdate { daily_credits: Some(tenant), user_daily_credits: Some(per_user), ..Default::default() };
    tenants::update(&env.pool, "acme", &u).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_tenant_limit_refuses_at_the_exact_limit_under_fifty_concurrent_submissions() {
    let (env, key) = env_in_window().await;
    set_limits(&env, Some(40), None).await;
    // flux-dev costs 2: exactly 20 of 50 fit.
    let results = futures_util::future::join_all((0..50).map(|i| {
        let (env, key) = (&env, &key);
        async move { replay_with_key(env, key, i).await }
    }))
    .await;
    let accepted = results.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Value> = results.iter().filter(|(s, _)| *s == 429).map(|(_, b)| b).collect();
    assert_eq!((accepted, refused.len()), (20, 30), "{results:?}");
    assert_eq!(env.count_jobs().await, 20);
    let e = &refused[0]["error"];
    assert_eq!(e["code"], "quota_exceeded");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("daily credit limit of 40") && msg.contains("40 credits used") && msg.contains("resets at 2027-06-02T00:00:00"), "{msg}");
    assert_eq!(e["details"]["limit"], 40);
    assert_eq!(e["details"]["used"], 40);
    assert_eq!(e["details"]["requested"], 2);
    assert_eq!(e["details"]["resets_at"], "2027-06-02T00:00:00Z");
    let (_, tenant) = env.get(&key, "/v1/tenant").await;
    assert_eq!(tenant["quota"]["used"], 40, "{tenant}");
    assert_eq!(tenant["quota"]["remaining"], 0, "{tenant}");
    // A replay of an accepted request is still answered with its job.
    let first = results.iter().position(|(s, _)| *s == 201).unwrap();
    let (status, replayed) = replay_with_key(&env, &key, first).await;
    assert_eq!(status, 200, "{replayed}");

    // The next day of the tenant's timezone starts afresh.
    env.clock.set(at("2027-06-02T00:00:00Z"));
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"n": "tomorrow"}})).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn a_bulk_submission_is_accepted_or_refused_whole_and_per_user_limits_apply_per_user() {
    let (env, key) = env_in_window().await;
    set_limits(&env, Some(100), Some(5)).await;
    let inputs = |n: usize, tag: &str| (0..n).map(|i| json!({"i": i, "t": tag})).collect::<Vec<_>>();
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs(6, "a"), "user_id": "ann"})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["field"], "user_id");
    assert!(body["error"]["message"].as_str().unwrap().contains("user_id 'ann'"), "{body}");
    assert_eq!(env.count_jobs().await, 0);
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs(5, "a"), "user_id": "ann"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, _) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"one": "more"}, "user_id": "ann"})).await;
    assert_eq!(status, 429);
    // Another user, and jobs without a user, only meet the tenant's limit.
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs(5, "b"), "user_id": "bob"})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs(90, "c")})).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"x": 1}})).await;
    assert_eq!(status, 429, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("tenant 'acme'"), "{body}");
}

#[tokio::test]
async fn failures_cancellations_and_cache_hits_give_their_reservation_back() {
    let (env, key) = env_in_window().await;
    set_limits(&env, Some(4), None).await;
    let ctx = env.batch_context();
    // flux-schnell costs 1, flux-dev 2: these fill the day's 4 credits.
    let ok = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "ok"}})).await;
    let cancelled = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "cancel me"}})).await;
    let rejected = submit(&env, &key, json!({"model": "flux-dev", "input": {"p": "rejected"}})).await;
    let (status, _) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": "full"}})).await;
    assert_eq!(status, 429);

    let (status, _) = env.delete(&key, &format!("/v1/jobs/{cancelled}")).await;
    assert_eq!(status, 200);
    let replacement = submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": "replacement"}})).await;
    let (status, _) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": "full"}})).await;
    assert_eq!(status, 429);

    // `ok` and `replacement` succeed (1 credit each); the flux-dev job is
    // rejected by the provider and costs nothing: 2 credits free again.
    env.release_once().await;
    for msg in env.queued_batches().await {
        let rate = if msg.model == "flux-dev" { 1.0 } else { 0.0 };
        env.sim.sim.set_config(SimConfig { item_error_rate: rate, ..Default::default() });
        process_batch(&ctx, &msg).await.unwrap();
    }
    env.sim.sim.set_config(SimConfig::default());
    assert_eq!(env.job(ok).await.state, "succeeded");
    assert_eq!(env.job(replacement).await.state, "succeeded");
    assert_eq!(env.job(rejected).await.state, "failed");
    submit(&env, &key, json!({"model": "flux-dev", "input": {"p": "fits"}})).await;
    let (status, _) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": "full"}})).await;
    assert_eq!(status, 429);

    // A cache hit costs nothing, so it is accepted even on a full day.
    let (status, hit) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"p": "ok"}})).await;
    assert_eq!(status, 201, "{hit}");
    assert_eq!(hit["cache_hit"], true);
    let (_, tenant) = env.get(&key, "/v1/tenant").await;
    assert_eq!(tenant["quota"]["used"], 4, "{tenant}");
}

#[tokio::test]
async fn a_schedule_firing_over_the_limit_stores_a_failed_job_that_says_why() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), api: ApiConfig::default(), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    set_limits(&env, Some(0), None).await;
    let (status, body) = env
        .post(&key, "/v1/schedules", &json!({"name": "n", "cron": "0 * * * * *", "timezone": "UTC", "job": {"model": "flux-schnell", "input": {"p": 1}}}))
        .await;
    assert_eq!(status, 201, "{body}");
    env.clock.advance(TimeDelta::minutes(1));
    let firer = Firer::new(env.pool.clone(), env.shared_clock(), FiringConfig::default());
    let report = firer.run_once().await.unwrap();
    assert_eq!((report.created, report.refused), (1, 1), "{report:?}");
    let (_, list) = env.get(&key, "/v1/jobs").await;
    let job = &list["jobs"][0];
    assert_eq!(job["state"], "failed", "{job}");
    assert_eq!(job["credits"], 0);
    assert_eq!(job["error"]["code"], "quota_exceeded");
    assert!(job["error"]["message"].as_str().unwrap().contains("daily credit limit of 0"), "{job}");
}

#[tokio::test]
async fn a_limit_set_during_the_day_counts_the_work_already_submitted_that_day() {
    let (env, key) = env_in_window().await;
    for i in 0..3 {
        submit(&env, &key, json!({"model": "flux-dev", "input": {"morning": i}})).await;
    }
    set_limits(&env, Some(7), None).await;
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"noon": 1}})).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"]["details"]["used"], 6, "{body}");
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"noon": 1}})).await;
    assert_eq!(status, 201, "{body}");
}
