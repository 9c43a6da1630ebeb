-- Issue #18: job groups, webhook endpoints, and the outbox of webhook
-- deliveries written by the same statement as a job's terminal state.

-- A group: every bulk submission, or the jobs single submissions name with
-- `"group": "<name>"`. `total` counts its jobs (a bulk sets it once; a
-- named single adds one, in its own transaction, under the row's lock).
-- `completed_at` is set once, by the statement that writes the
-- `group.completed` event (store::groups::complete), so the event is sent
-- once; a completed group takes no new job.
CREATE TABLE job_groups (
    id           UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name         TEXT,
    total        BIGINT NOT NULL DEFAULT 0 CHECK (total >= 0),
    created_at   TIMESTAMPTZ NOT NULL,
    completed_at TIMESTAMPTZ,
    -- The counts by state when the group completed (what the event said).
    final_counts JSONB
);
CREATE UNIQUE INDEX job_groups_tenant_name ON job_groups (tenant_id, name) WHERE name IS NOT NULL;
-- The completion pass looks only at open groups.
CREATE INDEX job_groups_open ON job_groups (created_at) WHERE completed_at IS NULL;

-- A job's group. Its own index serves a group's counts and its results
-- stream (keyset by id); jobs without a group have no entry.
ALTER TABLE jobs ADD COLUMN group_id UUID;
CREATE INDEX jobs_group ON jobs (group_id, id) WHERE group_id IS NOT NULL;

-- How many of a group's jobs reached a terminal state: every statement that
-- writes terminal states appends one row per group it touched (append only,
-- so two workers finishing batches of one group never wait for each other
-- on a counter row); an operator's retry of a dead or failed job appends
-- minus one, as the job is open again. The completion pass sums a group's
-- rows and compares with `total`, and deletes them once the group completed.
CREATE TABLE group_progress (
    group_id UUID NOT NULL,
    done     BIGINT NOT NULL
);
CREATE INDEX group_progress_group ON group_progress (group_id);

-- The view gains the job's group (a view's new columns go last).
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';

-- A tenant's webhook endpoint. The secret is kept as its raw bytes (the
-- HMAC needs them; unlike an API key it cannot be stored as a hash); after
-- a rotation the previous one is still used to sign, beside the new one,
-- until `previous_expires_at`. `failing_since` is the first failed
-- delivery since the last success; an endpoint failing for longer than the
-- operator's limit is disabled (`disabled_at`, `disabled_reason`) and gets
-- no new deliveries until it is enabled again.
CREATE TABLE webhook_endpoints (
    id                  UUID PRIMARY KEY,
    tenant_id           UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    url                 TEXT NOT NULL,
    events              TEXT[] NOT NULL,
    description         TEXT,
    secret              BYTEA NOT NULL,
    previous_secret     BYTEA,
    previous_expires_at TIMESTAMPTZ,
    created_at          TIMESTAMPTZ NOT NULL,
    updated_at          TIMESTAMPTZ NOT NULL,
    failing_since       TIMESTAMPTZ,
    disabled_at         TIMESTAMPTZ,
    disabled_reason     TEXT
);
-- The terminal statements join a job's tenant to its enabled endpoints.
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id) WHERE disabled_at IS NULL;
CREATE INDEX webhook_endpoints_tenant_list ON webhook_endpoints (tenant_id, id);

-- The outbox: one row per (event, endpoint), written by the statement that
-- writes the event's cause (a job's terminal state, a group's completion),
-- so a crash between the two is impossible. `event_id` is the
-- `webhook-id` (the same for every attempt); `payload` is the body sent,
-- fixed when the event happened, so every attempt signs the same bytes.
-- `state`: `pending` (due at `next_attempt_at`; a delivery loop leases a
-- row by moving `next_attempt_at` past its timeout), `delivered`, or
-- `failed` (the retry schedule used up).
CREATE TABLE webhook_deliveries (
    id              UUID PRIMARY KEY DEFAULT gen_random_uuid(),
    event_id        UUID NOT NULL,
    endpoint_id     UUID NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
    tenant_id       UUID NOT NULL,
    event_type      TEXT NOT NULL,
    payload         JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        INT NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ NOT NULL,
    delivered_at    TIMESTAMPTZ,
    last_status     INT,
    last_error      TEXT
);
-- The delivery loop's claim: an endpoint's due deliveries, oldest first.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (endpoint_id, next_attempt_at) WHERE state = 'pending';
-- The outbox's depth and oldest event (gauges), and pruning.
CREATE INDEX webhook_deliveries_pending_age ON webhook_deliveries (created_at) WHERE state = 'pending';
-- An endpoint's deliveries, newest first (`GET /v1/webhooks/{id}/deliveries`).
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at DESC, id DESC);

-- Every attempt of a delivery: when, the HTTP status (none: no answer),
-- how long it took, and the error, for the tenant and the operator.
CREATE TABLE webhook_attempts (
    delivery_id UUID NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    attempted_at TIMESTAMPTZ NOT NULL,
    status      INT,
    latency_ms  INT NOT NULL,
    error       TEXT
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, attempted_at);

-- A timestamp as the API writes it (RFC 3339 in UTC, microseconds), for
-- the payloads PostgreSQL builds; `to_jsonb(timestamptz)` would follow the
-- session's TimeZone setting instead.
CREATE FUNCTION offpeak_utc_text(ts TIMESTAMPTZ) RETURNS TEXT
    LANGUAGE sql STABLE PARALLEL SAFE
    RETURN to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
