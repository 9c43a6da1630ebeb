//! `/v1/webhooks`: a tenant's webhook endpoints and their deliveries.
//!
//! An endpoint receives the events it subscribes to, signed as the
//! Standard Webhooks specification says (see `offpeak_core::webhook` and
//! the delivery loop in `crate::webhooks`). Its secret is shown in full
//! only when it is created or rotated.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use offpeak_core::webhook::{check_url, EventType, Secret};
use offpeak_store::webhooks::{self as db, DeliveryRow, EndpointRow, EndpointUpdate, NewEndpoint};

use super::error::{ApiError, ApiResult};
use super::extract::{AuthTenant, JsonBody, PathId, QueryParams, Resource};
use super::page::Page;
use super::AppState;

/// `/v1/webhooks/{id}`.
pub struct WebhookId;
impl Resource for WebhookId {
    const NAME: &'static str = "webhook";
}

/// Most endpoints a tenant may register: each is written a delivery per
/// event in the statement that ends a job, so this bounds that write.
pub const MAX_ENDPOINTS_PER_TENANT: i64 = 20;
/// Longest `description`, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 500;
/// How long a rotated-out secret still signs (beside the new one).
pub const PREVIOUS_SECRET_HONOURED: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Where to POST events: `https://` (and, where the operator allows private destinations, `http://`); never a
    /// loopback, private, link-local or metadata address unless the operator allows them, checked again on the
    /// resolved address at each delivery. Redirects are not followed.
    #[schema(max_length = 2048, example = "https://example.com/hooks/offpeak")]
    url: String,
    /// The events to receive; all of them when absent.
    #[schema(value_type = Option<Vec<super::schema::WebhookEventName>>, min_items = 1)]
    events: Option<Vec<String>>,
    /// 0 to 500 characters, no NUL characters.
    #[schema(max_length = 500, pattern = "^[^\\u0000]*$")]
    description: Option<String>,
}

/// `PATCH /v1/webhooks/{id}`: each property given replaces the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    #[schema(max_length = 2048)]
    url: Option<String>,
    #[schema(value_type = Option<Vec<super::schema::WebhookEventName>>, min_items = 1)]
    events: Option<Vec<String>>,
    /// `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>, max_length = 500, pattern = "^[^\\u0000]*$")]
    description: Option<Option<String>>,
    /// `true` enables an endpoint that was disabled (by its failures or by the tenant) and forgets its failures;
    /// `false` disables it: it gets no new deliveries until enabled again.
    enabled: Option<bool>,
}

fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// An endpoint as the API shows it (never its secret, except in the answers to creating or rotating it).
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    pub id: Uuid,
    pub url: String,
    #[schema(value_type = Vec<super::schema::WebhookEventName>)]
    pub events: Vec<String>,
    #[schema(required = true)]
    pub description: Option<String>,
    /// `false` once disabled; see `disabled_reason`.
    pub enabled: bool,
    #[schema(required = true)]
    pub disabled_at: Option<DateTime<Utc>>,
    /// Why it was disabled, e.g. every delivery having failed for days.
    #[schema(required = true)]
    pub disabled_reason: Option<String>,
    /// The first failed delivery since the last success; null while it is healthy.
    #[schema(required = true)]
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&EndpointRow> for WebhookView {
    fn from(r: &EndpointRow) -> Self {
        Self {
            id: r.id,
            url: r.url.clone(),
            events: r.events.clone(),
            description: r.description.clone(),
            enabled: r.disabled_at.is_none(),
            disabled_at: r.disabled_at,
            disabled_reason: r.disabled_reason.clone(),
            failing_since: r.failing_since,
            created_at: r.created_at,
            updated_at: r.updated_at,
        }
    }
}

/// An endpoint with its signing secret: the answer to creating it.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// The signing secret, `whsec_` + base64 of 32 random bytes: shown only here and when rotated. Verify each
    /// delivery's `webhook-signature` with it (Standard Webhooks).
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
}

/// The answer to rotating a secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretRotated {
    pub id: Uuid,
    /// The new signing secret; shown only here.
    pub secret: String,
    /// Until then, deliveries carry a second signature made with the previous secret.
    pub previous_secret_expires_at: DateTime<Utc>,
}

/// The tenant's endpoints.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookList)]
pub struct ListResponse {
    webhooks: Vec<WebhookView>,
}

/// Parses `events`: known names, at least one, each once; all when absent.
fn parse_events(events: Option<Vec<String>>) -> ApiResult<Vec<&'static str>> {
    let Some(events) = events else {
        return Ok(EventType::ALL.iter().map(|e| e.as_str()).collect());
    };
    if events.is_empty() {
        return Err(ApiError::invalid("invalid_field", "events", "events must name at least one event, or be left out for all"));
    }
    let mut out: Vec<&'static str> = Vec::with_capacity(events.len());
    for e in &events {
        let parsed: EventType = e.parse().map_err(|_| {
            let known: Vec<&str> = EventType::ALL.iter().map(|e| e.as_str()).collect();
            ApiError::invalid("invalid_event", "events", format!("unknown event {e:?}; known events: {}", known.join(", ")))
        })?;
        if !out.contains(&parsed.as_str()) {
            out.push(parsed.as_str());
        }
    }
    Ok(out)
}

fn parse_url(state: &AppState, url: &str) -> ApiResult<()> {
    check_url(url, state.config.webhooks_allow_private).map_err(|e| ApiError::invalid("invalid_url", "url", e.to_string()))
}

fn parse_description(d: Option<&str>) -> ApiResult<()> {
    if let Some(d) = d {
        if d.chars().count() > MAX_DESCRIPTION_CHARS || d.contains('\0') {
            return Err(ApiError::invalid(
                "invalid_field",
                "description",
                format!("description must be at most {MAX_DESCRIPTION_CHARS} characters without NUL characters"),
            ));
        }
    }
    Ok(())
}

fn new_secret() -> Secret {
    Secret::from_bytes(rand::random::<[u8; 32]>())
}

/// `POST /v1/webhooks`.
#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "create_webhook",
    summary = "Register a webhook endpoint; the answer holds its signing secret, shown only this once",
    security(("api_key" = [])),
    request_body(content = CreateWebhook, content_type = "application/json"),
    responses(
        (status = 201, description = "The endpoint, with its secret", body = WebhookCreated),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 409, description = "The tenant already has the most endpoints allowed (`too_many_webhooks`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body is over its size limit (`payload_too_large`)", body = super::schema::ErrorBody),
        (status = 422, description = "A missing, unknown or mistyped field (`invalid_field`), a URL offpeak may not call (`invalid_url`: not `https`, \
                                      credentials in it, a loopback, private, link-local or metadata address), an unknown event (`invalid_event`); \
                                      `field` names it", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn create(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    JsonBody(req): JsonBody<CreateWebhook>,
) -> ApiResult<(StatusCode, Json<WebhookCreated>)> {
    parse_url(&state, &req.url)?;
    let events = parse_events(req.events)?;
    parse_description(req.description.as_deref())?;
    let secret = new_secret();
    let mut tx = state.pool.begin().await?;
    // Counted under the tenant's row lock, so two creations cannot both pass.
    sqlx::query("SELECT 1 FROM tenants WHERE id = $1 FOR UPDATE").bind(tenant.id).execute(&mut *tx).await?;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = $1")
        .bind(tenant.id)
        .fetch_one(&mut *tx)
        .await?;
    if count >= MAX_ENDPOINTS_PER_TENANT {
        return Err(ApiError::conflict(
            "too_many_webhooks",
            format!("a tenant may have at most {MAX_ENDPOINTS_PER_TENANT} webhook endpoints; delete one first"),
        ));
    }
    let row = db::create(
        &mut *tx,
        &NewEndpoint {
            id: Uuid::now_v7(),
            tenant_id: tenant.id,
            url: &req.url,
            events: &events,
            description: req.description.as_deref(),
            secret: secret.as_bytes(),
            now: state.clock.now(),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(tenant_id = %tenant.id, webhook_id = %row.id, "webhook endpoint registered");
    Ok((StatusCode::CREATED, Json(WebhookCreated { webhook: WebhookView::from(&row), secret: secret.encode() })))
}

/// `GET /v1/webhooks`.
#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    operation_id = "list_webhooks",
    summary = "List the tenant's webhook endpoints, oldest first",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "Every endpoint of the tenant (at most 20)", body = ListResponse),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn list(State(state): State<AppState>, AuthTenant(tenant): AuthTenant) -> ApiResult<Json<ListResponse>> {
    let rows = db::list(&state.pool, tenant.id).await?;
    Ok(Json(ListResponse { webhooks: rows.iter().map(WebhookView::from).collect() }))
}

/// `GET /v1/webhooks/{id}`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "get_webhook",
    summary = "Read one webhook endpoint",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id; anything that is not one of the tenant's endpoint ids is a 404")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No endpoint of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn get(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<WebhookId>,
) -> ApiResult<Json<WebhookView>> {
    let row = db::get(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(WebhookView::from(&row)))
}

/// `PATCH /v1/webhooks/{id}`.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "update_webhook",
    summary = "Change a webhook endpoint's URL, events or description, or enable or disable it",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id; anything that is not one of the tenant's endpoint ids is a 404")),
    request_body(content = UpdateWebhook, content_type = "application/json"),
    responses(
        (status = 200, description = "The endpoint as changed", body = WebhookView),
        (status = 400, description = "The body is not JSON (`invalid_json`) or cannot be read (`invalid_body`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No endpoint of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 413, description = "The body is over its size limit (`payload_too_large`)", body = super::schema::ErrorBody),
        (status = 422, description = "As for creating one (`invalid_field`, `invalid_url`, `invalid_event`); nothing is changed", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn patch(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<WebhookId>,
    JsonBody(req): JsonBody<UpdateWebhook>,
) -> ApiResult<Json<WebhookView>> {
    if let Some(url) = &req.url {
        parse_url(&state, url)?;
    }
    let events = req.events.map(|e| parse_events(Some(e))).transpose()?;
    if let Some(d) = &req.description {
        parse_description(d.as_deref())?;
    }
    let update = EndpointUpdate {
        url: req.url.as_deref(),
        events: events.as_deref(),
        description: req.description.as_ref().map(|d| d.as_deref()),
        enabled: req.enabled,
    };
    let row = db::update(&state.pool, tenant.id, id, &update, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(WebhookView::from(&row)))
}

/// `DELETE /v1/webhooks/{id}`: 200 with the endpoint as it was (as schedules).
#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    operation_id = "delete_webhook",
    summary = "Delete a webhook endpoint and its pending deliveries",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id; anything that is not one of the tenant's endpoint ids is a 404")),
    responses(
        (status = 200, description = "The endpoint as it was", body = WebhookView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No endpoint of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn delete(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<WebhookId>,
) -> ApiResult<Json<WebhookView>> {
    let row = db::delete(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    Ok(Json(WebhookView::from(&row)))
}

/// `POST /v1/webhooks/{id}/rotate-secret`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    operation_id = "rotate_webhook_secret",
    summary = "Give an endpoint a new signing secret; the previous one still signs for 24 hours",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id; anything that is not one of the tenant's endpoint ids is a 404")),
    responses(
        (status = 200, description = "The new secret, shown only here", body = SecretRotated),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No endpoint of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<WebhookId>,
) -> ApiResult<Json<SecretRotated>> {
    let secret = new_secret();
    let now = state.clock.now();
    let until = now + PREVIOUS_SECRET_HONOURED;
    let row = db::rotate_secret(&state.pool, tenant.id, id, secret.as_bytes(), now, until)
        .await?
        .ok_or_else(|| ApiError::not_found("webhook"))?;
    tracing::info!(tenant_id = %tenant.id, webhook_id = %row.id, "webhook secret rotated");
    Ok(Json(SecretRotated { id: row.id, secret: secret.encode(), previous_secret_expires_at: until }))
}

/// Query of `GET /v1/webhooks/{id}/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesParams {
    /// Deliveries per page, 1 to 1000 (default 50).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(value_type = Option<Uuid>)]
    cursor: Option<String>,
}

/// One attempt of a delivery.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; null when it did not answer (timeout, refused, a destination not allowed).
    #[schema(required = true)]
    pub status: Option<i32>,
    pub latency_ms: i64,
    #[schema(required = true)]
    pub error: Option<String>,
}

/// A delivery of one event to this endpoint, with its attempts.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: Uuid,
    /// The event's id, sent as `webhook-id` (`msg_` + this, without dashes) on every attempt.
    pub event_id: Uuid,
    #[schema(value_type = super::schema::WebhookEventName)]
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    /// `pending` (another attempt is due at `next_attempt_at`), `delivered`, or `failed` (its retries, over more
    /// than a day, are used up; replay it to try again).
    #[schema(example = "delivered")]
    pub state: String,
    pub attempts: i32,
    #[schema(required = true)]
    pub next_attempt_at: Option<DateTime<Utc>>,
    #[schema(required = true)]
    pub delivered_at: Option<DateTime<Utc>>,
    pub attempt_log: Vec<AttemptView>,
}

impl TryFrom<DeliveryRow> for DeliveryView {
    type Error = ApiError;
    fn try_from(r: DeliveryRow) -> Result<Self, ApiError> {
        let attempt_log: Vec<AttemptView> = serde_json::from_value(r.attempt_log).map_err(ApiError::internal)?;
        Ok(Self {
            id: r.id,
            event_id: r.event_id,
            event_type: r.event_type,
            created_at: r.created_at,
            next_attempt_at: (r.state == "pending").then_some(r.next_attempt_at),
            state: r.state,
            attempts: r.attempts,
            delivered_at: r.delivered_at,
            attempt_log,
        })
    }
}

/// A page of deliveries, newest first.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = DeliveryList)]
pub struct DeliveriesResponse {
    deliveries: Vec<DeliveryView>,
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// `GET /v1/webhooks/{id}/deliveries`.
#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    operation_id = "list_webhook_deliveries",
    summary = "List an endpoint's deliveries with every attempt (status, latency, error), newest first",
    security(("api_key" = [])),
    params(("id" = Uuid, Path, description = "The endpoint's id; anything that is not one of the tenant's endpoint ids is a 404"), DeliveriesParams),
    responses(
        (status = 200, description = "A page of deliveries", body = DeliveriesResponse),
        (status = 400, description = "A bad or unknown query parameter (`invalid_query`, `invalid_cursor`)", body = super::schema::ErrorBody),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No endpoint of this tenant has this id (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn deliveries(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    PathId(id, _): PathId<WebhookId>,
    QueryParams(p): QueryParams<DeliveriesParams>,
) -> ApiResult<Json<DeliveriesResponse>> {
    let page = Page::parse(p.limit.as_deref(), p.cursor.as_deref())?;
    db::get(&state.pool, tenant.id, id).await?.ok_or_else(|| ApiError::not_found("webhook"))?;
    let rows = db::list_deliveries(&state.pool, id, page.before, page.fetch()).await?;
    let (rows, next_cursor) = page.finish(rows, |r| r.id);
    let deliveries = rows.into_iter().map(DeliveryView::try_from).collect::<ApiResult<Vec<_>>>()?;
    Ok(Json(DeliveriesResponse { deliveries, next_cursor }))
}

/// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/replay`.
#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
    tag = "webhooks",
    operation_id = "replay_webhook_delivery",
    summary = "Send a delivery again (same event id, same body), as soon as the delivery loop comes round",
    security(("api_key" = [])),
    params(
        ("id" = Uuid, Path, description = "The endpoint's id"),
        ("delivery_id" = Uuid, Path, description = "The delivery's id; anything that is not one of this endpoint's deliveries is a 404"),
    ),
    responses(
        (status = 202, description = "Queued for another attempt", body = DeliveryView),
        (status = 401, description = "No, a malformed or an unknown API key (`unauthorized`)", body = super::schema::ErrorBody),
        (status = 404, description = "No such endpoint or delivery of this tenant (`not_found`)", body = super::schema::ErrorBody),
        (status = 500, description = "A failure on the server's side (`internal`); it is logged", body = super::schema::ErrorBody),
        (status = 503, description = "The database is unreachable (`unavailable`); retry later", body = super::schema::ErrorBody),
    ),
)]
pub async fn replay(
    State(state): State<AppState>,
    AuthTenant(tenant): AuthTenant,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
) -> ApiResult<(StatusCode, Json<DeliveryView>)> {
    let not_found = || ApiError::not_found("delivery");
    // Anything that is not two UUIDs names nothing: the same 404 as an unknown id.
    let Path((id, delivery_id)) = path.map_err(|_| not_found())?;
    let id = Uuid::parse_str(&id).map_err(|_| not_found())?;
    let delivery_id = Uuid::parse_str(&delivery_id).map_err(|_| not_found())?;
    let row = db::replay(&state.pool, tenant.id, id, delivery_id, state.clock.now()).await?.ok_or_else(not_found)?;
    Ok((StatusCode::ACCEPTED, Json(DeliveryView::try_from(row)?)))
}
