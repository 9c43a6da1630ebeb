//! The `openai-batch` protocol: OpenAI's Batch API and the part of its
//! Files API a batch needs (`openai/openai-openapi`).
//!
//! | step | call |
//! |---|---|
//! | find a batch made for ours before a crash | `GET /v1/batches?limit=100&after=...`, newest first, `metadata.offpeak_batch_id` |
//! | upload the jobs | `POST /v1/files`, multipart: `purpose=batch`, `file` = JSONL, a line per job: `{"custom_id": <job id>, "method": "POST", "url": <endpoint>, "body": <input with "model">}` |
//! | create the batch | `POST /v1/batches` `{"input_file_id", "endpoint", "completion_window": "24h", "metadata": {"offpeak_batch_id": <our batch id>}}` |
//! | poll | `GET /v1/batches/{id}` |
//! | read the answers | `GET /v1/files/{output_file_id}/content`, `GET /v1/files/{error_file_id}/content` |
//! | cancel | `POST /v1/batches/{id}/cancel` |
//!
//! Every refusal is sorted as the other adapters sort them
//! ([`super::refusal`]): 429 (with `retry-after`), 408, 5xx, timeouts and
//! answers that do not parse are [`Failure::Transient`], any other 4xx
//! [`Failure::Permanent`]. Each line of the output and error files becomes
//! one job's [`ItemResult`] ([`answers`]): a 2xx response its output (the
//! response's `body`, stored as sent), a 429, 408 or 5xx response or a line
//! with only an `error` (`batch_expired`, `batch_cancelled`, ...) a
//! transient error, any other status a permanent one.
//!
//! The API key is never logged and never part of an error:
//! [`OpenaiBatchClient`]'s `Debug` shows only its base URL.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use super::{error_json, retry_after, storable, transport_error, CallItem, CallOutcome, ItemResult};
use crate::limits::Gate;

/// The metadata key a provider batch carries our batch id under.
pub const METADATA_KEY: &str = "offpeak_batch_id";

/// The only completion window OpenAI's reference allows.
pub const COMPLETION_WINDOW: &str = "24h";

/// Pages of `GET /v1/batches` read looking for a batch made for ours
/// before giving up (100 batches each).
pub const FIND_PAGES_MAX: usize = 50;

/// A provider batch as `GET /v1/batches/{id}` describes it (the fields
/// offpeak reads).
#[derive(Debug, Clone, Deserialize)]
pub struct ProviderBatch {
    pub id: String,
    pub status: String,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub created_at: i64,
    #[serde(default)]
    pub metadata: Option<HashMap<String, Value>>,
    #[serde(default)]
    pub errors: Option<Value>,
}

impl ProviderBatch {
    /// Whether the provider is done with it: `completed`, `failed`,
    /// `expired` or `cancelled`.
    pub fn ended(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "failed" | "expired" | "cancelled")
    }

    /// The first of its `errors`, as our error (for a `failed` batch).
    pub fn error(&self) -> Value {
        let first = self.errors.as_ref().and_then(|e| e.get("data")).and_then(|d| d.get(0));
        let message = first.and_then(|e| e.get("message")).and_then(Value::as_str).unwrap_or("the provider batch ended without running");
        let mut e = error_json(&format!("provider_batch_{}", self.status), message);
        if let Some(code) = first.and_then(|e| e.get("code")).and_then(Value::as_str) {
            e["provider_code"] = code.chars().take(100).collect::<String>().replace('\0', "").into();
        }
        e
    }
}

/// A call that did not get its answer.
#[derive(Debug, Clone)]
pub enum Failure {
    Transient { error: Value, retry_after: Option<Duration> },
    Permanent { error: Value },
}

impl Failure {
    fn malformed(what: &str, detail: impl std::fmt::Display) -> Self {
        Failure::Transient { error: error_json("malformed_response", &format!("{what}: {detail}")), retry_after: None }
    }

    pub fn error(&self) -> &Value {
        match self {
            Failure::Transient { error, .. } | Failure::Permanent { error } => error,
        }
    }
}

#[derive(Clone)]
pub struct OpenaiBatchClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
    /// First poll after a provider batch is made, and the longest pause
    /// between polls (the provider's configuration).
    pub poll_interval: Duration,
    pub poll_interval_max: Duration,
}

impl std::fmt::Debug for OpenaiBatchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenaiBatchClient").field("base", &self.base).field("api_key", &"<redacted>").finish()
    }
}

#[derive(Deserialize)]
struct BatchList {
    data: Vec<ProviderBatch>,
    #[serde(default)]
    has_more: bool,
    #[serde(default)]
    last_id: Option<String>,
}

#[derive(Deserialize)]
struct FileObject {
    id: String,
}

impl OpenaiBatchClient {
    /// # Errors
    /// Only if the TLS backend cannot be initialised.
    pub fn new(base_url: &str, api_key: String, timeout: Duration, poll_interval: Duration, poll_interval_max: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder().timeout(timeout).connect_timeout(Duration::from_secs(5).min(timeout)).build()?;
        Ok(Self { http, base: base_url.trim_end_matches('/').to_owned(), api_key, poll_interval, poll_interval_max })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The pause before poll number `polls` (1-based) of a provider batch:
    /// the poll interval, doubling, capped.
    pub fn poll_pause(&self, polls: i32) -> Duration {
        let exp = u32::try_from(polls.saturating_sub(1)).unwrap_or(0).min(20);
        self.poll_interval.saturating_mul(1u32 << exp).min(self.poll_interval_max.max(self.poll_interval))
    }

    /// Sends a request past the gate and reads the whole answer.
    async fn send(&self, gate: &Gate, request: reqwest::RequestBuilder) -> Result<axum::body::Bytes, Failure> {
        let _permit = gate.pass().await;
        let resp = match request.bearer_auth(&self.api_key).send().await {
            Ok(r) => r,
            Err(e) => return Err(Failure::Transient { error: transport_error(e), retry_after: None }),
        };
        let status = resp.status();
        let wait = retry_after(resp.headers());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(Failure::Transient { error: transport_error(e), retry_after: None }),
        };
        if status.is_success() {
            return Ok(body);
        }
        Err(match super::refusal(status, &body, wait) {
            CallOutcome::Permanent { error } => Failure::Permanent { error },
            CallOutcome::Transient { error, retry_after } => Failure::Transient { error, retry_after },
            CallOutcome::Results(_) => Failure::malformed("refusal", status),
        })
    }

    async fn json<T: for<'de> Deserialize<'de>>(&self, gate: &Gate, what: &str, request: reqwest::RequestBuilder) -> Result<T, Failure> {
        let body = self.send(gate, request).await?;
        serde_json::from_slice(&body).map_err(|e| Failure::malformed(what, e))
    }

    /// The newest provider batch tagged with our batch id, looking back no
    /// further than batches created at `not_before` (unix seconds).
    ///
    /// # Errors
    /// A call that failed.
    pub async fn find(&self, gate: &Gate, batch_id: Uuid, not_before: i64) -> Result<Option<ProviderBatch>, Failure> {
        let ours = batch_id.to_string();
        let mut after: Option<String> = None;
        for _ in 0..FIND_PAGES_MAX {
            let mut req = self.http.get(self.url("/v1/batches")).query(&[("limit", "100")]);
            if let Some(a) = &after {
                req = req.query(&[("after", a)]);
            }
            let page: BatchList = self.json(gate, "batch list", req).await?;
            let mut older = false;
            for b in page.data {
                if b.metadata.as_ref().and_then(|m| m.get(METADATA_KEY)).and_then(Value::as_str) == Some(ours.as_str()) {
                    return Ok(Some(b));
                }
                older |= b.created_at < not_before;
            }
            if older || !page.has_more {
                return Ok(None);
            }
            match page.last_id {
                Some(last) => after = Some(last),
                None => return Ok(None),
            }
        }
        Ok(None)
    }

    /// Uploads a JSONL file with purpose `batch`; returns its id.
    ///
    /// # Errors
    /// A call that failed.
    pub async fn upload(&self, gate: &Gate, filename: &str, jsonl: Vec<u8>) -> Result<String, Failure> {
        // multipart/form-data (RFC 7578) by hand: two parts.
        let boundary = format!("offpeak-{}", Uuid::new_v4().simple());
        let mut body = Vec::with_capacity(jsonl.len() + 512);
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nbatch\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: application/jsonl\r\n\r\n").as_bytes(),
        );
        body.extend_from_slice(&jsonl);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        let req = self.http.post(self.url("/v1/files")).header("content-type", format!("multipart/form-data; boundary={boundary}")).body(body);
        let file: FileObject = self.json(gate, "file object", req).await?;
        Ok(file.id)
    }

    /// Creates the provider batch of an uploaded file, tagged with our batch id.
    ///
    /// # Errors
    /// A call that failed.
    pub async fn create(&self, gate: &Gate, file_id: &str, endpoint: &str, batch_id: Uuid) -> Result<ProviderBatch, Failure> {
        let body = json!({"input_file_id": file_id, "endpoint": endpoint, "completion_window": COMPLETION_WINDOW,
                          "metadata": {METADATA_KEY: batch_id.to_string()}});
        self.json(gate, "batch object", self.http.post(self.url("/v1/batches")).json(&body)).await
    }

    /// # Errors
    /// A call that failed.
    pub async fn get(&self, gate: &Gate, id: &str) -> Result<ProviderBatch, Failure> {
        self.json(gate, "batch object", self.http.get(self.url(&format!("/v1/batches/{id}")))).await
    }

    /// # Errors
    /// A call that failed.
    pub async fn cancel(&self, gate: &Gate, id: &str) -> Result<ProviderBatch, Failure> {
        self.json(gate, "batch object", self.http.post(self.url(&format!("/v1/batches/{id}/cancel")))).await
    }

    /// A file's content, checked to be JSONL of batch lines: a file that
    /// does not parse is a transient failure, read again at the next poll,
    /// never taken as "no answer" (which would send billed jobs again).
    ///
    /// # Errors
    /// A call that failed, or content that is not batch lines.
    pub async fn lines(&self, gate: &Gate, file_id: &str) -> Result<Vec<Line>, Failure> {
        let body = self.send(gate, self.http.get(self.url(&format!("/v1/files/{file_id}/content")))).await?;
        parse_lines(&body)
    }
}

/// The JSONL input file of a batch: a line per job, `custom_id` its id,
/// `body` its input with `model` set to the provider's name of the model.
///
/// # Errors
/// An input that is not a JSON object (the API accepts only objects).
pub fn input_file(items: &[CallItem<'_>], endpoint: &str, provider_model: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::new();
    for item in items {
        let mut body: Map<String, Value> = serde_json::from_str(item.input.get())?;
        body.insert("model".into(), provider_model.into());
        serde_json::to_writer(&mut out, &json!({"custom_id": item.job_id.to_string(), "method": "POST", "url": endpoint, "body": body}))?;
        out.push(b'\n');
    }
    Ok(out)
}

/// One line of an output or error file.
#[derive(Debug, Deserialize)]
pub struct Line {
    pub custom_id: String,
    #[serde(default)]
    pub response: Option<LineResponse>,
    #[serde(default)]
    pub error: Option<Value>,
}

#[derive(Debug, Deserialize)]
pub struct LineResponse {
    pub status_code: u16,
    #[serde(default)]
    pub body: Option<Box<RawValue>>,
}

fn parse_lines(body: &[u8]) -> Result<Vec<Line>, Failure> {
    let text = std::str::from_utf8(body).map_err(|e| Failure::malformed("batch file", e))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(n, l)| serde_json::from_str::<Line>(l).map_err(|e| Failure::malformed(&format!("batch file line {}", n + 1), e)))
        .collect()
}

/// Each job's answer in the lines of a provider batch's files, by job id.
/// A line whose `custom_id` is not a job of ours is ignored; a job with no
/// line has no answer (the caller decides what that means).
pub fn answers(lines: impl IntoIterator<Item = Line>) -> HashMap<Uuid, ItemResult> {
    let mut out = HashMap::new();
    for line in lines {
        let Ok(id) = line.custom_id.parse::<Uuid>() else { continue };
        out.insert(id, answer(line));
    }
    out
}

fn answer(line: Line) -> ItemResult {
    match line.response {
        Some(r) if (200..300).contains(&r.status_code) => match r.body {
            Some(body) if storable(&body) => ItemResult::Output(body),
            Some(_) => ItemResult::Error(error_json(
                "invalid_output",
                "the provider's answer for this item holds \\u0000 or an unpaired surrogate, which cannot be stored",
            )),
            None => ItemResult::Transient { error: error_json("malformed_response", "a 2xx line without a body"), retry_after: None },
        },
        Some(r) => {
            let body = r.body.as_ref().map(|b| b.get().as_bytes()).unwrap_or_default();
            let status = reqwest::StatusCode::from_u16(r.status_code).unwrap_or(reqwest::StatusCode::BAD_GATEWAY);
            match super::refusal(status, body, None) {
                CallOutcome::Permanent { error } => ItemResult::Error(error),
                CallOutcome::Transient { error, retry_after } => ItemResult::Transient { error, retry_after },
                CallOutcome::Results(_) => ItemResult::Transient { error: error_json("malformed_response", "unreadable line"), retry_after: None },
            }
        }
        None => {
            // A request the provider did not run: the batch expired or was
            // cancelled before it, or it failed outside HTTP. Another batch
            // may run it.
            let e = line.error.unwrap_or(Value::Null);
            let code = e.get("code").and_then(Value::as_str).unwrap_or("provider_error");
            let message = e.get("message").and_then(Value::as_str).unwrap_or("the provider did not run this request");
            ItemResult::Transient { error: error_json(code, message), retry_after: None }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: Uuid, input: &RawValue) -> CallItem<'_> {
        CallItem { job_id: id, input }
    }

    #[test]
    fn the_input_file_has_a_line_per_job_with_the_provider_model() {
        let a = RawValue::from_string(r#"{"prompt": "a cat", "model": "ours"}"#.into()).unwrap();
        let id = Uuid::nil();
        let file = input_file(&[item(id, &a)], "/v1/images/generations", "gpt-image-1").unwrap();
        let line: Value = serde_json::from_slice(file.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(
            line,
            json!({"custom_id": id.to_string(), "method": "POST", "url": "/v1/images/generations",
                   "body": {"prompt": "a cat", "model": "gpt-image-1"}})
        );
        let not_object = RawValue::from_string("[1]".into()).unwrap();
        assert!(input_file(&[item(id, &not_object)], "/v1/x", "m").is_err());
    }

    #[test]
    fn lines_become_outputs_permanent_or_transient_errors() {
        let (a, b, c, d, e) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let text = format!(
            "{}\n{}\n{}\n{}\n{}\n{}\n",
            json!({"id": "r1", "custom_id": a, "response": {"status_code": 200, "request_id": "q", "body": {"data": [{"url": "u"}]}}, "error": null}),
            json!({"id": "r2", "custom_id": b, "response": {"status_code": 400, "body": {"error": {"message": "no", "type": "invalid_request_error", "code": "content_rejected"}}}, "error": null}),
            json!({"id": "r3", "custom_id": c, "response": {"status_code": 500, "body": {"error": {"message": "oops"}}}, "error": null}),
            json!({"id": "r4", "custom_id": d, "response": null, "error": {"code": "batch_expired", "message": "late"}}),
            json!({"id": "r5", "custom_id": e, "response": {"status_code": 429, "body": {}}, "error": null}),
            json!({"id": "r6", "custom_id": "not-ours", "response": null, "error": null}),
        );
        let got = answers(parse_lines(text.as_bytes()).unwrap());
        assert!(matches!(&got[&a], ItemResult::Output(o) if o.get() == r#"{"data":[{"url":"u"}]}"#));
        assert!(matches!(&got[&b], ItemResult::Error(e) if e["provider_code"] == "content_rejected" && e["code"] == "http_400"));
        assert!(matches!(&got[&c], ItemResult::Transient { .. }));
        assert!(matches!(&got[&d], ItemResult::Transient { error, .. } if error["code"] == "batch_expired"));
        assert!(matches!(&got[&e], ItemResult::Transient { .. }));
        assert_eq!(got.len(), 5);
    }

    #[test]
    fn a_file_that_is_not_batch_lines_is_a_transient_failure() {
        for bad in ["<html>502</html>", "{\"custom_id\": 1}\n", "{\"id\": \"x\"}"] {
            assert!(matches!(parse_lines(bad.as_bytes()), Err(Failure::Transient { .. })), "{bad}");
        }
        assert!(parse_lines(b"").unwrap().is_empty());
    }

    #[test]
    fn polls_back_off_to_the_cap() {
        let c = OpenaiBatchClient::new("http://x", "sk-secret".into(), Duration::from_secs(1), Duration::from_secs(30), Duration::from_secs(600)).unwrap();
        let pauses: Vec<u64> = (1..=7).map(|n| c.poll_pause(n).as_secs()).collect();
        assert_eq!(pauses, [30, 60, 120, 240, 480, 600, 600]);
        assert!(!format!("{c:?}").contains("sk-secret"));
    }
}
