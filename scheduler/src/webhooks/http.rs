//! The guarded HTTP sender of webhook deliveries: one POST, its outcome as
//! an [`Attempt`], and nothing offpeak may not call.
//!
//! Why guarded: a webhook URL is chosen by a tenant, so without care the
//! scheduler would POST wherever it is told, including to itself, to the
//! database's HTTP side doors, or to the cloud metadata address
//! (server-side request forgery). The URL was checked when the endpoint was
//! registered ([`offpeak_core::webhook::check_url`]), but a name's addresses
//! can change after that, so every delivery is checked again here:
//!
//! - the URL is re-checked with the same rules, and a literal IP host must be
//!   public (reqwest does not call a resolver for a literal IP);
//! - the client's DNS resolver ([`GuardedResolver`]) drops every resolved
//!   address that is not public ([`offpeak_core::webhook::is_public_ip`]),
//!   so the connection can only be made to an address that passed, with no
//!   window between the check and the connect;
//! - redirects are not followed (a 3xx is a failed attempt: the tenant
//!   should fix the URL, and a redirect could point anywhere), proxies from
//!   the environment are ignored, each attempt has a timeout and at most
//!   [`SenderConfig::max_response_bytes`] of a response are read.
//!
//! `allow_private` turns the address rules off, for the tests, the demo and
//! installations whose receivers are on a private network.
//!
//! Header values (the signatures among them) never appear in an
//! [`Attempt`]'s error or in a log line.

use std::error::Error as StdError;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDateTime, Utc};
use offpeak_core::webhook::{check_url, is_public_ip};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, LOCATION, RETRY_AFTER};

/// How long one attempt may take, connect to last byte read:
/// [`SenderConfig::timeout`]'s default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of a response is read at most:
/// [`SenderConfig::max_response_bytes`]'s default. Enough for an error
/// message; a receiver cannot make the scheduler read megabytes.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 4096;

/// The longest excerpt of a response body (or `Location`) kept in an
/// [`Attempt`]'s error, in characters.
pub const ERROR_EXCERPT_CHARS: usize = 200;

/// The `User-Agent` of deliveries.
pub const USER_AGENT: &str = concat!("offpeak-webhooks/", env!("CARGO_PKG_VERSION"));

/// How the [`Sender`] behaves.
#[derive(Debug, Clone)]
pub struct SenderConfig {
    /// How long one attempt may take in all (connect, request, response
    /// headers and the part of the body that is read).
    pub timeout: Duration,
    /// Deliver to loopback, private and other non-public addresses and over
    /// plain `http` too. Off in production; on for tests and the demo.
    pub allow_private: bool,
    /// At most this many bytes of a response body are read.
    pub max_response_bytes: usize,
}

impl Default for SenderConfig {
    fn default() -> Self {
        SenderConfig {
            timeout: DEFAULT_TIMEOUT,
            allow_private: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
        }
    }
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The response's status code; `None` when there was no response
    /// (refused destination, DNS failure, connection error, timeout).
    pub status: Option<u16>,
    /// From the start of the attempt to the response's headers (or to the
    /// failure).
    pub latency: Duration,
    /// Why the attempt failed, as a sentence for the tenant: the refusal, the
    /// network error, `HTTP 503 Service Unavailable: <body excerpt>`, or
    /// `redirect not followed (Location: ...)`. `None` on success.
    pub error: Option<String>,
    /// The response's `Retry-After`, as a delay from now.
    pub retry_after: Option<Duration>,
    /// The receiver answered 2xx.
    pub success: bool,
}

impl Attempt {
    fn failed(started: Instant, error: String) -> Attempt {
        Attempt {
            status: None,
            latency: started.elapsed(),
            error: Some(error),
            retry_after: None,
            success: false,
        }
    }
}

/// A destination offpeak may not call: the resolver's error, recognised in
/// reqwest's error chain so the tenant sees this sentence rather than
/// "error sending request".
#[derive(Debug)]
pub struct DestinationRefused(String);

impl fmt::Display for DestinationRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl StdError for DestinationRefused {}

/// The client's DNS resolver: the system's (`tokio::net::lookup_host`),
/// keeping only public addresses unless `allow_private`.
///
/// reqwest connects only to what this returns, so a name that resolves to
/// a public address when the URL was registered and to 127.0.0.1 now is
/// refused now.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    /// Keep every address.
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow_private = self.allow_private;
        Box::pin(async move {
            // Port 0: reqwest puts the URL's port (or the scheme's) in.
            let all: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = all
                .into_iter()
                .partition(|a| allow_private || is_public_ip(a.ip()));
            if allowed.is_empty() {
                let msg = if refused.is_empty() {
                    format!("webhook host '{host}' resolves to no address")
                } else {
                    let mut ips: Vec<IpAddr> = refused.iter().map(|a| a.ip()).collect();
                    ips.dedup();
                    let list = ips.iter().map(|ip| ip.to_string()).collect::<Vec<_>>();
                    format!(
                        "webhook host '{host}' resolves only to addresses offpeak may not call: {}",
                        list.join(", ")
                    )
                };
                return Err(Box::new(DestinationRefused(msg)) as _);
            }
            if !refused.is_empty() {
                tracing::debug!(
                    host = %host,
                    refused = refused.len(),
                    "webhook host resolved to some non-public addresses; skipping them"
                );
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Sends deliveries. One per process: it holds the connection pool.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    cfg: SenderConfig,
}

impl Sender {
    /// A sender with its client: no redirects, no proxy, the timeout, and
    /// the [`GuardedResolver`].
    pub fn new(cfg: SenderConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(cfg.timeout)
            .user_agent(USER_AGENT)
            .dns_resolver(Arc::new(GuardedResolver {
                allow_private: cfg.allow_private,
            }))
            .build()?;
        Ok(Sender { client, cfg })
    }

    /// The configuration the sender was built with.
    pub fn config(&self) -> &SenderConfig {
        &self.cfg
    }

    /// POSTs `body` to `url` with `content-type: application/json` and
    /// `headers` (typically `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`), and reports the outcome. Never panics and
    /// never returns an error: every failure is an [`Attempt`] with
    /// `success: false`.
    pub async fn send(&self, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Attempt {
        let started = Instant::now();
        // The registration-time rules again: they may have been tightened
        // since, and `allow_private` is this process's, not the API's.
        if let Err(refusal) = check_url(url, self.cfg.allow_private) {
            return Attempt::failed(started, refusal.to_string());
        }
        let parsed = match reqwest::Url::parse(url) {
            Ok(u) => u,
            Err(e) => {
                return Attempt::failed(started, format!("the webhook URL is not valid ({e})"))
            }
        };
        // reqwest connects to a literal IP without asking the resolver, so
        // the address rule is applied here too (`check_url` does as well;
        // this keeps the guarantee local to the sender).
        if !self.cfg.allow_private {
            // The URL parser prints an IP host in canonical form (IPv6 in
            // brackets), which `IpAddr` parses; a name does not parse.
            let host = parsed.host_str().unwrap_or_default();
            let literal = host
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(host)
                .parse::<IpAddr>()
                .ok();
            if let Some(ip) = literal.filter(|ip| !is_public_ip(*ip)) {
                return Attempt::failed(
                    started,
                    format!("webhook address {ip} is not one offpeak may call"),
                );
            }
        }
        let host = parsed.host_str().unwrap_or_default().to_owned();

        let mut req = self
            .client
            .post(parsed)
            .header(CONTENT_TYPE, "application/json");
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let mut resp = match req.body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let attempt = Attempt::failed(started, self.describe(e));
                tracing::debug!(host = %host, error = attempt.error.as_deref(), "webhook attempt failed");
                return attempt;
            }
        };
        let latency = started.elapsed();
        let status = resp.status();
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, Utc::now()));

        let error = if status.is_success() {
            // The body is not read: a 2xx is all a delivery needs, and a
            // receiver that answers then dawdles must not make it fail.
            None
        } else if status.is_redirection() {
            let location = resp
                .headers()
                .get(LOCATION)
                .map(|v| excerpt(v.as_bytes()))
                .unwrap_or_else(|| "none".to_owned());
            Some(format!("redirect not followed (Location: {location})"))
        } else {
            let head = read_capped(&mut resp, self.cfg.max_response_bytes).await;
            let reason = status.canonical_reason().unwrap_or("");
            let text = excerpt(&head);
            let mut msg = format!("HTTP {}", status.as_u16());
            if !reason.is_empty() {
                msg.push(' ');
                msg.push_str(reason);
            }
            if !text.is_empty() {
                msg.push_str(": ");
                msg.push_str(&text);
            }
            Some(msg)
        };
        tracing::debug!(
            host = %host,
            status = status.as_u16(),
            latency_ms = latency.as_millis() as u64,
            "webhook attempt answered"
        );
        Attempt {
            status: Some(status.as_u16()),
            latency,
            error,
            retry_after,
            success: status.is_success(),
        }
    }

    /// A sentence for a request that got no response. The URL is left out
    /// (the tenant knows it, and its query may hold a token); header values
    /// are never part of reqwest's errors.
    fn describe(&self, e: reqwest::Error) -> String {
        if e.is_timeout() {
            return format!("timed out after {} ms", self.cfg.timeout.as_millis());
        }
        let e = e.without_url();
        let mut parts: Vec<String> = Vec::new();
        let mut source: Option<&(dyn StdError + 'static)> = Some(&e);
        while let Some(err) = source {
            if let Some(refused) = err.downcast_ref::<DestinationRefused>() {
                return refused.to_string();
            }
            let text = err.to_string();
            // reqwest's and hyper's outer layers say nothing the cause does
            // not ("error sending request", "client error (Connect)"), and
            // layers often repeat their cause's text; keep what informs.
            let generic = text == "error sending request" || text.starts_with("client error (");
            if !generic && !parts.iter().any(|p| p.contains(&text)) {
                parts.push(text);
            }
            source = err.source();
        }
        let chain = parts.join(": ");
        if e.is_connect() {
            format!("connection failed: {chain}")
        } else {
            chain
        }
    }
}

/// Reads at most `max` bytes of the body, chunk by chunk, and stops there
/// (the rest is never read). A body that fails or times out midway gives
/// what arrived.
async fn read_capped(resp: &mut reqwest::Response, max: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    while buf.len() < max {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                let room = max - buf.len();
                buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    buf
}

/// A short, single-line, printable excerpt of `bytes`: invalid UTF-8
/// replaced, whitespace runs and control characters collapsed to one space,
/// cut at [`ERROR_EXCERPT_CHARS`] with `…`.
fn excerpt(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let collapsed = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|word| !word.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if collapsed.chars().count() <= ERROR_EXCERPT_CHARS {
        collapsed
    } else {
        let mut cut: String = collapsed.chars().take(ERROR_EXCERPT_CHARS).collect();
        cut.push('…');
        cut
    }
}

/// A `Retry-After` value as a delay from `now`: delay-seconds (`120`) or an
/// HTTP-date, in the preferred IMF-fixdate (`Sun, 06 Nov 1994 08:49:37
/// GMT`) or the two obsolete forms HTTP recipients must accept (RFC 850
/// `Sunday, 06-Nov-94 08:49:37 GMT`, asctime `Sun Nov  6 08:49:37 1994`).
/// A date in the past is no delay. `None` for anything else.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is not a usable value either.
        return value.parse::<u64>().ok().map(Duration::from_secs);
    }
    let when: DateTime<Utc> = DateTime::parse_from_rfc2822(value)
        .map(|d| d.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"]
                .iter()
                .find_map(|fmt| NaiveDateTime::parse_from_str(value, fmt).ok())
                .map(|naive| naive.and_utc())
        })?;
    Some((when - now).to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::body::{Body, Bytes};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::{get, post};
    use axum::Router;
    use chrono::TimeZone;

    /// Serves `router` on 127.0.0.1 at a free port, until the test ends.
    async fn serve(router: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        addr
    }

    fn sender(allow_private: bool) -> Sender {
        Sender::new(SenderConfig {
            allow_private,
            timeout: Duration::from_secs(5),
            ..SenderConfig::default()
        })
        .unwrap()
    }

    /// A receiver answering 200 that counts hits and keeps the last
    /// request's headers and body.
    #[derive(Clone, Default)]
    struct Seen {
        hits: Arc<AtomicUsize>,
        last: Arc<std::sync::Mutex<Option<(HeaderMap, Bytes)>>>,
    }

    async fn ok_receiver() -> (SocketAddr, Seen) {
        let seen = Seen::default();
        let s = seen.clone();
        let router = Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: Bytes| {
                let s = s.clone();
                async move {
                    s.hits.fetch_add(1, Ordering::SeqCst);
                    *s.last.lock().unwrap() = Some((headers, body));
                    StatusCode::OK
                }
            }),
        );
        (serve(router).await, seen)
    }

    fn hook_headers() -> Vec<(&'static str, String)> {
        vec![
            ("webhook-id", "msg_1".to_owned()),
            ("webhook-timestamp", "1700000000".to_owned()),
            ("webhook-signature", "v1,SECRETSIGNATUREVALUE=".to_owned()),
        ]
    }

    #[test]
    fn defaults() {
        let cfg = SenderConfig::default();
        assert_eq!(cfg.timeout, Duration::from_secs(10));
        assert_eq!(cfg.max_response_bytes, 4096);
        assert!(!cfg.allow_private);
    }

    #[tokio::test]
    async fn loopback_literal_refused_when_private_not_allowed() {
        let (addr, seen) = ok_receiver().await;
        let s = sender(false);
        for url in [
            format!("https://127.0.0.1:{}/hook", addr.port()),
            format!("https://[::ffff:127.0.0.1]:{}/hook", addr.port()),
            format!("https://2130706433:{}/hook", addr.port()),
        ] {
            let a = s.send(&url, &hook_headers(), b"{}".to_vec()).await;
            assert!(!a.success, "{url}");
            assert_eq!(a.status, None);
            let err = a.error.unwrap();
            assert!(
                err.contains("127.0.0.1") && err.contains("not a public address"),
                "{err}"
            );
        }
        // Plain http is refused too, before any address is looked at.
        let a = s
            .send(
                &format!("http://127.0.0.1:{}/hook", addr.port()),
                &[],
                b"{}".to_vec(),
            )
            .await;
        assert!(a.error.unwrap().contains("must use https"));
        assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn localhost_name_refused_when_private_not_allowed() {
        let (addr, seen) = ok_receiver().await;
        let s = sender(false);
        let a = s
            .send(
                &format!("https://localhost:{}/hook", addr.port()),
                &hook_headers(),
                b"{}".to_vec(),
            )
            .await;
        assert!(!a.success);
        assert_eq!(a.status, None);
        assert!(a.error.unwrap().contains("'localhost' is a local name"));
        assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
    }

    /// The resolver itself, and that the client really uses it: a request
    /// made with the sender's client (bypassing `send`'s URL check) to a
    /// name that resolves to loopback never connects.
    #[tokio::test]
    async fn resolver_drops_non_public_addresses() {
        let refused = GuardedResolver {
            allow_private: false,
        }
        .resolve("localhost".parse().unwrap())
        .await
        .err()
        .expect("localhost resolves only to loopback");
        let msg = refused.to_string();
        assert!(
            msg.starts_with(
                "webhook host 'localhost' resolves only to addresses offpeak may not call: "
            ),
            "{msg}"
        );
        assert!(msg.contains("127.0.0.1") || msg.contains("::1"), "{msg}");

        let allowed: Vec<SocketAddr> = GuardedResolver {
            allow_private: true,
        }
        .resolve("localhost".parse().unwrap())
        .await
        .unwrap()
        .collect();
        assert!(allowed.iter().all(|a| a.ip().is_loopback()) && !allowed.is_empty());

        let (addr, seen) = ok_receiver().await;
        let s = sender(false);
        let err = s
            .client
            .post(format!("http://localhost:{}/hook", addr.port()))
            .send()
            .await
            .unwrap_err();
        let described = s.describe(err);
        assert!(
            described.starts_with("webhook host 'localhost' resolves only to"),
            "{described}"
        );
        assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn delivered_when_private_allowed() {
        let (addr, seen) = ok_receiver().await;
        let s = sender(true);
        for url in [
            format!("http://127.0.0.1:{}/hook", addr.port()),
            format!("http://localhost:{}/hook", addr.port()),
        ] {
            let a = s.send(&url, &hook_headers(), br#"{"a":1}"#.to_vec()).await;
            assert!(a.success, "{url}: {a:?}");
            assert_eq!(a.status, Some(200));
            assert_eq!(a.error, None);
        }
        assert_eq!(seen.hits.load(Ordering::SeqCst), 2);
        let (headers, body) = seen.last.lock().unwrap().clone().unwrap();
        assert_eq!(headers["content-type"], "application/json");
        assert_eq!(headers["webhook-id"], "msg_1");
        assert_eq!(headers["webhook-timestamp"], "1700000000");
        assert_eq!(headers["webhook-signature"], "v1,SECRETSIGNATUREVALUE=");
        assert!(headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("offpeak-webhooks/"));
        assert_eq!(&body[..], br#"{"a":1}"#);
    }

    #[tokio::test]
    async fn any_2xx_succeeds_and_others_fail_with_an_excerpt() {
        let router = Router::new()
            .route("/204", post(|| async { StatusCode::NO_CONTENT }))
            .route(
                "/404",
                post(|| async { (StatusCode::NOT_FOUND, "no\n such\thook") }),
            )
            .route("/500", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }));
        let addr = serve(router).await;
        let s = sender(true);
        let a = s.send(&format!("http://{addr}/204"), &[], vec![]).await;
        assert!(
            a.success && a.status == Some(204) && a.error.is_none(),
            "{a:?}"
        );
        let a = s
            .send(&format!("http://{addr}/404"), &hook_headers(), vec![])
            .await;
        assert!(!a.success);
        assert_eq!(a.status, Some(404));
        assert_eq!(a.error.as_deref(), Some("HTTP 404 Not Found: no such hook"));
        let a = s.send(&format!("http://{addr}/500"), &[], vec![]).await;
        assert_eq!(a.error.as_deref(), Some("HTTP 500 Internal Server Error"));
    }

    #[tokio::test]
    async fn redirect_not_followed() {
        let other_hits = Arc::new(AtomicUsize::new(0));
        let hits = other_hits.clone();
        let router = Router::new()
            .route(
                "/hook",
                post(|| async { (StatusCode::FOUND, [("location", "/other")]).into_response() }),
            )
            .route(
                "/other",
                post(move || {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        StatusCode::OK
                    }
                })
                .get(|| async { StatusCode::OK }),
            );
        let addr = serve(router).await;
        let a = sender(true)
            .send(&format!("http://{addr}/hook"), &[], vec![])
            .await;
        assert!(!a.success);
        assert_eq!(a.status, Some(302));
        assert_eq!(
            a.error.as_deref(),
            Some("redirect not followed (Location: /other)")
        );
        assert_eq!(other_hits.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn hanging_server_times_out() {
        let router = Router::new().route(
            "/hook",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                StatusCode::OK
            }),
        );
        let addr = serve(router).await;
        let s = Sender::new(SenderConfig {
            timeout: Duration::from_millis(300),
            allow_private: true,
            ..SenderConfig::default()
        })
        .unwrap();
        let a = s
            .send(&format!("http://{addr}/hook"), &hook_headers(), vec![])
            .await;
        assert!(!a.success);
        assert_eq!(a.status, None);
        assert_eq!(a.error.as_deref(), Some("timed out after 300 ms"));
        assert!(a.latency >= Duration::from_millis(300) && a.latency < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn connection_refused_is_an_error_without_status() {
        // Bind then drop: the port is (almost certainly) closed now.
        let port = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap().port()
        };
        let a = sender(true)
            .send(
                &format!("http://127.0.0.1:{port}/hook"),
                &hook_headers(),
                vec![],
            )
            .await;
        assert!(!a.success);
        assert_eq!(a.status, None);
        let err = a.error.unwrap();
        assert!(
            err.starts_with("connection failed: tcp connect error"),
            "{err}"
        );
        assert!(!err.contains("SECRETSIGNATURE"));
    }

    /// A receiver that answers 500 with an endless body: the sender reads
    /// its cap and stops, rather than reading until the timeout.
    #[tokio::test]
    async fn response_body_is_capped() {
        let router = Router::new().route(
            "/hook",
            post(|| async {
                let chunk = Bytes::from(vec![b'x'; 1000]);
                let endless =
                    futures_util::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
                Response::builder()
                    .status(500)
                    .body(Body::from_stream(endless))
                    .unwrap()
            }),
        );
        let addr = serve(router).await;
        let s = Sender::new(SenderConfig {
            timeout: Duration::from_secs(5),
            allow_private: true,
            max_response_bytes: 4096,
        })
        .unwrap();
        let started = Instant::now();
        let a = s.send(&format!("http://{addr}/hook"), &[], vec![]).await;
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "read until the timeout"
        );
        assert_eq!(a.status, Some(500));
        let err = a.error.unwrap();
        let body_part = err
            .strip_prefix("HTTP 500 Internal Server Error: ")
            .unwrap();
        assert_eq!(body_part.chars().count(), ERROR_EXCERPT_CHARS + 1);
        assert!(body_part.ends_with('…'));
    }

    #[tokio::test]
    async fn read_capped_stops_at_the_cap() {
        let router = Router::new().route("/big", get(|| async { vec![b'y'; 100_000] }));
        let addr = serve(router).await;
        let mut resp = reqwest::get(format!("http://{addr}/big")).await.unwrap();
        let head = read_capped(&mut resp, 4096).await;
        assert_eq!(head.len(), 4096);
    }

    #[tokio::test]
    async fn retry_after_from_the_response() {
        let router = Router::new()
            .route(
                "/secs",
                post(|| async { (StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "120")]) }),
            )
            .route(
                "/date",
                post(|| async {
                    let when = (Utc::now() + chrono::Duration::seconds(3600)).to_rfc2822();
                    (StatusCode::TOO_MANY_REQUESTS, [("retry-after", when)]).into_response()
                }),
            );
        let addr = serve(router).await;
        let s = sender(true);
        let a = s.send(&format!("http://{addr}/secs"), &[], vec![]).await;
        assert_eq!(a.status, Some(503));
        assert_eq!(a.retry_after, Some(Duration::from_secs(120)));
        let a = s.send(&format!("http://{addr}/date"), &[], vec![]).await;
        assert_eq!(a.status, Some(429));
        let d = a.retry_after.unwrap();
        assert!(
            d > Duration::from_secs(3590) && d <= Duration::from_secs(3600),
            "{d:?}"
        );
    }

    #[test]
    fn retry_after_forms() {
        let now = Utc.with_ymd_and_hms(1994, 11, 6, 8, 49, 0).unwrap();
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after(" 86400 ", now),
            Some(Duration::from_secs(86400))
        );
        let secs37 = Some(Duration::from_secs(37));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            secs37
        );
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            secs37
        );
        assert_eq!(parse_retry_after("Sun Nov  6 08:49:37 1994", now), secs37);
        // In the past: retry at once.
        assert_eq!(
            parse_retry_after("Sat, 05 Nov 1994 08:49:37 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["", "-5", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad}");
        }
    }

    #[test]
    fn excerpt_is_short_and_single_line() {
        assert_eq!(excerpt(b"  a\r\n\tb  "), "a b");
        assert_eq!(excerpt(b"\xff ok"), "\u{fffd} ok");
        let long = excerpt(&[b'z'; 1000]);
        assert_eq!(long.chars().count(), ERROR_EXCERPT_CHARS + 1);
    }

    /// A header value that reqwest refuses (a newline) fails the attempt
    /// without the value appearing in the error.
    #[tokio::test]
    async fn header_values_never_in_errors() {
        let (addr, seen) = ok_receiver().await;
        let headers = vec![("webhook-signature", "v1,SECRETSIGNATURE\nVALUE".to_owned())];
        let a = sender(true)
            .send(&format!("http://{addr}/hook"), &headers, vec![])
            .await;
        assert!(!a.success);
        assert_eq!(a.status, None);
        let err = a.error.unwrap();
        assert!(!err.contains("SECRETSIGNATURE"), "{err}");
        assert_eq!(seen.hits.load(Ordering::SeqCst), 0);
    }
}
