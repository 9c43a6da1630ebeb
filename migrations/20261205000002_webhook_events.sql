-- Issue #18, measured: writing a full delivery row per job event inside the
-- statement that ends the job (a JSON payload built by PostgreSQL, a random
-- UUID key, three more indexes and a foreign key) made the 02:00 burst with
-- every tenant subscribed take 85 s instead of 51 s before a single event
-- was even sent (BENCHMARKS.md, step 19). The statements that end jobs now
-- write only this: one narrow row per statement, listing the jobs it ended
-- whose tenant has an endpoint; no index, no key, no payload. The delivery
-- loop turns these rows into `webhook_deliveries` (one per job and
-- subscribed endpoint, payload built from the job's row, which a terminal
-- job keeps unchanged) with one `DELETE ... RETURNING` and `INSERT` per
-- chunk, so an event leaves this table in the same statement that makes
-- its deliveries: none is lost, none is made twice. The one write that
-- changes a terminal job, the operator's retry, fans out the rows that list
-- its jobs first, in its own statement (`store::operator::retry`), so the
-- deliveries carry the state that was reached.
CREATE TABLE webhook_events (
    job_ids     UUID[] NOT NULL,
    -- When the earliest of them ended: the outbox's age gauge.
    finished_at TIMESTAMPTZ NOT NULL
);

-- The events of jobs that ended before this migration already have their
-- delivery rows; nothing moves.
