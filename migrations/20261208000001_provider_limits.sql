-- Issue #20: limits on provider calls shared by every worker replica
-- (`worker/src/limits.rs`, SQL in `store/src/limits.rs`). A limit key is
-- `provider:NAME` or `model:NAME`; every statement on a key's rows runs
-- under that key's transaction-scoped advisory lock, so the count a worker
-- reads and the row it then inserts are one step for all workers.
-- Both tables are small: a key holds at most its requests per minute in
-- `provider_calls` and its concurrent calls in `provider_leases`, plus the
-- rows not yet pruned (each acquisition prunes its keys' old rows).

-- Requests per minute, as a sliding log: one row per call started under a
-- key with a per-minute limit, stamped with PostgreSQL's clock when the
-- call was allowed. A call is allowed while fewer than the limit started in
-- the last minute (plus a guard margin): exact over any window, unlike a
-- token bucket. Logged like every other table (not UNLOGGED): a crash
-- recovery of the server must not forget the last minute's calls and
-- allow a second minute's budget inside one; a limited call costs one
-- small insert here, nothing next to the HTTP call it allows.
CREATE TABLE provider_calls (
    key        TEXT NOT NULL,
    started_at TIMESTAMPTZ NOT NULL
);
-- The count of a key's window, its oldest call, and the prune.
CREATE INDEX provider_calls_key_started ON provider_calls (key, started_at);

-- Calls in flight, as leases: one row per call in flight under a key with
-- a concurrency limit. The worker deletes its row when the call's answer
-- is in; a worker killed mid-call leaves it, and it stops counting at
-- `expires_at` (set longer than the provider's timeout), so a crashed
-- worker's slots come back on their own. `holder` names the worker process
-- (one id per process), for an operator reading the table and for a
-- worker's release of everything it holds at shutdown.
CREATE TABLE provider_leases (
    key        TEXT NOT NULL,
    lease_id   UUID NOT NULL,
    holder     UUID NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (key, lease_id)
);
