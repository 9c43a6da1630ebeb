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
//! The API key is never logged and never part of an error: [`BatchClient`]'s
//! `Debug` shows only the URL.

use serde::{Deserialize, Deserializer, Serialize};
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;
use uuid::Uuid;

use super::{error_json, retry_after, storable, transport_error, CallItem, CallOutcome, ItemResult};

#[derive(Clone)]
pub struct BatchClient {
    http: reqwest::Client,
    url: String,
    api_key: String,
}

impl std::fmt::Debug for BatchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchClient").field("url", &self.url).field("api_key", &"<redacted>").finish()
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

impl BatchClient {
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

    /// Calls the batch API once with the items' inputs, in their order.
    /// Never fails: every failure is an outcome.
    pub async fn call(&self, batch_id: Uuid, model: &str, items: &[CallItem<'_>]) -> CallOutcome {
        let inputs: Vec<&RawValue> = items.iter().map(|i| i.input).collect();
        let sent = self
            .http
            .post(&self.url)
            .bearer_auth(&self.api_key)
            .header("Idempotency-Key", batch_id.to_string())
            .json(&BatchRequest { model, inputs: &inputs })
            .send()
            .await;
        match sent {
            // reqwest's error text names the URL, never headers.
            Err(e) => CallOutcome::Transient { error: transport_error(e), retry_after: None },
            Ok(resp) => classify(resp, inputs.len()).await,
        }
    }
}

async fn classify(resp: reqwest::Response, expected: usize) -> CallOutcome {
    let status = resp.status();
    let retry_after = retry_after(resp.headers());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return CallOutcome::Transient { error: transport_error(e), retry_after: None },
    };
    if status.is_success() {
        return results_of(&body, expected);
    }
    super::refusal(status, &body, retry_after)
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
                    ItemResult::Transient { error, .. } => format!("transient item {error}"),
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

}
