//! Issue 3: "An OpenAPI document at `/openapi.json` describes the API
//! exactly". Exactness is checked both ways, against the running API:
//!
//! - **Routes.** The (method, path) pairs documented are exactly the ones
//!   `router` in `scheduler/src/api/mod.rs` registers: [`ROUTES`] mirrors
//!   that file and is itself compared with the `.route(...)` calls read from
//!   its source, so a route added there without documentation fails here.
//!   Every documented operation is served (never the "no such route" 404 or a
//!   405), and every method not documented on a documented path is a 405.
//! - **Parameters.** Each documented query parameter is accepted with a value
//!   its schema allows; an undocumented one is refused.
//! - **Responses.** Sample requests make the API answer every status it can
//!   (200, 201, 400, 401, 404, 409, 413, 422, 429): each status is documented for
//!   its operation, the body validates against the schema documented for that
//!   status and the content type is the documented one; and, the other way,
//!   every documented status but 500 and 503 is seen among the samples. A
//!   real job has exactly the properties of the `JobView` schema.
//! - **Request bodies.** A body the API accepts validates against the
//!   documented request schema; a body the schema refuses, the API refuses
//!   with a 4xx.
//!
//! The validator below covers the part of JSON Schema the document uses
//! (`$ref`, `type`, `oneOf`/`anyOf`/`allOf`, `enum`, `const`, `properties`,
//! `required`, `additionalProperties`, `propertyNames`, `items`, lengths,
//! `pattern`, bounds, `uuid`, `date-time` and `date` formats) and fails on any
//! keyword it does not know, so it cannot pass a response by ignoring part of
//! a schema. Schemathesis checks the same document far more widely
//! (tests/tests/schemathesis.rs); this file keeps the exact route list, the
//! sample statuses and a validator of its own.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::Method;
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_tests::harness::TestEnv;

/// The routes `router` in `scheduler/src/api/mod.rs` registers, as
/// (method, path). Keep in step with that file; the test
/// [`routes_mirror_the_router_source`] says when they drift.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/jobs"),
    ("POST", "/v1/jobs"),
    ("POST", "/v1/jobs/bulk"),
    ("GET", "/v1/jobs/{id}"),
    ("DELETE", "/v1/jobs/{id}"),
    ("POST", "/v1/jobs/{id}/upgrade"),
    ("GET", "/v1/schedules"),
    ("POST", "/v1/schedules"),
    ("GET", "/v1/schedules/{id}"),
    ("PATCH", "/v1/schedules/{id}"),
    ("DELETE", "/v1/schedules/{id}"),
    ("GET", "/v1/groups/{id}"),
    ("GET", "/v1/groups/{id}/results"),
    ("GET", "/v1/webhooks"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks/{id}"),
    ("PATCH", "/v1/webhooks/{id}"),
    ("DELETE", "/v1/webhooks/{id}"),
    ("POST", "/v1/webhooks/{id}/rotate-secret"),
    ("GET", "/v1/webhooks/{id}/deliveries"),
    ("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay"),
    ("GET", "/v1/windows/next"),
    ("GET", "/v1/usage"),
    ("GET", "/v1/tenant"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/openapi.json"),
];

/// Anchored at the crate's manifest rather than at this file, so that moving
/// the file (as into `tests/api/`) cannot make it read another path.
const ROUTER_SOURCE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../scheduler/src/api/mod.rs"));

const METHODS: [&str; 7] = ["get", "post", "put", "patch", "delete", "head", "options"];

fn routes() -> BTreeSet<(String, String)> {
    ROUTES.iter().map(|(m, p)| (m.to_string(), p.to_string())).collect()
}

/// The (method, path) pairs of the `.route("PATH", get(..).post(..))` calls
/// in the router's source.
fn routes_in_source(src: &str) -> BTreeSet<(String, String)> {
    for construct in [".nest(", ".merge(", ".nest_service(", ".route_service(", "on(MethodFilter", "any("] {
        assert!(
            !src.contains(construct),
            "scheduler/src/api/mod.rs uses `{construct}`: teach routes_in_source (tests/tests/openapi.rs) to read it"
        );
    }
    let mut out = BTreeSet::new();
    for (at, _) in src.match_indices(".route(\"") {
        let rest = &src[at + ".route(".len()..];
        let mut depth = 1;
        let mut end = rest.len();
        for (i, c) in rest.char_indices() {
            match c {
                '(' => depth += 1,
                ')' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        let args = &rest[..end];
        let path = args[1..].split('"').next().expect("a quoted path");
        let method_router = &args[path.len() + 2..];
        let mut found = false;
        for m in METHODS {
            for (i, _) in method_router.match_indices(&format!("{m}(")) {
                let before = method_router[..i].chars().next_back();
                if before.is_none_or(|c| !(c.is_alphanumeric() || c == '_')) {
                    out.insert((m.to_uppercase(), path.to_owned()));
                    found = true;
                }
            }
        }
        assert!(found, "no method found for route {path} in `{method_router}`");
    }
    out
}

#[test]
fn routes_mirror_the_router_source() {
    let in_source = routes_in_source(ROUTER_SOURCE);
    let listed = routes();
    let missing: Vec<_> = in_source.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&in_source).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "ROUTES in tests/tests/openapi.rs no longer mirrors scheduler/src/api/mod.rs: \
         registered but not listed {missing:?}; listed but not registered {extra:?}"
    );
}

// ---------------------------------------------------------------- HTTP

struct Resp {
    status: u16,
    content_type: String,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("status {} with a body that is not JSON ({e}): {:.300}", self.status, self.text))
    }
}

async fn send(req: reqwest::RequestBuilder) -> Resp {
    let resp = req.send().await.expect("the API answers");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let text = resp.text().await.expect("response body");
    Resp { status, content_type, headers, text }
}

async fn fetch_document(env: &TestEnv) -> Value {
    let r = send(env.http.get(env.url("/openapi.json"))).await;
    assert_eq!(r.status, 200, "GET /openapi.json needs no key: {}", r.text);
    assert!(r.content_type.starts_with("application/json"), "{}", r.content_type);
    let doc = r.json();
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "an OpenAPI 3 document: {}", doc["openapi"]);
    doc
}

/// The documented (method, path) pairs.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let paths = doc["paths"].as_object().expect("paths");
    let mut out = BTreeSet::new();
    for (path, item) in paths {
        for (key, _) in item.as_object().expect("a path item") {
            if METHODS.contains(&key.as_str()) {
                out.insert((key.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn operation<'a>(doc: &'a Value, method: &str, path: &str) -> &'a Value {
    let op = &doc["paths"][path][method.to_lowercase()];
    assert!(op.is_object(), "{method} {path} is documented");
    op
}

fn fill(path: &str, id: &str) -> String {
    path.replace("{id}", id).replace("{delivery_id}", id)
}

// ---------------------------------------------------------------- a small JSON Schema validator

/// Resolves `{"$ref": "#/components/schemas/X"}` (repeatedly).
fn resolve<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    while let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("only local references: {r}"));
        schema = doc.pointer(pointer).unwrap_or_else(|| panic!("dangling reference {r}"));
    }
    schema
}

const KNOWN_KEYWORDS: &[&str] = &[
    "$ref", "type", "oneOf", "anyOf", "allOf", "enum", "properties", "required", "additionalProperties", "items",
    "minItems", "maxItems", "minLength", "maxLength", "minimum", "maximum", "format", "description", "example",
    "examples", "default", "title", "propertyNames", "contentMediaType", "pattern", "const",
];

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Appends to `errors` every way `v` (at `at`) breaks `schema`.
fn validate(doc: &Value, schema: &Value, v: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    let Some(s) = schema.as_object() else {
        if schema == &Value::Bool(false) {
            errors.push(format!("{at}: nothing is allowed here"));
        }
        return;
    };
    for key in s.keys() {
        assert!(KNOWN_KEYWORDS.contains(&key.as_str()), "the validator does not know `{key}` (at {at}): extend it");
    }
    if let Some(types) = s.get("type") {
        let types: Vec<&str> = match types {
            Value::String(t) => vec![t.as_str()],
            Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
            other => panic!("bad type {other}"),
        };
        let actual = json_type(v);
        let ok = types.iter().any(|t| {
            *t == actual || (*t == "integer" && (v.is_i64() || v.is_u64())) || (*t == "number" && v.is_number())
        });
        if !ok {
            errors.push(format!("{at}: {actual} where {types:?} is documented"));
            return;
        }
    }
    if let Some(variants) = s.get("enum").and_then(Value::as_array) {
        if !variants.contains(v) {
            errors.push(format!("{at}: {v} is not one of {variants:?}"));
        }
    }
    if let Some(constant) = s.get("const") {
        if constant != v {
            errors.push(format!("{at}: {v} is not {constant}"));
        }
    }
    for (key, exactly_one) in [("oneOf", true), ("anyOf", false)] {
        if let Some(options) = s.get(key).and_then(Value::as_array) {
            let matching = options
                .iter()
                .filter(|o| {
                    let mut e = Vec::new();
                    validate(doc, o, v, at, &mut e);
                    e.is_empty()
                })
                .count();
            if matching == 0 || (exactly_one && matching > 1) {
                errors.push(format!("{at}: {v} matches {matching} of the {key} options"));
            }
        }
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        for o in all {
            validate(doc, o, v, at, errors);
        }
    }
    match v {
        Value::Object(obj) => {
            let properties = s.get("properties").and_then(Value::as_object);
            for r in s.get("required").and_then(Value::as_array).into_iter().flatten() {
                let r = r.as_str().expect("required names");
                if !obj.contains_key(r) {
                    errors.push(format!("{at}: required property `{r}` is missing"));
                }
            }
            if let Some(names) = s.get("propertyNames") {
                for k in obj.keys() {
                    validate(doc, names, &Value::String(k.clone()), &format!("{at} (a key)"), errors);
                }
            }
            for (k, value) in obj {
                match properties.and_then(|p| p.get(k)) {
                    Some(ps) => validate(doc, ps, value, &format!("{at}.{k}"), errors),
                    None => match s.get("additionalProperties") {
                        Some(Value::Bool(false)) => errors.push(format!("{at}: property `{k}` is not documented")),
                        Some(extra @ Value::Object(_)) => validate(doc, extra, value, &format!("{at}.{k}"), errors),
                        _ => {}
                    },
                }
            }
        }
        Value::Array(items) => {
            if let Some(min) = s.get("minItems").and_then(Value::as_u64) {
                if (items.len() as u64) < min {
                    errors.push(format!("{at}: {} items, at least {min} documented", items.len()));
                }
            }
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64) {
                if items.len() as u64 > max {
                    errors.push(format!("{at}: {} items, at most {max} documented", items.len()));
                }
            }
            if let Some(item_schema) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(doc, item_schema, item, &format!("{at}[{i}]"), errors);
                }
            }
        }
        Value::String(text) => {
            let chars = text.chars().count() as u64;
            if s.get("minLength").and_then(Value::as_u64).is_some_and(|min| chars < min) {
                errors.push(format!("{at}: shorter than minLength"));
            }
            if s.get("maxLength").and_then(Value::as_u64).is_some_and(|max| chars > max) {
                errors.push(format!("{at}: longer than maxLength"));
            }
            if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
                // JSON Schema's patterns are ECMA-262 regular expressions, not
                // anchored; those of the document are in the subset the regex
                // crate reads the same way (classes, `\uXXXX`, `\xXX`).
                let re = regex::Regex::new(pattern).unwrap_or_else(|e| panic!("{at}: pattern {pattern} does not compile: {e}"));
                if !re.is_match(text) {
                    errors.push(format!("{at}: {text:?} does not match {pattern}"));
                }
            }
            match s.get("format").and_then(Value::as_str) {
                Some("uuid") if Uuid::parse_str(text).is_err() => errors.push(format!("{at}: {text} is not a uuid")),
                Some("date-time") if chrono::DateTime::parse_from_rfc3339(text).is_err() => {
                    errors.push(format!("{at}: {text} is not an RFC 3339 date-time"))
                }
                Some("date") if chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_err() => {
                    errors.push(format!("{at}: {text} is not an RFC 3339 full-date"))
                }
                _ => {}
            }
        }
        Value::Number(n) => {
            if let (Some(min), Some(x)) = (s.get("minimum").and_then(Value::as_f64), n.as_f64()) {
                if x < min {
                    errors.push(format!("{at}: {x} is below the minimum {min}"));
                }
            }
            if let (Some(max), Some(x)) = (s.get("maximum").and_then(Value::as_f64), n.as_f64()) {
                if x > max {
                    errors.push(format!("{at}: {x} is above the maximum {max}"));
                }
            }
        }
        _ => {}
    }
}

fn errors_of(doc: &Value, schema: &Value, v: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    validate(doc, schema, v, "$", &mut errors);
    errors
}

#[test]
fn the_validator_catches_what_it_should() {
    let doc = json!({"components": {"schemas": {"S": {
        "type": "object", "required": ["a"], "additionalProperties": false,
        "properties": {"a": {"type": "integer", "minimum": 1}, "b": {"oneOf": [{"type": "null"}, {"type": "string", "format": "uuid"}]}}
    }}}});
    let s = json!({"$ref": "#/components/schemas/S"});
    assert!(errors_of(&doc, &s, &json!({"a": 1, "b": null})).is_empty());
    assert!(errors_of(&doc, &s, &json!({"a": 1, "b": Uuid::nil().to_string()})).is_empty());
    for bad in [json!({}), json!({"a": 0}), json!({"a": "1"}), json!({"a": 1, "c": 2}), json!({"a": 1, "b": "x"}), json!([])] {
        assert!(!errors_of(&doc, &s, &bad).is_empty(), "{bad} is refused");
    }
    // `pattern`, `const` and `propertyNames`, as the document uses them.
    let doc = json!({"components": {"schemas": {"J": {
        "pattern": "^[^\\u0000]*$", "propertyNames": {"pattern": "^[^\\u0000]*$"},
        "items": {"$ref": "#/components/schemas/J"}, "additionalProperties": {"$ref": "#/components/schemas/J"}
    }, "K": {"const": "auto"}}}});
    let j = json!({"$ref": "#/components/schemas/J"});
    assert!(errors_of(&doc, &j, &json!({"a": ["b", 1, null, {"c": "d"}]})).is_empty());
    for bad in [json!("a\u{0}"), json!({"a": ["b\u{0}"]}), json!({"a\u{0}": 1}), json!([{"x": {"y\u{0}": 1}}])] {
        assert!(!errors_of(&doc, &j, &bad).is_empty(), "{bad} is refused");
    }
    let k = json!({"$ref": "#/components/schemas/K"});
    assert!(errors_of(&doc, &k, &json!("auto")).is_empty());
    assert!(!errors_of(&doc, &k, &json!("flux-dev")).is_empty());
}

// ---------------------------------------------------------------- routes

#[tokio::test]
async fn the_document_lists_exactly_the_routes_the_router_serves() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let doc = fetch_document(&env).await;

    let documented = documented(&doc);
    let listed = routes();
    let undocumented: Vec<_> = listed.difference(&documented).collect();
    let phantom: Vec<_> = documented.difference(&listed).collect();
    assert!(undocumented.is_empty(), "routes the router serves but the document does not describe: {undocumented:?}");
    assert!(phantom.is_empty(), "documented but not in the router: {phantom:?}");

    let id = Uuid::now_v7().to_string();
    let paths: BTreeSet<&String> = documented.iter().map(|(_, p)| p).collect();
    for path in paths {
        let url = env.url(&fill(path, &id));
        for m in METHODS.iter().filter(|m| **m != "head" && **m != "options") {
            let method = Method::from_bytes(m.to_uppercase().as_bytes()).expect("method");
            let r = send(env.http.request(method, &url).bearer_auth(&key).header("content-type", "application/json").body("{}")).await;
            let fallback = r.status == 404 && r.text.contains("no such route");
            assert!(!fallback, "{m} {path} reaches the no-such-route fallback: {}", r.text);
            let is_documented = documented.contains(&(m.to_uppercase(), path.clone()));
            if is_documented {
                assert_ne!(r.status, 405, "{m} {path} is documented but not served: {}", r.text);
            } else {
                assert_eq!(r.status, 405, "{m} {path} is served but not documented: {}", r.text);
            }
        }
    }
    assert_eq!(env.count_jobs().await, 0, "`{{}}` is no job");
}

#[tokio::test]
async fn v1_operations_require_the_bearer_key_and_the_rest_do_not() {
    let env = TestEnv::new().await;
    let doc = fetch_document(&env).await;
    let scheme = &doc["components"]["securitySchemes"]["api_key"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")), "{scheme}");
    let id = Uuid::now_v7().to_string();
    for (method, path) in documented(&doc) {
        let op = operation(&doc, &method, &path);
        let secured = op["security"] == json!([{"api_key": []}]);
        assert_eq!(secured, path.starts_with("/v1/"), "{method} {path}: security {}", op["security"]);
        let m = Method::from_bytes(method.as_bytes()).expect("method");
        let r = send(env.http.request(m, env.url(&fill(&path, &id))).header("content-type", "application/json").body("{}")).await;
        if secured {
            assert_eq!(r.status, 401, "{method} {path} without a key: {}", r.text);
            assert!(op["responses"]["401"].is_object(), "{method} {path} documents its 401");
        } else {
            assert!(r.status < 400, "{method} {path} needs no key: {} {}", r.status, r.text);
        }
    }
}

// ---------------------------------------------------------------- parameters

/// A value the parameter's schema allows.
fn sample_value(doc: &Value, param: &Value) -> String {
    if let Some(e) = param.get("example").or_else(|| param["schema"].get("example")) {
        return e.as_str().map(str::to_owned).unwrap_or_else(|| e.to_string());
    }
    let mut schema = resolve(doc, &param["schema"]);
    if let Some(options) = schema.get("oneOf").and_then(Value::as_array) {
        schema = resolve(doc, options.iter().find(|o| o["type"] != "null").expect("a non-null option"));
    }
    if let Some(first) = schema.get("enum").and_then(|e| e.get(0)).and_then(Value::as_str) {
        return first.to_owned();
    }
    match (schema["format"].as_str(), schema.get("minimum")) {
        (Some("uuid"), _) => Uuid::now_v7().to_string(),
        (Some("date-time"), _) => "2027-03-14T12:00:00Z".to_owned(),
        (_, Some(min)) => min.to_string(),
        _ => "flux-schnell".to_owned(),
    }
}

#[tokio::test]
async fn every_documented_query_parameter_is_accepted_and_no_other() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let doc = fetch_document(&env).await;
    // A path's `{id}` names a real resource: a webhook endpoint (its deliveries take `limit` and `cursor`).
    let (_, hook) = env.post(&key, "/v1/webhooks", &json!({"url": "https://example.com/hook"})).await;
    let hook_id = hook["id"].as_str().expect("an endpoint").to_owned();
    let mut seen = 0;
    for (method, template) in documented(&doc).into_iter().filter(|(m, _)| m == "GET") {
        let op = operation(&doc, &method, &template);
        let path = template.replace("{id}", &hook_id);
        let params: Vec<&Value> =
            op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "query").collect();
        if params.is_empty() {
            continue;
        }
        let names: Vec<&str> = params.iter().filter_map(|p| p["name"].as_str()).collect();
        let mut all = Vec::new();
        for p in &params {
            let name = p["name"].as_str().expect("name");
            assert_eq!(p["required"], json!(false), "{path}?{name} is optional");
            let value = sample_value(&doc, p);
            let query = format!("{name}={}", urlencode(&value));
            let r = send(env.http.get(env.url(&format!("{path}?{query}"))).bearer_auth(&key)).await;
            // Known, whatever the other parameters' defaults make of it: a
            // 200, or a refusal that names a documented parameter (`start`
            // alone may come after the default `end`), never the "unknown
            // field" one.
            if r.status != 200 {
                let field = r.json()["error"]["field"].as_str().map(str::to_owned);
                assert!(
                    r.status == 400 && field.as_deref().is_some_and(|f| names.contains(&f)),
                    "GET {path}?{query}: {} {}",
                    r.status,
                    r.text
                );
            }
            all.push(query);
            seen += 1;
        }
        let r = send(env.http.get(env.url(&format!("{path}?{}", all.join("&")))).bearer_auth(&key)).await;
        assert_eq!(r.status, 200, "GET {path} with every parameter: {}", r.text);
        let r = send(env.http.get(env.url(&format!("{path}?undocumented=1"))).bearer_auth(&key)).await;
        assert_eq!(r.status, 400, "GET {path}?undocumented=1 is refused: {}", r.text);
        assert!(r.json()["error"].get("field").is_none(), "an unknown parameter names no documented one: {}", r.text);
    }
    assert!(seen >= 6, "the list and window parameters are documented ({seen})");
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------- responses and request bodies

/// Submits `body` and gives the job the state a worker would (`succeeded`,
/// with a result; no longer waiting in `held_jobs`), so that it can be
/// upgraded; returns its id.
async fn succeeded_job(env: &TestEnv, key: &str, body: &Value) -> String {
    let (status, job) = env.post(key, "/v1/jobs", body).await;
    assert_eq!(status, 201, "{job}");
    let id: Uuid = job["id"].as_str().expect("id").parse().expect("a uuid");
    sqlx::query(
        "WITH ended AS (DELETE FROM held_jobs WHERE id = $1)
         UPDATE jobs SET state = 'succeeded', result = '{\"url\": \"https://example.com/x.png\"}', credits = 0,
                finished_at = created_at
         WHERE id = $1",
    )
    .bind(id)
    .execute(&env.pool)
    .await
    .expect("the job succeeds");
    id.to_string()
}

/// One sample request, and what the test expects of it.
struct Sample {
    method: &'static str,
    /// Documented path template.
    template: &'static str,
    /// Path and query sent.
    path: String,
    key: Option<String>,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    expect: u16,
}

fn sample(method: &'static str, template: &'static str, path: impl Into<String>, key: &str, expect: u16) -> Sample {
    Sample { method, template, path: path.into(), key: Some(key.to_owned()), headers: vec![], body: None, expect }
}

impl Sample {
    fn json(mut self, v: Value) -> Self {
        self.body = Some(serde_json::to_vec(&v).expect("serialise"));
        self
    }
    fn raw(mut self, b: &[u8]) -> Self {
        self.body = Some(b.to_vec());
        self
    }
    fn no_key(mut self) -> Self {
        self.key = None;
        self
    }
    fn header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// Checks one response against the document; returns its JSON body, if any.
fn check_response(doc: &Value, s: &Sample, r: &Resp) -> Option<Value> {
    let what = format!("{} {} (answered {})", s.method, s.path, r.status);
    let op = operation(doc, s.method, s.template);
    let documented = &op["responses"][r.status.to_string()];
    assert!(documented.is_object(), "{what}: status {} is not documented for the operation: {}", r.status, r.text);
    let content = documented["content"].as_object().unwrap_or_else(|| panic!("{what}: no content documented"));
    let media = r.content_type.split(';').next().unwrap_or("").trim();
    let (documented_type, media_doc) = content
        .iter()
        .find(|(t, _)| t.split(';').next().unwrap_or("").trim() == media)
        .unwrap_or_else(|| panic!("{what}: content type {} is not documented ({:?})", r.content_type, content.keys()));
    for (name, _) in documented.get("headers").and_then(Value::as_object).into_iter().flatten() {
        assert!(r.headers.contains_key(name.as_str()), "{what}: documented header {name} is missing");
    }
    if !documented_type.starts_with("application/json") {
        return None;
    }
    let body = r.json();
    let errors = errors_of(doc, &media_doc["schema"], &body);
    assert!(errors.is_empty(), "{what}: the body does not match the documented schema: {errors:#?}\n{body}");
    Some(body)
}

/// The request body's documented schema, if the operation takes one.
fn request_schema<'a>(doc: &'a Value, s: &Sample) -> Option<&'a Value> {
    let op = operation(doc, s.method, s.template);
    op.get("requestBody").map(|rb| &rb["content"]["application/json"]["schema"])
}

async fn run(env: &TestEnv, doc: &Value, s: &Sample) -> (u16, Option<Value>) {
    let method = Method::from_bytes(s.method.as_bytes()).expect("method");
    let mut req = env.http.request(method, env.url(&s.path));
    if let Some(k) = &s.key {
        req = req.bearer_auth(k);
    }
    for (name, value) in &s.headers {
        req = req.header(*name, value);
    }
    if let Some(b) = &s.body {
        req = req.header("content-type", "application/json").body(b.clone());
    }
    let r = send(req).await;
    assert_eq!(r.status, s.expect, "{} {}: {}", s.method, s.path, r.text);
    let body = check_response(doc, s, &r);

    // Request bodies, both ways.
    if let (Some(schema), Some(raw)) = (request_schema(doc, s), &s.body) {
        match serde_json::from_slice::<Value>(raw) {
            Ok(sent) => {
                let errors = errors_of(doc, schema, &sent);
                if (200..300).contains(&r.status) {
                    assert!(errors.is_empty(), "{} {}: accepted, yet the documented schema refuses it: {errors:?}", s.method, s.path);
                } else if !errors.is_empty() {
                    assert!((400..500).contains(&r.status), "refused by the schema, so a 4xx");
                }
            }
            Err(_) => assert!((400..500).contains(&r.status), "not JSON, so a 4xx"),
        }
    }
    (r.status, body)
}

#[tokio::test]
async fn every_status_the_api_answers_is_documented_with_the_body_it_carries() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "UTC").await;
    let doc = fetch_document(&env).await;
    let job = json!({"model": "flux-schnell", "input": {"prompt": "a red fox"}, "metadata": {"sku": 7}, "user_id": "u-1"});

    // Jobs to read and cancel.
    let first = sample("POST", "/v1/jobs", "/v1/jobs", &key, 201).json(job.clone());
    let (_, created) = run(&env, &doc, &first).await;
    let created = created.expect("a job");
    let job_id = created["id"].as_str().expect("id").to_owned();
    let job_path = format!("/v1/jobs/{job_id}");
    let unknown_path = format!("/v1/jobs/{}", Uuid::now_v7());

    let big_metadata = json!({"model": "flux-schnell", "input": {}, "metadata": {"blob": "m".repeat(17 * 1024)}});

    // A schedule to read, change and delete.
    let nightly = json!({"name": "nightly", "cron": "0 3 * * *", "timezone": "Asia/Tokyo",
                         "job": {"model": "flux-schnell", "input": {"prompt": "a moon"}, "metadata": {"k": 1}}});
    let first_schedule = sample("POST", "/v1/schedules", "/v1/schedules", &key, 201).json(nightly.clone());
    let (_, schedule) = run(&env, &doc, &first_schedule).await;
    let schedule_id = schedule.expect("a schedule")["id"].as_str().expect("id").to_owned();
    let schedule_path = format!("/v1/schedules/{schedule_id}");
    let unknown_schedule = format!("/v1/schedules/{}", Uuid::now_v7());
    let big_template = json!({"name": "big", "cron": "@daily", "job": {"model": "flux-schnell", "input": {"p": "x".repeat(65 * 1024)}}});
    let too_many: Vec<Value> = (0..10_001).map(|_| json!({})).collect();
    let big_input = json!({"model": "flux-schnell", "inputs": [{}, {"p": "x".repeat(65 * 1024)}]});
    // A tenant whose daily credit limit is spent: 429s.
    // A webhook endpoint, with one delivery (a cancelled job's event) to list and replay.
    let hook = json!({"url": "https://example.com/hooks/offpeak", "events": ["job.cancelled"]});
    let first_hook = sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 201).json(hook.clone());
    let (_, made) = run(&env, &doc, &first_hook).await;
    let hook_path = format!("/v1/webhooks/{}", made.expect("an endpoint")["id"].as_str().expect("id"));
    let unknown_hook = format!("/v1/webhooks/{}", Uuid::now_v7());
    let (_, bulk) = env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": [{"p": "grouped"}], "timezone": "Pacific/Auckland"})).await;
    let group_path = format!("/v1/groups/{}", bulk["group_id"].as_str().expect("a group"));
    env.delete(&key, &format!("/v1/jobs/{}", bulk["ids"][0].as_str().expect("id"))).await;
    offpeak_store::webhooks::fan_out(&env.pool, 1_000, 0).await.expect("the cancel's event fans out");
    let delivery_id: String = sqlx::query_scalar("SELECT id::text FROM webhook_deliveries").fetch_one(&env.pool).await.expect("a delivery");
    // A tenant with the most endpoints allowed.
    let full = env.tenant("full", "UTC").await;
    for _ in 0..offpeak_scheduler::api::webhooks::MAX_ENDPOINTS_PER_TENANT {
        let (status, _) = env.post(&full, "/v1/webhooks", &json!({"url": "https://example.com/h"})).await;
        assert_eq!(status, 201);
    }
    let limited = env.tenant("limited", "UTC").await;
    // Succeeded jobs to upgrade: a preview (whose recorded target an empty body upgrades to), and one of the
    // tenant whose limit is spent.
    let preview = json!({"model": "flux-pro", "input": {"prompt": "a fox"}, "preview": {"model": "flux-schnell"}});
    let upgradable = format!("/v1/jobs/{}/upgrade", succeeded_job(&env, &key, &preview).await);
    let limited_job = json!({"model": "flux-schnell", "input": {"prompt": "to upgrade"}, "user_id": "u-1"});
    let limited_upgrade = format!("/v1/jobs/{}/upgrade", succeeded_job(&env, &limited, &limited_job).await);
    let spent = offpeak_store::tenants::TenantUpdate { daily_credits: Some(Some(0)), ..Default::default() };
    offpeak_store::tenants::update(&env.pool, "limited", &spent).await.expect("set a limit");
    let samples = vec![
        sample("POST", "/v1/jobs", "/v1/jobs", &limited, 429).json(job.clone()),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &limited, 429).json(json!({"model": "flux-schnell", "inputs": [{"p": 1}]})),
        // POST /v1/jobs
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 201).json(json!({"model": "flux-dev", "input": {}, "priority": "normal", "timezone": "Asia/Tokyo"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 201).json(job.clone()).header("idempotency-key", "order-1"),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 200).json(job.clone()).header("idempotency-key", "order-1"),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 409).json(json!({"model": "flux-dev", "input": {}})).header("idempotency-key", "order-1"),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 400).json(job.clone()).header("idempotency-key", ""),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 400).raw(b"{\"model\": "),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 401).json(job.clone()).no_key(),
        sample("POST", "/v1/jobs", "/v1/jobs", "not-a-key", 401).json(job.clone()),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 413).json(big_metadata),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell", "input": {}, "colour": "red"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell", "input": "a string"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell", "input": {}, "priority": "urgent"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell", "input": {}, "user_id": ""})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "m".repeat(101), "input": {}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "dall-e-9", "input": {}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-schnell", "input": {}, "timezone": "Mars/Olympus"})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!([job.clone()])),
        // serde's positional form of the request struct is not the documented object.
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!(["flux-schnell", {"p": 1}, "low", null, null, null])),
        // Model routing as the document's `oneOf` states it: `auto` with a known use case, any
        // other model without one.
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 201).json(json!({"model": "auto", "use_case": "thumbnail", "input": {}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "auto", "input": {}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "auto", "use_case": "mural", "input": {}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-dev", "use_case": "thumbnail", "input": {}})),
        // Lengths are characters, as `maxLength` counts them: 200 of three bytes each.
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 201).json(json!({"model": "flux-dev", "input": {}, "user_id": "€".repeat(200)})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-dev", "input": {}, "user_id": "€".repeat(201)})),
        // NUL, which the document's patterns exclude, in a nested key and in metadata.
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-dev", "input": {"a": [{"b\u{0}": 1}]}})),
        sample("POST", "/v1/jobs", "/v1/jobs", &key, 422).json(json!({"model": "flux-dev", "input": {}, "metadata": ["x\u{0}"]})),
        // POST /v1/jobs/bulk
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 201).json(json!({"model": "flux-schnell", "inputs": [{"p": 1}, {"p": 2}], "metadata": null, "timezone": null})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 201).json(json!({"model": "flux-schnell", "inputs": [{}], "priority": "normal"})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 201).json(json!({"model": "flux-schnell", "inputs": [{"p": 3}]})).header("idempotency-key", "bulk-1"),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 200).json(json!({"model": "flux-schnell", "inputs": [{"p": 3}]})).header("idempotency-key", "bulk-1"),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 409).json(json!({"model": "flux-schnell", "inputs": [{"p": 4}]})).header("idempotency-key", "bulk-1"),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 400).json(json!({"model": "flux-schnell", "inputs": [{}]})).header("idempotency-key", ""),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 400).raw(b"\xff\xfe"),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 401).json(json!({"model": "flux-schnell", "inputs": [{}]})).no_key(),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 413).json(big_input),
        // More inputs than the document's `maxItems`: a 422, as every constraint it states.
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 422).json(json!({"model": "flux-schnell", "inputs": too_many})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 422).json(json!({"model": "flux-schnell", "inputs": []})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 422).json(json!({"model": "flux-schnell", "inputs": [{}, 3]})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 422).json(json!({"model": "flux-schnell", "input": {}})),
        sample("POST", "/v1/jobs/bulk", "/v1/jobs/bulk", &key, 422).json(json!(["flux-schnell", [{"p": 1}], "low", null, null, null])),
        // GET /v1/jobs
        sample("GET", "/v1/jobs", "/v1/jobs", &key, 200),
        sample("GET", "/v1/jobs", "/v1/jobs?limit=1&state=held&model=flux-schnell", &key, 200),
        sample("GET", "/v1/jobs", "/v1/jobs?state=bogus", &key, 400),
        sample("GET", "/v1/jobs", "/v1/jobs?cursor=nope", &key, 400),
        sample("GET", "/v1/jobs", "/v1/jobs", &key, 401).no_key(),
        // GET and DELETE /v1/jobs/{id}
        sample("GET", "/v1/jobs/{id}", job_path.clone(), &key, 200),
        sample("GET", "/v1/jobs/{id}", unknown_path.clone(), &key, 404),
        sample("GET", "/v1/jobs/{id}", "/v1/jobs/not-a-uuid", &key, 404),
        sample("GET", "/v1/jobs/{id}", job_path.clone(), &key, 401).no_key(),
        sample("DELETE", "/v1/jobs/{id}", job_path.clone(), &key, 401).no_key(),
        sample("DELETE", "/v1/jobs/{id}", job_path.clone(), &key, 200),
        sample("DELETE", "/v1/jobs/{id}", job_path.clone(), &key, 409),
        sample("DELETE", "/v1/jobs/{id}", unknown_path.clone(), &key, 404),
        // POST /v1/jobs/{id}/upgrade
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 201),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 200).json(json!({})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 201).json(json!({"model": "flux-pro", "input": {"width": 1024}})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 200).json(json!({"input": {"width": 1024}, "model": "flux-pro"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 201)
            .json(json!({"use_case": "print", "priority": "normal", "input": null, "metadata": null})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 201).json(json!({"model": "auto", "use_case": "marketing", "metadata": {"k": 1}})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 400).raw(b"{\"model\": "),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 401).json(json!({})).no_key(),
        sample("POST", "/v1/jobs/{id}/upgrade", format!("{unknown_path}/upgrade"), &key, 404).json(json!({})),
        sample("POST", "/v1/jobs/{id}/upgrade", "/v1/jobs/nope/upgrade", &key, 404).json(json!({})),
        sample("POST", "/v1/jobs/{id}/upgrade", format!("{job_path}/upgrade"), &key, 409).json(json!({"model": "flux-pro"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 413).json(json!({"input": {"p": "x".repeat(65 * 1024)}})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!({"model": "dall-e-9"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!({"model": "auto"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!({"model": "flux-dev", "use_case": "print"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!({"input": "wider"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!({"colour": "red"})),
        sample("POST", "/v1/jobs/{id}/upgrade", upgradable.clone(), &key, 422).json(json!(["flux-pro"])),
        // A job submitted without a preview records no target to upgrade to.
        sample("POST", "/v1/jobs/{id}/upgrade", limited_upgrade.clone(), &limited, 422).json(json!({})),
        sample("POST", "/v1/jobs/{id}/upgrade", limited_upgrade.clone(), &limited, 429).json(json!({"model": "flux-pro"})),
        // POST /v1/schedules
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 200).json(nightly.clone()),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 201)
            .json(json!({"name": "paused", "cron": "*/5 * * * *", "catch_up": "none", "paused": true, "job": {"model": "flux-dev", "input": {}, "priority": "normal", "user_id": "u"}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 409)
            .json(json!({"name": "nightly", "cron": "0 4 * * *", "job": {"model": "flux-schnell", "input": {}}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 400).raw(b"{\"name\": "),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 401).json(nightly.clone()).no_key(),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 413).json(big_template.clone()),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!({"name": "x", "cron": "61 * * * *", "job": {"model": "flux-schnell", "input": {}}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!({"name": "x", "cron": "* * * * *", "job": {"model": "flux-schnell", "input": {}}, "colour": 1})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!({"name": "", "cron": "* * * * *", "job": {"model": "flux-schnell", "input": {}}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!({"name": "x", "cron": "* * * * *", "catch_up": "some", "job": {"model": "flux-schnell", "input": {}}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!({"name": "x", "cron": "* * * * *", "job": {"model": "flux-schnell", "input": {}, "metadata": [1]}})),
        sample("POST", "/v1/schedules", "/v1/schedules", &key, 422).json(json!(["x", "* * * * *", null, "latest", false, {"model": "flux-schnell", "input": {}}])),
        // GET /v1/schedules
        sample("GET", "/v1/schedules", "/v1/schedules", &key, 200),
        sample("GET", "/v1/schedules", "/v1/schedules?limit=1", &key, 200),
        sample("GET", "/v1/schedules", "/v1/schedules?limit=0", &key, 400),
        sample("GET", "/v1/schedules", "/v1/schedules", &key, 401).no_key(),
        // GET, PATCH and DELETE /v1/schedules/{id}
        sample("GET", "/v1/schedules/{id}", schedule_path.clone(), &key, 200),
        sample("GET", "/v1/schedules/{id}", unknown_schedule.clone(), &key, 404),
        sample("GET", "/v1/schedules/{id}", "/v1/schedules/nope", &key, 404),
        sample("GET", "/v1/schedules/{id}", schedule_path.clone(), &key, 401).no_key(),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 200).json(json!({"paused": true})),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 200).json(json!({"paused": false, "cron": "0 4 * * *", "catch_up": "all"})),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 400).raw(b"paused=true"),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 401).json(json!({"paused": true})).no_key(),
        sample("PATCH", "/v1/schedules/{id}", unknown_schedule.clone(), &key, 404).json(json!({"paused": true})),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 413).json(json!({"job": big_template["job"].clone()})),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 422).json(json!({"timezone": "Mars/Olympus"})),
        sample("PATCH", "/v1/schedules/{id}", schedule_path.clone(), &key, 422).json(json!({"name": "renamed"})),
        sample("DELETE", "/v1/schedules/{id}", schedule_path.clone(), &key, 401).no_key(),
        sample("DELETE", "/v1/schedules/{id}", schedule_path.clone(), &key, 200),
        sample("DELETE", "/v1/schedules/{id}", schedule_path.clone(), &key, 404),
        // Groups: the bulk submissions above made some.
        sample("GET", "/v1/groups/{id}", group_path.clone(), &key, 200),
        sample("GET", "/v1/groups/{id}", format!("/v1/groups/{}", Uuid::now_v7()), &key, 404),
        sample("GET", "/v1/groups/{id}", group_path.clone(), &key, 401).no_key(),
        sample("GET", "/v1/groups/{id}/results", format!("{group_path}/results"), &key, 200),
        sample("GET", "/v1/groups/{id}/results", format!("/v1/groups/{}/results", Uuid::now_v7()), &key, 404),
        sample("GET", "/v1/groups/{id}/results", format!("{group_path}/results"), &key, 401).no_key(),
        // Webhooks
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 400).raw(b"{\"url\": "),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 401).json(hook.clone()).no_key(),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &full, 409).json(hook.clone()),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 413).json(json!({"url": "https://example.com/", "description": "d".repeat(33 * 1024 * 1024)})),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 422).json(json!({"url": "http://example.com/hook"})),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 422).json(json!({"url": "https://169.254.169.254/"})),
        sample("POST", "/v1/webhooks", "/v1/webhooks", &key, 422).json(json!({"url": "https://example.com/", "events": ["job.exploded"]})),
        sample("GET", "/v1/webhooks", "/v1/webhooks", &key, 200),
        sample("GET", "/v1/webhooks", "/v1/webhooks", &key, 401).no_key(),
        sample("GET", "/v1/webhooks/{id}", hook_path.clone(), &key, 200),
        sample("GET", "/v1/webhooks/{id}", unknown_hook.clone(), &key, 404),
        sample("GET", "/v1/webhooks/{id}", hook_path.clone(), &key, 401).no_key(),
        sample("PATCH", "/v1/webhooks/{id}", hook_path.clone(), &key, 200).json(json!({"enabled": false, "description": null})),
        sample("PATCH", "/v1/webhooks/{id}", hook_path.clone(), &key, 400).raw(b"enabled=true"),
        sample("PATCH", "/v1/webhooks/{id}", hook_path.clone(), &key, 401).json(json!({"enabled": true})).no_key(),
        sample("PATCH", "/v1/webhooks/{id}", unknown_hook.clone(), &key, 404).json(json!({"enabled": true})),
        sample("PATCH", "/v1/webhooks/{id}", hook_path.clone(), &key, 413).json(json!({"description": "d".repeat(33 * 1024 * 1024)})),
        sample("PATCH", "/v1/webhooks/{id}", hook_path.clone(), &key, 422).json(json!({"url": "https://10.0.0.1/"})),
        sample("POST", "/v1/webhooks/{id}/rotate-secret", format!("{hook_path}/rotate-secret"), &key, 200),
        sample("POST", "/v1/webhooks/{id}/rotate-secret", format!("{unknown_hook}/rotate-secret"), &key, 404),
        sample("POST", "/v1/webhooks/{id}/rotate-secret", format!("{hook_path}/rotate-secret"), &key, 401).no_key(),
        sample("GET", "/v1/webhooks/{id}/deliveries", format!("{hook_path}/deliveries?limit=1"), &key, 200),
        sample("GET", "/v1/webhooks/{id}/deliveries", format!("{hook_path}/deliveries?limit=0"), &key, 400),
        sample("GET", "/v1/webhooks/{id}/deliveries", format!("{unknown_hook}/deliveries"), &key, 404),
        sample("GET", "/v1/webhooks/{id}/deliveries", format!("{hook_path}/deliveries"), &key, 401).no_key(),
        sample("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", format!("{hook_path}/deliveries/{delivery_id}/replay"), &key, 202),
        sample("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", format!("{hook_path}/deliveries/{}/replay", Uuid::now_v7()), &key, 404),
        sample("POST", "/v1/webhooks/{id}/deliveries/{delivery_id}/replay", format!("{hook_path}/deliveries/{delivery_id}/replay"), &key, 401).no_key(),
        sample("DELETE", "/v1/webhooks/{id}", hook_path.clone(), &key, 401).no_key(),
        sample("DELETE", "/v1/webhooks/{id}", hook_path.clone(), &key, 200),
        sample("DELETE", "/v1/webhooks/{id}", hook_path.clone(), &key, 404),
        // GET /v1/windows/next
        sample("GET", "/v1/windows/next", "/v1/windows/next", &key, 200),
        sample("GET", "/v1/windows/next", "/v1/windows/next?timezone=Asia%2FTokyo&at=2027-03-14T12%3A00%3A00Z", &key, 200),
        sample("GET", "/v1/windows/next", "/v1/windows/next?at=yesterday", &key, 400),
        sample("GET", "/v1/windows/next", "/v1/windows/next?timezone=Mars%2FOlympus", &key, 422),
        sample("GET", "/v1/windows/next", "/v1/windows/next", &key, 401).no_key(),
        // GET /v1/usage and /v1/tenant
        sample("GET", "/v1/usage", "/v1/usage", &key, 200),
        sample("GET", "/v1/usage", "/v1/usage?start=2027-06-01&end=2027-06-30&group_by=day", &key, 200),
        sample("GET", "/v1/usage", "/v1/usage?group_by=user", &key, 200),
        sample("GET", "/v1/usage", "/v1/usage?group_by=colour", &key, 400),
        sample("GET", "/v1/usage", "/v1/usage?start=yesterday", &key, 400),
        sample("GET", "/v1/usage", "/v1/usage", &key, 401).no_key(),
        sample("GET", "/v1/tenant", "/v1/tenant", &key, 200),
        sample("GET", "/v1/tenant", "/v1/tenant", &key, 401).no_key(),
        // Operations
        sample("GET", "/healthz", "/healthz", &key, 200).no_key(),
        sample("GET", "/readyz", "/readyz", &key, 200).no_key(),
        sample("GET", "/metrics", "/metrics", &key, 200).no_key(),
        sample("GET", "/openapi.json", "/openapi.json", &key, 200).no_key(),
    ];
    let mut seen: BTreeMap<(String, String), BTreeSet<u16>> = BTreeMap::new();
    seen.entry(("POST".into(), "/v1/jobs".into())).or_default().insert(201);
    seen.entry(("POST".into(), "/v1/schedules".into())).or_default().insert(201);
    seen.entry(("POST".into(), "/v1/webhooks".into())).or_default().insert(201);
    for s in &samples {
        let (status, _) = run(&env, &doc, s).await;
        seen.entry((s.method.to_owned(), s.template.to_owned())).or_default().insert(status);
    }

    let all: BTreeSet<u16> = seen.values().flatten().copied().collect();
    for status in [200, 201, 400, 401, 404, 409, 413, 422, 429] {
        assert!(all.contains(&status), "the samples make the API answer {status}");
    }
    // The other way: every documented status (but those of a failing server)
    // is one the API really answers.
    for (method, path) in documented(&doc) {
        let op = operation(&doc, &method, &path);
        let statuses: BTreeSet<u16> = op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(|k| k.parse().unwrap_or_else(|_| panic!("{method} {path}: numeric statuses only, not {k}")))
            .collect();
        let observed = seen.get(&(method.clone(), path.clone())).cloned().unwrap_or_default();
        let never: Vec<u16> = statuses.difference(&observed).copied().filter(|s| *s != 500 && *s != 503).collect();
        assert!(never.is_empty(), "{method} {path} documents statuses no sample produced: {never:?} (seen {observed:?})");
    }
}

#[tokio::test]
async fn a_real_job_has_exactly_the_properties_of_the_job_view_schema() {
    let env = TestEnv::new().await;
    let key = env.tenant("acme", "America/New_York").await;
    let doc = fetch_document(&env).await;
    let schema = &doc["components"]["schemas"]["JobView"];
    let properties: BTreeSet<&str> = schema["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
    let required: BTreeSet<&str> = schema["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
    assert_eq!(required, properties, "every property of a job is always present (null when it has no value yet)");

    let (status, job) = env
        .post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"prompt": "a boat"}, "metadata": {"a": [1, 2]}}))
        .await;
    assert_eq!(status, 201, "{job}");
    let (status, normal) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {}, "priority": "normal"})).await;
    assert_eq!(status, 201, "{normal}");
    let (_, list) = env.get(&key, "/v1/jobs").await;
    let (_, cancelled) = env.delete(&key, &format!("/v1/jobs/{}", job["id"].as_str().expect("id"))).await;
    let mut views = vec![job, normal, cancelled];
    views.extend(list["jobs"].as_array().expect("jobs").iter().cloned());
    assert_eq!(views.len(), 5);
    for view in &views {
        let keys: BTreeSet<&str> = view.as_object().expect("an object").keys().map(String::as_str).collect();
        assert_eq!(keys, properties, "a job's properties are exactly JobView's: {view}");
        let errors = errors_of(&doc, schema, view);
        assert!(errors.is_empty(), "{errors:#?}\n{view}");
    }
    // A string where JobView says `null or a date-time` is caught.
    let mut broken = views[0].clone();
    broken["finished_at"] = json!("soon");
    assert!(!errors_of(&doc, schema, &broken).is_empty());
}
