-- BENCHMARKS.md step 31: the finish's end of a job in a results table, with
-- the indexes it must carry, against step 27's `update+ledger` (today's
-- terminal `UPDATE` and the ledger row; `finish-alone/variants.sql`, whose
-- `fin` hands these variants here and whose `run` measures them). Each
-- writes the ledger as the finish does; the outbox and group CTEs, the
-- followers and the batch's close are left out of all of them (the same
-- on every side).
\set ON_ERROR_STOP on
CREATE FUNCTION fin_more(variant text, b uuid, ids uuid[], states text[], results jsonb[], errors jsonb[], now_ timestamptz, credits_ bigint[], lists bigint[])
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE n bigint := 0;
BEGIN
IF variant = 'results-moved' THEN
    -- A results row with the indexes that move with the terminal columns,
    -- the ledger row, and a keyed leader's in-flight row deleted. The job
    -- row is read, not written.
    WITH done AS (
         INSERT INTO job_results_moved (job_id, tenant_id, user_id, state, result, error, credits, cache_hit, cache_key, quota_day,
                                  started_at, finished_at, attempts)
         SELECT u.id, j.tenant_id, j.user_id, u.state, u.result, u.error, u.credits, false, j.cache_key, j.quota_day,
                bb.started_at, now_, j.attempts + bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits)
         JOIN jobs j ON j.id = u.id AND j.batch_id IS NOT DISTINCT FROM b AND j.state = 'queued'
         JOIN batches bb ON bb.id = b AND bb.started_at IS NOT NULL
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id, tenant_id, user_id, credits, cache_key, finished_at),
    ledger AS (
         INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at, provider)
         SELECT d.job_id, d.tenant_id, d.user_id, j.model, j.use_case, j.priority, d.credits, 1, false, d.finished_at, 'sim'
         FROM done d JOIN jobs j ON j.id = d.job_id
         ON CONFLICT (job_id) DO NOTHING),
    flight AS (
         DELETE FROM cache_inflight c USING done d WHERE c.cache_key = d.cache_key AND c.job_id = d.job_id)
    SELECT count(*) INTO n FROM done;
ELSIF variant = 'outcomes' THEN
    -- The results row and the ledger row as one row of one table.
    WITH done AS (
         INSERT INTO job_outcomes (job_id, tenant_id, user_id, state, result, error, credits, cache_hit, cache_key, quota_day,
                                   started_at, finished_at, attempts, model, use_case, priority, list_credits, provider)
         SELECT u.id, j.tenant_id, j.user_id, u.state, u.result, u.error, u.credits, false, j.cache_key, j.quota_day,
                bb.started_at, now_, j.attempts + bb.attempts, j.model, j.use_case, j.priority, u.list_credits, 'sim'
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits)
         JOIN jobs j ON j.id = u.id AND j.batch_id IS NOT DISTINCT FROM b AND j.state = 'queued'
         JOIN batches bb ON bb.id = b AND bb.started_at IS NOT NULL
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id, cache_key),
    flight AS (
         DELETE FROM cache_inflight c USING done d WHERE c.cache_key = d.cache_key AND c.job_id = d.job_id)
    SELECT count(*) INTO n FROM done;
ELSE
    RAISE EXCEPTION 'unknown variant %', variant;
END IF;
RETURN n;
END $fn$;
