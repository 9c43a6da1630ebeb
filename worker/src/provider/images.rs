//! The `openai-images` adapter: OpenAI's Images API and the endpoints
//! compatible with it, one request per job.
//!
//! For each job, `POST {base}{endpoint}` (`/v1/images/generations` unless
//! the model names another) with `Authorization: Bearer {key}`,
//! `Idempotency-Key: {job id}` and the job's input as the body, its `model`
//! set to the provider's name of the model (`{"prompt": "a cat"}` becomes
//! `{"model": "gpt-image-1", "prompt": "a cat"}`). OpenAI does not promise
//! to honour the key on this endpoint; a gateway that does (the simulator
//! does) never bills a job's retry twice.
//!
//! Every job gets its own answer:
//!
//! | answer | the job's result |
//! |---|---|
//! | 2xx whose body has `data`, a non-empty array of images each with a `url` or `b64_json` | [`ItemResult::Output`]: the whole body, as sent |
//! | an input that is not a JSON object | [`ItemResult::Error`] `invalid_input`, no request made |
//! | 2xx whose body jsonb cannot store | [`ItemResult::Error`] `invalid_output` |
//! | 4xx other than 408 and 429 (a `content_policy_violation`, a bad parameter) | [`ItemResult::Error`] keeping OpenAI's `message`, `type` and `code` |
//! | 408, 429, 5xx, timeout, refused connection, a 2xx that is not such a body | [`ItemResult::Transient`], with the wait `retry-after-ms`, `Retry-After` or `x-ratelimit-reset-requests` asks for |
//!
//! # Concurrency and OpenAI's rate-limit headers
//!
//! A batch's jobs are sent concurrently, at most
//! `Provider.limits.max_concurrent` (else [`DEFAULT_MAX_CONCURRENT`]) at
//! once per provider in this process: the bound is a semaphore shared by
//! every model of the provider. The shared limits (every replica's calls)
//! are the route's [`Gate`], which each request passes after taking its
//! place here and holds until its answer is in.
//!
//! An answer with `x-ratelimit-remaining-requests: 0` says the provider's
//! request budget is spent until `x-ratelimit-reset-requests` (`1s`,
//! `6m0s`): this process then holds the provider's next requests until that
//! time has passed, instead of sending requests that would be refused.
//!
//! The API key is never logged and never part of an error: the client's
//! `Debug` shows only its base URL.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::join_all;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::{error_json, go_duration, refusal, retry_after, storable, transport_error, CallItem, CallOutcome, ItemResult};
use crate::limits::Gate;
use crate::metrics;

/// Requests in flight at once to one provider from this process, when its
/// configuration sets no `max_concurrent`.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

#[derive(Clone)]
pub struct ImagesClient {
    http: reqwest::Client,
    base: String,
    api_key: String,
    /// Places for requests in flight, shared by the provider's models.
    slots: Arc<Semaphore>,
    /// Until when the provider said its request budget is spent.
    hold: Arc<Mutex<Option<Instant>>>,
}

impl std::fmt::Debug for ImagesClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImagesClient")
            .field("base", &self.base)
            .field("api_key", &"<redacted>")
            .field("free_slots", &self.slots.available_permits())
            .finish()
    }
}

/// What a 2xx must hold to be an answer: images, each with its content.
#[derive(Deserialize)]
struct ImagesResponse {
    data: Vec<Image>,
}

#[derive(Deserialize)]
struct Image {
    url: Option<String>,
    b64_json: Option<String>,
}

/// Where one request is sent and as whom: the parts of a [`super::Route`]
/// a request needs.
pub struct Target<'a> {
    /// The configuration's name of the provider, a metrics label.
    pub provider: &'a str,
    /// The generation endpoint's path (`/v1/images/generations`).
    pub endpoint: &'a str,
    /// The provider's name of the model, sent as `model`.
    pub provider_model: &'a str,
    pub gate: &'a Gate,
}

impl ImagesClient {
    /// A client of the provider at `base_url` (without `/v1`), at most
    /// `max_concurrent` requests in flight (0: [`DEFAULT_MAX_CONCURRENT`]).
    ///
    /// # Errors
    /// Only if the TLS backend cannot be initialised.
    pub fn new(base_url: &str, api_key: String, timeout: Duration, max_concurrent: Option<u32>) -> Result<Self, reqwest::Error> {
        let slots = max_concurrent.map_or(DEFAULT_MAX_CONCURRENT, |n| n as usize).max(1);
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(5).min(timeout))
            .pool_max_idle_per_host(slots)
            .build()?;
        Ok(Self {
            http,
            base: base_url.trim_end_matches('/').to_owned(),
            api_key,
            slots: Arc::new(Semaphore::new(slots)),
            hold: Arc::new(Mutex::new(None)),
        })
    }

    /// One request per item, concurrently within this provider's bound;
    /// one result per item, in the items' order. Never fails: every
    /// failure is an item's result.
    pub async fn call(&self, target: &Target<'_>, items: &[CallItem<'_>]) -> CallOutcome {
        CallOutcome::Results(join_all(items.iter().map(|item| self.one(target, item))).await)
    }

    async fn one(&self, target: &Target<'_>, item: &CallItem<'_>) -> ItemResult {
        let body = match request_body(item.input, target.provider_model) {
            Ok(body) => body,
            Err(error) => return ItemResult::Error(error),
        };
        // The semaphore is never closed, so this waits and then succeeds.
        let Ok(_slot) = self.slots.acquire().await else {
            return ItemResult::Transient { error: error_json("shutting_down", "the provider's client is closed"), retry_after: None };
        };
        self.wait_for_budget().await;
        let result = {
            let _permit = target.gate.pass().await;
            let sent = self
                .http
                .post(format!("{}{}", self.base, target.endpoint))
                .bearer_auth(&self.api_key)
                .header("Idempotency-Key", item.job_id.to_string())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body)
                .send()
                .await;
            match sent {
                // reqwest's error text names the URL, never headers.
                Err(e) => ItemResult::Transient { error: transport_error(e), retry_after: None },
                Ok(resp) => {
                    self.note_budget(resp.headers());
                    classify(resp).await
                }
            }
        };
        let outcome = match &result {
            ItemResult::Output(_) => "ok",
            ItemResult::Error(e) | ItemResult::Transient { error: e, .. } => e.get("code").and_then(Value::as_str).unwrap_or("error"),
        };
        // Our codes only (`ok`, `rate_limited`, `http_NNN`, `timeout`,
        // `malformed_response`, ...): a small set.
        metrics::PROVIDER_REQUESTS.with_label_values(&[target.provider, outcome]).inc();
        result
    }

    /// Waits while the provider's request budget is spent.
    async fn wait_for_budget(&self) {
        loop {
            let until = *self.hold.lock().unwrap_or_else(PoisonError::into_inner);
            match until {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => return,
            }
        }
    }

    /// Holds the provider's next requests when an answer says its budget
    /// is spent (`x-ratelimit-remaining-requests: 0`) until it resets.
    fn note_budget(&self, headers: &HeaderMap) {
        let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        if text("x-ratelimit-remaining-requests") != Some("0") {
            return;
        }
        let Some(reset) = text("x-ratelimit-reset-requests").and_then(go_duration) else { return };
        // A provider's "wait an hour" is not taken on trust beyond that.
        let until = Instant::now() + reset.min(Duration::from_secs(3600));
        let mut hold = self.hold.lock().unwrap_or_else(PoisonError::into_inner);
        *hold = Some(hold.map_or(until, |h| h.max(until)));
    }
}

/// The job's input with `model` set to the provider's model name, as the
/// request body; an input that is not an object is the job's error.
fn request_body(input: &RawValue, provider_model: &str) -> Result<Vec<u8>, Value> {
    let Ok(mut body) = serde_json::from_str::<Map<String, Value>>(input.get()) else {
        return Err(error_json("invalid_input", "an openai-images job's input must be a JSON object (the request body without its model)"));
    };
    body.insert("model".into(), Value::String(provider_model.to_owned()));
    serde_json::to_vec(&body).map_err(|e| error_json("invalid_input", &e.to_string()))
}

async fn classify(resp: reqwest::Response) -> ItemResult {
    let status = resp.status();
    let wait = retry_after(resp.headers());
    let body = match resp.bytes().await {
        Ok(b) => b,
        Err(e) => return ItemResult::Transient { error: transport_error(e), retry_after: None },
    };
    if status.is_success() {
        return answer_of(&body);
    }
    match refusal(status, &body, wait) {
        CallOutcome::Transient { error, retry_after } => ItemResult::Transient { error, retry_after },
        CallOutcome::Permanent { error } => ItemResult::Error(error),
        // `refusal` answers only those two.
        CallOutcome::Results(_) => ItemResult::Transient { error: error_json("malformed_response", "unexpected refusal"), retry_after: wait },
    }
}

/// A 2xx body as the job's output, or a transient `malformed_response`
/// when it holds no images.
fn answer_of(body: &[u8]) -> ItemResult {
    let malformed = |why: String| ItemResult::Transient { error: error_json("malformed_response", &why), retry_after: None };
    let raw = match serde_json::from_slice::<Box<RawValue>>(body) {
        Ok(raw) => raw,
        Err(e) => return malformed(format!("provider response does not parse: {e}")),
    };
    match serde_json::from_str::<ImagesResponse>(raw.get()) {
        Ok(r) if r.data.is_empty() => malformed("provider response has no images".into()),
        Ok(r) if r.data.iter().any(|i| i.url.is_none() && i.b64_json.is_none()) => {
            malformed("provider response has an image with neither url nor b64_json".into())
        }
        Ok(_) if storable(&raw) => ItemResult::Output(raw),
        Ok(_) => ItemResult::Error(error_json(
            "invalid_output",
            "the provider's answer for this job holds \\u0000 or an unpaired surrogate, which cannot be stored",
        )),
        Err(e) => malformed(format!("provider response is not an images response: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::http::{HeaderMap as AxumHeaders, StatusCode};
    use axum::response::IntoResponse;
    use uuid::Uuid;

    use super::*;

    fn raw(s: &str) -> Box<RawValue> {
        RawValue::from_string(s.into()).unwrap()
    }

    fn kind(r: &ItemResult) -> String {
        match r {
            ItemResult::Output(o) => format!("output {}", o.get()),
            ItemResult::Error(e) => format!("error {}", e["code"].as_str().unwrap_or("")),
            ItemResult::Transient { error, .. } => format!("transient {}", error["code"].as_str().unwrap_or("")),
        }
    }

    #[test]
    fn the_body_is_the_input_with_the_providers_model() {
        let body = request_body(&raw(r#"{"prompt": "a cat", "model": "mine", "n": 1}"#), "gpt-image-1").unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v, serde_json::json!({"prompt": "a cat", "n": 1, "model": "gpt-image-1"}));
        for bad in [r#""a cat""#, "[1]", "null", "3"] {
            assert_eq!(request_body(&raw(bad), "m").unwrap_err()["code"], "invalid_input", "{bad}");
        }
    }

    #[test]
    fn a_2xx_is_an_output_only_if_it_holds_images() {
        let ok = r#"{"created": 1, "data": [{"url": "https://x/1.png"}, {"b64_json": "iVBO"}]}"#;
        assert_eq!(kind(&answer_of(ok.as_bytes())), format!("output {ok}"));
        for bad in [
            r#"{"created": 1, "data": [{"url": "https://x"}"#,
            "<html>502</html>",
            "",
            r#"{"created": 1, "data": "oops"}"#,
            r#"{"created": 1, "data": []}"#,
            r#"{"created": 1, "data": [{"status": "ok"}]}"#,
            r#"{"created": 1}"#,
        ] {
            assert_eq!(kind(&answer_of(bad.as_bytes())), "transient malformed_response", "{bad}");
        }
        let unstorable = r#"{"data": [{"url": "x", "revised_prompt": "\u0000"}]}"#;
        assert_eq!(kind(&answer_of(unstorable.as_bytes())), "error invalid_output");
    }

    /// A local provider: answers each request with `answer(n)` for the
    /// n-th request, and counts requests in flight.
    struct Provider {
        url: String,
        requests: Arc<AtomicUsize>,
        max_in_flight: Arc<AtomicUsize>,
        keys: Arc<Mutex<Vec<String>>>,
    }

    async fn provider(delay: Duration, answer: fn(usize) -> axum::response::Response) -> Provider {
        let requests = Arc::new(AtomicUsize::new(0));
        let in_flight = Arc::new(AtomicUsize::new(0));
        let max_in_flight = Arc::new(AtomicUsize::new(0));
        let keys = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new().route(
            "/v1/images/generations",
            axum::routing::post({
                let (requests, in_flight, max_in_flight, keys) = (requests.clone(), in_flight.clone(), max_in_flight.clone(), keys.clone());
                move |headers: AxumHeaders, body: String| {
                    let (requests, in_flight, max_in_flight, keys) = (requests.clone(), in_flight.clone(), max_in_flight.clone(), keys.clone());
                    async move {
                    let n = requests.fetch_add(1, Ordering::SeqCst);
                    let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                    max_in_flight.fetch_max(now, Ordering::SeqCst);
                    assert_eq!(headers.get("authorization").unwrap(), "Bearer sk-test");
                    let v: Value = serde_json::from_str(&body).unwrap();
                    assert_eq!(v["model"], "gpt-image-1");
                    keys.lock().unwrap().push(headers.get("idempotency-key").unwrap().to_str().unwrap().to_owned());
                    tokio::time::sleep(delay).await;
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                    answer(n)
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Provider { url, requests, max_in_flight, keys }
    }

    fn image() -> axum::response::Response {
        (StatusCode::OK, [("content-type", "application/json")], r#"{"created": 1, "data": [{"url": "https://x/1.png"}]}"#).into_response()
    }

    async fn run(client: &ImagesClient, inputs: &[&str]) -> (Vec<ItemResult>, Vec<Uuid>) {
        let inputs: Vec<Box<RawValue>> = inputs.iter().map(|i| raw(i)).collect();
        let ids: Vec<Uuid> = inputs.iter().map(|_| Uuid::new_v4()).collect();
        let items: Vec<CallItem<'_>> = inputs.iter().zip(&ids).map(|(input, &job_id)| CallItem { job_id, input }).collect();
        let gate = Gate::default();
        let target = Target { provider: "test", endpoint: "/v1/images/generations", provider_model: "gpt-image-1", gate: &gate };
        let CallOutcome::Results(results) = client.call(&target, &items).await else { panic!("one result per job") };
        (results, ids)
    }

    #[tokio::test]
    async fn one_request_per_job_keyed_by_the_job_and_bounded_per_provider() {
        let p = provider(Duration::from_millis(50), |_| image()).await;
        let client = ImagesClient::new(&p.url, "sk-test".into(), Duration::from_secs(5), Some(3)).unwrap();
        let inputs: Vec<String> = (0..10).map(|i| format!(r#"{{"prompt": "p{i}"}}"#)).collect();
        let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        let (results, ids) = run(&client, &inputs).await;
        assert!(results.iter().all(|r| matches!(r, ItemResult::Output(_))));
        assert_eq!(p.requests.load(Ordering::SeqCst), 10);
        assert_eq!(p.max_in_flight.load(Ordering::SeqCst), 3, "at most max_concurrent in flight, and that many");
        let mut keys = p.keys.lock().unwrap().clone();
        let mut expected: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        keys.sort();
        expected.sort();
        assert_eq!(keys, expected, "each job's id is its Idempotency-Key");
        assert!(!format!("{client:?}").contains("sk-test"), "Debug redacts the key");
    }

    #[tokio::test]
    async fn each_job_gets_its_own_outcome() {
        let p = provider(Duration::ZERO, |_| image()).await;
        let client = ImagesClient::new(&p.url, "sk-test".into(), Duration::from_secs(5), None).unwrap();
        let (results, _) = run(&client, &[r#"{"prompt": "a"}"#, r#""not an object""#]).await;
        assert_eq!(kind(&results[1]), "error invalid_input");
        assert!(matches!(results[0], ItemResult::Output(_)));
        assert_eq!(p.requests.load(Ordering::SeqCst), 1, "no request for an invalid input");
    }

    #[tokio::test]
    async fn refusals_keep_openai_fields_and_sort_into_permanent_and_transient() {
        let p = provider(Duration::ZERO, |n| match n {
            0 => (
                StatusCode::BAD_REQUEST,
                r#"{"error": {"message": "Your request was rejected by the safety system", "type": "invalid_request_error", "param": null, "code": "content_policy_violation"}}"#,
            )
                .into_response(),
            _ => (
                StatusCode::TOO_MANY_REQUESTS,
                [("retry-after", "2"), ("x-ratelimit-remaining-requests", "5")],
                r#"{"error": {"message": "Rate limit reached", "type": "requests", "param": null, "code": "rate_limit_exceeded"}}"#,
            )
                .into_response(),
        })
        .await;
        let client = ImagesClient::new(&p.url, "sk-test".into(), Duration::from_secs(5), Some(1)).unwrap();
        let (results, _) = run(&client, &[r#"{"prompt": "a"}"#, r#"{"prompt": "b"}"#]).await;
        let ItemResult::Error(e) = &results[0] else { panic!("a 400 is the job's permanent error: {:?}", results[0]) };
        assert_eq!((e["code"].as_str(), e["provider_code"].as_str(), e["provider_type"].as_str()), (Some("http_400"), Some("content_policy_violation"), Some("invalid_request_error")));
        assert_eq!(e["message"], "Your request was rejected by the safety system");
        let ItemResult::Transient { error, retry_after } = &results[1] else { panic!("a 429 is transient") };
        assert_eq!((error["code"].as_str(), *retry_after), (Some("rate_limited"), Some(Duration::from_secs(2))));
    }

    #[tokio::test]
    async fn server_errors_timeouts_and_refused_connections_are_transient() {
        let p = provider(Duration::ZERO, |_| (StatusCode::SERVICE_UNAVAILABLE, "<html>").into_response()).await;
        let client = ImagesClient::new(&p.url, "sk-test".into(), Duration::from_secs(5), None).unwrap();
        assert_eq!(kind(&run(&client, &[r#"{"prompt": "a"}"#]).await.0[0]), "transient http_503");

        let slow = provider(Duration::from_secs(5), |_| image()).await;
        let client = ImagesClient::new(&slow.url, "sk-test".into(), Duration::from_millis(100), None).unwrap();
        assert_eq!(kind(&run(&client, &[r#"{"prompt": "a"}"#]).await.0[0]), "transient timeout");

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        let client = ImagesClient::new(&url, "sk-test".into(), Duration::from_secs(2), None).unwrap();
        let (results, _) = run(&client, &[r#"{"prompt": "a"}"#]).await;
        assert_eq!(kind(&results[0]), "transient connect");
    }

    #[tokio::test]
    async fn a_spent_request_budget_holds_the_providers_next_requests() {
        let p = provider(Duration::ZERO, |n| match n {
            0 => (
                StatusCode::OK,
                [("x-ratelimit-remaining-requests", "0"), ("x-ratelimit-reset-requests", "400ms")],
                r#"{"created": 1, "data": [{"url": "https://x/1.png"}]}"#,
            )
                .into_response(),
            _ => image(),
        })
        .await;
        let client = ImagesClient::new(&p.url, "sk-test".into(), Duration::from_secs(5), Some(1)).unwrap();
        let started = std::time::Instant::now();
        let (results, _) = run(&client, &[r#"{"prompt": "a"}"#]).await;
        assert!(matches!(results[0], ItemResult::Output(_)));
        assert!(started.elapsed() < Duration::from_millis(300), "the first request is not held");
        // The budget is shared by the client's clones (every model of the provider).
        let (results, _) = run(&client.clone(), &[r#"{"prompt": "b"}"#]).await;
        assert!(matches!(results[0], ItemResult::Output(_)));
        assert!(started.elapsed() >= Duration::from_millis(400), "held until the reset: {:?}", started.elapsed());
    }
}
