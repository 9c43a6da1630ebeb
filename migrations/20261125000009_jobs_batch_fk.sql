-- The release round gives up to 5,000 jobs their batch id in one UPDATE, and
-- the foreign key to batches was checked for each of them (53 ms of a
-- 5,000-job round; BENCHMARKS.md), against batch rows inserted moments before
-- in the same transaction. Only the release writes a batch id, always beside
-- the batch it inserts, and pruning deletes a batch only when no job refers
-- to it (`jobs_batch`), so the key guarded nothing the code does not.
ALTER TABLE jobs DROP CONSTRAINT IF EXISTS jobs_batch_id_fkey;
