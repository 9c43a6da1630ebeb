//! The races the release, finish, cancel and rescue paths open, run for
//! real: two tasks at once over many jobs against PostgreSQL and RabbitMQ,
//! then every job counted. (Two releasers racing over 6,000 jobs is
//! `release_loop::two_scheduler_replicas_never_publish_a_job_twice`; two
//! rescuers, `recovery::two_rescuers_publish_a_stale_batch_once`; a cancel
//! between a round's read and its write, step by step,
//! `release_loop::a_job_cancelled_after_the_round_read_it_is_left_out_and_its_followers_wait`.)

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use rand::seq::SliceRandom;
use serde_json::json;
use uuid::Uuid;

use offpeak_core::clock::{ManualClock, SharedClock};
use offpeak_provider_sim::SimConfig;
use offpeak_scheduler::release::ReleaseConfig;
use offpeak_scheduler::rescue::{RescueConfig, Rescuer};
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// `n` normal-priority jobs with distinct inputs (no cache hit, no coalescing).
async fn submit(env: &TestEnv, key: &str, n: usize) -> Vec<Uuid> {
    let call = Uuid::now_v7();
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("race {call} {i}")})).collect();
    let (status, body) =
        env.post(key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs, "priority": "normal"})).await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

/// Small rounds and batches, so that a race meets many rounds.
fn small_rounds() -> ReleaseConfig {
    ReleaseConfig { per_tenant: 10, round_max: 10, batch_max: 5, max_queue_depth: 100_000, ..Default::default() }
}

/// What the provider billed, the ledger and the jobs say, checked against
/// each other: every succeeded job billed once and written once.
async fn assert_billed_once(env: &TestEnv, succeeded: i64) {
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items as i64, succeeded, "the provider billed exactly the succeeded jobs: {stats:?}");
    assert!(stats.max_billed_per_input <= 1, "an input was billed twice: {stats:?}");
    let (ledger, ledger_credits): (i64, i64) =
        sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    let job_credits: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(credits), 0)::bigint FROM job_view").fetch_one(&env.pool).await.unwrap();
    assert_eq!(ledger, succeeded, "one ledger row per succeeded job");
    assert_eq!(ledger_credits, job_credits, "the ledger agrees with the jobs");
}

/// Jobs not ended yet (`held`, `queued` or `running`), every tenant's.
async fn open_jobs(env: &TestEnv) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state IN ('held', 'queued', 'running')")
        .fetch_one(&env.pool)
        .await
        .unwrap()
}

/// Runs `step` (then pauses `pause`) until no job is open, for at most 60
/// s; returns the sum of what the steps returned.
async fn until_no_job_is_open<F: std::future::Future<Output = u64>>(env: &TestEnv, pause: Duration, mut step: impl FnMut() -> F) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut sum = 0;
    loop {
        sum += step().await;
        let open = open_jobs(env).await;
        if open == 0 {
            return sum;
        }
        assert!(tokio::time::Instant::now() < deadline, "{open} jobs still open after 60 s");
        tokio::time::sleep(pause).await;
    }
}

/// A client cancels every job, in random order, while a release loop
/// publishes them in small rounds and a worker runs them: each cancel
/// either wins (200: the job ends `cancelled`, never started, never billed)
/// or loses to a worker that started it (409: the job ends `succeeded`);
/// never both, never neither.
#[tokio::test]
async fn a_cancel_racing_the_release_and_a_worker_wins_or_loses_never_both() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    env.start_worker();
    let mut outcomes: BTreeMap<Uuid, u16> = BTreeMap::new();
    let mut all = Vec::new();
    // Several rounds of the race, each over fresh jobs.
    for _ in 0..8 {
        let mut ids = submit(&env, &key, 50).await;
        all.extend(ids.iter().copied());
        ids.shuffle(&mut rand::thread_rng());
        let releaser = env.releaser_with(small_rounds());
        let release = tokio::spawn(async move {
            while releaser.run_once().await.expect("release round").released > 0 {}
        });
        let cancels: Vec<(Uuid, u16)> = futures_util::stream::iter(ids)
            .map(|id| {
                let (env, key) = (&env, &key);
                async move { (id, env.delete(key, &format!("/v1/jobs/{id}")).await.0) }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        release.await.expect("release task");
        outcomes.extend(cancels);
    }
    // Anything neither cancelled nor yet released goes out now.
    while env.releaser_with(small_rounds()).run_once().await.unwrap().released > 0 {}
    let rows = env.wait_terminal(&all, Duration::from_secs(60)).await;

    let mut seen: BTreeMap<(u16, String), i64> = BTreeMap::new();
    for row in &rows {
        let status = outcomes[&row.id];
        *seen.entry((status, row.state.as_str().to_owned())).or_default() += 1;
        match status {
            200 => {
                assert_eq!(row.state, "cancelled", "a cancel answered 200 but the job ran: {row:?}");
                assert!(row.started_at.is_none() && row.credits.is_none() && row.result.is_none(), "{row:?}");
            }
            409 => assert_eq!(row.state, "succeeded", "a cancel answered 409 but the job did not run: {row:?}"),
            other => panic!("cancel answered {other} for {}", row.id),
        }
    }
    println!("cancel answer and final state: {seen:?}");
    let succeeded = rows.iter().filter(|r| r.state == "succeeded").count() as i64;
    assert_billed_once(&env, succeeded).await;
}

/// The rescuer republishes every unfinished batch again and again (its
/// clock an hour ahead, so each looks stale) while two workers run them:
/// every delivery of a batch after the first finds its jobs running or
/// finished; each job is written once, ledgered once, billed once (the
/// replays carry the batch id as the provider's idempotency key).
#[tokio::test]
async fn a_finish_racing_the_rescuers_republish_writes_and_bills_each_job_once() {
    let now = at("2027-06-01T12:00:00Z");
    let sim = SimConfig { latency: Duration::from_millis(20), ..SimConfig::default() };
    let mut env = TestEnv::with(EnvOptions { now, sim, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = submit(&env, &key, 300).await;
    let rescue_clock = ManualClock::new(now + chrono::Duration::hours(1));
    let shared: SharedClock = Arc::new(rescue_clock.clone());
    let cfg = RescueConfig { visibility_timeout: Duration::from_secs(1), limit: 1_000, ..Default::default() };
    let rescuer = Rescuer::new(env.pool.clone(), env.publisher.clone(), shared, cfg);
    // One batch of 10 per round, each republished at once: every batch is
    // in the queue twice, its copies side by side, so that the workers
    // (which run what they prefetch concurrently) often run both at once.
    let releaser = env.releaser_with(ReleaseConfig { batch_max: 10, ..small_rounds() });
    let mut republished = 0;
    while releaser.run_once().await.unwrap().released > 0 {
        republished += rescuer.run_once().await.unwrap().batches;
    }
    assert_eq!(republished, 30, "every batch republished once before the workers start");
    env.start_worker();
    env.start_worker();
    let rescuer = &rescuer;
    republished += until_no_job_is_open(&env, Duration::from_millis(10), || {
        rescue_clock.advance(chrono::Duration::seconds(2));
        async move { rescuer.run_once().await.unwrap().batches }
    })
    .await;
    let rows = env.wait_terminal(&ids, Duration::from_secs(5)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"), "every job succeeded");
    let unfinished: i64 =
        sqlx::query_scalar("SELECT count(*) FROM batches WHERE NOT finished").fetch_one(&env.pool).await.unwrap();
    assert_eq!(unfinished, 0, "every batch says it is finished");
    rescue_clock.advance(chrono::Duration::seconds(2));
    assert_eq!(rescuer.run_once().await.unwrap().batches, 0, "a finished batch is never republished");
    println!("republished {republished} times; provider: {:?}", env.sim.sim.stats());
    assert_billed_once(&env, 300).await;
}

/// Release rounds until one finds nothing more to do (a round whose jobs
/// all wait on leaders releases none, and more may be due).
async fn drain(releaser: &offpeak_scheduler::release::Releaser) {
    while releaser.run_once().await.expect("release round").more {}
}

/// Identical jobs wait for the one of them in flight (its leader); here
/// each leader is cancelled by its tenant while release rounds attach new
/// identical jobs to it. A round locks the leader's row `FOR KEY SHARE`
/// and a cancel locks it `FOR UPDATE`, so either the round attaches first
/// and the cancel then sends those jobs back to `held`, or the cancel wins
/// and the round finds no leader. No
/// job may be left waiting on a leader that has ended; then everything
/// runs, and each distinct input is billed once per leader that ran.
#[tokio::test]
async fn cancelling_leaders_while_rounds_attach_followers_strands_no_follower() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let mut all = Vec::new();
    let mut cancelled_leaders = 0;
    for wave in 0..8 {
        let inputs: Vec<_> = (0..20).map(|i| json!({"prompt": format!("coalesce {wave} {i}")})).collect();
        let body = json!({"model": "flux-schnell", "inputs": inputs, "priority": "normal"});
        let (status, leaders) = env.post(&key, "/v1/jobs/bulk", &body).await;
        assert_eq!(status, 201, "{leaders}");
        let leaders = bulk_ids(&leaders);
        drain(&env.releaser_with(small_rounds())).await;
        let in_flight: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_view WHERE id = ANY($1) AND state = 'queued' AND cache_key IS NOT NULL AND cache_source IS NULL",
        )
            .bind(&leaders)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(in_flight, 20, "each released job leads its input");
        // Three identical jobs per input, then rounds and cancels at once.
        let mut followers = Vec::new();
        for _ in 0..3 {
            let (status, more) = env.post(&key, "/v1/jobs/bulk", &body).await;
            assert_eq!(status, 201, "{more}");
            followers.extend(bulk_ids(&more));
        }
        let releaser = env.releaser_with(small_rounds());
        let release = tokio::spawn(async move { drain(&releaser).await });
        let mut order = leaders.clone();
        order.shuffle(&mut rand::thread_rng());
        let answers: Vec<u16> = futures_util::stream::iter(order)
            .map(|id| {
                let (env, key) = (&env, &key);
                async move { env.delete(key, &format!("/v1/jobs/{id}")).await.0 }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        release.await.expect("release task");
        assert!(answers.iter().all(|s| *s == 200), "no worker runs yet, so every cancel wins: {answers:?}");
        cancelled_leaders += answers.len();
        let stranded: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM job_view f JOIN job_view l ON l.id = f.cache_source
             WHERE f.state = 'queued' AND f.batch_id IS NULL AND l.state NOT IN ('queued', 'running')",
        )
        .fetch_one(&env.pool)
        .await
        .unwrap();
        assert_eq!(stranded, 0, "a job waits on a leader that has ended");
        let orphans: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE id = ANY($1) AND state <> 'cancelled'")
            .bind(&leaders)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(orphans, 0, "a cancelled leader still leads");
        all.extend(followers);
    }
    // Everything left runs: one new leader per input, its followers answered.
    env.start_worker();
    until_no_job_is_open(&env, Duration::from_millis(50), || async {
        drain(&env.releaser_with(small_rounds())).await;
        0
    })
    .await;
    let rows = env.wait_terminal(&all, Duration::from_secs(5)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"), "every identical job got an answer");
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 160, "one call per input, {cancelled_leaders} cancelled leaders billed nothing: {stats:?}");
    assert!(stats.max_billed_per_input <= 1, "an input was billed twice: {stats:?}");
}
