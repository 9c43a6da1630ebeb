-- The release round's two statements alone (as store::release::claim_due
-- and mark_queued_many), over held jobs of 1,000 tenants: run after
-- variants.sql's runs, on the batches they left queued, turned back to held.
\set ON_ERROR_STOP on
UPDATE jobs SET state = 'held', batch_id = NULL, queued_at = NULL
WHERE state = 'queued' AND batch_id >= '0190b000-0000-7000-8000-000000002666';
VACUUM ANALYZE jobs;
CREATE OR REPLACE PROCEDURE release_rounds(n int) LANGUAGE plpgsql AS $pr$
DECLARE ids uuid[]; t0 timestamptz; t1 timestamptz; moved bigint; claim_us numeric := 0; mark_us numeric := 0; total bigint := 0;
BEGIN
  FOR r IN 1 .. n LOOP
    t0 := clock_timestamp();
    WITH due AS MATERIALIZED (
         SELECT t.id FROM tenants t
         WHERE EXISTS (SELECT 1 FROM jobs WHERE tenant_id = t.id AND state = 'held' AND release_at <= now()
                       AND (window_closes_at IS NULL OR window_closes_at > now()))
         ORDER BY random()),
    share AS (SELECT LEAST(5000, GREATEST(1, ceil(5000::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due)
    SELECT array_agg(j.id) INTO ids FROM due d CROSS JOIN share s
    CROSS JOIN LATERAL (SELECT id FROM jobs WHERE tenant_id = d.id AND state = 'held' AND release_at <= now()
                        AND (window_closes_at IS NULL OR window_closes_at > now()) ORDER BY release_at, id LIMIT s.n) j;
    t1 := clock_timestamp();
    UPDATE jobs j SET state = 'queued', batch_id = gen_random_uuid(), queued_at = now()
    FROM unnest(ids) AS u(id) WHERE j.id = u.id AND j.id = ANY(ids) AND j.state = 'held';
    GET DIAGNOSTICS moved = ROW_COUNT;
    claim_us := claim_us + extract(epoch FROM t1 - t0) * 1e6;
    mark_us := mark_us + extract(epoch FROM clock_timestamp() - t1) * 1e6;
    total := total + moved;
    COMMIT;
  END LOOP;
  RAISE NOTICE 'release: % rounds, % jobs; claim % µs a job, mark queued % µs a job', n, total, round(claim_us / total, 1), round(mark_us / total, 1);
END $pr$;
SET synchronous_commit = off;
CALL release_rounds(3);
