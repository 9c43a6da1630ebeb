-- BENCHMARKS.md step 31: the database of step 27's finish-alone experiment
-- (1,000,000 jobs as in the middle of the 02:00 burst: 500,000 succeeded
-- with their ledger rows, 500,000 queued in 5,000 started batches of 100
-- neighbouring ids, 1,000 tenants), with cache keys and quota days when
-- `keys` is 1 (as the API stores a default job; run `burst-keys`), and the
-- tables a results-table schema would write at the finish, already holding
-- the 500,000 finished jobs, so that their indexes are the size they would be.
\set ON_ERROR_STOP on
INSERT INTO tenants (id, name) SELECT ('00000000-0000-4000-8000-' || lpad(to_hex(g), 12, '0'))::uuid, 't' || g FROM generate_series(0, 999) g;
CREATE FUNCTION pg_temp.jid(g bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$ SELECT ('0190a000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid $$;
CREATE FUNCTION pg_temp.bid(g bigint) RETURNS uuid LANGUAGE sql IMMUTABLE AS $$ SELECT ('0190b000-0000-7000-8000-' || lpad(to_hex(g), 12, '0'))::uuid $$;
INSERT INTO batches (id, model, job_count, published_at, touched_at, started_at, attempts, finished)
SELECT pg_temp.bid(b), 'flux-schnell', 100, now(), now(), now(), 1, b < 5000 FROM generate_series(0, 9999) b;
INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, batch_id, attempts,
                  created_at, queued_at, started_at, finished_at, result, credits, cache_key, quota_day, reserved_credits)
SELECT pg_temp.jid(g), ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid, 'flux-schnell',
       jsonb_build_object('prompt', 'burst ' || g), 'low', 'UTC',
       CASE WHEN g < 500000 THEN 'succeeded' ELSE 'queued' END, now() - interval '1 hour', now() + interval '3 hours',
       pg_temp.bid(g / 100), CASE WHEN g < 500000 THEN 1 ELSE 0 END,
       now() - interval '2 hours', now(), CASE WHEN g < 500000 THEN now() END, CASE WHEN g < 500000 THEN now() END,
       CASE WHEN g < 500000 THEN '{"url": "https://sim.example/out.png", "seed": 12345}'::jsonb END,
       CASE WHEN g < 500000 THEN 1 END,
       CASE WHEN :keys = 1 THEN sha256(('burst ' || g)::bytea) END,
       CASE WHEN :keys = 1 THEN current_date END,
       CASE WHEN :keys = 1 THEN 1 ELSE 0 END
FROM generate_series(0, 999999) g;
INSERT INTO usage_ledger (job_id, tenant_id, model, priority, credits, list_credits, cache_hit, finished_at, provider)
SELECT id, tenant_id, model, priority, 1, 1, false, finished_at, 'sim' FROM jobs WHERE state = 'succeeded';

-- The terminal columns of `jobs` in a table of their own, with the indexes
-- that would have to move with them: `jobs_finished` (pruning, the
-- dashboard), `jobs_cache_source` (the cache), `jobs_quota`'s finished part.
CREATE TABLE job_results (
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
INSERT INTO job_results
SELECT id, tenant_id, user_id, state, result, error, credits, cache_hit, cache_key, quota_day, started_at, finished_at, attempts
FROM jobs WHERE state = 'succeeded';
CREATE INDEX job_results_finished ON job_results (finished_at);
CREATE INDEX job_results_cache_source ON job_results (cache_key, finished_at)
    WHERE state = 'succeeded' AND NOT cache_hit AND cache_key IS NOT NULL;
CREATE INDEX job_results_quota ON job_results (tenant_id, quota_day) INCLUDE (user_id, credits) WHERE quota_day IS NOT NULL;

-- The same and the ledger's columns in one table: one row a finished job
-- for its outcome and its usage (the ledger's index beside the others).
CREATE TABLE job_outcomes (LIKE job_results INCLUDING ALL);
ALTER TABLE job_outcomes ADD COLUMN model TEXT NOT NULL, ADD COLUMN use_case TEXT, ADD COLUMN priority TEXT NOT NULL,
    ADD COLUMN list_credits BIGINT NOT NULL, ADD COLUMN provider TEXT;
INSERT INTO job_outcomes
SELECT r.*, j.model, j.use_case, j.priority, 1, 'sim' FROM job_results r JOIN jobs j ON j.id = r.job_id;
CREATE INDEX job_outcomes_tenant_time ON job_outcomes (tenant_id, finished_at);

-- Leaders in flight, out of `jobs` (its `jobs_cache_inflight` relies on the
-- job's state leaving `queued`, which a results table no longer writes):
-- one row a queued job with a key, deleted by its finish.
CREATE TABLE cache_inflight (cache_key BYTEA PRIMARY KEY, job_id UUID NOT NULL);
INSERT INTO cache_inflight SELECT cache_key, id FROM jobs WHERE state = 'queued' AND cache_key IS NOT NULL;
VACUUM ANALYZE;
