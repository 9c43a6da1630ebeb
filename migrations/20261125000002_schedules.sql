-- Recurring schedules: a cron expression in a timezone plus a job template,
-- and the firings each one made.

CREATE TABLE schedules (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name             TEXT NOT NULL,
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL,
    catch_up         TEXT NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
    paused           BOOLEAN NOT NULL DEFAULT false,
    -- The job template.
    model            TEXT NOT NULL,
    input            JSONB NOT NULL,
    priority         TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    user_id          TEXT,
    metadata         JSONB,
    -- SHA-256 of the canonical definition (everything but `paused`): a
    -- repeated create with the same definition is idempotent, another is a 409.
    definition_hash  BYTEA NOT NULL,
    -- The next firing not yet handled; NULL while paused or when the
    -- expression matches nothing more.
    next_fire_at     TIMESTAMPTZ,
    last_fired_at    TIMESTAMPTZ,
    missed_firings   BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    CONSTRAINT schedules_paused_has_no_next CHECK (NOT paused OR next_fire_at IS NULL)
);

CREATE UNIQUE INDEX schedules_tenant_name ON schedules (tenant_id, name);
-- The firing loop: due schedules.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;
-- Listing a tenant's schedules, newest first, cursor-paginated.
CREATE INDEX schedules_tenant_list ON schedules (tenant_id, id);

-- One row per firing: the unique key makes each firing happen once, whatever
-- replicas run. The job is inserted in the same transaction, after its
-- firing row (hence the deferred foreign key).
CREATE TABLE schedule_firings (
    schedule_id  UUID NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_at      TIMESTAMPTZ NOT NULL,
    -- NULL only if the job itself is ever deleted; the firing stays recorded.
    job_id       UUID REFERENCES jobs (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);
-- Deleting jobs (pruning) checks this foreign key.
CREATE INDEX schedule_firings_job ON schedule_firings (job_id);
