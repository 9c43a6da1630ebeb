-- Issue #17: a job row written at most twice on every path. The end of a
-- job a worker finishes (its state, result or error, charge, attempts) is
-- no longer a third version of its row: it is one row of `job_outcomes`,
-- which is the usage ledger's row too (BENCHMARKS.md steps 31 and 33). A
-- job is written when it is submitted and when it is released (or
-- answered, or cancelled); its end is an INSERT here.
--
-- The usage ledger's table becomes `job_outcomes` (renamed, so its rows,
-- which outlive pruned jobs, stay where they are), with the terminal
-- columns added. Two kinds of row live in it:
--
-- * the outcome of a job a worker ended (`state` set): the job's own row
--   keeps `queued` and its batch; `job_view` reads its end from here.
--   Every such row is written by `batches::finish` (the batch's jobs and
--   their coalesced followers);
-- * a usage row only (`state` NULL): a job whose end is in its own row (a
--   cache hit, answered at submission or at release, whose row is
--   written then anyway), or an outcome whose job was pruned.
--
-- `counted` says whether the row is usage: the ledger's rows were those of
-- succeeded jobs and of jobs that were charged or had a list price; a
-- failed or dead job with neither has an outcome but no usage. The view
-- `usage_ledger` keeps the ledger's name and columns for every reader.
ALTER TABLE usage_ledger RENAME TO job_outcomes;
ALTER INDEX usage_ledger_pkey RENAME TO job_outcomes_pkey;
ALTER INDEX usage_ledger_tenant_time RENAME TO job_outcomes_tenant_time;
ALTER TABLE job_outcomes
    ADD COLUMN counted BOOLEAN NOT NULL DEFAULT true,
    ADD COLUMN state TEXT CHECK (state IN ('succeeded', 'failed', 'dead')),
    ADD COLUMN result JSONB,
    ADD COLUMN error JSONB,
    ADD COLUMN started_at TIMESTAMPTZ,
    ADD COLUMN attempts INT,
    -- Copied from the job for the cache (a source is found by key and age)
    -- and the quota (a day's charges): both read this table, not `jobs`.
    ADD COLUMN cache_key BYTEA,
    ADD COLUMN quota_day DATE,
    -- What the job's row still counts against its quota day: its
    -- reservation, as the row was never written again. The quota adds
    -- `credits - reserved_credits` of each outcome (`store::quota`).
    ADD COLUMN reserved_credits BIGINT NOT NULL DEFAULT 0;

CREATE VIEW usage_ledger AS
SELECT job_id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at,
       semantic, preview_target_list, parent_id, upgrade_of_preview, provider
FROM job_outcomes WHERE counted;

-- Pruning and the dashboard's last hour: outcomes by finish time (the
-- jobs whose end is in their own row keep `jobs_finished`). Partial: a
-- pruned job's row keeps its usage with `state` cleared.
CREATE INDEX job_outcomes_finished ON job_outcomes (finished_at) WHERE state IS NOT NULL;

-- The exact cache's sources: provider results by key and age, as
-- `jobs_cache_source` was. `jobs_cache_source` stays, for results stored
-- before this migration (a lookup probes both) until they are older than
-- any cache TTL.
CREATE INDEX job_outcomes_cache_source ON job_outcomes (cache_key, finished_at)
    WHERE state = 'succeeded' AND NOT cache_hit AND cache_key IS NOT NULL;

-- Quota checks: one tenant's outcomes of one day, index-only.
CREATE INDEX job_outcomes_quota ON job_outcomes (tenant_id, quota_day)
    INCLUDE (user_id, credits, reserved_credits)
    WHERE state IS NOT NULL AND quota_day IS NOT NULL;

-- One leader per cache key in flight was a unique index over queued jobs,
-- which relied on a leader's row leaving `queued` at its end. It no longer
-- does, so the index is not unique: a leader in flight is a queued job of
-- this index without an outcome (`cache::lock_leaders`). Two leaders of one
-- key cannot be planned at once: a key hashes the tenant and the model,
-- and a round's plan holds the model's release lock exclusive while a
-- submission's holds it shared and its tenant's and model's exclusive
-- (`release::lock_release_for`).
DROP INDEX jobs_cache_inflight;
CREATE INDEX jobs_cache_leaders ON jobs (cache_key)
    WHERE cache_key IS NOT NULL AND cache_source IS NULL AND state IN ('queued', 'running');

-- `jobs_open_batch` (batch_id, over queued jobs) keeps its entries of jobs
-- a worker ended, until they are pruned: their rows stay `queued`. It is
-- no longer bounded by the queue's depth; every lookup by batch (a start,
-- the close of a batch, the rescuer, a provider batch's jobs) leaves out
-- the jobs with an outcome, a probe of its primary key. The entry was
-- written by the release anyway; removing it at the end would be the new
-- row version this migration saves.
--
-- A job's state, with its end from its outcome: a queued job with an
-- outcome has ended there; one of a started batch is running.
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN o.job_id IS NOT NULL THEN o.state WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN o.job_id IS NOT NULL THEN o.attempts WHEN b.id IS NOT NULL THEN j.attempts + b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts,
       CASE WHEN o.job_id IS NOT NULL THEN o.result ELSE j.result END AS result,
       CASE WHEN o.job_id IS NOT NULL THEN o.error ELSE j.error END AS error,
       CASE WHEN o.job_id IS NOT NULL THEN o.credits ELSE j.credits END AS credits,
       CASE WHEN o.job_id IS NOT NULL THEN o.cache_hit ELSE j.cache_hit END AS cache_hit,
       j.created_at, j.queued_at,
       CASE WHEN o.job_id IS NOT NULL THEN o.started_at ELSE COALESCE(b.started_at, j.started_at) END AS started_at,
       CASE WHEN o.job_id IS NOT NULL THEN o.finished_at ELSE j.finished_at END AS finished_at,
       j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id, j.semantic, j.cache_similarity,
       j.parent_id, j.upgrade_hash, j.upgrade_model, j.upgrade_use_case, j.preview_target_list,
       j.upgrade_of_preview
FROM jobs j
LEFT JOIN job_outcomes o ON o.job_id = j.id AND o.state IS NOT NULL AND j.state = 'queued'
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';
