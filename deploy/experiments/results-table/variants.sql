-- BENCHMARKS.md step 31: the finish's job-row write against a results
-- table, with the indexes each must carry, one static statement each (as
-- sqlx keeps one prepared statement per text). Each variant writes the
-- ledger as the finish does; the outbox and group CTEs, the followers and
-- the batch's close are left out of all of them (the same on both sides).
-- `update` is the terminal `UPDATE` of `store::batches::finish` as of
-- commit 9e98f1d: a snapshot for the measurement, not a copy to keep.
\set ON_ERROR_STOP on
CREATE FUNCTION fin(variant text, b uuid, ids uuid[], states text[], results jsonb[], errors jsonb[], now_ timestamptz, credits_ bigint[], lists bigint[])
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE n bigint := 0;
BEGIN
IF variant = 'noop' THEN
    RETURN 0;
ELSIF variant = 'update' THEN
    -- Today: a new version of the job row, entering every index of `jobs`
    -- whose predicate it matches, and the ledger row.
    WITH done AS (
         UPDATE jobs j SET state = u.state, result = u.result, error = u.error,
                credits = u.credits, finished_at = now_, started_at = bb.started_at, attempts = j.attempts + bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits),
              batches bb
         WHERE bb.id = b AND bb.started_at IS NOT NULL
           AND j.id = u.id AND j.batch_id IS NOT DISTINCT FROM b AND j.state = 'queued'
         RETURNING j.id, j.tenant_id, j.user_id, j.model, j.use_case, j.priority, j.credits, u.list_credits, j.cache_hit, j.finished_at),
    ledger AS (
         INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at, provider)
         SELECT id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at, 'sim' FROM done
         ON CONFLICT (job_id) DO NOTHING)
    SELECT count(*) INTO n FROM done;
ELSIF variant = 'results' THEN
    -- A results row with the indexes that move with the terminal columns,
    -- the ledger row, and a keyed leader's in-flight row deleted. The job
    -- row is read, not written.
    WITH done AS (
         INSERT INTO job_results (job_id, tenant_id, user_id, state, result, error, credits, cache_hit, cache_key, quota_day,
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
END IF;
RETURN n;
END $fn$;

-- Runs `variant` over batches [lo, hi) of the queued ones (numbers 5000..9999), one transaction per batch as the workers commit.
CREATE PROCEDURE run(variant text, lo int, hi int) LANGUAGE plpgsql AS $pr$
DECLARE b uuid; ids uuid[]; states text[]; results jsonb[]; errors jsonb[]; c bigint[]; l bigint[]; t0 timestamptz; total bigint := 0;
BEGIN
  t0 := clock_timestamp();
  FOR k IN lo .. hi - 1 LOOP
    b := ('0190b000-0000-7000-8000-' || lpad(to_hex(k), 12, '0'))::uuid;
    SELECT array_agg(id ORDER BY id), array_agg('succeeded'::text), array_agg('{"url": "https://sim.example/out.png", "seed": 12345}'::jsonb),
           array_agg(NULL::jsonb), array_agg(1::bigint), array_agg(1::bigint)
      INTO ids, states, results, errors, c, l
      FROM jobs WHERE batch_id = b AND state = 'queued';
    total := total + fin(variant, b, ids, states, results, errors, clock_timestamp(), c, l);
    COMMIT;
  END LOOP;
  RAISE NOTICE '% over % batches: % jobs written, % µs a job (array building included)', variant, hi - lo, total,
    round(extract(epoch FROM clock_timestamp() - t0) * 1e6 / ((hi - lo) * 100), 1);
END $pr$;
