//! The types the OpenAPI document names that no handler returns as its own
//! type: the error body, the names of the enums (which core keeps free of
//! utoipa), and the probes' answers. Handlers refer to them in their
//! `#[utoipa::path]` attributes and [`super::openapi`] lists them as
//! components; keeping them here means neither depends on the other.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every error: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Stable, machine-readable: e.g. `invalid_json`, `invalid_field`, `invalid_query`, `invalid_cursor`,
    /// `invalid_input`, `invalid_timezone`, `unknown_model`, `unknown_use_case`, `invalid_idempotency_key`, `idempotency_conflict`,
    /// `not_cancellable`, `not_upgradable`, `unauthorized`, `not_found`, `method_not_allowed`, `payload_too_large`,
    /// `too_many_inputs`, `invalid_body`, `quota_exceeded`, `unavailable`, `internal`.
    pub code: String,
    /// For people: what is wrong and, where it helps, what would be right.
    pub message: String,
    /// The request field or query parameter at fault, when there is one (e.g. `timezone`, `inputs[3]`,
    /// `input.size`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// Machine-readable particulars of some errors: for `quota_exceeded`, `scope` (`tenant` or `user`),
    /// `limit`, `used`, `requested`, `day` and `resets_at`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false, value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// A job's state: `held` until its release, `queued` in a batch on the queue, `running` at the provider, then
/// exactly one of `succeeded`, `failed` (the provider refused the item), `dead` (out of attempts on transient
/// errors) or `cancelled`.
#[derive(ToSchema)]
#[schema(as = JobState, rename_all = "lowercase")]
pub enum JobStateName {
    Held,
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

/// Which cache answered a cache hit: `exact` (the same model and input) or `semantic` (a rewording of the source's
/// prompt, everything else equal).
#[derive(ToSchema)]
#[schema(as = CacheKind, rename_all = "lowercase")]
pub enum CacheKindName {
    Exact,
    Semantic,
}

/// The cache a job uses: `off` (`"cache": false`), `exact`, or `semantic` (the exact cache first, then rewordings).
#[derive(ToSchema)]
#[schema(as = CacheMode, rename_all = "lowercase")]
pub enum CacheModeName {
    Off,
    Exact,
    Semantic,
}

/// `low` (the default) waits for the off-peak window in the job's timezone; `normal` is released at once.
#[derive(ToSchema)]
#[schema(as = Priority, rename_all = "lowercase")]
pub enum PriorityName {
    Low,
    Normal,
}

/// What a schedule does with firings it missed: `latest` (the default) fires only the most recent, `all` fires
/// every one (the most recent up to a cap), `none` skips them.
#[derive(ToSchema)]
#[schema(as = CatchUp, rename_all = "lowercase")]
pub enum CatchUpName {
    Latest,
    All,
    None,
}

/// A webhook event's type.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub enum WebhookEventName {
    #[serde(rename = "job.succeeded")]
    JobSucceeded,
    #[serde(rename = "job.failed")]
    JobFailed,
    #[serde(rename = "job.dead")]
    JobDead,
    #[serde(rename = "job.cancelled")]
    JobCancelled,
    #[serde(rename = "group.completed")]
    GroupCompleted,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Health {
    pub status: HealthStatus,
}

/// Always `ok`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
}

/// `GET /readyz`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Readiness {
    pub status: ReadinessStatus,
    pub checks: ReadinessChecks,
}

/// `ready` (with 200) or `not_ready` (with 503).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadinessStatus {
    Ready,
    NotReady,
}

/// Which dependency is reachable.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadinessChecks {
    pub postgres: bool,
    pub rabbitmq: bool,
}
