//! Webhook endpoints and their deliveries (the outbox). Deliveries are
//! written by the statements that write their cause (see
//! [`crate::outbox`] and [`crate::groups::complete`]); this module holds
//! the endpoints' reads and writes, the delivery loop's claim and record,
//! and what the API, the dashboard and the gauges read.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgExecutor, PgPool};
use uuid::Uuid;

/// A webhook endpoint as stored.
#[derive(Debug, Clone, FromRow)]
pub struct EndpointRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub secret: Vec<u8>,
    pub previous_secret: Option<Vec<u8>>,
    pub previous_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
}

const ENDPOINT_COLUMNS: &str = "id, tenant_id, url, events, description, secret, previous_secret, previous_expires_at, \
    created_at, updated_at, failing_since, disabled_at, disabled_reason";

/// A new endpoint.
#[derive(Debug, Clone)]
pub struct NewEndpoint<'a> {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub url: &'a str,
    pub events: &'a [&'a str],
    pub description: Option<&'a str>,
    pub secret: &'a [u8],
    pub now: DateTime<Utc>,
}

/// Stores a new endpoint.
///
/// # Errors
/// Database errors only.
pub async fn create<'e>(db: impl PgExecutor<'e>, e: &NewEndpoint<'_>) -> Result<EndpointRow, sqlx::Error> {
    let sql = format!(
        "INSERT INTO webhook_endpoints (id, tenant_id, url, events, description, secret, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING {ENDPOINT_COLUMNS}"
    );
    sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(e.id)
        .bind(e.tenant_id)
        .bind(e.url)
        .bind(e.events)
        .bind(e.description)
        .bind(e.secret)
        .bind(e.now)
        .fetch_one(db)
        .await
}

/// The tenant's endpoints, oldest first.
///
/// # Errors
/// Database errors only.
pub async fn list<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid) -> Result<Vec<EndpointRow>, sqlx::Error> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 ORDER BY created_at, id");
    sqlx::query_as::<_, EndpointRow>(&sql).bind(tenant_id).fetch_all(db).await
}

/// The tenant's endpoint `id`; `None` if absent or another tenant's.
///
/// # Errors
/// Database errors only.
pub async fn get<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as::<_, EndpointRow>(&sql).bind(tenant_id).bind(id).fetch_optional(db).await
}

/// Deletes the tenant's endpoint and its deliveries; returns the endpoint
/// as it was, `None` if absent or another tenant's.
///
/// # Errors
/// Database errors only.
pub async fn delete<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!("DELETE FROM webhook_endpoints WHERE tenant_id = $1 AND id = $2 RETURNING {ENDPOINT_COLUMNS}");
    sqlx::query_as::<_, EndpointRow>(&sql).bind(tenant_id).bind(id).fetch_optional(db).await
}

/// A change to an endpoint: each `Some` replaces the stored value.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate<'a> {
    pub url: Option<&'a str>,
    pub events: Option<&'a [&'a str]>,
    /// `Some(None)` clears it.
    pub description: Option<Option<&'a str>>,
    /// `Some(true)` enables a disabled endpoint (and forgets its failures);
    /// `Some(false)` disables it.
    pub enabled: Option<bool>,
}

/// Applies `u` to the tenant's endpoint; `None` if absent.
///
/// # Errors
/// Database errors only.
pub async fn update<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
    u: &EndpointUpdate<'_>,
    now: DateTime<Utc>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE webhook_endpoints SET
             url = COALESCE($3, url),
             events = COALESCE($4, events),
             description = CASE WHEN $5 THEN $6 ELSE description END,
             disabled_at = CASE WHEN $7 IS NULL THEN disabled_at WHEN $7 THEN NULL ELSE COALESCE(disabled_at, $8) END,
             disabled_reason = CASE WHEN $7 IS NULL THEN disabled_reason WHEN $7 THEN NULL
                                    ELSE COALESCE(disabled_reason, 'disabled by the tenant') END,
             failing_since = CASE WHEN $7 THEN NULL ELSE failing_since END,
             updated_at = $8
         WHERE tenant_id = $1 AND id = $2
         RETURNING {ENDPOINT_COLUMNS}"
    );
    sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(tenant_id)
        .bind(id)
        .bind(u.url)
        .bind(u.events)
        .bind(u.description.is_some())
        .bind(u.description.flatten())
        .bind(u.enabled)
        .bind(now)
        .fetch_optional(db)
        .await
}

/// Replaces the endpoint's secret; the current one keeps signing beside
/// the new one until `previous_until`. `None` if absent.
///
/// # Errors
/// Database errors only.
pub async fn rotate_secret<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    id: Uuid,
    secret: &[u8],
    now: DateTime<Utc>,
    previous_until: DateTime<Utc>,
) -> Result<Option<EndpointRow>, sqlx::Error> {
    let sql = format!(
        "UPDATE webhook_endpoints SET previous_secret = secret, previous_expires_at = $5, secret = $3, updated_at = $4
         WHERE tenant_id = $1 AND id = $2
         RETURNING {ENDPOINT_COLUMNS}"
    );
    sqlx::query_as::<_, EndpointRow>(&sql)
        .bind(tenant_id)
        .bind(id)
        .bind(secret)
        .bind(now)
        .bind(previous_until)
        .fetch_optional(db)
        .await
}

/// A delivery the loop has leased and must attempt.
#[derive(Debug, Clone, FromRow)]
pub struct Due {
    pub id: Uuid,
    pub event_id: Uuid,
    pub endpoint_id: Uuid,
    pub tenant_id: Uuid,
    pub event_type: String,
    pub url: String,
    /// The keys to sign with: the endpoint's secret, then the previous one
    /// while it is still honoured.
    pub keys: Vec<Vec<u8>>,
    /// The body, exactly as it is sent and signed.
    pub payload: String,
    /// Attempts made before this one.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Leases up to `limit` due deliveries, at most `per_endpoint` of each
/// enabled endpoint and none of the endpoints in `busy` (those with
/// attempts still in flight in this replica): each leased row's
/// `next_attempt_at` moves to `lease_until`, so another replica does not
/// take it while this one tries it, and takes it again if this one dies.
/// The rows are locked only for the claim (`SKIP LOCKED`), never while a
/// receiver answers.
///
/// # Errors
/// Database errors only.
pub async fn claim_due(
    pool: &PgPool,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    per_endpoint: i64,
    limit: i64,
    busy: &[Uuid],
) -> Result<Vec<Due>, sqlx::Error> {
    sqlx::query_as::<_, Due>(
        "WITH picked AS (
             SELECT d.id FROM webhook_endpoints e
             CROSS JOIN LATERAL (
                 SELECT d.id FROM webhook_deliveries d
                 WHERE d.endpoint_id = e.id AND d.state = 'pending' AND d.next_attempt_at <= $1
                 ORDER BY d.next_attempt_at
                 LIMIT $3
                 FOR UPDATE OF d SKIP LOCKED
             ) d
             WHERE e.disabled_at IS NULL AND e.id <> ALL($5)
             LIMIT $4
         ),
         leased AS (
             UPDATE webhook_deliveries d SET next_attempt_at = $2
             FROM picked p WHERE d.id = p.id
             RETURNING d.id, d.event_id, d.endpoint_id, d.tenant_id, d.event_type, d.payload, d.attempts, d.created_at
         )
         SELECT l.id, l.event_id, l.endpoint_id, l.tenant_id, l.event_type, e.url,
                CASE WHEN e.previous_secret IS NOT NULL AND e.previous_expires_at > $1
                     THEN ARRAY[e.secret, e.previous_secret] ELSE ARRAY[e.secret] END AS keys,
                l.payload::text AS payload, l.attempts, l.created_at
         FROM leased l JOIN webhook_endpoints e ON e.id = l.endpoint_id
         ORDER BY l.created_at",
    )
    .bind(now)
    .bind(lease_until)
    .bind(per_endpoint)
    .bind(limit)
    .bind(busy)
    .fetch_all(pool)
    .await
}

/// What one [`fan_out`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FanOut {
    /// Rows taken out of `webhook_events` (each the events of one statement).
    pub rows: i64,
    /// Job events in them.
    pub events: i64,
    /// Deliveries written for them (one per subscribed endpoint).
    pub deliveries: i64,
    /// Where the next call should start (`from_block`): past what this one
    /// took, or back at the start of the table once it reached the end.
    pub next_block: i64,
}

/// Turns up to `limit` rows of job events (the narrow rows the statements
/// that end jobs write, each listing the jobs one statement ended, see
/// [`crate::outbox`]) into their deliveries, in one
/// statement: the events it deletes are the events it fans out, so an event
/// is never lost nor fanned out twice, and two replicas skip each other's
/// rows (`SKIP LOCKED`).
///
/// The table has no index (it would cost the statements that end jobs):
/// rows are found by a scan of its pages from `from_block` (a TID range
/// scan), so a caller that passes back [`FanOut::next_block`] does not read
/// again through the rows it deleted before vacuum reclaims them (a scan
/// from the start would, every time, and a million events would take
/// quadratic time). Rows written behind the cursor into reused space are
/// found when it returns to the start, as it does whenever a scan reaches
/// the end.
///
/// # Errors
/// Database errors; nothing moved then.
pub async fn fan_out(pool: &PgPool, limit: i64, from_block: i64) -> Result<FanOut, sqlx::Error> {
    static SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        format!(
            "WITH events AS (
                 DELETE FROM webhook_events
                 WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM webhook_events WHERE ctid >= format('(%s,0)', $2::int8)::tid
                     LIMIT $1 FOR UPDATE SKIP LOCKED))
                 RETURNING job_ids, (ctid::text::point)[0]::int8 AS block
             ){deliveries}
             SELECT (SELECT count(*) FROM events) AS rows,
                    (SELECT COALESCE(sum(cardinality(job_ids)), 0)::int8 FROM events) AS events,
                    (SELECT count(*) FROM events_deliveries) AS deliveries,
                    (SELECT max(block) FROM events) AS last_block",
            deliveries = crate::outbox::fan_out("events")
        )
    });
    let (rows, events, deliveries, last_block): (i64, i64, i64, Option<i64>) =
        sqlx::query_as(&SQL).bind(limit).bind(from_block.max(0)).fetch_one(pool).await?;
    let next_block = if rows < limit { 0 } else { last_block.unwrap_or(0) };
    Ok(FanOut { rows, events, deliveries, next_block })
}

/// What one attempt of a delivery came to.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub delivery_id: Uuid,
    pub endpoint_id: Uuid,
    pub attempted_at: DateTime<Utc>,
    pub status: Option<i32>,
    pub latency_ms: i32,
    pub error: Option<String>,
    pub success: bool,
    /// The delivery's `attempts` when it was leased (before this attempt).
    pub attempts_before: i32,
    /// When to try again after a failure; `None`: the retry schedule is used
    /// up and the delivery is `failed`.
    pub retry_at: Option<DateTime<Utc>>,
}

/// Records attempts, in one statement: their rows, each delivery's new
/// state, and each endpoint's health (an endpoint that answered any of
/// them is healthy again; one that failed them all is failing since its
/// first failure, and is disabled if that was before `disable_before`).
/// Returns the endpoints this disabled.
///
/// Idempotent: a delivery moves only from the attempt count it was leased
/// with, and only the attempts of deliveries that moved are written and
/// counted, so a record retried after a lost answer (it had committed)
/// writes nothing twice. An endpoint's row is written only when its health
/// changes, so a stream of successes does not rewrite it.
///
/// # Errors
/// Database errors only.
pub async fn record_attempts(pool: &PgPool, attempts: &[AttemptRecord], disable_before: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    if attempts.is_empty() {
        return Ok(Vec::new());
    }
    fn column<T>(a: &[AttemptRecord], f: impl Fn(&AttemptRecord) -> T) -> Vec<T> {
        a.iter().map(f).collect()
    }
    let rows: Vec<(Uuid, bool)> = sqlx::query_as(
        "WITH a AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::int4[], $5::int4[], $6::text[],
                                  $7::bool[], $8::timestamptz[], $9::int4[])
                 AS a(delivery_id, endpoint_id, attempted_at, status, latency_ms, error, success, retry_at, attempts_before)
         ),
         moved AS (
             UPDATE webhook_deliveries d SET
                 attempts = d.attempts + 1,
                 state = CASE WHEN a.success THEN 'delivered' WHEN a.retry_at IS NULL THEN 'failed' ELSE 'pending' END,
                 delivered_at = CASE WHEN a.success THEN a.attempted_at ELSE d.delivered_at END,
                 next_attempt_at = COALESCE(a.retry_at, d.next_attempt_at),
                 last_status = a.status, last_error = a.error
             FROM a
             WHERE d.id = a.delivery_id AND d.state = 'pending' AND d.attempts = a.attempts_before
             RETURNING d.id
         ),
         written AS (
             SELECT a.* FROM a WHERE a.delivery_id IN (SELECT id FROM moved)
         ),
         logged AS (
             INSERT INTO webhook_attempts (delivery_id, attempted_at, status, latency_ms, error)
             SELECT delivery_id, attempted_at, status, latency_ms, error FROM written
         ),
         health AS (
             SELECT w.endpoint_id, bool_or(w.success) AS ok, min(w.attempted_at) AS first_at, max(w.attempted_at) AS last_at,
                    NOT bool_or(w.success) AND e.disabled_at IS NULL AND COALESCE(e.failing_since, min(w.attempted_at)) < $10
                        AS disable
             FROM written w JOIN webhook_endpoints e ON e.id = w.endpoint_id
             GROUP BY w.endpoint_id, e.disabled_at, e.failing_since
         )
         UPDATE webhook_endpoints e SET
             failing_since = CASE WHEN h.ok THEN NULL ELSE COALESCE(e.failing_since, h.first_at) END,
             disabled_at = CASE WHEN h.disable THEN h.last_at ELSE e.disabled_at END,
             disabled_reason = CASE WHEN h.disable
                                    THEN 'every delivery failed since ' || offpeak_utc_text(COALESCE(e.failing_since, h.first_at))
                                    ELSE e.disabled_reason END
         FROM health h
         WHERE e.id = h.endpoint_id
           AND (h.ok AND e.failing_since IS NOT NULL OR NOT h.ok AND (e.failing_since IS NULL OR h.disable))
         RETURNING e.id, h.disable",
    )
    .bind(column(attempts, |a| a.delivery_id))
    .bind(column(attempts, |a| a.endpoint_id))
    .bind(column(attempts, |a| a.attempted_at))
    .bind(column(attempts, |a| a.status))
    .bind(column(attempts, |a| a.latency_ms))
    .bind(column(attempts, |a| a.error.clone()))
    .bind(column(attempts, |a| a.success))
    .bind(column(attempts, |a| a.retry_at))
    .bind(column(attempts, |a| a.attempts_before))
    .bind(disable_before)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().filter(|r| r.1).map(|r| r.0).collect())
}

/// A delivery with its attempts, as `GET /v1/webhooks/{id}/deliveries` lists it.
#[derive(Debug, Clone, FromRow)]
pub struct DeliveryRow {
    pub id: Uuid,
    pub event_id: Uuid,
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    pub state: String,
    pub attempts: i32,
    pub next_attempt_at: DateTime<Utc>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub last_status: Option<i32>,
    pub last_error: Option<String>,
    /// `[{"at", "status", "latency_ms", "error"}]`, oldest first.
    pub attempt_log: serde_json::Value,
}

/// The endpoint's deliveries, newest first, `limit` from before the
/// delivery `before` (a cursor).
///
/// # Errors
/// Database errors only.
pub async fn list_deliveries<'e>(
    db: impl PgExecutor<'e>,
    endpoint_id: Uuid,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<DeliveryRow>, sqlx::Error> {
    sqlx::query_as::<_, DeliveryRow>(
        "SELECT d.id, d.event_id, d.event_type, d.created_at, d.state, d.attempts, d.next_attempt_at,
                d.delivered_at, d.last_status, d.last_error,
                COALESCE((SELECT jsonb_agg(jsonb_build_object('at', offpeak_utc_text(a.attempted_at), 'status', a.status,
                                                              'latency_ms', a.latency_ms, 'error', a.error)
                                       ORDER BY a.attempted_at)
                          FROM webhook_attempts a WHERE a.delivery_id = d.id), '[]'::jsonb) AS attempt_log
         FROM webhook_deliveries d
         WHERE d.endpoint_id = $1
           AND ($2::uuid IS NULL OR (d.created_at, d.id) < (SELECT c.created_at, c.id FROM webhook_deliveries c WHERE c.id = $2))
         ORDER BY d.created_at DESC, d.id DESC
         LIMIT $3",
    )
    .bind(endpoint_id)
    .bind(before)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// Sends a delivery of the tenant's endpoint again, as soon as the loop
/// comes round (same event id, same body). `None` if there is no such
/// delivery.
///
/// # Errors
/// Database errors only.
pub async fn replay<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    endpoint_id: Uuid,
    delivery_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<DeliveryRow>, sqlx::Error> {
    sqlx::query_as::<_, DeliveryRow>(
        "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = $4
         WHERE id = $3 AND endpoint_id = $2 AND tenant_id = $1
         RETURNING id, event_id, event_type, created_at, state, attempts, next_attempt_at, delivered_at,
                   last_status, last_error, '[]'::jsonb AS attempt_log",
    )
    .bind(tenant_id)
    .bind(endpoint_id)
    .bind(delivery_id)
    .bind(now)
    .fetch_optional(db)
    .await
}

/// The outbox at a glance, for the gauges and the dashboard.
#[derive(Debug, Clone, Copy, Default, FromRow)]
pub struct OutboxStats {
    /// Deliveries not yet delivered nor given up.
    pub pending: i64,
    /// Job events not yet fanned out into deliveries.
    pub events_waiting: i64,
    /// The oldest pending delivery's or waiting event's age in seconds (0 if none).
    pub oldest_pending_seconds: f64,
    /// Deliveries given up (the retry schedule used up).
    pub failed: i64,
    /// Endpoints disabled.
    pub endpoints_disabled: i64,
}

/// Reads [`OutboxStats`]. Its counts of deliveries go through partial
/// indexes (pending, failed), so none grows with the delivered rows kept
/// until pruning; the events not yet fanned out and the endpoints are small
/// tables (fan-out drains the first). The gauges read it in their counting
/// transaction (`operator::gauges::begin_counting`).
///
/// # Errors
/// Database errors only.
pub async fn outbox_stats<'e>(db: impl PgExecutor<'e>, now: DateTime<Utc>) -> Result<OutboxStats, sqlx::Error> {
    sqlx::query_as::<_, OutboxStats>(
        "WITH ev AS (SELECT COALESCE(sum(cardinality(job_ids)), 0)::int8 AS n, min(finished_at) AS oldest FROM webhook_events)
         SELECT (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') AS pending,
                (SELECT n FROM ev) AS events_waiting,
                COALESCE(EXTRACT(EPOCH FROM $1 - LEAST((SELECT min(created_at) FROM webhook_deliveries WHERE state = 'pending'),
                                                       (SELECT oldest FROM ev))), 0)::float8
                    AS oldest_pending_seconds,
                (SELECT count(*) FROM webhook_deliveries WHERE state = 'failed') AS failed,
                (SELECT count(*) FROM webhook_endpoints WHERE disabled_at IS NOT NULL) AS endpoints_disabled",
    )
    .bind(now)
    .fetch_one(db)
    .await
}

/// An endpoint as the operator sees it (every tenant's).
#[derive(Debug, Clone, FromRow)]
pub struct OperatorEndpoint {
    pub id: Uuid,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: DateTime<Utc>,
    pub failing_since: Option<DateTime<Utc>>,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

/// Every endpoint (or one tenant's) with its deliveries counted by state:
/// the operator's `webhooks list` and the dashboard's panel.
///
/// # Errors
/// Database errors only.
pub async fn operator_list<'e>(db: impl PgExecutor<'e>, tenant: Option<&str>) -> Result<Vec<OperatorEndpoint>, sqlx::Error> {
    sqlx::query_as::<_, OperatorEndpoint>(
        "SELECT e.id, t.name AS tenant, e.url, e.events, e.description, e.created_at, e.failing_since,
                e.disabled_at, e.disabled_reason,
                count(d.id) FILTER (WHERE d.state = 'pending') AS pending,
                count(d.id) FILTER (WHERE d.state = 'delivered') AS delivered,
                count(d.id) FILTER (WHERE d.state = 'failed') AS failed,
                (SELECT d2.last_error FROM webhook_deliveries d2
                 WHERE d2.endpoint_id = e.id AND d2.last_error IS NOT NULL
                 ORDER BY d2.next_attempt_at DESC LIMIT 1) AS last_error
         FROM webhook_endpoints e JOIN tenants t ON t.id = e.tenant_id
         LEFT JOIN webhook_deliveries d ON d.endpoint_id = e.id
         WHERE $1::text IS NULL OR t.name = $1
         GROUP BY e.id, t.name
         ORDER BY t.name, e.created_at, e.id",
    )
    .bind(tenant)
    .fetch_all(db)
    .await
}

/// Deletes delivered and failed deliveries created before `before`, up to
/// `chunk` of them (their attempts go with them). Returns how many.
///
/// # Errors
/// Database errors only.
pub async fn prune_chunk<'e>(db: impl PgExecutor<'e>, before: DateTime<Utc>, chunk: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "DELETE FROM webhook_deliveries WHERE id IN (
             SELECT id FROM webhook_deliveries
             WHERE state <> 'pending' AND created_at < $1
             LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(before)
    .bind(chunk)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// The tenant an endpoint belongs to (for the operator, who names endpoints by id alone).
///
/// # Errors
/// Database errors only.
pub async fn tenant_of<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    sqlx::query_scalar("SELECT tenant_id FROM webhook_endpoints WHERE id = $1").bind(id).fetch_optional(db).await
}
