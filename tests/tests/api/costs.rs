//! Cost controls: the off-peak multiplier, the usage ledger and its
//! agreement with the jobs table, `GET /v1/usage` by model, day and user,
//! model routing, and `GET /v1/tenant`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_scheduler::api::ApiConfig;
use offpeak_core::prices::{PriceTable, RouteTable};
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;
use offpeak_worker::process::process_batch;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

async fn bulk(env: &TestEnv, key: &str, body: Value) -> Vec<Uuid> {
    let (status, resp) = env.post(key, "/v1/jobs/bulk", &body).await;
    assert_eq!(status, 201, "{resp}");
    bulk_ids(&resp)
}

/// Ledger rows that disagree with the jobs table, both ways: a succeeded job
/// without its row, a row without its succeeded job, or a row whose tenant,
/// user, model, credits or time differ from the job's.
async fn ledger_disagreements(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_view j FULL JOIN usage_ledger l ON l.job_id = j.id
         WHERE (j.state = 'succeeded' OR l.job_id IS NOT NULL)
           AND (j.id IS NULL OR l.job_id IS NULL OR j.state <> 'succeeded'
                OR l.tenant_id <> j.tenant_id OR l.user_id IS DISTINCT FROM j.user_id OR l.model <> j.model
                OR l.credits <> j.credits OR l.finished_at <> j.finished_at OR l.priority <> j.priority)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

async fn usage(env: &TestEnv, key: &str, query: &str) -> Value {
    let (status, body) = env.get(key, &format!("/v1/usage{query}")).await;
    assert_eq!(status, 200, "{query}: {body}");
    body
}

#[tokio::test]
async fn the_offpeak_multiplier_discounts_low_priority_jobs_but_not_normal_ones() {
    // 03:00 UTC: inside a UTC tenant's window, so low-priority jobs are due at once.
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let low = bulk(&env, &key, json!({"model": "flux-pro", "inputs": [{"p": 1}, {"p": 2}, {"p": 3}]})).await;
    let normal = bulk(&env, &key, json!({"model": "flux-pro", "inputs": [{"p": 4}, {"p": 5}], "priority": "normal"})).await;
    let mut ctx = env.batch_context();
    ctx.prices = PriceTable::default().with_offpeak_multiplier(0.5).unwrap();
    env.release_and_work(&ctx).await;

    for id in &low {
        let job = env.job(*id).await;
        assert_eq!((job.state.as_str(), job.credits), ("succeeded", Some(3)), "5 × 0.5 = 2.5, rounded half up");
    }
    for id in &normal {
        let job = env.job(*id).await;
        assert_eq!((job.state.as_str(), job.credits), ("succeeded", Some(5)), "normal priority pays list price");
    }
    let (status, view) = env.get(&key, &format!("/v1/jobs/{}", low[0])).await;
    assert_eq!((status, &view["credits"]), (200, &json!(3)));
    assert_eq!(ledger_disagreements(&env).await, 0);

    let body = usage(&env, &key, "").await;
    assert_eq!(body["group_by"], "model");
    assert_eq!(
        body["groups"]["flux-pro"],
        json!({"requests": 5, "credits": 19, "list_credits": 25, "saved_offpeak": 6, "saved_cache": 0, "saved_semantic": 0, "previews": 0, "upgrades": 0, "saved_preview": 0})
    );
    assert_eq!(body["totals"]["credits"], 19);
}

#[tokio::test]
async fn the_ledger_agrees_with_the_jobs_table_when_a_batch_is_delivered_twice() {
    let env = TestEnv::with(EnvOptions {
        now: at("2027-06-01T12:00:00Z"),
        sim: SimConfig { item_error_rate: 0.3, seed: Some(7), ..Default::default() },
        ..Default::default()
    })
    .await;
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<_> = (0..40).map(|i| json!({"prompt": format!("p{i}")})).collect();
    let ids = bulk(&env, &key, json!({"model": "flux-dev", "inputs": inputs, "priority": "normal", "user_id": "u-1"})).await;
    env.release_once().await;
    let ctx = env.batch_context();
    let msgs = env.queued_batches().await;
    assert_eq!(msgs.len(), 1);
    let msg = &msgs[0];

    // A redelivery racing the original, then a late third delivery.
    let (a, b) = tokio::join!(process_batch(&ctx, msg), process_batch(&ctx, msg));
    assert_eq!(a.unwrap().written + b.unwrap().written, ids.len() as u64);
    assert_eq!(process_batch(&ctx, msg).await.unwrap().written, 0);

    let (succeeded, credits): (i64, i64) =
        sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM job_view WHERE state = 'succeeded'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    let failed: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'failed'").fetch_one(&env.pool).await.unwrap();
    assert!(succeeded > 0 && failed > 0, "the simulator rejected some items: {succeeded} succeeded, {failed} failed");
    assert_eq!(succeeded + failed, ids.len() as i64);
    let (rows, ledger_credits): (i64, i64) =
        sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM usage_ledger").fetch_one(&env.pool).await.unwrap();
    assert_eq!((rows, ledger_credits), (succeeded, credits), "one ledger row per succeeded job, credits counted once");
    assert_eq!(credits, succeeded * 2);
    assert_eq!(ledger_disagreements(&env).await, 0);

    let body = usage(&env, &key, "?group_by=user").await;
    assert_eq!(body["groups"]["u-1"]["requests"], succeeded);
    assert_eq!(body["groups"]["u-1"]["credits"], credits);
}

#[tokio::test]
async fn usage_by_day_model_and_user_follows_the_tenants_timezone() {
    // 08:00 EDT on 2027-06-01.
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "America/New_York").await;
    let ctx = env.batch_context();
    bulk(&env, &key, json!({"model": "flux-schnell", "inputs": [{"a": 1}, {"a": 2}], "priority": "normal", "user_id": "u1"})).await;
    env.release_and_work(&ctx).await;
    // 23:30 EDT, still June 1 in New York though June 2 in UTC.
    env.clock.set(at("2027-06-02T03:30:00Z"));
    bulk(&env, &key, json!({"model": "flux-dev", "inputs": [{"b": 1}], "priority": "normal", "user_id": "u2"})).await;
    env.release_and_work(&ctx).await;
    // 00:30 EDT on June 2.
    env.clock.set(at("2027-06-02T04:30:00Z"));
    bulk(&env, &key, json!({"model": "flux-pro", "inputs": [{"c": 1}], "priority": "normal"})).await;
    env.release_and_work(&ctx).await;
    assert_eq!(ledger_disagreements(&env).await, 0);

    let g = |r, c| json!({"requests": r, "credits": c, "list_credits": c, "saved_offpeak": 0, "saved_cache": 0, "saved_semantic": 0, "previews": 0, "upgrades": 0, "saved_preview": 0});
    let body = usage(&env, &key, "?group_by=day&start=2027-06-01&end=2027-06-02").await;
    assert_eq!(body["timezone"], "America/New_York");
    assert_eq!(body["start"], "2027-06-01T04:00:00Z", "local midnight, EDT");
    assert_eq!(body["end"], "2027-06-03T04:00:00Z", "a date as end includes that day");
    assert_eq!(body["groups"], json!({"2027-06-01": g(3, 4), "2027-06-02": g(1, 5)}));
    assert_eq!(body["totals"], g(4, 9));

    let body = usage(&env, &key, "?group_by=model&start=2027-06-01&end=2027-06-02").await;
    assert_eq!(body["groups"], json!({"flux-dev": g(1, 2), "flux-pro": g(1, 5), "flux-schnell": g(2, 2)}));

    let body = usage(&env, &key, "?group_by=user&start=2027-06-01&end=2027-06-02").await;
    assert_eq!(body["groups"], json!({"": g(1, 5), "u1": g(2, 2), "u2": g(1, 2)}), "no user_id is the key \"\"");

    // The default range is today in the tenant's timezone: June 2 in New York.
    let body = usage(&env, &key, "").await;
    assert_eq!((body["start"].clone(), body["end"].clone()), (json!("2027-06-02T04:00:00Z"), json!("2027-06-03T04:00:00Z")));
    assert_eq!(body["groups"], json!({"flux-pro": g(1, 5)}));

    // RFC 3339 bounds: the end is excluded.
    let body = usage(&env, &key, "?start=2027-06-02T03:30:00Z&end=2027-06-02T04:30:00Z").await;
    assert_eq!(body["groups"], json!({"flux-dev": g(1, 2)}));
    let body = usage(&env, &key, "?start=2027-06-01T00:00:00%2B02:00&end=2027-06-02T04:30:01Z&group_by=day").await;
    assert_eq!(body["groups"], json!({"2027-06-01": g(3, 4), "2027-06-02": g(1, 5)}));
}

#[tokio::test]
async fn usage_is_scoped_to_the_tenant_and_bad_parameters_are_400s_naming_the_field() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let acme = env.tenant("acme", "UTC").await;
    let globex = env.tenant("globex", "UTC").await;
    bulk(&env, &acme, json!({"model": "flux-dev", "inputs": [{"a": 1}], "priority": "normal"})).await;
    env.release_and_work(&env.batch_context()).await;

    assert_eq!(usage(&env, &acme, "").await["totals"]["credits"], 2);
    let other = usage(&env, &globex, "").await;
    assert_eq!(other["groups"], json!({}));
    assert_eq!(other["totals"]["requests"], 0);
    let (_, t) = env.get(&globex, "/v1/tenant").await;
    assert_eq!(t["today"]["requests"], 0);

    for (query, field) in [
        ("?group_by=week", "group_by"),
        ("?start=yesterday", "start"),
        ("?end=2027-13-01", "end"),
        // RFC 3339 full-dates only, as the document's `format: date`.
        ("?start=2027-6-1", "start"),
        ("?start=%2B2027-06-01", "start"),
        ("?start=2027-06-02&end=2027-06-01", "end"),
        ("?group_by=day&start=2020-01-01&end=2027-01-01", "end"),
    ] {
        let (status, body) = env.get(&acme, &format!("/v1/usage{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!((body["error"]["code"].as_str(), body["error"]["field"].as_str()), (Some("invalid_query"), Some(field)), "{query}");
    }
    let (status, body) = env.get(&acme, "/v1/usage?tenant=globex").await;
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("invalid_query")));
    let resp = env.http.get(env.url("/v1/usage")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 401);
}

#[tokio::test]
async fn a_usage_bound_outside_years_0000_to_9999_in_utc_is_a_400_not_an_unwritable_instant() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let east = env.tenant("east", "Asia/Tokyo").await;
    let west = env.tenant("west", "America/New_York").await;
    // Tokyo's midnight of 0000-01-01 is 0000-12-31 of year -1 in UTC, and New
    // York's midnight after 9999-12-31 is in year 10000: RFC 3339 writes neither.
    for (key, query, field) in [(&east, "?start=0000-01-01", "start"), (&west, "?end=9999-12-31", "end")] {
        let (status, body) = env.get(key, &format!("/v1/usage{query}")).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!((body["error"]["code"].as_str(), body["error"]["field"].as_str()), (Some("invalid_query"), Some(field)), "{query}");
    }
    // The same dates where their midnights are writable, and the extreme instants themselves.
    for (key, query) in [
        (&west, "?start=0000-01-01"),
        (&east, "?end=9999-12-31"),
        (&east, "?start=0000-01-01T00:00:00Z&end=9999-12-31T23:59:59Z"),
    ] {
        let body = usage(&env, key, query).await;
        for bound in ["start", "end"] {
            let text = body[bound].as_str().unwrap_or_default();
            assert!(DateTime::parse_from_rfc3339(text).is_ok(), "{query}: {bound} {text} is RFC 3339");
        }
    }
}

#[tokio::test]
async fn model_auto_routes_by_use_case_and_records_both() {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;

    let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "auto", "use_case": "thumbnail", "input": {"p": 1}})).await;
    assert_eq!(status, 201, "{job}");
    assert_eq!((job["model"].as_str(), job["use_case"].as_str()), (Some("flux-schnell"), Some("thumbnail")));
    let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"p": 1}})).await;
    assert_eq!(status, 201, "{job}");
    assert!(job["use_case"].is_null());

    let ids = bulk(&env, &key, json!({"model": "auto", "use_case": "hero-image", "inputs": [{"p": 1}, {"p": 2}], "priority": "normal"})).await;
    for id in &ids {
        let row = env.job(*id).await;
        assert_eq!((row.model.as_str(), row.use_case.as_deref()), ("flux-pro", Some("hero-image")));
    }
    // The routed model is what runs and is charged.
    env.release_and_work(&env.batch_context()).await;
    assert_eq!(env.job(ids[0]).await.credits, Some(5));
    let routed: Option<String> = sqlx::query_scalar("SELECT use_case FROM usage_ledger WHERE job_id = $1")
        .bind(ids[0])
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert_eq!(routed.as_deref(), Some("hero-image"));

    let before = env.count_jobs().await;
    for (path, body, code) in [
        ("/v1/jobs", json!({"model": "auto", "use_case": "billboard", "input": {}}), "unknown_use_case"),
        ("/v1/jobs", json!({"model": "auto", "input": {}}), "invalid_field"),
        ("/v1/jobs", json!({"model": "flux-dev", "use_case": "thumbnail", "input": {}}), "invalid_field"),
        ("/v1/jobs/bulk", json!({"model": "auto", "use_case": "billboard", "inputs": [{}]}), "unknown_use_case"),
        ("/v1/jobs/bulk", json!({"model": "flux-dev", "use_case": "print", "inputs": [{}]}), "invalid_field"),
    ] {
        let (status, resp) = env.post(&key, path, &body).await;
        assert_eq!(status, 422, "{body}: {resp}");
        assert_eq!((resp["error"]["code"].as_str(), resp["error"]["field"].as_str()), (Some(code), Some("use_case")), "{body}");
        if code == "unknown_use_case" {
            let message = resp["error"]["message"].as_str().unwrap();
            assert!(message.contains("thumbnail") && message.contains("print"), "lists the known use cases: {message}");
        }
    }
    assert_eq!(env.count_jobs().await, before, "a refused submission stores nothing");
}

#[tokio::test]
async fn the_routing_table_is_configurable() {
    let api = ApiConfig { routes: RouteTable::with_overrides("thumbnail=flux-dev,banner=stable-audio").unwrap(), ..Default::default() };
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), api, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    for (use_case, model) in [("thumbnail", "flux-dev"), ("banner", "stable-audio"), ("print", "flux-pro")] {
        let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "auto", "use_case": use_case, "input": {}})).await;
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["model"], model, "{use_case}");
    }
}

#[tokio::test]
async fn the_tenant_sees_its_settings_and_todays_usage() {
    // 23:00 in Tokyo on June 1.
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T14:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "Asia/Tokyo").await;
    bulk(&env, &key, json!({"model": "flux-dev", "inputs": [{"a": 1}, {"a": 2}], "priority": "normal"})).await;
    env.release_and_work(&env.batch_context()).await;

    let (status, t) = env.get(&key, "/v1/tenant").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((t["name"].as_str(), t["timezone"].as_str()), (Some("acme"), Some("Asia/Tokyo")));
    assert!(t["daily_credits"].is_null());
    assert_eq!(t["window"], "02:00-06:00");
    assert_eq!(t["offpeak_multiplier"], 1.0);
    assert_eq!(t["today"]["date"], "2027-06-01");
    assert_eq!(t["today"]["start"], "2027-05-31T15:00:00Z");
    assert_eq!((t["today"]["requests"].as_i64(), t["today"]["credits"].as_i64()), (Some(2), Some(4)));

    // An hour later it is June 2 in Tokyo: a new day, nothing used yet.
    env.clock.set(at("2027-06-01T15:00:00Z"));
    let (_, t) = env.get(&key, "/v1/tenant").await;
    assert_eq!(t["today"]["date"], "2027-06-02");
    assert_eq!(t["today"]["requests"], 0);
}

#[tokio::test]
async fn a_schedule_template_with_model_auto_is_routed_and_its_jobs_record_the_use_case() {
    use offpeak_scheduler::firing::{Firer, FiringConfig};
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T10:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let body = json!({"name": "thumbs", "cron": "* * * * *",
                      "job": {"model": "auto", "use_case": "preview", "input": {"p": 1}, "priority": "normal"}});
    let (status, schedule) = env.post(&key, "/v1/schedules", &body).await;
    assert_eq!(status, 201, "{schedule}");
    assert_eq!((schedule["job"]["model"].as_str(), schedule["job"]["use_case"].as_str()), (Some("flux-schnell"), Some("preview")));
    // The same create again is idempotent, also after an unrelated change.
    let sid = schedule["id"].as_str().unwrap().to_owned();
    let resp = env.http.patch(env.url(&format!("/v1/schedules/{sid}"))).bearer_auth(&key).json(&json!({"catch_up": "latest"})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, again) = env.post(&key, "/v1/schedules", &body).await;
    assert_eq!(status, 200, "{again}");

    env.clock.set(at("2027-06-01T10:01:00Z"));
    Firer::new(env.pool.clone(), env.shared_clock(), FiringConfig::default()).run_once().await.unwrap();
    let (model, use_case): (String, Option<String>) =
        sqlx::query_as("SELECT model, use_case FROM jobs").fetch_one(&env.pool).await.unwrap();
    assert_eq!((model.as_str(), use_case.as_deref()), ("flux-schnell", Some("preview")));

    let (status, err) = env
        .post(&key, "/v1/schedules", &json!({"name": "x", "cron": "* * * * *", "job": {"model": "flux-dev", "use_case": "preview", "input": {}}}))
        .await;
    assert_eq!((status, err["error"]["field"].as_str()), (422, Some("job.use_case")), "{err}");
}
