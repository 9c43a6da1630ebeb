//! Preview first, full quality on demand (issue #19): the provider's cost
//! guide says "generate low-quality first, high-quality on demand; most
//! thumbnails are never clicked".
//!
//! - `POST /v1/jobs/{id}/upgrade` makes a new job (a child, `parent_id`)
//!   from a succeeded job: the parent's input with the body's fields merged
//!   over it, the model the body names, `low` priority by default; the
//!   parent lists its `children`. The same upgrade twice is the same child
//!   (200), also when both are sent at once; the child goes through the
//!   daily limits and the exact cache like any job.
//! - `"preview": {...}` on a submission runs the job on the cheap model now
//!   and records the submission's own model as its `upgrade` target, which
//!   an upgrade with an empty body makes.
//! - `GET /v1/usage` counts `previews`, `upgrades` and `saved_preview`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::prices::PriceTable;
use offpeak_store::tenants::{self, TenantUpdate};
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn id_of(body: &Value) -> Uuid {
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).parse().unwrap()
}

/// A UTC tenant at noon: a `low` job waits for 02:00, a `normal` one runs at once.
async fn env_at_noon() -> (TestEnv, String) {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    (env, key)
}

async fn submit(env: &TestEnv, key: &str, body: Value) -> Value {
    let (status, resp) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{resp}");
    resp
}

/// A `normal` job of `model` that has succeeded (worked at the clock's instant).
async fn succeeded(env: &TestEnv, key: &str, model: &str, input: Value) -> Uuid {
    let id = id_of(&submit(env, key, json!({"model": model, "input": input, "priority": "normal"})).await);
    env.release_and_work(&env.batch_context()).await;
    assert_eq!(env.job(id).await.state.as_str(), "succeeded");
    id
}

/// `POST /v1/jobs/{id}/upgrade` with exactly these bytes (none: no body):
/// status, body, and whether `Idempotent-Replayed: true` came with it.
async fn upgrade_raw(env: &TestEnv, key: &str, id: Uuid, body: Option<&str>) -> (u16, Value, bool) {
    let mut req = env.http.post(env.url(&format!("/v1/jobs/{id}/upgrade"))).bearer_auth(key);
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_owned());
    }
    let resp = req.send().await.expect("request");
    let replayed = resp.headers().get("idempotent-replayed").is_some_and(|v| v == "true");
    let (status, body) = TestEnv::read(resp).await;
    (status, body, replayed)
}

async fn upgrade(env: &TestEnv, key: &str, id: Uuid, body: Value) -> (u16, Value, bool) {
    upgrade_raw(env, key, id, Some(&body.to_string())).await
}

async fn view(env: &TestEnv, key: &str, id: Uuid) -> Value {
    let (status, job) = env.get(key, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    job
}

#[track_caller]
fn assert_refused(status: u16, body: &Value, want: (u16, &str, &str)) {
    assert_eq!((status, body["error"]["code"].as_str(), body["error"]["field"].as_str()), (want.0, Some(want.1), Some(want.2)), "{body}");
}

/// Ledger rows that disagree with the jobs table, the preview columns
/// included: every succeeded job has its row, with its own model, credits,
/// parent and preview target.
async fn ledger_disagreements(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_view j FULL JOIN usage_ledger l ON l.job_id = j.id
         WHERE (j.state = 'succeeded' OR l.job_id IS NOT NULL)
           AND (j.id IS NULL OR l.job_id IS NULL OR j.state <> 'succeeded'
                OR l.tenant_id <> j.tenant_id OR l.model <> j.model OR l.credits <> j.credits
                OR l.finished_at <> j.finished_at OR l.cache_hit <> j.cache_hit
                OR l.parent_id IS DISTINCT FROM j.parent_id
                OR l.preview_target_list IS DISTINCT FROM j.preview_target_list
                OR l.upgrade_of_preview <> j.upgrade_of_preview)",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn an_upgrade_is_a_child_with_the_merged_input_the_target_models_price_and_low_priority_by_default() {
    let (env, key) = env_at_noon().await;
    let parent = id_of(
        &submit(
            &env,
            &key,
            json!({"model": "flux-schnell", "input": {"prompt": "a lighthouse", "width": 256}, "priority": "normal",
                   "timezone": "America/New_York", "user_id": "u-1", "metadata": {"sku": 42}}),
        )
        .await,
    );
    env.release_and_work(&env.batch_context()).await;

    let (status, child, replayed) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "input": {"width": 1024}})).await;
    assert_eq!((status, replayed), (201, false), "{child}");
    assert_eq!(child["parent_id"], parent.to_string());
    assert_eq!(child["model"], "flux-pro");
    assert_eq!(child["input"], json!({"prompt": "a lighthouse", "width": 1024}), "the body's fields over the parent's");
    assert_eq!(child["priority"], "low", "the full-quality render waits for the off-peak price");
    assert_eq!(child["state"], "held");
    assert_eq!((&child["timezone"], &child["user_id"], &child["metadata"]), (&json!("America/New_York"), &json!("u-1"), &json!({"sku": 42})));
    assert_eq!(child["release_at"], "2027-06-02T06:00:00Z", "02:00 in New York, the parent's timezone");
    assert_eq!((&child["children"], &child["upgrade"]), (&json!([]), &Value::Null));

    // The parent lists it, read alone or in a page.
    let child_id = id_of(&child);
    assert_eq!(view(&env, &key, parent).await["children"], json!([child_id]));
    assert_eq!(view(&env, &key, parent).await["parent_id"], Value::Null);
    let (_, page) = env.get(&key, "/v1/jobs").await;
    let jobs = page["jobs"].as_array().unwrap();
    let listed = |id: Uuid| jobs.iter().find(|j| j["id"] == id.to_string()).unwrap().clone();
    assert_eq!(listed(parent)["children"], json!([child_id]));
    assert_eq!(listed(child_id)["parent_id"], parent.to_string());

    // In its window it runs on flux-pro and pays flux-pro's off-peak price (5 × 0.5, rounded half up).
    env.clock.set(at("2027-06-02T06:30:00Z"));
    let mut ctx = env.batch_context();
    ctx.prices = PriceTable::default().with_offpeak_multiplier(0.5).unwrap();
    env.release_and_work(&ctx).await;
    let done = view(&env, &key, child_id).await;
    assert_eq!((&done["state"], &done["credits"]), (&json!("succeeded"), &json!(3)), "{done}");
    assert_eq!(ledger_disagreements(&env).await, 0);
}

#[tokio::test]
async fn only_a_succeeded_job_is_upgraded_and_a_refusal_stores_nothing() {
    let (env, key) = env_at_noon().await;
    let held = id_of(&submit(&env, &key, json!({"model": "flux-schnell", "input": {"p": 1}})).await);
    let (status, body, _) = upgrade(&env, &key, held, json!({"model": "flux-pro"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("not_upgradable")), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("held") && message.contains("succeeded"), "the message names its state: {message}");

    let (status, _) = env.delete(&key, &format!("/v1/jobs/{held}")).await;
    assert_eq!(status, 200);
    let (status, body, _) = upgrade(&env, &key, held, json!({"model": "flux-pro"})).await;
    assert_eq!(status, 409, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("cancelled"), "{body}");
    assert_eq!(env.count_jobs().await, 1, "nothing was stored");
}

#[tokio::test]
async fn another_tenants_job_or_an_unknown_id_is_a_404() {
    let (env, acme) = env_at_noon().await;
    let globex = env.tenant("globex", "UTC").await;
    let parent = succeeded(&env, &acme, "flux-schnell", json!({"prompt": "acme's secret"})).await;
    let (status, body, _) = upgrade(&env, &globex, parent, json!({"model": "flux-pro"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    assert!(!body.to_string().contains("secret"), "{body}");
    let (status, _, _) = upgrade(&env, &acme, Uuid::now_v7(), json!({"model": "flux-pro"})).await;
    assert_eq!(status, 404);
    let resp = env.http.post(env.url("/v1/jobs/not-a-uuid/upgrade")).bearer_auth(&acme).body("{}").send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    assert_eq!(env.count_jobs().await, 1);
    assert_eq!(view(&env, &acme, parent).await["children"], json!([]));
}

#[tokio::test]
async fn the_same_upgrade_twice_is_the_same_child_and_another_body_is_another_child() {
    let (env, key) = env_at_noon().await;
    let parent = succeeded(&env, &key, "flux-schnell", json!({"prompt": "a fox"})).await;
    let (status, first, _) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "input": {"width": 1024, "height": 768}})).await;
    assert_eq!(status, 201, "{first}");

    // The same body, keys in another order and spaced otherwise: the same child, with 200.
    let again = r#"{ "input": {"height": 768, "width": 1024},   "model": "flux-pro" }"#;
    let (status, second, replayed) = upgrade_raw(&env, &key, parent, Some(again)).await;
    assert_eq!((status, replayed), (200, true), "{second}");
    assert_eq!(second, first, "the job it made, as it is");

    // Even once the day's quota is spent: a double click costs nothing more.
    let spent = TenantUpdate { daily_credits: Some(Some(0)), ..Default::default() };
    tenants::update(&env.pool, "acme", &spent).await.unwrap();
    let (status, third, _) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "input": {"width": 1024, "height": 768}})).await;
    assert_eq!((status, id_of(&third)), (200, id_of(&first)));
    let unlimited = TenantUpdate { daily_credits: Some(None), ..Default::default() };
    tenants::update(&env.pool, "acme", &unlimited).await.unwrap();

    // Another body is another upgrade.
    let (status, other, _) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "input": {"width": 2048}})).await;
    assert_eq!(status, 201, "{other}");
    assert_ne!(id_of(&other), id_of(&first));
    assert_eq!(view(&env, &key, parent).await["children"], json!([id_of(&first), id_of(&other)]), "oldest first");
    assert_eq!(env.count_jobs().await, 3);

    // The database itself refuses a second child of one parent and body.
    let dup = sqlx::query("UPDATE jobs SET parent_id = $1, upgrade_hash = (SELECT upgrade_hash FROM jobs WHERE id = $2) WHERE id = $3")
        .bind(parent)
        .bind(id_of(&first))
        .bind(id_of(&other))
        .execute(&env.pool)
        .await
        .expect_err("a second job for the same upgrade");
    assert!(offpeak_store::jobs::is_upgrade_conflict(&dup), "{dup}");
}

#[tokio::test]
async fn a_double_click_sent_at_once_makes_one_child() {
    let (env, key) = env_at_noon().await;
    for round in 0..5 {
        let parent = succeeded(&env, &key, "flux-schnell", json!({"prompt": format!("round {round}")})).await;
        let body = json!({"model": "flux-dev", "priority": "normal"});
        let answers = futures_util::future::join_all((0..8).map(|_| upgrade(&env, &key, parent, body.clone()))).await;
        let mut statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 201], "round {round}: {answers:?}");
        assert!(answers.iter().all(|a| a.1["id"] == answers[0].1["id"]), "one child: {answers:?}");
        assert!(answers.iter().all(|a| (a.0 == 200) == a.2), "every 200 says it was replayed");
        let children: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE parent_id = $1").bind(parent).fetch_one(&env.pool).await.unwrap();
        assert_eq!(children, 1, "round {round}");
    }
}

#[tokio::test]
async fn a_preview_runs_the_cheap_model_now_and_an_empty_upgrade_makes_what_was_asked_for() {
    let (env, key) = env_at_noon().await;
    let preview = submit(
        &env,
        &key,
        json!({"model": "auto", "use_case": "hero-image", "preview": {"use_case": "thumbnail"}, "input": {"prompt": "a teapot"}}),
    )
    .await;
    assert_eq!((&preview["model"], &preview["use_case"]), (&json!("flux-schnell"), &json!("thumbnail")), "{preview}");
    assert_eq!(preview["priority"], "normal", "a preview runs now unless the submission says otherwise");
    assert_eq!(preview["release_at"], "2027-06-01T12:00:00Z");
    assert_eq!(preview["upgrade"], json!({"model": "flux-pro", "use_case": "hero-image"}));
    let preview = id_of(&preview);
    env.release_and_work(&env.batch_context()).await;
    assert_eq!(view(&env, &key, preview).await["credits"], 1, "flux-schnell's price");

    // No body at all: the recorded target.
    let (status, child, _) = upgrade_raw(&env, &key, preview, None).await;
    assert_eq!(status, 201, "{child}");
    assert_eq!((&child["model"], &child["use_case"], &child["priority"]), (&json!("flux-pro"), &json!("hero-image"), &json!("low")));
    assert_eq!((&child["parent_id"], &child["input"], &child["upgrade"]), (&json!(preview.to_string()), &json!({"prompt": "a teapot"}), &Value::Null));
    // `{}` is the same request as no body.
    let (status, again, replayed) = upgrade_raw(&env, &key, preview, Some("{}")).await;
    assert_eq!((status, replayed, id_of(&again)), (200, true, id_of(&child)));

    // A preview by model, with its own priority kept; and a bulk submission of previews.
    let by_model = submit(&env, &key, json!({"model": "flux-dev", "preview": {"model": "flux-schnell"}, "priority": "low", "input": {}})).await;
    assert_eq!((&by_model["model"], &by_model["priority"], &by_model["state"]), (&json!("flux-schnell"), &json!("low"), &json!("held")));
    assert_eq!(by_model["upgrade"], json!({"model": "flux-dev", "use_case": null}));
    let (status, bulk) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-pro", "preview": {"model": "flux-schnell"}, "inputs": [{"sku": 1}, {"sku": 2}]}))
        .await;
    assert_eq!(status, 201, "{bulk}");
    for id in bulk_ids(&bulk) {
        let job = view(&env, &key, id).await;
        assert_eq!((&job["model"], &job["priority"], &job["upgrade"]), (&json!("flux-schnell"), &json!("normal"), &json!({"model": "flux-pro", "use_case": null})));
    }

    // A job submitted without a preview records no target: an empty upgrade names `model`.
    let plain = succeeded(&env, &key, "flux-schnell", json!({"prompt": "plain"})).await;
    let (status, body, _) = upgrade_raw(&env, &key, plain, None).await;
    assert_refused(status, &body, (422, "invalid_field", "model"));
}

#[tokio::test]
async fn bad_previews_and_upgrades_are_422s_naming_the_field_and_store_nothing() {
    let (env, key) = env_at_noon().await;
    let job = |preview: Value| json!({"model": "flux-pro", "input": {"p": 1}, "preview": preview});
    for (preview, code, field) in [
        (json!({"model": "dall-e-9"}), "unknown_model", "preview.model"),
        (json!({"model": "auto"}), "invalid_field", "preview.model"),
        (json!({"use_case": "mural"}), "unknown_use_case", "preview.use_case"),
        (json!({"model": "flux-schnell", "use_case": "thumbnail"}), "invalid_field", "preview.use_case"),
        (json!({}), "invalid_field", "preview.model"),
        (json!("flux-schnell"), "invalid_field", "preview"),
        (json!(["flux-schnell"]), "invalid_field", "preview"),
        (Value::Null, "invalid_field", "preview"),
    ] {
        let (status, body) = env.post(&key, "/v1/jobs", &job(preview.clone())).await;
        assert_refused(status, &body, (422, code, field));
        let bulk = json!({"model": "flux-pro", "inputs": [{"p": 1}], "preview": preview});
        let (status, body) = env.post(&key, "/v1/jobs/bulk", &bulk).await;
        assert_refused(status, &body, (422, code, field));
    }
    let (status, body) = env.post(&key, "/v1/jobs", &job(json!({"model": "flux-schnell", "size": 1}))).await;
    assert_refused(status, &body, (422, "invalid_field", "preview.size"));
    assert_eq!(env.count_jobs().await, 0);

    let parent = succeeded(&env, &key, "flux-schnell", json!({"prompt": "a fox"})).await;
    for (body, want) in [
        (json!({}), (422, "invalid_field", "model")),
        (json!({"model": "dall-e-9"}), (422, "unknown_model", "model")),
        (json!({"model": "auto"}), (422, "invalid_field", "use_case")),
        (json!({"use_case": "mural"}), (422, "unknown_use_case", "use_case")),
        (json!({"model": "flux-dev", "use_case": "print"}), (422, "invalid_field", "use_case")),
        (json!({"model": "flux-pro", "input": [1]}), (422, "invalid_input", "input")),
        (json!({"model": "flux-pro", "input": {"k": "a\u{0}b"}}), (422, "invalid_input", "input")),
        (json!({"model": "flux-pro", "metadata": {"k\u{0}": 1}}), (422, "invalid_input", "metadata")),
        (json!({"model": "flux-pro", "priority": "urgent"}), (422, "invalid_field", "priority")),
        (json!({"model": "flux-pro", "colour": "red"}), (422, "invalid_field", "colour")),
        (json!({"model": "flux-pro", "input": {"big": "x".repeat(64 * 1024)}}), (413, "payload_too_large", "input")),
    ] {
        let (status, resp, _) = upgrade(&env, &key, parent, body.clone()).await;
        assert_refused(status, &resp, want);
    }
    let (status, resp, _) = upgrade_raw(&env, &key, parent, Some("[\"flux-pro\"]")).await;
    assert_eq!((status, resp["error"]["code"].as_str()), (422, Some("invalid_field")), "{resp}");
    let (status, resp, _) = upgrade_raw(&env, &key, parent, Some("{\"model\": ")).await;
    assert_eq!((status, resp["error"]["code"].as_str()), (400, Some("invalid_json")), "{resp}");
    assert_eq!(env.count_jobs().await, 1, "only the parent");
}

#[tokio::test]
async fn an_upgrade_goes_through_the_daily_limit_and_the_exact_cache() {
    let (env, key) = env_at_noon().await;
    // A full-quality render done before, then a preview of the same prompt at a smaller size.
    let earlier = succeeded(&env, &key, "flux-pro", json!({"prompt": "a fox", "width": 1024})).await;
    let parent = succeeded(&env, &key, "flux-schnell", json!({"prompt": "a fox", "width": 256})).await;

    // 6 used today (5 + 1); a limit of 10 leaves 4: flux-pro's 5 would exceed it.
    let limited = TenantUpdate { daily_credits: Some(Some(10)), ..Default::default() };
    tenants::update(&env.pool, "acme", &limited).await.unwrap();
    let (status, body, _) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "priority": "normal", "input": {"width": 2048}})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (429, Some("quota_exceeded")), "{body}");
    assert_eq!(body["error"]["details"]["requested"], 5, "{body}");
    assert_eq!(env.count_jobs().await, 2, "nothing stored");

    // The merged input is the earlier render's: answered from the cache at once, for 0 credits.
    let (status, child, _) = upgrade(&env, &key, parent, json!({"model": "flux-pro", "input": {"width": 1024}})).await;
    assert_eq!(status, 201, "a cache hit needs no quota: {child}");
    assert_eq!((&child["state"], &child["cache_hit"], &child["credits"]), (&json!("succeeded"), &json!(true), &json!(0)));
    assert_eq!((&child["cache_source"], &child["parent_id"]), (&json!(earlier.to_string()), &json!(parent.to_string())));
    assert_eq!(child["result"], view(&env, &key, earlier).await["result"]);
    assert_eq!(env.sim.sim.stats().items, 2, "the provider saw the two first jobs only");
    assert_eq!(ledger_disagreements(&env).await, 0);
    let (_, usage) = env.get(&key, "/v1/usage").await;
    assert_eq!((&usage["totals"]["upgrades"], &usage["totals"]["saved_cache"]), (&json!(1), &json!(5)), "{usage}");
}

#[tokio::test]
async fn usage_counts_previews_upgrades_and_what_the_pattern_saved() {
    let (env, key) = env_at_noon().await;
    // Four hero images previewed as thumbnails (1 credit each instead of 5) ...
    let mut previews = Vec::new();
    for i in 0..4 {
        let body = json!({"model": "auto", "use_case": "hero-image", "preview": {"use_case": "thumbnail"},
                          "input": {"prompt": format!("sku {i}")}, "user_id": "shop"});
        previews.push(id_of(&submit(&env, &key, body).await));
    }
    // ... and a plain flux-dev job, which is no preview.
    let plain = id_of(&submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "plain"}, "priority": "normal"})).await);
    env.release_and_work(&env.batch_context()).await;

    // One preview is clicked: its full-quality render waits for the night. The plain job is upgraded too, at once.
    let (status, clicked, _) = upgrade_raw(&env, &key, previews[0], None).await;
    assert_eq!(status, 201, "{clicked}");
    let (status, _, _) = upgrade(&env, &key, plain, json!({"model": "flux-pro", "priority": "normal"})).await;
    assert_eq!(status, 201);
    env.release_and_work(&env.batch_context()).await;
    env.clock.set(at("2027-06-02T02:30:00Z"));
    env.release_and_work(&env.batch_context()).await;
    assert_eq!(env.job(id_of(&clicked)).await.state.as_str(), "succeeded");
    assert_eq!(ledger_disagreements(&env).await, 0);

    // The pattern: 4 × (5 − 1) saved against rendering each request at flux-pro, less the one upgrade's 5.
    // The plain job's upgrade is counted as an upgrade, and saves or costs the pattern nothing.
    let (_, usage) = env.get(&key, "/v1/usage?start=2027-06-01&end=2027-06-02").await;
    let t = &usage["totals"];
    assert_eq!((&t["requests"], &t["credits"], &t["previews"], &t["upgrades"], &t["saved_preview"]), (&json!(7), &json!(16), &json!(4), &json!(2), &json!(11)), "{usage}");
    let g = &usage["groups"];
    assert_eq!((&g["flux-schnell"]["previews"], &g["flux-schnell"]["saved_preview"]), (&json!(4), &json!(16)), "{usage}");
    assert_eq!((&g["flux-pro"]["upgrades"], &g["flux-pro"]["saved_preview"]), (&json!(2), &json!(-5)), "{usage}");
    assert_eq!((&g["flux-dev"]["previews"], &g["flux-dev"]["upgrades"], &g["flux-dev"]["saved_preview"]), (&json!(0), &json!(0), &json!(0)));

    // Every grouping adds up to the same totals.
    let (_, by_day) = env.get(&key, "/v1/usage?start=2027-06-01&end=2027-06-02&group_by=day").await;
    assert_eq!(by_day["totals"], usage["totals"]);
    assert_eq!((&by_day["groups"]["2027-06-01"]["saved_preview"], &by_day["groups"]["2027-06-02"]["saved_preview"]), (&json!(16), &json!(-5)));
    let (_, by_user) = env.get(&key, "/v1/usage?start=2027-06-01&end=2027-06-02&group_by=user").await;
    assert_eq!(by_user["totals"], usage["totals"]);
    assert_eq!((&by_user["groups"]["shop"]["previews"], &by_user["groups"]["shop"]["saved_preview"]), (&json!(4), &json!(11)), "the child keeps the user");
    let (_, tenant) = env.get(&key, "/v1/tenant").await;
    assert_eq!((&tenant["today"]["upgrades"], &tenant["today"]["saved_preview"]), (&json!(1), &json!(-5)), "today is June 2: {tenant}");
}
