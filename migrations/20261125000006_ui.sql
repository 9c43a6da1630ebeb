-- The operator dashboard (`/ui`): throughput and provider error rate over the
-- last hour read the jobs that finished since then. Without this index each
-- refresh would scan the whole jobs table; with it, only the last hour's
-- finished jobs are read. `prune` (finished_at < cutoff) uses it too.
-- Partial: jobs that have not finished are never looked up by finished_at.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
