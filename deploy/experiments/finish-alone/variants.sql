-- The variants BENCHMARKS.md step 27 measured, one static statement each
-- (so PL/pgSQL caches one plan per variant, as sqlx keeps one prepared
-- statement per text). `full` is a copy of `store::batches::finish`'s SQL as
-- of commit f5c783b, with its parameters as PL/pgSQL variables; the others
-- repeat its terminal `UPDATE` on purpose, each a variant of its own. A
-- snapshot for the measurement, not a second copy to keep in step: measure
-- again from the store's text if the finish changes.
\set ON_ERROR_STOP on
CREATE TABLE job_results (
    job_id      UUID PRIMARY KEY,
    state       TEXT NOT NULL,
    result      JSONB,
    error       JSONB,
    credits     BIGINT,
    started_at  TIMESTAMPTZ,
    finished_at TIMESTAMPTZ NOT NULL,
    attempts    INT NOT NULL
);

CREATE FUNCTION fin(variant text, b uuid, ids uuid[], states text[], results jsonb[], errors jsonb[], now_ timestamptz, credits_ bigint[], lists bigint[])
RETURNS bigint LANGUAGE plpgsql AS $fn$
DECLARE n bigint := 0;
BEGIN
IF variant = 'noop' THEN
    RETURN 0;
ELSIF variant = 'full' THEN
    WITH done AS (
         UPDATE jobs j SET state = u.state, result = u.result, error = u.error,
                credits = u.credits, finished_at = now_, started_at = bb.started_at, attempts = j.attempts + bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits),
              batches bb
         WHERE bb.id = b AND bb.started_at IS NOT NULL
           AND j.id = u.id AND j.batch_id IS NOT DISTINCT FROM b AND j.state = 'queued'
         RETURNING j.id, j.tenant_id, j.state, j.group_id, j.model, j.result, j.error, j.credits, j.cache_hit,
                   j.user_id, j.metadata, j.created_at, j.started_at, j.finished_at, j.attempts, j.use_case, j.priority, u.list_credits,
                   j.preview_target_list, j.parent_id, j.upgrade_of_preview
     ),
     followers AS (
         UPDATE jobs f SET
             state = CASE WHEN d.state IN ('succeeded', 'failed') THEN d.state ELSE 'held' END,
             result = CASE WHEN d.state = 'succeeded' THEN d.result END,
             error = CASE WHEN d.state = 'failed' THEN d.error ELSE f.error END,
             cache_hit = (d.state = 'succeeded'),
             credits = CASE WHEN d.state IN ('succeeded', 'failed') THEN 0 END,
             finished_at = CASE WHEN d.state IN ('succeeded', 'failed') THEN now_ END,
             cache_source = CASE WHEN d.state IN ('succeeded', 'failed') THEN f.cache_source END,
             queued_at = CASE WHEN d.state IN ('succeeded', 'failed') THEN f.queued_at END
         FROM done d
         WHERE f.cache_source = d.id AND f.state = 'queued'
         RETURNING f.id, f.tenant_id, f.state, f.group_id, f.model, f.result, f.error, f.credits, f.cache_hit,
                   f.user_id, f.metadata, f.created_at, f.started_at, f.finished_at, f.attempts, f.use_case, f.priority,
                   f.preview_target_list, f.parent_id, f.upgrade_of_preview
     ),
     closed AS (
         UPDATE batches SET finished = true
         WHERE id = b AND EXISTS (SELECT 1 FROM done)
           AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.batch_id = b AND o.state = 'queued' AND o.id <> ALL(ids))
     ),
     ledger AS (
         INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority,
                                   credits, list_credits, cache_hit, finished_at,
                                   preview_target_list, parent_id, upgrade_of_preview, provider)
         SELECT id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at,
                preview_target_list, parent_id, upgrade_of_preview, 'sim'
         FROM done
         WHERE state = 'succeeded' OR credits > 0 OR list_credits > 0
         UNION ALL
         SELECT id, tenant_id, user_id, model, use_case, priority, 0, 1, true, finished_at,
                preview_target_list, parent_id, upgrade_of_preview, 'sim'
         FROM followers
         WHERE state = 'succeeded'
         ON CONFLICT (job_id) DO NOTHING
     ),
     ended AS (
         SELECT id, tenant_id, state, group_id, model, result, error, credits, cache_hit, user_id, metadata, created_at, started_at, finished_at, attempts FROM done
         UNION ALL
         SELECT id, tenant_id, state, group_id, model, result, error, credits, cache_hit, user_id, metadata, created_at, started_at, finished_at, attempts FROM followers
     ),
     ended_events AS (
         INSERT INTO webhook_events (job_ids, finished_at)
         SELECT array_agg(x.id), min(x.finished_at) FROM ended x
         WHERE x.state IN ('succeeded', 'failed', 'dead', 'cancelled')
           AND EXISTS (SELECT 1 FROM webhook_endpoints w WHERE w.tenant_id = x.tenant_id AND w.disabled_at IS NULL)
         HAVING count(*) > 0
     ),
     ended_progress AS (
         INSERT INTO group_progress (group_id, done)
         SELECT group_id, count(*) FROM ended
         WHERE group_id IS NOT NULL AND state IN ('succeeded', 'failed', 'dead', 'cancelled')
         GROUP BY group_id
     )
     SELECT count(*) INTO n FROM (SELECT id, NULL::text FROM done UNION ALL SELECT id, state FROM followers) s;
ELSIF variant = 'update' THEN
    WITH done AS (
         UPDATE jobs j SET state = u.state, result = u.result, error = u.error,
                credits = u.credits, finished_at = now_, started_at = bb.started_at, attempts = j.attempts + bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits),
              batches bb
         WHERE bb.id = b AND bb.started_at IS NOT NULL
           AND j.id = u.id AND j.batch_id IS NOT DISTINCT FROM b AND j.state = 'queued'
         RETURNING j.id)
    SELECT count(*) INTO n FROM done;
ELSIF variant = 'update+ledger' THEN
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
ELSIF variant = 'results+ledger' THEN
    -- The job row is not written: its outcome goes to an append-only table
    -- (one primary key), the job's columns the ledger needs are read.
    WITH done AS (
         INSERT INTO job_results (job_id, state, result, error, credits, started_at, finished_at, attempts)
         SELECT u.id, u.state, u.result, u.error, u.credits, bb.started_at, now_, j.attempts + bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits)
         JOIN jobs j ON j.id = u.id AND j.batch_id = b AND j.state = 'queued'
         JOIN batches bb ON bb.id = b AND bb.started_at IS NOT NULL
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id, credits, finished_at),
    ledger AS (
         INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at, provider)
         SELECT d.job_id, j.tenant_id, j.user_id, j.model, j.use_case, j.priority, d.credits, 1, false, d.finished_at, 'sim'
         FROM done d JOIN jobs j ON j.id = d.job_id
         ON CONFLICT (job_id) DO NOTHING)
    SELECT count(*) INTO n FROM done;
ELSIF variant = 'results' THEN
    WITH done AS (
         INSERT INTO job_results (job_id, state, result, error, credits, started_at, finished_at, attempts)
         SELECT u.id, u.state, u.result, u.error, u.credits, bb.started_at, now_, bb.attempts
         FROM unnest(ids, states, results, errors, credits_, lists) AS u(id, state, result, error, credits, list_credits)
         JOIN batches bb ON bb.id = b AND bb.started_at IS NOT NULL
         ON CONFLICT (job_id) DO NOTHING
         RETURNING job_id)
    SELECT count(*) INTO n FROM done;
ELSIF variant = 'ledger' THEN
    WITH ledger AS (
         INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at, provider)
         SELECT u.id, j.tenant_id, j.user_id, j.model, j.use_case, j.priority, u.credits, u.list_credits, false, now_, 'sim'
         FROM unnest(ids, credits_, lists) AS u(id, credits, list_credits) JOIN jobs j ON j.id = u.id
         ON CONFLICT (job_id) DO NOTHING RETURNING 1)
    SELECT count(*) INTO n FROM ledger;
ELSE
    -- Variants of later experiments (step 31's `results-table/variants.sql`).
    n := fin_more(variant, b, ids, states, results, errors, now_, credits_, lists);
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
