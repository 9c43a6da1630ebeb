//! The HTTP API (v1, JSON): submit, read, list and cancel jobs, preview the
//! window, and the health and metrics endpoints operators probe.

pub mod auth;
pub mod error;
pub mod extract;
pub mod health;
pub mod jobs;
pub mod page;
pub mod schedules;
pub mod usage;
pub mod openapi;
pub mod windows;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;

use offpeak_runtime::broker::Publisher;
use offpeak_core::clock::SharedClock;
use offpeak_core::prices::{PriceTable, RouteTable};
use offpeak_core::window::WindowSpec;

use error::ApiError;

/// Limits on what a request may carry.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes.
    pub max_body_bytes: usize,
    /// Most inputs in one bulk submission.
    pub max_bulk_inputs: usize,
    /// Largest `input` of one job, serialised, in bytes.
    pub max_input_bytes: usize,
    /// Largest `metadata`, serialised, in bytes.
    pub max_metadata_bytes: usize,
    /// Bulk submissions a replica reads, parses and inserts at once; more
    /// wait their turn. Each holds its body, its parsed inputs and its
    /// encoded parameters (about 10 MB for 10,000 small inputs), so this
    /// bounds the API's memory; on two cores it costs no throughput.
    pub max_bulk_in_flight: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 32 * 1024 * 1024,
            max_bulk_inputs: 10_000,
            max_input_bytes: 64 * 1024,
            max_metadata_bytes: 16 * 1024,
            max_bulk_in_flight: 2,
        }
    }
}

/// What the API needs to answer.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    pub window: WindowSpec,
    pub prices: PriceTable,
    /// Model routing: the model a `use_case` gets with `"model": "auto"`.
    pub routes: RouteTable,
    pub max_attempts: i32,
    pub limits: Limits,
    /// The exact cache: how long a result answers identical jobs.
    pub cache: crate::admission::CacheConfig,
    /// The operator token of the dashboard (`/ui`, see [`crate::ui`]);
    /// `None` leaves the dashboard disabled.
    pub operator_token: Option<crate::ui::auth::OperatorToken>,
    /// How long a replica trusts a key it looked up (see [`auth`]); zero looks every request up.
    pub auth_cache_ttl: std::time::Duration,
    /// How single submissions are committed together (see [`crate::group_commit`]).
    pub group_commit: crate::group_commit::GroupCommitConfig,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            window: WindowSpec::default(),
            prices: PriceTable::default(),
            routes: RouteTable::default(),
            max_attempts: 5,
            limits: Limits::default(),
            cache: crate::admission::CacheConfig::default(),
            operator_token: None,
            auth_cache_ttl: auth::AUTH_CACHE_TTL_DEFAULT,
            group_commit: crate::group_commit::GroupCommitConfig::default(),
        }
    }
}

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub clock: SharedClock,
    pub config: Arc<ApiConfig>,
    /// For readiness: is the broker connection up?
    pub publisher: Option<Publisher>,
    /// Tenants by API key, for `config.auth_cache_ttl`.
    pub auth: Arc<auth::AuthCache>,
    /// The lanes single submissions are committed through.
    pub groups: crate::group_commit::GroupCommit,
}

/// The whole API as a router; `startup` serves it, tests too.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let bulk_permits = Arc::new(tokio::sync::Semaphore::new(state.config.limits.max_bulk_in_flight.max(1)));
    let bulk_in_flight = axum::middleware::from_fn(move |req: axum::extract::Request, next: axum::middleware::Next| {
        let permits = Arc::clone(&bulk_permits);
        async move {
            // Held from before the body is read until the response: the
            // semaphore is never closed, so acquiring only waits.
            let _permit = permits.acquire_owned().await;
            next.run(req).await
        }
    });
    Router::new()
        .route("/v1/jobs", get(jobs::list).post(jobs::submit))
        .route("/v1/jobs/bulk", axum::routing::post(jobs::submit_bulk).layer(bulk_in_flight))
        .route("/v1/jobs/{id}", get(jobs::get).delete(jobs::cancel))
        .route("/v1/schedules", get(schedules::list).post(schedules::create))
        .route("/v1/schedules/{id}", get(schedules::get).patch(schedules::patch).delete(schedules::delete))
        .route("/v1/windows/next", get(windows::next))
        .route("/v1/usage", get(usage::usage))
        .route("/v1/tenant", get(usage::tenant))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi::openapi_json))
        .route_layer(axum::middleware::from_fn(crate::metrics::track_http))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}
