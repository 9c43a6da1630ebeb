-- offpeak's schema, as one baseline (issue #16).
--
-- FROM HERE ON, MIGRATIONS ONLY MOVE FORWARD. This file is never edited
-- again: sqlx records the checksum of every migration it applies and
-- refuses to start against a database whose applied migration has changed.
-- A change to the schema is a new file with a later version, written to
-- take a database that holds data from this schema to the next one.
--
-- This baseline squashes the twelve migrations written before anything was
-- deployed (2026-11-25 to 2026-12-01), which created, replaced and dropped
-- the same indexes and keys as the benchmark (BENCHMARKS.md) measured them.
-- It creates exactly the schema they did (`pg_dump --schema-only` of both
-- compared equal when it was written); what they dropped is not created
-- here, and is named below with the measurement that dropped it, so that
-- nobody adds it back without measuring again.
--
-- Tables come in the order a job meets them: the tenant that submits it
-- (`tenants`, `api_keys`), the job itself, held until its window (`jobs`),
-- the schedules that submit jobs on their own (`schedules`,
-- `schedule_firings`), the batches the release loop publishes to RabbitMQ
-- (`batches`, and `job_view`, which says when a job is running), and the
-- usage ledger its finish writes (`usage_ledger`). Each table's indexes
-- follow it, each with the query it serves.
--
-- Column order within a table is the order in which the columns were
-- added, not the order a reader would choose: it is kept so that this
-- schema is the one the migrations made, column for column.
--
-- Partial indexes and the queries that use them must agree: PostgreSQL
-- uses a partial index only when it can prove the query's WHERE implies
-- the index's predicate. Several predicates below still say
-- `state IN ('queued', 'running')` although `running` is no longer stored
-- (see `jobs.state`): the queries say the same, so keep them in step.

-- ---------------------------------------------------------------------------
-- 1. Who submits: tenants and their API keys
-- ---------------------------------------------------------------------------

CREATE TABLE tenants (
    -- UUIDv7, assigned by `offpeak-scheduler tenant create`.
    id                 UUID PRIMARY KEY,
    -- The operator's name for the tenant; unique, so creating a tenant
    -- whose name is taken is refused (`ON CONFLICT (name) DO NOTHING`)
    -- instead of making a second one.
    name               TEXT NOT NULL UNIQUE,
    -- IANA timezone: the default for the tenant's jobs (a job may name
    -- another) and the zone of its quota days.
    timezone           TEXT NOT NULL DEFAULT 'UTC',
    -- Daily credit limit of the whole tenant; NULL: no limit.
    daily_credits      BIGINT CHECK (daily_credits IS NULL OR daily_credits >= 0),
    created_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Daily credit limit of each `user_id` of the tenant; NULL: no limit.
    user_daily_credits BIGINT CHECK (user_daily_credits IS NULL OR user_daily_credits >= 0),
    -- The tenant's own off-peak window (`HH:MM` each); both NULL: the
    -- deployment's window. Roll-over groups held jobs by (timezone, these
    -- two), so each group's next window is computed once.
    window_start       TEXT,
    window_end         TEXT,
    CONSTRAINT tenants_window_both CHECK ((window_start IS NULL) = (window_end IS NULL))
);

-- Only the SHA-256 of a key is stored. Keys are 256-bit random strings, so
-- a fast hash is enough: there is nothing to brute-force. A replica caches
-- a key it has looked up for a few seconds (`api/auth.rs`), so revoking a
-- key takes effect within that time.
CREATE TABLE api_keys (
    -- The key's SHA-256; looking a request's key up is one probe of this
    -- primary key.
    key_hash   BYTEA PRIMARY KEY,
    -- Deleting a tenant deletes its keys.
    tenant_id  UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The key's first characters, so an operator can tell keys apart
    -- without the key itself being stored.
    prefix     TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Set when the key is revoked; a revoked key authenticates nothing.
    revoked_at TIMESTAMPTZ
);

-- ---------------------------------------------------------------------------
-- 2. The job: submitted, held until its window, then released
-- ---------------------------------------------------------------------------

-- Every version of a job row costs an entry in the primary key,
-- `jobs_tenant_list` and each partial index whose predicate it meets, and
-- no write after the insert is HOT (`state` is in partial index
-- predicates). Index entries are the burst's largest cost in PostgreSQL
-- (BENCHMARKS.md step 15), which is why every index on this table below is
-- partial where it can be, and why two were dropped (see `batch_id`).
--
-- Left at the default fillfactor: 70, so a job's new versions could stay
-- on its page, made the 1,000,000-job burst slower (91.9 s against 87.0 s,
-- BENCHMARKS.md step 11).
CREATE TABLE jobs (
    -- UUIDv7: time-ordered, so listings page by id in creation order.
    id               UUID PRIMARY KEY,
    -- Every query the API sends is scoped by tenant. Nothing deletes a
    -- tenant that has jobs; this key makes sure of it (and is what
    -- `usage_ledger` relies on instead of a key of its own).
    tenant_id        UUID NOT NULL REFERENCES tenants (id),
    -- The model the job runs on (for `"model": "auto"`, the model its
    -- `use_case` was routed to). Batches hold one model each.
    model            TEXT NOT NULL,
    -- The provider's input, passed through as JSON.
    input            JSONB NOT NULL,
    -- `low` waits for the off-peak window and pays the off-peak price;
    -- `normal` is due at once and pays list price.
    priority         TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    -- IANA timezone whose window the job waits for (the tenant's unless
    -- the submission named one); roll-over computes the next window in it.
    timezone         TEXT NOT NULL,
    -- The tenant's own user, for per-user quotas and usage.
    user_id          TEXT,
    -- The client's, returned as given (a schedule's job records its fire
    -- time here).
    metadata         JSONB,
    -- The `Idempotency-Key` of a keyed submission, and the SHA-256 of its
    -- canonical body: a replay with the same body returns this job, one
    -- with another body is a 409.
    idempotency_key  TEXT,
    request_hash     BYTEA,
    -- The stored state. `running` is never stored: a worker's start writes
    -- the batch's row, not its jobs', and a `queued` job of a started batch
    -- is running (`job_view` says so; BENCHMARKS.md step 9). Every change
    -- is an `UPDATE ... WHERE state IN (<allowed sources>)`, so a terminal
    -- state is never left.
    state            TEXT NOT NULL CONSTRAINT jobs_state_check
                         CHECK (state IN ('held', 'queued', 'succeeded', 'failed', 'dead', 'cancelled')),
    -- First instant the job may be released: for low priority, the opening
    -- of its window (exact in every daylight-saving case, `core::window`);
    -- for normal, its submission. window_closes_at is NULL for normal
    -- priority: such a job never rolls over. A low-priority job still held
    -- when its window closes rolls over to the next window.
    release_at       TIMESTAMPTZ NOT NULL,
    window_closes_at TIMESTAMPTZ,
    -- The batch the release put the job in; NULL while held, and for a
    -- follower waiting on a leader (see `cache_source`).
    --
    -- No foreign key to `batches`: it was checked for each of the up to
    -- 5,000 jobs a release round updates, against batch rows inserted
    -- moments before in the same transaction (53 ms of a 5,000-job round),
    -- and only the release writes a batch id, beside the batch it inserts.
    -- Dropping it took a 300,000-job burst from 42.2 to 38.4 s published
    -- (BENCHMARKS.md step 6). Pruning deletes a batch only when no
    -- unfinished job refers to it.
    --
    -- No index on `batch_id` alone (`jobs_batch`): it held an entry for
    -- every job ever released, finished ones included, and each later write
    -- of a released job added one more. Every query by batch looks for
    -- unfinished jobs, which `jobs_open_batch` serves. Without it the
    -- 300,000-job burst was published in 35.4 s instead of 38.4 s
    -- (BENCHMARKS.md step 6).
    batch_id         UUID,
    -- Provider attempts and the first start, written with the terminal
    -- state from the batch's row (`batches.attempts`, `started_at`); until
    -- then `job_view` reads them from the batch.
    attempts         INT NOT NULL DEFAULT 0,
    -- Transient failures allowed before the job is `dead`.
    max_attempts     INT NOT NULL DEFAULT 5,
    -- The provider's output (succeeded) or the error (failed, dead; the
    -- last error is kept).
    result           JSONB,
    error            JSONB,
    -- What the job was charged, set when it finishes (0 for a failure, a
    -- cache hit or a cancellation).
    credits          BIGINT,
    -- Answered from an earlier identical job's result, without a provider
    -- call.
    cache_hit        BOOLEAN NOT NULL DEFAULT false,
    -- Submission time; the clock is injected (`Clock`), so no default.
    created_at       TIMESTAMPTZ NOT NULL,
    -- The instant of the release round that queued it (window precision is
    -- measured from release_at to this).
    queued_at        TIMESTAMPTZ,
    started_at       TIMESTAMPTZ,
    -- Set exactly on terminal jobs (jobs_terminal_has_finished_at): pruning
    -- and the dashboard find finished jobs by it.
    finished_at      TIMESTAMPTZ,
    -- The `use_case` of a job submitted with `"model": "auto"`; `model`
    -- holds the model it was routed to.
    use_case         TEXT,
    -- The exact cache's key: SHA-256 of the tenant, the model and the
    -- canonical JSON of the input (`core::hash::cache_key`; the tenant is in
    -- it so a tenant is only ever answered from its own results). NULL for
    -- a job submitted with `"cache": false`, which neither uses nor feeds
    -- the cache.
    cache_key        BYTEA,
    -- The job whose result this one gets: for a cache hit, the succeeded
    -- job it was answered from; for a job waiting on an identical one
    -- already on its way to the provider (coalesced), that job, its leader.
    cache_source     UUID,
    -- The day (in the tenant's timezone, at submission) whose quota the job
    -- counts against, and the credits reserved for it then (its price); a
    -- finished job counts its `credits` instead. Quotas are summed from
    -- these, never kept in a counter, so they cannot disagree with the jobs
    -- (`store::quota`). Every admitted job has a day, whether or not its
    -- tenant has a limit, so a limit set during the day counts the work
    -- already submitted; NULL only for a schedule's firing refused by the
    -- quota, stored `failed`.
    quota_day        DATE,
    reserved_credits BIGINT NOT NULL DEFAULT 0 CHECK (reserved_credits >= 0),
    CONSTRAINT jobs_terminal_has_finished_at CHECK (
        (state IN ('succeeded', 'failed', 'dead', 'cancelled')) = (finished_at IS NOT NULL)
    )
);

-- Submission: one job per (tenant, Idempotency-Key); `insert_one` relies on
-- it with `ON CONFLICT DO NOTHING`.
CREATE UNIQUE INDEX jobs_idempotency ON jobs (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- Listing a tenant's jobs (`GET /v1/jobs`, the dashboard), newest first,
-- cursor-paginated by id. The most expensive index per job (~8 µs of each
-- job's writes, as each new version's entry lands in another leaf;
-- BENCHMARKS.md step 15), kept because the listing has no other path.
CREATE INDEX jobs_tenant_list ON jobs (tenant_id, id);

-- The release loop's claim: per tenant, due held jobs ORDER BY release_at,
-- id, an even share per tenant (BENCHMARKS.md step 12). `id` is in the key
-- (it replaced `jobs_held_due (tenant_id, release_at)`) because without it,
-- for a tenant whose whole backlog shares one release_at (a bulk
-- submission, a window opening), PostgreSQL read and sorted all of that
-- tenant's held jobs every round to return the first few; with it the scan
-- stops after the tenant's share (BENCHMARKS.md step 1). Partial: only held jobs are in it, so it
-- stays the size of the backlog, not of the table.
CREATE INDEX jobs_held_due_order ON jobs (tenant_id, release_at, id) WHERE state = 'held';

-- Roll-over: held jobs whose window has closed. Every release round first
-- asks whether there is any, a range scan that stops at the first entry
-- closing later (BENCHMARKS.md step 14).
CREATE INDEX jobs_held_window ON jobs (window_closes_at) WHERE state = 'held';

-- The workers and the rescuer: the unfinished jobs of one batch. Open work
-- is bounded by the queue depth limit, so this index stays small.
-- `batch_id IS NOT NULL` is in the predicate so that only lookups by batch
-- can use it: with `state IN ('queued', 'running')` alone, it was also
-- implied by the release's search for in-flight coalescing leaders, and
-- with statistics taken while a backlog was held the planner scanned every
-- open job through it, testing each against the round's whole key array,
-- instead of probing `jobs_cache_inflight` per key: 458 ms of every
-- release round at 300,000 jobs, 35 ms with this predicate (BENCHMARKS.md
-- step 5). Open jobs without a batch (followers) were never found through
-- it by batch anyway.
CREATE INDEX jobs_open_batch ON jobs (batch_id) WHERE state IN ('queued', 'running') AND batch_id IS NOT NULL;

-- Cache lookups: jobs that succeeded from a real provider call (not cache
-- hits, so a result's age is that of the call), by key and recency; probed
-- once per key. Held jobs have no entry, so submissions pay nothing for it.
CREATE INDEX jobs_cache_source ON jobs (cache_key, finished_at)
    WHERE state = 'succeeded' AND NOT cache_hit AND cache_key IS NOT NULL;

-- At most one job per cache key on its way to the provider; identical jobs
-- wait for it (coalescing). Two scheduler replicas racing to send the same
-- key both try to enter this index, and the second's round fails and is
-- tried again, now finding the first as the leader to wait for. The
-- release's leader search (`FOR KEY SHARE`) probes it per key.
CREATE UNIQUE INDEX jobs_cache_inflight ON jobs (cache_key)
    WHERE cache_key IS NOT NULL AND cache_source IS NULL AND state IN ('queued', 'running');

-- The jobs waiting on a leader, found when the leader finishes (they get
-- its answer), dies or is cancelled (they go back to held).
CREATE INDEX jobs_cache_followers ON jobs (cache_source) WHERE state = 'queued' AND cache_source IS NOT NULL;

-- Quota checks: one tenant's jobs of one day. The included columns are
-- the ones the sum reads, so it can be an index-only scan.
CREATE INDEX jobs_quota ON jobs (tenant_id, quota_day)
    INCLUDE (user_id, reserved_credits, credits, finished_at)
    WHERE quota_day IS NOT NULL;

-- Finished jobs by finish time: the operator dashboard's last hour
-- (throughput, provider error rate) reads only that hour's jobs instead of
-- the whole table, and pruning (`offpeak-scheduler prune` and the pruner
-- of `serve`) reads only the jobs each chunk deletes. Partial: jobs that
-- have not finished are never looked up by finished_at.
CREATE INDEX jobs_finished ON jobs (finished_at) WHERE finished_at IS NOT NULL;

-- ---------------------------------------------------------------------------
-- 3. Recurring schedules: jobs submitted by a cron expression
-- ---------------------------------------------------------------------------

-- A cron expression in a timezone plus a job template.
CREATE TABLE schedules (
    -- UUIDv7: listings page by id in creation order.
    id               UUID PRIMARY KEY,
    -- Deleting a tenant deletes its schedules.
    tenant_id        UUID NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- The tenant's name for it, unique per tenant (`schedules_tenant_name`).
    name             TEXT NOT NULL,
    -- `cron` crate syntax, read in `timezone` as cron(8) does on DST days.
    cron             TEXT NOT NULL,
    timezone         TEXT NOT NULL,
    -- Missed firings (the scheduler was down): fire the latest, all, or
    -- none of them.
    catch_up         TEXT NOT NULL CHECK (catch_up IN ('latest', 'all', 'none')),
    paused           BOOLEAN NOT NULL DEFAULT false,
    -- The job template: model, input, priority, user and metadata of each
    -- job a firing creates.
    model            TEXT NOT NULL,
    input            JSONB NOT NULL,
    priority         TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    user_id          TEXT,
    metadata         JSONB,
    -- SHA-256 of the canonical definition (everything but `paused`): a
    -- repeated create with the same definition is idempotent, another is a
    -- 409.
    definition_hash  BYTEA NOT NULL,
    -- The next firing not yet handled; NULL while paused or when the
    -- expression matches nothing more.
    next_fire_at     TIMESTAMPTZ,
    last_fired_at    TIMESTAMPTZ,
    -- Firings skipped by the catch_up policy, shown to the tenant.
    missed_firings   BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    -- The template's `use_case` for `"model": "auto"`: `model` holds the
    -- model it was routed to when the template was stored.
    use_case         TEXT,
    -- Whether the template's jobs use and feed the cache (`"cache": false`
    -- opts out, as for a submitted job).
    cache            BOOLEAN NOT NULL DEFAULT true,
    CONSTRAINT schedules_paused_has_no_next CHECK (NOT paused OR next_fire_at IS NULL)
);

-- A schedule's name is unique within its tenant.
CREATE UNIQUE INDEX schedules_tenant_name ON schedules (tenant_id, name);
-- The firing loop: due schedules (`FOR UPDATE SKIP LOCKED`, so replicas
-- take disjoint ones). Paused and exhausted schedules are not in it.
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE NOT paused AND next_fire_at IS NOT NULL;
-- Listing a tenant's schedules, newest first, cursor-paginated.
CREATE INDEX schedules_tenant_list ON schedules (tenant_id, id);

-- One row per firing: the primary key makes each firing happen once,
-- whatever replicas run and whenever they restart (`ON CONFLICT DO
-- NOTHING`, then the jobs of only the rows recorded). The job is inserted
-- in the same transaction, after its firing row (hence the deferred
-- foreign key).
CREATE TABLE schedule_firings (
    schedule_id  UUID NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    fire_at      TIMESTAMPTZ NOT NULL,
    -- NULL only once the job itself is deleted (pruned); the firing stays
    -- recorded, so it never fires again.
    job_id       UUID REFERENCES jobs (id) ON DELETE SET NULL DEFERRABLE INITIALLY DEFERRED,
    created_at   TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (schedule_id, fire_at)
);
-- Deleting jobs (pruning) checks this foreign key; without the index each
-- deleted job would scan the firings.
CREATE INDEX schedule_firings_job ON schedule_firings (job_id);

-- ---------------------------------------------------------------------------
-- 4. Batches: what the release publishes and the workers run
-- ---------------------------------------------------------------------------

-- One row per batch the release loop published: RabbitMQ carries only the
-- batch's identity and its job ids; this row is where its progress is kept.
-- A worker's start and each further attempt write this row, not the rows of
-- its jobs: one write per batch instead of one per job, for a fact that is
-- the same for all its jobs, since they are sent together (BENCHMARKS.md
-- step 9).
CREATE TABLE batches (
    -- Also the provider's Idempotency-Key for every call of the batch, so a
    -- republished batch is never billed twice.
    id           UUID PRIMARY KEY,
    -- One model per batch (a provider call runs one model).
    model        TEXT NOT NULL,
    job_count    INT NOT NULL,
    -- The release round's instant; pruning deletes batches published
    -- before the retention cutoff.
    published_at TIMESTAMPTZ NOT NULL,
    -- Last sign of progress (published, started, attempted, republished):
    -- a batch with unfinished jobs untouched for the visibility timeout is
    -- published again by the rescuer, under the same batch id.
    touched_at   TIMESTAMPTZ NOT NULL,
    -- How many times the rescuer republished it (the dashboard shows it).
    republished  INT NOT NULL DEFAULT 0,
    -- The first start by a worker (NULL: not started) and the provider
    -- attempts begun. A `queued` job of a batch with started_at is running;
    -- a cancel of a queued job is refused once its batch has started.
    started_at   TIMESTAMPTZ,
    attempts     INT NOT NULL DEFAULT 0,
    -- Set by the finish that leaves none of its jobs open, or by the
    -- rescuer for a batch whose last jobs were cancelled, so the rescuer's
    -- search (`batches_unfinished`) never looks at it again.
    finished     BOOLEAN NOT NULL DEFAULT false
);

-- The rescuer's index before `batches_unfinished`: all batches by
-- touched_at. No query reads batches by touched_at alone any more; it is
-- kept here only because the squash creates the same schema. A forward
-- migration may drop it.
CREATE INDEX batches_touched ON batches (touched_at);
-- Pruning batches: those published before the cutoff.
CREATE INDEX batches_published ON batches (published_at);
-- The rescuer's search: unfinished batches touched before the cutoff,
-- oldest first. It used to find them through `jobs_open_batch` (every open
-- job's entry plus those of the versions a burst had already moved on:
-- 1.8 s a pass during a 1,000,000-job burst), and every batch touched
-- before the cutoff was a candidate, finished or not, for as long as
-- batches were kept (BENCHMARKS.md step 11). This partial index holds only
-- the batches still open.
CREATE INDEX batches_unfinished ON batches (touched_at) WHERE NOT finished;

-- Jobs as their owners see them: the one place that says a job is
-- `running` (queued in a started batch), and where its attempts and start
-- come from until it finishes. Every read that shows a state (API,
-- dashboard, gauges, CLI) goes through it. The join finds a batch only for
-- a queued job (one primary-key probe), so reads of held and finished jobs
-- cost what they would on `jobs`.
CREATE VIEW job_view AS
SELECT j.id, j.tenant_id, j.model, j.input, j.priority, j.timezone, j.user_id, j.metadata,
       j.idempotency_key, j.request_hash,
       CASE WHEN b.started_at IS NOT NULL THEN 'running' ELSE j.state END AS state,
       j.release_at, j.window_closes_at, j.batch_id,
       CASE WHEN b.id IS NOT NULL THEN b.attempts ELSE j.attempts END AS attempts,
       j.max_attempts, j.result, j.error, j.credits, j.cache_hit, j.created_at, j.queued_at,
       COALESCE(b.started_at, j.started_at) AS started_at,
       j.finished_at, j.use_case, j.cache_source, j.cache_key, j.quota_day, j.reserved_credits
FROM jobs j
LEFT JOIN batches b ON b.id = j.batch_id AND j.state = 'queued';

-- ---------------------------------------------------------------------------
-- 5. Write back: the usage ledger
-- ---------------------------------------------------------------------------

-- One row per finished job that cost or saved something (every succeeded
-- job), written by the same statement that gives the job its terminal state
-- (the finish's `UPDATE ... RETURNING` feeds the ledger's `INSERT`), so the
-- ledger always agrees with the jobs table. `/v1/usage` reads only this.
--
-- No foreign key to `jobs`: pruning old jobs keeps their usage.
-- No foreign key to `tenants`: it checked (and share-locked) the tenant's
-- row once per ledger row, 14 µs of the 28 µs a ledger row cost, paid for
-- every finished job (BENCHMARKS.md step 9). Every ledger row is written
-- from a job row of the same tenant, and jobs keep their own foreign key.
CREATE TABLE usage_ledger (
    -- One row per job. The finish's `ON CONFLICT (job_id) DO NOTHING` costs
    -- ~2 µs a row and stays, so that a row left by a manual repair cannot
    -- make a batch's finish fail for ever (BENCHMARKS.md step 15).
    job_id       UUID PRIMARY KEY,
    tenant_id    UUID NOT NULL,
    -- Copied from the job, so usage is read without the jobs table (and
    -- outlives the job's pruning).
    user_id      TEXT,
    model        TEXT NOT NULL,
    use_case     TEXT,
    priority     TEXT NOT NULL CHECK (priority IN ('low', 'normal')),
    -- What the job was charged, and its list price (undiscounted): the
    -- difference is what the off-peak multiplier (or, for a cache hit, the
    -- cache) saved.
    credits      BIGINT NOT NULL CHECK (credits >= 0),
    list_credits BIGINT NOT NULL CHECK (list_credits >= 0),
    cache_hit    BOOLEAN NOT NULL DEFAULT false,
    finished_at  TIMESTAMPTZ NOT NULL
);

-- Usage queries (`/v1/usage`, the dashboard): one tenant's rows in a time
-- range.
CREATE INDEX usage_ledger_tenant_time ON usage_ledger (tenant_id, finished_at);
