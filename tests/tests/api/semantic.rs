//! The semantic cache: a rewording of a prompt that succeeded is answered
//! from its result, marked `semantic` with its similarity, for 0 credits;
//! every request that merely resembles one (another size, style, model or
//! tenant, a negation, a prompt that shares most words, a result past the
//! TTL) is sent to the provider; and a broken embeddings endpoint (down,
//! hanging, answering garbage) is a miss, never a failed or held-back job.
//!
//! The embeddings come from the provider simulator's `POST /v1/embeddings`
//! (OpenAI's protocol), whose model makes rewordings close and different
//! requests far (see `offpeak_provider_sim`'s docs).

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::clock::Clock;
use offpeak_core::semantic::CacheMode;
use offpeak_scheduler::release::{ReleaseConfig, ReleaseReport, Releaser};
use offpeak_scheduler::semantic::{EmbeddingsConfig, SemanticConfig};
use offpeak_store::tenants::{self, TenantUpdate};
use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::sim::SimConfig;
use offpeak_worker::process::BatchContext;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn id_of(body: &Value) -> Uuid {
    body["id"].as_str().unwrap_or_else(|| panic!("no id in {body}")).parse().unwrap()
}

/// A UTC tenant at 03:00 UTC: inside its window, so every job is due at once.
async fn env_in_window(sim: SimConfig) -> (TestEnv, String) {
    let env = TestEnv::with(EnvOptions { now: at("2027-06-01T03:00:00Z"), sim, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    (env, key)
}

fn embeddings_at(url: &str, timeout: Duration) -> EmbeddingsConfig {
    EmbeddingsConfig { url: url.to_owned(), model: "sim-embed".into(), api_key: Some("emb-key".into()), timeout, dimensions: None }
}

/// A release loop (a new one each time: its index starts empty and loads
/// what the store holds, as a restarted or another replica does) whose
/// embeddings endpoint is `embeddings`.
fn releaser(env: &TestEnv, embeddings: EmbeddingsConfig) -> Releaser {
    env.releaser_with(ReleaseConfig {
        semantic: SemanticConfig { embeddings: Some(embeddings), ..SemanticConfig::default() },
        ..env.options.release.clone()
    })
}

/// The simulator's own embeddings endpoint.
fn sim_embeddings(env: &TestEnv) -> EmbeddingsConfig {
    embeddings_at(&env.sim.url, Duration::from_secs(2))
}

/// One release round with `embeddings`, then every released batch worked.
async fn release_and_work(env: &TestEnv, ctx: &BatchContext, embeddings: EmbeddingsConfig) -> ReleaseReport {
    let report = releaser(env, embeddings).run_once().await.expect("release round");
    env.work_released(ctx).await;
    report
}

async fn submit(env: &TestEnv, key: &str, body: Value) -> Value {
    let (status, resp) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{resp}");
    resp
}

async fn get_job(env: &TestEnv, key: &str, id: Uuid) -> Value {
    let (status, job) = env.get(key, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{job}");
    job
}

/// A semantic job of flux-dev (2 credits) with this prompt, at 512 wide.
fn semantic_job(prompt: &str) -> Value {
    json!({"model": "flux-dev", "cache": "semantic", "input": {"prompt": prompt, "width": 512, "style": "photo"}})
}

/// Ledger rows that disagree with the jobs table, cache hits included, and
/// semantic ledger rows that are not semantic hits (or the reverse).
async fn ledger_disagreements(env: &TestEnv) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM job_view j FULL JOIN usage_ledger l ON l.job_id = j.id
         WHERE (j.state = 'succeeded' OR l.job_id IS NOT NULL)
           AND (j.id IS NULL OR l.job_id IS NULL OR j.state <> 'succeeded'
                OR l.credits <> j.credits OR l.finished_at <> j.finished_at OR l.cache_hit <> j.cache_hit
                OR l.semantic <> (j.cache_similarity IS NOT NULL))",
    )
    .fetch_one(&env.pool)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_rewording_is_answered_from_the_earlier_result_for_zero_credits_marked_semantic_with_its_similarity() {
    let (env, key) = env_in_window(SimConfig::default()).await;
    let ctx = env.batch_context();
    let first = id_of(&submit(&env, &key, semantic_job("a photo of a lighthouse at dawn")).await);
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    let first_job = get_job(&env, &key, first).await;
    assert_eq!((first_job["state"].as_str(), first_job["cache_hit"].as_bool()), (Some("succeeded"), Some(false)), "{first_job}");
    assert_eq!(first_job["cache"], "semantic");
    assert_eq!(env.sim.sim.stats().items, 1);

    // A rewording, released by another replica (a new, empty index).
    let second = id_of(&submit(&env, &key, semantic_job("Lighthouse at sunrise, photograph")).await);
    let report = release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    assert_eq!((report.answered, report.answered_semantic, report.released), (1, 1, 0), "{report:?}");
    let job = get_job(&env, &key, second).await;
    assert_eq!(job["state"], "succeeded", "{job}");
    assert_eq!(job["cache_hit"], true);
    assert_eq!(job["cache_kind"], "semantic");
    assert_eq!(job["cache_source"], first.to_string());
    assert_eq!(job["credits"], 0);
    assert_eq!(job["result"], first_job["result"]);
    let similarity = job["cache_similarity"].as_f64().expect("a similarity");
    assert!((0.95..1.0).contains(&similarity), "{similarity}");
    assert_eq!(env.sim.sim.stats().items, 1, "the provider was not called again");

    // The list reads it the same way; usage reports the saving apart from the exact cache's.
    let (_, page) = env.get(&key, "/v1/jobs?limit=10").await;
    let listed = page["jobs"].as_array().unwrap().iter().find(|j| j["id"] == second.to_string()).cloned().unwrap();
    assert_eq!((listed["cache_kind"].clone(), listed["cache_similarity"].clone()), (json!("semantic"), job["cache_similarity"].clone()));
    let (_, usage) = env.get(&key, "/v1/usage?group_by=model").await;
    let g = &usage["groups"]["flux-dev"];
    assert_eq!((g["requests"].as_i64(), g["saved_semantic"].as_i64(), g["saved_cache"].as_i64()), (Some(2), Some(2), Some(0)), "{usage}");
    assert_eq!(ledger_disagreements(&env).await, 0);

    // Semantic is a superset: the same input again is an exact hit, at submission.
    let exact = submit(&env, &key, semantic_job("a photo of a lighthouse at dawn")).await;
    assert_eq!((exact["cache_kind"].as_str(), exact["cache_similarity"].is_null()), (Some("exact"), true), "{exact}");
    // A job with the exact cache (the tenant's default) is never answered by a rewording.
    let plain = submit(&env, &key, json!({"model": "flux-dev", "input": {"prompt": "a lighthouse at dawn, photo", "width": 512, "style": "photo"}})).await;
    assert_eq!(plain["cache"], "exact");
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    let plain = get_job(&env, &key, id_of(&plain)).await;
    assert_eq!((plain["state"].as_str(), plain["cache_hit"].as_bool()), (Some("succeeded"), Some(false)), "{plain}");
    assert_eq!(env.sim.sim.stats().items, 2);
}

#[tokio::test]
async fn requests_that_only_resemble_a_cached_one_always_go_to_the_provider() {
    let (env, key) = env_in_window(SimConfig::default()).await;
    let other_key = env.tenant("globex", "UTC").await;
    let ctx = env.batch_context();
    let base = "a red car parked on a quiet street at night";
    let source = id_of(&submit(&env, &key, semantic_job(base)).await);
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    assert_eq!(get_job(&env, &key, source).await["state"], "succeeded");

    let input = |prompt: &str| json!({"prompt": prompt, "width": 512, "style": "photo"});
    let cases: Vec<(&str, &str, Value)> = vec![
        ("another width", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": {"prompt": base, "width": 1024, "style": "photo"}})),
        ("another style", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": {"prompt": base, "width": 512, "style": "oil painting"}})),
        ("another field", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": {"prompt": base, "width": 512, "style": "photo", "seed": 7}})),
        ("another model", key.as_str(), json!({"model": "flux-pro", "cache": "semantic", "input": input(base)})),
        ("another tenant", other_key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": input(base)})),
        ("a negation", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": input("a car that is not red parked on a quiet street at night")})),
        ("most words shared", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": input("a blue car parked on a quiet street at night")})),
        ("no prompt string", key.as_str(), json!({"model": "flux-dev", "cache": "semantic", "input": {"prompt": ["a red car"], "width": 512, "style": "photo"}})),
    ];
    let mut ids = Vec::new();
    for (what, k, body) in &cases {
        let (status, job) = env.post(k, "/v1/jobs", body).await;
        assert_eq!(status, 201, "{what}: {job}");
        assert_eq!(job["state"], "held", "{what}: not an exact hit either: {job}");
        ids.push((*what, *k, id_of(&job)));
    }
    let report = release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    assert_eq!((report.answered, report.released), (0, cases.len() as u64), "{report:?}");
    for (what, k, id) in ids {
        let job = get_job(&env, k, id).await;
        assert_eq!((job["state"].as_str(), job["cache_hit"].as_bool()), (Some("succeeded"), Some(false)), "{what}: {job}");
        assert!(job["cache_kind"].is_null() && job["cache_similarity"].is_null(), "{what}: {job}");
    }
    assert_eq!(env.sim.sim.stats().items, 1 + cases.len() as u64);

    // A result older than the TTL answers nothing, however close the prompt.
    env.clock.set(env.clock.now() + TimeDelta::hours(25));
    let late = id_of(&submit(&env, &key, semantic_job("a red car parked on a quiet street, at night")).await);
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    let job = get_job(&env, &key, late).await;
    assert_eq!((job["state"].as_str(), job["cache_hit"].as_bool()), (Some("succeeded"), Some(false)), "past the TTL: {job}");
    assert_eq!(ledger_disagreements(&env).await, 0);
}

#[tokio::test]
async fn a_tenant_set_to_semantic_gets_it_for_jobs_that_name_no_cache_but_not_for_those_that_opt_out() {
    let (env, key) = env_in_window(SimConfig::default()).await;
    let ctx = env.batch_context();
    tenants::update(&env.pool, "acme", &TenantUpdate { cache: Some(CacheMode::Semantic), ..Default::default() }).await.unwrap();
    let (_, tenant) = env.get(&key, "/v1/tenant").await;
    assert_eq!(tenant["cache"], "semantic", "{tenant}");
    let body = |prompt: &str, cache: Option<Value>| {
        let mut b = json!({"model": "flux-dev", "input": {"prompt": prompt, "width": 512}});
        if let Some(c) = cache {
            b["cache"] = c;
        }
        b
    };
    let source = submit(&env, &key, body("a watercolor of a fox in the snow", None)).await;
    assert_eq!(source["cache"], "semantic");
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;

    let by_default = submit(&env, &key, body("A watercolor of a fox in snow", Some(json!(true)))).await;
    let exact_only = submit(&env, &key, body("a watercolor of a fox in snow.", Some(json!("exact")))).await;
    let off = submit(&env, &key, body("a watercolor of a fox, in the snow", Some(json!(false)))).await;
    assert_eq!((by_default["cache"].as_str(), exact_only["cache"].as_str(), off["cache"].as_str()), (Some("semantic"), Some("exact"), Some("off")));
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    let kind = |v: Value| v["cache_kind"].as_str().map(str::to_owned);
    assert_eq!(kind(get_job(&env, &key, id_of(&by_default)).await), Some("semantic".into()));
    assert_eq!(kind(get_job(&env, &key, id_of(&exact_only)).await), None);
    assert_eq!(kind(get_job(&env, &key, id_of(&off)).await), None);

    // A cache that is not one of the four is a 422 naming the field; nothing is stored.
    let before = env.count_jobs().await;
    for bad in [json!("fuzzy"), json!(1), json!(null), json!({"mode": "semantic"})] {
        let (status, err) = env.post(&key, "/v1/jobs", &body("x", Some(bad.clone()))).await;
        assert_eq!((status, err["error"]["field"].as_str()), (422, Some("cache")), "{bad}: {err}");
        let (status, err) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-dev", "inputs": [{"prompt": "x"}], "cache": bad})).await;
        assert_eq!((status, err["error"]["field"].as_str()), (422, Some("cache")), "{err}");
    }
    assert_eq!(env.count_jobs().await, before);
}

/// A job that has a source rewording waiting in the store, released with
/// `embeddings` broken: it must be sent to the provider in that very round.
async fn released_as_a_miss_when(sim: SimConfig, broken: impl FnOnce(&TestEnv) -> EmbeddingsConfig) {
    let (env, key) = env_in_window(SimConfig::default()).await;
    let ctx = env.batch_context();
    let source = id_of(&submit(&env, &key, semantic_job("a bowl of ripe lemons on a wooden table")).await);
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    assert_eq!(get_job(&env, &key, source).await["state"], "succeeded");

    env.sim.sim.set_config(sim);
    let asking = id_of(&submit(&env, &key, semantic_job("ripe lemons in a bowl on a wooden table")).await);
    let report = releaser(&env, broken(&env)).run_once().await.expect("the round does not fail");
    assert_eq!((report.released, report.answered), (1, 0), "released in the same round, as a miss: {report:?}");
    env.sim.sim.set_config(SimConfig::default());
    env.work_released(&ctx).await;
    let job = get_job(&env, &key, asking).await;
    assert_eq!((job["state"].as_str(), job["cache_hit"].as_bool()), (Some("succeeded"), Some(false)), "{job}");
    // Without a vector it can be no source; the next rewording still finds the first job.
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM job_embeddings WHERE job_id = $1").bind(asking).fetch_one(&env.pool).await.unwrap();
    assert_eq!(stored, 0);
    let third = id_of(&submit(&env, &key, semantic_job("A bowl of ripe lemons, on the wooden table")).await);
    release_and_work(&env, &ctx, sim_embeddings(&env)).await;
    assert_eq!(get_job(&env, &key, third).await["cache_source"], source.to_string());
}

#[tokio::test]
async fn an_embeddings_endpoint_that_is_down_is_a_miss() {
    // A port nobody listens on: bound, then closed.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    released_as_a_miss_when(SimConfig::default(), |_| embeddings_at(&closed, Duration::from_secs(2))).await;
}

#[tokio::test]
async fn an_embeddings_endpoint_that_hangs_is_a_miss_after_the_deadline() {
    let hang = SimConfig { embeddings_hang: true, slow: Duration::from_secs(30), ..SimConfig::default() };
    released_as_a_miss_when(hang, |env| embeddings_at(&env.sim.url, Duration::from_millis(300))).await;
}

#[tokio::test]
async fn an_embeddings_endpoint_answering_garbage_is_a_miss() {
    let garbage = SimConfig { embeddings_garbage_rate: 1.0, ..SimConfig::default() };
    released_as_a_miss_when(garbage, sim_embeddings).await;
}

#[tokio::test]
async fn an_embeddings_endpoint_refusing_the_key_is_a_miss() {
    let keyed = SimConfig { api_key: Some("the-right-key".into()), ..SimConfig::default() };
    released_as_a_miss_when(keyed, sim_embeddings).await;
}

#[tokio::test]
async fn after_a_failed_embeddings_call_the_next_rounds_skip_the_endpoint_for_a_while() {
    let (env, key) = env_in_window(SimConfig { embeddings_hang: true, slow: Duration::from_secs(30), ..SimConfig::default() }).await;
    // One release loop across the rounds, as a running scheduler has.
    let releaser = releaser(&env, embeddings_at(&env.sim.url, Duration::from_millis(300)));
    submit(&env, &key, semantic_job("a teal kayak on a calm lake")).await;
    let first = releaser.run_once().await.expect("round");
    assert_eq!(first.released, 1, "{first:?}");
    let calls = env.sim.sim.stats().embedding_calls;
    assert!(calls >= 1, "the first round called the endpoint");

    // The next round does not wait for it again: its semantic job is a miss at once.
    submit(&env, &key, semantic_job("a crimson kayak on a calm lake")).await;
    let second = releaser.run_once().await.expect("round");
    assert_eq!(second.released, 1, "{second:?}");
    assert_eq!(env.sim.sim.stats().embedding_calls, calls, "the second round skipped the endpoint");
}

#[tokio::test]
async fn a_round_out_of_search_time_leaves_its_other_semantic_jobs_held_for_the_next_round_without_embedding_them_again() {
    let (env, key) = env_in_window(SimConfig::default()).await;
    let releaser = env.releaser_with(ReleaseConfig {
        semantic: SemanticConfig { embeddings: Some(sim_embeddings(&env)), search_budget: Duration::ZERO, ..SemanticConfig::default() },
        ..env.options.release.clone()
    });
    for prompt in ["an amber lantern in fog", "a jade lantern in fog", "a violet lantern in fog"] {
        submit(&env, &key, semantic_job(prompt)).await;
    }
    // No search time at all: each round searches one job (progress) and leaves the rest held.
    // Held as the API shows it (`job_view`): a job a round released keeps `held` in its own row.
    let first = releaser.run_once().await.expect("round");
    assert_eq!((first.released, first.more), (1, true), "{first:?}");
    let embedded = env.sim.sim.stats().embedded_texts;
    assert_eq!(embedded, 3, "the round embedded all three, once");
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'held'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(held, 2);
    for _ in 0..2 {
        let r = releaser.run_once().await.expect("round");
        assert_eq!(r.released, 1, "{r:?}");
    }
    assert_eq!(env.sim.sim.stats().embedded_texts, embedded, "the vectors of the jobs left over were kept");
    let held: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'held'").fetch_one(&env.pool).await.unwrap();
    assert_eq!(held, 0);
}
