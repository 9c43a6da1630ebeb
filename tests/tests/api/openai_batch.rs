//! The `openai-batch` adapter against the simulator's OpenAI Batch API:
//! a released batch is handed over (uploaded as JSONL, a provider batch
//! created, recorded, acked), polled until it ends, and its jobs written
//! through the same finish as every other job; every request is billed
//! once, whatever fails, crashes or races.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use offpeak_core::clock::Clock;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;
use offpeak_worker::poller::PollerConfig;
use offpeak_worker::process::{process_batch, BatchContext};

async fn env_with(sim: SimConfig) -> TestEnv {
    TestEnv::with(EnvOptions { sim, ..Default::default() }).await
}

async fn submit(env: &TestEnv, key: &str, n: usize) -> Vec<Uuid> {
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("a lighthouse, take {i}")})).collect();
    let (status, body) = env.post(key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs, "priority": "normal"})).await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

/// Releases the due jobs and hands every released batch over; returns
/// the batch ids.
async fn release_and_hand_over(env: &TestEnv, ctx: &BatchContext) -> Vec<Uuid> {
    env.release_once().await;
    let mut ids = Vec::new();
    for msg in env.queued_batches().await {
        process_batch(ctx, &msg).await.expect("hand over");
        ids.push(msg.batch_id);
    }
    ids
}

async fn states(env: &TestEnv, ids: &[Uuid]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        out.push(env.job(*id).await.state.as_str().to_owned());
    }
    out
}

async fn provider_batch_of(env: &TestEnv, batch_id: Uuid) -> Option<String> {
    sqlx::query_scalar("SELECT provider_batch_id FROM batches WHERE id = $1").bind(batch_id).fetch_one(&env.pool).await.unwrap()
}

async fn ledger_rows(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM usage_ledger").fetch_one(&env.pool).await.unwrap()
}

#[tokio::test]
async fn results_land_through_the_poller_and_each_request_is_billed_once() {
    let env = env_with(SimConfig::default()).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 5).await;
    let ctx = env.openai_batch_context();
    let batches = release_and_hand_over(&env, &ctx).await;
    assert_eq!(batches.len(), 1);
    let provider_batch = provider_batch_of(&env, batches[0]).await.expect("the provider batch is recorded");
    assert!(provider_batch.starts_with("batch_"), "{provider_batch}");
    assert_eq!(states(&env, &ids).await, vec!["running"; 5], "handed over: running until the poller writes them");
    let listed = env.sim.sim.openai_batches();
    assert_eq!(listed[0]["metadata"]["offpeak_batch_id"], batches[0].to_string());
    assert_eq!(listed[0]["completion_window"], "24h");
    assert_eq!(listed[0]["endpoint"], "/v1/images/generations");

    // A redelivery of the message hands nothing over again.
    for msg in [offpeak_core::message::BatchMessage::new(batches[0], "flux-dev".into(), ids.clone(), env.clock.now())] {
        let r = process_batch(&ctx, &msg).await.unwrap();
        assert_eq!((r.started, r.provider_calls), (0, 0));
    }

    let report = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((report.polled, report.written, report.closed), (1, 5, 1));
    for id in &ids {
        let job = env.job(*id).await;
        assert_eq!(job.state.as_str(), "succeeded");
        let result = job.result.clone().expect("a result");
        assert!(result["data"][0]["url"].as_str().unwrap().contains("flux-dev"), "{result}");
        assert_eq!(job.credits, Some(2), "flux-dev at list price (normal priority)");
    }
    // Polled again: nothing due, nothing written.
    assert_eq!(env.poller(&ctx).run_once().await.unwrap().polled, 0);
    let stats = env.sim.sim.stats();
    assert_eq!((stats.openai_batches, stats.files_uploaded, stats.items, stats.max_billed_per_input), (1, 1, 5, 1));
    assert_eq!(ledger_rows(&env).await, 5);
}

#[tokio::test]
async fn per_item_errors_fail_their_jobs_with_the_provider_error() {
    let env = env_with(SimConfig { item_error_rate: 1.0, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 3).await;
    let ctx = env.openai_batch_context();
    release_and_hand_over(&env, &ctx).await;
    env.poller(&ctx).run_once().await.unwrap();
    for id in &ids {
        let job = env.job(*id).await;
        assert_eq!(job.state.as_str(), "failed");
        let error = job.error.clone().unwrap();
        assert_eq!((error["code"].as_str(), error["provider_code"].as_str()), (Some("http_400"), Some("content_rejected")), "{error}");
    }
    assert_eq!(env.sim.sim.stats().items, 0);
}

/// Hands the batch over in a task while the provider refuses, heals it
/// once it refused `refusals` times, and returns the provider batch.
async fn hand_over_through(env: &TestEnv, ctx: &BatchContext, refused: impl Fn(&offpeak_tests::sim::SimStats) -> bool) {
    env.release_once().await;
    let msgs = env.queued_batches().await;
    let work = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for msg in msgs {
                process_batch(&ctx, &msg).await.expect("hand over");
            }
        })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !refused(&env.sim.sim.stats()) {
        assert!(tokio::time::Instant::now() < deadline, "the provider was never refused enough: {:?}", env.sim.sim.stats());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut healed = env.sim.sim.config();
    (healed.error_rate, healed.rate_limit_rate, healed.garbage_rate, healed.slow_rate) = (0.0, 0.0, 0.0, 0.0);
    env.sim.sim.set_config(healed);
    tokio::time::timeout(Duration::from_secs(20), work).await.expect("the hand-over ends").unwrap();
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_and_retried() {
    let env = env_with(SimConfig { rate_limit_rate: 1.0, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 3).await;
    let ctx = env.openai_batch_context();
    let started = std::time::Instant::now();
    hand_over_through(&env, &ctx, |s| s.rate_limited >= 2).await;
    assert!(started.elapsed() >= Duration::from_secs(1), "retry-after (1 s) was honoured");
    env.poller(&ctx).run_once().await.unwrap();
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 3]);
    let stats = env.sim.sim.stats();
    assert_eq!((stats.openai_batches, stats.items, stats.max_billed_per_input), (1, 3, 1));
}

#[tokio::test]
async fn server_errors_are_retried_and_polls_through_them_too() {
    let env = env_with(SimConfig { error_rate: 1.0, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 3).await;
    let ctx = env.openai_batch_context();
    hand_over_through(&env, &ctx, |s| s.errors >= 2).await;
    // The provider fails the poll: nothing is written, the poll comes again.
    let mut config = env.sim.sim.config();
    config.error_rate = 1.0;
    env.sim.sim.set_config(config.clone());
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.polled, r.written, r.closed), (1, 0, 0));
    assert_eq!(states(&env, &ids).await, vec!["running"; 3]);
    config.error_rate = 0.0;
    env.sim.sim.set_config(config);
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.polled, r.written, r.closed), (1, 3, 1));
    let stats = env.sim.sim.stats();
    assert_eq!((stats.openai_batches, stats.items, stats.max_billed_per_input), (1, 3, 1));
}

#[tokio::test]
async fn garbled_answers_never_make_a_second_provider_batch() {
    // Half the answers are garbage, the call having taken effect: an
    // upload stored, a batch created, and the worker cannot tell.
    let env = env_with(SimConfig { garbage_rate: 0.4, seed: Some(20), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 4).await;
    // A hand-over needs three clean answers in a row (list, upload,
    // create): room for many tries.
    sqlx::query("UPDATE jobs SET max_attempts = 100").execute(&env.pool).await.unwrap();
    let ctx = env.openai_batch_context();
    let batches = release_and_hand_over(&env, &ctx).await;
    assert!(provider_batch_of(&env, batches[0]).await.is_some());
    // Poll until the files read cleanly.
    for _ in 0..50 {
        if env.poller(&ctx).run_once().await.unwrap().closed == 1 {
            break;
        }
    }
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 4]);
    let stats = env.sim.sim.stats();
    assert!(stats.garbage > 0, "{stats:?}");
    assert_eq!((stats.openai_batches, stats.items, stats.max_billed_per_input), (1, 4, 1), "{stats:?}");
}

#[tokio::test]
async fn timeouts_are_retried_and_never_make_a_second_provider_batch() {
    // Every call hangs for a second, past the provider's 300 ms timeout,
    // until the provider is healed.
    let env = env_with(SimConfig { slow_rate: 1.0, slow: Duration::from_secs(1), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 3).await;
    let mut provider = offpeak_core::providers::Provider::new("openai", offpeak_core::providers::Adapter::OpenaiBatch, &env.sim.url, "OPENAI_API_KEY");
    (provider.poll_interval, provider.poll_interval_max) = (Duration::ZERO, Duration::ZERO);
    provider.timeout = Some(Duration::from_millis(300));
    let models = offpeak_core::prices::PriceTable::default().models().map(|m| offpeak_core::providers::Model::new(m, "openai")).collect();
    let ctx = env.batch_context_with(&offpeak_core::providers::Catalog::new(vec![provider], models).unwrap());
    hand_over_through(&env, &ctx, |s| s.slow >= 2).await;
    env.poller(&ctx).run_once().await.unwrap();
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 3]);
    let stats = env.sim.sim.stats();
    assert!(stats.slow >= 2, "{stats:?}");
    assert_eq!((stats.openai_batches, stats.items, stats.max_billed_per_input), (1, 3, 1), "{stats:?}");
}

#[tokio::test]
async fn a_crash_between_creating_and_recording_makes_no_second_provider_batch() {
    let env = env_with(SimConfig::default()).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 4).await;
    let ctx = env.openai_batch_context();
    let batches = release_and_hand_over(&env, &ctx).await;
    let created = provider_batch_of(&env, batches[0]).await.unwrap();
    // The worker died after `POST /v1/batches` answered, before its record
    // committed: our batch row knows nothing, and the message comes back.
    sqlx::query("UPDATE batches SET provider_batch_id = NULL, provider_status = NULL, poll_at = NULL WHERE id = $1")
        .bind(batches[0])
        .execute(&env.pool)
        .await
        .unwrap();
    let msg = offpeak_core::message::BatchMessage::new(batches[0], "flux-dev".into(), ids.clone(), env.clock.now());
    process_batch(&ctx, &msg).await.unwrap();
    assert_eq!(provider_batch_of(&env, batches[0]).await.as_deref(), Some(created.as_str()), "the provider batch was found by its tag");
    env.poller(&ctx).run_once().await.unwrap();
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 4]);
    let stats = env.sim.sim.stats();
    assert_eq!((stats.openai_batches, stats.files_uploaded, stats.items, stats.max_billed_per_input), (1, 1, 4, 1));
    assert_eq!(ledger_rows(&env).await, 4);
}

#[tokio::test]
async fn an_expired_batch_keeps_what_completed_and_sends_the_rest_back_until_they_die() {
    let env = env_with(SimConfig { openai_batch_expiry_rate: 1.0, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 4).await;
    sqlx::query("UPDATE jobs SET max_attempts = 2").execute(&env.pool).await.unwrap();
    let ctx = env.openai_batch_context();
    release_and_hand_over(&env, &ctx).await;
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.written, r.requeued), (2, 2));
    let mut held = Vec::new();
    for id in &ids {
        let job = env.job(*id).await;
        match job.state.as_str() {
            "succeeded" => {}
            "held" => {
                assert_eq!(job.error.as_ref().unwrap()["code"], "batch_expired");
                assert_eq!(job.attempts, 1);
                held.push(*id);
            }
            other => panic!("unexpected state {other}"),
        }
    }
    assert_eq!(held.len(), 2);
    // Released again (the release loop would), into a new provider batch,
    // which expires too: half completes, the other job is out of attempts.
    release_and_hand_over(&env, &ctx).await;
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.written, r.requeued), (2, 0));
    let end: Vec<String> = states(&env, &held).await;
    assert_eq!(end.iter().filter(|s| *s == "succeeded").count(), 1, "{end:?}");
    let mut dead_jobs = 0;
    for id in &held {
        let job = env.job(*id).await;
        if job.state.as_str() == "dead" {
            dead_jobs += 1;
            assert_eq!(job.attempts, 2);
            assert_eq!(job.error.as_ref().unwrap()["code"], "batch_expired");
        }
    }
    assert_eq!(dead_jobs, 1);
    let stats = env.sim.sim.stats();
    assert_eq!((stats.openai_batches, stats.items, stats.max_billed_per_input), (2, 3, 1));
    assert_eq!(ledger_rows(&env).await, 3);
}

#[tokio::test]
async fn a_failed_provider_batch_sends_its_jobs_back_to_held() {
    let env = env_with(SimConfig { openai_batch_failure_rate: 1.0, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 2).await;
    let ctx = env.openai_batch_context();
    release_and_hand_over(&env, &ctx).await;
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.written, r.requeued, r.closed), (0, 2, 1));
    for id in &ids {
        let job = env.job(*id).await;
        assert_eq!(job.state.as_str(), "held");
        assert_eq!(job.error.as_ref().unwrap()["code"], "provider_batch_failed");
        assert!(job.batch_id.is_none());
    }
    assert_eq!(env.sim.sim.stats().items, 0);
}

#[tokio::test]
async fn two_pollers_racing_write_each_result_once() {
    let env = env_with(SimConfig::default()).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 6).await;
    let ctx = env.openai_batch_context();
    release_and_hand_over(&env, &ctx).await;
    let (a, b) = (env.poller(&ctx), env.poller(&ctx));
    let (ra, rb) = tokio::join!(a.run_once(), b.run_once());
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.polled + rb.polled, 1, "one poller per provider batch");
    assert_eq!(ra.written + rb.written, 6);
    // A poller whose lease ran out, redoing the poll after the first wrote it.
    sqlx::query("UPDATE batches SET poll_at = now() - interval '1 hour' WHERE provider_batch_id IS NOT NULL").execute(&env.pool).await.unwrap();
    let again = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!(again.written, 0);
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 6]);
    assert_eq!(ledger_rows(&env).await, 6);
    assert_eq!(env.sim.sim.stats().items, 6);
}

/// `n` jobs handed over to the simulator's Batch API as one provider
/// batch, then every call to the simulator made to hang 5 s (under the
/// client's 10 s timeout): the environment, the jobs, the context and our
/// batch.
async fn handed_over_then_slow(n: usize) -> (TestEnv, Vec<Uuid>, BatchContext, Uuid) {
    let env = env_with(SimConfig::default()).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, n).await;
    let ctx = env.openai_batch_context();
    let batches = release_and_hand_over(&env, &ctx).await;
    assert_eq!(batches.len(), 1);
    env.sim.sim.set_config(SimConfig { slow_rate: 1.0, slow: Duration::from_secs(5), ..SimConfig::default() });
    (env, ids, ctx, batches[0])
}

#[tokio::test]
async fn a_poll_that_outlives_its_lease_is_cut_and_gives_the_lease_back() {
    // The poll would take longer than a 1 s lease.
    let (env, ids, ctx, batch) = handed_over_then_slow(3).await;
    let config = PollerConfig { lease: Duration::from_secs(1), interval: Duration::ZERO, ..PollerConfig::default() };
    let started = std::time::Instant::now();
    let r = env.poller_with(&ctx, config.clone()).run_once().await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(4), "cut at 0.8 s, not after the 5 s call: {:?}", started.elapsed());
    assert_eq!((r.polled, r.given_back, r.written), (1, 1, 0), "{r:?}");
    let poll_at: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT poll_at FROM batches WHERE id = $1").bind(batch).fetch_one(&env.pool).await.unwrap();
    assert!(poll_at <= env.clock.now(), "due again at once, not at the end of its lease: {poll_at}");
    // The next pass, with the provider answering, writes every job.
    env.sim.sim.set_config(SimConfig::default());
    let r = env.poller_with(&ctx, config).run_once().await.unwrap();
    assert_eq!((r.written, r.given_back), (3, 0), "{r:?}");
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 3]);
    assert_eq!(env.sim.sim.stats().items, 3);
}

#[tokio::test]
async fn a_poller_killed_mid_poll_leaves_its_batch_to_the_next_when_the_lease_runs_out() {
    let (env, ids, ctx, _) = handed_over_then_slow(2).await;
    let config = PollerConfig { lease: Duration::from_secs(60), interval: Duration::ZERO, ..PollerConfig::default() };
    // Killed mid-poll: the task stops where it is, nothing is given back.
    let doomed = env.poller_with(&ctx, config.clone());
    let pass = tokio::spawn(async move { doomed.run_once().await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    pass.abort();
    env.sim.sim.set_config(SimConfig::default());
    let r = env.poller_with(&ctx, config.clone()).run_once().await.unwrap();
    assert_eq!(r.polled, 0, "leased to the killed poller: {r:?}");
    env.clock.advance(chrono::Duration::seconds(61));
    let r = env.poller_with(&ctx, config).run_once().await.unwrap();
    assert_eq!((r.polled, r.written), (1, 2), "{r:?}");
    assert_eq!(states(&env, &ids).await, vec!["succeeded"; 2]);
    assert_eq!(env.sim.sim.stats().items, 2);
}

#[tokio::test]
async fn cancelling_every_job_of_a_provider_batch_cancels_it_there() {
    let env = env_with(SimConfig { openai_batch_duration: Duration::from_secs(600), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 2).await;
    let ctx = env.openai_batch_context();
    let batches = release_and_hand_over(&env, &ctx).await;
    // Still at the provider, it is not due.
    sqlx::query("UPDATE batches SET poll_at = now() + interval '1 hour'").execute(&env.pool).await.unwrap();
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", ids[0])).await;
    assert_eq!(status, 200, "a running job at a provider may be cancelled: {body}");
    assert_eq!(body["state"], "cancelled");
    assert_eq!(env.poller(&ctx).run_once().await.unwrap().polled, 0, "one job still open: nothing to cancel yet");
    let (status, _) = env.delete(&key, &format!("/v1/jobs/{}", ids[1])).await;
    assert_eq!(status, 200);
    let r = env.poller(&ctx).run_once().await.unwrap();
    assert_eq!((r.cancelled, r.closed), (1, 1));
    assert!(matches!(env.sim.sim.openai_batches()[0]["status"].as_str(), Some("cancelling" | "cancelled")));
    let finished: bool = sqlx::query_scalar("SELECT finished FROM batches WHERE id = $1").bind(batches[0]).fetch_one(&env.pool).await.unwrap();
    assert!(finished);
    assert_eq!(ledger_rows(&env).await, 0);
}

#[tokio::test]
async fn the_rescuer_leaves_batches_at_a_provider_to_the_poller() {
    let env = env_with(SimConfig { openai_batch_duration: Duration::from_secs(600), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    submit(&env, &key, 2).await;
    let ctx = env.openai_batch_context();
    release_and_hand_over(&env, &ctx).await;
    let depth = env.queue_depth().await;
    env.clock.advance(chrono::Duration::hours(3));
    let rescued = env.rescuer(Default::default()).run_once().await.unwrap();
    assert_eq!(rescued.batches, 0);
    assert_eq!(env.queue_depth().await, depth, "nothing published again");
}
