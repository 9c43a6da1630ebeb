//! Bug 2, "whatever the API accepts must read back": every input and
//! `metadata` the API accepts reads back equal to what was sent through
//! `GET /v1/jobs/{id}`, `GET /v1/jobs`, the dashboard and the worker, and
//! whatever could not is a 422 naming the field, stored nowhere.
//!
//! The trap is numbers: `jsonb` keeps them as `numeric` and prints them in
//! plain decimal notation, so `1.7976931348623157e308` comes back as a
//! 309-digit integer, which serde_json's default parser refused ("number out
//! of range"): the job was stored (201), and from then on every
//! `GET /v1/jobs` of its tenant answered 500. `offpeak_core::jsonb` says why
//! and what holds now; here the real PostgreSQL checks its emulation, and
//! generated JSON goes through the real API.
//!
//! "Equal" is JSON equality as serde_json and PostgreSQL see it: strings,
//! keys and structure exactly, integers exactly, floats as `f64` (so `-0.0`
//! equals the `0.0` it reads back as, and `1e16` the integer
//! `10000000000000000` PostgreSQL prints for it).

use std::time::Duration;

use chrono::{DateTime, Utc};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use serde_json::{json, Map, Number, Value};
use uuid::Uuid;

use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::firing::{Firer, FiringConfig};
use offpeak_scheduler::ui::auth::OperatorToken;
use offpeak_tests::harness::{EnvOptions, TestEnv};

const OPERATOR: &str = "round-trip-operator-token-0123456789";

async fn env() -> TestEnv {
    let api = ApiConfig { operator_token: Some(OperatorToken::new(OPERATOR).expect("token")), ..ApiConfig::default() };
    let now: DateTime<Utc> = "2027-06-01T10:00:00Z".parse().expect("instant");
    TestEnv::with(EnvOptions { now, api, ..Default::default() }).await
}

/// JSON equality as serde_json and PostgreSQL see it (see the module docs).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => same_number(x, y),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn same_number(x: &Number, y: &Number) -> bool {
    match (x.as_i64(), y.as_i64(), x.as_u64(), y.as_u64()) {
        (Some(a), Some(b), _, _) => a == b,
        (_, _, Some(a), Some(b)) => a == b,
        _ if x.is_f64() || y.is_f64() => x.as_f64() == y.as_f64(),
        // One integer is negative, the other above i64::MAX.
        _ => false,
    }
}

/// POSTs exactly these bytes.
async fn post_text(env: &TestEnv, key: &str, path: &str, body: String) -> (u16, Value) {
    let resp = env
        .http
        .post(env.url(path))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    TestEnv::read(resp).await
}

fn job_id(v: &Value) -> Uuid {
    v["id"].as_str().unwrap_or_else(|| panic!("an id: {v}")).parse().expect("a uuid")
}

/// The job as `GET /v1/jobs/{id}` and the dashboard show it, and the page
/// of the tenant's newest jobs it is on: each must answer 200, and the
/// three views of its `input` and `metadata` must agree.
async fn read_back(env: &TestEnv, key: &str, id: Uuid, newest: usize) -> Result<Value, String> {
    let (status, one) = env.get(key, &format!("/v1/jobs/{id}")).await;
    if status != 200 {
        return Err(format!("GET /v1/jobs/{id} answered {status}: {one}"));
    }
    let (status, page) = env.get(key, &format!("/v1/jobs?limit={newest}")).await;
    if status != 200 {
        return Err(format!("GET /v1/jobs answered {status}: {page}"));
    }
    let listed = page["jobs"]
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == one["id"]))
        .ok_or_else(|| format!("job {id} is not among the newest {newest}: {page}"))?;
    let (status, ui) = env.get(OPERATOR, &format!("/ui/api/jobs/{id}")).await;
    if status != 200 {
        return Err(format!("GET /ui/api/jobs/{id} answered {status}: {ui}"));
    }
    for field in ["input", "metadata"] {
        if !same_json(&one[field], &listed[field]) || !same_json(&one[field], &ui["job"][field]) {
            return Err(format!("{field} differs: GET {}, list {}, dashboard {}", one[field], listed[field], ui["job"][field]));
        }
    }
    Ok(one)
}

async fn count_jobs(env: &TestEnv) -> i64 {
    env.count_jobs().await
}

// ---------------------------------------------------------------- the bug, as reported

#[tokio::test]
async fn bulk_with_the_largest_f64_is_accepted_and_reads_back_through_every_endpoint() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    let body = r#"{"model": "flux-schnell", "inputs": [{"x": 1.7976931348623157e308}]}"#;
    let (status, created) = post_text(&env, &key, "/v1/jobs/bulk", body.into()).await;
    assert_eq!(status, 201, "{created}");
    let id: Uuid = created["ids"][0].as_str().expect("an id").parse().expect("a uuid");
    let job = read_back(&env, &key, id, 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job["input"]["x"].as_f64(), Some(f64::MAX), "{}", job["input"]);
    // The tenant's list still answers after more submissions.
    let (status, _) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}})).await;
    assert_eq!(status, 201);
    let (status, page) = env.get(&key, "/v1/jobs").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["jobs"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn a_single_job_with_the_largest_f64_is_accepted_and_reads_back() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    let body = r#"{"model": "flux-schnell", "input": {"x": 1.7976931348623157e308}, "metadata": {"m": -1.7976931348623157e308}}"#;
    let (status, created) = post_text(&env, &key, "/v1/jobs", body.into()).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["input"]["x"].as_f64(), Some(f64::MAX), "the 201 shows the stored job: {created}");
    let job = read_back(&env, &key, job_id(&created), 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job["input"]["x"].as_f64(), Some(f64::MAX));
    assert_eq!(job["metadata"]["m"].as_f64(), Some(-f64::MAX));
}

/// Numbers at each edge of what JSON, `f64`, `i64`/`u64` and `numeric` hold.
const EXTREMES: &[&str] = &[
    "1.7976931348623157e308",
    "-1.7976931348623157e+308",
    "1e308",
    "9.999999999999999e307",
    "5e-324",
    "-5e-324",
    "4.9406564584124654e-324",
    "2.2250738585072014e-308",
    "2.225073858507201e-308",
    "1e-320",
    "0.1",
    "2.291712365432881e-9",
    "-3.4388695815623755e305",
    "1e16",
    "1E22",
    "1e23",
    "9007199254740993",
    "18446744073709551615",
    "18446744073709551616",
    "-9223372036854775808",
    "-9223372036854775809",
    "123456789012345678901234567890",
    "-0",
    "-0.0",
    "0.0",
    "1.5e-7",
    "100e-2",
];

#[tokio::test]
async fn numbers_at_every_extreme_read_back_single_bulk_and_as_metadata() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    for token in EXTREMES {
        let sent: Value = serde_json::from_str(token).expect("a JSON number");
        let body = format!(r#"{{"model": "flux-schnell", "input": {{"n": {token}, "a": [{token}]}}, "metadata": {token}}}"#);
        let (status, created) = post_text(&env, &key, "/v1/jobs", body).await;
        assert_eq!(status, 201, "{token}: {created}");
        let job = read_back(&env, &key, job_id(&created), 1).await.unwrap_or_else(|e| panic!("{token}: {e}"));
        assert!(same_json(&job["input"], &json!({"n": sent, "a": [sent]})), "{token}: {}", job["input"]);
        assert!(same_json(&job["metadata"], &sent), "{token}: {}", job["metadata"]);
    }
    let inputs: Vec<String> = EXTREMES.iter().map(|t| format!(r#"{{"n": {t}}}"#)).collect();
    let body = format!(r#"{{"model": "flux-schnell", "inputs": [{}], "metadata": {{"all": [{}]}}}}"#, inputs.join(", "), EXTREMES.join(", "));
    let (status, created) = post_text(&env, &key, "/v1/jobs/bulk", body).await;
    assert_eq!(status, 201, "{created}");
    let ids = created["ids"].as_array().expect("ids");
    for (token, id) in EXTREMES.iter().zip(ids) {
        let id: Uuid = id.as_str().expect("an id").parse().expect("a uuid");
        let job = read_back(&env, &key, id, EXTREMES.len()).await.unwrap_or_else(|e| panic!("{token}: {e}"));
        let sent: Value = serde_json::from_str(token).expect("a JSON number");
        assert!(same_json(&job["input"], &json!({"n": sent})), "{token}: {}", job["input"]);
    }
    assert_eq!(count_jobs(&env).await, (EXTREMES.len() * 2) as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_extreme_numbers_runs_through_the_worker_and_its_result_reads_back() {
    let mut env = env().await;
    let key = env.tenant("acme", "UTC").await;
    // The simulator echoes a video's `duration_s` into its output.
    let body = r#"{"model": "minimax-video", "priority": "normal",
                   "input": {"duration_s": 1.7976931348623157e308, "tiny": 5e-324, "zero": -0.0}}"#;
    let (status, created) = post_text(&env, &key, "/v1/jobs", body.into()).await;
    assert_eq!(status, 201, "{created}");
    let id = job_id(&created);
    env.release_once().await;
    env.start_worker();
    let rows = env.wait_terminal(&[id], Duration::from_secs(30)).await;
    assert_eq!(rows[0].state, "succeeded", "the worker read the input and stored the result: {:?}", rows[0].error);
    let job = read_back(&env, &key, id, 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job["result"]["duration_s"].as_f64(), Some(f64::MAX), "{}", job["result"]);
    assert_eq!(job["input"]["tiny"].as_f64(), Some(5e-324));
}

#[tokio::test]
async fn a_schedule_template_with_extreme_numbers_reads_back_and_fires_a_job_that_does() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    let body = r#"{"name": "extremes", "cron": "* * * * *", "timezone": "UTC",
                   "job": {"model": "flux-schnell", "priority": "normal",
                           "input": {"max": 1.7976931348623157e308, "min": 5e-324, "big": 18446744073709551615},
                           "metadata": {"m": -1.7976931348623157e308}}}"#;
    let (status, created) = post_text(&env, &key, "/v1/schedules", body.into()).await;
    assert_eq!(status, 201, "{created}");
    let input = json!({"max": f64::MAX, "min": 5e-324, "big": u64::MAX});
    let schedule = created["id"].as_str().expect("an id").to_owned();
    let (status, one) = env.get(&key, &format!("/v1/schedules/{schedule}")).await;
    assert_eq!(status, 200, "{one}");
    assert!(same_json(&one["job"]["input"], &input), "{}", one["job"]["input"]);
    let (status, list) = env.get(&key, "/v1/schedules").await;
    assert_eq!(status, 200, "{list}");
    assert!(same_json(&list["schedules"][0]["job"]["input"], &input), "{list}");
    // A change keeps the template as stored; so does its read.
    let resp = env.http.patch(env.url(&format!("/v1/schedules/{schedule}"))).bearer_auth(&key).json(&json!({"paused": false})).send().await;
    let (status, patched) = TestEnv::read(resp.expect("request")).await;
    assert_eq!(status, 200, "{patched}");
    assert!(same_json(&patched["job"]["input"], &input), "{patched}");

    env.clock.set("2027-06-01T10:01:00Z".parse().expect("instant"));
    let report = Firer::new(env.pool.clone(), env.shared_clock(), FiringConfig::default()).run_once().await.expect("firing round");
    assert_eq!(report.created, 1, "{report:?}");
    let (status, page) = env.get(&key, "/v1/jobs").await;
    assert_eq!(status, 200, "{page}");
    let fired = &page["jobs"][0];
    assert!(same_json(&fired["input"], &input), "{fired}");
    assert_eq!(fired["metadata"]["m"].as_f64(), Some(-f64::MAX), "{fired}");
}

/// An object nesting `levels` levels of arrays and objects, as JSON text.
fn nested(levels: usize) -> String {
    let inner = (1..levels).fold("null".to_owned(), |v, i| if i % 2 == 0 { format!(r#"{{"k": {v}}}"#) } else { format!("[{v}]") });
    format!(r#"{{"k": {inner}}}"#)
}

#[tokio::test]
async fn an_input_nested_deeper_than_a_response_can_carry_is_a_422_and_the_deepest_allowed_reads_back() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    // 125 levels was accepted before, and no `GET /v1/jobs` page holding it
    // parsed with serde_json (the input sits 3 levels down; the limit is 128).
    for levels in [101, 125] {
        let deep = nested(levels);
        let cases = [
            ("/v1/jobs", format!(r#"{{"model": "flux-schnell", "input": {deep}}}"#), "input"),
            ("/v1/jobs/bulk", format!(r#"{{"model": "flux-schnell", "inputs": [{{}}, {deep}]}}"#), "inputs[1]"),
            ("/v1/jobs", format!(r#"{{"model": "flux-schnell", "input": {{}}, "metadata": {deep}}}"#), "metadata"),
            (
                "/v1/schedules",
                format!(r#"{{"name": "deep", "cron": "* * * * *", "job": {{"model": "flux-schnell", "input": {deep}}}}}"#),
                "job.input",
            ),
        ];
        for (path, body, field) in cases {
            let (status, err) = post_text(&env, &key, path, body).await;
            assert_eq!((status, err["error"]["code"].as_str(), err["error"]["field"].as_str()), (422, Some("invalid_input"), Some(field)), "{levels} levels at {field}: {err}");
            let message = err["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(&format!("{levels} levels")) && message.contains("at most 100"), "{message}");
        }
    }
    assert_eq!(count_jobs(&env).await, 0, "nothing stored");
    let schedules: i64 = sqlx::query_scalar("SELECT count(*) FROM schedules").fetch_one(&env.pool).await.expect("count");
    assert_eq!(schedules, 0, "nothing stored");

    let deepest = nested(100);
    let sent: Value = serde_json::from_str(&deepest).expect("JSON");
    let (status, created) = post_text(&env, &key, "/v1/jobs", format!(r#"{{"model": "flux-schnell", "input": {deepest}, "metadata": {deepest}}}"#)).await;
    assert_eq!(status, 201, "{created}");
    // `read_back` parses every response with serde_json, the list's too.
    let job = read_back(&env, &key, job_id(&created), 1).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(job["input"], sent);
    assert_eq!(job["metadata"], sent);
}

// ---------------------------------------------------------------- generated JSON through the API

/// Strings a JSON text must escape or that stress UTF-8: quotes,
/// backslashes, control characters, a BOM, U+FFFF, astral characters.
const AWKWARD: &[&str] = &["", "\"", "\\", "\\u0000", "\u{1}\u{1f}\n\t\r", "\u{feff}", "\u{ffff}", "😀🦊", "é\u{301}", "\u{2028}", "ʻokina", "日本語"];

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "\\PC{0,16}",
        2 => select(AWKWARD).prop_map(str::to_owned),
        // Control characters too; NUL comes only from `json_value`.
        1 => ".{0,8}".prop_map(|s| s.replace('\0', "")),
    ]
}

fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => any::<u64>().prop_map(f64::from_bits).prop_filter("finite", |f| f.is_finite()),
        2 => select(&[f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, -5e-324, -0.0, 0.0, 1e16, 1e23, 1e308, 1e-308, 0.1, 2.291712365432881e-9][..]),
        2 => -1e6f64..1e6,
    ]
}

/// Any JSON value, NUL characters included now and then (a refusal the
/// API must make).
fn json_value() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        6 => Just(Value::Null),
        6 => any::<bool>().prop_map(Value::Bool),
        6 => any::<i64>().prop_map(Value::from),
        6 => any::<u64>().prop_map(Value::from),
        20 => float().prop_map(Value::from),
        12 => string().prop_map(Value::String),
        1 => Just(Value::String("nul \u{0} inside".into())),
    ];
    leaf.prop_recursive(4, 32, 5, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..5).prop_map(Value::Array),
            btree_map(string(), inner, 0..5).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn input() -> impl Strategy<Value = Value> {
    btree_map(string(), json_value(), 0..6).prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>()))
}

#[derive(Debug, Clone)]
struct Case {
    inputs: Vec<Value>,
    metadata: Option<Value>,
    bulk: bool,
}

fn case(bulk: bool) -> impl Strategy<Value = Case> {
    let count = if bulk { 1..5usize } else { 1..2 };
    (vec(input(), count), proptest::option::of(json_value())).prop_map(move |(inputs, metadata)| Case { inputs, metadata, bulk })
}

fn has_nul(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains('\0'),
        Value::Array(a) => a.iter().any(has_nul),
        Value::Object(o) => o.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// What the API did with a case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Accepted,
    Refused,
}

/// One case: sent as serde_json writes it; a NUL anywhere must be a 422
/// naming where, storing nothing; anything else a 201 whose jobs read back
/// equal to what was sent.
async fn check_case(env: &TestEnv, key: &str, c: &Case) -> Result<Outcome, String> {
    let mut body = json!({"model": "flux-schnell"});
    if c.bulk {
        body["inputs"] = Value::Array(c.inputs.clone());
    } else {
        body["input"] = c.inputs[0].clone();
    }
    if let Some(m) = &c.metadata {
        body["metadata"] = m.clone();
    }
    let path = if c.bulk { "/v1/jobs/bulk" } else { "/v1/jobs" };
    let before = count_jobs(env).await;
    let (status, answer) = post_text(env, key, path, serde_json::to_string(&body).map_err(|e| e.to_string())?).await;
    let nul_at = c
        .inputs
        .iter()
        .position(has_nul)
        .map(|i| if c.bulk { format!("inputs[{i}]") } else { "input".to_owned() })
        .or_else(|| c.metadata.as_ref().filter(|m| has_nul(m)).map(|_| "metadata".to_owned()));
    if let Some(field) = nul_at {
        let after = count_jobs(env).await;
        return match (status, answer["error"]["code"].as_str(), answer["error"]["field"].as_str()) {
            (422, Some("invalid_input"), Some(f)) if f == field && after == before => Ok(Outcome::Refused),
            _ => Err(format!("a NUL in {field}: expected a 422 invalid_input naming it and nothing stored ({before} → {after} jobs), got {status} {answer}")),
        };
    }
    if status != 201 {
        return Err(format!("refused with {status}: {answer}"));
    }
    let ids: Vec<Uuid> = if c.bulk {
        answer["ids"].as_array().ok_or("no ids")?.iter().filter_map(|i| i.as_str()?.parse().ok()).collect()
    } else {
        vec![job_id(&answer)]
    };
    if ids.len() != c.inputs.len() {
        return Err(format!("{} ids for {} inputs", ids.len(), c.inputs.len()));
    }
    for (id, sent) in ids.iter().zip(&c.inputs) {
        let job = read_back(env, key, *id, ids.len()).await?;
        if !same_json(&job["input"], sent) {
            return Err(format!("input sent {sent}\nread back {}", job["input"]));
        }
        let metadata_sent = c.metadata.clone().unwrap_or(Value::Null);
        if !same_json(&job["metadata"], &metadata_sent) {
            return Err(format!("metadata sent {metadata_sent}\nread back {}", job["metadata"]));
        }
    }
    Ok(Outcome::Accepted)
}

/// Runs `cases` generated cases; returns how many were refused.
fn run_cases(env: &TestEnv, key: &str, cases: u32, strategy: impl Strategy<Value = Case>) -> usize {
    let handle = tokio::runtime::Handle::current();
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 200, ..Config::default() };
    let refused = std::cell::Cell::new(0);
    let result = tokio::task::block_in_place(|| {
        TestRunner::new(config).run(&strategy, |c| {
            let outcome = handle.block_on(check_case(env, key, &c)).map_err(TestCaseError::fail)?;
            refused.set(refused.get() + usize::from(outcome == Outcome::Refused));
            Ok(())
        })
    });
    match result {
        Ok(()) => refused.get(),
        Err(TestError::Fail(why, c)) => panic!("{why}\nthe case: {c:?}"),
        Err(TestError::Abort(why)) => panic!("aborted: {why}"),
    }
}

/// Every job of the tenant, page by page: a stored job that cannot be
/// read would make a page a 500.
async fn every_job_reads(env: &TestEnv, key: &str) -> usize {
    let mut seen = 0;
    let mut cursor: Option<String> = None;
    loop {
        let q = cursor.as_ref().map_or(String::new(), |c| format!("&cursor={c}"));
        let (status, page) = env.get(key, &format!("/v1/jobs?limit=100{q}")).await;
        assert_eq!(status, 200, "{page}");
        seen += page["jobs"].as_array().map_or(0, Vec::len);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return seen,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_json_submitted_alone_or_in_bulk_reads_back_equal_or_is_a_422_storing_nothing() {
    let env = env().await;
    let key = env.tenant("acme", "UTC").await;
    let started = std::time::Instant::now();
    let refused = run_cases(&env, &key, 150, case(false)) + run_cases(&env, &key, 60, case(true));
    let stored = count_jobs(&env).await;
    // Both kinds of answer were exercised: NUL characters are generated
    // now and then, and nothing else may be refused.
    assert!(stored > 100, "most generated cases are accepted: {stored} jobs");
    assert!(refused > 0, "some generated cases hold a NUL and are refused");
    assert_eq!(every_job_reads(&env, &key).await as i64, stored);
    eprintln!("{stored} generated jobs read back equal, {refused} cases refused, in {:.1?}", started.elapsed());
}

// ---------------------------------------------------------------- the emulation against PostgreSQL

/// What PostgreSQL prints for each token once stored in `jsonb`.
async fn postgres_prints(pool: &sqlx::PgPool, tokens: &[String]) -> Vec<String> {
    sqlx::query_scalar("SELECT t::jsonb::text FROM unnest($1::text[]) WITH ORDINALITY AS u(t, i) ORDER BY i")
        .bind(tokens)
        .fetch_all(pool)
        .await
        .expect("PostgreSQL stores each token")
}

#[tokio::test]
async fn postgres_prints_every_number_as_core_emulates_it() {
    // The test's own database: the base URL's may not exist (tests/run.sh
    // points it at a database name only the tests' own ones sit beside).
    let env = env().await;
    let pool = env.pool.clone();
    let mut tokens: Vec<String> = EXTREMES.iter().map(|t| (*t).to_owned()).collect();
    tokens.extend(["0", "-0", "0.000", "1.50", "1.50e1", "0.0e5", "-1.5e+2", "1e-16383", "1e131071", "-1e131071"].map(str::to_owned));
    // serde_json's own text of generated numbers: what the API stores.
    let mut runner = TestRunner::new(Config { cases: 4000, failure_persistence: None, ..Config::default() });
    let strategy = prop_oneof![
        float().prop_map(|f| Number::from_f64(f).expect("finite").to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<u64>().prop_map(|u| u.to_string()),
    ];
    for _ in 0..4000 {
        tokens.push(strategy.new_tree(&mut runner).expect("a value").current());
    }
    let printed = postgres_prints(&pool, &tokens).await;
    for (token, printed) in tokens.iter().zip(&printed) {
        assert_eq!(offpeak_core::jsonb::number_text(token).as_deref(), Some(printed.as_str()), "{token}");
    }
    // Past `numeric`'s range PostgreSQL refuses, and the emulation says so.
    for token in ["1e131072", "1e-16384"] {
        let refused = sqlx::query_scalar::<_, String>("SELECT $1::text::jsonb::text").bind(token).fetch_one(&pool).await;
        assert!(refused.is_err(), "{token}: PostgreSQL stored it as {refused:?}");
        assert_eq!(offpeak_core::jsonb::number_text(token), None, "{token}");
    }
}
