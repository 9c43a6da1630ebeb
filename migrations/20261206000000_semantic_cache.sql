-- The semantic cache (issue #19): a job may be answered by a rewording of
-- a prompt that succeeded before, with every other field of its input, its
-- tenant and its model equal (`offpeak_core::semantic`).

-- The tenant's default cache for jobs that do not name one
-- (`tenant update NAME --cache semantic`). `off` is not a tenant setting:
-- a job opts out with `"cache": false`.
ALTER TABLE tenants ADD COLUMN cache_mode TEXT NOT NULL DEFAULT 'exact'
    CHECK (cache_mode IN ('exact', 'semantic'));

-- Whether the job asked for the semantic cache (resolved with its tenant's
-- default at submission): the release round embeds and looks up only these.
-- A constant default, so adding it rewrites no row.
ALTER TABLE jobs ADD COLUMN semantic BOOLEAN NOT NULL DEFAULT false;
-- For a semantic hit, the cosine similarity of its prompt to the prompt of
-- `cache_source`; NULL for every other job (an exact hit included), which
-- is how the API tells the two kinds of hit apart.
ALTER TABLE jobs ADD COLUMN cache_similarity REAL;

-- Each semantic job's prompt embedding, stored once, when the release
-- round sent the job to the provider (a job answered from a cache needs
-- none: it can never be a source). `scope` is
-- `offpeak_core::semantic::scope`: SHA-256 of the tenant, the model and
-- the input without its prompt; only vectors of one scope and one
-- embeddings model are ever compared. `embedding` is the unit vector as
-- little-endian f32s (PostgreSQL has no vector type here: pgvector is not
-- packaged for this Debian; the search is the scheduler's, over vectors it
-- loads by `(scope, seq)`). `seq` orders a scope's rows for that
-- incremental load: rows are written only by release rounds, which run
-- one at a time (`store::release::lock_release`), so a row with a lower
-- `seq` is never committed after one with a higher. Deleted with its job
-- (the pruner).
CREATE TABLE job_embeddings (
    job_id       UUID PRIMARY KEY REFERENCES jobs (id) ON DELETE CASCADE,
    scope        BYTEA NOT NULL,
    embed_model  TEXT NOT NULL,
    seq          BIGINT GENERATED ALWAYS AS IDENTITY,
    embedding    BYTEA NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX job_embeddings_scope ON job_embeddings (scope, embed_model, seq);

-- A semantic hit's ledger row says so: `/v1/usage` reports what the
-- semantic cache saved (`saved_semantic`) apart from the exact cache
-- (`saved_cache`).
ALTER TABLE usage_ledger ADD COLUMN semantic BOOLEAN NOT NULL DEFAULT false;

-- The view gains both job columns (a view's new columns go last).
CREATE OR REPLACE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits,
       j.group_id, j.semantic, j.cache_similarity
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';
