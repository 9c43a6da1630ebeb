//! The HTTP API (v1, JSON): submit, read, list and cancel jobs, preview the
//! window, and the health and metrics endpoints operators probe.

pub mod auth;
pub mod error;
pub mod extract;
pub mod groups;
pub mod health;
pub mod jobs;
pub mod page;
pub mod schedules;
pub mod schema;
pub mod usage;
pub mod webhooks;
pub mod openapi;
pub mod windows;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use clap::builder::TypedValueParser as _;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use sqlx::PgPool;

use offpeak_runtime::broker::Publisher;
use offpeak_core::clock::SharedClock;
use offpeak_core::prices::{PriceTable, RouteTable};
use offpeak_core::window::WindowSpec;

use error::ApiError;

/// Default of [`Limits::max_body_bytes`]: 32 MiB, room for a full bulk
/// request of small inputs.
pub const MAX_BODY_BYTES_DEFAULT: usize = 32 * 1024 * 1024;
/// Default of [`Limits::max_bulk_inputs`].
pub const MAX_BULK_INPUTS_DEFAULT: usize = 10_000;
/// Default of [`Limits::max_input_bytes`].
pub const MAX_INPUT_BYTES_DEFAULT: usize = 64 * 1024;
/// Default of [`Limits::max_metadata_bytes`].
pub const MAX_METADATA_BYTES_DEFAULT: usize = 16 * 1024;
/// Default of [`Limits::max_bulk_in_flight`].
pub const MAX_BULK_IN_FLIGHT_DEFAULT: usize = 2;

/// Limits on what a request may carry. The OpenAPI document states the
/// running values (see [`openapi::document`]), so a client reads the limits
/// of the deployment it talks to.
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
            max_body_bytes: MAX_BODY_BYTES_DEFAULT,
            max_bulk_inputs: MAX_BULK_INPUTS_DEFAULT,
            max_input_bytes: MAX_INPUT_BYTES_DEFAULT,
            max_metadata_bytes: MAX_METADATA_BYTES_DEFAULT,
            max_bulk_in_flight: MAX_BULK_IN_FLIGHT_DEFAULT,
        }
    }
}

/// The [`Limits`] as `serve` flags and environment variables. Each is at
/// least 1: a limit of 0 would refuse every request of its kind, which no
/// operator means.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitArgs {
    /// Largest request body, in bytes, on every route; a larger one is a 413.
    /// Keep it above what a full bulk request needs (inputs × their size).
    #[arg(long, env = "OFFPEAK_MAX_BODY_BYTES", default_value_t = MAX_BODY_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_body_bytes: usize,
    /// Most inputs in one `POST /v1/jobs/bulk`; more is a 422 `too_many_inputs`.
    #[arg(long, env = "OFFPEAK_MAX_BULK_INPUTS", default_value_t = MAX_BULK_INPUTS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_bulk_inputs: usize,
    /// Largest `input` of one job (and of a schedule's template), serialised, in bytes; larger is a 413.
    #[arg(long, env = "OFFPEAK_MAX_INPUT_BYTES", default_value_t = MAX_INPUT_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_input_bytes: usize,
    /// Largest `metadata`, serialised, in bytes; larger is a 413.
    #[arg(long, env = "OFFPEAK_MAX_METADATA_BYTES", default_value_t = MAX_METADATA_BYTES_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_metadata_bytes: usize,
    /// Bulk submissions a replica reads, parses and inserts at once (bounds its memory); more wait.
    #[arg(long, env = "OFFPEAK_MAX_BULK_IN_FLIGHT", default_value_t = MAX_BULK_IN_FLIGHT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_bulk_in_flight: usize,
}

impl From<&LimitArgs> for Limits {
    fn from(a: &LimitArgs) -> Self {
        Self {
            max_body_bytes: a.max_body_bytes,
            max_bulk_inputs: a.max_bulk_inputs,
            max_input_bytes: a.max_input_bytes,
            max_metadata_bytes: a.max_metadata_bytes,
            max_bulk_in_flight: a.max_bulk_in_flight,
        }
    }
}

impl Limits {
    /// The limits a submission is parsed by ([`offpeak_core::submission`]).
    #[must_use]
    pub fn submission(&self) -> offpeak_core::submission::Limits {
        offpeak_core::submission::Limits {
            max_input_bytes: self.max_input_bytes,
            max_metadata_bytes: self.max_metadata_bytes,
            max_bulk_inputs: self.max_bulk_inputs,
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
    pub operator_token: Option<crate::operator_token::OperatorToken>,
    /// How long a replica trusts a key it looked up (see [`auth`]); zero looks every request up.
    pub auth_cache_ttl: std::time::Duration,
    /// How single submissions are committed together (see [`crate::group_commit`]).
    pub group_commit: crate::group_commit::GroupCommitConfig,
    /// `OFFPEAK_WEBHOOK_ALLOW_PRIVATE`: webhook URLs may be `http://` and
    /// name loopback and private addresses (tests, the demo, a private
    /// network); off by default.
    pub webhooks_allow_private: bool,
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
            webhooks_allow_private: false,
        }
    }
}

/// Shared by every handler.
#[derive(Debug, Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub clock: SharedClock,
    pub config: Arc<ApiConfig>,
    /// For readiness (is the broker connection up?), and for bulk
    /// submissions released at once (`crate::direct`).
    pub publisher: Option<Publisher>,
    /// Tenants by API key, for `config.auth_cache_ttl`.
    pub auth: Arc<auth::AuthCache>,
    /// The lanes single submissions are committed through.
    pub groups: crate::group_commit::GroupCommit,
    /// Announces stored jobs that are due now or soon to the release loops,
    /// after their commit ([`crate::wake`]).
    pub due: crate::wake::DueSignal,
    /// Open while this replica's release loop leaves nothing due behind:
    /// a bulk submission due at once then releases its own jobs
    /// (`crate::direct`).
    pub room: crate::direct::Room,
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
        .route("/v1/jobs/{id}/upgrade", axum::routing::post(jobs::upgrade))
        .route("/v1/schedules", get(schedules::list).post(schedules::create))
        .route("/v1/schedules/{id}", get(schedules::get).patch(schedules::patch).delete(schedules::delete))
        .route("/v1/groups/{id}", get(groups::get))
        .route("/v1/groups/{id}/results", get(groups::results))
        .route("/v1/webhooks", get(webhooks::list).post(webhooks::create))
        .route("/v1/webhooks/{id}", get(webhooks::get).patch(webhooks::patch).delete(webhooks::delete))
        .route("/v1/webhooks/{id}/rotate-secret", axum::routing::post(webhooks::rotate_secret))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/replay", axum::routing::post(webhooks::replay))
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
