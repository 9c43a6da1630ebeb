//! docs/spec.md, "HTTP API": `DELETE /v1/jobs/{id}` cancels a job that has not
//! started (from `held`, or from `queued` before a worker starts it) and is a
//! 409 otherwise; `GET /v1/jobs` lists the tenant's jobs newest first,
//! filtered and cursor-paginated.

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::clock::Clock as _;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn id(v: &Value) -> Uuid {
    v["id"].as_str().unwrap_or_else(|| panic!("has an id: {v}")).parse().unwrap()
}

fn ids(list: &Value) -> Vec<Uuid> {
    list["jobs"].as_array().unwrap_or_else(|| panic!("a listing: {list}")).iter().map(id).collect()
}

async fn submit(env: &TestEnv, key: &str, body: Value) -> Value {
    let (status, job) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{job}");
    job
}

/// Waits until the worker has taken every message off the queue, then a
/// little longer for it to finish with the last one.
async fn wait_queue_drained(env: &TestEnv) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while env.queue_depth().await > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the worker never took the batch");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
}

// ------------------------------------------------------------ cancel

#[tokio::test]
async fn a_held_job_is_cancelled_and_never_released_or_sent_to_the_provider() {
    // Noon in UTC; the job's window opens at 02:00 UTC tomorrow.
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "never"}})).await;
    assert_eq!(job["state"], "held");
    assert_eq!(job["release_at"], "2027-06-02T02:00:00Z");

    env.clock.set(at("2027-06-01T13:30:00Z"));
    let (status, cancelled) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["id"], job["id"]);
    assert_eq!(cancelled["finished_at"], "2027-06-01T13:30:00Z", "finished at the clock's instant");
    assert!(cancelled["started_at"].is_null());

    // Its window comes and goes; nothing is released.
    env.clock.set(at("2027-06-02T02:00:00Z"));
    assert_eq!(env.release_once().await.released, 0);
    env.clock.set(at("2027-06-02T05:59:00Z"));
    assert_eq!(env.release_once().await.released, 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = env.job(id(&job)).await;
    assert_eq!(row.state, "cancelled");
    assert!(row.batch_id.is_none(), "never put in a batch");
    assert_eq!(env.sim.sim.stats().items, 0, "the provider never saw it");

    let (status, view) = env.get(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!((status, view["state"].as_str()), (200, Some("cancelled")));
}

#[tokio::test]
async fn a_queued_job_cancelled_before_a_worker_starts_it_is_never_sent() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-pro", "input": {"prompt": "stop"}, "priority": "normal"})).await;

    // Released, but no worker is running yet.
    let report = env.release_once().await;
    assert_eq!((report.released, report.batches), (1, 1));
    assert_eq!(env.job(id(&job)).await.state, "queued");
    assert_eq!(env.queue_depth().await, 1);

    let (status, cancelled) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["state"], "cancelled");
    assert_eq!(cancelled["finished_at"], "2027-06-01T12:00:00Z");

    // Now a worker takes the batch: the job stays cancelled, nothing is sent.
    env.start_worker();
    wait_queue_drained(&env).await;
    let row = env.job(id(&job)).await;
    assert_eq!(row.state, "cancelled");
    assert!(row.started_at.is_none(), "never started");
    assert_eq!(row.attempts, 0);
    assert!(row.credits.is_none(), "no credits charged");
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 0, "the provider got nothing for it");
    assert_eq!(stats.batches, 0, "not even an empty batch call");
}

#[tokio::test]
async fn cancelling_one_job_of_a_released_batch_leaves_the_others_to_run() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let (status, bulk) = env
        .post(
            &key,
            "/v1/jobs/bulk",
            &json!({"model": "flux-schnell", "inputs": [{"p": 0}, {"p": 1}, {"p": 2}], "priority": "normal"}),
        )
        .await;
    assert_eq!(status, 201, "{bulk}");
    let all: Vec<Uuid> = bulk_ids(&bulk);
    assert_eq!(env.release_once().await.batches, 1);
    let (status, _) = env.delete(&key, &format!("/v1/jobs/{}", all[1])).await;
    assert_eq!(status, 200);

    env.start_worker();
    let rows = env.wait_terminal(&all, Duration::from_secs(20)).await;
    let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, ["succeeded", "cancelled", "succeeded"]);
    assert_eq!(env.sim.sim.stats().items, 2, "only the two live jobs were sent");
}

#[tokio::test]
async fn a_succeeded_job_cannot_be_cancelled_409_naming_its_state() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-schnell", "input": {"prompt": "done"}, "priority": "normal"})).await;
    env.release_once().await;
    let rows = env.wait_terminal(&[id(&job)], Duration::from_secs(20)).await;
    assert_eq!(rows[0].state, "succeeded");

    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancellable");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("succeeded"), "the message names the state: {msg}");
    let row = env.job(id(&job)).await;
    assert_eq!(row.state, "succeeded", "a refused cancel changes nothing");
    assert!(row.result.is_some());
}

#[tokio::test]
async fn cancelling_twice_is_a_409_the_second_time() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-dev", "input": {}})).await;
    let path = format!("/v1/jobs/{}", id(&job));
    let (status, first) = env.delete(&key, &path).await;
    assert_eq!(status, 200, "{first}");

    env.clock.set(at("2027-06-01T12:05:00Z"));
    let (status, body) = env.delete(&key, &path).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancellable");
    assert!(body["error"]["message"].as_str().unwrap().contains("cancelled"), "{body}");
    let row = env.job(id(&job)).await;
    assert_eq!(row.finished_at, Some(at("2027-06-01T12:00:00Z")), "the first cancel's time is kept");
}

#[tokio::test]
async fn a_running_job_cannot_be_cancelled() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-dev", "input": {}, "priority": "normal"})).await;
    env.release_once().await;
    // What a worker does first with a batch: mark its jobs running.
    let batch = env.job(id(&job)).await.batch_id.expect("released into a batch");
    let started = offpeak_store::batches::start_attempt(&env.pool, batch, "flux-dev", &[id(&job)], env.clock.now()).await.unwrap();
    assert_eq!(started.len(), 1);

    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancellable");
    assert!(body["error"]["message"].as_str().unwrap().contains("running"), "{body}");
    assert_eq!(env.job(id(&job)).await.state, "running");
}

#[tokio::test]
async fn a_queued_job_is_not_cancelled_while_a_worker_is_starting_its_batch() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-dev", "input": {}, "priority": "normal"})).await;
    env.release_once().await;
    let batch = env.job(id(&job)).await.batch_id.expect("released into a batch");
    // A worker's start holds the batch's lock while it reads which jobs are
    // still queued: a cancel then must not slip in behind its back.
    let start = offpeak_store::batches::lock_batch(&env.pool, batch).await.unwrap();
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "not_cancellable");
    start.rollback().await.unwrap();
    // With the lock free and the batch still unstarted, it is cancellable.
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", id(&job))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["state"], "cancelled");
}

#[tokio::test]
async fn a_start_after_a_cancel_leaves_the_cancelled_job_out_and_runs_the_rest() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let a = submit(&env, &key, json!({"model": "flux-dev", "input": {"n": 1}, "priority": "normal"})).await;
    let b = submit(&env, &key, json!({"model": "flux-dev", "input": {"n": 2}, "priority": "normal"})).await;
    env.release_once().await;
    let batch = env.job(id(&a)).await.batch_id.expect("released into a batch");
    assert_eq!(env.job(id(&b)).await.batch_id, Some(batch), "one batch");
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", id(&a))).await;
    assert_eq!(status, 200, "{body}");

    let started = offpeak_store::batches::start_attempt(&env.pool, batch, "flux-dev", &[id(&a), id(&b)], env.clock.now()).await.unwrap();
    assert_eq!(started.iter().map(|j| j.id).collect::<Vec<_>>(), vec![id(&b)]);
    assert_eq!(started[0].attempts, 1);
    let (ra, rb) = (env.job(id(&a)).await, env.job(id(&b)).await);
    assert_eq!((ra.state.as_str(), rb.state.as_str()), ("cancelled", "running"));
    assert_eq!(rb.attempts, 1, "the batch's attempt shows on its job");
    assert!(rb.started_at.is_some());
    // The listing filters on the state as shown.
    let (_, running) = env.get(&key, "/v1/jobs?state=running").await;
    assert_eq!(ids(&running), vec![id(&b)]);
    let (_, queued) = env.get(&key, "/v1/jobs?state=queued").await;
    assert_eq!(ids(&queued), Vec::<Uuid>::new());
}

// ------------------------------------------------------------ list

#[tokio::test]
async fn the_listing_is_newest_first_and_pages_of_10_cover_25_jobs_exactly() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let mut submitted = Vec::new();
    for i in 0..25 {
        let job = submit(&env, &key, json!({"model": "flux-schnell", "input": {"n": i}})).await;
        submitted.push(id(&job));
    }
    let newest_first: Vec<Uuid> = submitted.iter().rev().copied().collect();

    let (status, all) = env.get(&key, "/v1/jobs").await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(ids(&all), newest_first, "one page of 25 (default limit is larger), newest first");
    assert!(all["next_cursor"].is_null());
    assert_eq!(all["jobs"][0]["input"], json!({"n": 24}), "jobs are shown whole");

    let mut pages = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            None => "/v1/jobs?limit=10".to_owned(),
            Some(c) => format!("/v1/jobs?limit=10&cursor={c}"),
        };
        let (status, page) = env.get(&key, &path).await;
        assert_eq!(status, 200, "{page}");
        pages.push(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "pagination ends");
    }
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert_eq!(sizes, [10, 10, 5]);
    let flat: Vec<Uuid> = pages.concat();
    assert_eq!(flat, newest_first, "no duplicates, no gaps, in order");
    assert_eq!(flat.iter().collect::<HashSet<_>>().len(), 25);
}

#[tokio::test]
async fn a_page_that_ends_exactly_on_the_last_job_has_no_next_cursor() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    for i in 0..20 {
        submit(&env, &key, json!({"model": "flux-schnell", "input": {"n": i}})).await;
    }
    let (_, first) = env.get(&key, "/v1/jobs?limit=10").await;
    let cursor = first["next_cursor"].as_str().expect("a second page exists").to_owned();
    let (_, second) = env.get(&key, &format!("/v1/jobs?limit=10&cursor={cursor}")).await;
    assert_eq!(ids(&second).len(), 10);
    assert!(second["next_cursor"].is_null(), "no empty third page is promised: {}", second["next_cursor"]);
}

#[tokio::test]
async fn the_listing_filters_by_state_and_model() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let mut by_model: Vec<(Uuid, &str)> = Vec::new();
    for (i, model) in ["flux-schnell", "flux-dev", "stable-audio", "flux-dev", "flux-schnell", "flux-dev"].into_iter().enumerate() {
        let job = submit(&env, &key, json!({"model": model, "input": {"n": i}})).await;
        by_model.push((id(&job), model));
    }
    // Cancel two of them: one flux-dev, one flux-schnell.
    for cancel in [by_model[1].0, by_model[4].0] {
        let (status, _) = env.delete(&key, &format!("/v1/jobs/{cancel}")).await;
        assert_eq!(status, 200);
    }
    let expect = |pred: &dyn Fn(usize, &str) -> bool| -> Vec<Uuid> {
        by_model.iter().enumerate().rev().filter(|(i, (_, m))| pred(*i, m)).map(|(_, (id, _))| *id).collect()
    };

    let (status, list) = env.get(&key, "/v1/jobs?model=flux-dev").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(ids(&list), expect(&|_, m| m == "flux-dev"));
    assert!(list["jobs"].as_array().unwrap().iter().all(|j| j["model"] == "flux-dev"));

    let (_, list) = env.get(&key, "/v1/jobs?state=cancelled").await;
    assert_eq!(ids(&list), expect(&|i, _| i == 1 || i == 4));
    let (_, list) = env.get(&key, "/v1/jobs?state=held").await;
    assert_eq!(ids(&list), expect(&|i, _| i != 1 && i != 4));

    let (_, list) = env.get(&key, "/v1/jobs?state=held&model=flux-dev").await;
    assert_eq!(ids(&list), expect(&|i, m| m == "flux-dev" && i != 1));
    let (_, list) = env.get(&key, "/v1/jobs?state=succeeded").await;
    assert_eq!(ids(&list), Vec::<Uuid>::new());
    let (_, list) = env.get(&key, "/v1/jobs?model=minimax-video").await;
    assert_eq!(ids(&list), Vec::<Uuid>::new());
    let (_, list) = env.get(&key, "/v1/jobs?model=no-such-model").await;
    assert_eq!(ids(&list), Vec::<Uuid>::new(), "an unknown model simply matches nothing");

    // Filters and pagination together: flux-dev, one per page.
    let (_, p1) = env.get(&key, "/v1/jobs?model=flux-dev&limit=1").await;
    let c1 = p1["next_cursor"].as_str().unwrap().to_owned();
    let (_, p2) = env.get(&key, &format!("/v1/jobs?model=flux-dev&limit=1&cursor={c1}")).await;
    let c2 = p2["next_cursor"].as_str().unwrap().to_owned();
    let (_, p3) = env.get(&key, &format!("/v1/jobs?model=flux-dev&limit=1&cursor={c2}")).await;
    assert!(p3["next_cursor"].is_null());
    assert_eq!([ids(&p1), ids(&p2), ids(&p3)].concat(), expect(&|_, m| m == "flux-dev"));
}

#[tokio::test]
async fn bulk_jobs_are_listed_newest_first_too() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let first = submit(&env, &key, json!({"model": "flux-dev", "input": {"single": true}})).await;
    let (status, bulk) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": (0..12).map(|i| json!({"b": i})).collect::<Vec<_>>()}))
        .await;
    assert_eq!(status, 201, "{bulk}");
    let bulk_ids: Vec<Uuid> = bulk_ids(&bulk);
    let mut expected: Vec<Uuid> = bulk_ids.iter().rev().copied().collect();
    expected.push(id(&first));

    let (_, p1) = env.get(&key, "/v1/jobs?limit=7").await;
    let (_, p2) = env.get(&key, &format!("/v1/jobs?limit=7&cursor={}", p1["next_cursor"].as_str().unwrap())).await;
    assert!(p2["next_cursor"].is_null());
    assert_eq!([ids(&p1), ids(&p2)].concat(), expected);
}
