//! The operator commands of `offpeak-scheduler`: `jobs stats`, `jobs
//! cancel`, `prune`, `tenant list`, run as the real binary against a test
//! environment's database.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::procs::{binary, free_port};

async fn cli(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let out = tokio::process::Command::new(binary("offpeak-scheduler"))
        .args(args)
        .env("DATABASE_URL", env.database_url())
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run offpeak-scheduler");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success(), if out.status.success() { text } else { String::from_utf8_lossy(&out.stderr).into_owned() })
}

#[tokio::test]
async fn jobs_stats_counts_by_state_model_and_tenant_and_shows_what_is_due_by_hour() {
    // Real clock: `jobs stats` looks 24 hours ahead of now.
    let env = TestEnv::with(EnvOptions { now: Utc::now(), ..Default::default() }).await;
    let a = env.tenant("alpha", "UTC").await;
    let b = env.tenant("beta", "Asia/Tokyo").await;
    let inputs = |n: usize| (0..n).map(|i| json!({"p": i})).collect::<Vec<_>>();
    env.post(&a, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs(3)})).await;
    env.post(&b, "/v1/jobs/bulk", &json!({"model": "flux-pro", "inputs": inputs(2)})).await;

    let (ok, out) = cli(&env, &["jobs", "stats", "--json"]).await;
    assert!(ok, "{out}");
    let stats: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stats["by_state"]["held"], 5);
    assert_eq!(stats["by_model"]["flux-dev"]["held"], 3);
    assert_eq!(stats["by_tenant"]["beta"]["held"], 2);
    let due: i64 = stats["due_next_24h"].as_array().unwrap().iter().map(|d| d["jobs"].as_i64().unwrap()).sum();
    assert_eq!(due, 5, "every held job is due within 24 hours: {stats}");

    let (ok, table) = cli(&env, &["jobs", "stats"]).await;
    assert!(ok && table.contains("TENANT") && table.contains("alpha") && table.contains("DUE (UTC HOUR)"), "{table}");
    let (ok, tenants) = cli(&env, &["tenant", "list"]).await;
    assert!(ok && tenants.contains("alpha") && tenants.contains("Asia/Tokyo"), "{tenants}");
}

#[tokio::test]
async fn jobs_cancel_cancels_only_matching_unstarted_jobs() {
    let env = TestEnv::with(EnvOptions { now: DateTime::parse_from_rfc3339("2027-06-01T12:00:00Z").unwrap().into(), ..Default::default() }).await;
    let a = env.tenant("alpha", "UTC").await;
    let b = env.tenant("beta", "UTC").await;
    let inputs: Vec<_> = (0..4).map(|i| json!({"p": i})).collect();
    env.post(&a, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs})).await;
    env.post(&a, "/v1/jobs/bulk", &json!({"model": "flux-pro", "inputs": [{"p": 1}]})).await;
    env.post(&b, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": [{"p": 1}]})).await;

    let (ok, out) = cli(&env, &["jobs", "cancel", "--tenant", "alpha", "--model", "flux-dev", "--json"]).await;
    assert!(ok, "{out}");
    let res: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["cancelled"], 4);
    let cancelled: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'cancelled' AND finished_at IS NOT NULL")
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(cancelled, 4, "only alpha's flux-dev jobs");
    let (ok, err) = cli(&env, &["jobs", "cancel", "--state", "running"]).await;
    assert!(!ok && err.contains("held or queued"), "{err}");
    let (ok, err) = cli(&env, &["jobs", "cancel", "--tenant", "nobody"]).await;
    assert!(!ok && err.contains("no tenant named 'nobody'"), "{err}");
}

#[tokio::test]
async fn prune_deletes_only_finished_jobs_past_the_retention_period() {
    let env = TestEnv::with(EnvOptions { now: Utc::now(), ..Default::default() }).await;
    let a = env.tenant("alpha", "UTC").await;
    let inputs: Vec<_> = (0..6).map(|i| json!({"p": i})).collect();
    env.post(&a, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": inputs})).await;
    // Two finished 40 days ago, one finished yesterday, three still held.
    // Ended as a cancel ends a held job: its row, and out of `held_jobs`.
    sqlx::query(
        "WITH ended AS (
             UPDATE jobs SET state = 'cancelled', finished_at = now() - interval '40 days'
             WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 2) RETURNING id
         )
         DELETE FROM held_jobs WHERE id IN (SELECT id FROM ended)",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    sqlx::query(
        "WITH ended AS (
             UPDATE jobs SET state = 'cancelled', finished_at = now() - interval '1 day'
             WHERE id IN (SELECT id FROM held_jobs ORDER BY id LIMIT 1) RETURNING id
         )
         DELETE FROM held_jobs WHERE id IN (SELECT id FROM ended)",
    )
    .execute(&env.pool)
    .await
    .unwrap();
    let (ok, out) = cli(&env, &["prune", "--older-than-days", "30", "--chunk", "1", "--json"]).await;
    assert!(ok, "{out}");
    let res: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(res["pruned"], 2);
    assert_eq!(env.count_jobs().await, 4);
}

#[tokio::test]
async fn tenant_update_changes_the_timezone_limits_and_window_a_tenant_then_sees_and_gets() {
    // 12:00 UTC.
    let env = TestEnv::with(EnvOptions { now: DateTime::parse_from_rfc3339("2027-06-01T12:00:00Z").unwrap().into(), ..Default::default() }).await;
    let key = env.tenant("alpha", "UTC").await;

    let (ok, out) = cli(
        &env,
        &["tenant", "update", "alpha", "--timezone", "Europe/Berlin", "--daily-credits", "50", "--user-daily-credits", "10", "--window", "22:00-06:00", "--json"],
    )
    .await;
    assert!(ok, "{out}");
    let t: Value = serde_json::from_str(&out).unwrap();
    assert_eq!((t["timezone"].as_str(), t["daily_credits"].as_i64(), t["user_daily_credits"].as_i64()), (Some("Europe/Berlin"), Some(50), Some(10)));
    assert_eq!(t["window"], "22:00-06:00");

    let (status, view) = env.get(&key, "/v1/tenant").await;
    assert_eq!(status, 200);
    assert_eq!((view["timezone"].as_str(), view["window"].as_str()), (Some("Europe/Berlin"), Some("22:00-06:00")), "{view}");
    assert_eq!((view["daily_credits"].as_i64(), view["user_daily_credits"].as_i64()), (Some(50), Some(10)));
    assert_eq!(view["quota"]["remaining"], 50, "{view}");
    // 14:00 in Berlin: the tenant's own window opens at 22:00 local, 20:00 UTC.
    let (_, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"p": 1}})).await;
    assert_eq!(job["release_at"], "2027-06-01T20:00:00Z", "{job}");
    assert_eq!(job["window_closes_at"], "2027-06-02T04:00:00Z", "{job}");
    let (_, preview) = env.get(&key, "/v1/windows/next").await;
    assert_eq!(preview["opens_at"], "2027-06-01T20:00:00Z", "{preview}");

    // `none` and `default` undo; a bad value is refused and changes nothing.
    let (ok, out) = cli(&env, &["tenant", "update", "alpha", "--daily-credits", "none", "--window", "default"]).await;
    assert!(ok && out.contains("daily credits none") && out.contains("window default"), "{out}");
    let (ok, err) = cli(&env, &["tenant", "update", "alpha", "--timezone", "Mars/Olympus"]).await;
    assert!(!ok && err.contains("Mars/Olympus"), "{err}");
    let (ok, err) = cli(&env, &["tenant", "update", "nobody", "--daily-credits", "1"]).await;
    assert!(!ok && err.contains("no tenant named 'nobody'"), "{err}");
    let (ok, tenants) = cli(&env, &["tenant", "list"]).await;
    assert!(ok && tenants.contains("Europe/Berlin") && tenants.contains("USER_DAILY_CREDITS"), "{tenants}");
}

#[tokio::test]
async fn migrate_waits_for_a_database_server_that_is_not_up_yet() {
    // `migrate` dials a port where nothing listens yet; a second later a
    // forwarder to the real PostgreSQL opens there, as a database
    // container finishing its start would.
    let upstream = url::Url::parse(&offpeak_tests::harness::database_url()).unwrap();
    let upstream_addr = format!("{}:{}", upstream.host_str().unwrap(), upstream.port().unwrap_or(5432));
    // Below the ephemeral range (see `free_port`): a port probed with
    // `bind(0)` could become an outgoing connection's local port during the
    // second before the forwarder binds it.
    let port = free_port();
    let db_name = format!("offpeak_test_{}_{}", Utc::now().timestamp(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let mut url = upstream.clone();
    url.set_port(Some(port)).unwrap();
    url.set_path(&db_name);
    let migrate = tokio::process::Command::new(binary("offpeak-scheduler"))
        .arg("migrate")
        .env("DATABASE_URL", url.as_str())
        .env("OFFPEAK_CONNECT_TIMEOUT_SECS", "30")
        .env("RUST_LOG", "warn")
        .output();
    let forwarder = async {
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        loop {
            let (mut client, _) = listener.accept().await.unwrap();
            let upstream_addr = upstream_addr.clone();
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect(&upstream_addr).await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    };
    let out = tokio::select! {
        out = migrate => out.expect("run offpeak-scheduler migrate"),
        () = forwarder => unreachable!("the forwarder runs until migrate ends"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Clean up first, whatever happened.
    let mut admin = url.clone();
    admin.set_port(upstream.port()).unwrap();
    admin.set_path("postgres");
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin.as_str()).await.unwrap();
    let created: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(&db_name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(&mut conn).await.unwrap();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("PostgreSQL not reachable, retrying"), "{stderr}");
    assert!(created, "migrate created the database once the server was up");
}
