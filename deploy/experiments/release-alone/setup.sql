-- BENCHMARKS.md step 34: the release round alone, on the schema of step 33
-- (a job's end is its outcome row). 1,000,000 jobs of 1,000 tenants, as in
-- the middle of the 02:00 burst: 500,000 ended (their rows `queued` in 5,000
-- finished batches, each with its outcome row), 500,000 held and due, in
-- the order the burst's COPY writes them (the tenants interleaved).
-- With `-v keys=1` every job has a cache key and a quota day, as the API
-- stores a default job; without, none, as `"cache": false` does.
-- `-v variant=` then reshapes the copy (see variants.sql).
\set ON_ERROR_STOP on
\ir ../common.sql
INSERT INTO batches (id, model, job_count, published_at, touched_at, started_at, attempts, finished)
SELECT pg_temp.bid(b), 'flux-schnell', 100, now(), now(), now(), 1, true FROM generate_series(0, 4999) b;
INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, batch_id,
                  created_at, queued_at, cache_key, quota_day)
SELECT pg_temp.jid(g), ('00000000-0000-4000-8000-' || lpad(to_hex(g % 1000), 12, '0'))::uuid, 'flux-schnell',
       jsonb_build_object('prompt', 'burst ' || g), 'low', 'UTC',
       CASE WHEN g < 500000 THEN 'queued' ELSE 'held' END, now() - interval '1 hour', now() + interval '3 hours',
       CASE WHEN g < 500000 THEN pg_temp.bid(g / 100) END,
       now() - interval '2 hours', CASE WHEN g < 500000 THEN now() END,
       CASE WHEN :keys = 1 THEN sha256(('burst ' || g)::bytea) END, CASE WHEN :keys = 1 THEN current_date END
FROM generate_series(0, 999999) g;
INSERT INTO job_outcomes (job_id, tenant_id, model, priority, state, result, credits, list_credits, started_at, finished_at,
                          attempts, provider, counted, cache_key, quota_day)
SELECT id, tenant_id, model, priority, 'succeeded', '{"url": "https://sim.example/out.png", "seed": 12345}'::jsonb, 1, 1,
       now(), now(), 1, 'sim', true, cache_key, quota_day
FROM jobs WHERE state = 'queued';
