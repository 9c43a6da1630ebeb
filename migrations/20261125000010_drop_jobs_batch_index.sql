-- `jobs_batch` indexed the batch id of every job ever released, finished
-- ones included, and every later write of a released job (queued, running,
-- finished: none of them HOT, as `state` is in partial index predicates)
-- added an entry to it. Every query that finds jobs by batch looks for
-- unfinished ones, which `jobs_open_batch` covers; the last user was the
-- pruner's "no job refers to this batch", which now asks "no unfinished
-- job" (a batch is kept for the retention period after it was published
-- and while it has work left). A 300,000-job burst, back to back:
-- published in 37.5/38.9 s with the index, 33.1/36.5 s without.
DROP INDEX IF EXISTS jobs_batch;
