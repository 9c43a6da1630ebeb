-- Batch progress, for the rescuer: a batch whose jobs are still queued or
-- running but that nobody has touched (published, started, attempted) for a
-- visibility timeout is published again under the same batch id.
ALTER TABLE batches ADD COLUMN touched_at TIMESTAMPTZ;
UPDATE batches SET touched_at = published_at;
ALTER TABLE batches ALTER COLUMN touched_at SET NOT NULL;
ALTER TABLE batches ADD COLUMN republished INT NOT NULL DEFAULT 0;
CREATE INDEX batches_touched ON batches (touched_at);
-- Open work is bounded by the queue depth limit, so this index stays small.
CREATE INDEX jobs_open_batch ON jobs (batch_id) WHERE state IN ('queued', 'running');
