-- The rescuer looks for batches with unfinished jobs that nobody touched
-- within the visibility timeout. It found them through `jobs_open_batch`,
-- every open job's entry, plus the entries of every version a burst had
-- already moved on (1.8 s a pass during a 1,000,000-job burst, and every
-- batch touched before the cutoff is a candidate, finished or not, for as
-- long as batches are kept). A batch now says when it is done: the finish
-- that leaves none of its jobs open sets `finished`, and the rescuer marks
-- any other it finds with no open job (its last jobs were cancelled). Its
-- search is then this small partial index (BENCHMARKS.md step 11).
ALTER TABLE batches ADD COLUMN finished BOOLEAN NOT NULL DEFAULT false;
UPDATE batches b SET finished = true
WHERE NOT EXISTS (SELECT 1 FROM jobs j WHERE j.batch_id = b.id AND j.state IN ('queued', 'running'));
CREATE INDEX batches_unfinished ON batches (touched_at) WHERE NOT finished;
