//! The release loop: replicas never publish a job twice, release is fair
//! between tenants, backpressure stops publishing, and jobs whose window
//! closed roll over to the next one. And what wakes the loop (issue #17):
//! the next due instant, announcements of due jobs over `LISTEN/NOTIFY`
//! (surviving a lost connection), never a spin on work it cannot do.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use serde_json::json;
use uuid::Uuid;

use offpeak_scheduler::release::ReleaseConfig;
use offpeak_core::clock::Clock;
use offpeak_core::message::BatchMessage;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn bulk(env: &TestEnv, key: &str, n: usize, model: &str) -> Vec<Uuid> {
    // Distinct inputs on every call: identical ones would be answered from
    // the cache or coalesced, which these tests are not about.
    let call = Uuid::now_v7();
    let inputs: Vec<_> = (0..n).map(|i| json!({"prompt": format!("p{i}"), "call": call})).collect();
    let (status, body) = env.post(key, "/v1/jobs/bulk", &json!({"model": model, "inputs": inputs})).await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

/// Drains every message of the env's queue (no worker running).
async fn drain(env: &TestEnv) -> Vec<BatchMessage> {
    let ch = env.amqp.create_channel().await.unwrap();
    let mut consumer = ch
        .basic_consume(&env.topology.queue, "drain", BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let mut out = Vec::new();
    while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await {
        out.push(BatchMessage::from_bytes(&d.data).unwrap());
        d.ack(BasicAckOptions::default()).await.unwrap();
    }
    let _ = ch.close(200, "drained").await;
    out
}

#[tokio::test]
async fn two_scheduler_replicas_never_publish_a_job_twice() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let mut all = Vec::new();
    for t in 0..4 {
        let key = env.tenant(&format!("t{t}"), "UTC").await;
        for model in ["flux-schnell", "flux-dev"] {
            all.extend(bulk(&env, &key, 750, model).await);
        }
    }
    // Small rounds so the replicas interleave many times.
    let cfg = ReleaseConfig { per_tenant: 50, round_max: 150, batch_max: 20, max_queue_depth: 100_000, ..Default::default() };
    let (a, b) = (env.releaser_with(cfg.clone()), env.releaser_with(cfg));
    let run = |r: offpeak_scheduler::release::Releaser| async move {
        let mut released = 0;
        loop {
            let rep = r.run_once().await.unwrap();
            released += rep.released;
            if rep.released == 0 {
                return released;
            }
        }
    };
    let (ra, rb) = tokio::join!(tokio::spawn(run(a)), tokio::spawn(run(b)));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra + rb, 6000, "every job released once between the replicas ({ra} + {rb})");
    assert!(ra > 0 && rb > 0, "both replicas took part ({ra}, {rb})");

    let messages = drain(&env).await;
    let mut seen = HashSet::new();
    for m in &messages {
        assert!(m.job_ids.len() <= 20);
        for id in &m.job_ids {
            assert!(seen.insert(*id), "job {id} published twice");
        }
    }
    assert_eq!(seen, all.into_iter().collect::<HashSet<_>>(), "every job published exactly once");
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'queued' AND batch_id IS NOT NULL")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(queued, 6000);
}

#[tokio::test]
async fn a_tenants_ten_jobs_are_not_starved_by_anothers_backlog() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let big = env.tenant("big", "UTC").await;
    let small = env.tenant("small", "UTC").await;
    bulk(&env, &big, 5000, "flux-schnell").await;
    let small_ids = bulk(&env, &small, 10, "flux-schnell").await;
    let cfg = ReleaseConfig { per_tenant: 100, round_max: 200, ..Default::default() };
    let report = env.releaser_with(cfg).run_once().await.unwrap();
    assert_eq!(report.released, 110, "the big tenant gets its share, the small one all of its jobs");
    for id in small_ids {
        assert_eq!(env.job(id).await.state, "queued");
    }
}

/// A round is split evenly between the tenants with due jobs; one whose
/// share is cut by a tenant's share, not by the round's size, says there
/// is more, and the next round gives the tenant left the whole round.
#[tokio::test]
async fn a_round_is_split_evenly_between_the_tenants_with_due_jobs() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let big = env.tenant("big", "UTC").await;
    bulk(&env, &big, 50, "flux-schnell").await;
    let mut small = Vec::new();
    for t in 0..9 {
        let key = env.tenant(&format!("small{t}"), "UTC").await;
        small.extend(bulk(&env, &key, 1, "flux-schnell").await);
    }
    env.tenant("idle", "UTC").await;
    let cfg = ReleaseConfig { per_tenant: 1_000, round_max: 100, ..Default::default() };
    let r = env.releaser_with(cfg);

    let first = r.run_once().await.unwrap();
    assert_eq!(first.released, 9 + 10, "10 tenants with due jobs share the round of 100: 10 each at most");
    assert!(first.more, "the big tenant got its whole share: more is due");
    for id in small {
        assert_eq!(env.job(id).await.state, "queued");
    }
    let second = r.run_once().await.unwrap();
    assert_eq!((second.released, second.more), (40, false), "the one tenant left gets the whole round");
}

#[tokio::test]
async fn release_stops_while_the_queue_is_deeper_than_its_limit() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    bulk(&env, &key, 500, "flux-dev").await;
    let cfg = ReleaseConfig { batch_max: 50, max_queue_depth: 3, ..Default::default() };
    let r = env.releaser_with(cfg);

    let first = r.run_once().await.unwrap();
    assert_eq!((first.released, first.batches), (150, 3), "no more than the queue has room for");
    let second = r.run_once().await.unwrap();
    assert!(second.throttled);
    assert_eq!(second.released, 0);
    assert_eq!(env.queue_depth().await, 3);

    // Workers drain the queue; release resumes.
    assert_eq!(drain(&env).await.len(), 3);
    let third = r.run_once().await.unwrap();
    assert_eq!(third.released, 150);
}

#[tokio::test]
async fn jobs_not_released_before_their_window_closes_roll_over_to_the_next_window() {
    // Submitted at noon UTC: window 02:00–06:00 UTC the next day.
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let (_, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"p": 1}})).await;
    let (_, other) = env
        .post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"p": 2}, "timezone": "Asia/Tokyo"}))
        .await;
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(job["release_at"], "2027-06-02T02:00:00Z");

    // The scheduler was down (or throttled) through the whole window.
    env.clock.set(at("2027-06-02T06:00:00Z"));
    let report = env.release_once().await;
    assert_eq!(report.released, 0, "a closed window releases nothing");
    assert_eq!(report.rolled_over, 2);
    let row = env.job(id).await;
    assert_eq!(row.state, "held");
    assert_eq!(row.release_at, at("2027-06-03T02:00:00Z"));
    assert_eq!(row.window_closes_at, Some(at("2027-06-03T06:00:00Z")));
    let other = env.job(other["id"].as_str().unwrap().parse().unwrap()).await;
    assert_eq!(other.release_at, at("2027-06-02T17:00:00Z"), "Tokyo's next 02:00 JST");

    env.clock.set(at("2027-06-02T17:00:00Z"));
    assert_eq!(env.release_once().await.released, 1, "Tokyo's job runs in its next window");
    env.clock.set(at("2027-06-03T02:00:00Z"));
    assert_eq!(env.release_once().await.released, 1, "the UTC job in its next window");
}

#[tokio::test]
async fn a_message_whose_release_was_rolled_back_does_nothing() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = bulk(&env, &key, 3, "flux-schnell").await;
    // A publish whose transaction never committed: the batch id is unknown.
    let orphan = BatchMessage::new(Uuid::now_v7(), "flux-schnell".into(), ids.clone(), env.clock.now());
    env.publisher.publish_all(&[orphan]).await.unwrap();
    env.start_worker();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(env.queue_depth().await, 0, "acknowledged");
    for id in &ids {
        assert_eq!(env.job(*id).await.state, "held", "untouched");
    }
    assert_eq!(env.sim.sim.stats().batches, 0, "the provider was not called");
    // The real release still works them.
    env.release_once().await;
    let rows = env.wait_terminal(&ids, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"));
}

#[tokio::test]
async fn a_worker_that_gets_a_batch_before_its_release_commits_waits_for_it() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let ids = bulk(&env, &key, 5, "flux-dev").await;

    // The release loop's steps by hand (its lock, claim, queue), pausing
    // between publish and commit.
    let now = env.clock.now();
    let mut tx = env.pool.begin().await.unwrap();
    offpeak_store::release::lock_release(&mut tx).await.unwrap();
    let claimed = offpeak_store::release::claim_due(&mut tx, now, 100, 100).await.unwrap();
    assert_eq!(claimed.jobs.len(), 5);
    let batch_id = Uuid::now_v7();
    offpeak_store::release::mark_queued(&mut tx, batch_id, "flux-dev", &ids, now).await.unwrap();
    let msg = BatchMessage::new(batch_id, "flux-dev".into(), ids.clone(), now);

    let ctx = env.batch_context();
    let worker = tokio::spawn({
        let msg = msg.clone();
        async move { offpeak_worker::process::process_batch(&ctx, &msg).await.unwrap() }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!worker.is_finished(), "the worker waits for the round to end");
    tx.commit().await.unwrap();
    let report = worker.await.unwrap();
    assert_eq!((report.started, report.succeeded), (5, 5));

    // And a release that rolls back leaves the waiting worker nothing to do.
    let more = bulk(&env, &key, 2, "flux-dev").await;
    let mut tx = env.pool.begin().await.unwrap();
    offpeak_store::release::lock_release(&mut tx).await.unwrap();
    offpeak_store::release::claim_due(&mut tx, now, 100, 100).await.unwrap();
    let orphan = Uuid::now_v7();
    offpeak_store::release::mark_queued(&mut tx, orphan, "flux-dev", &more, now).await.unwrap();
    let ctx = env.batch_context();
    let msg = BatchMessage::new(orphan, "flux-dev".into(), more.clone(), now);
    let worker = tokio::spawn(async move { offpeak_worker::process::process_batch(&ctx, &msg).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.rollback().await.unwrap();
    assert_eq!(worker.await.unwrap().started, 0);
    for id in more {
        assert_eq!(env.job(id).await.state, "held");
    }
}

/// A round reads its due jobs without row locks (the release lock keeps
/// other rounds out), so a client can cancel one after the read: the
/// round's writes leave it out of its batch and message, and the identical
/// job that was to follow it, as its leader, stays held for the next round.
#[tokio::test]
async fn a_job_cancelled_after_the_round_read_it_is_left_out_and_its_followers_wait() {
    use offpeak_scheduler::{admission::CacheConfig, coalesce};
    use offpeak_store::release::{self as jobs, NewBatch};

    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let submit = |body: serde_json::Value| {
        let (env, key) = (&env, &key);
        async move {
            let (status, resp) = env.post(key, "/v1/jobs", &body).await;
            assert_eq!(status, 201, "{resp}");
            resp["id"].as_str().unwrap().parse::<Uuid>().unwrap()
        }
    };
    let gone = submit(json!({"model": "flux-dev", "input": {"p": 1}})).await;
    let kept = submit(json!({"model": "flux-dev", "input": {"p": 2}})).await;
    let leader = submit(json!({"model": "flux-schnell", "input": {"p": "same"}})).await;
    let follower = submit(json!({"model": "flux-schnell", "input": {"p": "same"}})).await;

    // The round's steps by hand, with two cancellations after its read.
    let now = env.clock.now();
    let mut tx = env.pool.begin().await.unwrap();
    jobs::lock_release(&mut tx).await.unwrap();
    let claimed = jobs::claim_due(&mut tx, now, 100, 100).await.unwrap();
    assert_eq!(claimed.jobs.len(), 4);
    for id in [gone, leader] {
        let path = format!("/v1/jobs/{id}");
        let (status, body) = tokio::time::timeout(Duration::from_secs(10), env.delete(&key, &path)).await.expect("a cancel does not wait for the round");
        assert_eq!(status, 200, "{body}");
    }
    let step = coalesce::run(&mut tx, claimed.jobs, CacheConfig::default(), &Default::default(), now).await.unwrap();
    assert_eq!(step.follow.iter().map(|f| (f.0, f.1)).collect::<Vec<_>>(), vec![(follower, leader)]);
    let batches: Vec<NewBatch> = step
        .send
        .iter()
        .map(|j| NewBatch { id: Uuid::now_v7(), model: j.model.clone(), job_ids: vec![j.id] })
        .collect();
    let queued = jobs::mark_queued_many(&mut tx, &batches, now).await.unwrap();
    assert_eq!(queued.iter().flat_map(|b| b.job_ids.clone()).collect::<Vec<_>>(), vec![kept]);
    assert_eq!(coalesce::attach_followers(&mut tx, &step.follow, now).await.unwrap(), 0);
    tx.commit().await.unwrap();

    let counts: Vec<i32> = sqlx::query_scalar("SELECT job_count FROM batches").fetch_all(&env.pool).await.unwrap();
    assert_eq!(counts, vec![1], "one batch, of the job still held");
    assert_eq!(env.job(gone).await.state, "cancelled");
    assert_eq!(env.job(kept).await.state, "queued");
    let f = env.job(follower).await;
    assert_eq!((f.state.as_str(), f.cache_source), ("held", None));

    // The next round sends it on its own.
    let report = env.release_once().await;
    assert_eq!((report.released, report.coalesced), (1, 0), "{report:?}");
}

// ----- What wakes the loop ------------------------------------------------------------

/// An interval far longer than any bounded wait below: a job released
/// within one was released by a wake-up, not by the poll.
const LONG_INTERVAL: Duration = Duration::from_secs(60);

/// Waits (up to `timeout`) until the job has left `held`.
async fn wait_released(env: &TestEnv, id: Uuid, timeout: Duration) -> offpeak_store::jobs::JobRow {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let row = env.job(id).await;
        if row.state != "held" {
            return row;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} still held after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the loop listens (its listener connects beside its first round).
async fn wait_listening(r: &offpeak_scheduler::release::Releaser) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !r.wakeups().listening() {
        assert!(tokio::time::Instant::now() < deadline, "the release loop does not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn submit(env: &TestEnv, key: &str, body: serde_json::Value) -> Uuid {
    let (status, resp) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{resp}");
    resp["id"].as_str().unwrap().parse().unwrap()
}

/// The next due instant is after the round's own instant (so a due job
/// the round did not release never wakes it again), within the span, and
/// a held job's window close counts (its roll-over).
#[tokio::test]
async fn the_next_due_instant_is_after_the_rounds_own_and_a_window_close_counts() {
    use offpeak_store::release::next_due;
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T01:59:30Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let other = env.tenant("other", "Asia/Tokyo").await;
    submit(&env, &key, json!({"model": "flux-dev", "input": {"p": 1}})).await;
    submit(&env, &other, json!({"model": "flux-dev", "input": {"p": 2}})).await;

    let report = env.release_once().await;
    assert_eq!((report.released, report.next_due), (0, Some(at("2027-06-01T02:00:00Z"))), "{report:?}");
    let pool = &env.pool;
    let s = |t: &str| at(t);
    assert_eq!(next_due(pool, s("2027-06-01T01:59:30Z"), s("2027-06-01T02:00:30Z")).await.unwrap(), Some(s("2027-06-01T02:00:00Z")));
    assert_eq!(next_due(pool, s("2027-06-01T02:00:00Z"), s("2027-06-01T02:01:00Z")).await.unwrap(), None, "not the round's own instant");
    assert_eq!(next_due(pool, s("2027-06-01T01:00:00Z"), s("2027-06-01T01:01:00Z")).await.unwrap(), None, "beyond the span");
    assert_eq!(
        next_due(pool, s("2027-06-01T05:59:30Z"), s("2027-06-01T06:00:30Z")).await.unwrap(),
        Some(s("2027-06-01T06:00:00Z")),
        "the UTC job's window closes at 06:00"
    );
    assert_eq!(
        next_due(pool, s("2027-06-01T16:59:30Z"), s("2027-06-01T17:00:30Z")).await.unwrap(),
        Some(s("2027-06-01T17:00:00Z")),
        "Tokyo's job, a probe of another tenant"
    );
}

/// With a manual clock, the loop sleeps until the next due instant as the
/// clock reads it (capped by the interval): once the clock reaches it, the
/// job is released at once, not a 60 s interval later.
#[tokio::test]
async fn the_loop_wakes_at_the_next_due_instant_not_after_its_interval() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T01:59:59.700Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let id = submit(&env, &key, json!({"model": "flux-dev", "input": {"p": 1}})).await;
    assert_eq!(env.job(id).await.release_at, at("2027-06-01T02:00:00Z"));
    let r = env.start_release_loop_with(ReleaseConfig { interval: LONG_INTERVAL, ..Default::default() });

    // The loop wakes every 300 ms (the clock does not move by itself), and
    // finds nothing due before the clock says 02:00.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(env.job(id).await.state, "held", "not before its instant");
    assert!(r.rounds() >= 2, "woken at the due instant as the clock reads it ({} rounds)", r.rounds());

    env.clock.set(at("2027-06-01T02:00:00Z"));
    let row = wait_released(&env, id, Duration::from_secs(10)).await;
    assert_eq!(row.queued_at, Some(at("2027-06-01T02:00:00Z")), "released by a round at its instant");
}

/// With the real clock: a job copied in (announced by nobody) 1.5 s before
/// it is due is released by a round at its instant or just after it, never
/// before, without waiting for the 60 s interval.
#[tokio::test]
async fn with_the_real_clock_a_job_is_released_at_its_instant_never_before() {
    use offpeak_core::clock::SystemClock;
    use offpeak_runtime::shutdown::Shutdown;
    let env = TestEnv::new().await;
    env.tenant("acme", "UTC").await;
    let tenant: Uuid = sqlx::query_scalar("SELECT id FROM tenants WHERE name = 'acme'").fetch_one(&env.pool).await.unwrap();
    let due = Utc::now() + chrono::Duration::milliseconds(1500);
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, created_at)
         VALUES ($1, $2, 'flux-dev', '{\"p\": 1}', 'low', 'UTC', 'held', $3, $3 + interval '4 hours', now())",
    )
    .bind(id)
    .bind(tenant)
    .bind(due)
    .execute(&env.pool)
    .await
    .unwrap();
    // Waiting, as the API's insert leaves it: the loop's claim reads `held_jobs`.
    sqlx::query(
        "INSERT INTO held_jobs (id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic)
         SELECT id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic FROM jobs WHERE id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .unwrap();
    let cfg = ReleaseConfig { interval: LONG_INTERVAL, ..Default::default() };
    let r = offpeak_scheduler::release::Releaser::new(env.pool.clone(), env.publisher.clone(), std::sync::Arc::new(SystemClock), cfg);
    let (shutdown, signal) = Shutdown::new();
    let task = tokio::spawn(r.run(signal));

    let row = wait_released(&env, id, Duration::from_secs(20)).await;
    let queued_at = row.queued_at.expect("queued");
    assert!(queued_at >= due, "released at {queued_at}, before its instant {due}");
    assert!(queued_at - due < chrono::Duration::seconds(10), "released at {queued_at}: the interval's poll, not the instant {due}");
    shutdown.trigger();
    task.await.unwrap();
}

/// Every path that stores a job due now announces it: a normal-priority
/// job (grouped single, keyed single, bulk, a schedule's firing) and a
/// follower freed by its leader's cancel are released at once, with a
/// 60 s interval.
#[tokio::test]
async fn jobs_due_now_are_released_at_once_by_their_announcement() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let r = env.start_release_loop_with(ReleaseConfig { interval: LONG_INTERVAL, ..Default::default() });
    wait_listening(&r).await;
    // Past the first round and its reading of the next due instant.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let bound = Duration::from_secs(15);

    let single = submit(&env, &key, json!({"model": "flux-dev", "priority": "normal", "input": {"p": "single"}})).await;
    assert_eq!(wait_released(&env, single, bound).await.state, "queued", "a grouped single submission");

    let resp = env
        .http
        .post(env.url("/v1/jobs"))
        .bearer_auth(&key)
        .header("Idempotency-Key", "k-1")
        .json(&json!({"model": "flux-dev", "priority": "normal", "input": {"p": "keyed"}}))
        .send()
        .await
        .unwrap();
    let (status, body) = TestEnv::read(resp).await;
    assert_eq!(status, 201, "{body}");
    let keyed: Uuid = body["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(wait_released(&env, keyed, bound).await.state, "queued", "a keyed single submission");

    let (status, body) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "priority": "normal", "inputs": [{"p": "b1"}, {"p": "b2"}]}))
        .await;
    assert_eq!(status, 201, "{body}");
    for id in bulk_ids(&body) {
        assert_eq!(wait_released(&env, id, bound).await.state, "queued", "a bulk submission");
    }

    // A leader and its follower, released together; no worker runs, so the
    // leader stays queued until it is cancelled, which frees the follower.
    let leader = submit(&env, &key, json!({"model": "flux-schnell", "priority": "normal", "input": {"p": "same"}})).await;
    assert_eq!(wait_released(&env, leader, bound).await.state, "queued");
    let follower = submit(&env, &key, json!({"model": "flux-schnell", "priority": "normal", "input": {"p": "same"}})).await;
    let f = wait_released(&env, follower, bound).await;
    assert_eq!((f.state.as_str(), f.cache_source), ("queued", Some(leader)), "coalesced behind its leader");
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{leader}")).await;
    assert_eq!(status, 200, "{body}");
    let deadline = tokio::time::Instant::now() + bound;
    loop {
        let f = env.job(follower).await;
        if f.state == "queued" && f.batch_id.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the freed follower was not released on its own: {f:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A schedule's firing, made due at once (normal priority).
    let (status, s) = env
        .post(&key, "/v1/schedules", &json!({"name": "tick", "cron": "* * * * *",
            "job": {"model": "flux-dev", "priority": "normal", "input": {"p": "tick"}}}))
        .await;
    assert_eq!(status, 201, "{s}");
    env.clock.set(at("2027-06-01T12:01:00.250Z"));
    let firer = offpeak_scheduler::firing::Firer::new(env.pool.clone(), env.shared_clock(), Default::default());
    assert_eq!(firer.run_once().await.unwrap().created, 1);
    let fired: Uuid = sqlx::query_scalar("SELECT id FROM jobs WHERE metadata->>'schedule_id' = $1")
        .bind(s["id"].as_str().unwrap())
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(wait_released(&env, fired, bound).await.state, "queued", "a schedule's firing");
}

/// A loop that cannot release what is due (the queue is at its depth
/// limit) waits its interval between rounds, and announcements of more due
/// jobs do not wake it: it does not spin.
#[tokio::test]
async fn the_loop_does_not_spin_on_due_jobs_it_cannot_release() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "priority": "normal", "inputs": [{"p": 1}, {"p": 2}, {"p": 3}]}))
        .await;
    assert_eq!(status, 201, "{body}");
    let cfg = ReleaseConfig { interval: Duration::from_secs(1), batch_max: 1, max_queue_depth: 1, ..Default::default() };
    let r = env.start_release_loop_with(cfg);
    wait_listening(&r).await;
    // One batch fills the queue; every round after is throttled.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while env.queue_depth().await < 1 {
        assert!(tokio::time::Instant::now() < deadline, "nothing was released");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let before = r.rounds();
    // 3 s of normal-priority submissions, each announced, 10 a second.
    for i in 0..30 {
        submit(&env, &key, json!({"model": "flux-dev", "priority": "normal", "input": {"more": i}})).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rounds = r.rounds() - before;
    assert!(rounds <= 6, "{rounds} rounds in about 3 s with a 1 s interval: the loop spins or announcements wake it");
    assert_eq!(env.queue_depth().await, 1);
    // As the API shows them: a job a round released keeps `held` in its own row.
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'held'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(held, 32, "nothing more was released");
}

/// The listener's connection killed: it reconnects by itself, and jobs
/// announced afterwards still wake the loop.
#[tokio::test]
async fn the_listener_survives_its_connection_being_killed() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let r = env.start_release_loop_with(ReleaseConfig { interval: LONG_INTERVAL, ..Default::default() });
    wait_listening(&r).await;
    let listener = || async {
        sqlx::query_scalar::<_, i32>(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()",
        )
        .fetch_optional(&env.pool)
        .await
        .unwrap()
    };
    let pid = listener().await.expect("a connection LISTENs");
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)").bind(pid).fetch_one(&env.pool).await.unwrap();
    assert!(killed);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(new) = listener().await {
            if new != pid && r.wakeups().listening() {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "the listener did not reconnect");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Past the round the reconnection runs for what it may have missed.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = submit(&env, &key, json!({"model": "flux-dev", "priority": "normal", "input": {"p": 1}})).await;
    assert_eq!(wait_released(&env, id, Duration::from_secs(15)).await.state, "queued");
}
