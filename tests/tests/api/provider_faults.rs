//! The worker against a failing provider and duplicate deliveries: every job
//! reaches exactly one terminal state and the provider bills every
//! successful item once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use uuid::Uuid;

use offpeak_core::clock::Clock;
use offpeak_core::message::BatchMessage;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;
use offpeak_worker::process::process_batch;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn submit(env: &TestEnv, key: &str, n: usize, model: &str) -> Vec<Uuid> {
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("p{i}")})).collect();
    let (status, body) = env
        .post(key, "/v1/jobs/bulk", &json!({"model": model, "inputs": inputs, "priority": "normal"}))
        .await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

async fn succeeded_credits(env: &TestEnv) -> (i64, i64) {
    sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM job_view WHERE state = 'succeeded'")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn results_are_written_once_when_a_batch_is_delivered_twice() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 30, "flux-dev").await;
    env.release_once().await;
    let batch_id = env.job(ids[0]).await.batch_id.unwrap();
    let msg = BatchMessage::new(batch_id, "flux-dev".into(), ids.clone(), env.clock.now());
    let ctx = env.batch_context();

    // Two workers get the same batch at the same time (a redelivery racing
    // the original), then a third gets it again later.
    let (a, b) = tokio::join!(process_batch(&ctx, &msg), process_batch(&ctx, &msg));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.written + b.written, 30, "each job written by exactly one of them");
    let late = process_batch(&ctx, &msg).await.unwrap();
    assert_eq!((late.started, late.written, late.provider_calls), (0, 0, 0), "a finished batch is not worked again");

    assert_eq!(succeeded_credits(&env).await, (30, 60), "credits counted once");
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 30, "the provider billed each item once");
    assert!(stats.max_billed_per_input <= 1);
}

#[tokio::test]
async fn transient_errors_are_retried_until_the_provider_recovers() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { error_rate: 1.0, ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 5, "flux-schnell").await;
    env.release_once().await;
    env.start_worker();
    // Let it fail twice, then heal the provider.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.sim.sim.stats().errors < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the worker never called the provider");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut healed = env.sim.sim.config();
    healed.error_rate = 0.0;
    env.sim.sim.set_config(healed);
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"), "{:?}", rows.iter().map(|r| &r.state).collect::<Vec<_>>());
    assert!(rows[0].attempts >= 2, "at least one retry: {}", rows[0].attempts);
    assert_eq!(env.sim.sim.stats().items, 5);
}

#[tokio::test]
async fn a_job_out_of_attempts_is_dead_with_its_last_error() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { rate_limit_rate: 1.0, ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    // Retry-After: 1 s from the simulator bounds each pause from below;
    // with 5 attempts that is about 4 s.
    let ids = submit(&env, &key, 3, "flux-pro").await;
    env.release_once().await;
    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    for r in &rows {
        assert_eq!(r.state, "dead");
        assert_eq!(r.attempts, 5);
        assert_eq!(r.error.as_ref().unwrap()["code"], "rate_limited");
        assert_eq!(r.credits, Some(0));
    }
    let stats = env.sim.sim.stats();
    assert_eq!((stats.batches, stats.items), (5, 0));
}

#[tokio::test]
async fn garbage_responses_are_retried_and_never_billed() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { garbage_rate: 0.5, seed: Some(7), ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 200, "flux-schnell").await;
    let cfg = offpeak_scheduler::release::ReleaseConfig { batch_max: 10, ..Default::default() };
    env.releaser_with(cfg).run_once().await.unwrap();
    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(60)).await;
    let succeeded = rows.iter().filter(|r| r.state == "succeeded").count() as u64;
    let dead = rows.iter().filter(|r| r.state == "dead").count();
    assert_eq!(succeeded as usize + dead, 200, "every job terminal, none failed");
    let stats = env.sim.sim.stats();
    assert!(stats.garbage > 0);
    assert_eq!(stats.items, succeeded, "billed items equal succeeded jobs");
}

#[tokio::test]
async fn permanent_item_errors_fail_only_their_jobs() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { item_error_rate: 0.3, seed: Some(3), ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 100, "stable-audio").await;
    env.release_once().await;
    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    let failed: Vec<_> = rows.iter().filter(|r| r.state == "failed").collect();
    let succeeded = rows.iter().filter(|r| r.state == "succeeded").count();
    assert!(!failed.is_empty() && succeeded > 0);
    assert_eq!(failed.len() + succeeded, 100);
    for f in &failed {
        assert_eq!(f.error.as_ref().unwrap()["code"], "content_rejected");
        assert_eq!(f.attempts, 1, "permanent errors are not retried");
        assert_eq!(f.credits, Some(0));
    }
    assert_eq!(env.sim.sim.stats().items, succeeded as u64);
    assert_eq!(succeeded_credits(&env).await, (succeeded as i64, 3 * succeeded as i64));
}

#[tokio::test]
async fn a_provider_rejecting_the_batch_fails_its_jobs_permanently() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { api_key: Some("the-right-key".into()), ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 4, "flux-dev").await;
    env.release_once().await;
    env.start_worker(); // sends "test-provider-key": 401
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    for r in &rows {
        assert_eq!(r.state, "failed");
        assert_eq!(r.attempts, 1);
        assert_eq!(r.error.as_ref().unwrap()["code"], "http_401");
        let text = r.error.as_ref().unwrap().to_string();
        assert!(!text.contains("test-provider-key"), "the provider key never appears in an error");
    }
}

#[tokio::test]
async fn an_unparsable_message_goes_to_the_dead_letter_queue() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let ch = env.amqp.create_channel().await.unwrap();
    ch.basic_publish(
        "",
        &env.topology.queue,
        lapin::options::BasicPublishOptions::default(),
        b"{this is not a batch",
        lapin::BasicProperties::default(),
    )
    .await
    .unwrap();
    env.start_worker();
    let dlq = env.topology.dead_letter_queue();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let q = ch
            .queue_declare(&dlq, lapin::options::QueueDeclareOptions { passive: true, ..Default::default() }, Default::default())
            .await
            .unwrap();
        if q.message_count() == 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "message never dead-lettered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(env.queue_depth().await, 0);
}
