//! Release at submission (`offpeak_scheduler::direct`): a bulk submission
//! due at once is stored `queued` in its batches and published by its own
//! transaction while the release loop leaves nothing due behind, and is
//! held for the loop otherwise; identical jobs still reach the provider
//! once, whichever path each took.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::job::JobState;
use offpeak_scheduler::release::ReleaseConfig;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn env() -> TestEnv {
    TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await
}

fn config() -> ReleaseConfig {
    ReleaseConfig { interval: Duration::from_millis(50), ..Default::default() }
}

/// An environment with one tenant (its key returned) and a release loop
/// that has opened the API's room.
async fn releasing_at_submit() -> (TestEnv, String) {
    let mut env = env().await;
    let key = env.tenant("acme", "UTC").await;
    env.start_release_loop_at_submit(config());
    room_open(&env).await;
    (env, key)
}

/// Waits until the release loop has opened the API's room.
async fn room_open(env: &TestEnv) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.room.batch_max().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "the release loop never opened the room");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An environment with one tenant (its key returned) whose release loop
/// opened the API's room and runs its next round only after 5 s, so that
/// none runs while a test holds release locks by hand (the room stays open
/// for four intervals).
async fn rounds_far_apart() -> (TestEnv, String) {
    let mut env = env().await;
    let key = env.tenant("acme", "UTC").await;
    env.start_release_loop_at_submit(ReleaseConfig { interval: Duration::from_secs(5), ..Default::default() });
    room_open(&env).await;
    (env, key)
}

/// A `normal` bulk submission of three jobs of `model`, posted in a task
/// of its own (so that a test can see whether it waits): its status and
/// body.
fn spawn_bulk(env: &TestEnv, key: &str, model: &'static str, tag: &'static str) -> tokio::task::JoinHandle<(u16, Value)> {
    let (http, url, key) = (env.http.clone(), format!("{}/v1/jobs/bulk", env.api_url), key.to_owned());
    tokio::spawn(async move {
        let resp = http
            .post(url)
            .bearer_auth(key)
            .json(&json!({"model": model, "inputs": prompts(tag, 3), "priority": "normal"}))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
    })
}

async fn bulk(env: &TestEnv, key: &str, inputs: &[Value], priority: &str) -> Value {
    let (status, body) =
        env.post(key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs, "priority": priority})).await;
    assert_eq!(status, 201, "{body}");
    body
}

fn prompts(tag: &str, n: usize) -> Vec<Value> {
    (0..n).map(|i| json!({"prompt": format!("{tag} {i}")})).collect()
}

/// The tenant a job belongs to.
async fn tenant_of(env: &TestEnv, job: Uuid) -> Uuid {
    sqlx::query_scalar("SELECT tenant_id FROM jobs WHERE id = $1").bind(job).fetch_one(&env.pool).await.unwrap()
}

/// The transaction ids that wrote the rows as they are now (`xmin`).
async fn writers(env: &TestEnv, table: &str) -> Vec<String> {
    sqlx::query_scalar(&format!("SELECT DISTINCT xmin::text FROM {table}")).fetch_all(&env.pool).await.unwrap()
}

#[tokio::test]
async fn a_bulk_submission_due_at_once_is_queued_by_its_own_transaction_and_runs_once() {
    let (mut env, key) = releasing_at_submit().await;

    let body = bulk(&env, &key, &prompts("direct", 250), "normal").await;
    assert_eq!(body["state"], "queued", "{body}");
    let ids = bulk_ids(&body);

    // Stored queued in three batches of at most 100, each row written once
    // so far, by the submission's own transaction: the batches' rows and
    // every job row carry the same `xmin`, and no round rewrote them.
    let (queued, batches, queued_at_submission): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE state = 'queued'), count(DISTINCT batch_id),
                count(*) FILTER (WHERE queued_at = created_at) FROM jobs",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((queued, batches, queued_at_submission), (250, 3, 250));
    let jobs_by = writers(&env, "jobs").await;
    assert_eq!(jobs_by.len(), 1, "one transaction wrote every job row");
    assert_eq!(writers(&env, "batches").await, jobs_by, "and the batches' rows");
    assert_eq!(writers(&env, "batch_members").await, jobs_by, "and their members' rows");
    let counts: Vec<i32> = sqlx::query_scalar("SELECT job_count FROM batches ORDER BY job_count DESC").fetch_all(&env.pool).await.unwrap();
    assert_eq!(counts, vec![100, 100, 50]);
    assert_eq!(env.queue_depth().await, 3, "published before the answer");
    // Reads back through the API as it is stored.
    let (status, job) = env.get(&key, &format!("/v1/jobs/{}", ids[0])).await;
    assert_eq!((status, job["state"].as_str()), (200, Some("queued")), "{job}");

    env.start_worker();
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    assert!(rows.iter().all(|r| r.state == JobState::Succeeded && !r.cache_hit), "every job succeeded from a provider call");
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 250, "billed once each: {stats:?}");
    assert!(stats.max_billed_per_input <= 1, "{stats:?}");
    let (ledger, credits): (i64, i64) =
        sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    assert_eq!((ledger, credits), (250, 250), "one ledger row a job, 1 credit each");
}

#[tokio::test]
async fn identical_inputs_released_at_submission_reach_the_provider_once() {
    let (mut env, key) = releasing_at_submit().await;

    // A leader in flight (no worker yet): the same input submitted again
    // waits for it instead of being sent.
    let first = bulk(&env, &key, &[json!({"prompt": "x"})], "normal").await;
    assert_eq!(first["state"], "queued", "{first}");
    room_open(&env).await;
    let second = bulk(&env, &key, &[json!({"prompt": "x"}), json!({"prompt": "y"}), json!({"prompt": "y"})], "normal").await;
    assert_eq!(second["state"], "held", "the second x and the second y wait for their leaders: {second}");
    let second_ids = bulk_ids(&second);
    let (x2, y1, y2) = (env.job(second_ids[0]).await, env.job(second_ids[1]).await, env.job(second_ids[2]).await);
    assert_eq!(y1.state, JobState::Queued, "y leads: sent with its submission");
    assert!(y1.batch_id.is_some());
    // The followers are held (due) or, once a round has attached them, queued without a batch.
    for follower in [&x2, &y2] {
        assert!(follower.batch_id.is_none(), "a follower is never sent: {follower:?}");
    }

    env.start_worker();
    let mut ids = bulk_ids(&first);
    ids.extend(&second_ids);
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    assert!(rows.iter().all(|r| r.state == JobState::Succeeded), "{rows:?}");
    assert_eq!(rows.iter().filter(|r| r.cache_hit).count(), 2, "the two followers share their leaders' results");
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 2, "x and y billed once each: {stats:?}");
    assert!(stats.max_billed_per_input <= 1, "{stats:?}");

    // Once x has succeeded, a new submission of it is a cache hit at once.
    room_open(&env).await;
    let third = bulk(&env, &key, &[json!({"prompt": "x"}), json!({"prompt": "z"})], "normal").await;
    assert_eq!((third["cache_hits"].as_u64(), third["state"].as_str()), (Some(1), Some("queued")), "{third}");
}

#[tokio::test]
async fn submissions_are_held_for_the_loop_when_the_queue_lacks_room_or_the_option_is_off() {
    let mut env = env().await;
    let key = env.tenant("acme", "UTC").await;
    // Room for two batches of ten; no worker, so what is published stays.
    env.start_release_loop_at_submit(ReleaseConfig { batch_max: 10, max_queue_depth: 2, ..config() });
    room_open(&env).await;
    let too_big = bulk(&env, &key, &prompts("big", 25), "normal").await;
    assert_eq!(too_big["state"], "held", "three batches do not fit in room for two: {too_big}");
    // The loop then releases what the queue has room for, fairly, and the room closes while the rest waits.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.queue_depth().await < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the loop released nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let small = bulk(&env, &key, &prompts("small", 5), "normal").await;
    assert_eq!(small["state"], "held", "the queue is full: {small}");
    // Not due at once: held until its window, as always.
    let low = bulk(&env, &key, &prompts("low", 5), "low").await;
    assert_eq!(low["state"], "held");

    // With the option off, the loop never opens the room.
    let mut off = self::env().await;
    let key = off.tenant("acme", "UTC").await;
    let releaser = off.start_release_loop_at_submit(ReleaseConfig { at_submit: false, ..config() });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while releaser.rounds() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the loop ran no round");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(off.room.batch_max(), None);
    let body = bulk(&off, &key, &prompts("off", 5), "normal").await;
    assert_eq!(body["state"], "held", "{body}");
}

/// Tenants submit overlapping inputs at once, from several tasks, while the
/// loop's rounds release and coalesce what their submissions held and two
/// workers run the batches: no submission fails (two leaders of one key
/// would be a unique violation), every job ends succeeded exactly once,
/// and every distinct input is billed once.
#[tokio::test]
async fn concurrent_submissions_released_at_once_and_rounds_bill_each_input_once() {
    let mut env = env().await;
    let keys = [env.tenant("acme", "UTC").await, env.tenant("globex", "UTC").await];
    env.start_release_loop_at_submit(ReleaseConfig { batch_max: 5, max_queue_depth: 100_000, ..config() });
    env.start_worker();
    env.start_worker();
    room_open(&env).await;

    let tasks: Vec<_> = (0..6)
        .map(|t| {
            let (http, url, key) = (env.http.clone(), env.url("/v1/jobs/bulk"), keys[t % 2].clone());
            tokio::spawn(async move {
                let (mut ids, mut queued_answers) = (Vec::new(), 0);
                for round in 0..5 {
                    // 12 of 30 prompts, overlapping between tasks and rounds.
                    let inputs: Vec<Value> = (0..12).map(|i| json!({"prompt": format!("tenant {} p{}", t % 2, (t * 7 + round * 5 + i) % 30)})).collect();
                    let resp = http
                        .post(&url)
                        .bearer_auth(&key)
                        .json(&json!({"model": "flux-schnell", "inputs": inputs, "priority": "normal"}))
                        .send()
                        .await
                        .expect("request");
                    let (status, body) = TestEnv::read(resp).await;
                    assert_eq!(status, 201, "{body}");
                    ids.extend(bulk_ids(&body));
                    queued_answers += usize::from(body["state"] == "queued");
                }
                (ids, queued_answers)
            })
        })
        .collect();
    let (mut ids, mut queued_answers): (Vec<Uuid>, usize) = (Vec::new(), 0);
    for t in tasks {
        let (task_ids, queued) = t.await.expect("a submitting task");
        ids.extend(task_ids);
        queued_answers += queued;
    }
    // The first submission meets no leader and an empty cache.
    assert!(queued_answers > 0, "some submissions were released whole with their transaction");
    assert_eq!(ids.len(), 6 * 5 * 12);
    let rows = env.wait_terminal(&ids, Duration::from_secs(60)).await;
    assert!(rows.iter().all(|r| r.state == JobState::Succeeded), "every job succeeded");
    let sent: Vec<&_> = rows.iter().filter(|r| !r.cache_hit).collect();
    let stats = env.sim.sim.stats();
    assert!(stats.max_billed_per_input <= 1, "an input was billed twice: {stats:?}");
    assert_eq!(stats.items as usize, sent.len(), "billed once for each job that was sent: {stats:?}");
    // 30 prompts per tenant (each tenant's own: the cache key includes the tenant).
    assert!(sent.len() <= 60, "{} jobs sent for 60 distinct inputs", sent.len());
}

#[tokio::test]
async fn a_replay_of_a_keyed_submission_released_at_once_answers_as_the_original_did() {
    let (env, key) = releasing_at_submit().await;
    let body = json!({"model": "flux-schnell", "inputs": prompts("keyed", 3), "priority": "normal"});
    let send = || env.http.post(env.url("/v1/jobs/bulk")).bearer_auth(&key).header("Idempotency-Key", "nightly-7").json(&body).send();
    let (status, original) = TestEnv::read(send().await.expect("request")).await;
    assert_eq!((status, original["state"].as_str()), (201, Some("queued")), "{original}");
    let (status, replay) = TestEnv::read(send().await.expect("request")).await;
    assert_eq!(status, 200, "{replay}");
    assert_eq!(replay, original, "the replay answers what the original did");
}

/// A submission released at once holds the release lock and its model's
/// shared and its tenant's lock of that model exclusive
/// (`offpeak_store::release::lock_release_for`), from its cache step to its
/// commit, and its batches' locks from before its publish
/// (`lock_new_batches`). Here a transaction holds them for `flux-dev`,
/// with a batch of `flux-dev` jobs written and not committed, as such a
/// submission does between its publish and its commit: a submission of
/// another model is released meanwhile, one of the same model waits for
/// it, and a worker handed the uncommitted batch waits for the commit
/// instead of taking its message for an orphan.
#[tokio::test]
async fn submissions_of_different_models_are_released_side_by_side_and_a_worker_waits_for_its_models() {
    use offpeak_core::clock::Clock;
    use offpeak_core::message::BatchMessage;
    use offpeak_store::release as db;

    let (env, key) = rounds_far_apart().await;

    // Held (low, outside the window), then queued by the transaction below.
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": prompts("dev", 5)})).await;
    assert_eq!(status, 201, "{body}");
    let ids = bulk_ids(&body);
    let tenant = tenant_of(&env, ids[0]).await;
    let now = env.clock.now();
    let mut tx = env.pool.begin().await.unwrap();
    db::lock_release_for(&mut tx, tenant, "flux-dev").await.unwrap();
    let batch_id = Uuid::now_v7();
    db::lock_new_batches(&mut tx, &[db::NewBatch { id: batch_id, model: "flux-dev".into(), job_ids: ids.clone() }]).await.unwrap();
    assert_eq!(db::mark_queued(&mut tx, batch_id, "flux-dev", &ids, now).await.unwrap(), 5);

    let ctx = env.batch_context();
    let msg = BatchMessage::new(batch_id, "flux-dev".into(), ids.clone(), now);
    let worker = tokio::spawn(async move { offpeak_worker::process::process_batch(&ctx, &msg).await.unwrap() });

    // Another model: released while the flux-dev transaction is open.
    let other = tokio::time::timeout(Duration::from_secs(10), bulk(&env, &key, &prompts("schnell", 3), "normal"))
        .await
        .expect("a submission of another model does not wait for the flux-dev one");
    assert_eq!(other["state"], "queued", "{other}");

    // The same model: waits for it.
    let same = spawn_bulk(&env, &key, "flux-dev", "dev again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!same.is_finished(), "a submission of the same model waits for the open one");
    assert!(!worker.is_finished(), "the worker waits for the commit of its batch's release");

    tx.commit().await.unwrap();
    let report = tokio::time::timeout(Duration::from_secs(10), worker).await.expect("the worker goes on after the commit").unwrap();
    assert_eq!((report.started, report.succeeded), (5, 5));
    let (status, same) = tokio::time::timeout(Duration::from_secs(10), same).await.expect("released after the commit").unwrap();
    assert_eq!(status, 201, "{same}");
    assert_eq!(same["state"], "queued", "{same}");
}

/// A worker that gets a submission's batch before the submission has
/// committed waits for the commit in the batch's lock
/// (`offpeak_store::release::lock_new_batches`) and runs it. Here the
/// scheduler pauses 3 s between its publish and its commit
/// (`OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS`) while two workers consume: no
/// message is taken for an orphan (a worker's `empty` batches), and each
/// job runs and is billed once. The submission holds its model's lock
/// only shared, so a worker waiting on that lock alone would not wait.
#[tokio::test]
async fn a_worker_faster_than_a_submissions_commit_waits_for_it_in_the_batchs_lock() {
    use offpeak_tests::procs::{System, SystemOptions};

    let sys = System::start(SystemOptions {
        env: vec![("OFFPEAK_BATCH_MAX".into(), "25".into()), ("OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS".into(), "3000".into())],
        ..Default::default()
    })
    .await;
    // A second wake-up means a first round has ended and opened the room.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sys.metric(&sys.api, "offpeak_release_wakeups_total", &[]).await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "the release loop ran no round");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = json!({"model": "flux-dev", "inputs": prompts("fast worker", 100), "priority": "normal"});
    let resp = sys.http.post(format!("{}/v1/jobs/bulk", sys.api)).bearer_auth(&sys.key).json(&body).send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    assert_eq!((status, body["state"].as_str()), (201, Some("queued")), "released at once: {body}");
    assert!(sys.log("scheduler").contains("failpoint: published, not committed"), "the submission paused after its publish");

    let states = sys.wait_all_terminal(Duration::from_secs(60)).await;
    assert_eq!(states.get("succeeded").copied(), Some(100), "{states:?}");
    let stats = sys.sim_stats().await;
    assert_eq!((stats["items"].as_u64(), stats["max_billed_per_input"].as_u64()), (Some(100), Some(1)), "{stats}");
    let mut empty = 0.0;
    for worker in &sys.workers {
        empty += sys.metric(worker.url.as_deref().expect("a worker's URL"), "offpeak_worker_batches_total", &["outcome=\"empty\""]).await;
    }
    assert_eq!(empty, 0.0, "no worker took a batch of the submission for an orphan");
}

/// Submissions of one model by different tenants never share a cache key
/// (it hashes the tenant), so neither waits for the other: each takes the
/// model's release lock shared and only its tenant's lock of the model
/// exclusive (`offpeak_store::release::lock_release_for`). Here a
/// transaction holds `acme`'s locks for `flux-dev` as a submission does
/// until its commit: `globex`'s `flux-dev` submission is released
/// meanwhile, and `acme`'s next one waits for the commit. (Until step 30
/// of BENCHMARKS.md, every submission of a model took its lock exclusive.)
#[tokio::test]
async fn submissions_of_one_model_by_different_tenants_are_released_side_by_side() {
    use offpeak_store::release as db;

    let (env, acme) = rounds_far_apart().await;
    let globex = env.tenant("globex", "UTC").await;
    let (status, body) = env.post(&acme, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": prompts("first", 1)})).await;
    assert_eq!(status, 201, "{body}");
    let acme_id = tenant_of(&env, bulk_ids(&body)[0]).await;

    let mut tx = env.pool.begin().await.unwrap();
    db::lock_release_for(&mut tx, acme_id, "flux-dev").await.unwrap();

    let (status, other) = tokio::time::timeout(Duration::from_secs(10), spawn_bulk(&env, &globex, "flux-dev", "globex"))
        .await
        .expect("another tenant's submission of the model does not wait for acme's")
        .unwrap();
    assert_eq!((status, other["state"].as_str()), (201, Some("queued")), "released at once: {other}");

    let same = spawn_bulk(&env, &acme, "flux-dev", "acme again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!same.is_finished(), "the same tenant's submission of the model waits for the open one");
    tx.commit().await.unwrap();
    let (status, same) = tokio::time::timeout(Duration::from_secs(10), same).await.expect("released after the commit").unwrap();
    assert_eq!((status, same["state"].as_str()), (201, Some("queued")), "released at once: {same}");
}

/// A release round holds up submissions released at once only of the
/// models it claimed, from its claim to its commit
/// (`offpeak_store::release::claim_due` takes their locks): a round that
/// finds nothing due holds up none, and one that claimed `flux-dev` jobs
/// lets a `flux-schnell` submission through while a `flux-dev` one waits
/// for its commit. (A round used to take the release lock exclusive, and
/// every submission queued behind it.)
#[tokio::test]
async fn a_round_holds_up_only_submissions_of_the_models_it_claimed() {
    use offpeak_core::clock::Clock;
    use offpeak_store::release as db;

    let (env, key) = rounds_far_apart().await;
    let submit = |model: &'static str, tag: &'static str| spawn_bulk(&env, &key, model, tag);
    let released = |(status, body): (u16, Value)| {
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["state"], "queued", "released at once: {body}");
    };

    // Held until 02:00 (low, outside the window).
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": prompts("tonight", 5)})).await;
    assert_eq!(status, 201, "{body}");
    let opens_at: DateTime<Utc> = body["release_at"].as_str().unwrap().parse().unwrap();

    // A round that finds nothing due, open: a flux-dev submission goes through.
    let mut idle = env.pool.begin().await.unwrap();
    db::lock_release(&mut idle).await.unwrap();
    assert!(db::claim_due(&mut idle, env.clock.now(), 100, 100).await.unwrap().jobs.is_empty());
    released(tokio::time::timeout(Duration::from_secs(10), submit("flux-dev", "idle")).await.expect("an idle round holds up nothing").unwrap());
    idle.rollback().await.unwrap();

    // A round at 02:00 that claimed the five flux-dev jobs, open.
    let mut round = env.pool.begin().await.unwrap();
    db::lock_release(&mut round).await.unwrap();
    assert_eq!(db::claim_due(&mut round, opens_at, 100, 100).await.unwrap().jobs.len(), 5);
    released(
        tokio::time::timeout(Duration::from_secs(10), submit("flux-schnell", "other"))
            .await
            .expect("a round that claimed flux-dev holds up no flux-schnell submission")
            .unwrap(),
    );
    let same = submit("flux-dev", "same");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!same.is_finished(), "a flux-dev submission waits for the round that claimed flux-dev jobs");
    round.commit().await.unwrap();
    released(tokio::time::timeout(Duration::from_secs(10), same).await.expect("released after the round's commit").unwrap());
}
