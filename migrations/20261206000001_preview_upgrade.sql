-- Issue #19, second half: preview first, full quality on demand. A job
-- submitted with `"preview": {...}` runs on a cheap model and records the
-- model it stands in for (its upgrade target); `POST /v1/jobs/{id}/upgrade`
-- makes a new job from a succeeded one (its child), once per request body.
--
-- Every column below is NULL (or false) on every other job, so the jobs of
-- the 02:00 burst carry nothing more than a wider null bitmap, and the one
-- new index is partial: only children have an entry in it.

-- One statement, so PostgreSQL checks the new constraints against the
-- existing rows in one pass (every new column is NULL or false there).
ALTER TABLE jobs
    -- The job this one was upgraded from (`POST /v1/jobs/{parent_id}/upgrade`).
    -- No foreign key: a parent may be pruned before its child, and the
    -- child keeps saying where it came from.
    ADD COLUMN parent_id UUID,
    -- SHA-256 of the upgrade request's canonical body
    -- (`core::hash::canonical_hash`; no body hashes as `{}`): with
    -- `parent_id`, what makes a second click of the same upgrade the same
    -- child.
    ADD COLUMN upgrade_hash BYTEA,
    -- A preview's upgrade target: the model (routed, for `"model": "auto"`)
    -- and use case the submission named, while the job itself runs on the
    -- preview's model. An upgrade with an empty body upgrades to it.
    ADD COLUMN upgrade_model TEXT,
    ADD COLUMN upgrade_use_case TEXT,
    -- The target's list price when the preview was submitted: what
    -- rendering the request at full quality would have cost, for
    -- `saved_preview` (copied to the usage ledger when the preview finishes).
    ADD COLUMN preview_target_list BIGINT CHECK (preview_target_list >= 0),
    -- A child whose parent was a preview (had an upgrade target): its list
    -- price is what the pattern paid on top of the preview, so
    -- `saved_preview` subtracts it. Set at the child's insert, so it holds
    -- even once the parent is pruned.
    ADD COLUMN upgrade_of_preview BOOLEAN NOT NULL DEFAULT false,
    ADD CONSTRAINT jobs_upgrade_has_parent CHECK ((parent_id IS NULL) = (upgrade_hash IS NULL)),
    ADD CONSTRAINT jobs_preview_has_target CHECK ((upgrade_model IS NULL) = (preview_target_list IS NULL));

-- The double click: one child per (parent, request body), enforced here and
-- not only by the API's read before its insert, so two concurrent upgrades
-- with the same body make one job (the second insert waits for the first
-- to commit, fails on this index, and answers the first's child with 200).
-- It also finds a page's children (`store::jobs::children`, by
-- `parent_id = ANY(...)`). Partial: only children have entries, so the
-- writes of every other job (the 02:00 burst's) never touch it.
CREATE UNIQUE INDEX jobs_upgrade ON jobs (parent_id, upgrade_hash) WHERE parent_id IS NOT NULL;

-- The view gains the new columns (a view's new columns go last). CREATE OR
-- REPLACE VIEW cannot drop a column: every column the view has when this
-- runs, those of any earlier migration included, must be listed here, in
-- order, before these.
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id, j.semantic, j.cache_similarity,
       j.parent_id, j.upgrade_hash, j.upgrade_model, j.upgrade_use_case, j.preview_target_list,
       j.upgrade_of_preview
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';

-- The ledger keeps what `GET /v1/usage` needs for `previews`, `upgrades`
-- and `saved_preview`, copied from the job by the statement that finishes
-- it (as the rest of the row), so usage still reads the ledger alone and
-- outlives pruning:
-- the preview's target list price (NULL unless the job was a preview) ...
ALTER TABLE usage_ledger ADD COLUMN preview_target_list BIGINT;
-- ... the job it was upgraded from (NULL unless an upgrade) ...
ALTER TABLE usage_ledger ADD COLUMN parent_id UUID;
-- ... and whether that job was a preview.
ALTER TABLE usage_ledger ADD COLUMN upgrade_of_preview BOOLEAN NOT NULL DEFAULT false;
