//! `offpeak-client`: a typed client for offpeak's HTTP API.
//!
//! The request and response types ([`types`]) are generated from the API's
//! OpenAPI document (`clients/openapi.json`, the portable form of the served
//! `/openapi.json`) by typify, through `offpeak-client-codegen`; the test
//! suite regenerates them and fails when the committed file differs, so they
//! cannot drift from the server. This file is the thin layer a generator
//! cannot write:
//!
//! - the API key and base URL ([`Client::new`], [`ClientBuilder`]);
//! - retries on 429 and 503 honouring `Retry-After`, with exponential backoff
//!   and jitter when it is absent; a `Retry-After` past
//!   [`RetryPolicy::max_wait`] (a quota that resets at midnight) is returned
//!   at once as an [`ApiError`] rather than slept through. Lost connections
//!   are retried for requests that are safe to repeat: reads, deletes, and
//!   submissions (which carry an `Idempotency-Key`);
//! - an `Idempotency-Key` on every submission (`POST /v1/jobs` and
//!   `/v1/jobs/bulk`): a fresh UUID per call unless the caller gives one, the
//!   same on each of the call's retries, so a retried submission is stored
//!   once;
//! - cursor pagination as a [`Stream`] ([`Client::jobs`]);
//! - a group's results as a stream of JSON Lines read as they arrive
//!   ([`Client::group_results`]);
//! - webhook signatures checked as the Standard Webhooks specification says
//!   ([`verify_webhook`]).
//!
//! ```no_run
//! # async fn example() -> Result<(), offpeak_client::Error> {
//! use offpeak_client::{types, Client};
//!
//! let client = Client::new("http://127.0.0.1:8080", "op_...")?;
//! let mut input = serde_json::Map::new();
//! input.insert("prompt".into(), "a lighthouse at dawn".into());
//! let job = client
//!     .submit(types::SubmitRequest::builder().model("flux-schnell").input(input).group(Some("thumbnails-2026-12-04".parse()?)))
//!     .await?;
//! println!("{} is {} until {}", job.id, job.state, job.release_at);
//! # Ok(()) }
//! ```

use std::fmt::Display;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt, TryStreamExt};
use rand::Rng;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

#[allow(clippy::all, missing_docs, rustdoc::all)]
pub mod types;
mod webhook;

pub use webhook::{verify_webhook, verify_webhook_at, WebhookError, WEBHOOK_TOLERANCE};

/// The header a submission's idempotency key travels in.
pub const IDEMPOTENCY_KEY: &str = "Idempotency-Key";

/// What a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API answered with an error (`{"error": {...}}`).
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The request did not get an answer: refused, reset, timed out.
    #[error("offpeak could not be reached: {0}")]
    Transport(#[source] reqwest::Error),
    /// An answer that is not what the API's document says.
    #[error("an unexpected answer (HTTP {status}): {message}")]
    Unexpected { status: u16, message: String },
    /// A request the API's document says is invalid, refused before it was sent.
    #[error("invalid request: {0}")]
    Invalid(String),
}

impl From<types::error::ConversionError> for Error {
    fn from(e: types::error::ConversionError) -> Self {
        Self::Invalid(e.to_string())
    }
}

/// An error the API answered, as its body says it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("HTTP {status} {code}: {message}")]
pub struct ApiError {
    pub status: u16,
    /// Machine-readable, e.g. `quota_exceeded`, `not_found`, `idempotency_conflict`.
    pub code: String,
    pub message: String,
    /// The request field at fault, when there is one.
    pub field: Option<String>,
    /// More about the error (a quota's `limit`, `used`, `resets_at`, ...).
    pub details: Option<serde_json::Value>,
    /// `Retry-After`, when the answer had one.
    pub retry_after: Option<Duration>,
}

/// When and how often a call is repeated.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The first backoff when the answer has no `Retry-After`; doubled per attempt, with full jitter.
    pub base_delay: Duration,
    /// The longest backoff without a `Retry-After`.
    pub max_delay: Duration,
    /// The longest `Retry-After` waited for; a longer one is returned as the error at once.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(5),
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries at all.
    pub fn none() -> Self {
        Self { max_attempts: 1, ..Self::default() }
    }

    /// The pause before attempt `attempt + 1` (attempt counts from 1): the
    /// server's `Retry-After` when it gave one, else full jitter over an
    /// exponential backoff.
    fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after;
        }
        let ceiling = self.base_delay.saturating_mul(1 << attempt.saturating_sub(1).min(16)).min(self.max_delay);
        ceiling.mul_f64(rand::thread_rng().gen_range(0.0..=1.0))
    }
}

/// A [`Client`] with settings of one's own.
#[derive(Debug)]
pub struct ClientBuilder {
    base_url: String,
    api_key: String,
    retry: RetryPolicy,
    timeout: Duration,
    http: Option<reqwest::Client>,
    idempotency_keys: bool,
}

impl ClientBuilder {
    /// Whether [`Client::submit`] and [`Client::submit_bulk`] send a fresh
    /// `Idempotency-Key` (the default). Without one, a lost connection
    /// during a submission is not retried (it may have been stored), but a
    /// single submission is eligible for the server's group commit, which
    /// keyed ones skip (they must find their original one by one): the
    /// choice of a producer that sends many small submissions at once and
    /// can tolerate a rare duplicate.
    pub fn idempotency_keys(mut self, on: bool) -> Self {
        self.idempotency_keys = on;
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Time for each attempt, from sending to the whole answer (30 s by default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// A `reqwest::Client` of one's own (its connection pool, proxy, TLS settings).
    pub fn http_client(mut self, http: reqwest::Client) -> Self {
        self.http = Some(http);
        self
    }

    /// # Errors
    /// [`Error::Invalid`] for an API key that cannot be a header value.
    pub fn build(self) -> Result<Client, Error> {
        let mut auth = HeaderValue::from_str(&format!("Bearer {}", self.api_key))
            .map_err(|_| Error::Invalid("the API key holds characters a header cannot carry".into()))?;
        auth.set_sensitive(true);
        Ok(Client {
            http: self.http.unwrap_or_default(),
            base: self.base_url.trim_end_matches('/').to_owned(),
            auth,
            retry: self.retry,
            timeout: self.timeout,
            idempotency_keys: self.idempotency_keys,
        })
    }
}

/// A submission's answer: the job, and whether it was stored by this call
/// (201) or is the original of a replayed `Idempotency-Key` (200).
#[derive(Debug, Clone)]
pub struct Submitted<T> {
    pub value: T,
    pub created: bool,
}

/// The filters and page size of a job listing.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<types::JobState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Jobs per page, 1 to 1000.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The span and grouping of a usage report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UsageQuery {
    /// An RFC 3339 instant or a date (the tenant's day).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<types::UsageGroupBy>,
}

/// A page size and cursor (schedules, deliveries).
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// A client of one offpeak API, for one tenant's API key. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    retry: RetryPolicy,
    timeout: Duration,
    idempotency_keys: bool,
}

/// Whether a lost connection may be retried: the request is safe to repeat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    Safe,
    Unsafe,
}

impl Client {
    /// A client with the default [`RetryPolicy`] and a 30 s timeout per attempt.
    ///
    /// # Errors
    /// [`Error::Invalid`] for an API key that cannot be a header value.
    pub fn new(base_url: impl Into<String>, api_key: impl Into<String>) -> Result<Self, Error> {
        Self::builder(base_url, api_key).build()
    }

    pub fn builder(base_url: impl Into<String>, api_key: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            api_key: api_key.into(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            http: None,
            idempotency_keys: true,
        }
    }

    // ---- jobs ----

    /// `POST /v1/jobs` under a fresh `Idempotency-Key` (unless
    /// [`ClientBuilder::idempotency_keys`] turned them off).
    ///
    /// # Errors
    /// See [`Error`]; e.g. a 422 naming the field, a 429 `quota_exceeded`.
    pub async fn submit<R>(&self, request: R) -> Result<types::JobView, Error>
    where
        R: TryInto<types::SubmitRequest>,
        R::Error: Display,
    {
        let body: types::SubmitRequest = convert(request)?;
        let key = self.idempotency_keys.then(|| Uuid::new_v4().to_string());
        Ok(self.submission("/v1/jobs", &body, key.as_deref()).await?.value)
    }

    /// `POST /v1/jobs` under the caller's `Idempotency-Key`: the same key and
    /// body again answers the original job (`created: false`); another body
    /// is a 409 `idempotency_conflict`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn submit_with_key<R>(&self, request: R, key: &str) -> Result<Submitted<types::JobView>, Error>
    where
        R: TryInto<types::SubmitRequest>,
        R::Error: Display,
    {
        let body: types::SubmitRequest = convert(request)?;
        self.submission("/v1/jobs", &body, Some(key)).await
    }

    /// `POST /v1/jobs/bulk` (all stored or none) under a fresh `Idempotency-Key`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn submit_bulk<R>(&self, request: R) -> Result<types::BulkResponse, Error>
    where
        R: TryInto<types::BulkRequest>,
        R::Error: Display,
    {
        let body: types::BulkRequest = convert(request)?;
        let key = self.idempotency_keys.then(|| Uuid::new_v4().to_string());
        Ok(self.submission("/v1/jobs/bulk", &body, key.as_deref()).await?.value)
    }

    /// `POST /v1/jobs/bulk` under the caller's `Idempotency-Key`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn submit_bulk_with_key<R>(&self, request: R, key: &str) -> Result<Submitted<types::BulkResponse>, Error>
    where
        R: TryInto<types::BulkRequest>,
        R::Error: Display,
    {
        let body: types::BulkRequest = convert(request)?;
        self.submission("/v1/jobs/bulk", &body, Some(key)).await
    }

    async fn submission<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B, key: Option<&str>) -> Result<Submitted<T>, Error> {
        let body = bytes::Bytes::from(serde_json::to_vec(body).map_err(|e| Error::Invalid(e.to_string()))?);
        // With a key, a repeat is answered with the original: safe.
        let repeat = if key.is_some() { Repeat::Safe } else { Repeat::Unsafe };
        let (status, value) = self
            .call(repeat, || {
                let request = self.request(Method::POST, path).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone());
                match key {
                    Some(key) => request.header(IDEMPOTENCY_KEY, key),
                    None => request,
                }
            })
            .await?;
        Ok(Submitted { value, created: status == StatusCode::CREATED })
    }

    /// `GET /v1/jobs/{id}`.
    ///
    /// # Errors
    /// See [`Error`]; a 404 `not_found` for an id that is not the tenant's.
    pub async fn job(&self, id: Uuid) -> Result<types::JobView, Error> {
        self.get(&format!("/v1/jobs/{id}"), &()).await
    }

    /// One page of `GET /v1/jobs`, newest first.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn list_jobs(&self, query: &JobQuery) -> Result<types::ListResponse, Error> {
        self.get("/v1/jobs", query).await
    }

    /// Every job the query matches, newest first, page after page (each page
    /// is asked for when the one before is consumed).
    pub fn jobs(&self, query: JobQuery) -> impl Stream<Item = Result<types::JobView, Error>> + '_ {
        futures_util::stream::try_unfold(Some(query), move |query| async move {
            let Some(query) = query else { return Ok(None) };
            let page = self.list_jobs(&query).await?;
            let next = page.next_cursor.map(|cursor| JobQuery { cursor: Some(cursor), ..query });
            Ok::<_, Error>(Some((futures_util::stream::iter(page.jobs.into_iter().map(Ok)), next)))
        })
        .try_flatten()
    }

    /// `DELETE /v1/jobs/{id}`: cancels a job that has not started (409 `not_cancellable` otherwise).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn cancel(&self, id: Uuid) -> Result<types::JobView, Error> {
        self.send(Method::DELETE, &format!("/v1/jobs/{id}"), None::<&()>).await
    }

    /// `POST /v1/jobs/{id}/upgrade`: the job again at full quality, once per
    /// body (the same body again answers the same child, `created: false`).
    ///
    /// # Errors
    /// See [`Error`]; a 409 `not_upgradable` for a job that has not succeeded.
    pub async fn upgrade<R>(&self, id: Uuid, request: R) -> Result<Submitted<types::JobView>, Error>
    where
        R: TryInto<types::UpgradeRequest>,
        R::Error: Display,
    {
        let body: types::UpgradeRequest = convert(request)?;
        let body = serde_json::to_vec(&body).map_err(|e| Error::Invalid(e.to_string()))?;
        let path = format!("/v1/jobs/{id}/upgrade");
        // The server keeps one child per (parent, body): repeating is safe.
        let (status, value) = self
            .call(Repeat::Safe, || {
                self.request(Method::POST, &path).header(reqwest::header::CONTENT_TYPE, "application/json").body(body.clone())
            })
            .await?;
        Ok(Submitted { value, created: status == StatusCode::CREATED })
    }

    // ---- groups ----

    /// `GET /v1/groups/{id}`: the group's counts by state and its completion.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn group(&self, id: Uuid) -> Result<types::GroupView, Error> {
        self.get(&format!("/v1/groups/{id}"), &()).await
    }

    /// `GET /v1/groups/{id}/results`: one line per job, in id order, read as
    /// the server streams them. A body cut short ends the stream with an
    /// [`Error::Unexpected`], never with a silently shorter list.
    ///
    /// # Errors
    /// The answer's status (see [`Error`]); later errors come through the stream.
    pub async fn group_results(&self, id: Uuid) -> Result<impl Stream<Item = Result<types::ResultLine, Error>>, Error> {
        let path = format!("/v1/groups/{id}/results");
        let response = self.respond(Repeat::Safe, || self.request(Method::GET, &path)).await?;
        Ok(json_lines(response))
    }

    // ---- schedules ----

    /// `POST /v1/schedules`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn create_schedule<R>(&self, request: R) -> Result<types::Schedule, Error>
    where
        R: TryInto<types::CreateScheduleRequest>,
        R::Error: Display,
    {
        self.send(Method::POST, "/v1/schedules", Some(&convert::<types::CreateScheduleRequest, _>(request)?)).await
    }

    /// One page of `GET /v1/schedules`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn list_schedules(&self, query: &PageQuery) -> Result<types::ScheduleList, Error> {
        self.get("/v1/schedules", query).await
    }

    /// `GET /v1/schedules/{id}`, with its next fire times.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn schedule(&self, id: Uuid) -> Result<types::Schedule, Error> {
        self.get(&format!("/v1/schedules/{id}"), &()).await
    }

    /// `PATCH /v1/schedules/{id}`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn update_schedule<R>(&self, id: Uuid, request: R) -> Result<types::Schedule, Error>
    where
        R: TryInto<types::PatchScheduleRequest>,
        R::Error: Display,
    {
        self.send(Method::PATCH, &format!("/v1/schedules/{id}"), Some(&convert::<types::PatchScheduleRequest, _>(request)?)).await
    }

    /// `DELETE /v1/schedules/{id}`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete_schedule(&self, id: Uuid) -> Result<types::Schedule, Error> {
        self.send(Method::DELETE, &format!("/v1/schedules/{id}"), None::<&()>).await
    }

    // ---- webhooks ----

    /// `POST /v1/webhooks`: the answer holds the signing secret, shown only here.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn create_webhook<R>(&self, request: R) -> Result<types::WebhookCreated, Error>
    where
        R: TryInto<types::CreateWebhook>,
        R::Error: Display,
    {
        self.send(Method::POST, "/v1/webhooks", Some(&convert::<types::CreateWebhook, _>(request)?)).await
    }

    /// `GET /v1/webhooks`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn list_webhooks(&self) -> Result<types::WebhookList, Error> {
        self.get("/v1/webhooks", &()).await
    }

    /// `GET /v1/webhooks/{id}`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn webhook(&self, id: Uuid) -> Result<types::WebhookView, Error> {
        self.get(&format!("/v1/webhooks/{id}"), &()).await
    }

    /// `PATCH /v1/webhooks/{id}`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn update_webhook<R>(&self, id: Uuid, request: R) -> Result<types::WebhookView, Error>
    where
        R: TryInto<types::UpdateWebhook>,
        R::Error: Display,
    {
        self.send(Method::PATCH, &format!("/v1/webhooks/{id}"), Some(&convert::<types::UpdateWebhook, _>(request)?)).await
    }

    /// `DELETE /v1/webhooks/{id}`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn delete_webhook(&self, id: Uuid) -> Result<types::WebhookView, Error> {
        self.send(Method::DELETE, &format!("/v1/webhooks/{id}"), None::<&()>).await
    }

    /// `POST /v1/webhooks/{id}/rotate-secret`: a new secret; the old one keeps signing for a while.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn rotate_webhook_secret(&self, id: Uuid) -> Result<types::SecretRotated, Error> {
        self.send(Method::POST, &format!("/v1/webhooks/{id}/rotate-secret"), None::<&()>).await
    }

    /// One page of `GET /v1/webhooks/{id}/deliveries`, newest first.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn webhook_deliveries(&self, id: Uuid, query: &PageQuery) -> Result<types::DeliveryList, Error> {
        self.get(&format!("/v1/webhooks/{id}/deliveries"), query).await
    }

    /// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`: the event sent again.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn replay_webhook_delivery(&self, id: Uuid, delivery_id: Uuid) -> Result<types::DeliveryView, Error> {
        self.send(Method::POST, &format!("/v1/webhooks/{id}/deliveries/{delivery_id}/replay"), None::<&()>).await
    }

    // ---- windows, usage, tenant, probes ----

    /// `GET /v1/windows/next`: when a low-priority job submitted at `at` (now
    /// by default) in `timezone` (the tenant's by default) would run.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn next_window(&self, timezone: Option<&str>, at: Option<DateTime<Utc>>) -> Result<types::NextWindow, Error> {
        #[derive(Serialize)]
        struct Query<'a> {
            #[serde(skip_serializing_if = "Option::is_none")]
            timezone: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            at: Option<String>,
        }
        let at = at.map(|a| a.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true));
        self.get("/v1/windows/next", &Query { timezone, at }).await
    }

    /// `GET /v1/usage`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn usage(&self, query: &UsageQuery) -> Result<types::UsageResponse, Error> {
        self.get("/v1/usage", query).await
    }

    /// `GET /v1/tenant`: the tenant's settings, quotas and today's use.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn tenant(&self) -> Result<types::TenantView, Error> {
        self.get("/v1/tenant", &()).await
    }

    /// `GET /healthz`.
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn healthz(&self) -> Result<types::Health, Error> {
        self.get("/healthz", &()).await
    }

    /// `GET /readyz`: PostgreSQL and RabbitMQ reachable (a 503 `Readiness`
    /// otherwise, which this returns as the error).
    ///
    /// # Errors
    /// See [`Error`].
    pub async fn readyz(&self) -> Result<types::Readiness, Error> {
        self.get("/readyz", &()).await
    }

    // ---- plumbing ----

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{}{path}", self.base)).header(AUTHORIZATION, self.auth.clone()).timeout(self.timeout)
    }

    async fn get<Q: Serialize + ?Sized, T: DeserializeOwned>(&self, path: &str, query: &Q) -> Result<T, Error> {
        Ok(self.call(Repeat::Safe, || self.request(Method::GET, path).query(query)).await?.1)
    }

    async fn send<B: Serialize, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T, Error> {
        let body = body.map(serde_json::to_vec).transpose().map_err(|e| Error::Invalid(e.to_string()))?;
        // A PATCH sets fields to given values, a DELETE of what is gone is a
        // 404 or the same answer: both are safe to repeat; other POSTs are not.
        let repeat = if method == Method::POST { Repeat::Unsafe } else { Repeat::Safe };
        let (_, value) = self
            .call(repeat, || {
                let request = self.request(method.clone(), path);
                match &body {
                    Some(b) => request.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone()),
                    None => request,
                }
            })
            .await?;
        Ok(value)
    }

    /// Sends and reads a JSON answer, with retries.
    async fn call<T: DeserializeOwned>(&self, repeat: Repeat, build: impl Fn() -> RequestBuilder) -> Result<(StatusCode, T), Error> {
        let response = self.respond(repeat, build).await?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(Error::Transport)?;
        let value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::Unexpected { status: status.as_u16(), message: format!("the body does not match the API's document: {e}") })?;
        Ok((status, value))
    }

    /// Sends until a success, an error not worth repeating, or the attempts run out.
    async fn respond(&self, repeat: Repeat, build: impl Fn() -> RequestBuilder) -> Result<Response, Error> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let last = attempt >= self.retry.max_attempts;
            match build().send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let error = api_error(response).await;
                    let retryable = matches!(error.status, 429 | 503);
                    let wait = error.retry_after;
                    if !retryable || last || wait.is_some_and(|w| w > self.retry.max_wait) {
                        return Err(error.into());
                    }
                    tokio::time::sleep(self.retry.delay(attempt, wait)).await;
                }
                Err(e) => {
                    if last || repeat == Repeat::Unsafe || !(e.is_connect() || e.is_timeout() || e.is_request()) {
                        return Err(Error::Transport(e));
                    }
                    tokio::time::sleep(self.retry.delay(attempt, None)).await;
                }
            }
        }
    }
}

// The document's open string types (any deployment's models, use cases and
// timezones), from string literals too.
impl From<&str> for types::Model {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<&str> for types::UseCase {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl From<&str> for types::Timezone {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

/// A request type from itself or its builder; what the document forbids
/// (a pattern, a length) is an [`Error::Invalid`] before anything is sent.
fn convert<T, R>(request: R) -> Result<T, Error>
where
    R: TryInto<T>,
    R::Error: Display,
{
    request.try_into().map_err(|e| Error::Invalid(e.to_string()))
}

/// The [`ApiError`] of a non-2xx answer; a body that is not the API's error
/// shape still gives its status and text.
async fn api_error(response: Response) -> ApiError {
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers());
    let text = response.text().await.unwrap_or_default();
    let parsed: Option<types::ErrorBody> = serde_json::from_str(&text).ok();
    match parsed {
        Some(body) => ApiError {
            status,
            code: body.error.code,
            message: body.error.message,
            field: body.error.field,
            details: Some(body.error.details).filter(|d| !d.is_empty()).map(serde_json::Value::Object),
            retry_after,
        },
        None => ApiError {
            status,
            code: "unexpected".into(),
            message: text.chars().take(500).collect(),
            field: None,
            details: None,
            retry_after,
        },
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?.with_timezone(&Utc);
    Some((at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
}

/// The lines of a JSON Lines body, each parsed as it is complete.
fn json_lines<T: DeserializeOwned>(response: Response) -> impl Stream<Item = Result<T, Error>> {
    let status = response.status().as_u16();
    let state = (response.bytes_stream(), BytesMut::new(), false);
    futures_util::stream::try_unfold(state, move |(mut body, mut buffer, mut done)| async move {
        loop {
            if let Some(end) = buffer.iter().position(|b| *b == b'\n') {
                let line = buffer.split_to(end + 1);
                let line = &line[..end];
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let item = serde_json::from_slice(line)
                    .map_err(|e| Error::Unexpected { status, message: format!("a results line does not match the API's document: {e}") })?;
                return Ok(Some((item, (body, buffer, done))));
            }
            if done {
                if buffer.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                return Err(Error::Unexpected { status, message: "the results ended in the middle of a line (cut short)".into() });
            }
            match body.next().await {
                Some(Ok(chunk)) => buffer.extend_from_slice(chunk.chunk()),
                Some(Err(e)) => return Err(Error::Transport(e)),
                None => done = true,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        let later = (Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        headers.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&headers).expect("a date");
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn backoff_grows_within_its_ceiling_and_obeys_retry_after() {
        let policy = RetryPolicy::default();
        for attempt in 1..10 {
            let d = policy.delay(attempt, None);
            assert!(d <= policy.max_delay, "attempt {attempt}: {d:?}");
            assert!(d <= policy.base_delay * (1 << (attempt - 1)), "attempt {attempt}: {d:?}");
        }
        assert_eq!(policy.delay(1, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }
}
