//! OpenAI's Batch API and the part of its Files API a batch needs, as
//! OpenAI's published reference (`openai/openai-openapi`) describes them.
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/files` | `multipart/form-data` with `purpose` (`batch`) and `file` (JSONL): the File object |
//! | `GET /v1/files/{file_id}` | the File object (`id`, `object: "file"`, `bytes`, `created_at`, `filename`, `purpose`, `status`) |
//! | `GET /v1/files/{file_id}/content` | the file's bytes |
//! | `POST /v1/batches` | `{"input_file_id", "endpoint", "completion_window": "24h", "metadata"?}`: the Batch object, `validating` |
//! | `GET /v1/batches/{batch_id}` | the Batch object |
//! | `GET /v1/batches?after=&limit=` | newest first: `{"object": "list", "data", "first_id", "last_id", "has_more"}`, `limit` 1 to 100 (20) |
//! | `POST /v1/batches/{batch_id}/cancel` | `cancelling`, then `cancelled` |
//!
//! Every error has OpenAI's shape, `{"error": {"message", "type", "param",
//! "code"}}`: 400 `invalid_request_error` for a request the reference does
//! not allow (an endpoint outside its list, a window other than `24h`, a
//! file not uploaded with purpose `batch`, metadata past 16 keys of 64
//! characters with values of 512), 401 for a missing or wrong key, 404 for
//! an unknown file or batch, 409 for a cancel of a batch that has ended,
//! 429 `rate_limit_exceeded` with `retry-after`, 500 `server_error`.
//!
//! # A batch's life
//!
//! The input file is read when the batch is created: one JSON object per
//! line, `{"custom_id", "method": "POST", "url", "body"}`, `url` the batch's
//! endpoint, `custom_id` unique, `body` an object with a `model`. A file that
//! breaks these rules makes the batch `failed` at validation, with `errors`
//! naming each bad line. The batch moves on by time
//! ([`SimConfig::openai_batch_duration`], `D`): `validating` for its first
//! third, `in_progress` for the second, `finalizing` for the last, then
//! `completed` with an output file and, if any request failed, an error file.
//! Statuses are worked out whenever a batch is read, so a `D` of 0 completes
//! a batch at its first read after its creation.
//!
//! - With probability [`SimConfig::openai_batch_failure_rate`] the batch is
//!   `failed` at the end of validation, with `errors` (code
//!   `simulated_failure`) and no file: nothing is billed.
//! - Else with [`SimConfig::openai_batch_expiry_rate`] it is `expired` at the
//!   end: the first half of its requests (rounded down) completed, the rest
//!   in the error file with `error.code` `batch_expired` and no response.
//! - Each request is, with [`SimConfig::item_error_rate`], answered 400 (in
//!   the error file: `response.status_code` 400 and OpenAI's error body,
//!   code `content_rejected`); otherwise 200 in the output file, with the
//!   body `{"created", "data": [output]}` where `output` depends only on the
//!   body's `model` and the rest of the body (the batch endpoint's output).
//! - `POST /v1/batches/{id}/cancel` on a batch not yet ended makes it
//!   `cancelling`, then `cancelled` after a third of `D`: no request of it
//!   completes, and its error file lists each with `batch_cancelled`.
//!
//! Lines are `{"id": "batch_req_...", "custom_id", "response": {"status_code",
//! "request_id", "body"} | null, "error": {"code", "message"} | null}`.
//!
//! # Faults and billing
//!
//! Every call sleeps [`SimConfig::latency`] and may hang ([`SimConfig::slow_rate`]);
//! then, with `error_rate` it is a 500, else with `rate_limit_rate` a 429,
//! else with `garbage_rate` it **takes effect** (the file is stored, the
//! batch created or cancelled) but the answer is an HTML page with a 200:
//! the client cannot tell what happened, which is how a crash between
//! creating a batch and recording it looks to a worker.
//!
//! Each request answered 200 is billed once, when its batch ends, into the
//! same counters as `POST /v1/batch` (`items`, `by_model` under the body's
//! `model`, [`crate::input_hash`] of the body's `model` and the body without
//! it); answers 400 count in `item_errors`. Batches created and files
//! uploaded count in `openai_batches` and `files_uploaded`.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::{check_bearer, lock, render_output, AuthFailure, Ledger, SimConfig, Simulator, RETRY_AFTER_SECS};

/// The endpoints OpenAI's reference lets a batch name (`CreateBatchRequest.endpoint`).
pub const BATCH_ENDPOINTS: [&str; 8] = [
    "/v1/responses",
    "/v1/chat/completions",
    "/v1/embeddings",
    "/v1/completions",
    "/v1/moderations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/videos",
];

/// The only completion window the reference allows.
pub const COMPLETION_WINDOW: &str = "24h";

/// `error.code` of a request not run before its batch expired.
pub const BATCH_EXPIRED: &str = "batch_expired";
/// `error.code` of a request of a cancelled batch.
pub const BATCH_CANCELLED: &str = "batch_cancelled";

const EXPIRY_WINDOW_SECS: i64 = 24 * 3600;

/// The Files and Batch API's state: files and batches, in creation order.
#[derive(Default)]
pub(crate) struct OpenAiState {
    files: HashMap<String, SimFile>,
    batches: Vec<SimBatch>,
}

struct SimFile {
    id: String,
    bytes: Bytes,
    created_at: i64,
    filename: String,
    purpose: String,
}

impl SimFile {
    fn object(&self) -> Value {
        json!({
            "id": self.id, "object": "file", "bytes": self.bytes.len(), "created_at": self.created_at,
            "expires_at": null, "filename": self.filename, "purpose": self.purpose, "status": "processed",
            "status_details": null,
        })
    }
}

/// What becomes of a batch, drawn at its creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    Complete,
    Fail,
    Expire,
}

struct Request {
    custom_id: String,
    model: String,
    body: Map<String, Value>,
    /// `input_hash` of the body's model and the body without it.
    hash: String,
    digest: [u8; 32],
    /// Answered 400 (drawn at creation, so a seeded run is reproducible).
    rejected: bool,
}

struct SimBatch {
    id: String,
    endpoint: String,
    input_file_id: String,
    metadata: Option<Map<String, Value>>,
    created: Instant,
    created_at: i64,
    status: &'static str,
    /// Validation errors, or the simulated failure.
    errors: Option<Vec<Value>>,
    requests: Vec<Request>,
    fate: Fate,
    cancel_requested: Option<Instant>,
    in_progress_at: Option<i64>,
    finalizing_at: Option<i64>,
    completed_at: Option<i64>,
    failed_at: Option<i64>,
    expired_at: Option<i64>,
    cancelling_at: Option<i64>,
    cancelled_at: Option<i64>,
    output_file_id: Option<String>,
    error_file_id: Option<String>,
    completed: usize,
    failed: usize,
}

impl SimBatch {
    fn object(&self) -> Value {
        let total = if self.status == "validating" || (self.status == "failed" && self.requests.is_empty()) { 0 } else { self.requests.len() };
        json!({
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "model": self.requests.first().map(|r| r.model.clone()),
            "errors": self.errors.as_ref().map(|data| json!({"object": "list", "data": data})),
            "input_file_id": self.input_file_id,
            "completion_window": COMPLETION_WINDOW,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": self.created_at,
            "in_progress_at": self.in_progress_at,
            "expires_at": self.in_progress_at.map(|_| self.created_at + EXPIRY_WINDOW_SECS),
            "finalizing_at": self.finalizing_at,
            "completed_at": self.completed_at,
            "failed_at": self.failed_at,
            "expired_at": self.expired_at,
            "cancelling_at": self.cancelling_at,
            "cancelled_at": self.cancelled_at,
            "request_counts": {"total": total, "completed": self.completed, "failed": self.failed},
            "metadata": self.metadata,
        })
    }

    fn ended(&self) -> bool {
        matches!(self.status, "completed" | "failed" | "expired" | "cancelled")
    }
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn random_id(prefix: &str) -> String {
    let n: u128 = rand::thread_rng().gen();
    format!("{prefix}{}", &format!("{n:032x}")[..24])
}

/// An error in OpenAI's shape.
fn oai_error(status: StatusCode, kind: &str, code: Option<&str>, message: impl Into<String>) -> Response {
    let body = json!({"error": {"message": message.into(), "type": kind, "param": null, "code": code}});
    (status, Json(body)).into_response()
}

fn invalid(message: impl Into<String>) -> Response {
    oai_error(StatusCode::BAD_REQUEST, "invalid_request_error", None, message)
}

fn not_found(message: impl Into<String>) -> Response {
    oai_error(StatusCode::NOT_FOUND, "invalid_request_error", None, message)
}

/// The fault drawn for one call.
enum CallFate {
    ServerError,
    RateLimited,
    Garbage,
    Normal,
}

impl Simulator {
    /// Latency, a possible hang, the key, then the call's fault.
    async fn openai_call(&self, headers: &HeaderMap) -> Result<(SimConfig, CallFate), Response> {
        self.record(|l| l.openai_calls += 1);
        let config = self.config();
        self.latency_and_hang(&config, &self.inner.rng).await;
        if let Err(failure) = check_bearer(&config, headers) {
            self.record(|l| l.rejected += 1);
            let (code, message) = match failure {
                AuthFailure::Missing => (None, "You didn't provide an API key."),
                AuthFailure::Wrong => (Some("invalid_api_key"), "Incorrect API key provided."),
            };
            return Err(oai_error(StatusCode::UNAUTHORIZED, "invalid_request_error", code, message));
        }
        let fate = match crate::draw_fault(&mut lock(&self.inner.rng), config.error_rate, config.rate_limit_rate, config.garbage_rate) {
            Some(crate::Fault::ServerError) => CallFate::ServerError,
            Some(crate::Fault::RateLimited) => CallFate::RateLimited,
            Some(crate::Fault::Garbage) => CallFate::Garbage,
            None => CallFate::Normal,
        };
        match fate {
            CallFate::ServerError => {
                self.record(|l| l.errors += 1);
                Err(oai_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", None, "The server had an error while processing your request."))
            }
            CallFate::RateLimited => {
                self.record(|l| l.rate_limited += 1);
                let mut r = oai_error(StatusCode::TOO_MANY_REQUESTS, "requests", Some("rate_limit_exceeded"), "Rate limit reached for requests.");
                r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                Err(r)
            }
            fate => Ok((config, fate)),
        }
    }

    fn with_openai<T>(&self, f: impl FnOnce(&mut OpenAiState, &mut Ledger, &SimConfig) -> T) -> T {
        let config = self.config();
        let mut ledger = lock(&self.inner.ledger);
        let mut state = lock(&self.inner.openai);
        advance(&mut state, &mut ledger, &config);
        f(&mut state, &mut ledger, &config)
    }

    /// Clears the files and batches (for [`Simulator::reset`]).
    pub(crate) fn reset_openai(&self) {
        *lock(&self.inner.openai) = OpenAiState::default();
    }

    /// The Batch objects, newest first, as `GET /v1/batches` lists them.
    pub fn openai_batches(&self) -> Vec<Value> {
        self.with_openai(|state, _, _| state.batches.iter().rev().map(SimBatch::object).collect())
    }

    /// Creates a batch as `POST /v1/batches` would, without the call's
    /// faults: for a test that plays a worker which created a batch and
    /// died before recording it.
    ///
    /// # Errors
    /// The request's refusal, as its JSON body.
    pub fn create_openai_batch(&self, request: &Value) -> Result<Value, Value> {
        let seed_draws: Vec<f64> = {
            let mut rng = lock(&self.inner.rng);
            (0..2).map(|_| rng.gen()).collect()
        };
        self.with_openai(|state, ledger, config| create(state, ledger, config, request, &seed_draws, &self.inner.rng))
    }
}

/// Moves every batch on to the status its age gives it; bills what ends.
fn advance(state: &mut OpenAiState, ledger: &mut Ledger, config: &SimConfig) {
    let now = Instant::now();
    let third = config.openai_batch_duration / 3;
    let mut new_files = Vec::new();
    for b in state.batches.iter_mut().filter(|b| !b.ended()) {
        let age = now.duration_since(b.created);
        if let Some(asked) = b.cancel_requested {
            if now.duration_since(asked) >= third {
                b.status = "cancelled";
                b.cancelled_at = Some(unix_now());
                let lines: Vec<Value> = b.requests.iter().map(|r| error_line(r, BATCH_CANCELLED, "This request was not run: its batch was cancelled.")).collect();
                b.failed = lines.len();
                if !lines.is_empty() {
                    let f = jsonl_file("batch_output", &b.id, "error", &lines);
                    b.error_file_id = Some(f.id.clone());
                    new_files.push(f);
                }
            }
            continue;
        }
        if b.status == "failed" {
            continue;
        }
        if b.status == "validating" && age >= third {
            if b.fate == Fate::Fail || b.errors.is_some() {
                b.status = "failed";
                b.failed_at = Some(unix_now());
                if b.errors.is_none() {
                    b.errors = Some(vec![json!({"code": "simulated_failure", "message": "The batch failed (simulated).", "param": null, "line": null})]);
                }
                continue;
            }
            b.status = "in_progress";
            b.in_progress_at = Some(unix_now());
        }
        if b.status == "in_progress" && age >= third * 2 {
            b.status = "finalizing";
            b.finalizing_at = Some(unix_now());
        }
        if b.status == "finalizing" && age >= config.openai_batch_duration {
            let run = if b.fate == Fate::Expire { b.requests.len() / 2 } else { b.requests.len() };
            let mut outputs = Vec::new();
            let mut errors = Vec::new();
            for (i, r) in b.requests.iter().enumerate() {
                if i >= run {
                    errors.push(error_line(r, BATCH_EXPIRED, "This request could not be executed before the completion window expired."));
                } else if r.rejected {
                    ledger.item_errors += 1;
                    let body = json!({"error": {"message": "the input was rejected by the (simulated) content filter",
                                                "type": "invalid_request_error", "param": null, "code": crate::CONTENT_REJECTED}});
                    errors.push(response_line(r, 400, body));
                } else {
                    ledger.items += 1;
                    *ledger.by_model.entry(r.model.clone()).or_default() += 1;
                    *ledger.billed.entry(r.hash.clone()).or_default() += 1;
                    // A request to the Images API is answered as that
                    // endpoint answers it; any other, as the batch endpoint.
                    let body = (b.endpoint == crate::images::ENDPOINT)
                        .then(|| {
                            let mut request = r.body.clone();
                            request.insert("model".into(), json!(r.model));
                            crate::images::rendered(&request)
                        })
                        .flatten()
                        .unwrap_or_else(|| json!({"created": b.created_at, "data": [render_output(&r.model, &r.body, &r.digest)]}));
                    outputs.push(response_line(r, 200, body));
                }
            }
            b.completed = outputs.len();
            b.failed = errors.len();
            if !outputs.is_empty() {
                let f = jsonl_file("batch_output", &b.id, "output", &outputs);
                b.output_file_id = Some(f.id.clone());
                new_files.push(f);
            }
            if !errors.is_empty() {
                let f = jsonl_file("batch_output", &b.id, "error", &errors);
                b.error_file_id = Some(f.id.clone());
                new_files.push(f);
            }
            if b.fate == Fate::Expire {
                b.status = "expired";
                b.expired_at = Some(unix_now());
            } else {
                b.status = "completed";
                b.completed_at = Some(unix_now());
            }
        }
    }
    for f in new_files {
        state.files.insert(f.id.clone(), f);
    }
}

fn response_line(r: &Request, status: u16, body: Value) -> Value {
    json!({"id": random_id("batch_req_"), "custom_id": r.custom_id,
           "response": {"status_code": status, "request_id": random_id("req_"), "body": body}, "error": null})
}

fn error_line(r: &Request, code: &str, message: &str) -> Value {
    json!({"id": random_id("batch_req_"), "custom_id": r.custom_id, "response": null, "error": {"code": code, "message": message}})
}

fn jsonl_file(purpose: &str, batch_id: &str, kind: &str, lines: &[Value]) -> SimFile {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    SimFile {
        id: random_id("file-"),
        bytes: Bytes::from(text),
        created_at: unix_now(),
        filename: format!("{batch_id}_{kind}.jsonl"),
        purpose: purpose.into(),
    }
}

/// `POST /v1/batches`' work once the call is through: check the request,
/// read the input file, draw the batch's fate.
fn create(
    state: &mut OpenAiState,
    ledger: &mut Ledger,
    config: &SimConfig,
    request: &Value,
    draws: &[f64],
    rng: &std::sync::Mutex<rand::rngs::StdRng>,
) -> Result<Value, Value> {
    let refuse = |message: String| json!({"error": {"message": message, "type": "invalid_request_error", "param": null, "code": null}});
    let Some(req) = request.as_object() else { return Err(refuse("The body must be a JSON object.".into())) };
    for key in req.keys() {
        if !["input_file_id", "endpoint", "completion_window", "metadata", "output_expires_after"].contains(&key.as_str()) {
            return Err(refuse(format!("Unrecognized request argument supplied: {key}")));
        }
    }
    let Some(endpoint) = req.get("endpoint").and_then(Value::as_str) else { return Err(refuse("Missing required parameter: 'endpoint'.".into())) };
    if !BATCH_ENDPOINTS.contains(&endpoint) {
        return Err(refuse(format!("Invalid value for 'endpoint': '{endpoint}' is not supported.")));
    }
    if req.get("completion_window").and_then(Value::as_str) != Some(COMPLETION_WINDOW) {
        return Err(refuse("Invalid value for 'completion_window': only '24h' is supported.".into()));
    }
    let metadata = match req.get("metadata") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => {
            let ok = m.len() <= 16 && m.iter().all(|(k, v)| k.chars().count() <= 64 && v.as_str().is_some_and(|s| s.chars().count() <= 512));
            if !ok {
                return Err(refuse("Invalid 'metadata': at most 16 keys of 64 characters, with string values of 512.".into()));
            }
            Some(m.clone())
        }
        Some(_) => return Err(refuse("Invalid type for 'metadata': expected an object.".into())),
    };
    let Some(file_id) = req.get("input_file_id").and_then(Value::as_str) else { return Err(refuse("Missing required parameter: 'input_file_id'.".into())) };
    let Some(file) = state.files.get(file_id) else { return Err(refuse(format!("No file with id '{file_id}'."))) };
    if file.purpose != "batch" {
        return Err(refuse(format!("File '{file_id}' was not uploaded with purpose 'batch'.")));
    }
    let (requests, errors) = parse_input(&file.bytes, endpoint, config, rng);
    let fate = if draws.first().is_some_and(|d| *d < config.openai_batch_failure_rate) {
        Fate::Fail
    } else if draws.get(1).is_some_and(|d| *d < config.openai_batch_expiry_rate) {
        Fate::Expire
    } else {
        Fate::Complete
    };
    let batch = SimBatch {
        id: random_id("batch_"),
        endpoint: endpoint.to_owned(),
        input_file_id: file_id.to_owned(),
        metadata,
        created: Instant::now(),
        created_at: unix_now(),
        status: "validating",
        errors: (!errors.is_empty()).then_some(errors),
        requests,
        fate,
        cancel_requested: None,
        in_progress_at: None,
        finalizing_at: None,
        completed_at: None,
        failed_at: None,
        expired_at: None,
        cancelling_at: None,
        cancelled_at: None,
        output_file_id: None,
        error_file_id: None,
        completed: 0,
        failed: 0,
    };
    let object = batch.object();
    state.batches.push(batch);
    ledger.openai_batches += 1;
    Ok(object)
}

/// The requests of an input file, or the errors of its bad lines.
fn parse_input(bytes: &[u8], endpoint: &str, config: &SimConfig, rng: &std::sync::Mutex<rand::rngs::StdRng>) -> (Vec<Request>, Vec<Value>) {
    let mut requests = Vec::new();
    let mut errors = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let text = String::from_utf8_lossy(bytes);
    let bad = |line: usize, message: String| json!({"code": "invalid_request", "message": message, "param": null, "line": line});
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let n = n + 1;
        let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(line) else {
            errors.push(bad(n, "The line is not a JSON object.".into()));
            continue;
        };
        let custom_id = match obj.remove("custom_id") {
            Some(Value::String(s)) if !s.is_empty() => s,
            _ => {
                errors.push(bad(n, "'custom_id' must be a non-empty string.".into()));
                continue;
            }
        };
        if !seen.insert(custom_id.clone()) {
            errors.push(bad(n, format!("The custom_id '{custom_id}' is not unique in the file.")));
            continue;
        }
        if obj.get("method").and_then(Value::as_str) != Some("POST") {
            errors.push(bad(n, "'method' must be 'POST'.".into()));
            continue;
        }
        if obj.get("url").and_then(Value::as_str) != Some(endpoint) {
            errors.push(bad(n, format!("'url' must be the batch's endpoint, '{endpoint}'.")));
            continue;
        }
        let Some(Value::Object(mut body)) = obj.remove("body") else {
            errors.push(bad(n, "'body' must be an object.".into()));
            continue;
        };
        let model = match body.remove("model") {
            Some(Value::String(m)) if !m.is_empty() => m,
            _ => {
                errors.push(bad(n, "'body.model' must be a non-empty string.".into()));
                continue;
            }
        };
        let mut canonical = Vec::new();
        crate::canonical_object(&body, &mut canonical);
        let digest = crate::digest_of(&model, &canonical);
        let rejected = lock(rng).gen::<f64>() < config.item_error_rate;
        requests.push(Request { custom_id, model, body, hash: hex::encode(digest), digest, rejected });
    }
    if requests.is_empty() && errors.is_empty() {
        errors.push(json!({"code": "empty_file", "message": "The input file has no requests.", "param": null, "line": null}));
    }
    (requests, errors)
}

fn garbage() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/html")], "<html><body><h1>502 Bad Gateway</h1></body></html>").into_response()
}

/// Answers `value` unless the call's fate was garbage (the effect stays).
fn answer(sim: &Simulator, fate: &CallFate, value: Value) -> Response {
    if matches!(fate, CallFate::Garbage) {
        sim.record(|l| l.garbage += 1);
        return garbage();
    }
    (StatusCode::OK, Json(value)).into_response()
}

pub(crate) async fn post_file(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let Some(boundary) = content_type
        .strip_prefix("multipart/form-data")
        .and_then(|rest| rest.split(';').map(str::trim).find_map(|p| p.strip_prefix("boundary=")))
        .map(|b| b.trim_matches('"').to_owned())
    else {
        sim.record(|l| l.rejected += 1);
        return invalid("The body must be multipart/form-data with a boundary.");
    };
    let parts = match multipart(&body, &boundary) {
        Some(p) => p,
        None => {
            sim.record(|l| l.rejected += 1);
            return invalid("The multipart body does not parse.");
        }
    };
    let purpose = parts.iter().find(|p| p.name == "purpose").map(|p| String::from_utf8_lossy(&p.data).trim().to_owned());
    let Some(file) = parts.iter().find(|p| p.name == "file") else {
        sim.record(|l| l.rejected += 1);
        return invalid("Missing required parameter: 'file'.");
    };
    let purpose = match purpose.as_deref() {
        Some(p @ ("assistants" | "batch" | "fine-tune" | "vision" | "user_data" | "evals")) => p.to_owned(),
        Some(p) => {
            sim.record(|l| l.rejected += 1);
            return invalid(format!("Invalid value for 'purpose': '{p}'."));
        }
        None => {
            sim.record(|l| l.rejected += 1);
            return invalid("Missing required parameter: 'purpose'.");
        }
    };
    let filename = file.filename.clone().unwrap_or_else(|| "upload".into());
    if purpose == "batch" && !filename.ends_with(".jsonl") {
        sim.record(|l| l.rejected += 1);
        return invalid("The Batch API only accepts .jsonl files.");
    }
    let f = SimFile { id: random_id("file-"), bytes: Bytes::copy_from_slice(&file.data), created_at: unix_now(), filename, purpose };
    let object = f.object();
    sim.with_openai(|state, ledger, _| {
        ledger.files_uploaded += 1;
        state.files.insert(f.id.clone(), f);
    });
    answer(&sim, &fate, object)
}

struct Part {
    name: String,
    filename: Option<String>,
    data: Vec<u8>,
}

/// The parts of a `multipart/form-data` body (RFC 7578): enough for a
/// form's fields and files, not a general parser.
fn multipart(body: &[u8], boundary: &str) -> Option<Vec<Part>> {
    let delimiter = format!("--{boundary}");
    let d = delimiter.as_bytes();
    let find = |hay: &[u8], needle: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(needle.len()).position(|w| w == needle).map(|p| p + from)
    };
    let mut parts = Vec::new();
    let mut at = find(body, d, 0)? + d.len();
    loop {
        if body.get(at..at + 2) == Some(b"--") {
            return Some(parts);
        }
        at += 2; // CRLF after the delimiter
        let head_end = find(body, b"\r\n\r\n", at)?;
        let head = std::str::from_utf8(&body[at..head_end]).ok()?;
        let next = find(body, d, head_end + 4)?;
        // The CRLF before the next delimiter belongs to it.
        let data = body.get(head_end + 4..next.checked_sub(2)?)?.to_vec();
        let disposition = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))?;
        let param = |key: &str| {
            disposition.split(';').map(str::trim).find_map(|p| p.strip_prefix(&format!("{key}=")).map(|v| v.trim_matches('"').to_owned()))
        };
        parts.push(Part { name: param("name")?, filename: param("filename"), data });
        at = next + d.len();
    }
}

pub(crate) async fn get_file(State(sim): State<Simulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match sim.with_openai(|state, _, _| state.files.get(&id).map(SimFile::object)) {
        Some(object) => answer(&sim, &fate, object),
        None => not_found(format!("No such File object: {id}")),
    }
}

pub(crate) async fn get_file_content(State(sim): State<Simulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match sim.with_openai(|state, _, _| state.files.get(&id).map(|f| f.bytes.clone())) {
        Some(_) if matches!(fate, CallFate::Garbage) => {
            sim.record(|l| l.garbage += 1);
            garbage()
        }
        Some(bytes) => (StatusCode::OK, [(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        None => not_found(format!("No such File object: {id}")),
    }
}

pub(crate) async fn post_batches(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        sim.record(|l| l.rejected += 1);
        return invalid("We could not parse the JSON body of your request.");
    };
    match sim.create_openai_batch(&request) {
        Ok(object) => answer(&sim, &fate, object),
        Err(error) => {
            sim.record(|l| l.rejected += 1);
            (StatusCode::BAD_REQUEST, Json(error)).into_response()
        }
    }
}

pub(crate) async fn get_batch(State(sim): State<Simulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    match sim.with_openai(|state, _, _| state.batches.iter().find(|b| b.id == id).map(SimBatch::object)) {
        Some(object) => answer(&sim, &fate, object),
        None => not_found(format!("No batch found with id '{id}'.")),
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    after: Option<String>,
    limit: Option<String>,
}

pub(crate) async fn list_batches(State(sim): State<Simulator>, headers: HeaderMap, Query(q): Query<ListQuery>) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let limit = match q.limit.as_deref().map(str::parse::<usize>) {
        None => 20,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid("Invalid 'limit': it must be between 1 and 100."),
    };
    let page = sim.with_openai(|state, _, _| {
        let newest_first: Vec<&SimBatch> = state.batches.iter().rev().collect();
        let start = match &q.after {
            None => Some(0),
            Some(after) => newest_first.iter().position(|b| &b.id == after).map(|p| p + 1),
        };
        start.map(|start| {
            let rest = newest_first.get(start..).unwrap_or_default();
            let data: Vec<Value> = rest.iter().take(limit).map(|b| b.object()).collect();
            (data, rest.len() > limit)
        })
    });
    let Some((data, has_more)) = page else {
        return not_found(format!("No batch found with id '{}'.", q.after.unwrap_or_default()));
    };
    let first_id = data.first().map(|b| b["id"].clone());
    let last_id = data.last().map(|b| b["id"].clone());
    answer(&sim, &fate, json!({"object": "list", "data": data, "first_id": first_id, "last_id": last_id, "has_more": has_more}))
}

pub(crate) async fn cancel_batch(State(sim): State<Simulator>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let (_, fate) = match sim.openai_call(&headers).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let result = sim.with_openai(|state, _, _| {
        let b = state.batches.iter_mut().find(|b| b.id == id)?;
        if matches!(b.status, "validating" | "in_progress" | "finalizing") {
            b.status = "cancelling";
            b.cancelling_at = Some(unix_now());
            b.cancel_requested = Some(Instant::now());
            Some(Ok(b.object()))
        } else if b.status == "cancelling" || b.status == "cancelled" {
            Some(Ok(b.object()))
        } else {
            Some(Err(b.status))
        }
    });
    match result {
        Some(Ok(object)) => answer(&sim, &fate, object),
        Some(Err(status)) => {
            oai_error(StatusCode::CONFLICT, "invalid_request_error", None, format!("Cannot cancel a batch with status '{status}'."))
        }
        None => not_found(format!("No batch found with id '{id}'.")),
    }
}

/// How long the simulator takes over a batch by default: short enough for
/// a demo to watch one pass through every status.
pub const OPENAI_BATCH_DURATION_DEFAULT: Duration = Duration::ZERO;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{input_hash, spawn, RunningSim};

    const KEY: &str = "sim-test-key";

    fn jsonl(n: usize, model: &str) -> String {
        (0..n)
            .map(|i| {
                json!({"custom_id": format!("job-{i}"), "method": "POST", "url": "/v1/images/generations",
                       "body": {"model": model, "prompt": format!("a lighthouse, take {i}")}})
                .to_string()
                    + "\n"
            })
            .collect()
    }

    async fn upload(sim: &RunningSim, content: &str) -> reqwest::Response {
        let boundary = "XyZbOuNdArY";
        let body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\n\
             Content-Disposition: form-data; name=\"file\"; filename=\"in.jsonl\"\r\nContent-Type: application/jsonl\r\n\r\n{content}\r\n--{boundary}--\r\n"
        );
        reqwest::Client::new()
            .post(format!("{}/v1/files", sim.url))
            .bearer_auth(KEY)
            .header("content-type", format!("multipart/form-data; boundary={boundary}"))
            .body(body)
            .send()
            .await
            .unwrap()
    }

    async fn create(sim: &RunningSim, file_id: &str, tag: &str) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/batches", sim.url))
            .bearer_auth(KEY)
            .json(&json!({"input_file_id": file_id, "endpoint": "/v1/images/generations", "completion_window": "24h",
                          "metadata": {"offpeak_batch_id": tag}}))
            .send()
            .await
            .unwrap()
    }

    async fn get(sim: &RunningSim, path: &str) -> (u16, Bytes) {
        let r = reqwest::Client::new().get(format!("{}{path}", sim.url)).bearer_auth(KEY).send().await.unwrap();
        (r.status().as_u16(), r.bytes().await.unwrap())
    }

    async fn get_json(sim: &RunningSim, path: &str) -> Value {
        let (status, body) = get(sim, path).await;
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        serde_json::from_slice(&body).unwrap()
    }

    async fn batch_of(sim: &RunningSim, n: usize) -> Value {
        let file: Value = upload(sim, &jsonl(n, "gpt-image-1")).await.json().await.unwrap();
        assert_eq!((file["object"].as_str(), file["purpose"].as_str()), (Some("file"), Some("batch")));
        let created = create(sim, file["id"].as_str().unwrap(), "ours").await;
        assert_eq!(created.status(), 200);
        created.json().await.unwrap()
    }

    fn lines(bytes: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(bytes).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[tokio::test]
    async fn a_batch_completes_with_an_output_line_per_request_billed_once() {
        let sim = spawn(SimConfig::default()).await.unwrap();
        let created = batch_of(&sim, 3).await;
        assert_eq!(created["status"], "validating");
        assert_eq!(created["completion_window"], "24h");
        assert_eq!(created["metadata"]["offpeak_batch_id"], "ours");
        let id = created["id"].as_str().unwrap();
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["status"], "completed");
        assert_eq!(done["request_counts"], json!({"total": 3, "completed": 3, "failed": 0}));
        assert!(done["error_file_id"].is_null());
        let (status, out) = get(&sim, &format!("/v1/files/{}/content", done["output_file_id"].as_str().unwrap())).await;
        assert_eq!(status, 200);
        let out = lines(&out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1]["custom_id"], "job-1");
        assert_eq!(out[1]["response"]["status_code"], 200);
        // Answered as the Images API answers the same request: gpt-image-1
        // gives base64 images and usage.
        let body = &out[1]["response"]["body"];
        assert!(body["data"][0]["b64_json"].is_string() && body["usage"].is_object(), "{body}");
        // Reading it again bills nothing more.
        get_json(&sim, &format!("/v1/batches/{id}")).await;
        let stats = sim.sim.stats();
        assert_eq!((stats.items, stats.openai_batches, stats.files_uploaded), (3, 1, 1));
        assert_eq!(stats.by_model["gpt-image-1"], 3);
        assert_eq!(stats.max_billed_per_input, 1);
        assert_eq!(sim.sim.billed_inputs()[&input_hash("gpt-image-1", &json!({"prompt": "a lighthouse, take 0"}))], 1);
    }

    #[tokio::test]
    async fn the_status_moves_on_with_time() {
        let sim = spawn(SimConfig { openai_batch_duration: Duration::from_millis(600), ..SimConfig::default() }).await.unwrap();
        let id = batch_of(&sim, 1).await["id"].as_str().unwrap().to_owned();
        let mut seen = Vec::new();
        for _ in 0..40 {
            let s = get_json(&sim, &format!("/v1/batches/{id}")).await["status"].as_str().unwrap().to_owned();
            if seen.last() != Some(&s) {
                seen.push(s.clone());
            }
            if s == "completed" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(seen, ["validating", "in_progress", "finalizing", "completed"]);
    }

    #[tokio::test]
    async fn rejected_requests_go_to_the_error_file_with_a_400_and_are_not_billed() {
        let sim = spawn(SimConfig { item_error_rate: 1.0, ..SimConfig::default() }).await.unwrap();
        let id = batch_of(&sim, 2).await["id"].as_str().unwrap().to_owned();
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["request_counts"], json!({"total": 2, "completed": 0, "failed": 2}));
        assert!(done["output_file_id"].is_null());
        let (_, errs) = get(&sim, &format!("/v1/files/{}/content", done["error_file_id"].as_str().unwrap())).await;
        let errs = lines(&errs);
        assert_eq!(errs[0]["response"]["status_code"], 400);
        assert_eq!(errs[0]["response"]["body"]["error"]["code"], "content_rejected");
        assert_eq!((sim.sim.stats().items, sim.sim.stats().item_errors), (0, 2));
    }

    #[tokio::test]
    async fn an_expired_batch_keeps_half_and_lists_the_rest_as_batch_expired() {
        let sim = spawn(SimConfig { openai_batch_expiry_rate: 1.0, ..SimConfig::default() }).await.unwrap();
        let id = batch_of(&sim, 4).await["id"].as_str().unwrap().to_owned();
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["status"], "expired");
        assert_eq!(done["request_counts"], json!({"total": 4, "completed": 2, "failed": 2}));
        let (_, errs) = get(&sim, &format!("/v1/files/{}/content", done["error_file_id"].as_str().unwrap())).await;
        let errs = lines(&errs);
        assert_eq!(errs.iter().map(|l| l["error"]["code"].clone()).collect::<Vec<_>>(), [json!("batch_expired"), json!("batch_expired")]);
        assert_eq!(sim.sim.stats().items, 2);
    }

    #[tokio::test]
    async fn a_failed_batch_has_errors_and_bills_nothing() {
        let sim = spawn(SimConfig { openai_batch_failure_rate: 1.0, ..SimConfig::default() }).await.unwrap();
        let id = batch_of(&sim, 2).await["id"].as_str().unwrap().to_owned();
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["status"], "failed");
        assert_eq!(done["errors"]["object"], "list");
        assert!(done["output_file_id"].is_null() && done["failed_at"].is_i64());
        assert_eq!(sim.sim.stats().items, 0);
    }

    #[tokio::test]
    async fn a_bad_input_file_fails_validation_naming_the_line() {
        let sim = spawn(SimConfig::default()).await.unwrap();
        let bad = jsonl(1, "m") + "{\"custom_id\": \"job-0\", \"method\": \"POST\", \"url\": \"/v1/images/generations\", \"body\": {\"model\": \"m\"}}\n";
        let file: Value = upload(&sim, &bad).await.json().await.unwrap();
        let id = create(&sim, file["id"].as_str().unwrap(), "x").await.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_owned();
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["status"], "failed");
        assert_eq!(done["errors"]["data"][0]["line"], 2);
    }

    #[tokio::test]
    async fn cancelling_ends_cancelled_without_billing() {
        let sim = spawn(SimConfig { openai_batch_duration: Duration::from_secs(60), ..SimConfig::default() }).await.unwrap();
        let id = batch_of(&sim, 2).await["id"].as_str().unwrap().to_owned();
        let c: Value = reqwest::Client::new()
            .post(format!("{}/v1/batches/{id}/cancel", sim.url))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(c["status"], "cancelling");
        let mut config = sim.sim.config();
        config.openai_batch_duration = Duration::ZERO;
        sim.sim.set_config(config);
        let done = get_json(&sim, &format!("/v1/batches/{id}")).await;
        assert_eq!(done["status"], "cancelled");
        assert_eq!(sim.sim.stats().items, 0);
    }

    #[tokio::test]
    async fn batches_are_listed_newest_first_in_pages() {
        let sim = spawn(SimConfig { openai_batch_duration: Duration::from_secs(60), ..SimConfig::default() }).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(batch_of(&sim, 1).await["id"].as_str().unwrap().to_owned());
        }
        let page = get_json(&sim, "/v1/batches?limit=2").await;
        assert_eq!(page["object"], "list");
        assert_eq!(page["has_more"], true);
        assert_eq!(page["first_id"].as_str(), Some(ids[2].as_str()));
        assert_eq!(page["last_id"].as_str(), Some(ids[1].as_str()));
        let next = get_json(&sim, &format!("/v1/batches?limit=2&after={}", ids[1])).await;
        assert_eq!((next["data"].as_array().unwrap().len(), next["has_more"].as_bool()), (1, Some(false)));
        assert_eq!(next["data"][0]["id"].as_str(), Some(ids[0].as_str()));
        assert_eq!(get(&sim, "/v1/batches?limit=0").await.0, 400);
    }

    #[tokio::test]
    async fn refusals_have_openai_s_shape() {
        let sim = spawn(SimConfig { rate_limit_rate: 1.0, ..SimConfig::default() }).await.unwrap();
        let r = reqwest::Client::new().get(format!("{}/v1/batches", sim.url)).bearer_auth(KEY).send().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "1");
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["code"], "rate_limit_exceeded");
        assert!(e["error"]["param"].is_null() && e["error"]["type"].is_string());
        let r = reqwest::Client::new().get(format!("{}/v1/batches", sim.url)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let sim = spawn(SimConfig::default()).await.unwrap();
        let file: Value = upload(&sim, &jsonl(1, "m")).await.json().await.unwrap();
        let r = reqwest::Client::new()
            .post(format!("{}/v1/batches", sim.url))
            .bearer_auth(KEY)
            .json(&json!({"input_file_id": file["id"], "endpoint": "/v1/batch", "completion_window": "24h"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        assert_eq!(r.json::<Value>().await.unwrap()["error"]["type"], "invalid_request_error");
        assert_eq!(get(&sim, "/v1/batches/batch_nope").await.0, 404);
    }

    #[tokio::test]
    async fn a_garbled_answer_to_a_create_still_creates_the_batch() {
        let sim = spawn(SimConfig::default()).await.unwrap();
        let file: Value = upload(&sim, &jsonl(1, "m")).await.json().await.unwrap();
        let mut config = sim.sim.config();
        config.garbage_rate = 1.0;
        sim.sim.set_config(config);
        let r = create(&sim, file["id"].as_str().unwrap(), "lost").await;
        assert_eq!(r.status(), 200);
        assert!(r.json::<Value>().await.is_err(), "the answer is not JSON");
        let batches = sim.sim.openai_batches();
        assert_eq!((batches.len(), batches[0]["metadata"]["offpeak_batch_id"].as_str()), (1, Some("lost")));
    }
}
