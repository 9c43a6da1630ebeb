//! The provider's batch API client.
//!
//! `POST {url}/v1/batch` with `Authorization: Bearer {key}`,
//! `Idempotency-Key: {batch id}` and `{"model", "inputs"}`. Every answer is
//! sorted into one of three outcomes the worker acts on:
//!
//! | answer | outcome |
//! |---|---|
//! | 200 with one result per input | [`CallOutcome::Results`] |
//! | 429 (with `Retry-After`), 5xx, timeout, refused connection, a 200 whose body does not parse, has the wrong number of results or an item with neither `output` nor `error` | [`CallOutcome::Transient`] |
//! | any other 4xx | [`CallOutcome::Permanent`] |
//!
//! The API key is never logged and never part of an error: [`ProviderClient`]'s
//! `Debug` shows only the URL.

use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use uuid::Uuid;

use crate::metrics;

/// One item of a successful call.
#[derive(Debug, Clone)]
pub enum ItemResult {
    /// The output as the JSON text the provider sent: it is stored as it
    /// is, so the worker does not build a tree of it.
    Output(Box<RawValue>),
    /// A permanent per-item error (e.g. a rejected prompt).
    Error(Value),
}

#[derive(Debug, Clone)]
pub enum CallOutcome {
    Results(Vec<ItemResult>),
    Transient { error: Value, retry_after: Option<Duration> },
    Permanent { error: Value },
}

#[derive(Clone)]
pub struct ProviderClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
}

impl std::fmt::Debug for ProviderClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderClient").field("url", &self.url).field("api_key", &"<redacted>").finish()
    }
}

#[derive(Serialize)]
struct BatchRequest<'a> {
    model: &'a str,
    inputs: &'a [&'a RawValue],
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<RawItem>,
}

/// One result as sent: an item with an `output` (of any JSON value, `null`
/// included) is an output, else one with an `error` is an error, else the
/// response is malformed. (An untagged enum said the same, but serde
/// buffers every item of one into a tree of its own before trying each
/// variant.)
#[derive(Deserialize)]
struct RawItem {
    #[serde(default, deserialize_with = "present")]
    output: Option<Box<RawValue>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Box<RawValue>>,
}

/// A field that is there, whatever its value: `Some` even for `null`,
/// which `Option`'s own `Deserialize` would turn into `None`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

impl ProviderClient {
    /// # Errors
    /// Only if the TLS backend cannot be initialised.
    pub fn new(base_url: &str, api_key: String, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .pool_max_idle_per_host(16)
            .build()?;
        Ok(Self { http, url: format!("{}/v1/batch", base_url.trim_end_matches('/')), api_key })
    }

    /// Calls the batch API once. Never fails: every failure is an outcome.
    pub async fn call(&self, batch_id: Uuid, model: &str, inputs: &[&RawValue]) -> CallOutcome {
        let started = Instant::now();
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", batch_id.to_string())
            .json(&BatchRequest { model, inputs })
            .send()
            .await;
        let outcome = match sent {
            Err(e) => {
                let kind = if e.is_timeout() { "timeout" } else if e.is_connect() { "connect" } else { "transport" };
                // reqwest's error text names the URL, never headers.
                CallOutcome::Transient { error: error_json(kind, &e.without_url().to_string()), retry_after: None }
            }
            Ok(resp) => classify(resp, inputs.len()).await,
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

async fn classify(resp: reqwest::Response, expected: usize) -> CallOutcome {
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return CallOutcome::Transient { error: error_json("transport", &e.without_url().to_string()), retry_after: None },
    };
    if status.is_success() {
        return results_of(&body, expected);
    }
    let detail = provider_message(&body).unwrap_or_else(|| status.canonical_reason().unwrap_or("").to_owned());
    if status.as_u16() == 429 {
        CallOutcome::Transient { error: error_json("rate_limited", &detail), retry_after }
    } else if status.is_server_error() || status.as_u16() == 408 {
        CallOutcome::Transient { error: error_json(&format!("http_{}", status.as_u16()), &detail), retry_after }
    } else {
        CallOutcome::Permanent { error: error_json(&format!("http_{}", status.as_u16()), &detail) }
    }
}

/// Sorts the body of a 200 into per-item results, or a transient
/// `malformed_response` when it does not parse or does not answer every
/// input.
fn results_of(body: &[u8], expected: usize) -> CallOutcome {
    match serde_json::from_slice::<BatchResponse>(body) {
        Ok(r) if r.results.len() == expected => {
            let mut items = Vec::with_capacity(expected);
            for (n, item) in r.results.into_iter().enumerate() {
                // An output wins over an error; whichever of them the item is
                // answered by must be storable, or the item fails alone.
                items.push(match (item.output, item.error) {
                    (Some(output), _) if storable(&output) => ItemResult::Output(output),
                    (None, Some(error)) if storable(&error) => {
                        // Valid JSON, just parsed: it parses again.
                        ItemResult::Error(serde_json::from_str(error.get()).unwrap_or(Value::Null))
                    }
                    (None, None) => {
                        return CallOutcome::Transient {
                            error: error_json("malformed_response", &format!("provider result {n} has neither output nor error")),
                            retry_after: None,
                        }
                    }
                    _ => ItemResult::Error(error_json(
                        "invalid_output",
                        "the provider's answer for this item holds \\u0000 or an unpaired surrogate, which cannot be stored",
                    )),
                });
            }
            CallOutcome::Results(items)
        }
        Ok(r) => CallOutcome::Transient {
            error: error_json("malformed_response", &format!("provider returned {} results for {expected} inputs", r.results.len())),
            retry_after: None,
        },
        Err(e) => CallOutcome::Transient {
            error: error_json("malformed_response", &format!("provider response does not parse: {e}")),
            retry_after: None,
        },
    }
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
fn storable(raw: &RawValue) -> bool {
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
fn provider_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = v.get("error")?;
    let msg = e.get("message").and_then(Value::as_str).or_else(|| e.as_str())?;
    Some(msg.chars().take(500).collect())
}

/// An error of ours. The message may quote the provider, so it loses any
/// NUL character, which PostgreSQL cannot store.
fn error_json(code: &str, message: &str) -> Value {
    json!({"code": code, "message": message.replace('\0', "")})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(body: &str, expected: usize) -> Vec<String> {
        match results_of(body.as_bytes(), expected) {
            CallOutcome::Results(items) => items
                .into_iter()
                .map(|i| match i {
                    ItemResult::Output(o) => format!("output {}", o.get()),
                    ItemResult::Error(e) => format!("error {e}"),
                })
                .collect(),
            CallOutcome::Transient { error, .. } => vec![format!("transient {}", error["code"].as_str().unwrap_or(""))],
            CallOutcome::Permanent { .. } => vec!["permanent".into()],
        }
    }

    #[test]
    fn an_item_is_an_output_if_it_has_one_of_any_value_else_an_error() {
        let body = r#"{"results": [{"output": {"url": "x"}}, {"output": null}, {"error": {"code": "nsfw"}}, {"output": 1, "error": 2}, {"error": null}]}"#;
        assert_eq!(
            kinds(body, 5),
            ["output {\"url\": \"x\"}", "output null", "error {\"code\":\"nsfw\"}", "output 1", "error null"]
        );
    }

    #[test]
    fn outputs_are_kept_as_the_provider_sent_them() {
        let body = r#"{"results": [{"output": {"b": 1, "a": [1, 2.50]}}]}"#;
        assert_eq!(kinds(body, 1), ["output {\"b\": 1, \"a\": [1, 2.50]}"]);
    }

    #[test]
    fn a_body_without_an_answer_for_every_input_is_malformed() {
        for (body, n) in [
            (r#"{"results": [{"output": 1}, {"neither": true}]}"#, 2),
            (r#"{"results": [{"output": 1}]}"#, 2),
            (r#"{"results": [{"output": 1}, 7]}"#, 2),
            (r#"{"results": "#, 1),
            (r#"not json"#, 1),
        ] {
            assert_eq!(kinds(body, n), ["transient malformed_response"], "{body}");
        }
    }

    #[test]
    fn inputs_are_sent_as_they_are_stored() {
        let a = RawValue::from_string(r#"{"prompt": "a cat", "seed": 7}"#.into()).unwrap();
        let b = RawValue::from_string("{}".into()).unwrap();
        let body = serde_json::to_string(&BatchRequest { model: "flux-dev", inputs: &[&a, &b] }).unwrap();
        assert_eq!(body, r#"{"model":"flux-dev","inputs":[{"prompt": "a cat", "seed": 7},{}]}"#);
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
    fn an_item_jsonb_would_refuse_fails_alone() {
        // The third has a storable error beside its unstorable output: the
        // output is its answer, as it would be if it were storable.
        let body = r#"{"results": [{"output": "fine"}, {"output": {"t": "\u0000"}}, {"output": "\ud800", "error": {"code": "x"}}, {"error": {"m": "\udfff"}}]}"#;
        let CallOutcome::Results(items) = results_of(body.as_bytes(), 4) else { panic!("not results") };
        assert!(matches!(&items[0], ItemResult::Output(o) if o.get() == r#""fine""#));
        for item in &items[1..] {
            assert!(matches!(item, ItemResult::Error(e) if e["code"] == "invalid_output"), "{item:?}");
        }
    }

    #[test]
    fn our_errors_drop_nul_characters() {
        assert_eq!(error_json("http_500", "bad\0 thing")["message"], "bad thing");
    }
}
