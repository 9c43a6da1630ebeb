-- jobs_open_batch serves the rescuer and the workers, which always look jobs
-- up by batch_id. Its old predicate (state IN ('queued', 'running')) was
-- also implied by the release's search for in-flight coalescing leaders
-- (cache_key = ANY(...) AND cache_source IS NULL AND state IN (...)), and
-- with statistics taken while a backlog was held the planner scanned every
-- open job through it, testing each against the whole key array, instead of
-- probing jobs_cache_inflight per key: 458 ms of every release round at
-- 300,000 jobs (BENCHMARKS.md). With batch_id IS NOT NULL in the predicate,
-- only lookups by batch can use it. Open jobs without a batch (followers
-- waiting for a leader) were never found through it by batch anyway.
DROP INDEX jobs_open_batch;
CREATE INDEX jobs_open_batch ON jobs (batch_id) WHERE state IN ('queued', 'running') AND batch_id IS NOT NULL;
