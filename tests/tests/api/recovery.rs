//! Recovery of stuck work: batches whose message was lost, or whose worker
//! died, are published again under the same batch id and finish once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::QueuePurgeOptions;
use serde_json::json;
use uuid::Uuid;

use offpeak_scheduler::rescue::RescueConfig;
use offpeak_core::clock::Clock;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn submit(env: &TestEnv, key: &str, n: usize) -> Vec<Uuid> {
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("p{i}")})).collect();
    let (status, body) = env
        .post(key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs, "priority": "normal"}))
        .await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

fn rescue_after(minutes: u64) -> RescueConfig {
    RescueConfig { visibility_timeout: Duration::from_secs(minutes * 60), ..Default::default() }
}

#[tokio::test]
async fn a_batch_whose_message_was_lost_is_published_again_and_runs_once() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 12).await;
    env.release_once().await;
    let batch_id = env.job(ids[0]).await.batch_id.unwrap();
    // The message vanishes (an operator purged the queue).
    let ch = env.amqp.create_channel().await.unwrap();
    ch.queue_purge(&env.topology.queue, QueuePurgeOptions::default()).await.unwrap();

    let rescuer = env.rescuer(rescue_after(10));
    env.clock.advance(chrono::Duration::minutes(9));
    assert_eq!(rescuer.run_once().await.unwrap().batches, 0, "not yet: within the visibility timeout");
    env.clock.advance(chrono::Duration::minutes(2));
    let report = rescuer.run_once().await.unwrap();
    assert_eq!((report.batches, report.jobs), (1, 12));
    assert_eq!(rescuer.run_once().await.unwrap().batches, 0, "republishing counts as progress");

    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded" && r.batch_id == Some(batch_id)), "same batch identity");
    assert_eq!(env.sim.sim.stats().items, 12);
}

#[tokio::test]
async fn a_batch_whose_worker_died_after_the_provider_answered_is_not_billed_twice() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 8).await;
    env.release_once().await;
    let batch_id = env.job(ids[0]).await.batch_id.unwrap();
    let ch = env.amqp.create_channel().await.unwrap();
    ch.queue_purge(&env.topology.queue, QueuePurgeOptions::default()).await.unwrap();

    // A worker started the batch and the provider answered, then the worker
    // died before writing: the jobs are `running`, the provider has billed.
    let ctx = env.batch_context();
    // The same call the worker makes: the started jobs' inputs, as stored, in id order.
    let mut started = offpeak_store::batches::start_attempt(&env.pool, batch_id, "flux-dev", &ids, env.clock.now()).await.unwrap();
    started.sort_by_key(|j| j.id);
    let items: Vec<offpeak_worker::provider::CallItem<'_>> =
        started.iter().map(|j| offpeak_worker::provider::CallItem { job_id: j.id, input: &j.input.0 }).collect();
    ctx.providers.route("flux-dev").expect("flux-dev has a provider").call("flux-dev", batch_id, &items).await;
    assert_eq!(env.sim.sim.stats().items, 8);

    env.clock.advance(chrono::Duration::minutes(20));
    assert_eq!(env.rescuer(rescue_after(15)).run_once().await.unwrap().batches, 1);
    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"));
    let stats = env.sim.sim.stats();
    assert_eq!((stats.items, stats.replays), (8, 1), "the replay was answered from the provider's idempotency store");
    let credits: i64 = sqlx::query_scalar("SELECT sum(credits)::bigint FROM job_view").fetch_one(&env.pool).await.unwrap();
    assert_eq!(credits, 16);
}

#[tokio::test]
async fn two_rescuers_publish_a_stale_batch_once() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    submit(&env, &key, 300).await;
    env.release_once().await;
    let ch = env.amqp.create_channel().await.unwrap();
    ch.queue_purge(&env.topology.queue, QueuePurgeOptions::default()).await.unwrap();
    env.clock.advance(chrono::Duration::minutes(20));
    let cfg = RescueConfig { limit: 1, ..rescue_after(15) };
    let (a, b) = (env.rescuer(cfg.clone()), env.rescuer(cfg));
    let mut total = 0;
    loop {
        let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
        let n = ra.unwrap().batches + rb.unwrap().batches;
        if n == 0 {
            break;
        }
        total += n;
    }
    assert_eq!(total, 3, "each of the 3 batches republished once");
    assert_eq!(env.queue_depth().await, 3);
}

#[tokio::test]
async fn dead_jobs_get_another_chance_from_the_operator_cli() {
    let mut env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: offpeak_tests::sim::SimConfig { error_rate: 1.0, ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 6).await;
    env.release_once().await;
    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "dead" && r.attempts == 5));

    // The provider recovers; the operator retries the dead jobs.
    env.sim.sim.set_config(Default::default());
    let out = tokio::process::Command::new(offpeak_tests::procs::binary("offpeak-scheduler"))
        .args(["jobs", "retry", "--state", "dead", "--tenant", "acme", "--json"])
        .env("DATABASE_URL", env.database_url())
        .env("RUST_LOG", "error")
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["retried"], 6);
    let row = env.job(ids[0]).await;
    assert_eq!((row.state.as_str(), row.attempts), ("held", 0));
    assert!(row.release_at <= chrono::Utc::now(), "normal priority: due at once");

    env.release_once().await;
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded" && r.attempts == 1));
    assert_eq!(env.sim.sim.stats().items, 6);
}

async fn batch_finished(env: &TestEnv, batch_id: Uuid) -> bool {
    sqlx::query_scalar("SELECT finished FROM batches WHERE id = $1").bind(batch_id).fetch_one(&env.pool).await.unwrap()
}

#[tokio::test]
async fn a_batch_says_it_is_finished_once_its_last_job_is_and_the_rescuer_never_looks_at_it_again() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 5).await;
    env.release_once().await;
    let batch_id = env.job(ids[0]).await.batch_id.unwrap();
    assert!(!batch_finished(&env, batch_id).await, "released, not finished");
    env.start_worker();
    env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(batch_finished(&env, batch_id).await, "the finish of its last jobs marks it");
    env.clock.advance(chrono::Duration::minutes(30));
    assert_eq!(env.rescuer(rescue_after(10)).run_once().await.unwrap().batches, 0);
}

#[tokio::test]
async fn a_batch_whose_jobs_were_all_cancelled_is_marked_finished_by_the_rescuer_not_published_again() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 3).await;
    env.release_once().await;
    let batch_id = env.job(ids[0]).await.batch_id.unwrap();
    let ch = env.amqp.create_channel().await.unwrap();
    ch.queue_purge(&env.topology.queue, QueuePurgeOptions::default()).await.unwrap();
    for id in &ids {
        let (status, body) = env.delete(&key, &format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200, "{body}");
    }
    assert!(!batch_finished(&env, batch_id).await, "a cancel does not look at the batch's other jobs");
    env.clock.advance(chrono::Duration::minutes(11));
    let rescuer = env.rescuer(rescue_after(10));
    assert_eq!(rescuer.run_once().await.unwrap().batches, 0, "nothing open to publish");
    assert!(batch_finished(&env, batch_id).await, "the rescuer marked it");
    assert_eq!(env.queue_depth().await, 0);
}
