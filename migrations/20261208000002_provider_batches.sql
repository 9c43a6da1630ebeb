-- Issue #20, the `openai-batch` adapter: a batch of ours handed to a
-- provider's own batch API (OpenAI's Batch API) is worked there for up to
-- 24 hours. The worker records the provider's batch on our batch row and
-- acknowledges the message; a poller, which any worker replica runs, asks
-- the provider about it until it ends (`worker/src/poller.rs`).
--
-- provider_batch_id: the provider's id (`batch_...`), set once, by the
--   worker that created it or found it by its metadata tag (our batch id).
--   A batch with one is the poller's: the rescuer leaves it alone.
-- provider_status:   the provider's last status (`validating`, ...), for
--   operators.
-- poll_at:           when the next poll is due; a poller claiming the row
--   moves it past a lease, so one poller at a time works a provider batch.
--   NULL once the provider batch has ended and its jobs are written.
-- polls:             polls so far; the pause between polls doubles with it.
ALTER TABLE batches ADD COLUMN provider_batch_id TEXT;
ALTER TABLE batches ADD COLUMN provider_status TEXT;
ALTER TABLE batches ADD COLUMN poll_at TIMESTAMPTZ;
ALTER TABLE batches ADD COLUMN polls INT NOT NULL DEFAULT 0;

-- The poller's claim: provider batches due, soonest first. Holds only the
-- batches still at a provider.
CREATE INDEX batches_poll_due ON batches (poll_at) WHERE poll_at IS NOT NULL;

-- A job's attempts now count across the batches it was in: a job whose
-- provider batch expired or failed goes back to `held` with the attempts
-- it used (`jobs.attempts`), and its next batch adds its own. For every
-- other job `jobs.attempts` is 0 until its terminal write, so the sum is
-- what it was.
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN j.attempts + b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id, j.semantic, j.cache_similarity,
       j.parent_id, j.upgrade_hash, j.upgrade_model, j.upgrade_use_case, j.preview_target_list,
       j.upgrade_of_preview
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';
