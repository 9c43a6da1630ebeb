-- Indexes for the release query and for pruning (issue #5, performance).

-- The release loop's claim takes each tenant's due held jobs ORDER BY
-- release_at, id. The old index had no id, so for a tenant whose whole
-- backlog shares one release_at (a bulk submission, a window opening)
-- PostgreSQL read and sorted all of that tenant's held jobs every round to
-- return the first `per_tenant`. With id in the key the index returns them
-- in order and the scan stops after `per_tenant` rows. Still partial: only
-- held jobs are in it, so it stays the size of the backlog, not the table.
CREATE INDEX jobs_held_due_order ON jobs (tenant_id, release_at, id) WHERE state = 'held';
DROP INDEX jobs_held_due;

-- Pruning (`offpeak-scheduler prune` and the pruner of `serve`): finished
-- jobs by finish time, so each chunk reads only the jobs it deletes instead
-- of scanning the table. `finished_at` is set exactly on terminal jobs
-- (CHECK jobs_terminal_has_finished_at).
-- The dashboard's migration (000006) created this same index first.
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;
-- Pruning batches: those published before the cutoff.
CREATE INDEX batches_published ON batches (published_at);
