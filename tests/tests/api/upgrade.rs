//! A database of the previous version, holding jobs in every place a live
//! job can be, migrated to `20261212000000_held_and_members`: every job
//! reads back through `job_view` as it did before, and this version's
//! release and cancel take over from there.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

use offpeak_store as db;
use offpeak_tests::harness::database_url;

/// The migration under test: everything before it is the previous version.
const VERSION: i64 = 20261212000000;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A database of its own, dropped at the end (its name, like the harness's,
/// lets a later run drop it if this one is killed).
struct Scratch {
    name: String,
    server: PgConnectOptions,
    pool: PgPool,
}

impl Scratch {
    async fn new() -> Self {
        let name = format!("offpeak_test_{}_{}", Utc::now().timestamp(), &Uuid::new_v4().simple().to_string()[..8]);
        let server = PgConnectOptions::from_str(&database_url()).unwrap();
        let mut admin = server.clone().database("postgres").connect().await.unwrap();
        sqlx::query(&format!("CREATE DATABASE {name}")).execute(&mut admin).await.unwrap();
        admin.close().await.unwrap();
        let pool = db::connect_with(server.clone().database(&name), 4).await.unwrap();
        Self { name, server, pool }
    }

    async fn drop(self) {
        self.pool.close().await;
        let mut admin = self.server.clone().database("postgres").connect().await.unwrap();
        sqlx::query(&format!("DROP DATABASE {} WITH (FORCE)", self.name)).execute(&mut admin).await.unwrap();
    }
}

type ViewRow = (Uuid, String, Option<Uuid>, i32, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<i64>);

async fn view(pool: &PgPool) -> Vec<ViewRow> {
    sqlx::query_as("SELECT id, state, batch_id, attempts, queued_at, started_at, credits FROM job_view ORDER BY id")
        .fetch_all(pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_held_and_members_migration_keeps_every_jobs_state_and_this_version_takes_over() {
    let scratch = Scratch::new().await;
    let pool = &scratch.pool;
    let before = sqlx::migrate::Migrator {
        migrations: std::borrow::Cow::Owned(db::MIGRATOR.iter().filter(|m| m.version < VERSION).cloned().collect()),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(pool).await.expect("the previous version's migrations apply");

    // The previous version's rows: a job waiting, two batches (one
    // started), a queued job in each, one of them ended by its worker (its
    // outcome row), a job released at its submission, and a follower of
    // the unstarted batch's job.
    let now = at("2027-06-01T03:00:00Z");
    let tenant = Uuid::now_v7();
    sqlx::query("INSERT INTO tenants (id, name) VALUES ($1, 'acme')").bind(tenant).execute(pool).await.unwrap();
    let (unstarted, started) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query(
        "INSERT INTO batches (id, model, job_count, published_at, touched_at, started_at, attempts)
         VALUES ($1, 'flux-schnell', 2, $3, $3, NULL, 0), ($2, 'flux-schnell', 3, $3, $3, $3, 1)",
    )
    .bind(unstarted)
    .bind(started)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let ids: Vec<Uuid> = (0..6).map(|_| Uuid::now_v7()).collect();
    let (held, queued, running, ended, direct, follower) = (ids[0], ids[1], ids[2], ids[3], ids[4], ids[5]);
    let key = vec![7u8; 32];
    for (id, state, batch, source, cache_key) in [
        (held, "held", None, None, None),
        (queued, "queued", Some(unstarted), None, Some(key.clone())),
        (running, "queued", Some(started), None, None),
        (ended, "queued", Some(started), None, None),
        (direct, "queued", Some(started), None, None),
        (follower, "queued", None, Some(queued), Some(key.clone())),
    ] {
        sqlx::query(
            "INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at,
                               batch_id, created_at, queued_at, cache_source, cache_key)
             VALUES ($1, $2, 'flux-schnell', '{}', 'low', 'UTC', $3, $4, $4 + interval '3 hours', $5, $4,
                     CASE WHEN $3 = 'queued' THEN $4 END, $6, $7)",
        )
        .bind(id)
        .bind(tenant)
        .bind(state)
        .bind(now - chrono::Duration::minutes(1))
        .bind(batch)
        .bind(source)
        .bind(cache_key)
        .execute(pool)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO job_outcomes (job_id, tenant_id, model, priority, credits, list_credits, finished_at, state, attempts,
                                   started_at, quota_day)
         VALUES ($1, $2, 'flux-schnell', 'low', 1, 1, $3, 'succeeded', 1, $3, NULL)",
    )
    .bind(ended)
    .bind(tenant)
    .bind(now)
    .execute(pool)
    .await
    .unwrap();
    let shown_before = view(pool).await;
    let state_of = |id: Uuid| shown_before.iter().find(|r| r.0 == id).map(|r| r.1.as_str());
    let states: Vec<Option<&str>> = ids.iter().map(|&id| state_of(id)).collect();
    let expected = ["held", "queued", "running", "succeeded", "running", "queued"].map(Some);
    assert_eq!(states, expected, "{shown_before:?}");

    db::migrate(pool).await.expect("this version's migration applies to a database holding jobs");

    assert_eq!(view(pool).await, shown_before, "every job reads back as before");
    let waiting: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM held_jobs").fetch_all(pool).await.unwrap();
    assert_eq!(waiting, [held], "only the job waiting is in held_jobs");
    let mut members: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT job_id, batch_id FROM batch_members").fetch_all(pool).await.unwrap();
    members.sort();
    let mut expected = vec![(queued, unstarted), (running, started), (ended, started), (direct, started)];
    expected.sort();
    assert_eq!(members, expected, "the released jobs are members of their batches");

    // This version takes over: the unstarted batch's job is cancelled (its
    // follower goes back to waiting), and a round's claim then finds the
    // job that waited and the follower.
    let cancelled = db::jobs::cancel(pool, tenant, queued, now).await.unwrap();
    assert!(matches!(cancelled, db::jobs::CancelOutcome::Cancelled(_)), "{cancelled:?}");
    let cancelled = db::jobs::cancel(pool, tenant, running, now).await.unwrap();
    assert!(matches!(cancelled, db::jobs::CancelOutcome::NotCancellable(_)), "a running job stays: {cancelled:?}");
    let mut tx = pool.begin().await.unwrap();
    let claim = db::release::claim_due(&mut *tx, now, 10, 100).await.unwrap();
    let mut claimed: Vec<Uuid> = claim.jobs.iter().map(|j| j.id).collect();
    claimed.sort();
    let mut expected = vec![held, follower];
    expected.sort();
    assert_eq!(claimed, expected, "the round claims the job that waited and the follower sent back");
    tx.rollback().await.unwrap();

    scratch.drop().await;
}
