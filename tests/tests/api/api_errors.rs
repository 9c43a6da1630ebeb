//! docs/spec.md, "HTTP API": every error is JSON,
//! `{"error": {"code", "message", "field"?}}`, with the fitting status; bad
//! input never stores anything, never crashes a process, and never leaks
//! another tenant's data.
//!
//! Each test sends one kind of bad request and checks the status, the error
//! code, the field it names, that the message says something useful, and
//! that the jobs table is still empty afterwards.

use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_tests::harness::TestEnv;

/// A response read whatever it carries, so a non-JSON error fails the test
/// with a message instead of a panic inside the harness.
struct Raw {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Raw {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|_| {
            panic!(
                "status {} answered with a body that is not JSON (content-type {:?}): {:.300}",
                self.status,
                self.headers.get("content-type"),
                self.text
            )
        })
    }
}

async fn send(req: reqwest::RequestBuilder) -> Raw {
    let resp = req.send().await.expect("request reaches the API");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("response body");
    Raw { status, headers, text }
}

/// POSTs exactly these bytes with the tenant's key.
async fn post_raw(env: &TestEnv, key: &str, path: &str, body: impl Into<reqwest::Body>) -> Raw {
    send(env.http.post(env.url(path)).bearer_auth(key).header("content-type", "application/json").body(body)).await
}

/// Checks the error shape and returns the message.
///
/// The body must be exactly `{"error": {...}}` with `code`, a non-empty
/// `message`, and `field` only when one is expected.
#[track_caller]
fn assert_error(status: u16, body: &Value, want_status: u16, code: &str, field: Option<&str>) -> String {
    assert_eq!(status, want_status, "status; body {body}");
    let obj = body.as_object().unwrap_or_else(|| panic!("error body is not an object: {body}"));
    assert_eq!(obj.len(), 1, "the body holds only `error`: {body}");
    let err = &body["error"];
    assert_eq!(err["code"], code, "error code; body {body}");
    let message = err["message"].as_str().unwrap_or_else(|| panic!("error.message is a string: {body}"));
    assert!(!message.trim().is_empty(), "error.message says something: {body}");
    match field {
        Some(f) => assert_eq!(err["field"], f, "error.field; body {body}"),
        None => assert!(err.get("field").is_none(), "no error.field expected: {body}"),
    }
    message.to_owned()
}

/// Same, for a [`Raw`] response; also checks the content type is JSON.
#[track_caller]
fn assert_raw_error(r: &Raw, want_status: u16, code: &str, field: Option<&str>) -> String {
    let body = r.json();
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert!(ct.starts_with("application/json"), "errors are served as JSON, got content-type {ct:?}: {}", r.text);
    assert_error(r.status, &body, want_status, code, field)
}

async fn assert_nothing_stored(env: &TestEnv) {
    assert_eq!(env.count_jobs().await, 0, "bad input stores nothing");
}

fn valid_job() -> Value {
    json!({"model": "flux-schnell", "input": {"prompt": "a red fox"}})
}

fn job_id(v: &Value) -> Uuid {
    v["id"].as_str().unwrap_or_else(|| panic!("job has an id: {v}")).parse().unwrap()
}

// ---------------------------------------------------------------- 401

#[tokio::test]
async fn a_request_without_an_authorization_header_is_a_401() {
    let env = TestEnv::new().await;
    let r = send(env.http.post(env.url("/v1/jobs")).json(&valid_job())).await;
    let msg = assert_raw_error(&r, 401, "unauthorized", None);
    assert!(msg.contains("Bearer"), "the message says how to authenticate: {msg}");
    let r = send(env.http.get(env.url("/v1/jobs"))).await;
    assert_raw_error(&r, 401, "unauthorized", None);
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn basic_authentication_is_a_401_even_with_a_valid_key_as_password() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = send(env.http.post(env.url("/v1/jobs")).basic_auth("acme", Some(&key)).json(&valid_job())).await;
    let msg = assert_raw_error(&r, 401, "unauthorized", None);
    assert!(msg.contains("Bearer"), "the message names the expected scheme: {msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_wrong_bearer_key_is_a_401() {
    let env = TestEnv::new().await;
    let _real = env.tenant("acme", "UTC").await;
    // Right format (`op_` and 64 hex digits), but no tenant has it.
    let wrong = format!("op_{}", "0".repeat(64));
    let r = send(env.http.post(env.url("/v1/jobs")).bearer_auth(&wrong).json(&valid_job())).await;
    let msg = assert_raw_error(&r, 401, "unauthorized", None);
    assert!(msg.contains("invalid API key"), "{msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn keys_of_another_format_are_a_401() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    for (case, header) in [
        ("another provider's key", "Bearer sk-live-51HxYzAbCdEf".to_owned()),
        ("an empty key", "Bearer ".to_owned()),
        ("no scheme, just the key", key.clone()),
        ("another scheme", format!("Token {key}")),
        ("a key longer than any we issue", format!("Bearer {}", "a".repeat(300))),
        ("a valid key with trailing junk", format!("Bearer {key}x")),
    ] {
        let r = send(env.http.post(env.url("/v1/jobs")).header("authorization", header).json(&valid_job())).await;
        assert_eq!(r.status, 401, "{case}: {}", r.text);
        assert_raw_error(&r, 401, "unauthorized", None);
    }
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 400 invalid_json

#[tokio::test]
async fn a_body_that_is_not_json_is_a_400_invalid_json() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    for (case, body) in [
        ("plain text", "model=flux-schnell&input=fox"),
        ("empty body", ""),
        ("truncated JSON", r#"{"model": "flux-schnell", "input": {"prompt": "a red"#),
        ("trailing garbage after the JSON", r#"{"model": "flux-schnell", "input": {}} trailing"#),
        ("two JSON values", r#"{"model": "flux-schnell", "input": {}}{"model": "flux-dev", "input": {}}"#),
        ("single quotes", "{'model': 'flux-schnell', 'input': {}}"),
        ("a lone surrogate escape", r#"{"model": "flux-schnell", "input": {"prompt": "\ud800"}}"#),
    ] {
        // The same mistakes in a bulk-shaped body.
        let bulk = body.replace(r#""input": {"#, r#""inputs": [{"#).replace("}}", "}]}");
        for (path, body) in [("/v1/jobs", body.to_owned()), ("/v1/jobs/bulk", bulk)] {
            let r = post_raw(&env, &key, path, body.clone()).await;
            assert_eq!(r.status, 400, "{case} on {path} ({body}): {}", r.text);
            let msg = assert_raw_error(&r, 400, "invalid_json", None);
            assert!(msg.contains("not valid JSON"), "{case} on {path}: {msg}");
        }
    }
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn non_utf8_bytes_are_a_400_invalid_json() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    // Inside a string, and outside any string.
    let mut in_string = br#"{"model": "flux-schnell", "input": {"prompt": ""#.to_vec();
    in_string.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    in_string.extend_from_slice(br#""}}"#);
    let bare = vec![0xff, 0xfe, 0x00, 0x7b];
    for body in [in_string, bare] {
        let r = post_raw(&env, &key, "/v1/jobs", body).await;
        let msg = assert_raw_error(&r, 400, "invalid_json", None);
        assert!(msg.contains("not valid JSON"), "{msg}");
    }
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn json_nested_ten_thousand_levels_deep_is_a_400_not_a_stack_overflow() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let depth = 10_000;
    let deep = format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    let body = format!(r#"{{"model": "flux-schnell", "input": {deep}}}"#);
    let r = post_raw(&env, &key, "/v1/jobs", body.clone()).await;
    let msg = assert_raw_error(&r, 400, "invalid_json", None);
    assert!(msg.contains("recursion limit"), "the message names the cause: {msg}");

    let arrays = format!(r#"{{"model": "flux-schnell", "inputs": [{}{}]}}"#, "[".repeat(depth), "]".repeat(depth));
    let r = post_raw(&env, &key, "/v1/jobs/bulk", arrays).await;
    assert_raw_error(&r, 400, "invalid_json", None);

    // The server is still there.
    let (status, _) = env.post(&key, "/v1/jobs", &valid_job()).await;
    assert_eq!(status, 201);
    assert_eq!(env.count_jobs().await, 1, "only the valid job is stored");
}

#[tokio::test]
async fn a_number_too_big_for_f64_is_a_400_invalid_json() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = post_raw(&env, &key, "/v1/jobs", r#"{"model": "flux-schnell", "input": {"steps": 1e400}}"#).await;
    let msg = assert_raw_error(&r, 400, "invalid_json", None);
    assert!(msg.contains("number out of range"), "{msg}");
    let r = post_raw(&env, &key, "/v1/jobs/bulk", r#"{"model": "flux-schnell", "inputs": [{"steps": -1e400}]}"#).await;
    assert_raw_error(&r, 400, "invalid_json", None);
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 422 invalid_field

#[tokio::test]
async fn a_missing_model_is_a_422_invalid_field() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"input": {"prompt": "x"}})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "invalid_field");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("missing field `model`"), "{msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]

async fn a_missing_field_is_named_in_error_field() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"input": {"prompt": "x"}})).await;
    assert_error(status, &body, 422, "invalid_field", Some("model"));
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell"})).await;
    assert_error(status, &body, 422, "invalid_field", Some("input"));
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell"})).await;
    assert_error(status, &body, 422, "invalid_field", Some("inputs"));
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_model_given_as_a_number_is_a_422_naming_model() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": 5, "input": {}})).await;
    let msg = assert_error(status, &body, 422, "invalid_field", Some("model"));
    assert!(msg.contains("invalid type") && msg.contains("string"), "{msg}");
    assert!(!msg.contains("line 1"), "no parser positions in a shape error: {msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn an_unknown_top_level_field_is_a_422_naming_it() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) =
        env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}, "colour": "red"})).await;
    let msg = assert_error(status, &body, 422, "invalid_field", Some("colour"));
    assert!(msg.contains("unknown field `colour`"), "{msg}");
    let (status, body) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{}], "input": {}})).await;
    assert_error(status, &body, 422, "invalid_field", Some("input"));
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn an_unknown_priority_is_a_422_naming_priority_and_the_choices() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) =
        env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}, "priority": "urgent"})).await;
    let msg = assert_error(status, &body, 422, "invalid_field", Some("priority"));
    assert!(msg.contains("urgent") && msg.contains("low") && msg.contains("normal"), "{msg}");
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 422 domain errors

#[tokio::test]
async fn an_unknown_timezone_is_a_422_invalid_timezone_naming_the_zone() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) =
        env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}, "timezone": "Mars/Olympus"})).await;
    let msg = assert_error(status, &body, 422, "invalid_timezone", Some("timezone"));
    assert_eq!(msg, "unknown IANA timezone 'Mars/Olympus'", "exactly docs/spec.md's example");
    // The exact body of docs/spec.md's example.
    assert_eq!(
        body,
        json!({"error": {"code": "invalid_timezone", "message": "unknown IANA timezone 'Mars/Olympus'", "field": "timezone"}})
    );
    let (status, body) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{}], "timezone": "Mars/Olympus"}))
        .await;
    assert_error(status, &body, 422, "invalid_timezone", Some("timezone"));
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn an_unknown_model_is_a_422_listing_the_known_models() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "dall-e-3", "input": {}})).await;
    let msg = assert_error(status, &body, 422, "unknown_model", Some("model"));
    assert!(msg.contains("'dall-e-3'"), "the message names the model: {msg}");
    for known in ["flux-schnell", "flux-dev", "flux-pro", "minimax-video", "stable-audio"] {
        assert!(msg.contains(known), "the message lists {known}: {msg}");
    }
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "dall-e-3", "inputs": [{}]})).await;
    assert_error(status, &body, 422, "unknown_model", Some("model"));
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn an_input_that_is_not_an_object_is_a_422_invalid_input() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    for input in [json!(["a", "b"]), json!("a red fox"), Value::Null, json!(42), json!(true)] {
        let (status, body) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": input})).await;
        let msg = assert_error(status, &body, 422, "invalid_input", Some("input"));
        assert!(msg.contains("object"), "input {input}: {msg}");
    }
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_nul_character_in_input_or_metadata_is_refused_cleanly_not_a_500() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    // PostgreSQL's JSONB and TEXT cannot hold U+0000; it must be caught first.
    let cases = [
        ("a NUL in an input string", json!({"model": "flux-schnell", "input": {"prompt": "a\u{0}b"}}), "invalid_input", "input"),
        ("a NUL in an input key", json!({"model": "flux-schnell", "input": {"p\u{0}": "x"}}), "invalid_input", "input"),
        ("a NUL deep in an input", json!({"model": "flux-schnell", "input": {"a": [{"b": ["\u{0}"]}]}}), "invalid_input", "input"),
        (
            "a NUL in metadata",
            json!({"model": "flux-schnell", "input": {}, "metadata": {"note": "\u{0}"}}),
            "invalid_input",
            "metadata",
        ),
        ("a NUL as metadata", json!({"model": "flux-schnell", "input": {}, "metadata": "\u{0}"}), "invalid_input", "metadata"),
        ("a NUL in user_id", json!({"model": "flux-schnell", "input": {}, "user_id": "u\u{0}"}), "invalid_field", "user_id"),
        ("a NUL in timezone", json!({"model": "flux-schnell", "input": {}, "timezone": "UTC\u{0}"}), "invalid_timezone", "timezone"),
    ];
    for (case, body, code, field) in cases {
        let (status, resp) = env.post(&key, "/v1/jobs", &body).await;
        assert_eq!(status, 422, "{case}: {resp}");
        let msg = assert_error(status, &resp, 422, code, Some(field));
        if code == "invalid_input" {
            assert!(msg.contains("NUL"), "{case}: {msg}");
        }
    }
    // Also through the bulk endpoint, in one input among others.
    let (status, resp) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{}, {}, {"prompt": "\u{0}"}]}))
        .await;
    assert_error(status, &resp, 422, "invalid_input", Some("inputs[2]"));
    let (status, resp) = env
        .post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{}], "metadata": {"\u{0}": 1}}))
        .await;
    assert_error(status, &resp, 422, "invalid_input", Some("metadata"));
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 413 and bulk limits

#[tokio::test]
async fn an_input_over_64_kib_is_a_413_but_exactly_64_kib_is_accepted() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    // `{"p":"…"}` is 8 bytes plus the string.
    let over = json!({"model": "flux-schnell", "input": {"p": "x".repeat(65_536 - 8 + 1)}});
    let (status, body) = env.post(&key, "/v1/jobs", &over).await;
    let msg = assert_error(status, &body, 413, "payload_too_large", Some("input"));
    assert!(msg.contains("65537") && msg.contains("65536"), "the message gives size and limit: {msg}");
    let (status, body) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{}, over["input"].clone()]})).await;
    assert_error(status, &body, 413, "payload_too_large", Some("inputs[1]"));
    assert_nothing_stored(&env).await;

    let exact = json!({"model": "flux-schnell", "input": {"p": "x".repeat(65_536 - 8)}});
    let (status, body) = env.post(&key, "/v1/jobs", &exact).await;
    assert_eq!(status, 201, "the limit itself is allowed: {}", body["error"]);
    assert_eq!(env.count_jobs().await, 1);
}

#[tokio::test]
async fn metadata_over_16_kib_is_a_413_naming_metadata() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env
        .post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}, "metadata": {"n": "x".repeat(17 * 1024)}}))
        .await;
    assert_error(status, &body, 413, "payload_too_large", Some("metadata"));
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_bulk_request_with_10_001_inputs_is_a_422_too_many_inputs() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<Value> = (0..10_001).map(|i| json!({"i": i})).collect();
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs})).await;
    let msg = assert_error(status, &body, 422, "too_many_inputs", Some("inputs"));
    assert!(msg.contains("10001") && msg.contains("10000"), "the message gives count and limit: {msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_bulk_request_with_exactly_10_000_inputs_is_accepted() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<Value> = (0..10_000).map(|i| json!({"i": i})).collect();
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs})).await;
    assert_eq!(status, 201, "{}", body["error"]);
    assert_eq!(body["count"], 10_000);
    assert_eq!(env.count_jobs().await, 10_000);
}

#[tokio::test]
async fn a_bulk_request_with_no_inputs_is_a_422() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": []})).await;
    let msg = assert_error(status, &body, 422, "invalid_field", Some("inputs"));
    assert!(msg.contains("at least one"), "{msg}");
    assert_nothing_stored(&env).await;
}

#[tokio::test]
async fn a_bulk_request_with_one_bad_input_names_it_and_stores_none_of_them() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let mut inputs: Vec<Value> = (0..10).map(|i| json!({"prompt": format!("tile {i}")})).collect();
    inputs[5] = json!("tile 5");
    let (status, body) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs})).await;
    let msg = assert_error(status, &body, 422, "invalid_input", Some("inputs[5]"));
    assert!(msg.contains("inputs[5]"), "the message names the input too: {msg}");
    assert_nothing_stored(&env).await;
}

/// 32 MiB and a bit, as one JSON document of the right shape.
fn body_over_32_mib(bulk: bool) -> Vec<u8> {
    let big = "x".repeat(32 * 1024 * 1024 + 1024);
    let v = if bulk {
        json!({"model": "flux-schnell", "inputs": [{"p": big}]})
    } else {
        json!({"model": "flux-schnell", "input": {"p": big}})
    };
    serde_json::to_vec(&v).unwrap()
}

#[tokio::test]
async fn a_bulk_body_over_32_mib_is_a_413_payload_too_large() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = post_raw(&env, &key, "/v1/jobs/bulk", body_over_32_mib(true)).await;
    assert_raw_error(&r, 413, "payload_too_large", None);
    assert_nothing_stored(&env).await;
}

#[tokio::test]

async fn a_single_job_body_over_32_mib_is_a_json_413_payload_too_large() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = post_raw(&env, &key, "/v1/jobs", body_over_32_mib(false)).await;
    assert_raw_error(&r, 413, "payload_too_large", None);
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 404 and 405

#[tokio::test]
async fn an_unknown_or_malformed_job_id_is_a_404() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    for path in [
        format!("/v1/jobs/{}", Uuid::now_v7()),
        "/v1/jobs/not-a-uuid".to_owned(),
        "/v1/jobs/12345".to_owned(),
        "/v1/jobs/%00".to_owned(),
        format!("/v1/jobs/{}x", Uuid::now_v7()),
    ] {
        let (status, body) = env.get(&key, &path).await;
        let msg = assert_error(status, &body, 404, "not_found", None);
        assert_eq!(msg, "job not found", "GET {path}");
        let (status, body) = env.delete(&key, &path).await;
        assert_error(status, &body, 404, "not_found", None);
    }
}

#[tokio::test]

async fn a_job_id_with_invalid_percent_encoding_is_a_json_404() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = send(env.http.get(env.url("/v1/jobs/%FF")).bearer_auth(&key)).await;
    assert_raw_error(&r, 404, "not_found", None);
    let r = send(env.http.delete(env.url("/v1/jobs/%C3%28")).bearer_auth(&key)).await;
    assert_raw_error(&r, 404, "not_found", None);
}

#[tokio::test]
async fn a_tenant_never_sees_or_cancels_another_tenants_job() {
    let env = TestEnv::new().await;
    let a = env.tenant("tenant-a", "UTC").await;
    let b = env.tenant("tenant-b", "UTC").await;
    let (status, job) = env.post(&a, "/v1/jobs", &json!({"model": "flux-dev", "input": {"secret": "a's prompt"}})).await;
    assert_eq!(status, 201, "{job}");
    let path = format!("/v1/jobs/{}", job_id(&job));

    let (status, body) = env.get(&b, &path).await;
    assert_error(status, &body, 404, "not_found", None);
    assert!(!body.to_string().contains("a's prompt"), "nothing of A's job leaks: {body}");
    let (status, body) = env.delete(&b, &path).await;
    assert_error(status, &body, 404, "not_found", None);

    let (status, list) = env.get(&b, "/v1/jobs").await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"], json!([]), "B's listing does not show A's jobs");
    assert!(list["next_cursor"].is_null());
    // Not even when B passes A's job id as a cursor.
    let (status, list) = env.get(&b, &format!("/v1/jobs?cursor={}", Uuid::now_v7())).await;
    assert_eq!(status, 200);
    assert_eq!(list["jobs"], json!([]));

    // A's job is untouched, and A still sees it.
    assert_eq!(env.job(job_id(&job)).await.state, "held");
    let (status, mine) = env.get(&a, &path).await;
    assert_eq!((status, mine["state"].as_str()), (200, Some("held")));
    let (_, list) = env.get(&a, "/v1/jobs").await;
    assert_eq!(list["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn an_unknown_route_is_a_json_404() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    for path in ["/v2/jobs", "/v1/job", "/v1/jobs/bulk/extra", "/"] {
        let r = send(env.http.get(env.url(path)).bearer_auth(&key)).await;
        assert_raw_error(&r, 404, "not_found", None);
        // Without a key too: a 404 for routes, not a 401.
        let r = send(env.http.post(env.url(path)).body("{}")).await;
        assert_raw_error(&r, 404, "not_found", None);
    }
}

#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_a_json_405() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let id = Uuid::now_v7();
    for (method, path) in [
        (reqwest::Method::PUT, "/v1/jobs".to_owned()),
        (reqwest::Method::DELETE, "/v1/jobs".to_owned()),
        (reqwest::Method::GET, "/v1/jobs/bulk".to_owned()),
        (reqwest::Method::PATCH, format!("/v1/jobs/{id}")),
        (reqwest::Method::POST, format!("/v1/jobs/{id}")),
        (reqwest::Method::POST, "/v1/windows/next".to_owned()),
    ] {
        let r = send(env.http.request(method.clone(), env.url(&path)).bearer_auth(&key).json(&valid_job())).await;
        assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
        assert_raw_error(&r, 405, "method_not_allowed", None);
    }
    assert_nothing_stored(&env).await;
}

// ---------------------------------------------------------------- 409 and Idempotency-Key

async fn post_with_key(env: &TestEnv, key: &str, idem: &str, body: &str) -> Raw {
    keyed_post(env, "/v1/jobs", key, idem, body).await
}

/// A submission with an `Idempotency-Key`, its body sent as given.
async fn keyed_post(env: &TestEnv, path: &str, key: &str, idem: &str, body: &str) -> Raw {
    send(
        env.http
            .post(env.url(path))
            .bearer_auth(key)
            .header("content-type", "application/json")
            .header("idempotency-key", idem)
            .body(body.to_owned()),
    )
    .await
}

#[tokio::test]
async fn an_idempotency_key_reused_with_a_different_body_is_a_409() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let first = post_with_key(&env, &key, "order-1", r#"{"model": "flux-schnell", "input": {"prompt": "fox"}}"#).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none(), "the first submission is not a replay");

    let second = post_with_key(&env, &key, "order-1", r#"{"model": "flux-schnell", "input": {"prompt": "wolf"}}"#).await;
    let msg = assert_raw_error(&second, 409, "idempotency_conflict", None);
    assert!(msg.contains("Idempotency-Key"), "{msg}");
    // A different priority is a different request too.
    let third = post_with_key(
        &env,
        &key,
        "order-1",
        r#"{"model": "flux-schnell", "input": {"prompt": "fox"}, "priority": "normal"}"#,
    )
    .await;
    assert_raw_error(&third, 409, "idempotency_conflict", None);
    assert_eq!(env.count_jobs().await, 1, "only the first job is stored");
}

#[tokio::test]
async fn a_replay_with_the_same_body_returns_the_original_job_with_200() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let first = post_with_key(
        &env,
        &key,
        "order-2",
        r#"{"model":"flux-schnell","input":{"prompt":"fox","size":{"w":512,"h":512}},"metadata":{"sku":7}}"#,
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let original = first.json();

    // Same request: keys in another order, other whitespace.
    let replay = post_with_key(
        &env,
        &key,
        "order-2",
        "{\n  \"metadata\": {\"sku\": 7},\n  \"input\": {\"size\": {\"h\": 512, \"w\": 512}, \"prompt\": \"fox\"},\n  \"model\": \"flux-schnell\"\n}\n",
    )
    .await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    assert_eq!(
        replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()),
        Some("true"),
        "a replay says so"
    );
    let replayed = replay.json();
    assert_eq!(replayed["id"], original["id"]);
    assert_eq!(replayed, original, "the original job, as it was");
    assert_eq!(env.count_jobs().await, 1, "a replay stores nothing");
}

#[tokio::test]
async fn two_tenants_may_use_the_same_idempotency_key_independently() {
    let env = TestEnv::new().await;
    let a = env.tenant("tenant-a", "UTC").await;
    let b = env.tenant("tenant-b", "UTC").await;
    let ra = post_with_key(&env, &a, "shared-key", r#"{"model": "flux-schnell", "input": {"prompt": "a"}}"#).await;
    let rb = post_with_key(&env, &b, "shared-key", r#"{"model": "flux-schnell", "input": {"prompt": "b"}}"#).await;
    assert_eq!(ra.status, 201, "{}", ra.text);
    assert_eq!(rb.status, 201, "B's key is B's own, whatever A did with the same string: {}", rb.text);
    assert_ne!(ra.json()["id"], rb.json()["id"]);
    // And the same body under the same key is a new job for the other tenant.
    let rb2 = post_with_key(&env, &b, "a-body", r#"{"model": "flux-schnell", "input": {"prompt": "a"}}"#).await;
    let ra2 = post_with_key(&env, &a, "a-body", r#"{"model": "flux-schnell", "input": {"prompt": "a"}}"#).await;
    assert_eq!((rb2.status, ra2.status), (201, 201));
    assert_eq!(env.count_jobs().await, 4);
}

#[tokio::test]
async fn an_empty_or_over_255_character_idempotency_key_is_a_400() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let body = r#"{"model": "flux-schnell", "input": {}}"#;
    for (case, idem) in [("empty", String::new()), ("256 characters", "k".repeat(256))] {
        let r = post_with_key(&env, &key, &idem, body).await;
        assert_eq!(r.status, 400, "{case}: {}", r.text);
        let msg = assert_raw_error(&r, 400, "invalid_idempotency_key", None);
        assert!(msg.contains("255"), "{case}: {msg}");
    }
    assert_nothing_stored(&env).await;
    let r = post_with_key(&env, &key, &"k".repeat(255), body).await;
    assert_eq!(r.status, 201, "255 characters is the limit, allowed: {}", r.text);
}

async fn bulk_with_key(env: &TestEnv, key: &str, idem: &str, body: &str) -> Raw {
    keyed_post(env, "/v1/jobs/bulk", key, idem, body).await
}

#[tokio::test]
async fn a_bulk_replay_returns_the_original_jobs_and_another_body_is_a_409() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let body = r#"{"model": "flux-schnell", "inputs": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}]}"#;
    let first = bulk_with_key(&env, &key, "night-batch-7", body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.headers.get("idempotent-replayed").is_none(), "the first submission is not a replay");
    let original = first.json();

    // The same request, keys and whitespace otherwise: the same jobs, in order, with 200.
    let again = r#"{ "inputs": [{"prompt": "a"}, {"prompt": "b"}, {"prompt": "c"}], "model": "flux-schnell" }"#;
    let replay = bulk_with_key(&env, &key, "night-batch-7", again).await;
    assert_eq!(replay.status, 200, "{}", replay.text);
    assert_eq!(replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(replay.json(), original, "the original answer, ids in input order");
    assert_eq!(env.count_jobs().await, 3, "a replay stores nothing");

    let other = bulk_with_key(&env, &key, "night-batch-7", r#"{"model": "flux-schnell", "inputs": [{"prompt": "a"}]}"#).await;
    assert_raw_error(&other, 409, "idempotency_conflict", None);
    // A single submission's keys are apart from bulk ones.
    let single = post_with_key(&env, &key, "night-batch-7", r#"{"model": "flux-schnell", "input": {"prompt": "z"}}"#).await;
    assert_eq!(single.status, 201, "{}", single.text);
    let bad = bulk_with_key(&env, &key, "", body).await;
    assert_raw_error(&bad, 400, "invalid_idempotency_key", None);
    assert_eq!(env.count_jobs().await, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_racing_bulk_requests_under_one_key_store_the_jobs_once() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let inputs: Vec<Value> = (0..200).map(|i| json!({"prompt": format!("frame {i}")})).collect();
    let body = json!({"model": "flux-schnell", "inputs": inputs}).to_string();
    let answers = futures_util::future::join_all((0..8).map(|_| bulk_with_key(&env, &key, "racing", &body))).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 1, "one stores them: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 7, "the others replay: {statuses:?}");
    let ids: Vec<Value> = answers.iter().map(|a| a.json()["ids"].clone()).collect();
    assert!(ids.iter().all(|i| *i == ids[0]), "every answer has the same jobs");
    assert_eq!(env.count_jobs().await, 200);
    let groups: i64 = sqlx::query_scalar("SELECT count(*) FROM job_groups").fetch_one(&env.pool).await.unwrap();
    assert_eq!(groups, 1, "one group");
}

// ---------------------------------------------------------------- query errors on GET /v1/jobs

#[tokio::test]
async fn bad_list_queries_are_400s_naming_the_parameter() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let (status, body) = env.get(&key, "/v1/jobs?state=bogus").await;
    let msg = assert_error(status, &body, 400, "invalid_query", Some("state"));
    assert!(msg.contains("bogus") && msg.contains("held"), "names the value and the choices: {msg}");
    for limit in ["0", "abc", "100000", "-1", "", "1.5"] {
        let (status, body) = env.get(&key, &format!("/v1/jobs?limit={limit}")).await;
        let msg = assert_error(status, &body, 400, "invalid_query", Some("limit"));
        assert!(msg.contains("1 to 1000"), "limit={limit}: {msg}");
    }
    let (status, body) = env.get(&key, "/v1/jobs?cursor=notauuid").await;
    assert_error(status, &body, 400, "invalid_cursor", Some("cursor"));
    let (status, body) = env.get(&key, "/v1/jobs?colour=red").await;
    assert_error(status, &body, 400, "invalid_query", None);
    // The bounds themselves are fine.
    for limit in ["1", "1000"] {
        let (status, _) = env.get(&key, &format!("/v1/jobs?limit={limit}")).await;
        assert_eq!(status, 200, "limit={limit}");
    }
}

#[tokio::test]

async fn a_nul_in_a_list_filter_is_refused_cleanly_not_a_500() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let r = send(env.http.get(env.url("/v1/jobs?model=flux%00schnell")).bearer_auth(&key)).await;
    assert!(r.status == 400 || r.status == 200, "a clean answer, not {}: {}", r.status, r.text);
    if r.status == 400 {
        assert_raw_error(&r, 400, "invalid_query", Some("model"));
    } else {
        assert_eq!(r.json()["jobs"], json!([]));
    }
}
