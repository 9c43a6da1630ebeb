//! The worker's Prometheus metrics. Labels are low cardinality (model,
//! outcome kind), never job or batch ids.

use std::sync::LazyLock;

use prometheus::{
    register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge, Encoder, HistogramVec,
    IntCounter, IntCounterVec, IntGauge, TextEncoder,
};

// Registering in the default registry fails only on a duplicate name, a
// programming error the first test run would show; hence the `expect`s.

pub static PROVIDER_LATENCY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "offpeak_provider_request_duration_seconds",
        "Provider batch calls, by model",
        &["model"],
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
    )
    .expect("metric registers once")
});
pub static PROVIDER_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_provider_calls_total",
        "Provider batch calls by model and outcome (ok, rate_limited, timeout, connect, malformed_response, http_NNN)",
        &["model", "outcome"]
    )
    .expect("metric registers once")
});
/// `openai-images`: one request per job, by provider and outcome.
pub static PROVIDER_REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_provider_requests_total",
        "Requests of the one-call-per-job adapters by provider and outcome (ok, rate_limited, timeout, connect, malformed_response, http_NNN, ...)",
        &["provider", "outcome"]
    )
    .expect("metric registers once")
});
pub static JOBS_FINISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_jobs_finished_total", "Jobs written to a terminal state by workers", &["model", "state"])
        .expect("metric registers once")
});
pub static CREDITS_SPENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_credits_spent_total", "Credits charged for succeeded jobs", &["model"])
        .expect("metric registers once")
});
pub use offpeak_runtime::metrics::{CACHE_HITS, CREDITS_SAVED};
pub static RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_provider_retries_total", "Provider calls retried after a transient error", &["model"])
        .expect("metric registers once")
});
pub static BATCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_worker_batches_total",
        "Batches handled, by outcome (done, empty, rejected, requeued)",
        &["outcome"]
    )
    .expect("metric registers once")
});
pub static IN_FLIGHT: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_worker_batches_in_flight", "Batches this worker holds now").expect("metric registers once")
});
pub static RECONNECTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_worker_broker_reconnects_total", "Times the worker lost RabbitMQ and reconnected")
        .expect("metric registers once")
});
pub static CONNECTED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_worker_broker_connected", "1 while the worker is consuming from RabbitMQ").expect("metric registers once")
});

/// The poller of provider batches (`openai-batch`): polls by outcome.
pub static POLLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_worker_polls_total",
        "Polls of provider batches by outcome (rescheduled, ended, cancelled; database_error and lease_exceeded give the lease back)",
        &["outcome"]
    )
    .expect("metric registers once")
});

pub static LIMIT_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "offpeak_provider_limit_wait_seconds",
        "Time a provider call waited on a shared limit key (provider:NAME or model:NAME) before it was allowed; 0 when it did not wait",
        &["key"],
        vec![0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]
    )
    .expect("metric registers once")
});
pub static LIMIT_WAITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_provider_limit_waits_total",
        "Provider calls that had to wait on a shared limit, by key and limit (requests_per_minute, concurrency)",
        &["key", "limit"]
    )
    .expect("metric registers once")
});
pub static LIMIT_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_provider_limit_errors_total",
        "Database errors while taking or giving back a place under the shared provider limits (the call waits and retries)"
    )
    .expect("metric registers once")
});

/// The default registry in Prometheus text format.
pub fn render() -> String {
    // Touch every metric so each appears from the first scrape, not only once used.
    let _ = (&*PROVIDER_LATENCY, &*PROVIDER_CALLS, &*JOBS_FINISHED, &*CREDITS_SPENT, &*CREDITS_SAVED, &*CACHE_HITS, &*RETRIES, &*BATCHES, &*IN_FLIGHT, &*RECONNECTS, &*CONNECTED, &*POLLS, &*LIMIT_WAIT, &*LIMIT_WAITS, &*LIMIT_ERRORS);
    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
