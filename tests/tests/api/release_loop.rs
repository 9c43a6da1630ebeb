//! The release loop: replicas never publish a job twice, release is fair
//! between tenants, backpressure stops publishing, and jobs whose window
//! closed roll over to the next one.

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
    let queued: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'queued' AND batch_id IS NOT NULL")
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
