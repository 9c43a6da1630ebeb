//! Issue 3, "Hostile input": a property-based test that throws generated bad
//! requests at the running API. docs/spec.md, "HTTP API": bad input never stores
//! anything, never crashes a process, and gets its JSON error.
//!
//! For every generated request: an answer comes (no dropped connection), its
//! status is a 4xx (never a 5xx) and the one the case calls for where that is
//! certain, the body is exactly `{"error": {"code", "message", "field"?}}`
//! served as JSON, and nothing stored changed: the `jobs` table holds as
//! many rows as before, and every job and schedule row is as it was.
//!
//! Each test serves one [`TestEnv`] to all of its cases: proptest's
//! [`TestRunner`] runs inside the test's tokio runtime and blocks on each
//! request. A failing case is shrunk and printed as the exact request.
//! Case counts are per test (see [`Cases`]); set `HOSTILE_CASES_SCALE` (a
//! factor) to run more or fewer.

use std::fmt;
use chrono::Datelike;

use proptest::collection::{btree_map, vec};
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use reqwest::header::{HeaderValue, AUTHORIZATION};
use reqwest::Method;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use offpeak_scheduler::api::{ApiConfig, Limits};
use offpeak_tests::harness::{EnvOptions, TestEnv};

const MODELS: &[&str] = &["flux-schnell", "flux-dev", "flux-pro", "minimax-video", "stable-audio"];
const TIMEZONES: &[&str] = &["UTC", "America/New_York", "Asia/Tokyo", "Europe/Paris", "Australia/Lord_Howe", "Asia/Kathmandu"];
const SUBMIT_FIELDS: &[&str] = &["model", "input", "priority", "timezone", "user_id", "metadata"];
const BULK_FIELDS: &[&str] = &["model", "inputs", "priority", "timezone", "user_id", "metadata"];
/// Spliced into a generated body in place of `"<MARKER>"` for raw-text
/// poisons (numbers, nesting and bytes no `Value` can hold).
const MARKER: &str = "\u{2603}RAW\u{2603}";

/// Cases per test: about 5,000 bad requests in all.
struct Cases;
impl Cases {
    const SINGLE_BODIES: u32 = 1000;
    const BULK_BODIES: u32 = 800;
    const AUTH: u32 = 500;
    const LIST_QUERIES: u32 = 400;
    const WINDOW_QUERIES: u32 = 400;
    const WINDOW_EXTREMES: u32 = 300;
    const JOB_IDS: u32 = 400;
    const ROUTING: u32 = 400;
    const OVERSIZED: u32 = 150;
    const IDEMPOTENCY: u32 = 300;
    const SCHEDULE_BODIES: u32 = 600;
    const SCHEDULE_IDS: u32 = 300;
}
fn config(cases: u32) -> Config {
    let scale: f64 = std::env::var("HOSTILE_CASES_SCALE").ok().and_then(|s| s.parse().ok()).unwrap_or(1.0);
    Config {
        cases: ((f64::from(cases) * scale).round() as u32).max(1),
        failure_persistence: None,
        max_shrink_iters: 300,
        ..Config::default()
    }
}

// ---------------------------------------------------------------- requests

#[derive(Clone, Debug)]
enum Auth {
    /// The tenant's own key.
    Valid,
    Missing,
    /// This exact header value.
    Header(Vec<u8>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    /// Any 4xx.
    ClientError,
    Status(u16),
}

#[derive(Clone)]
struct Req {
    method: Method,
    /// Path and query, sent as they are.
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
    expect: Expect,
}

impl Req {
    fn new(method: Method, path: impl Into<String>, expect: Expect) -> Self {
        Self { method, path: path.into(), auth: Auth::Valid, headers: vec![], body: None, expect }
    }
    fn body(mut self, b: Vec<u8>) -> Self {
        self.body = Some(b);
        self
    }
    fn auth(mut self, a: Auth) -> Self {
        self.auth = a;
        self
    }
}

/// Bytes as a Rust-like literal, long ones cut in the middle.
struct Shown<'a>(&'a [u8]);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let show = |f: &mut fmt::Formatter<'_>, part: &[u8]| write!(f, "{}", part.escape_ascii());
        write!(f, "b\"")?;
        if b.len() <= 1200 {
            show(f, b)?;
        } else {
            show(f, &b[..600])?;
            write!(f, "\" ... {} bytes in all ... b\"", b.len())?;
            show(f, &b[b.len() - 200..])?;
        }
        write!(f, "\"")
    }
}

impl fmt::Debug for Req {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.path)?;
        match &self.auth {
            Auth::Valid => writeln!(f, "  Authorization: Bearer <the tenant's key>")?,
            Auth::Missing => writeln!(f, "  (no Authorization header)")?,
            Auth::Header(v) => writeln!(f, "  Authorization: {}", Shown(v))?,
        }
        for (name, value) in &self.headers {
            writeln!(f, "  {name}: {}", Shown(value))?;
        }
        if let Some(b) = &self.body {
            writeln!(f, "  body: {}", Shown(b))?;
        }
        write!(f, "  expecting {:?}", self.expect)
    }
}

/// What the API owes every bad request.
async fn check(env: &TestEnv, key: &str, req: &Req) -> Result<(), String> {
    let before = stored(env).await;
    let mut rb = env.http.request(req.method.clone(), format!("{}{}", env.api_url, req.path));
    match &req.auth {
        Auth::Valid => rb = rb.bearer_auth(key),
        Auth::Missing => {}
        Auth::Header(v) => {
            rb = rb.header(AUTHORIZATION, HeaderValue::from_bytes(v).map_err(|e| format!("test bug: header {e}"))?)
        }
    }
    for (name, value) in &req.headers {
        rb = rb.header(*name, HeaderValue::from_bytes(value).map_err(|e| format!("test bug: header {e}"))?);
    }
    if let Some(b) = &req.body {
        rb = rb.header("content-type", "application/json").body(b.clone());
    }
    let resp = rb.send().await.map_err(|e| format!("no answer (a dropped connection or a crash?): {e:?}"))?;
    let status = resp.status().as_u16();
    let content_type = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let bytes = resp.bytes().await.map_err(|e| format!("status {status}, but the body broke off: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    if !(400..500).contains(&status) {
        return Err(format!("status {status}, not a 4xx: {text:.500}"));
    }
    if let Expect::Status(want) = req.expect {
        if status != want {
            return Err(format!("status {status}, expected {want}: {text:.500}"));
        }
    }
    if !content_type.starts_with("application/json") {
        return Err(format!("status {status} served as {content_type:?}, not JSON: {text:.500}"));
    }
    let body: Value = serde_json::from_slice(&bytes).map_err(|e| format!("status {status}, body not JSON ({e}): {text:.500}"))?;
    error_shape(&body).map_err(|e| format!("status {status}: {e}: {body}"))?;
    let after = stored(env).await;
    if after.0 != before.0 {
        return Err(format!("status {status}, yet the jobs table went from {} to {} rows", before.0, after.0));
    }
    if after.1 != before.1 {
        return Err(format!("status {status}, yet a stored job or schedule changed"));
    }
    Ok(())
}

/// The jobs table's row count, and a digest of every job and schedule row,
/// with where each live job stands (`held_jobs`, `batch_members`: a
/// release or a cancel moves a job there without writing its row).
async fn stored(env: &TestEnv) -> (i64, String) {
    sqlx::query_as(
        "SELECT (SELECT count(*) FROM jobs),
                md5(coalesce((SELECT string_agg(j::text, ',' ORDER BY j.id) FROM jobs j), '') || '|' ||
                    coalesce((SELECT string_agg(s::text, ',' ORDER BY s.id) FROM schedules s), '') || '|' ||
                    coalesce((SELECT string_agg(h::text, ',' ORDER BY h.id) FROM held_jobs h), '') || '|' ||
                    coalesce((SELECT string_agg(m::text, ',' ORDER BY m.job_id) FROM batch_members m), ''))",
    )
    .fetch_one(&env.pool)
    .await
    .expect("read what is stored")
}

/// `{"error": {"code": "snake_case", "message": "...", "field"?: "..."}}` and nothing else.
fn error_shape(body: &Value) -> Result<(), String> {
    let obj = body.as_object().ok_or("the error body is not an object")?;
    if obj.len() != 1 {
        return Err("the error body holds more than `error`".into());
    }
    let e = obj.get("error").and_then(Value::as_object).ok_or("no `error` object")?;
    let code = e.get("code").and_then(Value::as_str).ok_or("no string `error.code`")?;
    if code.is_empty() || !code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(format!("error.code {code:?} is not snake_case"));
    }
    let message = e.get("message").and_then(Value::as_str).ok_or("no string `error.message`")?;
    if message.trim().is_empty() {
        return Err("an empty error.message".into());
    }
    if let Some(field) = e.get("field") {
        if !field.is_string() {
            return Err("error.field is not a string".into());
        }
    }
    if let Some(other) = e.keys().find(|k| !matches!(k.as_str(), "code" | "message" | "field")) {
        return Err(format!("error.{other} is not part of the error shape"));
    }
    Ok(())
}

/// Runs `cases` requests from `strategy` against `env`; panics with the
/// (shrunk) failing request.
fn throw(env: &TestEnv, key: &str, name: &str, cases: u32, strategy: impl Strategy<Value = Req>) {
    let handle = tokio::runtime::Handle::current();
    let config = config(cases);
    let n = config.cases;
    let started = std::time::Instant::now();
    let result: Result<(), String> = tokio::task::block_in_place(|| {
        let mut runner = TestRunner::new(config);
        match runner.run(&strategy, |req| handle.block_on(check(env, key, &req)).map_err(TestCaseError::fail)) {
            Ok(()) => Ok(()),
            Err(TestError::Fail(why, req)) => Err(format!("{why}\nthe request:\n{req:?}")),
            Err(TestError::Abort(why)) => Err(format!("aborted: {why}")),
        }
    });
    match result {
        Ok(()) => eprintln!("{name}: {n} bad requests, each a JSON 4xx storing nothing, in {:.1?}", started.elapsed()),
        Err(e) => panic!("{name}: {e}"),
    }
}

fn post(path: &str, body: Vec<u8>) -> Req {
    Req::new(Method::POST, path, Expect::ClientError).body(body)
}

// ---------------------------------------------------------------- JSON strategies

/// Any JSON value without NUL characters (so fine as `metadata` or inside an input).
fn safe_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e12f64..1e12).prop_map(Value::from),
        "\\PC{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map("\\PC{1,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Any JSON value (NUL characters and all).
fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        ".{0,16}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(".{0,8}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

fn input_object() -> impl Strategy<Value = Map<String, Value>> {
    btree_map("[a-z_]{1,8}", safe_json(), 0..4).prop_map(|m| m.into_iter().collect())
}

/// A valid submission body (`bulk`: of `POST /v1/jobs/bulk`).
fn valid_job(bulk: bool) -> impl Strategy<Value = Map<String, Value>> {
    (
        select(MODELS),
        vec(input_object(), 1..4),
        option::of(select(&["low", "normal"][..])),
        option::of(select(TIMEZONES)),
        option::of("[a-z0-9_-]{1,24}"),
        option::of(safe_json()),
    )
        .prop_map(move |(model, mut inputs, priority, timezone, user_id, metadata)| {
            let mut m = Map::new();
            m.insert("model".into(), model.into());
            if bulk {
                m.insert("inputs".into(), Value::Array(inputs.into_iter().map(Value::Object).collect()));
            } else {
                m.insert("input".into(), Value::Object(inputs.swap_remove(0)));
            }
            if let Some(p) = priority {
                m.insert("priority".into(), p.into());
            }
            if let Some(t) = timezone {
                m.insert("timezone".into(), t.into());
            }
            if let Some(u) = user_id {
                m.insert("user_id".into(), u.into());
            }
            if let Some(md) = metadata {
                m.insert("metadata".into(), md);
            }
            m
        })
}

/// One thing wrong with an otherwise valid body.
#[derive(Debug, Clone)]
enum Poison {
    RandomBytes(Vec<u8>),
    /// Cut the serialised body at this fraction of its length.
    Truncate(f64),
    WrongType(&'static str, Value),
    Missing(&'static str),
    UnknownField(String, Value),
    UnknownModel(String),
    BadPriority(Value),
    BadTimezone(Value),
    BadUserId(Value),
    /// A string with a NUL character at one of the spots NUL must not reach.
    Nul(NulSpot, String),
    /// Raw text in place of a value inside the input: huge numbers, deep
    /// nesting, invalid UTF-8, bad escapes, control characters.
    Raw(Vec<u8>),
    BigInput(usize),
    BigMetadata(usize),
    NonObject(Value),
    /// The body's fields as a JSON array in declaration order, serde's
    /// "sequence form" of a struct: not the documented object.
    Positional,
    Duplicate(&'static str, Value),
    Trailing(Vec<u8>),
    // Bulk only.
    EmptyInputs,
    InputsNotArray(Value),
    BadInputAt(usize, Value),
    TooManyInputs(usize),
}

#[derive(Debug, Clone, Copy)]
enum NulSpot {
    InputValue,
    InputKey,
    DeepInput,
    MetadataValue,
    MetadataKey,
    UserId,
    Model,
    Timezone,
}

fn is_timezone(s: &str) -> bool {
    s.parse::<chrono_tz::Tz>().is_ok()
}

/// JSON strings with invalid UTF-8: a surrogate, an overlong encoding, a
/// five-byte form, a truncated sequence.
const BAD_UTF8_STRINGS: &[&[u8]] = &[b"\"\xed\xa0\x80\"", b"\"\xc0\xaf\"", b"\"\xf8\x88\x80\x80\x80\"", b"\"\xe2\x28\xa1\""];

/// Raw JSON text that makes the whole body unparsable.
fn raw_poison() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        select(&["1e999", "-1e400", "123456789e999999999", "NaN", "Infinity", "-Infinity", "01", "1.", ".5", "+1", "0x10", "'x'", "tru", "nul", "1 /* c */"][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        (310usize..1000).prop_map(|n| format!("1{}", "0".repeat(n)).into_bytes()),
        // Past serde_json's recursion limit (128).
        (129usize..4000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        (129usize..4000).prop_map(|n| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n)).into_bytes()),
        // Invalid UTF-8 in a string: a byte that cannot start or continue a
        // character there, before ASCII.
        ("[a-z]{0,5}", 0x80u8..=0xff, "[a-z]{1,5}").prop_map(|(a, bad, b)| {
            let mut v = format!("\"{a}").into_bytes();
            v.push(bad);
            v.extend_from_slice(format!("{b}\"").as_bytes());
            v
        }),
        select(BAD_UTF8_STRINGS).prop_map(<[u8]>::to_vec),
        // Bad escapes and lone surrogates.
        select(&["\"\\ud800\"", "\"\\udc00x\"", "\"\\ud83d\\u0041\"", "\"\\x41\"", "\"\\u12\"", "\"\\u{41}\"", "\"\\\""][..])
            .prop_map(|s| s.as_bytes().to_vec()),
        // Raw control characters inside a string.
        (0u8..0x20).prop_map(|c| vec![b'"', b'a', c, b'b', b'"']),
    ]
}

fn poison(bulk: bool) -> BoxedStrategy<Poison> {
    let fields: &'static [&'static str] = if bulk { BULK_FIELDS } else { SUBMIT_FIELDS };
    let shared = proptest::strategy::Union::new(vec![
        vec(any::<u8>(), 0..400).prop_map(Poison::RandomBytes).boxed(),
        (0.0f64..1.0).prop_map(Poison::Truncate).boxed(),
        any_json().prop_filter("not a string", |v| !v.is_string()).prop_map(|v| Poison::WrongType("model", v)).boxed(),
        select(vec!["model", if bulk { "inputs" } else { "input" }]).prop_map(Poison::Missing).boxed(),
        ("[a-zA-Z_]{1,16}", any_json())
            .prop_filter("an unknown field", move |(k, _)| !fields.contains(&k.as_str()))
            .prop_map(|(k, v)| Poison::UnknownField(k, v)).boxed(),
        prop_oneof!["\\PC{0,60}", "[a-z-]{101,3000}", ".{0,40}"]
            .prop_filter("unknown", |m| !MODELS.contains(&m.as_str()))
            .prop_map(Poison::UnknownModel).boxed(),
        prop_oneof![
            "\\PC{0,20}".prop_filter("not a priority", |p| p != "low" && p != "normal").prop_map(Value::String),
            any_json().prop_filter("not a string", |v| !v.is_string()),
        ]
        .prop_map(Poison::BadPriority).boxed(),
        prop_oneof![
            prop_oneof!["[A-Za-z_/+-]{0,40}", "\\PC{0,40}", "[A-Za-z/]{300,2000}"]
                .prop_filter("not a zone", |t| !is_timezone(t))
                .prop_map(Value::String),
            any_json().prop_filter("not a string or null", |v| !v.is_string() && !v.is_null()),
        ]
        .prop_map(Poison::BadTimezone).boxed(),
        prop_oneof![
            Just(Value::String(String::new())),
            "[a-z]{201,600}".prop_map(Value::String),
            any_json().prop_filter("not a string or null", |v| !v.is_string() && !v.is_null()),
        ]
        .prop_map(Poison::BadUserId).boxed(),
        (
            select(&[
                NulSpot::InputValue,
                NulSpot::InputKey,
                NulSpot::DeepInput,
                NulSpot::MetadataValue,
                NulSpot::MetadataKey,
                NulSpot::UserId,
                NulSpot::Model,
                NulSpot::Timezone,
            ][..]),
            ("[a-z]{0,8}", "[a-z]{0,8}"),
        )
            .prop_map(|(spot, (a, b))| Poison::Nul(spot, format!("{a}\0{b}"))).boxed(),
        raw_poison().prop_map(Poison::Raw).boxed(),
        (64 * 1024usize..100 * 1024).prop_map(Poison::BigInput).boxed(),
        (16 * 1024usize..40 * 1024).prop_map(Poison::BigMetadata).boxed(),
        any_json().prop_filter("not an object", |v| !v.is_object()).prop_map(Poison::NonObject).boxed(),
        Just(Poison::Positional).boxed(),
        (select(fields), any_json()).prop_map(|(f, v)| Poison::Duplicate(f, v)).boxed(),
        prop_oneof![
            select(&["x", "{}", "]", "}", "\"", "1", ",", "null", "\u{0}"][..]).prop_map(|s| s.as_bytes().to_vec()),
            vec(any::<u8>(), 1..20).prop_filter("not only whitespace", |b| b.iter().any(|c| !c.is_ascii_whitespace())),
        ]
        .prop_map(Poison::Trailing).boxed(),
    ]);
    if !bulk {
        return shared.boxed();
    }
    prop_oneof![
        6 => shared,
        1 => Just(Poison::EmptyInputs),
        1 => any_json().prop_filter("not an array", |v| !v.is_array()).prop_map(Poison::InputsNotArray),
        2 => (0usize..4, prop_oneof![
            any_json().prop_filter("not an object", |v| !v.is_object()),
            "[a-z]{0,6}".prop_map(|s| json!({"p": format!("{s}\0")})),
        ]).prop_map(|(i, v)| Poison::BadInputAt(i, v)),
        1 => (10_001usize..10_050).prop_map(Poison::TooManyInputs),
    ]
    .boxed()
}

fn apply(mut job: Map<String, Value>, poison: &Poison, bulk: bool) -> Vec<u8> {
    let input_key = if bulk { "inputs" } else { "input" };
    // The object a spliced value goes into: the input, or the first of the inputs.
    let first_input = |job: &mut Map<String, Value>| -> Map<String, Value> {
        match job.get(input_key) {
            Some(Value::Object(o)) => o.clone(),
            Some(Value::Array(a)) => a.first().and_then(Value::as_object).cloned().unwrap_or_default(),
            _ => Map::new(),
        }
    };
    let set_input = |job: &mut Map<String, Value>, input: Map<String, Value>| {
        if bulk {
            let mut inputs = job.get("inputs").and_then(Value::as_array).cloned().unwrap_or_default();
            if inputs.is_empty() {
                inputs.push(Value::Object(input));
            } else {
                inputs[0] = Value::Object(input);
            }
            job.insert("inputs".into(), Value::Array(inputs));
        } else {
            job.insert("input".into(), Value::Object(input));
        }
    };
    let ser = |job: &Map<String, Value>| serde_json::to_vec(job).expect("serialise");
    match poison {
        Poison::RandomBytes(b) => b.clone(),
        Poison::Truncate(f) => {
            let full = ser(&job);
            let cut = ((full.len() as f64) * f) as usize;
            full[..cut.min(full.len() - 1)].to_vec()
        }
        Poison::WrongType(field, v) => {
            job.insert((*field).into(), v.clone());
            ser(&job)
        }
        Poison::Missing(field) => {
            job.remove(*field);
            ser(&job)
        }
        Poison::UnknownField(k, v) => {
            job.insert(k.clone(), v.clone());
            ser(&job)
        }
        Poison::UnknownModel(m) => {
            job.insert("model".into(), m.clone().into());
            ser(&job)
        }
        Poison::BadPriority(v) => {
            job.insert("priority".into(), v.clone());
            ser(&job)
        }
        Poison::BadTimezone(v) => {
            job.insert("timezone".into(), v.clone());
            ser(&job)
        }
        Poison::BadUserId(v) => {
            job.insert("user_id".into(), v.clone());
            ser(&job)
        }
        Poison::Nul(spot, s) => {
            let mut input = first_input(&mut job);
            match spot {
                NulSpot::InputValue => {
                    input.insert("prompt".into(), s.clone().into());
                }
                NulSpot::InputKey => {
                    input.insert(s.clone(), json!(1));
                }
                NulSpot::DeepInput => {
                    input.insert("deep".into(), json!({"a": [1, {"b": [s]}]}));
                }
                NulSpot::MetadataValue => {
                    job.insert("metadata".into(), json!({"note": s}));
                }
                NulSpot::MetadataKey => {
                    job.insert("metadata".into(), json!({ s.clone(): true }));
                }
                NulSpot::UserId => {
                    job.insert("user_id".into(), s.clone().into());
                }
                NulSpot::Model => {
                    job.insert("model".into(), format!("flux-schnell{s}").into());
                }
                NulSpot::Timezone => {
                    job.insert("timezone".into(), format!("UTC{s}").into());
                }
            }
            set_input(&mut job, input);
            ser(&job)
        }
        Poison::Raw(raw) => {
            let mut input = first_input(&mut job);
            input.insert("raw".into(), MARKER.into());
            set_input(&mut job, input);
            let text = ser(&job);
            let marker = format!("\"{MARKER}\"").into_bytes();
            let at = text.windows(marker.len()).position(|w| w == marker.as_slice()).expect("the marker is in the body");
            [&text[..at], raw.as_slice(), &text[at + marker.len()..]].concat()
        }
        Poison::BigInput(n) => {
            let mut input = first_input(&mut job);
            input.insert("prompt".into(), "x".repeat(*n).into());
            set_input(&mut job, input);
            ser(&job)
        }
        Poison::BigMetadata(n) => {
            job.insert("metadata".into(), json!({"blob": "m".repeat(*n)}));
            ser(&job)
        }
        Poison::NonObject(v) => serde_json::to_vec(v).expect("serialise"),
        Poison::Positional => {
            let fields = if bulk { BULK_FIELDS } else { SUBMIT_FIELDS };
            let values: Vec<Value> = fields
                .iter()
                .map(|f| match (*f, job.get(*f)) {
                    (_, Some(v)) => v.clone(),
                    ("priority", None) => "low".into(),
                    _ => Value::Null,
                })
                .collect();
            serde_json::to_vec(&values).expect("serialise")
        }
        Poison::Duplicate(field, v) => {
            // `{"field": v, <the body's own fields>}`, with the pair given
            // twice when the body does not have the field itself.
            let pair = format!("{}:{v}", Value::from(*field));
            let times = if job.contains_key(*field) { 1 } else { 2 };
            let rest = ser(&job);
            let mut out = format!("{{{},", vec![pair; times].join(",")).into_bytes();
            out.extend_from_slice(&rest[1..]);
            out
        }
        Poison::Trailing(garbage) => [ser(&job), garbage.clone()].concat(),
        Poison::EmptyInputs => {
            job.insert("inputs".into(), json!([]));
            ser(&job)
        }
        Poison::InputsNotArray(v) => {
            job.insert("inputs".into(), v.clone());
            ser(&job)
        }
        Poison::BadInputAt(i, v) => {
            let mut inputs = job.get("inputs").and_then(Value::as_array).cloned().unwrap_or_default();
            let at = (*i).min(inputs.len());
            inputs.insert(at, v.clone());
            job.insert("inputs".into(), Value::Array(inputs));
            ser(&job)
        }
        Poison::TooManyInputs(n) => {
            job.insert("inputs".into(), Value::Array(vec![json!({}); *n]));
            ser(&job)
        }
    }
}

fn bad_bodies(bulk: bool) -> impl Strategy<Value = Req> {
    let path = if bulk { "/v1/jobs/bulk" } else { "/v1/jobs" };
    (valid_job(bulk), poison(bulk)).prop_map(move |(job, p)| {
        let body = apply(job, &p, bulk);
        let expect = match p {
            Poison::BigInput(_) | Poison::BigMetadata(_) => Expect::Status(413),
            // The document's `maxItems`: a validation error like the others.
            Poison::TooManyInputs(_) => Expect::Status(422),
            _ => Expect::ClientError,
        };
        Req { expect, ..post(path, body) }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_single_job_bodies_each_get_a_json_4xx_and_store_nothing() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    throw(&env, &key, "POST /v1/jobs bodies", Cases::SINGLE_BODIES, bad_bodies(false));
    assert_eq!(env.count_jobs().await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_bulk_bodies_each_get_a_json_4xx_and_store_nothing() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    throw(&env, &key, "POST /v1/jobs/bulk bodies", Cases::BULK_BODIES, bad_bodies(true));
    assert_eq!(env.count_jobs().await, 0);
}

#[test]
fn the_body_poisons_really_poison() {
    // Spot checks of `apply`, so a generator bug cannot pass for a robust API.
    let mut job = Map::new();
    job.insert("model".into(), "flux-schnell".into());
    job.insert("input".into(), json!({"a": 1}));
    let body = apply(job.clone(), &Poison::Duplicate("model", json!("flux-dev")), false);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.matches("\"model\"").count(), 2, "{text}");
    let body = apply(job.clone(), &Poison::Duplicate("user_id", json!("u")), false);
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text.matches("\"user_id\"").count(), 2, "{text}");
    let body = apply(job.clone(), &Poison::Raw(b"1e999".to_vec()), false);
    assert!(String::from_utf8(body).unwrap().contains("\"raw\":1e999"));
    for cut in [0.0, 0.5, 0.999] {
        let body = apply(job.clone(), &Poison::Truncate(cut), false);
        assert!(serde_json::from_slice::<Value>(&body).is_err(), "{}", Shown(&body));
    }
}

// ---------------------------------------------------------------- authentication

/// An `Authorization` header that authenticates no one.
fn bad_auth() -> impl Strategy<Value = Auth> {
    let visible = "[!-~]{1,80}";
    prop_oneof![
        Just(Auth::Missing),
        Just(Auth::Header(b"Bearer".to_vec())),
        Just(Auth::Header(b"Bearer ".to_vec())),
        Just(Auth::Header(b"Bearer     ".to_vec())),
        visible.prop_map(|k| Auth::Header(format!("Bearer {k}").into_bytes())),
        "[!-~]{257,600}".prop_map(|k| Auth::Header(format!("Bearer {k}").into_bytes())),
        (select(&["Basic", "Token", "bearer", "BEARER", "Digest", "ApiKey", ""][..]), visible)
            .prop_map(|(scheme, k)| Auth::Header(format!("{scheme} {k}").into_bytes())),
        // Bytes outside ASCII (allowed in a header, `obs-text`).
        vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..60).prop_map(|k| {
            let mut v = b"Bearer ".to_vec();
            v.extend(k);
            v.push(0xff);
            Auth::Header(v)
        }),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_authorization_is_a_json_401_on_every_v1_route() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    // A real job, so GET and DELETE of it would succeed with the right key.
    let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {}})).await;
    assert_eq!(status, 201, "{job}");
    let job_path = format!("/v1/jobs/{}", job["id"].as_str().expect("id"));
    let valid_single = serde_json::to_vec(&json!({"model": "flux-schnell", "input": {"p": "a fox"}})).unwrap();
    let valid_bulk = serde_json::to_vec(&json!({"model": "flux-schnell", "inputs": [{"p": 1}, {"p": 2}]})).unwrap();
    let (status, schedule) = env
        .post(&key, "/v1/schedules", &json!({"name": "nightly", "cron": "0 3 * * *", "job": {"model": "flux-dev", "input": {}}}))
        .await;
    assert_eq!(status, 201, "{schedule}");
    let schedule_path = format!("/v1/schedules/{}", schedule["id"].as_str().expect("id"));
    let valid_schedule =
        serde_json::to_vec(&json!({"name": "other", "cron": "@hourly", "job": {"model": "flux-dev", "input": {}}})).unwrap();
    let routes = vec![
        (Method::POST, "/v1/schedules".to_owned(), Some(valid_schedule)),
        (Method::GET, "/v1/schedules".to_owned(), None),
        (Method::GET, schedule_path.clone(), None),
        (Method::PATCH, schedule_path.clone(), Some(br#"{"paused": true}"#.to_vec())),
        (Method::DELETE, schedule_path.clone(), None),
        (Method::POST, "/v1/jobs".to_owned(), Some(valid_single)),
        (Method::POST, "/v1/jobs/bulk".to_owned(), Some(valid_bulk)),
        (Method::GET, "/v1/jobs?limit=5".to_owned(), None),
        (Method::GET, job_path.clone(), None),
        (Method::DELETE, job_path.clone(), None),
        (Method::GET, "/v1/windows/next?timezone=UTC".to_owned(), None),
        (Method::GET, "/v1/usage?group_by=day".to_owned(), None),
        (Method::GET, "/v1/tenant".to_owned(), None),
    ];
    let strategy = (select(routes), bad_auth()).prop_map(|((method, path, body), auth)| {
        let mut req = Req::new(method, path, Expect::Status(401)).auth(auth);
        req.body = body;
        req
    });
    throw(&env, &key, "bad Authorization", Cases::AUTH, strategy);
    assert_eq!(env.count_jobs().await, 1, "only the job stored with the right key");
    assert_eq!(env.job(job["id"].as_str().unwrap().parse().unwrap()).await.state, "held", "and it is not cancelled");
    let (status, still) = env.get(&key, &schedule_path).await;
    assert_eq!((status, &still["paused"]), (200, &json!(false)), "the schedule is neither paused nor deleted: {still}");
    let (_, list) = env.get(&key, "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(1), "no schedule created: {list}");
}

// ---------------------------------------------------------------- query strings

fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// `name=value` pairs, at least one of them bad, in a random order.
fn query(bad: impl Strategy<Value = String>, noise: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
    (bad, vec(noise, 0..3), any::<prop::sample::Index>()).prop_map(|(bad, mut parts, at)| {
        let i = at.index(parts.len() + 1);
        parts.insert(i, bad);
        parts.join("&")
    })
}

fn bad_list_query() -> impl Strategy<Value = String> {
    let bad = prop_oneof![
        "\\PC{0,20}"
            .prop_filter("not a state", |s| s.parse::<offpeak_core::job::JobState>().is_err())
            .prop_map(|s| format!("state={}", enc(&s))),
        prop_oneof![
            Just(String::new()),
            Just("0".to_owned()),
            Just("1001".to_owned()),
            Just("99999999999999999999999".to_owned()),
            Just("1.5".to_owned()),
            Just("1e2".to_owned()),
            Just(" 5".to_owned()),
            (i64::MIN..=0).prop_map(|n| n.to_string()),
            (1001i64..).prop_map(|n| n.to_string()),
            "[^0-9]\\PC{0,10}",
        ]
        .prop_map(|l| format!("limit={}", enc(&l))),
        "\\PC{0,40}".prop_filter("not a uuid", |c| Uuid::parse_str(c).is_err()).prop_map(|c| format!("cursor={}", enc(&c))),
        ("[a-z_]{1,12}", "\\PC{0,12}")
            .prop_filter("unknown", |(k, _)| !["state", "model", "limit", "cursor"].contains(&k.as_str()))
            .prop_map(|(k, v)| format!("{k}={}", enc(&v))),
        ("[a-z]{0,8}", "[a-z]{0,8}").prop_map(|(a, b)| format!("model={a}%00{b}")),
        select(&["limit=5&limit=6", "state=held&state=held", "cursor=&cursor="][..]).prop_map(str::to_owned),
    ];
    let noise = prop_oneof![
        "\\PC{0,12}".prop_filter("no NUL", |m| !m.contains('\0')).prop_map(|m| format!("model={}", enc(&m))),
        Just("model=%FF%FE".to_owned()),
        (1i64..=1000).prop_map(|l| format!("limit={l}")),
        select(&["held", "queued", "succeeded", "cancelled"][..]).prop_map(|s| format!("state={s}")),
    ];
    query(bad, noise)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_list_queries_each_get_a_json_400() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let strategy = bad_list_query().prop_map(|q| Req::new(Method::GET, format!("/v1/jobs?{q}"), Expect::Status(400)));
    throw(&env, &key, "GET /v1/jobs queries", Cases::LIST_QUERIES, strategy);
}

fn bad_window_query() -> impl Strategy<Value = String> {
    let bad = prop_oneof![
        prop_oneof!["[A-Za-z_/+-]{0,30}", "\\PC{0,30}", "[a-z]{300,1000}", "[a-z]{0,5}\0[a-z]{0,5}"]
            .prop_filter("not a zone", |t| !is_timezone(t))
            .prop_map(|t| format!("timezone={}", enc(&t))),
        prop_oneof![
            "\\PC{0,30}",
            Just("2027-03-14".to_owned()),
            Just("2027-03-14T12:00:00".to_owned()),
            Just("2027-02-30T12:00:00Z".to_owned()),
            Just("2027-03-14T25:00:00Z".to_owned()),
            Just("10000-01-01T00:00:00Z".to_owned()),
            Just("2027-03-14T12:00:00+24:00".to_owned()),
            Just("1773489600".to_owned()),
        ]
        .prop_filter("not RFC 3339", |a| chrono::DateTime::parse_from_rfc3339(a).is_err())
        .prop_map(|a| format!("at={}", enc(&a))),
        ("[a-z_]{1,12}", "\\PC{0,12}")
            .prop_filter("unknown", |(k, _)| k != "timezone" && k != "at")
            .prop_map(|(k, v)| format!("{k}={}", enc(&v))),
        select(&["timezone=UTC&timezone=UTC", "at=2027-01-01T00:00:00Z&at=2027-01-01T00:00:00Z"][..]).prop_map(str::to_owned),
    ];
    let noise = prop_oneof![
        select(TIMEZONES).prop_map(|t| format!("timezone={}", enc(t))),
        Just("at=2027-03-14T12%3A00%3A00Z".to_owned()),
    ];
    query(bad, noise)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_window_queries_each_get_a_json_4xx() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let strategy = bad_window_query().prop_map(|q| Req::new(Method::GET, format!("/v1/windows/next?{q}"), Expect::ClientError));
    throw(&env, &key, "GET /v1/windows/next queries", Cases::WINDOW_QUERIES, strategy);
}

/// Not bad input, but the far ends of what is valid: every IANA zone, any
/// instant RFC 3339 can write (years 0000 to 9999, offsets up to ±23:59).
/// The window is computed without a 5xx or a crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_previews_at_the_extremes_of_time_answer_without_a_5xx() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let handle = tokio::runtime::Handle::current();
    let zones: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|z| z.name()).collect();
    let strategy = (
        select(zones),
        prop_oneof![0i32..=9999, Just(0), Just(9999), 1900i32..2100],
        1u32..=12,
        1u32..=31,
        (0u32..24, 0u32..60, 0u32..60),
        prop_oneof![Just("Z".to_owned()), (-1439i32..=1439).prop_map(|m| format!("{}{:02}:{:02}", if m < 0 { '-' } else { '+' }, m.abs() / 60, m.abs() % 60))],
    )
        .prop_map(|(tz, y, mo, d, (h, mi, s), off)| (tz, format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}{off}")));
    let config = config(Cases::WINDOW_EXTREMES);
    let n = config.cases;
    let started = std::time::Instant::now();
    let result = tokio::task::block_in_place(|| {
        TestRunner::new(config).run(&strategy, |(tz, at)| {
            handle.block_on(async {
                let path = format!("/v1/windows/next?timezone={}&at={}", enc(tz), enc(&at));
                let resp = env.http.get(env.url(&path)).bearer_auth(&key).send().await.map_err(|e| TestCaseError::fail(format!("GET {path}: no answer: {e}")))?;
                let status = resp.status().as_u16();
                let body: Value = resp.json().await.map_err(|e| TestCaseError::fail(format!("GET {path}: {status}, not JSON: {e}")))?;
                let valid_instant = chrono::DateTime::parse_from_rfc3339(&at).is_ok();
                let at_end_of_time = chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|t| t.year() == 9999 && t.ordinal() >= 363);
                // Year 0000 with a positive offset is year -1 in UTC.
                let before_time = chrono::DateTime::parse_from_rfc3339(&at).is_ok_and(|t| t.with_timezone(&chrono::Utc).year() < 0);
                if valid_instant && before_time {
                    prop_assert_eq!(status, 422, "GET {}: {}", path, body);
                    prop_assert_eq!(body["error"]["code"].as_str(), Some("out_of_range"), "GET {}: {}", path, body);
                    prop_assert!(error_shape(&body).is_ok(), "{}", body);
                } else if valid_instant && status == 422 && at_end_of_time {
                    // The window would close after year 9999, which RFC 3339 cannot write.
                    prop_assert_eq!(body["error"]["code"].as_str(), Some("out_of_range"), "GET {}: {}", path, body);
                    prop_assert!(error_shape(&body).is_ok(), "{}", body);
                } else if valid_instant {
                    prop_assert_eq!(status, 200, "GET {}: {}", path, body);
                    let t = |k: &str| chrono::DateTime::parse_from_rfc3339(body[k].as_str().unwrap_or_default()).ok();
                    let (at_, opens, closes) = (t("at"), t("opens_at"), t("closes_at"));
                    prop_assert!(at_.is_some() && opens >= at_ && closes > opens, "GET {}: {}", path, body);
                } else {
                    // Day 31 of a 30-day month and the like.
                    prop_assert_eq!(status, 400, "GET {}: {}", path, body);
                    prop_assert!(error_shape(&body).is_ok(), "{}", body);
                }
                Ok(())
            })
        })
    });
    match result {
        Ok(()) => eprintln!("window extremes: {n} previews in {:.1?}", started.elapsed()),
        Err(e) => panic!("{e}"),
    }
}

/// `GET /v1/windows/next?{q}`: its status and JSON body.
async fn preview(env: &TestEnv, key: &str, q: &str) -> (u16, Value) {
    let resp = env.http.get(env.url(&format!("/v1/windows/next?{q}"))).bearer_auth(key).send().await.expect("answer");
    (resp.status().as_u16(), resp.json::<Value>().await.expect("JSON"))
}

/// A 422 `out_of_range` naming `at`, in the error shape.
fn assert_out_of_range((status, body): (u16, Value)) {
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "out_of_range", "{body}");
    assert_eq!(body["error"]["field"], "at", "{body}");
    error_shape(&body).expect("error shape");
}

/// The generated case that once answered `+10000-01-01T05:00:00Z`: past
/// 06:00 on 31 December 9999 the next window opens in year 10000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_that_would_open_after_year_9999_is_a_422_not_an_unwritable_instant() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    assert_out_of_range(preview(&env, &key, "timezone=America%2FRosario&at=9999-12-31T09%3A00%3A00Z").await);

    // The last window that can be written is answered as usual.
    let (status, body) = preview(&env, &key, "timezone=UTC&at=9999-12-31T01%3A00%3A00Z").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["opens_at"], "9999-12-31T02:00:00Z", "{body}");
    assert_eq!(body["closes_at"], "9999-12-31T06:00:00Z", "{body}");
}

/// The generated case that once answered `"at": "-0001-12-31T23:59:00Z"`:
/// year 0000 with a positive offset is year -1 in UTC, which the answer
/// cannot write. The first instant it can is answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_at_before_year_0000_in_utc_is_a_422_not_an_unwritable_instant() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    assert_out_of_range(preview(&env, &key, "timezone=Africa%2FAbidjan&at=0000-01-01T00%3A00%3A00%2B00%3A01").await);

    let (status, body) = preview(&env, &key, "timezone=UTC&at=0000-01-01T00%3A00%3A00Z").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["at"], "0000-01-01T00:00:00Z", "{body}");
    assert_eq!(body["opens_at"], "0000-01-01T02:00:00Z", "{body}");
}

// ---------------------------------------------------------------- paths

/// A path segment that names no job of the tenant.
fn bad_job_id() -> impl Strategy<Value = String> {
    let encode_all = |s: String| s.bytes().map(|b| if b.is_ascii_alphanumeric() || b == b'-' { (b as char).to_string() } else { format!("%{b:02X}") }).collect::<String>();
    prop_oneof![
        any::<u128>().prop_map(|n| Uuid::from_u128(n).to_string()),
        any::<u128>().prop_map(|n| Uuid::from_u128(n).simple().to_string().to_uppercase()),
        (any::<u128>(), "[a-z0-9]{1,4}").prop_map(|(n, s)| format!("{}{s}", Uuid::from_u128(n))),
        "\\PC{1,40}".prop_map(encode_all),
        ".{1,20}".prop_map(encode_all),
        "[a-z0-9-]{1000,5000}",
        ("[a-z]{0,4}", "[a-z]{0,4}").prop_map(|(a, b)| format!("{a}%00{b}")),
        ("[a-z]{0,4}", 0x80u8..=0xff, "[a-z]{0,4}").prop_map(|(a, b, c)| format!("{a}%{b:02X}{c}")),
        select(&["%C3%28", "%ED%A0%80", "%", "%zz", "%2F", "a%2Fb", "12345", "null", "undefined", "%20", "-1", "bulk"][..]).prop_map(str::to_owned),
    ]
    .prop_filter("no dot segments", |s| !matches!(s.to_ascii_lowercase().as_str(), "." | ".." | "%2e" | "%2e%2e" | ".%2e" | "%2e."))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_job_ids_are_json_404s() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let other = env.tenant("other", "UTC").await;
    // Another tenant's job, to be sure its id is as unknown as any.
    let (status, theirs) = env.post(&other, "/v1/jobs", &json!({"model": "flux-dev", "input": {}})).await;
    assert_eq!(status, 201);
    let their_path = format!("/v1/jobs/{}", theirs["id"].as_str().unwrap());
    let strategy = (select(vec![Method::GET, Method::DELETE]), prop_oneof![9 => bad_job_id().prop_map(|id| format!("/v1/jobs/{id}")), 1 => Just(their_path)])
        .prop_map(|(m, path)| {
            // `bulk` is a route of its own: only POST.
            let expect = if path == "/v1/jobs/bulk" { 405 } else { 404 };
            Req::new(m, path, Expect::Status(expect))
        });
    throw(&env, &key, "job ids", Cases::JOB_IDS, strategy);
    assert_eq!(env.count_jobs().await, 1);
    assert_eq!(env.job(theirs["id"].as_str().unwrap().parse().unwrap()).await.state, "held", "not cancelled by another tenant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_schedule_ids_are_json_404s() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let other = env.tenant("other", "UTC").await;
    let (status, theirs) =
        env.post(&other, "/v1/schedules", &json!({"name": "n", "cron": "@daily", "job": {"model": "flux-dev", "input": {}}})).await;
    assert_eq!(status, 201, "{theirs}");
    let their_path = format!("/v1/schedules/{}", theirs["id"].as_str().unwrap());
    let strategy = (
        select(vec![Method::GET, Method::PATCH, Method::DELETE]),
        prop_oneof![9 => bad_job_id().prop_map(|id| format!("/v1/schedules/{id}")), 1 => Just(their_path.clone())],
    )
        .prop_map(|(m, path)| {
            let mut req = Req::new(m.clone(), path, Expect::Status(404));
            if m == Method::PATCH {
                req.body = Some(br#"{"paused": true}"#.to_vec());
            }
            req
        });
    throw(&env, &key, "schedule ids", Cases::SCHEDULE_IDS, strategy);
    let (status, still) = env.get(&other, &their_path).await;
    assert_eq!((status, &still["paused"]), (200, &json!(false)), "not paused or deleted by another tenant: {still}");
}

// ---------------------------------------------------------------- schedules

const SCHEDULE_FIELDS: &[&str] = &["name", "cron", "timezone", "catch_up", "paused", "job"];
const PATCH_FIELDS: &[&str] = &["cron", "timezone", "catch_up", "paused", "job"];
const TEMPLATE_FIELDS: &[&str] = &["model", "input", "priority", "user_id", "metadata", "use_case"];

fn valid_template() -> impl Strategy<Value = Map<String, Value>> {
    (
        select(MODELS),
        input_object(),
        option::of(select(&["low", "normal"][..])),
        option::of("[a-z0-9_-]{1,24}"),
        option::of(input_object()),
    )
        .prop_map(|(model, input, priority, user_id, metadata)| {
            let mut m = Map::new();
            m.insert("model".into(), model.into());
            m.insert("input".into(), Value::Object(input));
            if let Some(p) = priority {
                m.insert("priority".into(), p.into());
            }
            if let Some(u) = user_id {
                m.insert("user_id".into(), u.into());
            }
            if let Some(md) = metadata {
                m.insert("metadata".into(), Value::Object(md));
            }
            m
        })
}

/// A valid `POST /v1/schedules` body (`patch`: a valid `PATCH` body).
fn valid_schedule(patch: bool) -> impl Strategy<Value = Map<String, Value>> {
    (
        "[a-z0-9-]{1,20}",
        select(&["* * * * *", "0 3 * * *", "@daily", "*/5 * * * *", "30 2 * * 1-5"][..]),
        option::of(select(TIMEZONES)),
        option::of(select(&["latest", "all", "none"][..])),
        option::of(any::<bool>()),
        valid_template(),
        any::<bool>(),
    )
        .prop_map(move |(name, cron, tz, catch_up, paused, job, with_job)| {
            let mut m = Map::new();
            if !patch {
                m.insert("name".into(), name.into());
            }
            if !patch || with_job {
                m.insert("cron".into(), cron.into());
                m.insert("job".into(), Value::Object(job));
            }
            if let Some(t) = tz {
                m.insert("timezone".into(), t.into());
            }
            if let Some(c) = catch_up {
                m.insert("catch_up".into(), c.into());
            }
            if let Some(p) = paused {
                m.insert("paused".into(), p.into());
            }
            m
        })
}

/// One thing wrong with a schedule body.
#[derive(Debug, Clone)]
enum SchedulePoison {
    RandomBytes(Vec<u8>),
    Truncate(f64),
    NonObject(Value),
    Positional,
    Trailing(Vec<u8>),
    Raw(Vec<u8>),
    UnknownField(String, Value),
    UnknownJobField(String, Value),
    /// A field set to a value of the wrong type or an invalid one.
    Field(&'static str, Value),
    JobField(&'static str, Value),
    MissingField(&'static str),
    MissingJobField(&'static str),
}

fn bad_cron() -> impl Strategy<Value = String> {
    prop_oneof![
        "\\PC{0,30}",
        "[0-9*/,-]{1,4}( [0-9*/,-]{1,4}){0,7}",
        select(&["", "* * * *", "60 * * * *", "* 24 * * *", "* * 32 * *", "* * * 13 *", "* * * * 8", "@sometimes", "0 0 30 2 *", "*/0 * * * *"][..])
            .prop_map(str::to_owned),
        "[0-9 *]{257,400}",
    ]
    // Only expressions that do not parse: one that parses but never fires
    // (`0 0 30 2 *`) is refused on create, yet accepted by a PATCH that also
    // pauses the schedule.
    .prop_filter("not a cron expression", |c| {
        c.len() > 256 || offpeak_core::schedule::CronSchedule::parse(c, chrono_tz::UTC).is_err()
    })
}

fn schedule_poison(patch: bool) -> BoxedStrategy<SchedulePoison> {
    let fields: &'static [&'static str] = if patch { PATCH_FIELDS } else { SCHEDULE_FIELDS };
    let not_null = |v: &Value| !v.is_null();
    let field = prop_oneof![
        any_json().prop_filter("not a string", |v| !v.is_string()).prop_filter("set", not_null).prop_map(|v| ("cron", v)),
        bad_cron().prop_map(|c| ("cron", Value::String(c))),
        prop_oneof!["[A-Za-z_/+-]{0,40}", "\\PC{0,40}"].prop_filter("not a zone", |t| !is_timezone(t)).prop_map(|t| ("timezone", Value::String(t))),
        any_json().prop_filter("not a string or null", |v| !v.is_string() && !v.is_null()).prop_map(|v| ("timezone", v)),
        "\\PC{0,12}".prop_filter("not a policy", |c| !["latest", "all", "none"].contains(&c.as_str())).prop_map(|c| ("catch_up", Value::String(c))),
        any_json().prop_filter("not a bool or null", |v| !v.is_boolean() && !v.is_null()).prop_map(|v| ("paused", v)),
        any_json().prop_filter("not an object", |v| !v.is_object() && !v.is_null() && !v.is_array()).prop_map(|v| ("job", v)),
    ];
    let name = prop_oneof![
        Just(Value::String(String::new())),
        "[a-z]{201,400}".prop_map(Value::String),
        "[a-z]{0,5}[\u{0}-\u{1f}\u{7f}][a-z]{0,5}".prop_map(Value::String),
        any_json().prop_filter("not a string", |v| !v.is_string()),
    ]
    .prop_map(|v| ("name", v));
    let job_field = prop_oneof![
        prop_oneof!["\\PC{0,30}", Just("auto".to_owned())].prop_filter("unknown", |m| !MODELS.contains(&m.as_str())).prop_map(|m| ("model", Value::String(m))),
        any_json().prop_filter("not an object", |v| !v.is_object()).prop_map(|v| ("input", v)),
        "[a-z]{0,4}".prop_map(|s| ("input", json!({"p": format!("{s}\0")}))),
        (64 * 1024usize..80 * 1024).prop_map(|n| ("input", json!({"p": "x".repeat(n)}))),
        any_json().prop_filter("not an object or null", |v| !v.is_object() && !v.is_null()).prop_map(|v| ("metadata", v)),
        "[a-z]{0,4}".prop_map(|s| ("metadata", json!({"k": format!("{s}\0")}))),
        prop_oneof![Just(Value::String(String::new())), "[a-z]{0,4}".prop_map(|s| Value::String(format!("{s}\0")))].prop_map(|v| ("user_id", v)),
        "\\PC{0,12}".prop_filter("not a priority", |p| p != "low" && p != "normal").prop_map(|p| ("priority", Value::String(p))),
        "\\PC{0,12}".prop_map(|u| ("use_case", Value::String(u))),
    ];
    let mut arms = vec![
        vec(any::<u8>(), 0..300).prop_map(SchedulePoison::RandomBytes).boxed(),
        (0.0f64..1.0).prop_map(SchedulePoison::Truncate).boxed(),
        any_json().prop_filter("not an object", |v| !v.is_object()).prop_map(SchedulePoison::NonObject).boxed(),
        Just(SchedulePoison::Positional).boxed(),
        prop_oneof![
            select(&["x", "{}", "]", "1", "null"][..]).prop_map(|s| s.as_bytes().to_vec()),
            vec(any::<u8>(), 1..20).prop_filter("not only whitespace", |b| b.iter().any(|c| !c.is_ascii_whitespace())),
        ]
        .prop_map(SchedulePoison::Trailing)
        .boxed(),
        raw_poison().prop_map(SchedulePoison::Raw).boxed(),
        ("[a-zA-Z_]{1,16}", any_json())
            .prop_filter("unknown", move |(k, _)| !fields.contains(&k.as_str()))
            .prop_map(|(k, v)| SchedulePoison::UnknownField(k, v))
            .boxed(),
        ("[a-zA-Z_]{1,16}", any_json())
            .prop_filter("unknown", |(k, _)| !TEMPLATE_FIELDS.contains(&k.as_str()))
            .prop_map(|(k, v)| SchedulePoison::UnknownJobField(k, v))
            .boxed(),
        field.prop_map(|(f, v)| SchedulePoison::Field(f, v)).boxed(),
        job_field.prop_map(|(f, v)| SchedulePoison::JobField(f, v)).boxed(),
        select(&["model", "input"][..]).prop_map(SchedulePoison::MissingJobField).boxed(),
    ];
    if !patch {
        arms.push(name.prop_map(|(f, v)| SchedulePoison::Field(f, v)).boxed());
        arms.push(select(&["name", "cron", "job"][..]).prop_map(SchedulePoison::MissingField).boxed());
    }
    proptest::strategy::Union::new(arms).boxed()
}

fn apply_schedule(mut s: Map<String, Value>, poison: &SchedulePoison, patch: bool, template: Map<String, Value>) -> Vec<u8> {
    let ser = |m: &Map<String, Value>| serde_json::to_vec(m).expect("serialise");
    // Poisons of the template need one.
    let mut job = s.get("job").and_then(Value::as_object).cloned().unwrap_or(template);
    match poison {
        SchedulePoison::RandomBytes(b) => return b.clone(),
        SchedulePoison::Truncate(f) => {
            let full = ser(&s);
            let cut = ((full.len() as f64) * f) as usize;
            return full[..cut.min(full.len() - 1)].to_vec();
        }
        SchedulePoison::NonObject(v) => return serde_json::to_vec(v).expect("serialise"),
        SchedulePoison::Positional => {
            let fields = if patch { PATCH_FIELDS } else { SCHEDULE_FIELDS };
            let values: Vec<Value> = fields
                .iter()
                .map(|f| match (*f, s.get(*f)) {
                    (_, Some(v)) => v.clone(),
                    ("job", None) if !patch => Value::Object(job.clone()),
                    ("catch_up", None) if !patch => "latest".into(),
                    ("paused", None) if !patch => false.into(),
                    _ => Value::Null,
                })
                .collect();
            return serde_json::to_vec(&values).expect("serialise");
        }
        SchedulePoison::Trailing(garbage) => return [ser(&s), garbage.clone()].concat(),
        SchedulePoison::Raw(raw) => {
            job.insert("raw".into(), MARKER.into());
            s.insert("job".into(), Value::Object(job));
            let text = ser(&s);
            let marker = format!("\"{MARKER}\"").into_bytes();
            let at = text.windows(marker.len()).position(|w| w == marker.as_slice()).expect("the marker is in the body");
            return [&text[..at], raw.as_slice(), &text[at + marker.len()..]].concat();
        }
        SchedulePoison::UnknownField(k, v) => {
            s.insert(k.clone(), v.clone());
        }
        SchedulePoison::Field(f, v) => {
            s.insert((*f).into(), v.clone());
        }
        SchedulePoison::MissingField(f) => {
            s.remove(*f);
        }
        SchedulePoison::UnknownJobField(k, v) => {
            job.insert(k.clone(), v.clone());
            s.insert("job".into(), Value::Object(job));
        }
        SchedulePoison::JobField(f, v) => {
            job.insert((*f).into(), v.clone());
            s.insert("job".into(), Value::Object(job));
        }
        SchedulePoison::MissingJobField(f) => {
            job.remove(*f);
            s.insert("job".into(), Value::Object(job));
        }
    }
    ser(&s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bad_schedule_bodies_each_get_a_json_4xx_and_change_nothing() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    // One schedule to PATCH, and whose name a create may not take over.
    let (status, existing) = env
        .post(&key, "/v1/schedules", &json!({"name": "nightly", "cron": "0 3 * * *", "job": {"model": "flux-dev", "input": {"p": 1}}}))
        .await;
    assert_eq!(status, 201, "{existing}");
    let path = format!("/v1/schedules/{}", existing["id"].as_str().expect("id"));
    let create = (valid_schedule(false), schedule_poison(false), valid_template())
        .prop_map(|(s, p, t)| post("/v1/schedules", apply_schedule(s, &p, false, t)));
    let patch = (valid_schedule(true), schedule_poison(true), valid_template()).prop_map(move |(s, p, t)| {
        Req::new(Method::PATCH, path.clone(), Expect::ClientError).body(apply_schedule(s, &p, true, t))
    });
    throw(&env, &key, "schedule bodies", Cases::SCHEDULE_BODIES, prop_oneof![create, patch]);
    let (_, list) = env.get(&key, "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(1), "{list}");
}

/// serde reads a struct from an array of its fields too; the top-level body
/// is checked to be an object (`extract::require_object`), the nested
/// template is not.
#[tokio::test]
async fn a_schedule_template_given_as_an_array_is_refused() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let template = json!(["flux-dev", {"p": 1}, "low", null, null, null]);
    let (status, body) =
        env.post(&key, "/v1/schedules", &json!({"name": "n", "cron": "@daily", "job": template})).await;
    assert_eq!(status, 422, "{body}");
    let (status, created) =
        env.post(&key, "/v1/schedules", &json!({"name": "m", "cron": "@daily", "job": {"model": "flux-dev", "input": {}}})).await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/v1/schedules/{}", created["id"].as_str().unwrap());
    let resp = env.http.patch(env.url(&path)).bearer_auth(&key).json(&json!({"job": template})).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 422);
    let (_, list) = env.get(&key, "/v1/schedules").await;
    assert_eq!(list["schedules"].as_array().map(Vec::len), Some(1), "{list}");
}

/// Unknown paths (404) and known paths with a method they do not serve (405).
fn bad_route() -> impl Strategy<Value = Req> {
    let seg = "[a-zA-Z0-9_~-]{1,12}";
    let methods = vec![Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
    let unknown = (
        select(methods),
        prop_oneof![
            seg.prop_map(|s| format!("/v2/{s}")),
            seg.prop_filter("unknown", |s| s != "jobs" && s != "windows").prop_map(|s| format!("/v1/{s}")),
            (seg, seg).prop_map(|(a, b)| format!("/v1/jobs/{a}/{b}")),
            seg.prop_filter("unknown", |s| s != "next").prop_map(|s| format!("/v1/windows/{s}")),
            Just("/v1/jobs/".to_owned()),
            Just("/".to_owned()),
            Just("/v1".to_owned()),
            Just("/V1/JOBS".to_owned()),
            Just("//v1/jobs".to_owned()),
            Just("/healthz/".to_owned()),
        ],
    )
        .prop_map(|(m, p)| Req::new(m, p, Expect::Status(404)));
    let id = Uuid::now_v7();
    let wrong_method: Vec<(Method, String)> = vec![
        (Method::PUT, "/v1/jobs".into()),
        (Method::PATCH, "/v1/jobs".into()),
        (Method::DELETE, "/v1/jobs".into()),
        (Method::GET, "/v1/jobs/bulk".into()),
        (Method::PUT, "/v1/jobs/bulk".into()),
        (Method::DELETE, "/v1/jobs/bulk".into()),
        (Method::POST, format!("/v1/jobs/{id}")),
        (Method::PUT, format!("/v1/jobs/{id}")),
        (Method::PATCH, format!("/v1/jobs/{id}")),
        (Method::POST, "/v1/windows/next".into()),
        (Method::DELETE, "/v1/windows/next".into()),
        (Method::POST, "/healthz".into()),
        (Method::PUT, "/readyz".into()),
        (Method::POST, "/metrics".into()),
        (Method::POST, "/openapi.json".into()),
    ];
    let wrong = select(wrong_method).prop_map(|(m, p)| Req::new(m, p, Expect::Status(405)));
    (prop_oneof![unknown, wrong], prop_oneof![Just(Auth::Valid), bad_auth()], option::of(vec(any::<u8>(), 0..200)))
        .prop_map(|(mut req, auth, body)| {
            req.auth = auth;
            req.body = body;
            req
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_unknown_routes_and_methods_are_json_404s_and_405s() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    throw(&env, &key, "routes and methods", Cases::ROUTING, bad_route());
    assert_eq!(env.count_jobs().await, 0);
}

// ---------------------------------------------------------------- oversized bodies

/// With a 4 KiB body limit, any larger body is a JSON 413, valid or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_bodies_over_the_limit_are_json_413s() {
    let limits = Limits { max_body_bytes: 4096, ..Limits::default() };
    let env = TestEnv::with(EnvOptions { api: ApiConfig { limits, ..ApiConfig::default() }, ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    let strategy = (
        any::<bool>(),
        prop_oneof![
            (4097usize..40_000).prop_map(|n| {
                let prompt = "x".repeat(n);
                (serde_json::to_vec(&json!({"model": "flux-schnell", "input": {"p": prompt}})).unwrap(), serde_json::to_vec(&json!({"model": "flux-schnell", "inputs": [{"p": prompt}]})).unwrap())
            }),
            vec(any::<u8>(), 4097..20_000).prop_map(|b| (b.clone(), b)),
        ],
    )
        .prop_map(|(bulk, (single, many))| {
            let (path, body) = if bulk { ("/v1/jobs/bulk", many) } else { ("/v1/jobs", single) };
            Req { expect: Expect::Status(413), ..post(path, body) }
        });
    throw(&env, &key, "bodies over a 4 KiB limit", Cases::OVERSIZED, strategy);
    assert_eq!(env.count_jobs().await, 0);
}

/// And the real 32 MiB limit, once per submission route.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_32_mib_are_json_413s() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let big = "x".repeat(32 * 1024 * 1024 + 1);
    let cases = vec![
        post("/v1/jobs", serde_json::to_vec(&json!({"model": "flux-schnell", "input": {"p": big}})).unwrap()),
        post("/v1/jobs/bulk", serde_json::to_vec(&json!({"model": "flux-schnell", "inputs": [{"p": big}]})).unwrap()),
    ];
    for req in cases {
        let req = Req { expect: Expect::Status(413), ..req };
        if let Err(e) = check(&env, &key, &req).await {
            panic!("{e}\nthe request:\n{req:?}");
        }
    }
}

// ---------------------------------------------------------------- Idempotency-Key

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_reused_with_generated_other_bodies_is_a_409_and_bad_keys_a_400() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let original = br#"{"model": "flux-schnell", "input": {"prompt": "fox"}}"#;
    let first = env.http.post(env.url("/v1/jobs")).bearer_auth(&key).header("idempotency-key", "order-1").body(original.to_vec()).send().await.unwrap();
    assert_eq!(first.status().as_u16(), 201);

    let reuse = (valid_job(false), "[a-z ]{0,20}").prop_map(|(mut job, prompt)| {
        let mut input = job.get("input").and_then(Value::as_object).cloned().unwrap_or_default();
        input.insert("prompt".into(), format!("not {prompt}").into());
        job.insert("input".into(), Value::Object(input));
        let mut req = Req { expect: Expect::Status(409), ..post("/v1/jobs", serde_json::to_vec(&job).unwrap()) };
        req.headers.push(("idempotency-key", b"order-1".to_vec()));
        req
    });
    let bad_key = (
        valid_job(false),
        prop_oneof![
            Just(Vec::new()),
            "[!-~]{256,400}".prop_map(String::into_bytes),
            vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..40).prop_map(|mut k| {
                k.push(0xe9);
                k
            }),
        ],
    )
        .prop_map(|(job, idem)| {
            let mut req = Req { expect: Expect::Status(400), ..post("/v1/jobs", serde_json::to_vec(&job).unwrap()) };
            req.headers.push(("idempotency-key", idem));
            req
        });
    // A refused body under a fresh key: refused, and the key is not used up.
    let fresh = (valid_job(false), poison(false), "[a-z0-9]{8}").prop_map(|(job, p, k)| {
        let mut req = post("/v1/jobs", apply(job, &p, false));
        req.headers.push(("idempotency-key", format!("fresh-{k}").into_bytes()));
        req
    });
    throw(&env, &key, "Idempotency-Key", Cases::IDEMPOTENCY, prop_oneof![2 => reuse, 1 => bad_key, 1 => fresh]);
    assert_eq!(env.count_jobs().await, 1, "only the original job");

    let refused = env.http.post(env.url("/v1/jobs")).bearer_auth(&key).header("idempotency-key", "order-2").body(&b"{\"model\": 1}"[..]).send().await.unwrap();
    assert_eq!(refused.status().as_u16(), 422);
    let accepted = env.http.post(env.url("/v1/jobs")).bearer_auth(&key).header("idempotency-key", "order-2").body(&original[..]).send().await.unwrap();
    assert_eq!(accepted.status().as_u16(), 201, "a refused request does not use up its key");
}


/// Numbers at the ends of what a JSON number can be here (f64): PostgreSQL
/// keeps a JSONB number exactly and writes it back in full decimal (309
/// digits for 1.7976931348623155e308), and that text must parse back to the
/// same number. Found by schemathesis: such an input was a 500 once stored.
#[tokio::test]
async fn numbers_at_the_ends_of_f64_are_accepted_and_read_back_unchanged() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let numbers = json!([1.7976931348623155e308, f64::MAX, -f64::MAX, f64::MIN_POSITIVE, 5e-324, -5e-324, 0.1, 123456789.12345679]);
    let input = json!({"n": numbers.clone(), "deep": {"max": f64::MAX}});
    let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": input, "metadata": numbers})).await;
    assert_eq!(status, 201, "{job}");
    let (status, bulk) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [input.clone(), {"x": f64::MAX}]})).await;
    assert_eq!(status, 201, "{bulk}");
    let id = job["id"].as_str().expect("id");
    let (status, read) = env.get(&key, &format!("/v1/jobs/{id}")).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!((&read["input"], &read["metadata"]), (&input, &numbers));
    let (status, list) = env.get(&key, "/v1/jobs").await;
    assert_eq!(status, 200, "{list}");
    assert!(list["jobs"].as_array().expect("jobs").iter().any(|j| j["input"] == input), "{list}");
    let template = json!({"model": "flux-schnell", "input": input, "metadata": {"n": numbers}});
    let (status, schedule) = env.post(&key, "/v1/schedules", &json!({"name": "edges", "cron": "@daily", "job": template})).await;
    assert_eq!(status, 201, "{schedule}");
    assert_eq!(schedule["job"]["input"], input);
    let path = format!("/v1/schedules/{}", schedule["id"].as_str().expect("id"));
    let resp = env.http.patch(env.url(&path)).bearer_auth(&key).json(&json!({"job": template})).send().await.expect("request");
    let (status, patched) = TestEnv::read(resp).await;
    assert_eq!((status, &patched["job"]["metadata"]), (200, &json!({"n": numbers})), "{patched}");
}
