//! The OpenAPI 3.1 document of the API, served at `GET /openapi.json`.
//!
//! Assembled by utoipa from the handlers' `#[utoipa::path]` attributes and
//! the request and response types' `ToSchema` / `IntoParams` derives, so the
//! document is generated from the very types the handlers parse and
//! serialise. Shapes that handlers build by hand (the error body, health and
//! readiness) are mirrored here; the unit tests below and
//! `tests/tests/api/openapi.rs` hold the mirror to the real responses, and the
//! latter also checks every route of [`super::router`] is documented and
//! every documented one is served.
//!
//! The limits a deployment may configure (body size, inputs per bulk
//! request) are written into the document when it is served, from the
//! running configuration.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

use super::{health, jobs, schedules, usage, windows, AppState};

/// The document as generated, before the running limits are filled in.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "offpeak",
        description = "Submit AI batch jobs that are held until the off-peak window in the submitter's timezone, \
                       then released in batches to the provider.\n\n\
                       Every `/v1` call needs `Authorization: Bearer <api key>`. Every error, on every route, is \
                       JSON: `{\"error\": {\"code\", \"message\", \"field\"?}}`. A path no route matches is a 404 \
                       `not_found`, a method a route does not serve a 405 `method_not_allowed`, and a body over \
                       the size limit a 413 `payload_too_large`, on any route.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    paths(
        jobs::submit,
        jobs::submit_bulk,
        jobs::list,
        jobs::get,
        jobs::cancel,
        schedules::create,
        schedules::list,
        schedules::get,
        schedules::patch,
        schedules::delete,
        windows::next,
        usage::usage,
        usage::tenant,
        health::healthz,
        health::readyz,
        health::metrics,
        openapi_json,
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        JobStateName,
        PriorityName,
        CatchUpName,
        Health,
        HealthStatus,
        Readiness,
        ReadinessStatus,
        ReadinessChecks
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "jobs", description = "Submit, read, list and cancel jobs"),
        (name = "schedules", description = "Recurring schedules: cron expressions in a timezone that create jobs"),
        (name = "windows", description = "When the off-peak window opens"),
        (name = "usage", description = "Usage and savings from the usage ledger; the tenant's own settings"),
        (name = "operations", description = "Probes, metrics and this document; no authentication"),
    )
)]
pub struct ApiDoc;

/// The name of the security scheme every `/v1` operation requires.
pub const SECURITY_SCHEME: &str = "api_key";

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.description = Some("A tenant's API key: `Authorization: Bearer <api key>`.".into());
        components.add_security_scheme(SECURITY_SCHEME, SecurityScheme::Http(http));
    }
}

/// The document with this deployment's limits filled in, as JSON.
pub fn document(limits: &super::Limits) -> Value {
    // Serialising utoipa's plain data types (strings, maps, numbers) into a
    // `Value` cannot fail; the fallback only keeps this panic-free.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialise");
        Value::Object(Default::default())
    });
    let schemas = &mut doc["components"]["schemas"];
    if let Some(inputs) = schemas.pointer_mut("/BulkRequest/properties/inputs").and_then(Value::as_object_mut) {
        inputs.insert("maxItems".into(), limits.max_bulk_inputs.into());
    }
    if let Some(input) = schemas.pointer_mut("/SubmitRequest/properties/input").and_then(Value::as_object_mut) {
        let text = format!(
            "The job's input, passed to the provider as it is: a JSON object, at most {} bytes serialised, \
             without NUL (`\\u0000`) characters in any string or key.",
            limits.max_input_bytes
        );
        input.insert("description".into(), text.into());
    }
    if let Some(inputs) = schemas.pointer_mut("/BulkRequest/properties/inputs").and_then(Value::as_object_mut) {
        let text = format!(
            "One input per job, each a JSON object of at most {} bytes serialised, without NUL characters; \
             at least 1 and at most {} inputs.",
            limits.max_input_bytes, limits.max_bulk_inputs
        );
        inputs.insert("description".into(), text.into());
    }
    for name in ["SubmitRequest", "BulkRequest"] {
        if let Some(m) = schemas.pointer_mut(&format!("/{name}/properties/metadata")).and_then(Value::as_object_mut) {
            let text = format!(
                "Free-form JSON kept with the job and returned with it: at most {} bytes serialised, without NUL \
                 characters.",
                limits.max_metadata_bytes
            );
            m.insert("description".into(), text.into());
        }
    }
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        let base = info.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        let text = format!("{base} Request bodies are limited to {} bytes.", limits.max_body_bytes);
        info.insert("description".into(), text.into());
    }
    doc
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    operation_id = "openapi",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object, content_type = "application/json")),
)]
pub async fn openapi_json(State(state): State<AppState>) -> Json<Value> {
    Json(document(&state.config.limits))
}

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
    /// `not_cancellable`, `unauthorized`, `not_found`, `method_not_allowed`, `payload_too_large`,
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

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;

    use offpeak_core::job::{JobState, Priority};
    use offpeak_core::schedule::CatchUp;

    use super::super::error::ApiError;
    use super::*;

    fn schema(name: &str) -> Value {
        let doc = document(&Default::default());
        doc["components"]["schemas"][name].clone()
    }

    fn enum_values(name: &str) -> Vec<String> {
        let s = schema(name);
        let values = s["enum"].as_array().unwrap_or_else(|| panic!("{name} is an enum: {s}"));
        values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn the_job_state_schema_lists_exactly_the_domain_states() {
        let documented = enum_values("JobState");
        let real: Vec<String> = JobState::ALL.iter().map(|s| s.as_str().to_owned()).collect();
        assert_eq!(documented, real);
    }

    #[test]
    fn the_priority_schema_lists_exactly_the_domain_priorities() {
        let documented = enum_values("Priority");
        assert_eq!(documented, [Priority::Low.as_str(), Priority::Normal.as_str()]);
        for p in &documented {
            assert!(p.parse::<Priority>().is_ok(), "{p} parses as a priority");
        }
        assert_eq!(
            serde_json::to_value(Priority::default()).ok(),
            Some(Value::String(documented[0].clone())),
            "the documented default is listed first"
        );
    }

    #[test]
    fn the_catch_up_schema_lists_exactly_the_domain_policies() {
        let real: Vec<&str> = CatchUp::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(enum_values("CatchUp"), real);
        assert_eq!(CatchUp::default().as_str(), real[0], "the documented default is listed first");
    }

    async fn body_of(e: ApiError) -> Vec<u8> {
        let resp = e.into_response();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX).await.expect("body");
        bytes.to_vec()
    }

    #[tokio::test]
    async fn the_error_schema_mirrors_the_real_error_body() {
        let plain = body_of(ApiError::not_found("job")).await;
        let parsed: ErrorBody = serde_json::from_slice(&plain).expect("the error body has the documented shape");
        assert_eq!((parsed.error.code.as_str(), parsed.error.field), ("not_found", None));
        let with_field = body_of(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "x").with_field("model")).await;
        let parsed: ErrorBody = serde_json::from_slice(&with_field).expect("the error body has the documented shape");
        assert_eq!(parsed.error.field.as_deref(), Some("model"));
        let s = schema("ErrorDetail");
        let required: Vec<&str> = s["required"].as_array().expect("required").iter().filter_map(Value::as_str).collect();
        assert_eq!(required, ["code", "message"]);
    }

    #[test]
    fn the_running_limits_are_written_into_the_document() {
        let limits = super::super::Limits { max_bulk_inputs: 7, ..Default::default() };
        let doc = document(&limits);
        assert_eq!(doc.pointer("/components/schemas/BulkRequest/properties/inputs/maxItems"), Some(&Value::from(7)));
        let security = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!((security["type"].as_str(), security["scheme"].as_str()), (Some("http"), Some("bearer")));
    }
}
