-- A batch's start is recorded once, on its `batches` row, instead of on
-- every one of its jobs (issue #5, BENCHMARKS.md step 9).
--
-- A worker starting a batch used to write a new version of each of its jobs
-- (`queued` → `running`, `started_at`, `attempts + 1`): a row version and
-- three index entries per job, for a fact that is the same for all the jobs
-- of the batch. It now writes the batch row: `started_at` (first start) and
-- `attempts` (provider attempts begun, the same for every job of the
-- batch, since they are sent together). A job is `running` when it is
-- `queued` in a batch whose `started_at` is set; `job_view` below is the
-- one place that says so, and every read that shows a state goes through
-- it. The job's own `started_at` and `attempts` are written with its
-- terminal state, from the batch.
ALTER TABLE batches ADD COLUMN started_at TIMESTAMPTZ;
ALTER TABLE batches ADD COLUMN attempts INT NOT NULL DEFAULT 0;

-- Jobs running while this migration runs (a live upgrade): their batch has
-- started, with their attempts so far; the jobs themselves go back to the
-- stored state that now means running.
UPDATE batches b SET started_at = r.started_at, attempts = r.attempts
FROM (SELECT batch_id, min(started_at) AS started_at, max(attempts) AS attempts
      FROM jobs WHERE state = 'running' AND batch_id IS NOT NULL GROUP BY batch_id) r
WHERE b.id = r.batch_id;
UPDATE jobs SET state = 'queued' WHERE state = 'running';

-- `running` is never stored again.
ALTER TABLE jobs DROP CONSTRAINT jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_state_check
    CHECK (state IN ('held', 'queued', 'succeeded', 'failed', 'dead', 'cancelled'));

-- Jobs as their owners see them. The join finds a batch only for a queued
-- job (one primary-key probe), so reads of held and finished jobs cost what
-- they did.
CREATE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';

-- The usage ledger's foreign key to tenants checked (and share-locked) the
-- tenant's row once per ledger row: 14 µs of the 28 µs a ledger row cost on
-- this machine (BENCHMARKS.md step 9), paid for every finished job. Every
-- ledger row is written from a job row of the same tenant, and jobs keep
-- their own foreign key; nothing deletes a tenant that has jobs.
ALTER TABLE usage_ledger DROP CONSTRAINT usage_ledger_tenant_id_fkey;
