//! A real HTTP webhook receiver for the end-to-end tests, the benchmark and
//! the demo: it listens on `127.0.0.1` at a free port, records every request
//! it gets, checks its Standard Webhooks signature, and answers as it is told.
//!
//! Why a real server rather than a mock of the sender: what the tests must
//! prove is what crosses the wire (the headers, the exact body bytes that
//! were signed, retries after real failures, redirects not followed,
//! timeouts), and only a socket sees that.
//!
//! ```text
//! let rx = Receiver::start(Some(secret.clone())).await;
//! // register rx.url() as the tenant's endpoint (the scheduler must run with
//! // private destinations allowed: this is 127.0.0.1 over http) ...
//! rx.set_mode(Mode::Fail(500));                 // the next attempts fail
//! rx.set_mode(Mode::Ok);                        // and then succeed
//! let got = rx.wait_for(1, Duration::from_secs(10)).await?;
//! assert_eq!(got[0].verified, Some(true));
//! assert!(rx.attempts(got[0].webhook_id.as_deref().unwrap()) >= 2);
//! ```
//!
//! Signature checks are of the signature only: `verified` says whether one
//! of the `webhook-signature` entries is the HMAC of the request under one
//! of the receiver's secrets, at the timestamp the request carries. The
//! timestamp's freshness is reported apart ([`Received::skew_secs`]),
//! because tests drive offpeak with a manual clock, whose timestamps are
//! far from the receiver's wall clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use offpeak_core::webhook::{verify, Secret};

/// The path [`Receiver::url`] points at. The receiver answers on every path
/// (a redirect target, say), and records each request's path.
pub const PATH: &str = "/webhook";

/// How the receiver answers, switchable at any time with
/// [`Receiver::set_mode`]. Every request is recorded whatever the mode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Mode {
    /// `200 OK`.
    #[default]
    Ok,
    /// This status (e.g. `500`, `410`), with a short text body. A value
    /// that is not a status code answers `500`.
    Fail(u16),
    /// Never answers: the request is held until the sender gives up (its
    /// timeout) or the receiver is dropped.
    Hang,
    /// `302 Found` with `Location:` this value.
    Redirect(String),
    /// `503 Service Unavailable` with `Retry-After:` this many seconds.
    RetryAfter(u64),
}

/// One request as the receiver got it.
#[derive(Debug, Clone)]
pub struct Received {
    /// When it arrived (the receiver's wall clock).
    pub at: DateTime<Utc>,
    /// The HTTP method (deliveries are `POST`).
    pub method: String,
    /// The request's path and query.
    pub path: String,
    /// The `webhook-id` header.
    pub webhook_id: Option<String>,
    /// The `webhook-timestamp` header, as sent.
    pub webhook_timestamp: Option<String>,
    /// The `webhook-signature` header, as sent.
    pub webhook_signature: Option<String>,
    /// The `content-type` header.
    pub content_type: Option<String>,
    /// The body parsed as JSON; `Value::Null` when it is not JSON (see
    /// `raw_body`).
    pub body: Value,
    /// The body's exact bytes, as signed.
    pub raw_body: Vec<u8>,
    /// Whether the signature verified under one of the receiver's secrets
    /// (signature only, see the module docs); `None` when the receiver has
    /// no secret. `Some(false)` also when a header is missing or the
    /// timestamp is not an integer.
    pub verified: Option<bool>,
    /// The arrival time minus `webhook-timestamp`, in seconds, when that
    /// header is an integer: near 0 when offpeak runs on the real clock.
    pub skew_secs: Option<i64>,
    /// The status the receiver answered (`None` for [`Mode::Hang`]).
    pub answered: Option<u16>,
}

/// What the handler shares with the [`Receiver`].
struct Shared {
    mode: Mutex<Mode>,
    secrets: Mutex<Vec<Secret>>,
    received: Mutex<Vec<Received>>,
    per_id: Mutex<HashMap<String, usize>>,
    /// The number of requests recorded, for [`Receiver::wait_for`].
    count: watch::Sender<usize>,
    /// Set when the receiver is dropped, to release hanging requests.
    stop: watch::Sender<bool>,
}

/// Locks a mutex, ignoring poisoning: a test that panicked while holding it
/// leaves data that is still fine to read.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running receiver. Dropping it stops the server and releases requests
/// held by [`Mode::Hang`].
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Receiver {
    /// Starts a receiver on `127.0.0.1` at a free port, answering
    /// [`Mode::Ok`], checking signatures with `secret` if one is given.
    ///
    /// # Panics
    ///
    /// When no local port can be bound (see [`Receiver::try_start`]).
    pub async fn start(secret: Option<Secret>) -> Receiver {
        // Tests and the demo cannot do anything useful without it, and a
        // failure to bind 127.0.0.1:0 is the machine's, not the caller's.
        Receiver::try_start(secret)
            .await
            .expect("binding 127.0.0.1:0 for the webhook receiver")
    }

    /// [`Receiver::start`], returning an error when no local port can be
    /// bound.
    pub async fn try_start(secret: Option<Secret>) -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the webhook receiver")?;
        let addr = listener
            .local_addr()
            .context("reading the webhook receiver's address")?;
        let shared = Arc::new(Shared {
            mode: Mutex::new(Mode::Ok),
            secrets: Mutex::new(secret.into_iter().collect()),
            received: Mutex::new(Vec::new()),
            per_id: Mutex::new(HashMap::new()),
            count: watch::channel(0).0,
            stop: watch::channel(false).0,
        });
        let app = Router::new().fallback(handle).with_state(shared.clone());
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "webhook receiver stopped");
            }
        });
        Ok(Receiver { addr, shared, task })
    }

    /// The URL to register as a webhook endpoint:
    /// `http://127.0.0.1:<port>/webhook`.
    pub fn url(&self) -> String {
        format!("http://{}{PATH}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes how the following requests are answered.
    pub fn set_mode(&self, mode: Mode) {
        *lock(&self.shared.mode) = mode;
    }

    /// The current mode.
    pub fn mode(&self) -> Mode {
        lock(&self.shared.mode).clone()
    }

    /// Replaces the secrets signatures are checked with: one, or none (no
    /// check, `verified: None`). For rotation tests: a receiver that only
    /// knows the new secret, or only the old one.
    pub fn set_secret(&self, secret: Option<Secret>) {
        *lock(&self.shared.secrets) = secret.into_iter().collect();
    }

    /// Adds a secret: a request verifies if it verifies under any of them.
    pub fn add_secret(&self, secret: Secret) {
        lock(&self.shared.secrets).push(secret);
    }

    /// Every request so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.shared.received).clone()
    }

    /// How many requests so far.
    pub fn count(&self) -> usize {
        lock(&self.shared.received).len()
    }

    /// How many requests carried `webhook-id: id`: the attempts of one
    /// message.
    pub fn attempts(&self, id: &str) -> usize {
        lock(&self.shared.per_id).get(id).copied().unwrap_or(0)
    }

    /// The number of requests per `webhook-id` (requests without one are
    /// not counted here).
    pub fn attempts_by_id(&self) -> HashMap<String, usize> {
        lock(&self.shared.per_id).clone()
    }

    /// Forgets what was received (the mode and secrets stay).
    pub fn clear(&self) {
        lock(&self.shared.received).clear();
        lock(&self.shared.per_id).clear();
        self.shared.count.send_replace(0);
    }

    /// Waits until at least `n` requests have been received, and returns
    /// them all; an error saying how many came when `timeout` passes first.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> anyhow::Result<Vec<Received>> {
        let mut rx = self.shared.count.subscribe();
        let reached = tokio::time::timeout(timeout, rx.wait_for(|c| *c >= n)).await;
        match reached {
            Ok(Ok(_)) => Ok(self.received()),
            // The sender lives in `shared`, which `self` holds: it cannot
            // be dropped while we wait, but say so rather than panic.
            Ok(Err(_)) => anyhow::bail!("the webhook receiver stopped"),
            Err(_) => anyhow::bail!(
                "the webhook receiver got {} of {n} requests within {timeout:?}",
                self.count()
            ),
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shared.stop.send_replace(true);
        self.task.abort();
    }
}

/// Every request, whatever the method and path: record, then answer as the
/// mode says.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Utc::now();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let webhook_id = header("webhook-id");
    let webhook_timestamp = header("webhook-timestamp");
    let webhook_signature = header("webhook-signature");
    let timestamp: Option<i64> = webhook_timestamp.as_deref().and_then(|t| t.parse().ok());

    let verified = {
        let secrets = lock(&shared.secrets);
        if secrets.is_empty() {
            None
        } else {
            Some(match (&webhook_id, timestamp, &webhook_signature) {
                (Some(id), Some(ts), Some(sig)) => secrets.iter().any(|s| {
                    // `now` is the request's own timestamp: signature only
                    // (see the module docs).
                    verify(s, id, ts, &body, sig, ts, 0).is_ok()
                }),
                _ => false,
            })
        }
    };

    let mode = lock(&shared.mode).clone();
    let answered = match &mode {
        Mode::Ok => Some(200),
        Mode::Fail(status) => Some(StatusCode::from_u16(*status).map_or(500, |s| s.as_u16())),
        Mode::Hang => None,
        Mode::Redirect(_) => Some(302),
        Mode::RetryAfter(_) => Some(503),
    };

    let record = Received {
        at,
        method: method.to_string(),
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.to_string()),
        webhook_id: webhook_id.clone(),
        webhook_timestamp,
        webhook_signature,
        content_type: header("content-type"),
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        raw_body: body.to_vec(),
        verified,
        skew_secs: timestamp.map(|ts| at.timestamp() - ts),
        answered,
    };
    if let Some(id) = webhook_id {
        *lock(&shared.per_id).entry(id).or_insert(0) += 1;
    }
    let n = {
        let mut received = lock(&shared.received);
        received.push(record);
        received.len()
    };
    shared.count.send_replace(n);

    match mode {
        Mode::Ok => StatusCode::OK.into_response(),
        Mode::Fail(status) => (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            "the test receiver is set to fail",
        )
            .into_response(),
        Mode::Hang => {
            // Held until the sender gives up (hyper then drops this
            // future) or the receiver is dropped.
            let mut stop = shared.stop.subscribe();
            let _ = stop.wait_for(|stopped| *stopped).await;
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
        Mode::Redirect(to) => {
            (StatusCode::FOUND, [(axum::http::header::LOCATION, to)]).into_response()
        }
        Mode::RetryAfter(secs) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(axum::http::header::RETRY_AFTER, secs.to_string())],
            "the test receiver asks to retry later",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpeak_core::webhook::{sign, signature_header};

    async fn post(url: &str, id: &str, ts: i64, sig: &str, body: &str) -> reqwest::Response {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(500))
            .build()
            .unwrap()
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", sig)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn records_verifies_and_switches_modes() {
        let old = Secret::from_bytes([1; 32]);
        let new = Secret::from_bytes([2; 32]);
        let rx = Receiver::start(Some(old.clone())).await;
        let body = r#"{"type":"job.succeeded"}"#;
        let ts = Utc::now().timestamp();
        let both = signature_header(
            &[new.as_bytes(), old.as_bytes()],
            "msg_1",
            ts,
            body.as_bytes(),
        );

        assert_eq!(
            post(&rx.url(), "msg_1", ts, &both, body).await.status(),
            200
        );
        rx.set_secret(Some(new.clone()));
        rx.set_mode(Mode::Fail(500));
        assert_eq!(
            post(&rx.url(), "msg_1", ts, &both, body).await.status(),
            500
        );
        let only_old = sign(old.as_bytes(), "msg_2", ts, body.as_bytes());
        rx.set_mode(Mode::RetryAfter(7));
        let r = post(&rx.url(), "msg_2", ts, &only_old, body).await;
        assert_eq!(r.status(), 503);
        assert_eq!(r.headers()["retry-after"], "7");
        rx.set_mode(Mode::Redirect("/elsewhere".into()));
        let r = post(&rx.url(), "msg_2", ts, &only_old, body).await;
        assert_eq!(r.status(), 302);
        assert_eq!(r.headers()["location"], "/elsewhere");

        let got = rx.wait_for(4, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[0].verified, Some(true));
        assert_eq!(
            got[1].verified,
            Some(true),
            "the new key's signature is in the header"
        );
        assert_eq!(got[2].verified, Some(false), "signed with the old key only");
        assert_eq!(got[0].body["type"], "job.succeeded");
        assert_eq!(got[0].raw_body, body.as_bytes());
        assert_eq!(got[0].path, PATH);
        assert_eq!(got[0].answered, Some(200));
        assert_eq!(got[1].answered, Some(500));
        assert!(got[0].skew_secs.unwrap().abs() <= 1);
        assert_eq!(rx.attempts("msg_1"), 2);
        assert_eq!(rx.attempts("msg_2"), 2);
        assert_eq!(rx.attempts("msg_3"), 0);

        rx.set_secret(None);
        rx.set_mode(Mode::Ok);
        post(&rx.url(), "msg_3", ts, "v1,x", "not json").await;
        let got = rx.wait_for(5, Duration::from_secs(5)).await.unwrap();
        assert_eq!(got[4].verified, None);
        assert_eq!(got[4].body, Value::Null);

        let err = rx
            .wait_for(6, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "the webhook receiver got 5 of 6 requests within 100ms"
        );
        rx.clear();
        assert_eq!(rx.count(), 0);
        assert!(rx.attempts_by_id().is_empty());
    }

    #[tokio::test]
    async fn hang_holds_the_request() {
        let rx = Receiver::start(None).await;
        rx.set_mode(Mode::Hang);
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(200))
            .build()
            .unwrap();
        let err = client.post(rx.url()).body("{}").send().await.unwrap_err();
        assert!(err.is_timeout());
        let got = rx.wait_for(1, Duration::from_secs(1)).await.unwrap();
        assert_eq!(got[0].answered, None);
    }
}
