-- BENCHMARKS.md step 31: after step 27's `finish-alone/setup.sql` (run with
-- `-v keys=0` or `1`), the tables a results-table schema would write at the
-- finish, already holding the 500,000 finished jobs, so that their indexes
-- are the size they would be.
\set ON_ERROR_STOP on
-- The terminal columns of `jobs` in a table of their own, with the indexes
-- that would have to move with them: `jobs_finished` (pruning, the
-- dashboard), `jobs_cache_source` (the cache), `jobs_quota`'s finished part.
CREATE TABLE job_results_moved (
    job_id      UUID PRIMARY KEY,
    tenant_id   UUID NOT NULL,
    user_id     TEXT,
    state       TEXT NOT NULL,
    result      JSONB,
    error       JSONB,
    credits     BIGINT,
    cache_hit   BOOLEAN NOT NULL,
    cache_key   BYTEA,
    quota_day   DATE,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ NOT NULL,
    attempts    INT NOT NULL
);
INSERT INTO job_results_moved
SELECT id, tenant_id, user_id, state, result, error, credits, cache_hit, cache_key, quota_day, started_at, finished_at, attempts
FROM jobs WHERE state = 'succeeded';
CREATE INDEX job_results_moved_finished ON job_results_moved (finished_at);
CREATE INDEX job_results_moved_cache_source ON job_results_moved (cache_key, finished_at)
    WHERE state = 'succeeded' AND NOT cache_hit AND cache_key IS NOT NULL;
CREATE INDEX job_results_moved_quota ON job_results_moved (tenant_id, quota_day) INCLUDE (user_id, credits) WHERE quota_day IS NOT NULL;

-- The same and the ledger's columns in one table: one row a finished job
-- for its outcome and its usage (the ledger's index beside the others).
CREATE TABLE job_outcomes (LIKE job_results_moved INCLUDING ALL);
ALTER TABLE job_outcomes ADD COLUMN model TEXT NOT NULL, ADD COLUMN use_case TEXT, ADD COLUMN priority TEXT NOT NULL,
    ADD COLUMN list_credits BIGINT NOT NULL, ADD COLUMN provider TEXT;
INSERT INTO job_outcomes
SELECT r.*, j.model, j.use_case, j.priority, 1, 'sim' FROM job_results_moved r JOIN jobs j ON j.id = r.job_id;
CREATE INDEX job_outcomes_tenant_time ON job_outcomes (tenant_id, finished_at);

-- Leaders in flight, out of `jobs` (its `jobs_cache_inflight` relies on the
-- job's state leaving `queued`, which a results table no longer writes):
-- one row a queued job with a key, deleted by its finish.
CREATE TABLE cache_inflight (cache_key BYTEA PRIMARY KEY, job_id UUID NOT NULL);
INSERT INTO cache_inflight SELECT cache_key, id FROM jobs WHERE state = 'queued' AND cache_key IS NOT NULL;
VACUUM ANALYZE;
