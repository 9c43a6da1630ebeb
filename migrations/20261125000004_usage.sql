-- Cost controls: the model routing use case a job was submitted with, and
-- the usage ledger.

-- The `use_case` of a job submitted with `"model": "auto"`; `model` holds
-- the model it was routed to.
ALTER TABLE jobs ADD COLUMN use_case TEXT;
-- The same for a schedule's job template: `model` holds the model the
-- use case was routed to when the template was stored.
ALTER TABLE schedules ADD COLUMN use_case TEXT;

-- One row per finished job that cost or saved something (every succeeded
-- job), written by the same statement that gives the job its terminal state
-- (`db::jobs::finish`), so the ledger always agrees with the jobs table.
-- There is no foreign key to `jobs`: pruning old jobs keeps their usage.
CREATE TABLE usage_ledger (
    job_id       UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    user_id      TEXT,
    model        TEXT NOT NULL,
    use_case     TEXT,
    priority     TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    -- What the job was charged, and its list price (undiscounted): the
    -- difference is what the off-peak multiplier (or, for a cache hit, the
    -- cache) saved.
    credits      BIGINT NOT NULL CHECK (credits >= 0),
    list_credits BIGINT NOT NULL CHECK (list_credits >= 0),
    cache_hit    BOOLEAN NOT NULL DEFAULT false,
    finished_at  TIMESTAMPTZ NOT NULL
);

-- Usage queries: one tenant's rows in a time range.
CREATE INDEX usage_ledger_tenant_time ON usage_ledger (tenant_id, finished_at);
