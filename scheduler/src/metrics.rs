//! The scheduler's Prometheus metrics. Names are stable; labels are low
//! cardinality (model, priority, state, outcome), never tenant or job ids.

use std::sync::LazyLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use prometheus::{
    register_gauge, register_histogram, register_histogram_vec, register_int_counter, register_int_counter_vec, register_int_gauge,
    register_int_gauge_vec, Encoder, Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    TextEncoder,
};

// Registering a metric in the default registry only fails for a duplicate
// name, which would be a programming error caught by the first test run;
// hence the `expect`s.

pub static JOBS_SUBMITTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_jobs_submitted_total", "Jobs accepted by the API", &["model", "priority"])
        .expect("metric registers once")
});
pub static JOBS_CANCELLED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_jobs_cancelled_total", "Jobs cancelled through the API").expect("metric registers once")
});
pub static JOBS_RELEASED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_jobs_released_total", "Jobs moved from held to queued, or stored queued by a bulk submission released at once").expect("metric registers once")
});
pub static JOBS_RELEASED_AT_SUBMIT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_jobs_released_at_submit_total",
        "Of offpeak_jobs_released_total, jobs released by their own bulk submission, stored queued at once (nothing else waited for the queue)"
    )
    .expect("metric registers once")
});
pub static RELEASE_AT_SUBMIT_FAILED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_release_at_submit_failures_total",
        "Bulk submissions whose batches could not be published with them; their jobs were held for the release loop instead"
    )
    .expect("metric registers once")
});
pub static JOBS_ROLLED_OVER: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_jobs_rolled_over_total", "Held jobs whose window closed before release, moved to the next window")
        .expect("metric registers once")
});
pub static BATCHES_PUBLISHED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_batches_published_total", "Batches published to RabbitMQ", &["model"])
        .expect("metric registers once")
});
pub static BATCH_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_batch_size",
        "Jobs per published batch",
        vec![1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0]
    )
    .expect("metric registers once")
});
pub static SUBMIT_GROUP_SIZE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_submit_group_size",
        "Single submissions (POST /v1/jobs without Idempotency-Key) committed together in one transaction",
        vec![1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0]
    )
    .expect("metric registers once")
});
pub static SUBMIT_GROUP_RETRIES: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_submit_group_retries_total", "Groups of submissions whose transaction failed, retried one submission at a time")
        .expect("metric registers once")
});
pub static BATCHES_RESCUED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_batches_rescued_total", "Batches published again because they made no progress within the visibility timeout")
        .expect("metric registers once")
});
pub static QUEUE_DEPTH: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_queue_depth", "Ready batch messages in RabbitMQ, as last seen by the release loop")
        .expect("metric registers once")
});
pub static RELEASE_THROTTLED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_release_throttled_total", "Release rounds skipped because the queue was at its depth limit")
        .expect("metric registers once")
});
pub static RELEASE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_release_errors_total", "Release rounds that failed, by cause", &["kind"])
        .expect("metric registers once")
});
pub static RELEASE_WAKEUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_release_wakeups_total",
        "Release rounds by what started them: start, more (the last round was cut short), due (a held job's due instant or window close), notified (a job due now was announced), interval (the pause ran out), retry (after a failed round)",
        &["reason"]
    )
    .expect("metric registers once")
});
pub static RELEASE_WAKE_LATE: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_release_wake_late_seconds",
        "From the due instant the release loop slept until to the start of the round it woke for",
        vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]
    )
    .expect("metric registers once")
});
pub static RELEASE_LISTENING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offpeak_release_listening",
        "1 while the release loop listens for announcements of due jobs (LISTEN offpeak_release); 0 while its connection is being re-established"
    )
    .expect("metric registers once")
});
pub static RELEASE_LISTENER_LOST: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_release_listener_lost_total",
        "Times the release loop's LISTEN connection was lost or could not be made; it reconnects, and runs a round for what it may have missed"
    )
    .expect("metric registers once")
});
pub static DUE_NOTIFY_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_due_notify_errors_total",
        "Announcements of due jobs (NOTIFY offpeak_release after a submission's commit) that failed; the jobs are released at the next poll instead"
    )
    .expect("metric registers once")
});
/// This replica's wall clock minus PostgreSQL's, at the last measurement
/// ([`crate::clock`]). Decisions do not use the replica's clock, so a large
/// value harms no job; it says the host's time is wrong (NTP), which its logs
/// and any other program on it suffer from.
pub static CLOCK_OFFSET: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "offpeak_clock_offset_seconds",
        "This replica's wall clock minus PostgreSQL's clock_timestamp(), at the last measurement (the scheduler decides by the database's time)"
    )
    .expect("metric registers once")
});
/// The round trip of the measurement the clock adopted: the offset's error bound is half of it.
pub static CLOCK_ROUND_TRIP: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "offpeak_clock_round_trip_seconds",
        "Round trip of the clock measurement in use; the database time is known to within half of it"
    )
    .expect("metric registers once")
});
/// Measurements of the database's clock that failed (the last one stays in use).
pub static CLOCK_SYNC_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!(
        "offpeak_clock_sync_errors_total",
        "Failed measurements of PostgreSQL's clock; the clock keeps extrapolating the last one on the monotonic clock"
    )
    .expect("metric registers once")
});
pub static JOBS_BY_STATE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!("offpeak_jobs", "Jobs in the database by state (refreshed periodically)", &["state"])
        .expect("metric registers once")
});
pub static JOBS_BY_STATE_MODEL: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "offpeak_jobs_by_model",
        "Jobs in the database by state and model (refreshed periodically; every replica reports the same, aggregate with max)",
        &["state", "model"]
    )
    .expect("metric registers once")
});
pub static HELD_BY_DUE: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        "offpeak_held_jobs_due",
        "Held jobs by hours until their window opens: 0 = due now (waiting for capacity), 1..24 = within that many hours, later (refreshed periodically)",
        &["within_hours"]
    )
    .expect("metric registers once")
});
pub static HTTP_REQUESTS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "offpeak_http_request_duration_seconds",
        "HTTP requests by route, method and status",
        &["route", "method", "status"],
        vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("metric registers once")
});

/// Middleware recording every request's duration by matched route, and
/// running the handler in a `request` span (method, route), so every log
/// line of a request, e.g. `job submitted` with its `job_id`, carries them.
pub async fn track_http(req: Request, next: Next) -> Response {
    use tracing::Instrument;
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = req.method().as_str().to_owned();
    let started = Instant::now();
    let span = tracing::info_span!("request", method = %method, route = %route);
    let resp = next.run(req).instrument(span).await;
    HTTP_REQUESTS
        .with_label_values(&[&route, &method, resp.status().as_str()])
        .observe(started.elapsed().as_secs_f64());
    resp
}

/// The default registry in Prometheus text format.
pub fn render() -> String {
    // Touch the lazily registered metrics so they appear from the first scrape.
    let _ = (&*JOBS_SUBMITTED, &*JOBS_CANCELLED, &*JOBS_RELEASED, &*JOBS_ROLLED_OVER, &*BATCHES_PUBLISHED, &*BATCH_SIZE);
    let _ = (&*BATCHES_RESCUED, &*QUEUE_DEPTH, &*RELEASE_THROTTLED, &*RELEASE_ERRORS, &*JOBS_BY_STATE, &*HTTP_REQUESTS);
    let _ = (&*CACHE_HITS, &*JOBS_COALESCED, &*CREDITS_SAVED, &*QUOTA_REFUSALS, &*JOBS_BY_STATE_MODEL, &*HELD_BY_DUE);
    let _ = (&*JOBS_UPGRADED, &*RELEASE_WAKEUPS, &*RELEASE_WAKE_LATE, &*RELEASE_LISTENING, &*RELEASE_LISTENER_LOST, &*DUE_NOTIFY_ERRORS);
    let _ = (&*CLOCK_OFFSET, &*CLOCK_ROUND_TRIP, &*CLOCK_SYNC_ERRORS, &*JOBS_RELEASED_AT_SUBMIT, &*RELEASE_AT_SUBMIT_FAILED);
    let mut buf = Vec::new();
    // Encoding into a Vec cannot fail for well-formed metric families.
    let _ = TextEncoder::new().encode(&prometheus::gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}

pub use offpeak_runtime::metrics::{CACHE_HITS, CREDITS_SAVED};
pub static EMBEDDINGS_CALLS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_embeddings_calls_total",
        "Calls to the embeddings endpoint by outcome: ok, timeout, unreachable, error_status, garbage, skipped (the breaker is open); each but ok is a miss: the semantic cache fails open",
        &["outcome"]
    )
    .expect("metric registers once")
});
pub static EMBEDDINGS_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_embeddings_seconds",
        "Time of one embeddings call, retries included",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    )
    .expect("metric registers once")
});
pub static EMBEDDINGS_BREAKER_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offpeak_embeddings_breaker_open",
        "1 while release rounds skip the embeddings endpoint after a failure (semantic jobs are misses), else 0"
    )
    .expect("metric registers once")
});
pub static EMBEDDED_TEXTS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_embedded_texts_total", "Prompts embedded for the semantic cache").expect("metric registers once")
});
pub static SEMANTIC_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_semantic_lookups_total",
        "Semantic cache lookups at release by outcome: hit, miss, no_vector (embeddings failed), no_prompt (no prompt string in the input)",
        &["outcome"]
    )
    .expect("metric registers once")
});
pub static SEMANTIC_STEP_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_semantic_step_seconds",
        "Time the semantic step added to a release round (embedding, index search, answers)",
        vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
    )
    .expect("metric registers once")
});
pub static SEMANTIC_INDEX_VECTORS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_semantic_index_vectors", "Prompt embeddings this replica holds in memory for the semantic search")
        .expect("metric registers once")
});
pub static JOBS_COALESCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_jobs_coalesced_total",
        "Jobs released to wait for an identical job already on its way to the provider instead of calling it again",
        &["model"]
    )
    .expect("metric registers once")
});
pub static QUOTA_REFUSALS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_quota_refusals_total",
        "Submissions (and schedule firings) refused by a daily credit limit, by scope (tenant, user)",
        &["scope"]
    )
    .expect("metric registers once")
});
pub static SCHEDULE_FIRINGS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_schedule_firings_total",
        "Schedule firings by outcome: created (on time), caught_up (missed, fired by catch_up), skipped (missed, not fired by catch_up), duplicate (already recorded by another replica)",
        &["outcome"]
    )
    .expect("metric registers once")
});
pub static SCHEDULE_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("offpeak_schedule_errors_total", "Firing rounds that failed, or schedules that could not be evaluated, by cause", &["kind"])
        .expect("metric registers once")
});

pub static WEBHOOK_DELIVERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_webhook_deliveries_total",
        "Webhook delivery attempts by outcome: delivered (2xx), retry (failed, another attempt scheduled), failed (failed, retries used up)",
        &["outcome"]
    )
    .expect("metric registers once")
});
pub static WEBHOOK_DELIVERY_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "offpeak_webhook_delivery_seconds",
        "Time from sending a webhook request to its answer (or timeout)",
        vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]
    )
    .expect("metric registers once")
});
pub static WEBHOOK_YIELDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "offpeak_webhook_yielding",
        "1 while the delivery loop runs smaller because the jobs' pipeline is busy (OFFPEAK_WEBHOOK_BUSY_IN_FLIGHT)"
    )
    .expect("metric registers once")
});
pub static WEBHOOK_EVENTS_FANNED_OUT: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_webhook_events_fanned_out_total", "Job events turned into their webhook deliveries")
        .expect("metric registers once")
});
pub static WEBHOOK_EVENTS_WAITING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_webhook_events_waiting", "Job events not yet turned into webhook deliveries")
        .expect("metric registers once")
});
pub static WEBHOOK_OUTBOX_PENDING: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_webhook_outbox_pending", "Webhook deliveries not yet delivered nor given up").expect("metric registers once")
});
pub static WEBHOOK_OUTBOX_OLDEST_SECONDS: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_webhook_outbox_oldest_seconds", "Age of the oldest pending webhook delivery (0: none)")
        .expect("metric registers once")
});
pub static WEBHOOK_DELIVERIES_FAILED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_webhook_deliveries_failed", "Webhook deliveries given up (retries used up), kept until pruned")
        .expect("metric registers once")
});
pub static WEBHOOK_ENDPOINTS_DISABLED: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!("offpeak_webhook_endpoints_disabled", "Webhook endpoints disabled (by their failures or by their tenant)")
        .expect("metric registers once")
});
pub static WEBHOOK_ENDPOINTS_DISABLED_TOTAL: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_webhook_endpoints_auto_disabled_total", "Webhook endpoints disabled because every delivery failed for too long")
        .expect("metric registers once")
});
pub static WEBHOOK_LOOP_ERRORS: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_webhook_loop_errors_total", "Delivery loop passes or attempt records that failed (database errors); retried")
        .expect("metric registers once")
});
pub static GROUPS_COMPLETED: LazyLock<IntCounter> = LazyLock::new(|| {
    register_int_counter!("offpeak_groups_completed_total", "Job groups completed (group.completed written)").expect("metric registers once")
});
pub static JOBS_UPGRADED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_jobs_upgraded_total",
        "Jobs made by POST /v1/jobs/{id}/upgrade (a repeated upgrade, answered with the job it made, is not counted), by the model upgraded to",
        &["model"]
    )
    .expect("metric registers once")
});
