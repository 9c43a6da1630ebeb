//! The `jobs` and `batches` tables: submission, reading, cancellation, the
//! release loop's claim, and the worker's start and write-back.
//!
//! Every state change is a guarded `UPDATE ... WHERE state IN (...)`: a job
//! only ever leaves a non-terminal state, so two writers racing (two
//! scheduler replicas, a batch delivered twice) cannot give a job two
//! terminal states or count its credits twice. The loser's update matches no
//! row.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use serde_json::Value;
use sqlx::types::Json;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use offpeak_core::job::{JobState, Priority};

/// A job as stored.
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub input: Value,
    pub priority: String,
    pub timezone: String,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    pub state: String,
    pub release_at: DateTime<Utc>,
    pub window_closes_at: Option<DateTime<Utc>>,
    pub batch_id: Option<Uuid>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub credits: Option<i64>,
    pub cache_hit: bool,
    pub created_at: DateTime<Utc>,
    pub queued_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// The use case of a job submitted with `"model": "auto"`.
    pub use_case: Option<String>,
    /// The job whose result this one got (a cache hit) or waits for (coalesced).
    pub cache_source: Option<Uuid>,
}

/// The columns of [`JobRow`]. Read them `FROM job_view` (migration
/// 20261201000011), which derives `running` from the job's batch; a
/// `RETURNING` of a job just inserted or cancelled, which is never running,
/// may read them from `jobs` itself.
const JOB_COLUMNS: &str = "id, tenant_id, model, input, priority, timezone, user_id, metadata, \
    idempotency_key, request_hash, state, release_at, window_closes_at, batch_id, attempts, \
    max_attempts, result, error, credits, cache_hit, created_at, queued_at, started_at, finished_at, use_case, cache_source";

/// A job about to be inserted; built by the API from a validated request.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub input: Value,
    pub priority: Priority,
    pub timezone: String,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub release_at: DateTime<Utc>,
    pub window_closes_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The use case the model was routed from (`"model": "auto"`).
    pub use_case: Option<String>,
}

/// One input of a submission, with what admission decided for it.
#[derive(Debug, Clone)]
pub struct NewInput {
    pub id: Uuid,
    pub input: Value,
    /// `None` when the submitter opted out of the cache (`"cache": false`).
    pub cache_key: Option<Vec<u8>>,
    pub admitted: Admitted,
}

/// What becomes of an input at submission.
#[derive(Debug, Clone)]
pub enum Admitted {
    /// Stored `held`, waiting for release, with its reservation.
    Held,
    /// Answered at once from the cache: `succeeded`, 0 credits.
    CacheHit(super::cache::CacheHit),
    /// Refused by a quota (a schedule's firing, which has nobody to answer
    /// a 429): stored `failed` with this error, 0 credits.
    Refused(Value),
}

impl Admitted {
    /// The state the job is stored in.
    pub fn state(&self) -> &'static str {
        match self {
            Admitted::Held => "held",
            Admitted::CacheHit(_) => "succeeded",
            Admitted::Refused(_) => "failed",
        }
    }
}

/// How a submission counts against quotas and what its cache hits saved.
#[derive(Debug, Clone, Copy, Default)]
pub struct Admission {
    /// The tenant's day the jobs count against (`None`: none, e.g. a refused firing).
    pub quota_day: Option<chrono::NaiveDate>,
    /// Credits reserved for each held job (its price at submission).
    pub reserved_per_job: i64,
    /// The model's list price, recorded as saved for each cache hit.
    pub list_price: i64,
}

/// The outcome of inserting a job under an `Idempotency-Key`.
#[derive(Debug)]
pub enum InsertOutcome {
    Inserted(JobRow),
    /// A job with this key exists; the caller compares its request hash.
    Existing(JobRow),
}

/// The INSERT every submission path shares (API single and bulk, schedule
/// firings): per-row id, input, cache key, state and cached result through
/// `unnest`, the rest from the template, plus the usage ledger rows of the
/// cache hits, in one statement. `{returning}` is the caller's column list.
fn insert_sql(returning: &str) -> String {
    format!(
        "WITH ins AS (
             INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, user_id, metadata,
                 idempotency_key, request_hash, state, release_at, window_closes_at, max_attempts, created_at, use_case,
                 cache_key, cache_source, result, error, cache_hit, credits, finished_at, quota_day, reserved_credits)
             SELECT u.id, $6, $7, u.input, $8, $9, $10, $11,
                 $12, $13, u.state, $14, $15, $16, $17, $18,
                 u.cache_key, u.source, u.result, u.error, u.state = 'succeeded',
                 CASE WHEN u.state = 'held' THEN NULL ELSE 0 END,
                 CASE WHEN u.state = 'held' THEN NULL ELSE $17 END,
                 $19, CASE WHEN u.state = 'held' THEN $20 ELSE 0 END
             FROM unnest($1::uuid[], $2::jsonb[], $3::bytea[], $4::text[], $5::uuid[], $21::jsonb[], $22::jsonb[])
                  AS u(id, input, cache_key, state, source, result, error)
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING *
         ),
         {ledger}
         SELECT {returning} FROM ins",
        ledger = ledger_of_cache_hits("$23", "ins")
    )
}

/// The CTE that writes the usage ledger rows of the cache hits among the
/// jobs an `ins` CTE inserted: 0 credits, `list` (an SQL expression over
/// `from`) as the list price they saved.
fn ledger_of_cache_hits(list: &str, from: &str) -> String {
    format!(
        "ledger AS (
             INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority,
                                       credits, list_credits, cache_hit, finished_at)
             SELECT ins.id, ins.tenant_id, ins.user_id, ins.model, ins.use_case, ins.priority, 0, {list}, true, ins.finished_at
             FROM {from} WHERE ins.cache_hit
         )"
    )
}

/// Inserts jobs that share nothing (each its own tenant, model, template
/// and admission; none under an `Idempotency-Key`) in one statement, every
/// column through `unnest`: the group commit of single submissions (see the
/// scheduler's `group_commit`). Returns the rows in the order given.
///
/// # Errors
/// Database errors only; nothing is inserted then.
pub async fn insert_each(conn: &mut PgConnection, jobs: &[(&NewJob, &NewInput, &Admission)]) -> Result<Vec<JobRow>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::jsonb[], $5::text[], $6::text[], $7::text[],
                                  $8::jsonb[], $9::text[], $10::timestamptz[], $11::timestamptz[], $12::int4[],
                                  $13::timestamptz[], $14::text[], $15::bytea[], $16::uuid[], $17::jsonb[], $18::jsonb[],
                                  $19::date[], $20::int8[], $21::int8[])
                 AS u(id, tenant_id, model, input, priority, timezone, user_id, metadata, state, release_at,
                      window_closes_at, max_attempts, created_at, use_case, cache_key, source, result, error,
                      quota_day, reserved, list)
         ),
         ins AS (
             INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, user_id, metadata,
                 state, release_at, window_closes_at, max_attempts, created_at, use_case,
                 cache_key, cache_source, result, error, cache_hit, credits, finished_at, quota_day, reserved_credits)
             SELECT id, tenant_id, model, input, priority, timezone, user_id, metadata,
                 state, release_at, window_closes_at, max_attempts, created_at, use_case,
                 cache_key, source, result, error, state = 'succeeded',
                 CASE WHEN state = 'held' THEN NULL ELSE 0 END,
                 CASE WHEN state = 'held' THEN NULL ELSE created_at END,
                 quota_day, CASE WHEN state = 'held' THEN reserved ELSE 0 END
             FROM u
             RETURNING *
         ),
         {ledger}
         SELECT {JOB_COLUMNS} FROM ins",
        ledger = ledger_of_cache_hits("u.list", "ins JOIN u USING (id)")
    );
    let (mut ids, mut tenants, mut models, mut inputs, mut priorities, mut timezones, mut users, mut metadata) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut states, mut release_at, mut closes_at, mut attempts, mut created_at, mut use_cases) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let (mut keys, mut sources, mut results, mut errors, mut days, mut reserved, mut lists) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (t, i, a) in jobs {
        ids.push(i.id);
        tenants.push(t.tenant_id);
        models.push(t.model.as_str());
        inputs.push(&i.input);
        priorities.push(t.priority.as_str());
        timezones.push(t.timezone.as_str());
        users.push(t.user_id.as_deref());
        metadata.push(t.metadata.as_ref());
        states.push(i.admitted.state());
        release_at.push(t.release_at);
        closes_at.push(t.window_closes_at);
        attempts.push(t.max_attempts);
        created_at.push(t.created_at);
        use_cases.push(t.use_case.as_deref());
        keys.push(i.cache_key.as_deref());
        sources.push(if let Admitted::CacheHit(h) = &i.admitted { Some(h.source) } else { None });
        results.push(if let Admitted::CacheHit(h) = &i.admitted { Some(&h.result) } else { None });
        errors.push(if let Admitted::Refused(e) = &i.admitted { Some(e) } else { None });
        days.push(a.quota_day);
        reserved.push(a.reserved_per_job);
        lists.push(a.list_price);
    }
    let rows = sqlx::query_as::<_, JobRow>(&sql)
        .bind(&ids)
        .bind(tenants)
        .bind(models)
        .bind(inputs)
        .bind(priorities)
        .bind(timezones)
        .bind(users)
        .bind(metadata)
        .bind(states)
        .bind(release_at)
        .bind(closes_at)
        .bind(attempts)
        .bind(created_at)
        .bind(use_cases)
        .bind(keys)
        .bind(sources)
        .bind(results)
        .bind(errors)
        .bind(days)
        .bind(reserved)
        .bind(lists)
        .fetch_all(conn)
        .await?;
    let mut by_id: std::collections::HashMap<Uuid, JobRow> = rows.into_iter().map(|r| (r.id, r)).collect();
    ids.iter()
        .map(|id| by_id.remove(id).ok_or_else(|| sqlx::Error::Protocol(format!("job {id} was not returned by its insert"))))
        .collect()
}

fn bind_insert<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    t: &'q NewJob,
    inputs: &'q [NewInput],
    a: &Admission,
    idempotency: Option<(&'q str, &'q [u8])>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let ids: Vec<Uuid> = inputs.iter().map(|i| i.id).collect();
    let values: Vec<&Value> = inputs.iter().map(|i| &i.input).collect();
    let keys: Vec<Option<&[u8]>> = inputs.iter().map(|i| i.cache_key.as_deref()).collect();
    let states: Vec<&str> = inputs.iter().map(|i| i.admitted.state()).collect();
    let sources: Vec<Option<Uuid>> =
        inputs.iter().map(|i| if let Admitted::CacheHit(h) = &i.admitted { Some(h.source) } else { None }).collect();
    let results: Vec<Option<&Value>> =
        inputs.iter().map(|i| if let Admitted::CacheHit(h) = &i.admitted { Some(&h.result) } else { None }).collect();
    let errors: Vec<Option<&Value>> =
        inputs.iter().map(|i| if let Admitted::Refused(e) = &i.admitted { Some(e) } else { None }).collect();
    let (key, hash) = idempotency.map_or((None, None), |(k, h)| (Some(k), Some(h)));
    q.bind(ids)
        .bind(values)
        .bind(keys)
        .bind(states)
        .bind(sources)
        .bind(t.tenant_id)
        .bind(&t.model)
        .bind(t.priority.as_str())
        .bind(&t.timezone)
        .bind(&t.user_id)
        .bind(&t.metadata)
        .bind(key)
        .bind(hash)
        .bind(t.release_at)
        .bind(t.window_closes_at)
        .bind(t.max_attempts)
        .bind(t.created_at)
        .bind(&t.use_case)
        .bind(a.quota_day)
        .bind(a.reserved_per_job)
        .bind(results)
        .bind(errors)
        .bind(a.list_price)
}

/// Inserts one job, in the caller's transaction, or returns the job that
/// already holds its idempotency key.
///
/// # Errors
/// Database errors only.
pub async fn insert_one(
    conn: &mut PgConnection,
    template: &NewJob,
    input: &NewInput,
    admission: &Admission,
    idempotency: Option<(&str, &[u8])>,
) -> Result<InsertOutcome, sqlx::Error> {
    let sql = insert_sql(JOB_COLUMNS);
    let inputs = std::slice::from_ref(input);
    let inserted =
        bind_insert(sqlx::query_as::<_, JobRow>(&sql), template, inputs, admission, idempotency).fetch_optional(&mut *conn).await?;
    if let Some(row) = inserted {
        return Ok(InsertOutcome::Inserted(row));
    }
    // The key is taken. The conflicting row is committed (ON CONFLICT waited
    // for any concurrent inserter), so this read finds it.
    let sql = format!("SELECT {JOB_COLUMNS} FROM job_view WHERE tenant_id = $1 AND idempotency_key = $2");
    let existing = sqlx::query_as::<_, JobRow>(&sql)
        .bind(template.tenant_id)
        .bind(idempotency.map(|(k, _)| k))
        .fetch_one(&mut *conn)
        .await?;
    Ok(InsertOutcome::Existing(existing))
}

/// Inserts many jobs that share everything but id and input (and what
/// admission decided for each), in one statement: all or none. Returns how
/// many were cache hits.
///
/// # Errors
/// Database errors only; nothing is inserted then.
pub async fn insert_many(
    conn: &mut PgConnection,
    template: &NewJob,
    inputs: &[NewInput],
    admission: &Admission,
) -> Result<u64, sqlx::Error> {
    let sql = insert_sql("count(*) FILTER (WHERE cache_hit)");
    let (hits,): (i64,) =
        bind_insert(sqlx::query_as::<_, (i64,)>(&sql), template, inputs, admission, None).fetch_one(conn).await?;
    Ok(hits as u64)
}

/// The tenant's job that holds an `Idempotency-Key`, if any.
pub async fn by_idempotency_key<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, key: &str) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM job_view WHERE tenant_id = $1 AND idempotency_key = $2");
    sqlx::query_as::<_, JobRow>(&sql).bind(tenant_id).bind(key).fetch_optional(db).await
}

/// One of the tenant's jobs.
pub async fn get<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM job_view WHERE tenant_id = $1 AND id = $2");
    sqlx::query_as::<_, JobRow>(&sql).bind(tenant_id).bind(id).fetch_optional(db).await
}

/// Any job by id, whatever its tenant (operators and tests only).
pub async fn get_any<'e>(db: impl PgExecutor<'e>, id: Uuid) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM job_view WHERE id = $1");
    sqlx::query_as::<_, JobRow>(&sql).bind(id).fetch_optional(db).await
}

/// Filters of a job listing.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<JobState>,
    pub model: Option<String>,
    /// Return jobs older than this id (the previous page's last id).
    pub before: Option<Uuid>,
    pub limit: i64,
}

/// The tenant's jobs, newest first. Ids are UUIDv7, so id order is creation
/// order and the last id of a page is the cursor of the next.
pub async fn list<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, f: &ListFilter) -> Result<Vec<JobRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM job_view
         WHERE tenant_id = $1
           AND ($2::text IS NULL OR state = $2)
           AND ($3::text IS NULL OR model = $3)
           AND ($4::uuid IS NULL OR id < $4)
         ORDER BY id DESC
         LIMIT $5"
    );
    sqlx::query_as::<_, JobRow>(&sql)
        .bind(tenant_id)
        .bind(f.state.map(JobState::as_str))
        .bind(&f.model)
        .bind(f.before)
        .bind(f.limit)
        .fetch_all(db)
        .await
}

#[derive(Debug)]
pub enum CancelOutcome {
    Cancelled(JobRow),
    NotFound,
    /// The job exists but a worker has started it or it has finished.
    NotCancellable(JobRow),
}

/// Cancels a job that has not started.
pub async fn cancel(pool: &PgPool, tenant_id: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<CancelOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Lock first (see `cache::lock_leaders`): a release round attaching
    // followers to this job commits before the update below looks for them.
    let locked: Option<(String, Option<Uuid>)> =
        sqlx::query_as("SELECT state, batch_id FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((state, batch_id)) = locked else {
        return Ok(CancelOutcome::NotFound);
    };
    let cancellable = match (state.as_str(), batch_id) {
        ("queued", Some(batch_id)) => hold_unstarted_batches(&mut tx, &[batch_id]).await?.contains(&batch_id),
        _ => true,
    };
    let cancelled = if cancellable {
        // A cancelled leader's followers go back to `held`: the next round
        // makes one of them the leader.
        let sql = format!(
            "WITH c AS (
                 UPDATE jobs SET state = 'cancelled', finished_at = $3
                 WHERE tenant_id = $1 AND id = $2 AND state IN ('held', 'queued')
                 RETURNING {JOB_COLUMNS}
             ),
             freed AS ({FREE_FOLLOWERS_OF_C})
             SELECT {JOB_COLUMNS} FROM c"
        );
        sqlx::query_as::<_, JobRow>(&sql).bind(tenant_id).bind(id).bind(now).fetch_optional(&mut *tx).await?
    } else {
        None
    };
    let outcome = match cancelled {
        Some(row) => CancelOutcome::Cancelled(row),
        None => match get(&mut *tx, tenant_id, id).await? {
            Some(row) => CancelOutcome::NotCancellable(row),
            None => CancelOutcome::NotFound,
        },
    };
    tx.commit().await?;
    Ok(outcome)
}

/// Of these batches, the ones no worker has started, each held unstarted
/// until the caller's transaction ends: a cancel of their queued jobs is
/// then safe from a start in between.
///
/// A worker's start takes the batch's lock ([`lock_batch`]) and then reads
/// which of its jobs are still `queued`, without locking their rows; so a
/// cancel takes the same lock, shared, and the start waits for the cancel
/// to commit and leaves the cancelled jobs out. It only *tries* the lock:
/// an exclusive holder is a worker starting, retrying or finishing the
/// batch, so the batch counts as started, and a cancel that holds job rows
/// never waits for a finish that waits for those rows. Then a new
/// statement, which sees a start that committed before the lock, reads
/// `started_at`.
///
/// # Errors
/// Database errors only.
pub(crate) async fn hold_unstarted_batches(conn: &mut PgConnection, batch_ids: &[Uuid]) -> Result<Vec<Uuid>, sqlx::Error> {
    let mut ids = batch_ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    let keys: Vec<i64> = ids.iter().copied().map(batch_lock_key).collect();
    let held: Vec<Uuid> = sqlx::query_scalar(
        "SELECT u.id FROM unnest($1::uuid[], $2::bigint[]) WITH ORDINALITY AS u(id, k, n)
         WHERE pg_try_advisory_xact_lock_shared(u.k) ORDER BY u.n",
    )
    .bind(&ids)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    sqlx::query_scalar("SELECT id FROM batches WHERE id = ANY($1) AND started_at IS NULL")
        .bind(&held)
        .fetch_all(&mut *conn)
        .await
}

/// The SQL of a CTE that puts the followers of the jobs of a CTE `c` (just
/// cancelled) back to `held`, except those cancelled themselves.
pub(crate) const FREE_FOLLOWERS_OF_C: &str = "UPDATE jobs SET state = 'held', cache_source = NULL, queued_at = NULL
             WHERE cache_source IN (SELECT id FROM c) AND state = 'queued' AND id NOT IN (SELECT id FROM c)";

/// A job claimed for release.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    /// For the cache and coalescing step of the release.
    pub cache_key: Option<Vec<u8>>,
}

/// The name the release lock ([`lock_release`]) is keyed by
/// (`hashtextextended(name, 0)`), bound as a parameter by every statement
/// that takes it.
const RELEASE_LOCK_NAME: &str = "offpeak/release";

/// Takes the release lock for the caller's transaction, waiting for another
/// replica's round to end: release rounds run one at a time across replicas
/// (as River runs its scheduler on one leader), so [`claim_due`] can read
/// due jobs without locking them. A round is bound by PostgreSQL's writes,
/// so a second one in parallel on the same server would not add throughput;
/// row locks on 5,000 claimed jobs did cost a tuple write and a WAL record
/// each (claim 61–91 ms with them, 19–28 ms without, per round of 5,000 on
/// 300,000 held jobs; BENCHMARKS.md).
///
/// # Errors
/// Database errors only.
pub async fn lock_release(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(RELEASE_LOCK_NAME).execute(conn).await?;
    Ok(())
}

/// What one round's claim read ([`claim_due`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claim {
    pub jobs: Vec<ClaimedJob>,
    /// The most jobs each tenant could get this round: `total` split evenly
    /// between the tenants with due jobs, at least 1 and at most
    /// `per_tenant`.
    pub share: i64,
}

impl Claim {
    /// Whether more may be due: the round reached `total`, or some tenant
    /// got its whole share (it may have more).
    pub fn may_have_more(&self, total: i64) -> bool {
        if self.jobs.len() as i64 >= total {
            return true;
        }
        let mut per_tenant: std::collections::HashMap<Uuid, i64> = std::collections::HashMap::new();
        for j in &self.jobs {
            *per_tenant.entry(j.tenant_id).or_default() += 1;
        }
        per_tenant.values().any(|&n| n >= self.share)
    }
}

#[derive(FromRow)]
struct ClaimRow {
    #[sqlx(flatten)]
    job: ClaimedJob,
    share: i64,
}

/// Reads each tenant's share of the due jobs, `total` in all. The caller
/// holds the release lock ([`lock_release`]), so no other round reads
/// them; they are not locked, so every write that follows re-checks that a
/// job is still `held` (a job cancelled since this read is skipped).
///
/// Fairness: `total` is split evenly between the tenants that have due
/// jobs (at most `per_tenant` each), each tenant's oldest first, so one
/// tenant's million-job backlog cannot starve another's ten jobs, and
/// tenants are visited in random order for the few jobs the rounding
/// leaves over.
///
/// An even split is also what keeps a round's writes together on disk.
/// Work arrives from many tenants at once, so a tenant's jobs lie far
/// apart in the table and the oldest due jobs of all tenants lie together.
/// With 1,000 tenants, a round that took 1,000 jobs of each of 5 of them
/// wrote 5,000 rows on as many pages, and so did each finish of its
/// batches; 5 jobs of each of the 1,000 writes a few hundred pages
/// (BENCHMARKS.md step 12).
///
/// # Errors
/// Database errors only.
pub async fn claim_due(conn: &mut PgConnection, now: DateTime<Utc>, per_tenant: i64, total: i64) -> Result<Claim, sqlx::Error> {
    let rows = sqlx::query_as::<_, ClaimRow>(
        "WITH due AS MATERIALIZED (
             SELECT t.id FROM tenants t
             WHERE EXISTS (
                 SELECT 1 FROM jobs
                 WHERE tenant_id = t.id AND state = 'held' AND release_at <= $1
                   AND (window_closes_at IS NULL OR window_closes_at > $1)
             )
             ORDER BY random()
         ),
         share AS (
             SELECT LEAST($2, GREATEST(1, ceil($3::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due
         )
         SELECT j.id, d.id AS tenant_id, j.model, j.cache_key, s.n AS share
         FROM due d CROSS JOIN share s
         CROSS JOIN LATERAL (
             SELECT id, model, cache_key FROM jobs
             WHERE tenant_id = d.id AND state = 'held' AND release_at <= $1
               AND (window_closes_at IS NULL OR window_closes_at > $1)
             ORDER BY release_at, id
             LIMIT s.n
         ) j
         LIMIT $3",
    )
    .bind(now)
    .bind(per_tenant)
    .bind(total)
    .fetch_all(conn)
    .await?;
    let share = rows.first().map_or(per_tenant, |r| r.share);
    Ok(Claim { jobs: rows.into_iter().map(|r| r.job).collect(), share })
}

/// A batch the release loop is about to publish.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: Uuid,
    pub model: String,
    pub job_ids: Vec<Uuid>,
}

/// Moves a batch's jobs that are still `held` to `queued` and records the
/// batch, in the caller's transaction. Returns the jobs moved.
pub async fn mark_queued(
    conn: &mut PgConnection,
    batch_id: Uuid,
    model: &str,
    job_ids: &[Uuid],
    now: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let batch = NewBatch { id: batch_id, model: model.to_owned(), job_ids: job_ids.to_vec() };
    let queued = mark_queued_many(conn, std::slice::from_ref(&batch), now).await?;
    Ok(queued.iter().map(|b| b.job_ids.len() as u64).sum())
}

/// Moves the jobs of every batch of a release round that are still `held`
/// to `queued`, and records the batches that got jobs, in the caller's
/// transaction: two set-based statements per round, whatever the number of
/// batches. Returns those batches with the jobs actually moved, in their
/// order: a job cancelled since the claim is left out of its batch's
/// message and count.
pub async fn mark_queued_many(conn: &mut PgConnection, batches: &[NewBatch], now: DateTime<Utc>) -> Result<Vec<NewBatch>, sqlx::Error> {
    let job_ids: Vec<Uuid> = batches.iter().flat_map(|b| b.job_ids.iter().copied()).collect();
    let batch_of: Vec<Uuid> = batches.iter().flat_map(|b| std::iter::repeat_n(b.id, b.job_ids.len())).collect();
    // `j.id = ANY($1)` repeats the join condition on purpose: it gives the
    // planner an index condition on jobs. Without it, knowing the array
    // holds 5,000 ids, PostgreSQL chose a merge join that read the whole
    // primary key in order (169 ms of a 5,000-job round at 100,000 jobs,
    // growing with the table); with it, 5,000 index probes (33 ms).
    let moved: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE jobs j SET state = 'queued', batch_id = u.batch_id, queued_at = $3
         FROM unnest($1::uuid[], $2::uuid[]) AS u(id, batch_id)
         WHERE j.id = u.id AND j.id = ANY($1) AND j.state = 'held'
         RETURNING j.id",
    )
    .bind(&job_ids)
    .bind(&batch_of)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let moved: std::collections::HashSet<Uuid> = moved.into_iter().collect();
    let queued: Vec<NewBatch> = batches
        .iter()
        .map(|b| NewBatch { id: b.id, model: b.model.clone(), job_ids: b.job_ids.iter().copied().filter(|id| moved.contains(id)).collect() })
        .filter(|b| !b.job_ids.is_empty())
        .collect();
    let ids: Vec<Uuid> = queued.iter().map(|b| b.id).collect();
    let models: Vec<&str> = queued.iter().map(|b| b.model.as_str()).collect();
    let counts: Vec<i32> = queued.iter().map(|b| b.job_ids.len() as i32).collect();
    sqlx::query(
        "INSERT INTO batches (id, model, job_count, published_at, touched_at)
         SELECT id, model, job_count, $4, $4 FROM unnest($1::uuid[], $2::text[], $3::int[]) AS u(id, model, job_count)",
    )
    .bind(&ids)
    .bind(&models)
    .bind(&counts)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(queued)
}

/// A timezone and tenant window (`None`: the deployment's) of held jobs
/// whose window closed before they were released.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ExpiredGroup {
    pub timezone: String,
    pub window_start: Option<String>,
    pub window_end: Option<String>,
}

/// The distinct (timezone, tenant window) pairs of held jobs whose window
/// closed before they were released; the release loop computes each
/// pair's next window once.
///
/// Runs every release round, so the usual answer (nothing expired) must be
/// cheap whatever the backlog: first whether any held job's window closed
/// by `now`, a range scan of the partial index `jobs_held_window` that stops
/// at its first entry closing later. Only when one has does the `DISTINCT`
/// run.
///
/// The check is sent unprepared (`persistent(false)`), so PostgreSQL plans
/// it with `now`'s value every time. As one prepared statement, the
/// `DISTINCT` got a generic plan after five runs that scanned the whole
/// table: 3 to 6 s per round with a million held jobs. The check used to
/// avoid a parameter instead, reading the earliest closing from the start
/// of the index and comparing it here; but that walks every entry of the
/// jobs released since the last vacuum, which the release leaves at the
/// start of the index: 13 ms a round at the end of a 1,000,000-job burst,
/// in the release's one connection (BENCHMARKS.md step 14).
pub async fn expired_held_groups(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<ExpiredGroup>, sqlx::Error> {
    let expired: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE state = 'held' AND window_closes_at <= $1)",
    )
    .bind(now)
    .persistent(false)
    .fetch_one(pool)
    .await?;
    if !expired {
        return Ok(Vec::new());
    }
    sqlx::query_as(
        "SELECT DISTINCT j.timezone, t.window_start, t.window_end
         FROM jobs j JOIN tenants t ON t.id = j.tenant_id
         WHERE j.state = 'held' AND j.window_closes_at <= $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await
}

/// Moves the held jobs of one (timezone, tenant window) group whose window
/// has closed to the next window.
pub async fn roll_over<'e>(
    db: impl PgExecutor<'e>,
    now: DateTime<Utc>,
    group: &ExpiredGroup,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "UPDATE jobs j SET release_at = $3, window_closes_at = $4
         FROM tenants t
         WHERE t.id = j.tenant_id AND j.state = 'held' AND j.window_closes_at <= $1 AND j.timezone = $2
           AND t.window_start IS NOT DISTINCT FROM $5 AND t.window_end IS NOT DISTINCT FROM $6",
    )
    .bind(now)
    .bind(&group.timezone)
    .bind(opens_at)
    .bind(closes_at)
    .bind(&group.window_start)
    .bind(&group.window_end)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// A job a worker is about to send to the provider.
#[derive(Debug, Clone, FromRow)]
pub struct StartedJob {
    pub id: Uuid,
    /// The job's input as the JSON text PostgreSQL returns, passed to the
    /// provider as it is. The worker never looks inside an input, and
    /// parsing each one into a `serde_json::Value` tree (and cloning it for
    /// every attempt) was most of the worker's allocations in the 02:00
    /// burst (BENCHMARKS.md step 16).
    pub input: Json<Box<RawValue>>,
    pub attempts: i32,
    pub max_attempts: i32,
    /// `low` or `normal`: whether the off-peak multiplier applies.
    pub priority: String,
}

/// What a worker does when a batch arrives: starts the batch, counts its
/// first provider attempt, and returns its jobs still to do.
///
/// The start is one write of the batch's row (`started_at` the first time,
/// `attempts + 1` every time), not of its jobs: a `queued` job of a started
/// batch is `running` (migration 20261201000011, `job_view`). The jobs are
/// found by the ids the message carries and this batch id, and only those
/// still `queued`: jobs finished (a redelivered batch) or cancelled are not
/// sent again. A batch started before (its worker died, or the rescuer
/// published it again) starts again, and the provider's idempotency key,
/// the batch id, makes the replayed call free. Runs under the batch's lock
/// ([`lock_batch`]), which a cancel of its queued jobs takes too.
///
/// The release publishes a batch *before* it commits, so a worker fast
/// enough may read the jobs before they have this batch id. Then nothing
/// starts, and the worker waits for the release round in progress to end:
/// it takes the release lock ([`lock_release`]) shared and lets it go at
/// once, holding no lock of the batch, and tries again, which then sees
/// the committed round. If the round rolled back, the message was an
/// orphan and nothing starts. (It waited on the jobs' row locks before,
/// `FOR UPDATE`, which wrote a lock into every job row: 8% of the batches
/// of a 1,000,000-job burst came this way; BENCHMARKS.md step 11.)
///
/// # Errors
/// Database errors only.
pub async fn start_attempt(pool: &PgPool, batch_id: Uuid, job_ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<StartedJob>, sqlx::Error> {
    let started = try_start(pool, batch_id, job_ids, now).await?;
    if !started.is_empty() {
        return Ok(started);
    }
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))")
        .bind(RELEASE_LOCK_NAME)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    try_start(pool, batch_id, job_ids, now).await
}

async fn try_start(pool: &PgPool, batch_id: Uuid, job_ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<StartedJob>, sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    let started = sqlx::query_as::<_, StartedJob>(
        "WITH open AS (
             SELECT id, input, max_attempts, priority FROM jobs
             WHERE id = ANY($2) AND batch_id = $1 AND state = 'queued'
         ),
         b AS (
             UPDATE batches SET started_at = COALESCE(started_at, $3), attempts = attempts + 1, touched_at = $3
             WHERE id = $1 AND EXISTS (SELECT 1 FROM open)
             RETURNING attempts
         )
         SELECT open.id, open.input, b.attempts, open.max_attempts, open.priority FROM open CROSS JOIN b",
    )
    .bind(batch_id)
    .bind(job_ids)
    .bind(now)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(started)
}

/// Begins a transaction holding the batch's lock, waiting for any other
/// holder. Every write a worker makes for a batch (start, attempt,
/// transient error, finish) runs in one, so two deliveries of one batch
/// write one after the other instead of locking its jobs' rows in
/// different orders (a deadlock); and a release round attaching followers
/// to a job of the batch holds the lock shared (see `cache::lock_leaders`),
/// so the finish sees them. An advisory lock, taken in memory: it writes
/// nothing to the jobs' rows.
///
/// # Errors
/// Database errors only.
pub async fn lock_batch(pool: &PgPool, batch_id: Uuid) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(batch_lock_key(batch_id)).execute(&mut *tx).await?;
    Ok(tx)
}

/// The key of a batch's advisory lock ([`lock_batch`]): the two halves of
/// its id folded into one `bigint` (a collision only makes one holder wait
/// for the other).
pub(crate) fn batch_lock_key(batch_id: Uuid) -> i64 {
    let v = batch_id.as_u128();
    ((v >> 64) as u64 ^ v as u64) as i64
}

/// Counts one more provider attempt for the batch (the same for all its
/// jobs, which are sent together) and marks it as making progress, under
/// the batch's lock.
///
/// # Errors
/// Database errors only.
pub async fn begin_attempt(pool: &PgPool, batch_id: Uuid, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    sqlx::query("UPDATE batches SET attempts = attempts + 1, touched_at = $2 WHERE id = $1")
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// A batch with unfinished jobs that nobody has touched since `cutoff`.
#[derive(Debug, Clone, FromRow)]
pub struct StaleBatch {
    pub id: Uuid,
    pub model: String,
    /// Its jobs still `queued` or `running`.
    pub job_ids: Vec<Uuid>,
}

/// Locks up to `limit` stale batches for the caller's transaction (`SKIP
/// LOCKED`: scheduler replicas rescue disjoint batches) and returns them with
/// their unfinished jobs.
///
/// Candidates are the batches not `finished` (migration 20261201000012)
/// touched before `cutoff`, oldest first; those of them with no open job
/// left (their last jobs were cancelled) are marked `finished` on the way,
/// so no pass looks at them again.
pub async fn claim_stale_batches(conn: &mut PgConnection, cutoff: DateTime<Utc>, limit: i64) -> Result<Vec<StaleBatch>, sqlx::Error> {
    sqlx::query_as::<_, StaleBatch>(
        "WITH candidates AS MATERIALIZED (
             SELECT b.id, b.model, b.touched_at FROM batches b
             WHERE NOT b.finished AND b.touched_at < $1
             ORDER BY b.touched_at
             LIMIT $2
             FOR UPDATE OF b SKIP LOCKED
         ),
         stale AS MATERIALIZED (
             SELECT c.id, c.model, c.touched_at, array_agg(j.id ORDER BY j.id) AS job_ids
             FROM candidates c JOIN jobs j ON j.batch_id = c.id AND j.state IN ('queued', 'running')
             GROUP BY c.id, c.model, c.touched_at
         ),
         closed AS (
             UPDATE batches SET finished = true
             WHERE id IN (SELECT id FROM candidates) AND id NOT IN (SELECT id FROM stale)
         )
         SELECT id, model, job_ids FROM stale ORDER BY touched_at",
    )
    .bind(cutoff)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// Records that a stale batch was published again.
pub async fn mark_republished(conn: &mut PgConnection, batch_ids: &[Uuid], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE batches SET touched_at = $2, republished = republished + 1 WHERE id = ANY($1)")
        .bind(batch_ids)
        .bind(now)
        .execute(conn)
        .await?;
    Ok(())
}

/// Keeps the last transient error on the batch's unfinished (running) jobs, so a client polling
/// a job that is being retried can see why. Under the batch's lock.
pub async fn record_transient_error(pool: &PgPool, batch_id: Uuid, error: &Value) -> Result<u64, sqlx::Error> {
    let mut tx = lock_batch(pool, batch_id).await?;
    let res = sqlx::query("UPDATE jobs SET error = $2 WHERE batch_id = $1 AND state = 'queued'")
        .bind(batch_id)
        .bind(error)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(res.rows_affected())
}

/// The final outcome of one job of a batch.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub id: Uuid,
    pub state: JobState,
    /// The provider's output, as the JSON text it sent (PostgreSQL parses
    /// it into `jsonb`; the worker does not need it as a tree).
    pub result: Option<Box<RawValue>>,
    pub error: Option<Value>,
    /// Credits charged.
    pub credits: i64,
    /// The list price (undiscounted) of what was charged; `credits` for a
    /// job that cost nothing.
    pub list_credits: i64,
}

/// What [`finish`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finished {
    /// The batch's jobs written (still `running` in this batch until now).
    pub written: Vec<Uuid>,
    /// Followers (coalesced identical jobs) answered with a leader's result.
    pub followers_succeeded: u64,
    /// Followers failed with a leader's permanent error.
    pub followers_failed: u64,
    /// Followers of a dead leader, back to `held` for a chance of their own.
    pub followers_requeued: u64,
}

/// Writes the outcomes of a batch, the outcomes of the jobs coalesced with
/// its jobs (see [`super::cache`]), and the usage ledger rows of the jobs
/// that succeeded, in one statement. Only jobs still running in this
/// batch (`queued` in it, once it has started) are written, each with the
/// batch's `started_at` and `attempts`; the batch is marked `finished` when
/// none of its jobs is left open, and only the jobs written get a ledger row, so a
/// second delivery of the same batch writes nothing and counts no credits
/// twice, and the ledger always agrees with the jobs table.
/// `list_price` is the model's list price, recorded as what the cache saved
/// for each follower that succeeded.
pub async fn finish(
    pool: &PgPool,
    batch_id: Uuid,
    outcomes: &[Outcome],
    list_price: i64,
    now: DateTime<Utc>,
) -> Result<Finished, sqlx::Error> {
    let ids: Vec<Uuid> = outcomes.iter().map(|o| o.id).collect();
    let states: Vec<&str> = outcomes.iter().map(|o| o.state.as_str()).collect();
    let results: Vec<Option<Json<&RawValue>>> = outcomes.iter().map(|o| o.result.as_deref().map(Json)).collect();
    let errors: Vec<Option<Value>> = outcomes.iter().map(|o| o.error.clone()).collect();
    let credits: Vec<i64> = outcomes.iter().map(|o| o.credits).collect();
    let list_credits: Vec<i64> = outcomes.iter().map(|o| o.list_credits).collect();
    // Take the batch's lock first, in a statement of its own: a release
    // round that is attaching followers to its jobs holds it shared, so this
    // waits for the round to commit, and the statement below, with a new
    // snapshot, finds those followers (see `cache::lock_leaders`).
    let mut tx = lock_batch(pool, batch_id).await?;
    // The batch's jobs are reached only through the primary key, from the
    // ids given: `j.batch_id IS NOT DISTINCT FROM $1` (the same as `=`, as
    // $1 is never NULL) is a filter no index can serve. With `=`,
    // PostgreSQL's generic plan for the prepared statement (used after
    // five runs) read the batch's jobs through `jobs_open_batch`, which
    // statistics can say holds one row (when taken while every job was
    // held, as before a burst), and joined them to `unnest(...)` by a
    // nested loop that unnested all six arrays, results included, once per
    // job: 100 × 100 rows, 37 of the 42 ms a finish took in the 02:00 burst
    // (auto_explain, BENCHMARKS.md step 10). Forcing a custom plan per call
    // fixed that but planned every finish again, about 1 ms of CPU for 100
    // jobs; with the primary key as the only path the generic plan is the
    // good one, and is kept (step 13).
    //
    // The ledger INSERT reads the UPDATEs' RETURNING: the rows it writes are
    // exactly the jobs this statement moved to a terminal state. A job never
    // leaves a terminal state, so `ON CONFLICT` cannot match; it is there so
    // that a row left by an operator's manual repair cannot block the write.
    let rows: Vec<(Uuid, Option<String>)> = sqlx::query_as(
        "WITH done AS (
             UPDATE jobs j SET state = u.state, result = u.result, error = u.error,
                    credits = u.credits, finished_at = $6, started_at = b.started_at, attempts = b.attempts
             FROM unnest($2::uuid[], $3::text[], $4::jsonb[], $5::jsonb[], $7::bigint[], $8::bigint[])
                  AS u(id, state, result, error, credits, list_credits),
                  batches b
             WHERE b.id = $1 AND b.started_at IS NOT NULL
               AND j.id = u.id AND j.batch_id IS NOT DISTINCT FROM $1 AND j.state = 'queued'
             RETURNING j.id, j.tenant_id, j.user_id, j.model, j.use_case, j.priority, j.state,
                       j.credits, u.list_credits, j.cache_hit, j.finished_at, j.result, j.error
         ),
         followers AS (
             UPDATE jobs f SET
                 state = CASE WHEN d.state IN ('succeeded', 'failed') THEN d.state ELSE 'held' END,
                 result = CASE WHEN d.state = 'succeeded' THEN d.result END,
                 error = CASE WHEN d.state = 'failed' THEN d.error ELSE f.error END,
                 cache_hit = (d.state = 'succeeded'),
                 credits = CASE WHEN d.state IN ('succeeded', 'failed') THEN 0 END,
                 finished_at = CASE WHEN d.state IN ('succeeded', 'failed') THEN $6 END,
                 cache_source = CASE WHEN d.state IN ('succeeded', 'failed') THEN f.cache_source END,
                 queued_at = CASE WHEN d.state IN ('succeeded', 'failed') THEN f.queued_at END
             FROM done d
             WHERE f.cache_source = d.id AND f.state = 'queued'
             RETURNING f.id, f.tenant_id, f.user_id, f.model, f.use_case, f.priority, f.state, f.finished_at
         ),
         closed AS (
             UPDATE batches SET finished = true
             WHERE id = $1 AND EXISTS (SELECT 1 FROM done)
               AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.batch_id = $1 AND o.state = 'queued' AND o.id <> ALL($2))
         ),
         ledger AS (
             INSERT INTO usage_ledger (job_id, tenant_id, user_id, model, use_case, priority,
                                       credits, list_credits, cache_hit, finished_at)
             SELECT id, tenant_id, user_id, model, use_case, priority, credits, list_credits, cache_hit, finished_at
             FROM done
             WHERE state = 'succeeded' OR credits > 0 OR list_credits > 0
             UNION ALL
             SELECT id, tenant_id, user_id, model, use_case, priority, 0, $9, true, finished_at
             FROM followers
             WHERE state = 'succeeded'
             ON CONFLICT (job_id) DO NOTHING
         )
         SELECT id, NULL::text FROM done
         UNION ALL
         SELECT id, state FROM followers",
    )
    .bind(batch_id)
    .bind(&ids)
    .bind(&states)
    .bind(&results)
    .bind(&errors)
    .bind(now)
    .bind(&credits)
    .bind(&list_credits)
    .bind(list_price)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let mut out = Finished::default();
    for (id, follower_state) in rows {
        match follower_state.as_deref() {
            None => out.written.push(id),
            Some("succeeded") => out.followers_succeeded += 1,
            Some("failed") => out.followers_failed += 1,
            Some(_) => out.followers_requeued += 1,
        }
    }
    Ok(out)
}

/// Which finished jobs an operator gives another chance.
#[derive(Debug, Clone)]
pub struct RetryFilter {
    /// `dead` or `failed`.
    pub state: JobState,
    pub tenant_id: Option<Uuid>,
    pub model: Option<String>,
    pub limit: i64,
}

/// The distinct timezones of the jobs a retry would touch.
pub async fn retry_timezones<'e>(db: impl PgExecutor<'e>, f: &RetryFilter) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT timezone FROM jobs
         WHERE state = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::text IS NULL OR model = $3)",
    )
    .bind(f.state.as_str())
    .bind(f.tenant_id)
    .bind(&f.model)
    .fetch_all(db)
    .await
}

/// Puts matching jobs of one timezone back to `held` with fresh attempts:
/// low-priority ones due at `release_at` (rolling over at
/// `window_closes_at`, if any), normal-priority ones at `now`.
/// Their last error is kept until they run again. Returns the ids moved.
pub async fn retry<'e>(
    db: impl PgExecutor<'e>,
    f: &RetryFilter,
    timezone: &str,
    release_at: DateTime<Utc>,
    window_closes_at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE jobs SET state = 'held', attempts = 0, result = NULL, credits = NULL, finished_at = NULL,
                batch_id = NULL, queued_at = NULL, started_at = NULL, cache_source = NULL,
                release_at = CASE WHEN priority = 'normal' THEN $8 ELSE $5 END,
                window_closes_at = CASE WHEN priority = 'normal' THEN NULL ELSE $6 END
         WHERE id IN (
             SELECT id FROM jobs
             WHERE state = $1 AND ($2::uuid IS NULL OR tenant_id = $2) AND ($3::text IS NULL OR model = $3)
               AND timezone = $4
             ORDER BY id LIMIT $7
             FOR UPDATE SKIP LOCKED)
         RETURNING id",
    )
    .bind(f.state.as_str())
    .bind(f.tenant_id)
    .bind(&f.model)
    .bind(timezone)
    .bind(release_at)
    .bind(window_closes_at)
    .bind(f.limit)
    .bind(now)
    .fetch_all(db)
    .await
}
