-- offpeak's initial schema: tenants and their API keys, jobs, and the
-- batches the release loop publishes to RabbitMQ.

CREATE TABLE tenants (
    id            UUID PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    timezone      TEXT NOT NULL DEFAULT 'UTC',
    daily_credits BIGINT CHECK (daily_credits IS NULL OR daily_credits >= 0),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Only the SHA-256 of a key is stored. Keys are 256-bit random strings, so a
-- fast hash is enough: there is nothing to brute-force.
CREATE TABLE api_keys (
    key_hash   BYTEA PRIMARY KEY,
    tenant_id  UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    prefix     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at TIMESTAMPTZ
);

CREATE TABLE batches (
    id           UUID PRIMARY KEY,
    model        TEXT NOT NULL,
    job_count    INT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE jobs (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    model            TEXT NOT NULL,
    input            JSONB NOT NULL,
    priority         TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    timezone         TEXT NOT NULL,
    user_id          TEXT,
    metadata         JSONB,
    idempotency_key  TEXT,
    request_hash     BYTEA,
    state            TEXT NOT NULL CHECK (state IN ('held', 'queued', 'running', 'succeeded', 'failed', 'dead', 'cancelled')),
    -- First instant the job may be released; for low priority, the opening of
    -- its window. window_closes_at is NULL for normal priority: such a job
    -- never rolls over.
    release_at       TIMESTAMPTZ NOT NULL,
    window_closes_at TIMESTAMPTZ,
    batch_id         UUID REFERENCES batches (id),
    attempts         INT NOT NULL DEFAULT 0,
    max_attempts     INT NOT NULL DEFAULT 5,
    result           JSONB,
    error            JSONB,
    credits          BIGINT,
    cache_hit        BOOLEAN NOT NULL DEFAULT false,
    created_at       TIMESTAMPTZ NOT NULL,
    queued_at        TIMESTAMPTZ,
    started_at       TIMESTAMPTZ,
    finished_at      TIMESTAMPTZ,
    CONSTRAINT jobs_terminal_has_finished_at CHECK (
        (state IN ('succeeded', 'failed', 'dead', 'cancelled')) = (finished_at IS NOT NULL)
    )
);

-- One job per (tenant, Idempotency-Key).
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
-- The release loop: per tenant, held jobs in release order.
CREATE INDEX jobs_held_due ON jobs (tenant_id, release_at) WHERE state = 'held';
-- Rollover: held jobs whose window has closed.
CREATE INDEX jobs_held_window ON jobs (window_closes_at) WHERE state = 'held';
-- The worker: the jobs of one batch.
CREATE INDEX jobs_batch ON jobs (batch_id) WHERE batch_id IS NOT NULL;
-- Listing a tenant's jobs, newest first (ids are UUIDv7, time-ordered), cursor-paginated.
CREATE INDEX jobs_tenant_list ON jobs (tenant_id, id);
