//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::json;

use super::AppState;

/// The process is up and answering.
#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    responses((status = 200, description = "The process is up", body = super::schema::Health)),
)]
pub async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// PostgreSQL and RabbitMQ are reachable; 503 otherwise, naming which is not.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    responses(
        (status = 200, description = "PostgreSQL and RabbitMQ are reachable", body = super::schema::Readiness),
        (status = 503, description = "PostgreSQL or RabbitMQ is not; `checks` says which", body = super::schema::Readiness),
    ),
)]
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let postgres = offpeak_store::ping(&state.pool).await;
    let rabbitmq = state.publisher.as_ref().is_some_and(|p| p.is_connected());
    let status = if postgres && rabbitmq { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if status == StatusCode::OK { "ready" } else { "not_ready" },
            "checks": {"postgres": postgres, "rabbitmq": rabbitmq}
        })),
    )
}

/// Prometheus text exposition of this process's metrics.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain; version=0.0.4")),
)]
pub async fn metrics() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        crate::metrics::render(),
    )
}
