//! Job groups: every bulk submission is one, single submissions may name
//! one; counts by state, results as JSON Lines, and completion written once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::clock::Clock as _;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// 03:00 UTC: inside the window, so low-priority jobs are due at once.
fn in_window() -> EnvOptions {
    EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }
}

async fn group_events(env: &TestEnv, group_id: Uuid) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries WHERE event_type = 'group.completed' AND payload->'data'->>'id' = $1")
        .bind(group_id.to_string())
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

async fn subscribe_all(env: &TestEnv, key: &str) {
    let (status, hook) = env.post(key, "/v1/webhooks", &json!({"url": "http://127.0.0.1:9/hook"})).await;
    assert_eq!(status, 201, "{hook}");
}

#[tokio::test]
async fn a_bulk_submission_is_a_group_counted_by_state_that_completes_once_with_its_results() {
    let mut opts = in_window();
    opts.api.webhooks_allow_private = true;
    let mut env = TestEnv::with(opts).await;
    let key = env.tenant("acme", "UTC").await;
    subscribe_all(&env, &key).await;
    let inputs: Vec<Value> = (0..30).map(|i| json!({"prompt": format!("tile {i}")})).collect();
    let (status, bulk) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs, "metadata": {"batch": "tiles"}})).await;
    assert_eq!(status, 201, "{bulk}");
    let group_id: Uuid = bulk["group_id"].as_str().expect("a bulk answer names its group").parse().unwrap();
    let (status, group) = env.get(&key, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(status, 200, "{group}");
    assert_eq!(group["counts"]["held"], 30);
    assert_eq!(group["counts"]["total"], 30);
    assert_eq!(group["completed_at"], Value::Null);
    let (_, job) = env.get(&key, &format!("/v1/jobs/{}", bulk_ids(&bulk)[0])).await;
    assert_eq!(job["group_id"], bulk["group_id"], "each job names its group");

    // Nothing completes while jobs are open.
    let deliverer = env.deliverer(TestEnv::test_delivery_config());
    assert_eq!(deliverer.run_once().await.unwrap().groups_completed, 0);

    env.start_worker();
    env.start_release_loop();
    env.wait_terminal(&bulk_ids(&bulk), Duration::from_secs(30)).await;
    let pass = deliverer.run_once().await.unwrap();
    assert_eq!(pass.groups_completed, 1);
    assert_eq!(deliverer.run_once().await.unwrap().groups_completed, 0, "completed once");
    assert_eq!(group_events(&env, group_id).await, 1, "one group.completed event");

    let (_, group) = env.get(&key, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(group["counts"]["succeeded"], 30, "{group}");
    assert_eq!(group["credits"], 30);
    assert!(group["completed_at"].is_string());
    let payload: Value = sqlx::query_scalar("SELECT payload FROM webhook_deliveries WHERE event_type = 'group.completed'")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(payload["type"], "group.completed");
    assert_eq!(payload["data"]["id"], bulk["group_id"]);
    assert_eq!(payload["data"]["counts"]["succeeded"], 30);
    assert_eq!(payload["data"]["counts"]["total"], 30);

    // The results, as JSON Lines, in id order, one per job.
    let resp = env.http.get(env.url(&format!("/v1/groups/{group_id}/results"))).bearer_auth(&key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jsonl");
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 30);
    let mut sorted = bulk_ids(&bulk);
    sorted.sort();
    let got: Vec<Uuid> = lines.iter().map(|l| l["id"].as_str().unwrap().parse().unwrap()).collect();
    assert_eq!(got, sorted);
    for l in &lines {
        assert_eq!(l["state"], "succeeded");
        assert!(l["result"].is_object(), "{l}");
        assert_eq!(l["credits"], 1);
        assert_eq!(l["metadata"], json!({"batch": "tiles"}));
    }
}

#[tokio::test]
async fn the_results_stream_reads_a_large_group_in_pages_and_another_tenant_sees_nothing() {
    let env = TestEnv::with(in_window()).await;
    let key = env.tenant("acme", "UTC").await;
    let other = env.tenant("other", "UTC").await;
    // More than two pages of the stream (500 each).
    let inputs: Vec<Value> = (0..1_234).map(|i| json!({"prompt": format!("p{i}")})).collect();
    let (status, bulk) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs})).await;
    assert_eq!(status, 201);
    let group_id = bulk["group_id"].as_str().unwrap();
    let resp = env.http.get(env.url(&format!("/v1/groups/{group_id}/results"))).bearer_auth(&key).send().await.unwrap();
    let text = resp.text().await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1_234);
    assert!(lines.iter().all(|l| l["state"] == "held" && l.get("result").is_none()));
    let mut seen: Vec<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    seen.dedup();
    assert_eq!(seen.len(), 1_234, "no job twice");

    let (status, err) = env.get(&other, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(status, 404, "{err}");
    let (status, _) = env.get(&other, &format!("/v1/groups/{group_id}/results")).await;
    assert_eq!(status, 404);
    let (status, _) = env.get(&key, &format!("/v1/groups/{}", Uuid::now_v7())).await;
    assert_eq!(status, 404);
    let (status, _) = env.get(&key, "/v1/groups/not-a-uuid").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn single_jobs_naming_a_group_share_it_and_a_completed_group_takes_no_more() {
    let env = TestEnv::with(in_window()).await;
    let key = env.tenant("acme", "UTC").await;
    let mut jobs = Vec::new();
    for i in 0..3 {
        let (status, job) = env
            .post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": format!("n{i}")}, "group": "nightly"}))
            .await;
        assert_eq!(status, 201, "{job}");
        jobs.push(job);
    }
    let group_id = jobs[0]["group_id"].as_str().unwrap().to_owned();
    assert!(jobs.iter().all(|j| j["group_id"] == group_id.as_str()), "one group per name");
    let (_, group) = env.get(&key, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(group["name"], "nightly");
    assert_eq!(group["counts"]["total"], 3);

    // Cancelling every job ends the group.
    for j in &jobs {
        let (status, _) = env.delete(&key, &format!("/v1/jobs/{}", j["id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
    }
    let deliverer = env.deliverer(TestEnv::test_delivery_config());
    assert_eq!(deliverer.run_once().await.unwrap().groups_completed, 1);
    let (_, group) = env.get(&key, &format!("/v1/groups/{group_id}")).await;
    assert_eq!(group["counts"]["cancelled"], 3, "{group}");
    assert!(group["completed_at"].is_string());

    let before = env.count_jobs().await;
    let (status, err) =
        env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "late"}, "group": "nightly"})).await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(err["error"]["code"], "group_completed");
    assert_eq!(err["error"]["field"], "group");
    assert_eq!(env.count_jobs().await, before, "nothing stored");

    for bad in [json!(""), json!("x".repeat(201)), json!("a\u{0}b"), json!(5)] {
        let (status, err) =
            env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "p"}, "group": bad})).await;
        assert_eq!(status, 422, "{bad}: {err}");
        assert_eq!(err["error"]["field"], "group", "{err}");
    }
    assert_eq!(env.count_jobs().await, before, "nothing stored");
}

#[tokio::test]
async fn cache_hits_at_submission_count_as_done_and_a_retried_dead_job_reopens_an_open_group_only() {
    let mut opts = in_window();
    opts.sim.item_error_rate = 0.0;
    let mut env = TestEnv::with(opts).await;
    let key = env.tenant("acme", "UTC").await;
    env.start_worker();
    env.start_release_loop();
    // A result to hit.
    let (_, first) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "same"}, "priority": "normal"})).await;
    env.wait_terminal(&[first["id"].as_str().unwrap().parse().unwrap()], Duration::from_secs(20)).await;
    // A bulk of two identical inputs, both answered at submission.
    let (status, bulk) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{"prompt": "same"}, {"prompt": "same"}]})).await;
    assert_eq!(status, 201, "{bulk}");
    assert_eq!(bulk["cache_hits"], 2);
    let deliverer = env.deliverer(TestEnv::test_delivery_config());
    assert_eq!(deliverer.run_once().await.unwrap().groups_completed, 1, "complete at once");

    // A group of one job that dies, then is retried by the operator:
    // the completed group stays completed and is not sent again.
    let group_id: Uuid = bulk["group_id"].as_str().unwrap().parse().unwrap();
    sqlx::query("UPDATE jobs SET state = 'dead' WHERE group_id = $1").bind(group_id).execute(&env.pool).await.unwrap();
    let f = offpeak_store::operator::RetryFilter {
        states: vec![offpeak_core::job::JobState::Dead],
        job_id: None,
        tenant_id: None,
        model: None,
        limit: 10,
    };
    let now = env.clock.now();
    for g in offpeak_store::operator::retry_groups(&env.pool, &f).await.unwrap() {
        offpeak_store::operator::retry(&env.pool, &f, &g, now, None, now).await.unwrap();
    }
    let progress: i64 = sqlx::query_scalar("SELECT COALESCE(sum(done), 0)::bigint FROM group_progress WHERE group_id = $1")
        .bind(group_id)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(progress, -2, "the retried jobs count as open again");
    assert_eq!(deliverer.run_once().await.unwrap().groups_completed, 0, "a completed group is not completed again");
    assert_eq!(group_events(&env, group_id).await, 0, "no endpoint, no event; and none written twice");
}
