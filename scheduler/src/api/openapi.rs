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
use serde_json::{json, Value};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::schema::{
    CacheKindName, CacheModeName, CatchUpName, ErrorBody, WebhookEventName, ErrorDetail, Health, HealthStatus, JobStateName, PriorityName, Readiness, ReadinessChecks, ReadinessStatus,
};
use super::{groups, health, jobs, schedules, usage, webhooks, windows, AppState};

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
        jobs::upgrade,
        schedules::create,
        schedules::list,
        schedules::get,
        schedules::patch,
        schedules::delete,
        groups::get,
        groups::results,
        webhooks::create,
        webhooks::list,
        webhooks::get,
        webhooks::patch,
        webhooks::delete,
        webhooks::rotate_secret,
        webhooks::deliveries,
        webhooks::replay,
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
        CacheKindName,
        CacheModeName,
        CatchUpName,
        WebhookEventName,
        usage::GroupBy,
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
        (name = "groups", description = "Groups of jobs (every bulk submission, or a name single submissions share): counts, results, completion"),
        (name = "webhooks", description = "Webhook endpoints: job and group events pushed, signed as the Standard Webhooks specification says"),
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

/// `pattern` of a string that holds no NUL (`\u0000`), which PostgreSQL's
/// TEXT and JSONB cannot store.
pub const NO_NUL: &str = "^[^\\u0000]*$";

/// The document with this deployment's configuration filled in, as JSON.
///
/// What a request may hold depends on the running configuration, and the
/// document says it exactly, so that a client (or a fuzzer) that keeps to
/// the schemas is accepted and one that does not is refused:
///
/// - the limits: `maxItems` of a bulk request's `inputs`, and the byte
///   limits of bodies, inputs and metadata in the descriptions (JSON Schema
///   cannot count a value's serialised bytes; past them is a 413);
/// - `model`: an enum of the price table's models, and `auto` with
///   `use_case` an enum of the routing table's use cases. A `oneOf` ties
///   them: `auto` needs a `use_case`, any other model takes none;
/// - `timezone`: an enum of the IANA names the API parses (`Timezone`);
/// - JSON values (`input`, `metadata`): any JSON without a NUL in a string
///   or key (`Json`, `JsonObject`), inputs and template metadata objects.
pub fn document(config: &super::ApiConfig) -> Value {
    let limits = &config.limits;
    // Serialising utoipa's plain data types (strings, maps, numbers) into a
    // `Value` cannot fail; the fallback only keeps this panic-free.
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_else(|e| {
        tracing::error!(error = %e, "the OpenAPI document does not serialise");
        Value::Object(Default::default())
    });
    let models = submittable_models(config);
    let use_cases: Vec<&str> = config.routes.use_cases().collect();
    let schemas = &mut doc["components"]["schemas"];
    if let Some(schemas) = schemas.as_object_mut() {
        schemas.insert("Json".into(), json_schema());
        schemas.insert("JsonObject".into(), json_object_schema());
        schemas.insert("Timezone".into(), timezone_schema());
        schemas.insert(
            "Model".into(),
            json!({"type": "string", "enum": models,
                   "description": "A model of this deployment's price table (`OFFPEAK_PRICES`)."}),
        );
        if !use_cases.is_empty() {
            schemas.insert(
                "UseCase".into(),
                json!({"type": "string", "enum": use_cases,
                       "description": "A use case of this deployment's routing table (`OFFPEAK_ROUTES`): \
                                       `\"model\": \"auto\"` gets the model routed to it."}),
            );
        }
    }
    for name in ["SubmitRequest", "BulkRequest", "JobTemplateRequest"] {
        if let Some(request) = schemas.get_mut(name) {
            tie_model_to_use_case(request, !use_cases.is_empty());
        }
    }
    if let Some(request) = schemas.get_mut("UpgradeRequest") {
        tie_upgrade_model(request, !use_cases.is_empty());
    }
    if let Some(preview) = schemas.get_mut("PreviewRequest") {
        tie_preview(preview, !use_cases.is_empty());
    }
    for (name, field) in [
        ("SubmitRequest", "timezone"),
        ("BulkRequest", "timezone"),
        ("CreateScheduleRequest", "timezone"),
        ("PatchScheduleRequest", "timezone"),
    ] {
        if let Some(p) = schemas.pointer_mut(&format!("/{name}/properties/{field}")) {
            *p = with_description(json!({"anyOf": [{"type": "null"}, reference("Timezone")]}), p);
        }
    }

    // `cache` takes a boolean or a mode's name; utoipa's derive cannot say
    // that of a type with a hand-written `Deserialize`.
    for name in ["SubmitRequest", "BulkRequest"] {
        if let Some(p) = schemas.pointer_mut(&format!("/{name}/properties/cache")) {
            *p = with_description(
                json!({"oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["exact", "semantic"]}], "default": true}),
                p,
            );
        }
    }

    let input = format!(
        "The job's input, passed to the provider as it is: a JSON object of at most {} bytes serialised \
         (more is a 413), without NUL (`\\u0000`) characters in any string or key.",
        limits.max_input_bytes
    );
    let metadata = format!(
        "Free-form JSON kept with the job and returned with it: at most {} bytes serialised (more is a 413), \
         without NUL characters in any string or key.",
        limits.max_metadata_bytes
    );
    set(schemas, "/SubmitRequest/properties/input", json!({"$ref": JSON_OBJECT_REF, "description": input}));
    for name in ["SubmitRequest", "BulkRequest"] {
        set(schemas, &format!("/{name}/properties/metadata"), json!({"$ref": JSON_REF, "description": metadata}));
    }
    let upgrade_input = format!(
        "Fields merged over the upgraded job's input, each replacing the field of that name (e.g. a larger `width`): \
         a JSON object; the merged input must be at most {} bytes serialised (more is a 413), without NUL characters. \
         Absent or null: the job's input as it is.",
        limits.max_input_bytes
    );
    set(schemas, "/UpgradeRequest/properties/input", json!({"anyOf": [{"type": "null"}, reference("JsonObject")], "description": upgrade_input}));
    let upgrade_metadata = format!("{metadata} Absent or null: the upgraded job's metadata.");
    set(schemas, "/UpgradeRequest/properties/metadata", json!({"$ref": JSON_REF, "description": upgrade_metadata}));
    let inputs = format!(
        "One input per job, each a JSON object of at most {} bytes serialised (more is a 413), without NUL \
         characters; at least 1 and at most {} inputs (more is a 422 `too_many_inputs`).",
        limits.max_input_bytes, limits.max_bulk_inputs
    );
    set(
        schemas,
        "/BulkRequest/properties/inputs",
        json!({"type": "array", "items": reference("JsonObject"), "minItems": 1,
               "maxItems": limits.max_bulk_inputs, "description": inputs}),
    );
    let template_input = format!(
        "A JSON object, as a job's `input`: at most {} bytes serialised, without NUL characters.",
        limits.max_input_bytes
    );
    set(schemas, "/JobTemplateRequest/properties/input", json!({"$ref": JSON_OBJECT_REF, "description": template_input}));
    let template_metadata = format!(
        "A JSON object of at most {} bytes serialised, without NUL characters; each job's gets `schedule_id`, \
         `schedule_name` and `fire_at` added.",
        limits.max_metadata_bytes
    );
    set(
        schemas,
        "/JobTemplateRequest/properties/metadata",
        json!({"anyOf": [{"type": "null"}, reference("JsonObject")], "description": template_metadata}),
    );

    // An upgrade's body is optional (none is `{}`), but one that is sent is an object: utoipa writes an
    // optional body as `null` or the schema, and a `null` body is refused as every body that is not an object.
    if let Some(body) = doc.pointer_mut("/paths/~1v1~1jobs~1{id}~1upgrade/post/requestBody").and_then(Value::as_object_mut) {
        body.insert("required".into(), Value::Bool(false));
        if let Some(schema) = body.get_mut("content").and_then(|c| c.pointer_mut("/application~1json/schema")) {
            *schema = reference("UpgradeRequest");
        }
    }
    // Query parameters: a timezone, and the bounds of a usage range.
    if let Some(params) = doc.pointer_mut("/paths/~1v1~1windows~1next/get/parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut().filter(|p| p["name"] == "timezone") {
            p["schema"] = reference("Timezone");
        }
    }
    if let Some(params) = doc.pointer_mut("/paths/~1v1~1usage/get/parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut().filter(|p| p["name"] == "start" || p["name"] == "end") {
            p["schema"] = json!({"type": "string", "anyOf": [{"format": "date-time"}, {"format": "date"}]});
        }
    }
    if let Some(info) = doc.get_mut("info").and_then(Value::as_object_mut) {
        let base = info.get("description").and_then(Value::as_str).unwrap_or_default().to_owned();
        let text = format!("{base} Request bodies are limited to {} bytes.", limits.max_body_bytes);
        info.insert("description".into(), text.into());
    }
    doc
}

const JSON_REF: &str = "#/components/schemas/Json";
const JSON_OBJECT_REF: &str = "#/components/schemas/JsonObject";

fn reference(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}

/// Replaces the schema at `pointer` (under `components/schemas`), if there.
fn set(schemas: &mut Value, pointer: &str, schema: Value) {
    if let Some(at) = schemas.pointer_mut(pointer) {
        *at = schema;
    }
}

/// `schema` with the description of `old`, if it had one.
fn with_description(mut schema: Value, old: &Value) -> Value {
    if let (Some(d), Some(o)) = (old.get("description"), schema.as_object_mut()) {
        o.insert("description".into(), d.clone());
    }
    schema
}

/// The models a request may name: the price table's, but not `auto`
/// (which routes) or a name longer than the API's limit on `model`.
fn submittable_models(config: &super::ApiConfig) -> Vec<&str> {
    config.prices.models().filter(|m| *m != offpeak_core::submission::AUTO_MODEL && m.len() <= offpeak_core::submission::MAX_MODEL_LEN).collect()
}

/// Any JSON value without a NUL in a string or key. JSON Schema applies
/// `pattern` to strings only, `items` to arrays only, `propertyNames` and
/// `additionalProperties` to objects only, so one schema covers every type.
fn json_schema() -> Value {
    json!({
        "description": "Any JSON value without NUL (`\\u0000`) characters in a string or key.",
        "pattern": NO_NUL,
        "items": {"$ref": JSON_REF},
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": JSON_REF},
    })
}

/// A JSON object without a NUL in a string or key, at any depth.
fn json_object_schema() -> Value {
    json!({
        "description": "A JSON object without NUL (`\\u0000`) characters in a string or key, at any depth.",
        "type": "object",
        "propertyNames": {"pattern": NO_NUL},
        "additionalProperties": {"$ref": JSON_REF},
    })
}

/// Every IANA timezone name the API accepts: exactly the names
/// [`offpeak_core::tz::parse`] parses (chrono-tz's database, case as
/// written there).
fn timezone_schema() -> Value {
    let names: Vec<&str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    json!({"type": "string", "enum": names, "example": "America/New_York",
           "description": "An IANA timezone name, e.g. `America/New_York`, `Asia/Tokyo` or `UTC`."})
}

/// `model` as an enum of the models, and `use_case` tied to it: with
/// `"model": "auto"` a known use case is required, with any other model
/// there is none (absent or null). Without use cases (an empty routing
/// table), `auto` is not offered.
fn tie_model_to_use_case(request: &mut Value, routing: bool) {
    let Some(properties) = request.get_mut("properties").and_then(Value::as_object_mut) else { return };
    let model_description = properties.get("model").cloned().unwrap_or(Value::Null);
    let use_case_description = properties.get("use_case").cloned().unwrap_or(Value::Null);
    let mut model = json!({"type": "string"});
    if routing {
        model["anyOf"] = json!([reference("Model"), {"const": offpeak_core::submission::AUTO_MODEL}]);
    } else {
        model = reference("Model");
    }
    properties.insert("model".into(), with_description(model, &model_description));
    let use_case = if routing { json!({"anyOf": [{"type": "null"}, reference("UseCase")]}) } else { json!({"type": "null"}) };
    properties.insert("use_case".into(), with_description(use_case, &use_case_description));
    if routing {
        request["oneOf"] = json!([
            {"properties": {"model": {"const": offpeak_core::submission::AUTO_MODEL}, "use_case": reference("UseCase")},
             "required": ["use_case"]},
            {"properties": {"model": reference("Model"), "use_case": {"type": "null"}}},
        ]);
    }
}

/// An upgrade's `model` and `use_case`: a model of the price table, or a
/// known use case (alone or with `"model": "auto"`), or neither (the job's
/// recorded target). A use case with another model, or `auto` without one,
/// is refused.
fn tie_upgrade_model(request: &mut Value, routing: bool) {
    let Some(properties) = request.get_mut("properties").and_then(Value::as_object_mut) else { return };
    let model_description = properties.get("model").cloned().unwrap_or(Value::Null);
    let use_case_description = properties.get("use_case").cloned().unwrap_or(Value::Null);
    let auto = json!({"const": offpeak_core::submission::AUTO_MODEL});
    let model = if routing {
        json!({"anyOf": [{"type": "null"}, reference("Model"), auto]})
    } else {
        json!({"anyOf": [{"type": "null"}, reference("Model")]})
    };
    properties.insert("model".into(), with_description(model, &model_description));
    let use_case = if routing { json!({"anyOf": [{"type": "null"}, reference("UseCase")]}) } else { json!({"type": "null"}) };
    properties.insert("use_case".into(), with_description(use_case, &use_case_description));
    if routing {
        request["oneOf"] = json!([
            {"properties": {"model": {"anyOf": [{"type": "null"}, auto]}, "use_case": reference("UseCase")},
             "required": ["use_case"]},
            {"properties": {"model": {"anyOf": [{"type": "null"}, reference("Model")]}, "use_case": {"type": "null"}}},
        ]);
    }
}

/// A preview names exactly one of a model of the price table and a known
/// use case.
fn tie_preview(preview: &mut Value, routing: bool) {
    let Some(properties) = preview.get_mut("properties").and_then(Value::as_object_mut) else { return };
    let model_description = properties.get("model").cloned().unwrap_or(Value::Null);
    let use_case_description = properties.get("use_case").cloned().unwrap_or(Value::Null);
    properties.insert("model".into(), with_description(json!({"anyOf": [{"type": "null"}, reference("Model")]}), &model_description));
    let use_case = if routing { json!({"anyOf": [{"type": "null"}, reference("UseCase")]}) } else { json!({"type": "null"}) };
    properties.insert("use_case".into(), with_description(use_case, &use_case_description));
    let mut branches = vec![json!({"properties": {"model": reference("Model"), "use_case": {"type": "null"}}, "required": ["model"]})];
    if routing {
        branches.push(json!({"properties": {"model": {"type": "null"}, "use_case": reference("UseCase")}, "required": ["use_case"]}));
    }
    preview["oneOf"] = Value::Array(branches);
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
    Json(document(&state.config))
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
        let limits = super::super::Limits { max_bulk_inputs: 7, max_input_bytes: 1234, ..Default::default() };
        let doc = document(&super::super::ApiConfig { limits, ..Default::default() });
        assert_eq!(doc.pointer("/components/schemas/BulkRequest/properties/inputs/maxItems"), Some(&Value::from(7)));
        let input = doc.pointer("/components/schemas/SubmitRequest/properties/input/description").and_then(Value::as_str);
        assert!(input.is_some_and(|d| d.contains("1234 bytes")), "{input:?}");
        let security = &doc["components"]["securitySchemes"][SECURITY_SCHEME];
        assert_eq!((security["type"].as_str(), security["scheme"].as_str()), (Some("http"), Some("bearer")));
    }

    #[test]
    fn the_models_and_use_cases_are_the_running_tables() {
        let prices = offpeak_core::prices::PriceTable::with_overrides("house-model=9").expect("an override");
        let config = super::super::ApiConfig { prices: prices.clone(), ..Default::default() };
        let doc = document(&config);
        let models = enum_of(&doc, "Model");
        let mut real: Vec<String> = prices.models().map(str::to_owned).collect();
        real.sort();
        let mut documented = models.clone();
        documented.sort();
        assert_eq!(documented, real);
        assert!(models.contains(&"house-model".to_owned()));
        let use_cases = enum_of(&doc, "UseCase");
        let real: Vec<String> = config.routes.use_cases().map(str::to_owned).collect();
        assert_eq!(use_cases, real);
        // `auto` needs a use case; any other model takes none.
        let branches = doc["components"]["schemas"]["SubmitRequest"]["oneOf"].as_array().expect("oneOf");
        assert_eq!(branches[0]["properties"]["model"]["const"], AUTO);
        assert_eq!(branches[0]["required"], serde_json::json!(["use_case"]));
        assert_eq!(branches[1]["properties"]["use_case"]["type"], "null");
    }

    const AUTO: &str = offpeak_core::submission::AUTO_MODEL;

    fn enum_of(doc: &Value, name: &str) -> Vec<String> {
        let values = doc["components"]["schemas"][name]["enum"].as_array().unwrap_or_else(|| panic!("{name} is an enum"));
        values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect()
    }

    #[test]
    fn the_timezone_enum_is_exactly_what_the_api_parses() {
        let doc = document(&Default::default());
        let names = enum_of(&doc, "Timezone");
        assert!(names.len() > 400, "the IANA database: {}", names.len());
        for name in &names {
            assert!(offpeak_core::tz::parse(name).is_ok(), "{name} is documented, so it parses");
        }
        // Names outside the enum do not parse: other cases, abbreviations, blanks.
        for name in ["utc", "america/new_york", "EDT", "", " UTC", "Mars/Olympus"] {
            assert!(!names.contains(&name.to_owned()) && offpeak_core::tz::parse(name).is_err(), "{name:?}");
        }
    }

    #[test]
    fn json_values_exclude_nul_at_any_depth() {
        let doc = document(&Default::default());
        let json = &doc["components"]["schemas"]["Json"];
        assert_eq!(json["pattern"], NO_NUL);
        assert_eq!(json["propertyNames"]["pattern"], NO_NUL);
        assert_eq!(json["items"]["$ref"], JSON_REF);
        assert_eq!(json["additionalProperties"]["$ref"], JSON_REF);
        let object = &doc["components"]["schemas"]["JsonObject"];
        assert_eq!((object["type"].as_str(), &object["additionalProperties"]["$ref"]), (Some("object"), &Value::from(JSON_REF)));
        assert_eq!(doc.pointer("/components/schemas/BulkRequest/properties/inputs/items/$ref"), Some(&Value::from(JSON_OBJECT_REF)));
    }
}

#[cfg(test)]
mod preview_tests {
    use super::*;

    #[test]
    fn the_upgrade_body_is_optional_but_an_object_when_sent() {
        let doc = document(&Default::default());
        let body = &doc["paths"]["/v1/jobs/{id}/upgrade"]["post"]["requestBody"];
        assert_eq!(body["required"], false, "{body}");
        assert_eq!(body["content"]["application/json"]["schema"], reference("UpgradeRequest"), "no `null` body");
        let request = &doc["components"]["schemas"]["UpgradeRequest"];
        assert_eq!(request["additionalProperties"], false);
        assert_eq!(request["oneOf"].as_array().map(Vec::len), Some(2), "{request}");
    }

    #[test]
    fn a_preview_names_one_of_a_model_and_a_use_case_and_is_never_null() {
        let doc = document(&Default::default());
        let preview = &doc["components"]["schemas"]["PreviewRequest"];
        let branches = preview["oneOf"].as_array().expect("oneOf");
        assert_eq!(branches[0]["required"], serde_json::json!(["model"]));
        assert_eq!(branches[1]["required"], serde_json::json!(["use_case"]));
        for request in ["SubmitRequest", "BulkRequest"] {
            let p = &doc["components"]["schemas"][request]["properties"]["preview"];
            assert_eq!(p["$ref"], "#/components/schemas/PreviewRequest", "{request}: {p}");
        }
    }
}
