-- Issue #17: the release no longer writes a version of every job it
-- releases (BENCHMARKS.md step 34: the release alone cost 31–64% as much
-- this way, and the 02:00 burst published 15–22% sooner with a prototype
-- of it). Where a live job stands is no longer its row's `state`: it is
-- which of two narrow tables holds it.
--
-- * `held_jobs`: the jobs waiting for release, with what the release's
--   claim, its cache step and the roll-over read. The claim reads this
--   table, not `jobs`; the release deletes the rows it hands out.
-- * `batch_members`: the jobs released, each with its batch. The release
--   inserts them; every lookup of a batch's jobs (a worker's start and
--   finish, the rescuer, a provider batch's poller, a cancel) goes through
--   them.
--
-- A job's row is written when it is submitted and when it ends in its own
-- row (a cancel, a cache hit at release, a follower's attachment); a
-- worker's end is its outcome row (migration 20261210000000). So a job a
-- worker runs is written once.
--
-- The stored `jobs.state` of a live job is therefore:
-- * `held`: submitted to wait (or put back), whether it still waits
--   (`held_jobs`) or a round released it (`batch_members`);
-- * `queued`: released at its submission (the scheduler's `direct`: its
--   batch is in `batch_id` and in `batch_members`; so are the jobs released
--   before this migration), or a follower waiting for its leader
--   (`cache_source`, no batch).
-- `job_view` derives the state the API shows: a member of a batch is
-- `queued`, or `running` once its batch has started, until its outcome.
--
-- Every write that moves a job in or out of waiting keeps both tables in
-- step in the same statement: the insert, the release, a cancel, the
-- cache's answers and followers, the put-back of an unpublished round, a
-- provider batch's requeue, an operator's retry. ARCHITECTURE.md's state
-- machine lists them.
CREATE TABLE held_jobs (
    id               UUID PRIMARY KEY,
    tenant_id        UUID NOT NULL,
    model            TEXT NOT NULL,
    -- The job's own, kept equal by the roll-over, which writes both.
    release_at       TIMESTAMPTZ NOT NULL,
    window_closes_at TIMESTAMPTZ,
    -- For the roll-over's groups and the dashboard's chart of due work.
    timezone         TEXT NOT NULL,
    -- For the release round's cache step.
    cache_key        BYTEA,
    semantic         BOOLEAN NOT NULL
);
-- The fair claim: each tenant's oldest due jobs (was `jobs_held_due_order`).
CREATE INDEX held_jobs_due_order ON held_jobs (tenant_id, release_at, id);
-- The roll-over: held jobs whose window closed (was `jobs_held_window`).
CREATE INDEX held_jobs_window ON held_jobs (window_closes_at) WHERE window_closes_at IS NOT NULL;

CREATE TABLE batch_members (
    job_id    UUID PRIMARY KEY,
    batch_id  UUID NOT NULL,
    -- The job's cache key: a member not ended is the leader of its key
    -- (`cache::lock_leaders`). NULL without a key.
    cache_key BYTEA
);
-- A batch's jobs: its close, the rescuer, the poller (was `jobs_open_batch`).
-- Batch ids are UUIDv7, so a round's entries go to the index's right edge.
CREATE INDEX batch_members_batch ON batch_members (batch_id);
-- Leaders by key (was `jobs_cache_leaders`). Like it, it keeps the entries of
-- ended jobs until they are pruned; a lookup leaves out those with an outcome.
CREATE INDEX batch_members_cache_key ON batch_members (cache_key) WHERE cache_key IS NOT NULL;

-- The data. Every scheduler and worker of the previous version must be
-- stopped first (deploy/README.md, "Upgrading across a migration").
INSERT INTO held_jobs (id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic)
SELECT id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic FROM jobs WHERE state = 'held';

-- Jobs released before: members. Their rows keep `queued` and their
-- batch, as a job released at its submission is stored.
INSERT INTO batch_members (job_id, batch_id, cache_key)
SELECT id, batch_id, cache_key FROM jobs WHERE state = 'queued' AND batch_id IS NOT NULL;

DROP INDEX jobs_held_due_order;
DROP INDEX jobs_held_window;
DROP INDEX jobs_open_batch;
DROP INDEX jobs_cache_leaders;

-- A job's state, as the API shows it: its outcome's, once it has one; for
-- a member of a batch, `queued`, or `running` once the batch has started;
-- otherwise its row's. A cancelled member keeps its batch (and the instant
-- it was queued) as before.
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN o.job_id IS NOT NULL THEN o.state
            WHEN b.id IS NOT NULL AND j.state IN ('held', 'queued')
                THEN CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE 'queued' END
            ELSE j.state END AS state,
       j.release_at, j.window_closes_at, COALESCE(m.batch_id, j.batch_id) AS batch_id,
       CASE WHEN o.job_id IS NOT NULL THEN o.attempts
            WHEN b.id IS NOT NULL AND j.state IN ('held', 'queued') THEN j.attempts + b.attempts
            ELSE j.attempts END AS attempts,
       j.max_attempts,
       CASE WHEN o.job_id IS NOT NULL THEN o.result ELSE j.result END AS result,
       CASE WHEN o.job_id IS NOT NULL THEN o.error ELSE j.error END AS error,
       CASE WHEN o.job_id IS NOT NULL THEN o.credits ELSE j.credits END AS credits,
       CASE WHEN o.job_id IS NOT NULL THEN o.cache_hit ELSE j.cache_hit END AS cache_hit,
       j.created_at, COALESCE(j.queued_at, b.published_at) AS queued_at,
       CASE WHEN o.job_id IS NOT NULL THEN o.started_at
            WHEN b.id IS NOT NULL AND j.state IN ('held', 'queued') THEN COALESCE(b.started_at, j.started_at)
            ELSE j.started_at END AS started_at,
       CASE WHEN o.job_id IS NOT NULL THEN o.finished_at ELSE j.finished_at END AS finished_at,
       j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id, j.semantic, j.cache_similarity,
       j.parent_id, j.upgrade_hash, j.upgrade_model, j.upgrade_use_case, j.preview_target_list,
       j.upgrade_of_preview
FROM jobs j
LEFT JOIN job_outcomes o ON o.job_id = j.id AND o.state IS NOT NULL AND j.state IN ('held', 'queued')
LEFT JOIN batch_members m ON m.job_id = j.id
LEFT JOIN batches b ON b.id = m.batch_id;
