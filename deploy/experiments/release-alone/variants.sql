-- Reshapes the copy for one release design (`-v variant=`), then defines
-- release_rounds(n): n rounds of 5,000 jobs, each the fair claim (as
-- store::release::claim_due: an even share a tenant with due work) and the
-- round's writes, committed; it reports µs a job of each part.
--
--   update   today's release: a new version of each job row (`queued`, its
--            batch), with its entries in every index of `jobs`; the batch rows.
--   members  step 24's, on step 33's schema: held work in a narrow table the
--            round deletes from; the job row is not written; batch members
--            (job → batch) and each batch's job list in tables of their own.
--            Leaders in flight of cache keys (`-v keys=1`): rows of
--            `cache_inflight` (key → job, batch), written by the round.
--   hot      the narrow held table, and the job row's new version left on
--            its page with no index entry (a HOT update): `jobs` at
--            fillfactor 50 without the indexes that name `state` or
--            `batch_id`; each batch's job list in a table of its own.
\set ON_ERROR_STOP on
\if :{?variant}
\else
\set variant update
\endif
SELECT :'variant' <> 'update' AS narrow, :'variant' = 'hot' AS hot \gset
\if :narrow
CREATE TABLE held_jobs (id uuid PRIMARY KEY, tenant_id uuid NOT NULL, release_at timestamptz NOT NULL, window_closes_at timestamptz);
INSERT INTO held_jobs SELECT id, tenant_id, release_at, window_closes_at FROM jobs WHERE state = 'held' ORDER BY id;
CREATE INDEX held_jobs_due_order ON held_jobs (tenant_id, release_at, id);
CREATE INDEX held_jobs_window ON held_jobs (window_closes_at);
DROP INDEX jobs_held_due_order, jobs_held_window;
CREATE TABLE batch_jobs (batch_id uuid PRIMARY KEY, job_ids uuid[] NOT NULL);
CREATE TABLE batch_members (job_id uuid PRIMARY KEY, batch_id uuid NOT NULL);
CREATE TABLE cache_inflight (cache_key bytea PRIMARY KEY, job_id uuid NOT NULL, batch_id uuid NOT NULL);
\endif
\if :hot
DROP INDEX jobs_cache_followers, jobs_cache_leaders, jobs_cache_source, jobs_open_batch;
ALTER TABLE jobs SET (fillfactor = 50);
VACUUM FULL jobs;
\endif
VACUUM ANALYZE;
CREATE OR REPLACE PROCEDURE release_rounds(variant text, n int) LANGUAGE plpgsql AS $pr$
DECLARE ids uuid[]; bids uuid[]; batch_of uuid[]; t0 timestamptz; t1 timestamptz; moved bigint;
        claim_us numeric := 0; write_us numeric := 0; total bigint := 0; nb int;
BEGIN
  FOR r IN 1 .. n LOOP
    t0 := clock_timestamp();
    IF variant = 'update' THEN
      WITH due AS MATERIALIZED (
           SELECT t.id FROM tenants t
           WHERE EXISTS (SELECT 1 FROM jobs WHERE tenant_id = t.id AND state = 'held' AND release_at <= now()
                         AND (window_closes_at IS NULL OR window_closes_at > now()))),
      share AS (SELECT LEAST(5000, GREATEST(1, ceil(5000::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due)
      SELECT array_agg(j.id) INTO ids FROM due d CROSS JOIN share s
      CROSS JOIN LATERAL (SELECT id FROM jobs WHERE tenant_id = d.id AND state = 'held' AND release_at <= now()
                          AND (window_closes_at IS NULL OR window_closes_at > now()) ORDER BY release_at, id LIMIT s.n) j;
    ELSE
      WITH due AS MATERIALIZED (
           SELECT t.id FROM tenants t
           WHERE EXISTS (SELECT 1 FROM held_jobs WHERE tenant_id = t.id AND release_at <= now()
                         AND (window_closes_at IS NULL OR window_closes_at > now()))),
      share AS (SELECT LEAST(5000, GREATEST(1, ceil(5000::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due)
      SELECT array_agg(j.id) INTO ids FROM due d CROSS JOIN share s
      CROSS JOIN LATERAL (SELECT id FROM held_jobs WHERE tenant_id = d.id AND release_at <= now()
                          AND (window_closes_at IS NULL OR window_closes_at > now()) ORDER BY release_at, id LIMIT s.n) j;
    END IF;
    t1 := clock_timestamp();
    nb := (cardinality(ids) + 99) / 100;
    bids := ARRAY(SELECT gen_random_uuid() FROM generate_series(1, nb));
    batch_of := ARRAY(SELECT bids[(o - 1) / 100 + 1] FROM generate_subscripts(ids, 1) o ORDER BY o);
    IF variant = 'update' THEN
      UPDATE jobs j SET state = 'queued', batch_id = u.batch_id, queued_at = now()
      FROM unnest(ids, batch_of) AS u(id, batch_id) WHERE j.id = u.id AND j.id = ANY(ids) AND j.state = 'held';
      GET DIAGNOSTICS moved = ROW_COUNT;
    ELSE
      DELETE FROM held_jobs WHERE id = ANY(ids);
      GET DIAGNOSTICS moved = ROW_COUNT;
      IF variant = 'members' THEN
        INSERT INTO batch_members (job_id, batch_id) SELECT * FROM unnest(ids, batch_of);
      ELSE
        UPDATE jobs j SET state = 'queued', batch_id = u.batch_id, queued_at = now()
        FROM unnest(ids, batch_of) AS u(id, batch_id) WHERE j.id = u.id AND j.id = ANY(ids) AND j.state = 'held';
      END IF;
      INSERT INTO cache_inflight (cache_key, job_id, batch_id)
      SELECT j.cache_key, u.id, u.b FROM unnest(ids, batch_of) AS u(id, b) JOIN jobs j ON j.id = u.id
      WHERE j.cache_key IS NOT NULL ON CONFLICT DO NOTHING;
      INSERT INTO batch_jobs (batch_id, job_ids)
      SELECT b, array_agg(id) FROM unnest(ids, batch_of) AS u(id, b) GROUP BY b;
    END IF;
    INSERT INTO batches (id, model, job_count, published_at, touched_at)
    SELECT b, 'flux-schnell', count(*), now(), now() FROM unnest(batch_of) AS u(b) GROUP BY b;
    claim_us := claim_us + extract(epoch FROM t1 - t0) * 1e6;
    write_us := write_us + extract(epoch FROM clock_timestamp() - t1) * 1e6;
    total := total + moved;
    COMMIT;
  END LOOP;
  RAISE NOTICE '%: % rounds, % jobs; claim % µs a job, writes % µs a job', variant, n, total,
    round(claim_us / total, 1), round(write_us / total, 1);
END $pr$;
