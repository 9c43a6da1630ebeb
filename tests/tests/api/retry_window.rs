//! A retried job waits for its tenant's own window (docs/spec.md, "The
//! off-peak window"; issue #16, bug 1): `offpeak-scheduler jobs retry` and
//! the dashboard's retry compute `release_at` with the same rule as a
//! submission, the tenant's window where it has one, not the deployment's.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::tz;
use offpeak_core::window::{next_window, WindowSpec};
use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::ui::auth::OperatorToken;
use offpeak_store::tenants::{self, TenantUpdate};
use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::procs::binary;

const TOKEN: &str = "test-operator-token-0123456789";

/// The tenant's own window: disjoint from the deployment's 02:00-06:00, so
/// whatever the hour, the two give a different next window.
const OWN_WINDOW: &str = "10:00-14:00";

async fn tenant_with_own_window(env: &TestEnv) -> String {
    let key = env.tenant("alpha", "Asia/Tokyo").await;
    let update = TenantUpdate { window: Some(Some(OWN_WINDOW.parse().unwrap())), ..Default::default() };
    tenants::update(&env.pool, "alpha", &update).await.unwrap().expect("tenant exists");
    key
}

/// A low-priority job of the tenant, made `dead` as a worker that used up
/// its attempts would leave it (no longer waiting: out of `held_jobs`).
async fn dead_job(env: &TestEnv, key: &str, prompt: &str) -> Uuid {
    let (status, job) = env.post(key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"prompt": prompt}})).await;
    assert_eq!(status, 201, "{job}");
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    sqlx::query(
        "WITH ended AS (DELETE FROM held_jobs WHERE id = $1)
         UPDATE jobs SET state = 'dead', attempts = 5, finished_at = now(), credits = 0,
                error = '{\"code\": \"unavailable\", \"message\": \"provider down\"}'
         WHERE id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .unwrap();
    id
}

fn window_closes_at(tz_name: &str, now: DateTime<Utc>, spec: &str) -> DateTime<Utc> {
    next_window(tz::parse(tz_name).unwrap(), now, &spec.parse::<WindowSpec>().unwrap()).closes_at
}

#[tokio::test]
async fn jobs_retry_on_the_command_line_waits_for_the_tenants_own_window() {
    // The CLI reads the real clock.
    let env = TestEnv::with(EnvOptions { now: Utc::now(), ..Default::default() }).await;
    let key = tenant_with_own_window(&env).await;
    let id = dead_job(&env, &key, "cli").await;

    let out = tokio::process::Command::new(binary("offpeak-scheduler"))
        .args(["jobs", "retry", "--state", "dead", "--tenant", "alpha", "--json"])
        .env("DATABASE_URL", env.database_url())
        .env("RUST_LOG", "error")
        .output()
        .await
        .expect("run offpeak-scheduler");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let res: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(res["retried"], 1, "{res}");

    let job = env.job(id).await;
    assert_eq!(job.state, "held");
    let now = Utc::now();
    assert_eq!(job.window_closes_at, Some(window_closes_at("Asia/Tokyo", now, OWN_WINDOW)), "the tenant's 10:00-14:00, not the deployment's");
    assert_ne!(job.window_closes_at, Some(window_closes_at("Asia/Tokyo", now, "02:00-06:00")));
    assert_eq!(res["jobs"][0]["release_at"], json!(job.release_at), "{res}");
}

#[tokio::test]
async fn the_dashboards_retry_waits_for_the_tenants_own_window() {
    // 20:00 in Tokyo: the tenant's window opens tomorrow at 10:00 JST
    // (01:00Z); the deployment's would open at 02:00 JST (17:00Z today).
    let now: DateTime<Utc> = "2027-06-01T11:00:00Z".parse().unwrap();
    let api = ApiConfig { operator_token: Some(OperatorToken::new(TOKEN).unwrap()), ..ApiConfig::default() };
    let env = TestEnv::with(EnvOptions { now, api, ..Default::default() }).await;
    let key = tenant_with_own_window(&env).await;
    let id = dead_job(&env, &key, "ui").await;

    let resp = env
        .http
        .post(env.url(&format!("/ui/api/jobs/{id}/retry")))
        .bearer_auth(TOKEN)
        .header("X-Offpeak-UI", "1")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let (status, body) = TestEnv::read(resp).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["job"]["state"], "held");
    assert_eq!(body["job"]["release_at"], "2027-06-02T01:00:00Z", "{body}");
    assert_eq!(body["job"]["window_closes_at"], "2027-06-02T05:00:00Z", "{body}");

    // A submission at the same instant gets the same window: one rule.
    let (_, fresh) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"prompt": "fresh"}})).await;
    assert_eq!((fresh["release_at"].clone(), fresh["window_closes_at"].clone()), (body["job"]["release_at"].clone(), body["job"]["window_closes_at"].clone()));
}
