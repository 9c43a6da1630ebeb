-- 1,000,000 jobs as in the middle of the 02:00 burst: 500,000 succeeded (with
-- their ledger rows), 500,000 queued in 5,000 started batches of 100
-- contiguous ids (a round's even share: ids of neighbouring rows), 1,000 tenants.
-- With `-v keys=1` (step 31), each job has a cache key and a quota day, as
-- the API stores a default job; without, none, as `"cache": false` does.
\set ON_ERROR_STOP on
\ir ../common.sql
INSERT INTO batches (id, model, job_count, published_at, touched_at, started_at, attempts, finished)
SELECT pg_temp.bid(b), 'flux-schnell', 100, now(), now(), now(), 1, b < 5000 FROM generate_series(0, 9999) b;
INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, batch_id, attempts,
                  created_at, queued_at, started_at, finished_at, result, credits, cache_key, quota_day, reserved_credits)
SELECT pg_temp.jid(g), ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid, 'flux-schnell',
       jsonb_build_object('prompt', 'burst ' || g), 'low', 'UTC',
       CASE WHEN g < 500000 THEN 'succeeded' ELSE 'queued' END, now() - interval '1 hour', now() + interval '3 hours',
       pg_temp.bid(g / 100), CASE WHEN g < 500000 THEN 1 ELSE 0 END,
       now() - interval '2 hours', now(), CASE WHEN g < 500000 THEN now() END, CASE WHEN g < 500000 THEN now() END,
       CASE WHEN g < 500000 THEN '{"url": "https://sim.example/out.png", "seed": 12345}'::jsonb END,
       CASE WHEN g < 500000 THEN 1 END,
       CASE WHEN :keys = 1 THEN sha256(('burst ' || g)::bytea) END,
       CASE WHEN :keys = 1 THEN current_date END,
       CASE WHEN :keys = 1 THEN 1 ELSE 0 END
FROM generate_series(0, 999999) g;
INSERT INTO usage_ledger (job_id, tenant_id, model, priority, credits, list_credits, cache_hit, finished_at, provider)
SELECT id, tenant_id, model, priority, 1, 1, false, finished_at, 'sim' FROM jobs WHERE state = 'succeeded';
VACUUM ANALYZE;
