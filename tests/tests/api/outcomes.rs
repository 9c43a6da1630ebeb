//! The end of a job a worker finishes is one row of `job_outcomes`, its end
//! and its usage, and the job's own row is not written again (issue #17: a
//! job row written at most twice; BENCHMARKS.md step 33). These tests hold
//! that, and the races and upkeep the design opens: a cancel against the
//! finish that answers a follower, pruning, a retry, the quota.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use serde_json::json;
use uuid::Uuid;

use offpeak_core::clock::Clock;
use offpeak_core::job::JobState;
use offpeak_tests::sim::SimConfig;
use offpeak_store::operator::RetryFilter;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

async fn bulk(env: &TestEnv, key: &str, prompts: impl Iterator<Item = String>) -> Vec<Uuid> {
    let inputs: Vec<_> = prompts.map(|p| json!({"prompt": p})).collect();
    let (status, body) =
        env.post(key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs, "priority": "normal"})).await;
    assert_eq!(status, 201, "{body}");
    bulk_ids(&body)
}

/// A test stack whose simulator rejects `rate` of the items (permanent
/// failures), on a fixed clock, with one tenant; returns it and its key.
async fn env_rejecting(rate: f64, seed: u64) -> (TestEnv, String) {
    let env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { item_error_rate: rate, seed: Some(seed), ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    (env, key)
}

/// Each job's row version (`xmin`, `ctid`), by id.
async fn versions(env: &TestEnv, ids: &[Uuid]) -> Vec<(Uuid, String, String)> {
    sqlx::query_as("SELECT id, xmin::text, ctid::text FROM jobs WHERE id = ANY($1) ORDER BY id")
        .bind(ids)
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

/// Jobs whose own row says they ended (cancelled, say) while they also have
/// a worker's outcome: two ends for one job. A live job's row says `held`
/// (released by a round, or put back) or `queued` (released at submission,
/// or a follower): neither is an end.
async fn two_ends(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM jobs j JOIN job_outcomes o ON o.job_id = j.id AND o.state IS NOT NULL
         WHERE j.state NOT IN ('held', 'queued')",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_job_a_worker_ends_keeps_its_released_row_and_its_end_is_one_outcome_row() {
    let (env, key) = env_rejecting(0.3, 11).await;
    let ids = bulk(&env, &key, (0..60).map(|i| format!("twice {i}"))).await;
    // The release writes `held_jobs` and `batch_members`, not the jobs'
    // rows (migration 20261212000000): the version it leaves is the
    // submission's, and the finish leaves that one too.
    let submitted = versions(&env, &ids).await;
    env.release_once().await;
    let released = versions(&env, &ids).await;
    assert_eq!(released.len(), ids.len());
    assert_eq!(released, submitted, "the release did not write a job row");

    env.work_released(&env.batch_context()).await;
    assert_eq!(versions(&env, &ids).await, released, "the finish did not write a job row");

    let (outcomes, succeeded, failed): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed')
         FROM job_outcomes WHERE job_id = ANY($1)",
    )
    .bind(&ids)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(outcomes, ids.len() as i64, "one outcome row per job");
    assert!(succeeded > 0 && failed > 0, "{succeeded} succeeded, {failed} failed");
    // What the API shows is the outcome.
    for id in &ids {
        let (status, job) = env.get(&key, &format!("/v1/jobs/{id}")).await;
        assert_eq!(status, 200);
        let state = job["state"].as_str().unwrap();
        assert!(state == "succeeded" || state == "failed", "{job}");
        assert!(job["finished_at"].is_string() && job["started_at"].is_string(), "{job}");
        assert_eq!(job["attempts"], 1, "{job}");
        if state == "succeeded" {
            assert!(job["result"].is_object() && job["credits"].as_i64().unwrap() > 0, "{job}");
        } else {
            assert!(job["error"].is_object() && job["credits"] == 0, "{job}");
        }
    }
    // The usage ledger holds the succeeded ones only, as before.
    let ledger: i64 =
        sqlx::query_scalar("SELECT count(*) FROM usage_ledger WHERE job_id = ANY($1)").bind(&ids).fetch_one(&env.pool).await.unwrap();
    assert_eq!(ledger, succeeded);
    // Its batch is finished, so the rescuer never looks at it again.
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM batches WHERE NOT finished").fetch_one(&env.pool).await.unwrap();
    assert_eq!(open, 0);
}

#[tokio::test]
async fn followers_cancelled_while_their_leaders_finish_end_once_each() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let mut answers_ok = 0;
    let mut answers_409 = 0;
    for round in 0..4 {
        let prompts = || (0..40).map(move |i| format!("race {round} {i}"));
        let leaders = bulk(&env, &key, prompts()).await;
        env.release_once().await;
        // Identical jobs: released, they wait on the leaders as followers.
        let followers = bulk(&env, &key, prompts()).await;
        env.release_once().await;
        let attached: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE id = ANY($1) AND cache_source = ANY($2)")
            .bind(&followers)
            .bind(&leaders)
            .fetch_one(&env.pool)
            .await
            .unwrap();
        assert_eq!(attached, followers.len() as i64, "every identical job follows its leader");

        // The leaders' finish answers the followers while tenants cancel them.
        let ctx = env.batch_context();
        let work = env.work_released(&ctx);
        let cancels = futures_util::stream::iter(followers.clone())
            .map(|id| {
                let (env, key) = (&env, &key);
                async move { (id, env.delete(key, &format!("/v1/jobs/{id}")).await.0) }
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>();
        let ((), answers) = tokio::join!(work, cancels);
        for (id, status) in answers {
            let job = env.job(id).await;
            match status {
                200 => {
                    answers_ok += 1;
                    assert_eq!(job.state, "cancelled", "a cancel that answered 200 ended {id}");
                }
                409 => {
                    answers_409 += 1;
                    assert_eq!(job.state, "succeeded", "a cancel refused for {id}: its leader answered it");
                }
                other => panic!("cancel of {id}: {other}"),
            }
        }
        assert_eq!(two_ends(&env).await, 0, "a follower both cancelled and answered");
    }
    assert!(answers_ok + answers_409 == 160, "{answers_ok} + {answers_409}");
    // A cancelled follower costs nothing and has no usage; an answered one
    // has its usage row.
    let (ledger, cancelled_with_usage): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE j.state = 'succeeded'), count(*) FILTER (WHERE j.state = 'cancelled')
         FROM usage_ledger l JOIN job_view j ON j.id = l.job_id WHERE j.cache_hit",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(cancelled_with_usage, 0);
    assert_eq!(ledger, answers_409 as i64);
}

#[tokio::test]
async fn pruning_a_job_a_worker_ended_keeps_its_usage_and_drops_its_result() {
    let (env, key) = env_rejecting(0.3, 5).await;
    let ids = bulk(&env, &key, (0..30).map(|i| format!("old {i}"))).await;
    env.release_and_work(&env.batch_context()).await;
    let usage_before: (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(credits)::bigint FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    let succeeded: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'succeeded'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(usage_before.0, succeeded);

    let mut deleted = 0;
    loop {
        let n = offpeak_store::operator::prune_chunk(&env.pool, at("2027-06-02T00:00:00Z"), 7).await.unwrap();
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert_eq!(deleted, ids.len() as u64, "every ended job pruned, counted once");
    assert_eq!(env.count_jobs().await, 0);
    let usage_after: (i64, i64) =
        sqlx::query_as("SELECT count(*), sum(credits)::bigint FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    assert_eq!(usage_after, usage_before, "usage outlives pruning");
    let (rows, with_end): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE state IS NOT NULL OR result IS NOT NULL OR error IS NOT NULL) FROM job_outcomes",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((rows, with_end), (succeeded, 0), "the failures' rows go; the rest keep usage only");
    let batches: i64 = sqlx::query_scalar("SELECT count(*) FROM batches").fetch_one(&env.pool).await.unwrap();
    assert_eq!(batches, 0, "their batch goes too");
}

#[tokio::test]
async fn a_retried_job_a_worker_failed_ends_again_with_a_new_outcome() {
    let (env, key) = env_rejecting(0.5, 3).await;
    let now = at("2027-06-01T12:00:00Z");
    let ids = bulk(&env, &key, (0..20).map(|i| format!("again {i}"))).await;
    env.release_and_work(&env.batch_context()).await;
    let failed: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM job_view WHERE state = 'failed' ORDER BY id").fetch_all(&env.pool).await.unwrap();
    assert!(!failed.is_empty());
    let errors_before: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT error FROM job_view WHERE id = ANY($1) ORDER BY id").bind(&failed).fetch_all(&env.pool).await.unwrap();

    let filter = RetryFilter { states: vec![JobState::Failed], job_id: None, tenant_id: None, model: None, limit: 100 };
    let window: offpeak_core::window::WindowSpec = "02:00-06:00".parse().unwrap();
    let retried = offpeak_scheduler::ops::jobs::retry_jobs(&env.pool, &filter, true, &window, now).await.unwrap();
    assert_eq!(retried.len(), failed.len());
    let (held, outcomes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM job_view WHERE id = ANY($1) AND state = 'held'),
                (SELECT count(*) FROM job_outcomes WHERE job_id = ANY($1))",
    )
    .bind(&failed)
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!((held, outcomes), (failed.len() as i64, 0), "back to held, their failed ends gone");
    let errors_kept: Vec<serde_json::Value> =
        sqlx::query_scalar("SELECT error FROM job_view WHERE id = ANY($1) ORDER BY id").bind(&failed).fetch_all(&env.pool).await.unwrap();
    assert_eq!(errors_kept, errors_before, "the last error is kept until they run again");

    // They run again and end again, each with one outcome.
    env.release_and_work(&env.batch_context()).await;
    let ended: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE id = ANY($1) AND state IN ('succeeded', 'failed')")
        .bind(&ids)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(ended, ids.len() as i64);
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_outcomes WHERE job_id = ANY($1)").bind(&ids).fetch_one(&env.pool).await.unwrap();
    assert_eq!(rows, ids.len() as i64);
}

#[tokio::test]
async fn a_days_quota_counts_what_the_worker_charged_not_what_was_reserved() {
    let (env, key) = env_rejecting(0.4, 9).await;
    let ids = bulk(&env, &key, (0..25).map(|i| format!("quota {i}"))).await;
    let (tenant_id, day): (Uuid, chrono::NaiveDate) =
        sqlx::query_as("SELECT tenant_id, quota_day FROM jobs WHERE id = $1").bind(ids[0]).fetch_one(&env.pool).await.unwrap();
    let reserved: i64 = sqlx::query_scalar("SELECT sum(reserved_credits)::bigint FROM jobs").fetch_one(&env.pool).await.unwrap();
    assert!(reserved > 0);
    assert_eq!(offpeak_store::quota::used(&env.pool, tenant_id, day, None).await.unwrap().tenant, reserved);

    env.release_and_work(&env.batch_context()).await;
    let charged: i64 = sqlx::query_scalar("SELECT COALESCE(sum(credits), 0)::bigint FROM job_view").fetch_one(&env.pool).await.unwrap();
    let failed: i64 =
        sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'failed'").fetch_one(&env.pool).await.unwrap();
    assert!(failed > 0 && charged < reserved, "failures cost nothing: {charged} of {reserved}");
    assert_eq!(offpeak_store::quota::used(&env.pool, tenant_id, day, None).await.unwrap().tenant, charged);
}

/// Jobs by (state, model) as `job_view` shows them, sorted.
async fn view_counts(env: &TestEnv) -> Vec<(String, String, i64)> {
    sqlx::query_as("SELECT state, model, count(*) FROM job_view GROUP BY state, model ORDER BY state, model")
        .fetch_all(&env.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_state_gauges_count_each_state_where_it_is_written_as_the_api_shows_it() {
    let (env, key) = env_rejecting(0.3, 17).await;
    // Ended by a worker (outcome rows): succeeded and failed.
    bulk(&env, &key, (0..30).map(|i| format!("gauge {i}"))).await;
    env.release_once().await;
    env.work_released(&env.batch_context()).await;
    // Answered at submission from those results (the job's own row).
    bulk(&env, &key, (0..5).map(|i| format!("gauge {i}"))).await;
    // Leaders in a batch a worker has started, and their followers waiting
    // with no batch of their own; and a batch of another model not started.
    bulk(&env, &key, (0..8).map(|i| format!("lead {i}"))).await;
    bulk(&env, &key, (0..4).map(|i| format!("lead {i}"))).await;
    let inputs: Vec<_> = (0..3).map(|i| json!({"prompt": format!("other {i}")})).collect();
    let (status, body) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs, "priority": "normal"})).await;
    assert_eq!(status, 201, "{body}");
    env.release_once().await;
    let (batch, leaders): (Uuid, Vec<Uuid>) = sqlx::query_as(
        "SELECT batch_id, array_agg(id) FROM job_view WHERE state = 'queued' AND model = 'flux-dev' AND batch_id IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM job_outcomes o WHERE o.job_id = job_view.id)
         GROUP BY batch_id",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap();
    offpeak_store::batches::start_attempt(&env.pool, batch, "flux-dev", &leaders, env.clock.now()).await.unwrap();
    // Held for tonight's window, and one of them cancelled.
    let inputs: Vec<_> = (0..4).map(|i| json!({"prompt": format!("tonight {i}")})).collect();
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs})).await;
    assert_eq!(status, 201, "{body}");
    let tonight = bulk_ids(&body);
    let (status, body) = env.delete(&key, &format!("/v1/jobs/{}", tonight[0])).await;
    assert_eq!(status, 200, "{body}");

    let mut gauges = offpeak_store::operator::gauges::by_state_and_model(&env.pool).await.unwrap();
    gauges.sort();
    let view = view_counts(&env).await;
    assert_eq!(gauges, view, "the gauges count what the API shows");
    let states: std::collections::BTreeSet<&str> = view.iter().map(|(s, _, _)| s.as_str()).collect();
    for state in ["held", "queued", "running", "succeeded", "failed", "cancelled"] {
        assert!(states.contains(state), "the jobs cover {state}: {view:?}");
    }
    let followers: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'queued' AND cache_source IS NOT NULL")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(followers, 4, "the identical jobs wait as followers");
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE state = 'succeeded' AND cache_hit")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(hits > 0, "some jobs were answered from the cache at submission");
}
