-- Cost controls, second part: the exact cache with in-flight coalescing,
-- daily credit quotas, and per-tenant settings.

-- The cache key: SHA-256 of the tenant, the model and the canonical JSON of
-- the input (`offpeak_shared::job::cache_key`). NULL for a job submitted with
-- `"cache": false`, which neither uses nor feeds the cache.
ALTER TABLE jobs ADD COLUMN cache_key BYTEA;
-- The job whose result this one gets: for a cache hit, the succeeded job
-- it was answered from; for a job waiting on an identical one already on
-- its way to the provider (coalesced), that job, its leader.
ALTER TABLE jobs ADD COLUMN cache_source UUID;
-- The day (in the tenant's timezone, at submission) whose quota the job
-- counts against, and the credits reserved for it then (its price); a
-- finished job counts its `credits` instead. NULL only for jobs older than
-- this migration.
ALTER TABLE jobs ADD COLUMN quota_day DATE;
ALTER TABLE jobs ADD COLUMN reserved_credits BIGINT NOT NULL DEFAULT 0 CHECK (reserved_credits >= 0);

-- Cache lookups: jobs that succeeded from a real provider call (not cache
-- hits, so a result's age is that of the call), by key and recency. Held
-- jobs have no entry, so submissions pay nothing for this index.
CREATE INDEX jobs_cache_source ON jobs (cache_key, finished_at)
    WHERE state = 'succeeded' AND NOT cache_hit AND cache_key IS NOT NULL;
-- At most one job per cache key on its way to the provider; identical jobs
-- wait for it (coalescing). Two scheduler replicas racing to send the same
-- key both try to enter this index, and the second's round fails and is
-- tried again, now finding the first as the leader to wait for.
CREATE UNIQUE INDEX jobs_cache_inflight ON jobs (cache_key)
    WHERE cache_key IS NOT NULL AND cache_source IS NULL AND state IN ('queued', 'running');
-- The jobs waiting on a leader, found when the leader finishes.
CREATE INDEX jobs_cache_followers ON jobs (cache_source) WHERE state = 'queued' AND cache_source IS NOT NULL;
-- Quota checks: one tenant's jobs of one day.
CREATE INDEX jobs_quota ON jobs (tenant_id, quota_day)
    INCLUDE (user_id, reserved_credits, credits, finished_at)
    WHERE quota_day IS NOT NULL;

-- Tenant settings: the per-user daily limit (each `user_id` of the tenant),
-- and the tenant's own off-peak window (NULL: the deployment's).
ALTER TABLE tenants ADD COLUMN user_daily_credits BIGINT CHECK (user_daily_credits IS NULL OR user_daily_credits >= 0);
ALTER TABLE tenants ADD COLUMN window_start TEXT;
ALTER TABLE tenants ADD COLUMN window_end TEXT;
ALTER TABLE tenants ADD CONSTRAINT tenants_window_both CHECK ((window_start IS NULL) = (window_end IS NULL));

-- A schedule's job template may opt out of the cache too.
ALTER TABLE schedules ADD COLUMN cache BOOLEAN NOT NULL DEFAULT true;
