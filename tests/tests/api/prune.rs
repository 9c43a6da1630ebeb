//! The pruner of `offpeak-scheduler serve`: finished jobs older than the
//! retention period are deleted, in bounded passes; nothing else is.

use chrono::{DateTime, Utc};
use serde_json::json;

use offpeak_scheduler::prune::{PruneConfig, Pruner};
use offpeak_tests::harness::{EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

#[tokio::test]
async fn a_pass_deletes_only_finished_jobs_past_the_retention_period_and_keeps_usage() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<_> = (0..7).map(|i| json!({"p": i})).collect();
    let (status, _) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs})).await;
    assert_eq!(status, 201);
    // Five finished 40 days before the clock (one of them with a usage
    // ledger row), one finished yesterday, one still held. Ended as a
    // cancel ends a held job: its row, and out of `held_jobs`.
    sqlx::query(
        "WITH ended AS (
             UPDATE jobs SET state = 'cancelled', finished_at = $1
             WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 5) RETURNING id
         )
         DELETE FROM held_jobs WHERE id IN (SELECT id FROM ended)",
    )
    .bind(at("2027-04-22T12:00:00Z"))
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO usage_ledger (job_id, tenant_id, model, priority, credits, list_credits, finished_at)
         SELECT id, tenant_id, model, priority, 2, 2, finished_at FROM jobs WHERE finished_at IS NOT NULL ORDER BY id LIMIT 1",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH ended AS (
             UPDATE jobs SET state = 'cancelled', finished_at = $1
             WHERE id IN (SELECT id FROM held_jobs ORDER BY id LIMIT 1) RETURNING id
         )
         DELETE FROM held_jobs WHERE id IN (SELECT id FROM ended)",
    )
    .bind(at("2027-05-31T12:00:00Z"))
    .execute(&env.pool)
    .await
    .unwrap();

    // Chunks of 2, at most 2 per pass: the first pass stops at its bound.
    let config = PruneConfig { chunk: 2, chunks_per_pass: 2, ..PruneConfig::default() };
    let pruner = Pruner::new(env.pool.clone(), env.shared_clock(), config);
    let first = pruner.run_once().await.unwrap();
    assert_eq!((first.jobs, first.more), (4, true));
    let second = pruner.run_once().await.unwrap();
    assert_eq!((second.jobs, second.more), (1, false));
    assert_eq!(pruner.run_once().await.unwrap().jobs, 0);

    let states: Vec<String> = sqlx::query_scalar("SELECT state FROM job_view ORDER BY id").fetch_all(&env.pool).await.unwrap();
    assert_eq!(states, ["cancelled", "held"], "yesterday's finished job and the held one stay");
    let ledger: i64 = sqlx::query_scalar("SELECT count(*) FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    assert_eq!(ledger, 1, "usage outlives pruning");

    // Batches: one published before the retention period with nothing left
    // to do goes; one as old with a job still queued, and a recent one, stay.
    let (old, open, recent) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    sqlx::query(
        "INSERT INTO batches (id, model, job_count, published_at, touched_at)
         SELECT id, 'flux-dev', 1, t, t FROM unnest($1::uuid[], $2::timestamptz[]) AS u(id, t)",
    )
    .bind(vec![old, open, recent])
    .bind(vec![at("2027-04-22T12:00:00Z"), at("2027-04-22T12:00:00Z"), at("2027-05-31T12:00:00Z")])
    .execute(&env.pool)
    .await
    .unwrap();
    // The held job released into `open` as a round releases it: out of
    // `held_jobs`, a member of the batch (its own row keeps `held`).
    sqlx::query(
        "WITH released AS (DELETE FROM held_jobs RETURNING id, cache_key)
         INSERT INTO batch_members (job_id, batch_id, cache_key) SELECT id, $1, cache_key FROM released",
    )
    .bind(open)
    .execute(&env.pool)
    .await
    .unwrap();
    pruner.run_once().await.unwrap();
    let mut kept: Vec<uuid::Uuid> = sqlx::query_scalar("SELECT id FROM batches").fetch_all(&env.pool).await.unwrap();
    kept.sort();
    let mut want = vec![open, recent];
    want.sort();
    assert_eq!(kept, want, "only the old batch with no unfinished job is pruned");
}
