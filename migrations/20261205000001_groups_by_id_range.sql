-- Issue #18, measured: the `jobs_group` index cost the 02:00 burst a third
-- of its speed (BENCHMARKS.md, step 18). A job's row gets a new version at
-- release and at its end, and each version a new entry in every index of
-- `jobs` (its state is in partial indexes, so no update is HOT): three
-- entries per job in an index keyed by a random group id. A group's jobs
-- are found instead within its first and last job ids on the tenant's
-- existing index `jobs_tenant_list (tenant_id, id)`, filtered by
-- `group_id`: a bulk submission's ids are one tight range; a named group's
-- range spans its lifetime (a longer scan, of that tenant's jobs only).
DROP INDEX jobs_group;
ALTER TABLE job_groups ADD COLUMN first_job_id UUID;
ALTER TABLE job_groups ADD COLUMN last_job_id UUID;
UPDATE job_groups g SET first_job_id = r.first, last_job_id = r.last
FROM (SELECT group_id, (array_agg(id ORDER BY id))[1] AS first, (array_agg(id ORDER BY id DESC))[1] AS last
      FROM jobs WHERE group_id IS NOT NULL GROUP BY group_id) r
WHERE r.group_id = g.id;

-- The progress rows are folded into the group's own count by the
-- completion pass (one DELETE ... RETURNING, one UPDATE per group per
-- pass), which then compares `done` with `total`: the pass no longer sums
-- every progress row of every open group each second. Nothing reads the
-- rows by group any more, so their index goes.
ALTER TABLE job_groups ADD COLUMN done BIGINT NOT NULL DEFAULT 0;
UPDATE job_groups g SET done = p.done
FROM (SELECT group_id, sum(done) AS done FROM group_progress GROUP BY group_id) p
WHERE p.group_id = g.id;
DELETE FROM group_progress;
DROP INDEX group_progress_group;
