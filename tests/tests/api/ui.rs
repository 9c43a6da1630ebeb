//! Issue 7: the operator dashboard at `/ui`. These tests speak its HTTP
//! and JSON; `ui_browser.rs` drives the page itself in Chromium.
//!
//! - Access: disabled (403, every route) until `OFFPEAK_OPERATOR_TOKEN` is
//!   set; then only the operator token opens it, as a bearer token or
//!   through the login form's `HttpOnly`, `SameSite=Strict` cookie; a
//!   tenant's API key does not.
//! - Every panel's numbers equal what the tenant API (`/v1/jobs`,
//!   `/v1/usage`) and the database say for the same seeded jobs.
//! - Retry and cancel work on one job, need POST and the anti-CSRF header,
//!   and refuse a job in the wrong state with a 409.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use reqwest::header;
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::ui::auth::OperatorToken;
use offpeak_core::prices::PriceTable;
use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;

const TOKEN: &str = "test-operator-token-0123456789";

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn options(now: DateTime<Utc>) -> EnvOptions {
    let api = ApiConfig { operator_token: Some(OperatorToken::new(TOKEN).unwrap()), max_attempts: 2, ..ApiConfig::default() };
    EnvOptions { now, api, ..Default::default() }
}

async fn env_at(now: &str) -> TestEnv {
    TestEnv::with(options(at(now))).await
}

/// A client that shows redirects instead of following them.
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn ui_get(env: &TestEnv, path: &str) -> Value {
    let (status, body) = env.get(TOKEN, path).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    body
}

async fn ui_post(env: &TestEnv, path: &str, body: &Value) -> (u16, Value) {
    let resp =
        env.http.post(env.url(path)).bearer_auth(TOKEN).header("X-Offpeak-UI", "1").json(body).send().await.unwrap();
    TestEnv::read(resp).await
}

async fn submit(env: &TestEnv, key: &str, body: Value) -> Value {
    let (status, job) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{job}");
    job
}

fn id_of(job: &Value) -> Uuid {
    job["id"].as_str().unwrap().parse().unwrap()
}

/// Every job of the tenant in `state`, from the tenant API.
async fn tenant_jobs(env: &TestEnv, key: &str, state: Option<&str>) -> Vec<Value> {
    let q = state.map_or(String::new(), |s| format!("&state={s}"));
    let (status, body) = env.get(key, &format!("/v1/jobs?limit=1000{q}")).await;
    assert_eq!(status, 200, "{body}");
    body["jobs"].as_array().unwrap().clone()
}

// ---------------------------------------------------------------- access

#[tokio::test]
async fn the_dashboard_is_disabled_until_the_operator_token_is_set() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let c = browser();
    for path in ["/ui", "/ui/", "/ui/login", "/ui/assets/app.js"] {
        let r = c.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.status(), 403, "GET {path}");
        assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
        let text = r.text().await.unwrap();
        assert!(text.contains("disabled") && text.contains("OFFPEAK_OPERATOR_TOKEN"), "{text}");
    }
    for token in [TOKEN, key.as_str()] {
        let (status, body) = env.get(token, "/ui/api/now").await;
        assert_eq!((status, body["error"]["code"].as_str()), (403, Some("ui_disabled")), "{body}");
    }
    let r = c.post(env.url("/ui/login")).form(&[("token", TOKEN)]).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    let (status, _) = ui_post(&env, &format!("/ui/api/jobs/{}/retry", Uuid::now_v7()), &json!({})).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn every_json_endpoint_needs_the_operator_token_not_a_tenant_key() {
    let env = env_at("2027-06-01T12:00:00Z").await;
    let key = env.tenant("acme", "UTC").await;
    let job = submit(&env, &key, json!({"model": "flux-schnell", "input": {"prompt": "a"}})).await;
    let paths = [
        "/ui/api/meta".to_owned(),
        "/ui/api/tonight".to_owned(),
        "/ui/api/now".to_owned(),
        "/ui/api/spend".to_owned(),
        "/ui/api/jobs".to_owned(),
        format!("/ui/api/jobs/{}", job["id"].as_str().unwrap()),
    ];
    for path in &paths {
        let r = env.http.get(env.url(path)).send().await.unwrap();
        assert_eq!(r.headers()[header::WWW_AUTHENTICATE], "Bearer realm=\"offpeak\"");
        let (status, body) = TestEnv::read(r).await;
        assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")), "{path} without a token: {body}");
        for wrong in ["test-operator-token-012345678", key.as_str(), "x"] {
            let (status, body) = env.get(wrong, path).await;
            assert_eq!(status, 401, "{path} with {wrong:?}: {body}");
        }
        let (status, body) = env.get(TOKEN, path).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    // The tenant API does not take the operator token either.
    let (status, _) = env.get(TOKEN, "/v1/jobs").await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_login_form_sets_an_http_only_strict_cookie_that_opens_the_dashboard_until_it_expires() {
    let env = env_at("2027-06-01T12:00:00Z").await;
    let c = browser();

    let r = c.get(env.url("/ui/")).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::LOCATION].to_str().unwrap()), (303, "/ui/login"));
    let r = c.get(env.url("/ui/login")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(r.text().await.unwrap().contains("name=\"token\""));

    let r = c.post(env.url("/ui/login")).form(&[("token", "not-the-operator-token")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().get(header::SET_COOKIE).is_none());
    assert!(r.text().await.unwrap().contains("not the operator token"));
    let r = c.post(env.url("/ui/login")).form(&[("nothing", "here")]).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let r = c.post(env.url("/ui/login")).form(&[("token", TOKEN)]).send().await.unwrap();
    assert_eq!((r.status().as_u16(), r.headers()[header::LOCATION].to_str().unwrap()), (303, "/ui/"));
    let set_cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Max-Age=43200"] {
        assert!(set_cookie.contains(attr), "{attr} missing from {set_cookie}");
    }
    assert!(!set_cookie.contains(TOKEN), "the cookie must not carry the token itself");
    let cookie = set_cookie.split(';').next().unwrap().to_owned();

    let r = c.get(env.url("/ui/")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("/ui/assets/app.js"));
    let r = c.get(env.url("/ui/api/now")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(env.url("/ui/assets/app.js")).send().await.unwrap();
    assert_eq!(r.status(), 200, "assets hold no data and style the login page");
    assert!(r.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/javascript"));

    // A forged expiry breaks the MAC.
    let (name, value) = cookie.split_once('=').unwrap();
    let mut parts: Vec<&str> = value.split('.').collect();
    let later = (parts[1].parse::<i64>().unwrap() + 3600).to_string();
    parts[1] = &later;
    let forged = format!("{name}={}", parts.join("."));
    let r = c.get(env.url("/ui/api/now")).header(header::COOKIE, forged).send().await.unwrap();
    assert_eq!(r.status(), 401);

    let r = c.post(env.url("/ui/logout")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(r.headers()[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));

    // Twelve hours on, the session is over.
    env.clock.advance(TimeDelta::hours(12) + TimeDelta::seconds(1));
    let r = c.get(env.url("/ui/api/now")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c.get(env.url("/ui/")).header(header::COOKIE, &cookie).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

// ---------------------------------------------------------------- Tonight

#[tokio::test]
async fn tonight_counts_held_jobs_by_due_hour_model_and_timezone_as_the_tenant_api_says() {
    let now = at("2027-06-01T12:20:00Z");
    let env = TestEnv::with(options(now)).await;
    let acme = env.tenant("acme", "UTC").await;
    let globex = env.tenant("globex", "Asia/Tokyo").await;
    let plan = [
        (acme.as_str(), "America/New_York", "flux-schnell", 3, "low"), // 02:00 EDT = 06:00Z
        (acme.as_str(), "Europe/Berlin", "flux-dev", 2, "low"),        // 02:00 CEST = 00:00Z
        (globex.as_str(), "Asia/Tokyo", "flux-pro", 4, "low"),         // 02:00 JST = 17:00Z
        (globex.as_str(), "Asia/Kolkata", "flux-schnell", 1, "low"),   // 02:00 IST = 20:30Z
        (globex.as_str(), "Asia/Tokyo", "flux-schnell", 2, "low"),
        (acme.as_str(), "UTC", "flux-dev", 1, "normal"),               // due now
    ];
    let mut i = 0;
    for (key, tz, model, n, priority) in plan {
        for _ in 0..n {
            i += 1;
            submit(&env, key, json!({"model": model, "input": {"prompt": format!("t{i}")}, "timezone": tz, "priority": priority})).await;
        }
    }
    // A window always opens within a day, so a job due beyond the chart is
    // one whose release an operator moved (or a future feature will): in
    // its row and its `held_jobs` row, as the roll-over moves both.
    let far = submit(&env, &acme, json!({"model": "flux-pro", "input": {"prompt": "far"}, "timezone": "Europe/Berlin"})).await;
    sqlx::query(
        "WITH waiting AS (UPDATE held_jobs SET release_at = $2, window_closes_at = $3 WHERE id = $1)
         UPDATE jobs SET release_at = $2, window_closes_at = $3 WHERE id = $1",
    )
        .bind(id_of(&far))
        .bind(now + TimeDelta::days(3))
        .bind(now + TimeDelta::days(3) + TimeDelta::hours(4))
        .execute(&env.pool)
        .await
        .unwrap();
    // A cancelled job is not held.
    let gone = submit(&env, &acme, json!({"model": "flux-pro", "input": {"prompt": "gone"}, "timezone": "Europe/Berlin"})).await;
    assert_eq!(env.delete(&acme, &format!("/v1/jobs/{}", gone["id"].as_str().unwrap())).await.0, 200);

    let t = ui_get(&env, "/ui/api/tonight").await;
    let from = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    let until = from + TimeDelta::hours(24);
    assert_eq!(at(t["now"].as_str().unwrap()), now);
    assert_eq!(at(t["from"].as_str().unwrap()), from);
    assert_eq!(at(t["until"].as_str().unwrap()), until);

    // What the tenant API says: each held job's release_at, bucketed.
    let mut by_model: BTreeMap<(DateTime<Utc>, String), i64> = BTreeMap::new();
    let mut by_tz: BTreeMap<(DateTime<Utc>, String), i64> = BTreeMap::new();
    let (mut due_now, mut later, mut total) = (0, 0, 0);
    for key in [&acme, &globex] {
        for j in tenant_jobs(&env, key, Some("held")).await {
            let release = at(j["release_at"].as_str().unwrap());
            if release <= now {
                due_now += 1;
            }
            if release >= until {
                later += 1;
                continue;
            }
            total += 1;
            let hour = release.max(now).duration_trunc(TimeDelta::hours(1)).unwrap();
            *by_model.entry((hour, j["model"].as_str().unwrap().to_owned())).or_default() += 1;
            *by_tz.entry((hour, j["timezone"].as_str().unwrap().to_owned())).or_default() += 1;
        }
    }
    assert_eq!((total, due_now, later), (13, 1, 1), "the plan above");
    assert_eq!((t["total"].as_i64(), t["due_now"].as_i64(), t["later"].as_i64()), (Some(total), Some(due_now), Some(later)), "{t}");

    let hours = t["hours"].as_array().unwrap();
    assert_eq!(hours.len(), 24);
    let mut seen_model = BTreeMap::new();
    let mut seen_tz = BTreeMap::new();
    for (i, h) in hours.iter().enumerate() {
        let hour = at(h["hour"].as_str().unwrap());
        assert_eq!(hour, from + TimeDelta::hours(i as i64));
        let mut sum = 0;
        for (m, n) in h["by_model"].as_object().unwrap() {
            seen_model.insert((hour, m.clone()), n.as_i64().unwrap());
            sum += n.as_i64().unwrap();
        }
        assert_eq!(h["total"].as_i64(), Some(sum));
        for (tz, n) in h["by_timezone"].as_object().unwrap() {
            seen_tz.insert((hour, tz.clone()), n.as_i64().unwrap());
        }
    }
    assert_eq!(seen_model, by_model);
    assert_eq!(seen_tz, by_tz);
    // The hours the plan says.
    let hour = |s: &str| at(s);
    assert_eq!(seen_model.get(&(hour("2027-06-01T17:00:00Z"), "flux-pro".into())), Some(&4));
    assert_eq!(seen_model.get(&(hour("2027-06-01T20:00:00Z"), "flux-schnell".into())), Some(&1));
    assert_eq!(seen_model.get(&(hour("2027-06-02T06:00:00Z"), "flux-schnell".into())), Some(&3));
    assert_eq!(seen_model.get(&(hour("2027-06-01T12:00:00Z"), "flux-dev".into())), Some(&1), "due now counts in this hour");
    assert_eq!(t["models"], json!(["flux-dev", "flux-pro", "flux-schnell"]));
}

// ---------------------------------------------------------------- Now

#[tokio::test]
async fn now_shows_states_queue_workers_throughput_and_error_rate_as_the_database_says() {
    let now = at("2027-06-01T12:20:30Z");
    let mut env = TestEnv::with(options(now)).await;
    let key = env.tenant("acme", "UTC").await;
    let normal = |i: usize, model: &str| json!({"model": model, "input": {"prompt": format!("n{i}")}, "priority": "normal"});

    // Released, nobody consuming yet: one ready batch, no worker.
    for i in 0..5 {
        submit(&env, &key, normal(i, "flux-schnell")).await;
    }
    env.release_once().await;
    let n = ui_get(&env, "/ui/api/now").await;
    assert_eq!(n["queue"], json!({"ready": env.queue_depth().await, "consumers": 0}), "{n}");
    assert_eq!(n["queue"]["ready"], 1);
    assert_eq!(n["states"]["queued"], 5);

    // A worker connects and works them.
    env.start_worker();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = ui_get(&env, "/ui/api/now").await;
        if n["queue"]["consumers"] == 1 && n["states"]["succeeded"] == 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no worker seen, or jobs not done: {n}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The provider fails every call: two attempts each, then dead.
    env.sim.sim.set_config(SimConfig { error_rate: 1.0, ..Default::default() });
    let mut dead = vec![];
    for i in 0..3 {
        dead.push(id_of(&submit(&env, &key, normal(10 + i, "flux-dev")).await));
    }
    env.release_once().await;
    let rows = env.wait_terminal(&dead, Duration::from_secs(20)).await;
    assert!(rows.iter().all(|r| r.state == "dead" && r.attempts == 2), "{:?}", rows.iter().map(|r| (&r.state, r.attempts)).collect::<Vec<_>>());
    // And one held job for tomorrow, one cancelled.
    submit(&env, &key, json!({"model": "flux-pro", "input": {"prompt": "later"}, "timezone": "Asia/Tokyo"})).await;
    let c = submit(&env, &key, json!({"model": "flux-pro", "input": {"prompt": "gone"}, "timezone": "Asia/Tokyo"})).await;
    env.delete(&key, &format!("/v1/jobs/{}", c["id"].as_str().unwrap())).await;

    let n = ui_get(&env, "/ui/api/now").await;
    // States: the database and the tenant API agree with the panel.
    let db_states: Vec<(String, i64)> = sqlx::query_as("SELECT state, count(*) FROM job_view GROUP BY state").fetch_all(&env.pool).await.unwrap();
    for st in ["held", "queued", "running", "succeeded", "failed", "dead", "cancelled"] {
        let db = db_states.iter().find(|(s, _)| s == st).map_or(0, |(_, n)| *n);
        let api = tenant_jobs(&env, &key, Some(st)).await.len() as i64;
        assert_eq!((n["states"][st].as_i64(), api), (Some(db), db), "{st}: {n}");
    }
    assert_eq!((n["states"]["succeeded"].as_i64(), n["states"]["dead"].as_i64()), (Some(5), Some(3)));

    // Throughput and error rate over the last hour, from the rows themselves.
    let finished: Vec<(String, i32, DateTime<Utc>)> = sqlx::query_as(
        "SELECT state, attempts, finished_at FROM job_view WHERE state IN ('succeeded', 'failed', 'dead')",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let attempts: i64 = finished.iter().map(|(_, a, _)| i64::from(*a)).sum();
    let failed_attempts: i64 =
        finished.iter().map(|(s, a, _)| if s == "dead" { i64::from(*a) } else { i64::from((*a - 1).max(0)) }).sum();
    let tp = &n["throughput"];
    assert_eq!(tp["finished"].as_i64(), Some(finished.len() as i64));
    assert_eq!((tp["succeeded"].as_i64(), tp["failed"].as_i64(), tp["dead"].as_i64()), (Some(5), Some(0), Some(3)));
    let per_minute = tp["per_minute"].as_array().unwrap();
    assert_eq!(per_minute.len(), 60);
    assert_eq!(per_minute.iter().map(|p| p["finished"].as_i64().unwrap()).sum::<i64>(), 8);
    assert_eq!(per_minute[59]["minute"], "2027-06-01T12:20:00Z", "the last point is the current minute");
    assert_eq!(per_minute[59]["finished"], 8, "every job finished at the manual clock's instant");
    let er = &n["error_rate"];
    assert_eq!((er["attempts"].as_i64(), er["failed_attempts"].as_i64()), (Some(attempts), Some(failed_attempts)));
    assert_eq!((attempts, failed_attempts), (11, 6), "5 × 1 good attempt, 3 × 2 failed ones");
    assert!((er["rate"].as_f64().unwrap() - 6.0 / 11.0).abs() < 1e-9);
    assert!(er["definition"].as_str().unwrap().contains("transient"));

    // An hour later none of it is "the last hour" any more.
    env.clock.advance(TimeDelta::minutes(61));
    let n = ui_get(&env, "/ui/api/now").await;
    assert_eq!((n["throughput"]["finished"].as_i64(), n["error_rate"]["rate"].as_f64()), (Some(0), None), "{n}");
}

// ---------------------------------------------------------------- Spend

#[tokio::test]
async fn spend_per_model_and_day_equals_the_usage_api_with_what_off_peak_saved() {
    let day1 = at("2027-06-10T03:00:00Z");
    let env = TestEnv::with(options(day1)).await;
    let acme = env.tenant("acme", "UTC").await;
    let globex = env.tenant("globex", "Asia/Tokyo").await;
    let mut ctx = env.batch_context();
    ctx.prices = PriceTable::default().with_offpeak_multiplier(0.5).unwrap();
    let mut i = 0;
    let mut job = |model: &str, priority: &str, tz: &str| {
        i += 1;
        json!({"model": model, "input": {"prompt": format!("s{i}")}, "priority": priority, "timezone": tz})
    };
    // Day 1, 03:00 UTC: inside the window in UTC (low jobs pay half).
    for _ in 0..4 {
        submit(&env, &acme, job("flux-pro", "low", "UTC")).await; // 5 → 3, saves 2
    }
    for _ in 0..2 {
        submit(&env, &acme, job("flux-dev", "normal", "UTC")).await; // 2, saves 0
    }
    submit(&env, &globex, job("minimax-video", "normal", "Asia/Tokyo")).await; // 15
    env.release_and_work(&ctx).await;
    // Day 2, 04:00 UTC.
    env.clock.set(at("2027-06-11T04:00:00Z"));
    for _ in 0..3 {
        submit(&env, &globex, job("flux-dev", "low", "UTC")).await; // 2 → 1, saves 1
    }
    submit(&env, &acme, job("flux-pro", "low", "UTC")).await;
    env.release_and_work(&ctx).await;
    // Still held (Tokyo's window is hours away): costs nothing yet.
    submit(&env, &globex, job("flux-pro", "low", "Asia/Tokyo")).await;
    // Older than 30 days: out of the range.
    env.clock.set(at("2027-05-01T03:00:00Z"));
    submit(&env, &acme, job("stable-audio", "normal", "UTC")).await;
    env.release_and_work(&ctx).await;
    env.clock.set(at("2027-06-11T09:00:00Z"));

    let sp = ui_get(&env, "/ui/api/spend").await;
    assert_eq!(sp["from"], "2027-05-13T00:00:00Z");
    assert_eq!(sp["until"], "2027-06-12T00:00:00Z");
    let days = sp["days"].as_array().unwrap();
    assert_eq!((days.len(), days[0].as_str(), days[29].as_str()), (30, Some("2027-05-13"), Some("2027-06-11")));

    // Per model: the sum of each tenant's GET /v1/usage over the same range.
    let mut expected: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for key in [&acme, &globex] {
        let (status, u) = env.get(key, "/v1/usage?group_by=model&start=2027-05-13T00:00:00Z&end=2027-06-12T00:00:00Z").await;
        assert_eq!(status, 200, "{u}");
        for (model, g) in u["groups"].as_object().unwrap() {
            for (k, v) in g.as_object().unwrap() {
                *expected.entry(model.clone()).or_default().entry(k.clone()).or_default() += v.as_i64().unwrap();
                *totals.entry(k.clone()).or_default() += v.as_i64().unwrap();
            }
        }
    }
    let by_model: BTreeMap<String, BTreeMap<String, i64>> = serde_json::from_value(sp["by_model"].clone()).unwrap();
    assert_eq!(by_model, expected);
    let seen_totals: BTreeMap<String, i64> = serde_json::from_value(sp["totals"].clone()).unwrap();
    assert_eq!(seen_totals, totals);
    assert_eq!(
        sp["totals"],
        json!({"requests": 11, "credits": 37, "list_credits": 50, "saved_offpeak": 13, "saved_cache": 0, "saved_semantic": 0, "previews": 0, "upgrades": 0, "saved_preview": 0}),
        "4×3 + 2×2 + 15 + 3×1 + 3 credits; 4×2 + 3×1 + 2 saved"
    );
    assert!(!expected.contains_key("stable-audio"), "older than 30 days");

    // Per day and model: the ledger, grouped by UTC day.
    let ledger: Vec<(chrono::NaiveDate, String, i64, i64, i64)> = sqlx::query_as(
        "SELECT (finished_at AT TIME ZONE 'UTC')::date, model, count(*), sum(credits)::bigint, sum(list_credits - credits)::bigint
         FROM usage_ledger WHERE finished_at >= '2027-05-13T00:00:00Z' GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .fetch_all(&env.pool)
    .await
    .unwrap();
    let rows: Vec<(chrono::NaiveDate, String, i64, i64, i64)> = sp["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["day"].as_str().unwrap().parse().unwrap(),
                r["model"].as_str().unwrap().to_owned(),
                r["requests"].as_i64().unwrap(),
                r["credits"].as_i64().unwrap(),
                r["saved_offpeak"].as_i64().unwrap() + r["saved_cache"].as_i64().unwrap() + r["saved_semantic"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(rows, ledger);
    // acme is a UTC tenant: its days are UTC days, as /v1/usage?group_by=day says.
    let (_, u) = env.get(&acme, "/v1/usage?group_by=day&start=2027-06-10&end=2027-06-11").await;
    assert_eq!(u["groups"]["2027-06-10"]["credits"], 16);
    assert_eq!(u["groups"]["2027-06-11"]["credits"], 3);

    let (status, body) = env.get(TOKEN, "/ui/api/spend?days=91").await;
    assert_eq!((status, body["error"]["field"].as_str()), (400, Some("days")));
    let sp7 = ui_get(&env, "/ui/api/spend?days=1").await;
    assert_eq!(sp7["totals"]["credits"], 3 + 3, "today only: globex's 3 × 1 and acme's 3");
}

// ---------------------------------------------------------------- Jobs

#[tokio::test]
async fn the_job_list_searches_every_tenant_and_pages_without_gaps_or_repeats() {
    let t0 = at("2027-06-01T10:00:00Z");
    let env = TestEnv::with(options(t0)).await;
    let acme = env.tenant("acme", "UTC").await;
    let globex = env.tenant("globex", "Asia/Tokyo").await;
    let mut ids = vec![];
    for i in 0..3 {
        ids.push(id_of(&submit(&env, &acme, json!({"model": "flux-schnell", "input": {"prompt": format!("a{i}")}})).await));
    }
    env.clock.set(t0 + TimeDelta::hours(1));
    for i in 0..2 {
        ids.push(id_of(&submit(&env, &globex, json!({"model": "flux-dev", "input": {"prompt": format!("g{i}")}})).await));
    }
    env.clock.set(t0 + TimeDelta::hours(2));
    for i in 0..2 {
        ids.push(id_of(&submit(&env, &acme, json!({"model": "flux-pro", "input": {"prompt": format!("p{i}")}, "user_id": "u-1"})).await));
    }
    assert_eq!(env.delete(&acme, &format!("/v1/jobs/{}", ids[0])).await.0, 200);
    let globex_id: String = sqlx::query_scalar("SELECT id::text FROM tenants WHERE name = 'globex'").fetch_one(&env.pool).await.unwrap();
    let acme_id: String = sqlx::query_scalar("SELECT id::text FROM tenants WHERE name = 'acme'").fetch_one(&env.pool).await.unwrap();

    let list = |q: String| {
        let env = &env;
        async move {
            let page = ui_get(env, &format!("/ui/api/jobs?{q}")).await;
            page["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().parse::<Uuid>().unwrap()).collect::<Vec<_>>()
        }
    };
    let mut newest_first = ids.clone();
    newest_first.sort();
    newest_first.reverse();
    assert_eq!(list(String::new()).await, newest_first);
    let page = ui_get(&env, "/ui/api/jobs").await;
    let first = &page["jobs"][0];
    assert_eq!((first["tenant"].as_str(), first["user_id"].as_str(), first["model"].as_str()), (Some("acme"), Some("u-1"), Some("flux-pro")));
    assert!(first.get("input").is_none(), "a listing leaves inputs to the job's page");

    // Filters, each against the tenant API or the plan.
    let acme_api: Vec<Uuid> = tenant_jobs(&env, &acme, None).await.iter().map(id_of).collect();
    assert_eq!(list(format!("tenant={acme_id}")).await, acme_api);
    assert_eq!(list(format!("tenant={globex_id}")).await.len(), 2);
    assert_eq!(list("model=flux-pro".into()).await, newest_first[..2].to_vec());
    assert_eq!(list("state=cancelled".into()).await, vec![ids[0]]);
    let held_api: Vec<Uuid> = tenant_jobs(&env, &acme, Some("held")).await.iter().map(id_of).collect();
    assert_eq!(list(format!("state=held&tenant={acme_id}")).await, held_api);
    assert_eq!(list("from=2027-06-01T10:30:00Z&to=2027-06-01T11:30".into()).await, vec![ids[4], ids[3]]);
    assert_eq!(list("from=2027-06-01T12:00".into()).await.len(), 2);
    assert_eq!(list("to=2027-06-01".into()).await.len(), 7, "a bare end date includes its day");
    assert_eq!(list("to=2027-05-31".into()).await.len(), 0);
    assert_eq!(list("user_id=u-1".into()).await.len(), 2);
    assert_eq!(list("model=&state=&tenant=".into()).await.len(), 7, "empty fields of a form filter nothing");

    // Pages of 3: 3, 3, 1, every job once.
    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let q = cursor.as_ref().map_or("limit=3".to_owned(), |c| format!("limit=3&cursor={c}"));
        let page = ui_get(&env, &format!("/ui/api/jobs?{q}")).await;
        pages += 1;
        seen.extend(page["jobs"].as_array().unwrap().iter().map(id_of));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((pages, seen.clone()), (3, newest_first.clone()));
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 7);

    for (q, field) in [
        ("state=paused", "state"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("tenant=acme", "tenant"),
        ("from=yesterday", "from"),
        ("cursor=nope", "cursor"),
    ] {
        let (status, body) = env.get(TOKEN, &format!("/ui/api/jobs?{q}")).await;
        assert_eq!((status, body["error"]["field"].as_str()), (400, Some(field)), "{q}: {body}");
    }
    let (status, body) = env.get(TOKEN, "/ui/api/jobs?color=red").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn a_job_page_shows_its_timeline_input_result_and_error_as_the_tenant_api_does() {
    let now = at("2027-06-01T12:00:00Z");
    let env = TestEnv::with(options(now)).await;
    let key = env.tenant("acme", "UTC").await;
    let ctx = env.batch_context();
    let ok = submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "lighthouse"}, "priority": "normal", "metadata": {"sku": 7}})).await;
    env.clock.advance(TimeDelta::seconds(5));
    env.release_and_work(&ctx).await;
    env.sim.sim.set_config(SimConfig { item_error_rate: 1.0, ..Default::default() });
    let bad = submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "rejected"}, "priority": "normal"})).await;
    env.release_and_work(&ctx).await;

    let page = ui_get(&env, &format!("/ui/api/jobs/{}", ok["id"].as_str().unwrap())).await;
    let (_, api) = env.get(&key, &format!("/v1/jobs/{}", ok["id"].as_str().unwrap())).await;
    assert_eq!(page["job"], api, "the job as its tenant sees it");
    assert_eq!(page["job"]["state"], "succeeded");
    assert_eq!(page["tenant"], "acme");
    assert_eq!(page["batch"]["id"], api["batch_id"]);
    assert_eq!(page["batch"]["job_count"], 1);
    let events: Vec<&str> = page["timeline"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["created", "due", "queued", "started", "finished"]);
    assert_eq!(page["timeline"][4]["at"], api["finished_at"]);
    assert_eq!((page["can_retry"].as_bool(), page["can_cancel"].as_bool()), (Some(false), Some(false)));

    let page = ui_get(&env, &format!("/ui/api/jobs/{}", bad["id"].as_str().unwrap())).await;
    let (_, api) = env.get(&key, &format!("/v1/jobs/{}", bad["id"].as_str().unwrap())).await;
    assert_eq!(page["job"], api);
    assert_eq!(page["job"]["state"], "failed");
    assert!(page["job"]["error"]["code"].is_string(), "{page}");
    assert_eq!(page["can_retry"], true);

    for missing in [Uuid::now_v7().to_string(), "not-a-uuid".to_owned()] {
        let (status, body) = env.get(TOKEN, &format!("/ui/api/jobs/{missing}")).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    }
}

// ---------------------------------------------------------------- retry and cancel

#[tokio::test]
async fn retry_and_cancel_change_one_job_and_refuse_the_wrong_state_with_a_409() {
    let now = at("2027-06-01T12:00:00Z");
    let env = TestEnv::with(EnvOptions { sim: SimConfig { error_rate: 1.0, ..Default::default() }, ..options(now) }).await;
    let key = env.tenant("acme", "UTC").await;
    let ctx = env.batch_context();
    let dead_normal = id_of(&submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "d1"}, "priority": "normal"})).await);
    let dead_other = id_of(&submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "d2"}, "priority": "normal"})).await);
    env.release_and_work(&ctx).await;
    assert_eq!(env.job(dead_normal).await.state, "dead");
    env.sim.sim.set_config(SimConfig { item_error_rate: 1.0, ..Default::default() });
    // Low priority in Tokyo, released by hand at 12:00Z (window long closed there: 02:00 JST = 17:00Z).
    let failed_low = id_of(&submit(&env, &key, json!({"model": "flux-pro", "input": {"prompt": "f"}, "timezone": "Asia/Tokyo"})).await);
    sqlx::query(
        "WITH waiting AS (UPDATE held_jobs SET release_at = $2, window_closes_at = NULL WHERE id = $1)
         UPDATE jobs SET release_at = $2, window_closes_at = NULL WHERE id = $1",
    )
    .bind(failed_low)
    .bind(now)
    .execute(&env.pool)
    .await
    .unwrap();
    env.release_and_work(&ctx).await;
    assert_eq!(env.job(failed_low).await.state, "failed");
    env.sim.sim.set_config(SimConfig::default());
    let held = id_of(&submit(&env, &key, json!({"model": "flux-pro", "input": {"prompt": "h"}, "timezone": "Asia/Tokyo"})).await);

    // Mutations are POSTs with the anti-CSRF header.
    let path = |id: Uuid, what: &str| format!("/ui/api/jobs/{id}/{what}");
    let r = env.http.post(env.url(&path(dead_normal, "retry"))).bearer_auth(TOKEN).json(&json!({})).send().await.unwrap();
    let (status, body) = TestEnv::read(r).await;
    assert_eq!((status, body["error"]["code"].as_str()), (403, Some("csrf_header_required")));
    let r = env.http.post(env.url(&path(held, "cancel"))).bearer_auth(TOKEN).header("X-Offpeak-UI", "yes").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let (status, body) = env.get(TOKEN, &path(dead_normal, "retry")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (405, Some("method_not_allowed")));
    let r = env.http.post(env.url(&path(dead_normal, "retry"))).bearer_auth(&key).header("X-Offpeak-UI", "1").send().await.unwrap();
    assert_eq!(r.status(), 401, "a tenant key changes nothing here");
    assert_eq!(env.job(dead_normal).await.state, "dead", "nothing was changed by the refused calls");

    // Retry a dead normal job: held again, due at once, fresh attempts, last error kept.
    let (status, body) = ui_post(&env, &path(dead_normal, "retry"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let job = &body["job"];
    assert_eq!((job["state"].as_str(), job["attempts"].as_i64()), (Some("held"), Some(0)));
    assert_eq!(at(job["release_at"].as_str().unwrap()), now);
    assert!(job["error"].is_object(), "the last error is kept until it runs again");
    let (_, api) = env.get(&key, &format!("/v1/jobs/{dead_normal}")).await;
    assert_eq!((api["state"].as_str(), api["finished_at"].is_null(), api["batch_id"].is_null()), (Some("held"), true, true));
    // It runs and succeeds.
    env.release_and_work(&ctx).await;
    assert_eq!(env.job(dead_normal).await.state, "succeeded");
    assert_eq!(env.job(dead_other).await.state, "dead", "only the one job was retried");

    // A failed low-priority job waits for its next window, as `jobs retry` does …
    let (status, body) = ui_post(&env, &path(failed_low, "retry"), &json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (_, w) = env.get(&key, &format!("/v1/windows/next?timezone=Asia/Tokyo&at={}", now.format("%Y-%m-%dT%H:%M:%SZ"))).await;
    assert_eq!(at(body["job"]["release_at"].as_str().unwrap()), at(w["opens_at"].as_str().unwrap()));
    assert_eq!(at(body["job"]["window_closes_at"].as_str().unwrap()), at(w["closes_at"].as_str().unwrap()));
    // … and a retried job is held, which is no state to retry from.
    let (status, body) = ui_post(&env, &path(failed_low, "retry"), &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_retryable")), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("held"));
    // With {"now": true} a failed low job is due at once. Failed again in
    // its own row, it no longer waits (out of `held_jobs`).
    sqlx::query(
        "WITH ended AS (DELETE FROM held_jobs WHERE id = $1)
         UPDATE jobs SET state = 'failed', finished_at = $2 WHERE id = $1",
    )
    .bind(failed_low)
    .bind(now)
    .execute(&env.pool)
    .await
    .unwrap();
    let (status, body) = ui_post(&env, &path(failed_low, "retry"), &json!({"now": true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((at(body["job"]["release_at"].as_str().unwrap()), body["job"]["window_closes_at"].is_null()), (now, true));
    let (status, body) = ui_post(&env, &path(dead_other, "retry"), &json!({"later": true})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_field")));
    let (status, _) = ui_post(&env, &path(dead_normal, "retry"), &json!({})).await;
    assert_eq!(status, 409, "a succeeded job is not retried");

    // Cancel a held job, then again.
    let (status, body) = ui_post(&env, &path(held, "cancel"), &json!({})).await;
    assert_eq!((status, body["job"]["state"].as_str()), (200, Some("cancelled")), "{body}");
    let (_, api) = env.get(&key, &format!("/v1/jobs/{held}")).await;
    assert_eq!(api["state"], "cancelled");
    let (status, body) = ui_post(&env, &path(held, "cancel"), &json!({})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_cancellable")));
    let (status, _) = ui_post(&env, &path(dead_other, "cancel"), &json!({})).await;
    assert_eq!(status, 409, "a dead job is not cancelled");
    assert_eq!(env.job(dead_other).await.state, "dead");

    for what in ["retry", "cancel"] {
        let (status, _) = ui_post(&env, &path(Uuid::now_v7(), what), &json!({})).await;
        assert_eq!(status, 404);
        let (status, _) = ui_post(&env, &format!("/ui/api/jobs/nope/{what}"), &json!({})).await;
        assert_eq!(status, 404);
    }
}

#[tokio::test]
async fn the_webhooks_panel_shows_every_endpoint_with_its_deliveries_and_health_as_the_database_says() {
    let mut opts = options(at("2027-06-01T03:00:00Z"));
    opts.api.webhooks_allow_private = true;
    let env = TestEnv::with(opts).await;
    let key = env.tenant("acme", "UTC").await;
    let (status, hook) = env.post(&key, "/v1/webhooks", &json!({"url": "http://127.0.0.1:9/unreachable"})).await;
    assert_eq!(status, 201, "{hook}");
    // A cancelled job's event, tried once against a port nobody listens on.
    let job = submit(&env, &key, json!({"model": "flux-schnell", "input": {"prompt": "x"}, "timezone": "Pacific/Auckland"})).await;
    env.delete(&key, &format!("/v1/jobs/{}", id_of(&job))).await;
    let d = env.deliverer(TestEnv::test_delivery_config());
    d.run_once().await.unwrap();
    while d.in_flight() > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let panel = ui_get(&env, "/ui/api/webhooks").await;
    assert_eq!(panel["pending"], 1, "{panel}");
    assert_eq!(panel["failed"], 0);
    assert_eq!(panel["endpoints_disabled"], 0);
    let e = &panel["endpoints"][0];
    assert_eq!(e["id"], hook["id"]);
    assert_eq!(e["tenant"], "acme");
    assert_eq!((e["pending"].as_i64(), e["delivered"].as_i64()), (Some(1), Some(0)));
    assert_eq!(e["enabled"], true);
    assert!(e["failing_since"].is_string(), "{e}");
    assert!(e["last_error"].as_str().is_some_and(|s| !s.is_empty()), "{e}");
    let (status, _) = env.get(&key, "/ui/api/webhooks").await;
    assert_eq!(status, 401, "a tenant key is not the operator's");
}
