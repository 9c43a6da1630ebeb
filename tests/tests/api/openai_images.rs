//! The `openai-images` adapter (issue #20) through the real worker code,
//! against the simulator's `POST /v1/images/generations` over HTTP and a
//! real PostgreSQL: one request per job, each job's outcome its own, every
//! successful image billed once.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::message::BatchMessage;
use offpeak_store::jobs::JobRow;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};
use offpeak_tests::sim::{self, SimConfig};
use offpeak_worker::process::{process_batch, BatchContext};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn env_with(sim: SimConfig) -> TestEnv {
    TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), sim, ..Default::default() }).await
}

/// `n` jobs of `flux-dev`, released: their ids and their batch's message.
async fn released(env: &TestEnv, n: usize) -> (Vec<Uuid>, Vec<BatchMessage>) {
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("a lighthouse, take {i}")})).collect();
    let (status, body) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs, "priority": "normal"}))
        .await;
    assert_eq!(status, 201, "{body}");
    env.release_once().await;
    (bulk_ids(&body), env.queued_batches().await)
}

async fn work(ctx: &BatchContext, batches: &[BatchMessage]) {
    for msg in batches {
        process_batch(ctx, msg).await.expect("work a batch");
    }
}

async fn jobs(env: &TestEnv, ids: &[Uuid]) -> Vec<JobRow> {
    let mut rows = Vec::new();
    for &id in ids {
        rows.push(env.job(id).await);
    }
    rows
}

fn states(rows: &[JobRow]) -> Vec<&'static str> {
    rows.iter().map(|j| j.state.as_str()).collect()
}

/// Turns a fault off once the simulator has answered `count` calls with it.
async fn until_then_heal(sim: &sim::Simulator, count: u64, seen: impl Fn(&sim::SimStats) -> u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen(&sim.stats()) < count {
        assert!(Instant::now() < deadline, "the fault was never hit {count} times: {:?}", sim.stats());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sim.set_config(SimConfig::default());
}

#[tokio::test]
async fn results_land_on_the_jobs_and_a_second_delivery_bills_nothing() {
    let env = env_with(SimConfig::default()).await;
    let (ids, batches) = released(&env, 12).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));

    // Two workers get the same batch at once (a redelivery racing the
    // original), then a third later.
    let (a, b) = tokio::join!(work(&ctx, &batches), work(&ctx, &batches));
    let ((), ()) = (a, b);
    work(&ctx, &batches).await;

    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["succeeded"; 12]);
    for j in &rows {
        let result = j.result.as_ref().expect("a result");
        assert!(result["data"][0]["b64_json"].is_string(), "the provider's whole answer: {result}");
        assert_eq!(result["created"], sim::images::IMAGES_CREATED);
    }
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.max_billed_per_input, stats.batches), (12, 1, 0), "{stats:?}");
    assert!(stats.image_calls >= 12);
    // Billed under the job's input as the provider's model was sent it.
    let billed = env.sim.sim.billed_inputs();
    for j in &rows {
        assert_eq!(billed.get(&sim::input_hash("gpt-image-1", &j.input)), Some(&1), "{}", j.input);
    }
}

#[tokio::test]
async fn content_policy_refusals_fail_only_their_jobs() {
    let env = env_with(SimConfig { item_error_rate: 0.5, seed: Some(7), ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 20).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));
    work(&ctx, &batches).await;

    let rows = jobs(&env, &ids).await;
    let failed: Vec<&JobRow> = rows.iter().filter(|j| j.state.as_str() == "failed").collect();
    let succeeded = rows.iter().filter(|j| j.state.as_str() == "succeeded").count();
    assert_eq!(failed.len() + succeeded, 20, "{:?}", states(&rows));
    assert!(!failed.is_empty() && succeeded > 0, "a mix at rate 0.5: {:?}", states(&rows));
    for j in &failed {
        let e = j.error.as_ref().expect("an error");
        assert_eq!(e["provider_code"], "content_policy_violation", "{e}");
        assert_eq!(e["provider_type"], "invalid_request_error", "{e}");
        assert!(e["message"].as_str().is_some_and(|m| m.contains("safety system")), "{e}");
        assert_eq!(j.attempts, 1, "a refusal is not retried");
    }
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.item_errors, stats.max_billed_per_input), (succeeded as u64, failed.len() as u64, 1));
}

#[tokio::test]
async fn a_429_is_waited_out_and_retried() {
    let env = env_with(SimConfig { rate_limit_rate: 1.0, ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 4).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));
    let started = Instant::now();
    tokio::join!(work(&ctx, &batches), until_then_heal(&env.sim.sim, 4, |s| s.rate_limited));

    assert!(started.elapsed() >= Duration::from_secs(sim::RETRY_AFTER_SECS), "retry-after honoured: {:?}", started.elapsed());
    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["succeeded"; 4]);
    assert!(rows.iter().all(|j| j.attempts >= 2));
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.max_billed_per_input), (4, 1));
}

#[tokio::test]
async fn server_errors_are_retried() {
    let env = env_with(SimConfig { error_rate: 1.0, ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 6).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));
    tokio::join!(work(&ctx, &batches), until_then_heal(&env.sim.sim, 6, |s| s.errors));

    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["succeeded"; 6]);
    assert!(rows.iter().all(|j| j.attempts >= 2));
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.max_billed_per_input), (6, 1));
}

#[tokio::test]
async fn garbage_is_retried() {
    let env = env_with(SimConfig { garbage_rate: 1.0, seed: Some(11), ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 6).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));
    tokio::join!(work(&ctx, &batches), until_then_heal(&env.sim.sim, 6, |s| s.garbage));

    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["succeeded"; 6]);
    for j in &rows {
        assert!(j.result.as_ref().is_some_and(|r| r["data"][0]["b64_json"].is_string()));
    }
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.max_billed_per_input), (6, 1));
}

#[tokio::test]
async fn timeouts_are_retried_then_dead_after_max_attempts() {
    let env = env_with(SimConfig { slow_rate: 1.0, slow: Duration::from_secs(3), ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 3).await;
    let ctx = env.batch_context_with(&env.images_catalog(|p| p.timeout = Some(Duration::from_millis(150))));
    work(&ctx, &batches).await;

    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["dead"; 3]);
    for j in &rows {
        assert_eq!(j.attempts, j.max_attempts, "tried every attempt");
        assert_eq!(j.error.as_ref().map(|e| e["code"].clone()), Some(Value::from("timeout")), "the last error: {:?}", j.error);
    }
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 0);
    assert_eq!(stats.slow, 3 * rows[0].max_attempts as u64);
}

#[tokio::test]
async fn jobs_out_of_attempts_are_dead_with_the_last_error() {
    let env = env_with(SimConfig { error_rate: 1.0, ..SimConfig::default() }).await;
    let (ids, batches) = released(&env, 3).await;
    let ctx = env.batch_context_with(&env.images_catalog(|_| {}));
    work(&ctx, &batches).await;

    let rows = jobs(&env, &ids).await;
    assert_eq!(states(&rows), vec!["dead"; 3]);
    for j in &rows {
        let e = j.error.as_ref().expect("the last error");
        assert!(e["code"] == "http_500" || e["code"] == "http_503", "{e}");
        assert_eq!(e["provider_type"], "server_error", "{e}");
        assert_eq!(j.attempts, j.max_attempts);
    }
    assert_eq!(env.sim.sim.stats().items, 0);
}
