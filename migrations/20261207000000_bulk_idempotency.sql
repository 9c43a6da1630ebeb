-- Issue #21: an `Idempotency-Key` on `POST /v1/jobs/bulk`, so that a client
-- that lost the answer to a bulk submission can send it again and get the
-- same jobs instead of a second copy of each. The key is the group's (a
-- bulk submission is one group), kept as long as the group is (until it is
-- pruned); the request's canonical hash tells a replay from a conflict, and
-- `cache_hits` is the original answer's count, which a replay repeats. Only
-- keyed submissions write these columns; the index holds only their rows.
ALTER TABLE job_groups ADD COLUMN idempotency_key TEXT;
ALTER TABLE job_groups ADD COLUMN request_hash BYTEA;
ALTER TABLE job_groups ADD COLUMN cache_hits BIGINT;
CREATE UNIQUE INDEX job_groups_idempotency ON job_groups (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
