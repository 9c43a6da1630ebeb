-- BENCHMARKS.md step 36 (run.sh): 2,000,000 held jobs of 1,000 tenants without
-- cache keys, as the 02:00 burst's COPY leaves them, and probe_rounds(variant,
-- n, round): n rounds, each the fair claim and the round's writes, committed;
-- it reports µs a job of each part.
--   today  the claim reads, then one statement deletes the held rows by id
--          and inserts the members (store::release::mark_queued_many).
--   fused  the claim deletes the rows it claims by ctid in the same
--          statement; the members are inserted after.
\set ON_ERROR_STOP on
\ir ../common.sql
INSERT INTO held_jobs (id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic)
SELECT pg_temp.jid(g), ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid, 'bench-m' || lpad((g % 20)::text, 2, '0'),
       now() - interval '1 hour', now() + interval '3 hours', 'UTC', NULL, false
FROM generate_series(0, 1999999) g;
VACUUM ANALYZE;
CREATE OR REPLACE PROCEDURE probe_rounds(variant text, n int, total int) LANGUAGE plpgsql AS $pr$
DECLARE ids uuid[]; bids uuid[]; batch_of uuid[]; t0 timestamptz; t1 timestamptz; moved bigint;
        claim_us numeric := 0; write_us numeric := 0; tot bigint := 0; nb int; nowt timestamptz;
BEGIN
  FOR r IN 1 .. n LOOP
    nowt := clock_timestamp();
    t0 := clock_timestamp();
    IF variant = 'today' THEN
      WITH due AS MATERIALIZED (
           SELECT t.id FROM tenants t
           WHERE EXISTS (SELECT 1 FROM held_jobs WHERE tenant_id = t.id AND release_at <= nowt
                         AND (window_closes_at IS NULL OR window_closes_at > nowt)) ORDER BY random()),
      share AS (SELECT LEAST(5000, GREATEST(1, ceil(total::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due)
      SELECT array_agg(x.id) INTO ids FROM (
      SELECT j.id, j.model FROM due d CROSS JOIN share s
      CROSS JOIN LATERAL (SELECT id, model, cache_key, semantic FROM held_jobs WHERE tenant_id = d.id AND release_at <= nowt
                          AND (window_closes_at IS NULL OR window_closes_at > nowt) ORDER BY release_at, id LIMIT s.n) j
      LIMIT total) x;
    ELSE
      WITH due AS MATERIALIZED (
           SELECT t.id FROM tenants t
           WHERE EXISTS (SELECT 1 FROM held_jobs WHERE tenant_id = t.id AND release_at <= nowt
                         AND (window_closes_at IS NULL OR window_closes_at > nowt)) ORDER BY random()),
      share AS (SELECT LEAST(5000, GREATEST(1, ceil(total::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due),
      claimed AS MATERIALIZED (
        SELECT j.tid, j.id, j.model, j.cache_key, j.semantic FROM due d CROSS JOIN share s
        CROSS JOIN LATERAL (SELECT ctid AS tid, id, model, cache_key, semantic FROM held_jobs WHERE tenant_id = d.id AND release_at <= nowt
                          AND (window_closes_at IS NULL OR window_closes_at > nowt) ORDER BY release_at, id LIMIT s.n) j
        LIMIT total),
      taken AS (
        DELETE FROM held_jobs h WHERE h.ctid = ANY(ARRAY(SELECT tid FROM claimed WHERE cache_key IS NULL AND NOT semantic))
        RETURNING h.id)
      SELECT array_agg(c.id) INTO ids FROM claimed c JOIN taken t ON t.id = c.id;
    END IF;
    -- The round's batches of 100, in claim order, as NewBatch::cut does.
    t1 := clock_timestamp();
    nb := (cardinality(ids) + 99) / 100;
    bids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, nb));
    batch_of := ARRAY(SELECT bids[(o - 1) / 100 + 1] FROM generate_subscripts(ids, 1) o ORDER BY o);
    IF variant = 'today' THEN
      WITH waiting AS (DELETE FROM held_jobs WHERE id = ANY(ids) RETURNING id, cache_key)
      INSERT INTO batch_members (job_id, batch_id, cache_key)
      SELECT u.id, u.batch_id, w.cache_key FROM unnest(ids, batch_of) AS u(id, batch_id) JOIN waiting w ON w.id = u.id;
    ELSE
      INSERT INTO batch_members (job_id, batch_id, cache_key)
      SELECT u.id, u.batch_id, NULL FROM unnest(ids, batch_of) AS u(id, batch_id);
    END IF;
    GET DIAGNOSTICS moved = ROW_COUNT;
    claim_us := claim_us + extract(epoch FROM t1 - t0) * 1e6;
    write_us := write_us + extract(epoch FROM clock_timestamp() - t1) * 1e6;
    tot := tot + moved;
    COMMIT;
  END LOOP;
  RAISE NOTICE '% (round %): % rounds, % jobs; claim % µs a job, writes % µs a job, sum %', variant, total, n, tot,
    round(claim_us / tot, 1), round(write_us / tot, 1), round((claim_us + write_us) / tot, 1);
END $pr$;
