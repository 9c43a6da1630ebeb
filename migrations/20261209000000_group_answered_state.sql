-- What a keyed bulk submission answered for its jobs' `state`, so that a
-- replay under its `Idempotency-Key` answers the same: `queued` when its
-- jobs were released with it (the scheduler's `direct`, issue #17), NULL
-- for `held` (every earlier submission, and most). Written only for
-- submissions with a key, in their own transaction, beside `cache_hits`.
ALTER TABLE job_groups ADD COLUMN answered_state text
    CHECK (answered_state IN ('queued'));
