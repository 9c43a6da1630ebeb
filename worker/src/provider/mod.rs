//! The providers' protocols, one adapter each, and what every adapter
//! shares: how an answer is sorted into outcomes, the classification of
//! refusals, what can be stored.
//!
//! | adapter | module | a batch of jobs is |
//! |---|---|---|
//! | `batch` | [`batch`] | one call to `POST {base}/v1/batch` |
//! | `openai-images` | [`images`] | one call per job to `POST {base}{endpoint}` |
//! | `openai-batch` | [`openai_batch`] | one provider batch, handed over (`crate::handover`) and polled (`crate::poller`) |
//!
//! [`Providers`] maps every model to its [`Route`]: its provider's client,
//! the provider's name for the model, and the limits its calls are under.
//! Every answer is sorted into the outcomes the worker acts on:
//!
//! | answer | outcome |
//! |---|---|
//! | an answer for every job | [`CallOutcome::Results`]: per job an output, a permanent error, or (one call per job) a transient error of its own |
//! | 429 (with `Retry-After`), 408, 5xx, timeout, refused connection, garbage | [`CallOutcome::Transient`] |
//! | any other 4xx | [`CallOutcome::Permanent`] |
//!
//! API keys are never logged and never part of an error: the clients'
//! `Debug` shows only their URL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::providers::{Adapter, Catalog, Limits};

use crate::limits::{Gate, Limiter};
use crate::metrics;

pub mod batch;
pub mod images;

pub use batch::BatchClient;
pub use images::ImagesClient;
pub mod openai_batch;

pub use openai_batch::OpenaiBatchClient;

/// One job's answer.
#[derive(Debug, Clone)]
pub enum ItemResult {
    /// The output as the JSON text the provider sent: it is stored as it
    /// is, so the worker does not build a tree of it.
    Output(Box<RawValue>),
    /// A permanent per-item error (e.g. a rejected prompt).
    Error(Value),
    /// A transient error of this job alone (a protocol with one call per
    /// job): the job is tried again, the others of its batch are not.
    Transient { error: Value, retry_after: Option<Duration> },
}

#[derive(Debug, Clone)]
pub enum CallOutcome {
    /// One result per job, in the order of the jobs given.
    Results(Vec<ItemResult>),
    Transient { error: Value, retry_after: Option<Duration> },
    Permanent { error: Value },
}

/// One job as a provider is sent it.
#[derive(Debug, Clone, Copy)]
pub struct CallItem<'a> {
    pub job_id: Uuid,
    pub input: &'a RawValue,
}

/// A client of a provider's synchronous protocol.
#[derive(Debug, Clone)]
pub enum Client {
    Batch(BatchClient),
    Images(ImagesClient),
    /// Not called through [`Route::call`]: its batches are handed over
    /// (`crate::handover`) and polled (`crate::poller`).
    OpenaiBatch(OpenaiBatchClient),
}

/// A limit key and its limits: calls to one provider (`provider:NAME`) or
/// to one model of it (`model:NAME`), shared by every worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitKey {
    pub key: String,
    pub limits: Limits,
}

/// How one model's jobs reach its provider.
#[derive(Debug, Clone)]
pub struct Route {
    /// The configuration's name of the provider (usage is reported by it).
    pub provider: String,
    pub adapter: Adapter,
    /// The provider's own name of the model, sent as the request's `model`.
    pub provider_model: String,
    /// `openai-images` / `openai-batch`: the generation endpoint's path.
    pub endpoint: String,
    pub client: Client,
    /// What every HTTP request of this route must get past first: the
    /// provider's limits, then the model's.
    pub gate: Gate,
}

impl Route {
    /// Calls the provider once for `items` (all of one batch, one model)
    /// and counts the call. Never fails: every failure is an outcome.
    pub async fn call(&self, model: &str, batch_id: Uuid, items: &[CallItem<'_>]) -> CallOutcome {
        let started = Instant::now();
        let outcome = match &self.client {
            Client::Batch(c) => {
                let _permit = self.gate.pass().await;
                c.call(batch_id, &self.provider_model, items).await
            }
            // Each request passes the gate itself.
            Client::Images(c) => {
                let target = images::Target {
                    provider: &self.provider,
                    endpoint: &self.endpoint,
                    provider_model: &self.provider_model,
                    gate: &self.gate,
                };
                c.call(&target, items).await
            }
            Client::OpenaiBatch(_) => CallOutcome::Permanent {
                error: error_json("wrong_protocol", "an openai-batch model's batches are handed over, not called"),
            },
        };
        let kind = match &outcome {
            CallOutcome::Results(_) => "ok",
            CallOutcome::Transient { error, .. } | CallOutcome::Permanent { error } => {
                error.get("code").and_then(Value::as_str).unwrap_or("error")
            }
        };
        metrics::PROVIDER_LATENCY.with_label_values(&[model]).observe(started.elapsed().as_secs_f64());
        metrics::PROVIDER_CALLS.with_label_values(&[model, kind]).inc();
        outcome
    }
}

/// A provider the worker cannot set up.
#[derive(Debug, thiserror::Error)]
pub enum ProviderSetupError {
    #[error("provider '{provider}' reads its API key from ${env}, which is not set")]
    MissingKey { provider: String, env: String },
    #[error("provider '{provider}': the HTTP client cannot be built: {source}")]
    Client { provider: String, source: reqwest::Error },
}

/// Every model's route, built once at start.
#[derive(Debug, Clone, Default)]
pub struct Providers {
    routes: HashMap<String, Arc<Route>>,
}

impl Providers {
    /// The routes of every model of `catalog`. `key_of` reads a provider's
    /// key from the environment variable it names; `default_timeout` is the
    /// timeout of a provider that sets none; `limiter` is this process's
    /// handle on the limits shared by every worker (used only by routes
    /// with limits).
    ///
    /// # Errors
    /// A key that is not set, or an HTTP client that cannot be built.
    pub fn from_catalog(
        catalog: &Catalog,
        key_of: impl Fn(&str) -> Option<String>,
        default_timeout: Duration,
        limiter: &Limiter,
    ) -> Result<Self, ProviderSetupError> {
        let mut clients: HashMap<&str, Client> = HashMap::new();
        for p in catalog.providers() {
            let key = key_of(&p.api_key_env)
                .ok_or_else(|| ProviderSetupError::MissingKey { provider: p.name.clone(), env: p.api_key_env.clone() })?;
            let timeout = p.timeout.unwrap_or(default_timeout);
            let client = match p.adapter {
                Adapter::Batch => Client::Batch(
                    BatchClient::new(&p.base_url, key, timeout)
                        .map_err(|source| ProviderSetupError::Client { provider: p.name.clone(), source })?,
                ),
                Adapter::OpenaiImages => Client::Images(
                    ImagesClient::new(&p.base_url, key, timeout, p.limits.max_concurrent)
                        .map_err(|source| ProviderSetupError::Client { provider: p.name.clone(), source })?,
                ),
                Adapter::OpenaiBatch => Client::OpenaiBatch(
                    OpenaiBatchClient::new(&p.base_url, key, timeout, p.poll_interval, p.poll_interval_max)
                        .map_err(|source| ProviderSetupError::Client { provider: p.name.clone(), source })?,
                ),
            };
            clients.insert(&p.name, client);
        }
        let mut routes = HashMap::new();
        for m in catalog.models() {
            let Some((model, provider)) = catalog.route(&m.name) else { continue };
            let Some(client) = clients.get(provider.name.as_str()) else { continue };
            let mut limits = Vec::new();
            if !provider.limits.is_unlimited() {
                limits.push(LimitKey { key: format!("provider:{}", provider.name), limits: provider.limits });
            }
            if !model.limits.is_unlimited() {
                limits.push(LimitKey { key: format!("model:{}", model.name), limits: model.limits });
            }
            routes.insert(
                model.name.clone(),
                Arc::new(Route {
                    provider: provider.name.clone(),
                    adapter: provider.adapter,
                    provider_model: model.provider_model.clone(),
                    endpoint: model.endpoint.clone(),
                    client: client.clone(),
                    gate: Gate::new(limiter, limits, provider.timeout.unwrap_or(default_timeout)),
                }),
            );
        }
        Ok(Self { routes })
    }

    /// The route of a model, if this worker's configuration has it.
    pub fn route(&self, model: &str) -> Option<&Arc<Route>> {
        self.routes.get(model)
    }
}

/// How long a refusal asks to wait: `retry-after-ms` (OpenAI's, in
/// milliseconds), else `Retry-After` in seconds (or an HTTP date), else
/// OpenAI's `x-ratelimit-reset-requests` (`1s`, `6m0s`, `20ms`).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.parse::<f64>().ok()).filter(|v| v.is_finite() && *v >= 0.0) {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(v) = text("retry-after") {
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs));
            }
        }
        if let Ok(at) = httpdate_to_unix(v) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            return Some(at.saturating_sub(now));
        }
    }
    text("x-ratelimit-reset-requests").and_then(go_duration)
}

/// An HTTP date (`Wed, 21 Oct 2015 07:28:00 GMT`) as time since the epoch.
fn httpdate_to_unix(v: &str) -> Result<Duration, ()> {
    let at = chrono::DateTime::parse_from_rfc2822(v).map_err(|_| ())?;
    u64::try_from(at.timestamp()).map(Duration::from_secs).map_err(|_| ())
}

/// A duration as OpenAI's rate-limit headers write it: `1s`, `6m0s`,
/// `1h2m3.5s`, `20ms`.
pub(crate) fn go_duration(v: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut rest = v.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let number: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 0.001,
            _ => return None,
        };
        total += number * factor;
        rest = &rest[unit_len..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

/// A non-2xx answer: 429, 408 and 5xx are transient, any other status
/// permanent. The error keeps the provider's own message and, in OpenAI's
/// shape, its `type` and `code`.
pub(crate) fn refusal(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> CallOutcome {
    let detail = provider_message(body).unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    let mut error = if status.as_u16() == 429 {
        error_json("rate_limited", &detail)
    } else {
        error_json(&format!("http_{}", status.as_u16()), &detail)
    };
    if let Some(e) = serde_json::from_slice::<Value>(body).ok().and_then(|v| v.get("error").cloned()) {
        for field in ["type", "code"] {
            if let Some(v) = e.get(field).and_then(Value::as_str) {
                error[format!("provider_{field}")] = v.chars().take(100).collect::<String>().replace('\0', "").into();
            }
        }
    }
    if status.as_u16() == 429 || status.is_server_error() || status.as_u16() == 408 {
        CallOutcome::Transient { error, retry_after }
    } else {
        CallOutcome::Permanent { error }
    }
}

/// A failed request (timeout, refused connection, cut body) as an error.
/// reqwest's error text names the URL, never headers; the URL is left out.
pub(crate) fn transport_error(e: reqwest::Error) -> Value {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "transport"
    };
    error_json(kind, &e.without_url().to_string())
}

/// Whether this JSON text, stored in `jsonb`, reads back as itself.
/// PostgreSQL refuses two things that are valid JSON: the escape `\u0000`,
/// and a `\uD800`–`\uDFFF` escape that is not half of a surrogate pair. And
/// it keeps a number's digits in plain notation, which serde_json may not
/// read back (`1e400`; see `offpeak_core::jsonb::token_reads_back`): stored,
/// such a result would make every later read of the job, and of its
/// tenant's job list, fail. A result it refused would make the batch's
/// finish fail on every delivery (the provider answers a replay with the
/// same result), so such an item fails on its own instead.
pub(crate) fn storable(raw: &RawValue) -> bool {
    let b = raw.get().as_bytes();
    let hex = |at: usize| b.get(at..at + 4).and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u16::from_str_radix(h, 16).ok());
    let mut in_string = false;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'"' => {
                in_string = !in_string;
                i += 1;
            }
            // Valid JSON: a backslash always starts an escape, inside a string.
            b'\\' if b.get(i + 1) != Some(&b'u') => i += 2,
            b'\\' => {
                let Some(unit) = hex(i + 2) else { return false };
                match unit {
                    0 => return false,
                    0xD800..=0xDBFF => {
                        let low = if b.get(i + 6) == Some(&b'\\') && b.get(i + 7) == Some(&b'u') { hex(i + 8) } else { None };
                        if !matches!(low, Some(0xDC00..=0xDFFF)) {
                            return false;
                        }
                        i += 12;
                    }
                    0xDC00..=0xDFFF => return false,
                    _ => i += 6,
                }
            }
            b'-' | b'0'..=b'9' if !in_string => {
                let len = b[i..].iter().position(|c| !matches!(c, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')).unwrap_or(b.len() - i);
                // Valid JSON: a number token is ASCII.
                let token = std::str::from_utf8(&b[i..i + len]).unwrap_or_default();
                if !offpeak_core::jsonb::token_reads_back(token) {
                    return false;
                }
                i += len;
            }
            _ => i += 1,
        }
    }
    true
}

/// The provider's own error message, when its body has one.
pub(crate) fn provider_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let msg = e.get("message").and_then(Value::as_str).or_else(|| e.as_str())?;
    Some(msg.chars().take(500).collect())
}

/// An error of ours. The message may quote the provider, so it loses any
/// NUL character, which PostgreSQL cannot store.
pub(crate) fn error_json(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message.replace('\0', "")})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_durations_parse() {
        assert_eq!(go_duration("1s"), Some(Duration::from_secs(1)));
        assert_eq!(go_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(go_duration("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(go_duration("1h2m3.5s"), Some(Duration::from_secs_f64(3723.5)));
        assert_eq!(go_duration("soon"), None);
        assert_eq!(go_duration(""), None);
    }

    #[test]
    fn the_wait_comes_from_the_most_precise_header() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "2s".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(2)));
        h.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "1500".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
    }

    #[test]
    fn refusals_are_sorted_by_status_and_keep_openai_fields() {
        let body = br#"{"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}"#;
        let CallOutcome::Transient { error, retry_after } = refusal(StatusCode::TOO_MANY_REQUESTS, body, Some(Duration::from_secs(1))) else {
            panic!("429 is transient")
        };
        assert_eq!((error["code"].as_str(), error["provider_code"].as_str()), (Some("rate_limited"), Some("rate_limit_exceeded")));
        assert_eq!(error["message"], "Rate limit reached");
        assert_eq!(retry_after, Some(Duration::from_secs(1)));
        assert!(matches!(refusal(StatusCode::BAD_GATEWAY, b"<html>", None), CallOutcome::Transient { .. }));
        assert!(matches!(refusal(StatusCode::REQUEST_TIMEOUT, b"", None), CallOutcome::Transient { .. }));
        let CallOutcome::Permanent { error } = refusal(StatusCode::UNAUTHORIZED, b"{}", None) else { panic!("401 is permanent") };
        assert_eq!(error["code"], "http_401");
    }
}

#[cfg(test)]
mod storable_tests {
    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    #[test]
    fn what_jsonb_refuses_is_not_storable() {
        for ok in [r#"{"a": "x"}"#, r#""\ud83d\ude00""#, r#""\\u0000""#, r#""\u00e9\n\"""#, "1", r#""\uFFFF""#] {
            assert!(storable(&raw(ok)), "{ok}");
        }
        for bad in [r#""\u0000""#, r#"{"a": ["\ud800"]}"#, r#""\udc00""#, r#""\ud800\u0041""#, r#""x\ud800""#] {
            assert!(!storable(&raw(bad)), "{bad}");
        }
    }

    #[test]
    fn a_number_that_would_not_read_back_is_not_storable() {
        for ok in [r#"{"seed": 3735928559, "w": 1024, "s": -1.5e+2, "x": 1.7976931348623157e308}"#, r#"["1e400", "-"]"#, "0", "-0.0"] {
            assert!(storable(&raw(ok)), "{ok}");
        }
        for bad in [r#"{"x": 1e400}"#, r#"[1, 2, -1e309]"#, r#"{"a\"b": 1e131072}"#, "1e-16384"] {
            assert!(!storable(&raw(bad)), "{bad}");
        }
    }

    #[test]
    fn our_errors_drop_nul_characters() {
        assert_eq!(error_json("http_500", "bad\0 thing")["message"], "bad thing");
    }
}
