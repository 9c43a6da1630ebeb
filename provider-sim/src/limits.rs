//! The simulator's own rate limits, and what it saw of its callers' pace.
//!
//! An axum middleware in front of every provider route (everything but
//! `/v1/stats…` and `/healthz`, so routes added later are covered too):
//!
//! - it counts each call's **arrival** and the calls **in flight** (from
//!   arrival until the answer is produced, or the client goes away), and
//!   keeps the most seen: [`Observed::max_in_flight`] and
//!   [`Observed::max_calls_in_any_minute`] (the most arrivals within any
//!   60-second span: two calls 60 s or more apart are never in one minute);
//! - with [`SimConfig::rpm_limit`](crate::SimConfig::rpm_limit) set, a call
//!   arriving when that many calls were accepted in the last 60 s is
//!   refused; with [`SimConfig::max_concurrent`](crate::SimConfig::max_concurrent),
//!   a call arriving while that many are in flight is. A refusal is a 429 in
//!   OpenAI's error shape (`{"error": {"message", "type": "requests", "param":
//!   null, "code": "rate_limit_exceeded"}}`) with `retry-after` (whole
//!   seconds) and OpenAI's `x-ratelimit-limit-requests`,
//!   `x-ratelimit-remaining-requests` and `x-ratelimit-reset-requests`
//!   (`1s`, `250ms`, `1m5s`) headers, which accepted calls carry too while a
//!   per-minute limit is set.
//!
//! Refused calls count as arrivals and, while they are answered, as in
//! flight: a caller that breaks a limit shows in the maxima, not only in
//! `over_limit`.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{self, Request};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::{lock, Simulator};

/// The span of a "minute" of the per-minute limit and statistic.
pub const MINUTE: Duration = Duration::from_secs(60);

/// What the middleware saw since the last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Observed {
    pub max_in_flight: u64,
    pub max_calls_in_any_minute: u64,
    /// Calls refused with 429 by `rpm_limit` or `max_concurrent`.
    pub over_limit: u64,
}

/// The middleware's state, one per simulator.
#[derive(Debug, Default)]
pub(crate) struct Tracker {
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    in_flight: u64,
    /// Arrivals of the last minute (every call), oldest first.
    arrivals: VecDeque<Instant>,
    /// Accepted calls of the last minute, oldest first: the per-minute limit.
    accepted: VecDeque<Instant>,
    observed: Observed,
}

/// Drops the instants a minute or more before `now`.
fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= MINUTE) {
        q.pop_front();
    }
}

/// How a call was let in, or why not.
enum Admission {
    Accepted { rate: Option<RateHeaders> },
    Refused { rate: Option<RateHeaders>, retry_after: Duration, message: String },
}

/// OpenAI's `x-ratelimit-*-requests` values.
struct RateHeaders {
    limit: u32,
    remaining: u64,
    reset: Duration,
}

impl Tracker {
    /// Counts an arrival and decides it under the limits.
    fn admit(&self, rpm: Option<u32>, max_concurrent: Option<u32>) -> Admission {
        let now = Instant::now();
        let mut s = lock(&self.state);
        prune(&mut s.arrivals, now);
        prune(&mut s.accepted, now);
        s.arrivals.push_back(now);
        s.in_flight += 1;
        let (arrivals, in_flight) = (s.arrivals.len() as u64, s.in_flight);
        let o = &mut s.observed;
        o.max_calls_in_any_minute = o.max_calls_in_any_minute.max(arrivals);
        o.max_in_flight = o.max_in_flight.max(in_flight);

        // Until the oldest accepted call of the window leaves it.
        let reset = |s: &Window| s.accepted.front().map_or(Duration::ZERO, |t| MINUTE.saturating_sub(now.duration_since(*t)));
        let over_rpm = rpm.is_some_and(|rpm| s.accepted.len() as u64 >= u64::from(rpm));
        let over_concurrency = max_concurrent.is_some_and(|max| in_flight > u64::from(max));
        if over_rpm || over_concurrency {
            s.observed.over_limit += 1;
            let rate = rpm.map(|limit| RateHeaders { limit, remaining: 0, reset: reset(&s) });
            let (retry_after, message) = if over_rpm {
                (reset(&s), format!("Rate limit reached for requests: limit {} per min.", rpm.unwrap_or_default()))
            } else {
                (Duration::from_secs(1), format!("Too many concurrent requests: limit {}.", max_concurrent.unwrap_or_default()))
            };
            return Admission::Refused { rate, retry_after, message };
        }
        s.accepted.push_back(now);
        let rate = rpm.map(|limit| RateHeaders {
            limit,
            remaining: u64::from(limit).saturating_sub(s.accepted.len() as u64),
            reset: reset(&s),
        });
        Admission::Accepted { rate }
    }

    fn leave(&self) {
        let mut s = lock(&self.state);
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    pub(crate) fn observed(&self) -> Observed {
        lock(&self.state).observed
    }

    /// Forgets the maxima and the windows; calls in flight stay counted.
    pub(crate) fn reset(&self) {
        let mut s = lock(&self.state);
        let in_flight = s.in_flight;
        *s = Window { in_flight, ..Window::default() };
    }
}

/// Ends a call's place in flight, also when its handler is dropped (the
/// client went away).
struct InFlight<'a>(&'a Tracker);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.leave();
    }
}

/// Whether a path is a provider route (counted and limited).
fn is_provider_route(path: &str) -> bool {
    !(path == "/healthz" || path == "/v1/stats" || path.starts_with("/v1/stats/"))
}

/// The middleware: see the module's documentation.
pub(crate) async fn middleware(extract::State(sim): extract::State<Simulator>, request: Request, next: Next) -> Response {
    if !is_provider_route(request.uri().path()) {
        return next.run(request).await;
    }
    let config = sim.config();
    let tracker = &sim.inner.limits;
    let admission = tracker.admit(config.rpm_limit, config.max_concurrent);
    let _in_flight = InFlight(tracker);
    match admission {
        Admission::Accepted { rate } => {
            let mut response = next.run(request).await;
            if let Some(rate) = rate {
                rate_headers(response.headers_mut(), &rate);
            }
            response
        }
        Admission::Refused { rate, retry_after, message } => {
            sim.record(|l| l.rate_limited += 1);
            tracing::debug!(path = request.uri().path(), %message, "call refused by the simulator's limits");
            let body = json!({"error": {"message": message, "type": "requests", "param": null, "code": "rate_limit_exceeded"}});
            let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
            // Whole seconds, rounded up: waiting that long is always enough.
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
            if let Some(rate) = rate {
                rate_headers(response.headers_mut(), &rate);
            }
            response
        }
    }
}

fn rate_headers(headers: &mut HeaderMap, rate: &RateHeaders) {
    headers.insert("x-ratelimit-limit-requests", HeaderValue::from(rate.limit));
    headers.insert("x-ratelimit-remaining-requests", HeaderValue::from(rate.remaining));
    if let Ok(v) = HeaderValue::from_str(&go_duration(rate.reset)) {
        headers.insert("x-ratelimit-reset-requests", v);
    }
}

/// A duration as OpenAI's rate-limit headers write it: `250ms` under a
/// second, else `1s`, `12.5s`, `1m5s`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let (minutes, rest_ms) = (ms / 60_000, ms % 60_000);
    let secs = if rest_ms % 1000 == 0 { format!("{}s", rest_ms / 1000) } else { format!("{}s", rest_ms as f64 / 1000.0) };
    if minutes > 0 {
        format!("{minutes}m{secs}")
    } else {
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn durations_are_written_as_openai_does() {
        assert_eq!(go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(12_500)), "12.5s");
        assert_eq!(go_duration(Duration::from_secs(65)), "1m5s");
        assert_eq!(go_duration(Duration::from_secs(360)), "6m0s");
    }

    #[test]
    fn stats_and_healthz_are_not_provider_routes() {
        for p in ["/healthz", "/v1/stats", "/v1/stats/inputs", "/v1/stats/reset"] {
            assert!(!is_provider_route(p), "{p}");
        }
        for p in ["/v1/batch", "/v1/embeddings", "/v1/images/generations", "/v1/files", "/v1/batches/b1"] {
            assert!(is_provider_route(p), "{p}");
        }
    }

    #[test]
    fn the_per_minute_limit_counts_accepted_calls_and_the_maxima_every_arrival() {
        let t = Tracker::default();
        for _ in 0..3 {
            assert!(matches!(t.admit(Some(3), None), Admission::Accepted { .. }));
            t.leave();
        }
        let Admission::Refused { rate: Some(rate), retry_after, .. } = t.admit(Some(3), None) else { panic!("the 4th call of the minute is refused") };
        t.leave();
        assert_eq!(rate.remaining, 0);
        assert!(retry_after > Duration::from_secs(59) && retry_after <= MINUTE, "{retry_after:?}");
        let o = t.observed();
        assert_eq!((o.max_calls_in_any_minute, o.over_limit, o.max_in_flight), (4, 1, 1));
    }

    #[tokio::test]
    async fn over_the_limit_a_provider_route_answers_openais_429_and_stats_are_not_counted() {
        let sim = crate::spawn(crate::SimConfig { rpm_limit: Some(2), ..Default::default() }).await.expect("simulator starts");
        let client = reqwest::Client::new();
        let body = json!({"model": "flux-schnell", "inputs": [{"prompt": "x"}]});
        let post = || client.post(format!("{}/v1/batch", sim.url)).bearer_auth("k").json(&body).send();
        for remaining in ["1", "0"] {
            let ok = post().await.expect("answer");
            assert_eq!(ok.status(), 200);
            assert_eq!(ok.headers()["x-ratelimit-limit-requests"], "2");
            assert_eq!(ok.headers()["x-ratelimit-remaining-requests"], remaining);
            assert!(ok.headers().contains_key("x-ratelimit-reset-requests"));
        }
        let refused = post().await.expect("answer");
        assert_eq!(refused.status(), 429);
        let wait: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((59..=60).contains(&wait), "{wait}");
        assert_eq!(refused.headers()["x-ratelimit-remaining-requests"], "0");
        let error: serde_json::Value = refused.json().await.unwrap();
        assert_eq!((error["error"]["code"].as_str(), error["error"]["type"].as_str()), (Some("rate_limit_exceeded"), Some("requests")));
        for _ in 0..3 {
            assert_eq!(client.get(format!("{}/v1/stats", sim.url)).send().await.unwrap().status(), 200);
        }
        let stats = sim.sim.stats();
        assert_eq!((stats.max_calls_in_any_minute, stats.over_limit, stats.rate_limited, stats.batches), (3, 1, 1, 2));
        assert_eq!(stats.max_in_flight, 1);
    }

    #[test]
    fn the_concurrency_limit_refuses_the_call_over_it() {
        let t = Tracker::default();
        assert!(matches!(t.admit(None, Some(2)), Admission::Accepted { rate: None }));
        assert!(matches!(t.admit(None, Some(2)), Admission::Accepted { .. }));
        assert!(matches!(t.admit(None, Some(2)), Admission::Refused { .. }));
        t.leave();
        t.leave();
        assert!(matches!(t.admit(None, Some(2)), Admission::Accepted { .. }));
        assert_eq!(t.observed().max_in_flight, 3, "the refused call was seen in flight");
        t.reset();
        assert_eq!(t.observed(), Observed::default());
        assert!(matches!(t.admit(None, Some(2)), Admission::Refused { .. }), "calls in flight survive a reset");
    }
}
