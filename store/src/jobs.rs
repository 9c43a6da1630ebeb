//! The `jobs` table from the submitter's side: submission (the one INSERT
//! every path shares), reading, listing and cancellation. The release
//! loop's statements are in [`crate::release`], the worker's in
//! [`crate::batches`], the operator's in [`crate::operator`].
//!
//! Every state change is a guarded `UPDATE ... WHERE state IN (...)`, a
//! `DELETE` of the row that says where a live job waits (`held_jobs`), or
//! an `INSERT` of an outcome that conflicts with an earlier one: a job only
//! ever leaves a non-terminal state, so two writers racing (two scheduler
//! replicas, a batch delivered twice) cannot give a job two terminal states
//! or count its credits twice. The loser's statement matches no row.
//!
//! A submission stores a job that waits with its `held_jobs` row, and a
//! job released at once with its `batch_members` row, in the same
//! statement (migration `20261212000000`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use offpeak_core::job::{JobState, Priority};
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

/// A job as stored.
#[derive(Debug, Clone, FromRow)]
pub struct JobRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub input: Value,
    #[sqlx(try_from = "String")]
    pub priority: Priority,
    #[sqlx(try_from = "crate::edge::TzName")]
    pub timezone: Tz,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub idempotency_key: Option<String>,
    pub request_hash: Option<Vec<u8>>,
    #[sqlx(try_from = "String")]
    pub state: JobState,
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
    /// Its group, if any.
    pub group_id: Option<Uuid>,
    /// The job it was upgraded from (`POST /v1/jobs/{id}/upgrade`).
    pub parent_id: Option<Uuid>,
    /// A preview's upgrade target: the model and use case its submission named.
    pub upgrade_model: Option<String>,
    pub upgrade_use_case: Option<String>,
    /// Whether it asked for the semantic cache.
    pub semantic: bool,
    /// A semantic hit's similarity to `cache_source`'s prompt (`None` for
    /// any other job, an exact hit included).
    pub cache_similarity: Option<f32>,
    /// Its exact cache key: `None` when it uses no cache (`"cache": false`).
    pub cache_key: Option<Vec<u8>>,
}

impl JobRow {
    /// The cache the job uses: `off`, `exact` or `semantic`.
    #[must_use]
    pub fn cache_mode(&self) -> offpeak_core::semantic::CacheMode {
        use offpeak_core::semantic::CacheMode;
        match (self.semantic, self.cache_key.is_some()) {
            (true, _) => CacheMode::Semantic,
            (false, true) => CacheMode::Exact,
            (false, false) => CacheMode::Off,
        }
    }

    /// `exact` or `semantic` for a cache hit, else `None`.
    #[must_use]
    pub fn cache_kind(&self) -> Option<&'static str> {
        match (self.cache_hit, self.cache_similarity) {
            (false, _) => None,
            (true, None) => Some("exact"),
            (true, Some(_)) => Some("semantic"),
        }
    }
}

/// The columns of [`JobRow`]. Read them `FROM job_view` (the schema's view;
/// BENCHMARKS.md step 9), which derives `queued` and `running` from the
/// job's batch; a `RETURNING` of a job just inserted, which is in its
/// submission's batch if in any, may read them from `jobs` itself.
const JOB_COLUMNS: &str = "id, tenant_id, model, input, priority, timezone, user_id, metadata, \
    idempotency_key, request_hash, state, release_at, window_closes_at, batch_id, attempts, \
    max_attempts, result, error, credits, cache_hit, created_at, queued_at, started_at, finished_at, use_case, cache_source, group_id, \
    semantic, cache_similarity, cache_key, parent_id, upgrade_model, upgrade_use_case";

/// A job about to be inserted; built by the API from a validated request.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub input: Value,
    pub priority: Priority,
    pub timezone: Tz,
    pub user_id: Option<String>,
    pub metadata: Option<Value>,
    pub release_at: DateTime<Utc>,
    pub window_closes_at: Option<DateTime<Utc>>,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The use case the model was routed from (`"model": "auto"`).
    pub use_case: Option<String>,
    /// The group the job belongs to (every bulk submission is one; a
    /// single submission may name one): see [`crate::groups`].
    pub group_id: Option<Uuid>,
    /// The semantic cache: the release round embeds the prompt and looks
    /// for a rewording that succeeded (the exact cache is tried first).
    pub semantic: bool,
    /// Where the job stands in the preview-first pattern: a preview's
    /// upgrade target, or the job an upgrade was made from.
    pub lineage: Lineage,
}

/// A job's place in the preview-first pattern (issue #19): nothing for most
/// jobs ([`Lineage::default`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    /// A preview (`"preview"` at submission): what it stands in for.
    pub upgrade: Option<UpgradeTarget>,
    /// An upgrade (`POST /v1/jobs/{id}/upgrade`): the job it was made from,
    /// and the SHA-256 of the upgrade request's canonical body; the unique
    /// index `jobs_upgrade` allows one job per pair.
    pub parent: Option<(Uuid, Vec<u8>)>,
    /// The parent was a preview (usage's `saved_preview` subtracts what
    /// this upgrade costs at list price).
    pub upgrade_of_preview: bool,
}

/// A preview's upgrade target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeTarget {
    /// The model (routed, for `"model": "auto"`) the submission named.
    pub model: String,
    /// Its use case, for a routed submission.
    pub use_case: Option<String>,
    /// The model's list price at submission: what the request would have
    /// cost at full quality.
    pub list_credits: i64,
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
    /// Stored `queued` in this batch, with its reservation: released with
    /// its submission (the scheduler's `direct`), the batch recorded and
    /// published by the same transaction
    /// ([`crate::release::record_batches`]).
    Queued(Uuid),
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
            Admitted::Queued(_) => "queued",
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

/// What jobs of one INSERT may share: the columns of a [`NewJob`], how they
/// count against quotas, and an `Idempotency-Key` with the request's hash
/// (single submissions only).
type Template<'a> = (&'a NewJob, &'a Admission, Option<(&'a str, &'a [u8])>);

/// The one INSERT of jobs, shared by every submission path (a single job
/// with or without `Idempotency-Key`, the group commit of single jobs, bulk,
/// schedule firings), plus the usage ledger rows of the cache hits. Each
/// job's own columns (id, input, cache key, admitted state, cached result
/// or refusal) come through `unnest`, with the number of its template;
/// the templates through a second `unnest`, joined on that number. So a
/// bulk request of 10,000 inputs sends its template once, and the group
/// commit sends one template per job: one statement for both, without
/// repeating what 10,000 jobs share (repeating it cost the bulk run 12 to
/// 18 MiB of the scheduler's peak memory; BENCHMARKS.md). A job whose key is
/// taken is not inserted (`ON CONFLICT ... DO NOTHING`; keyless jobs never
/// conflict). Adding a column to `jobs` means adding it here and in
/// [`bind_insert`]. `{returning}` is the caller's column list over the
/// inserted rows.
fn insert_sql(returning: &str) -> String {
    format!(
        "WITH u AS (
             SELECT * FROM unnest($1::uuid[], $2::jsonb[], $3::bytea[], $4::text[], $5::uuid[], $6::jsonb[], $7::jsonb[],
                                  $8::int8[], $33::uuid[])
                 AS u(id, input, cache_key, state, source, result, error, n, batch_id)
         ),
         t AS (
             SELECT * FROM unnest($9::uuid[], $10::text[], $11::text[], $12::text[], $13::text[], $14::jsonb[],
                                  $15::timestamptz[], $16::timestamptz[], $17::int4[], $18::timestamptz[], $19::text[],
                                  $20::date[], $21::int8[], $22::int8[], $23::text[], $24::bytea[], $25::uuid[],
                                  $26::uuid[], $27::bytea[], $28::text[], $29::text[], $30::int8[], $31::bool[],
                                  $32::bool[]) WITH ORDINALITY
                 AS t(tenant_id, model, priority, timezone, user_id, metadata, release_at, window_closes_at,
                      max_attempts, created_at, use_case, quota_day, reserved, list, idempotency_key, request_hash,
                      group_id, parent_id, upgrade_hash, upgrade_model, upgrade_use_case, preview_target_list,
                      upgrade_of_preview, semantic, n)
         ),
         ins AS (
             INSERT INTO jobs (id, tenant_id, model, input, priority, timezone, user_id, metadata,
                 idempotency_key, request_hash, state, release_at, window_closes_at, max_attempts, created_at, use_case,
                 cache_key, cache_source, result, error, cache_hit, credits, finished_at, quota_day, reserved_credits,
                 group_id, parent_id, upgrade_hash, upgrade_model, upgrade_use_case, preview_target_list,
                 upgrade_of_preview, semantic, batch_id, queued_at)
             SELECT u.id, t.tenant_id, t.model, u.input, t.priority, t.timezone, t.user_id, t.metadata,
                 t.idempotency_key, t.request_hash, u.state, t.release_at, t.window_closes_at, t.max_attempts, t.created_at,
                 t.use_case, u.cache_key, u.source, u.result, u.error, u.state = 'succeeded',
                 CASE WHEN u.state IN ('held', 'queued') THEN NULL ELSE 0 END,
                 CASE WHEN u.state IN ('held', 'queued') THEN NULL ELSE t.created_at END,
                 t.quota_day, CASE WHEN u.state IN ('held', 'queued') THEN t.reserved ELSE 0 END, t.group_id,
                 t.parent_id, t.upgrade_hash, t.upgrade_model, t.upgrade_use_case, t.preview_target_list,
                 t.upgrade_of_preview, t.semantic, u.batch_id,
                 CASE WHEN u.state = 'queued' THEN t.created_at END
             FROM u JOIN t USING (n)
             ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
             RETURNING *
         ),
         waiting AS (
             INSERT INTO held_jobs ({held}) SELECT {held} FROM ins WHERE state = 'held'
         ),
         members AS (
             INSERT INTO batch_members (job_id, batch_id, cache_key)
             SELECT id, batch_id, cache_key FROM ins WHERE state = 'queued' AND batch_id IS NOT NULL
         ),
         ledger AS (
             INSERT INTO job_outcomes (job_id, tenant_id, user_id, model, use_case, priority,
                                       credits, list_credits, cache_hit, finished_at,
                                       preview_target_list, parent_id, upgrade_of_preview)
             SELECT ins.id, ins.tenant_id, ins.user_id, ins.model, ins.use_case, ins.priority, 0, t.list, true, ins.finished_at,
                    ins.preview_target_list, ins.parent_id, ins.upgrade_of_preview
             FROM ins JOIN u USING (id) JOIN t USING (n) WHERE ins.cache_hit
         ){effects}
         SELECT {returning} FROM ins",
        effects = crate::outbox::terminal_effects("ins"),
        held = crate::edge::HELD_COLUMNS,
    )
}

/// Binds [`insert_sql`]'s arrays: each job's own columns with the number
/// (1-based) of its template in `templates`, then the templates' columns.
fn bind_insert<'q, O>(
    q: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    templates: &[Template<'q>],
    jobs: &[(&'q NewInput, i64)],
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    fn column<R, T>(items: &[R], f: impl Fn(&R) -> T) -> Vec<T> {
        items.iter().map(f).collect()
    }
    let hit = |i: &'q NewInput| if let Admitted::CacheHit(h) = &i.admitted { Some(h) } else { None };
    q.bind(column(jobs, |j| j.0.id))
        .bind(column(jobs, |j| &j.0.input))
        .bind(column(jobs, |j| j.0.cache_key.as_deref()))
        .bind(column(jobs, |j| j.0.admitted.state()))
        .bind(column(jobs, |j| hit(j.0).map(|h| h.source)))
        .bind(column(jobs, |j| hit(j.0).map(|h| &h.result)))
        .bind(column(jobs, |j| if let Admitted::Refused(e) = &j.0.admitted { Some(e) } else { None }))
        .bind(column(jobs, |j| j.1))
        .bind(column(templates, |t| t.0.tenant_id))
        .bind(column(templates, |t| t.0.model.as_str()))
        .bind(column(templates, |t| t.0.priority.as_str()))
        .bind(column(templates, |t| t.0.timezone.name()))
        .bind(column(templates, |t| t.0.user_id.as_deref()))
        .bind(column(templates, |t| t.0.metadata.as_ref()))
        .bind(column(templates, |t| t.0.release_at))
        .bind(column(templates, |t| t.0.window_closes_at))
        .bind(column(templates, |t| t.0.max_attempts))
        .bind(column(templates, |t| t.0.created_at))
        .bind(column(templates, |t| t.0.use_case.as_deref()))
        .bind(column(templates, |t| t.1.quota_day))
        .bind(column(templates, |t| t.1.reserved_per_job))
        .bind(column(templates, |t| t.1.list_price))
        .bind(column(templates, |t| t.2.map(|(k, _)| k)))
        .bind(column(templates, |t| t.2.map(|(_, h)| h)))
        .bind(column(templates, |t| t.0.group_id))
        .bind(column(templates, |t| t.0.lineage.parent.as_ref().map(|p| p.0)))
        .bind(column(templates, |t| t.0.lineage.parent.as_ref().map(|p| p.1.as_slice())))
        .bind(column(templates, |t| t.0.lineage.upgrade.as_ref().map(|u| u.model.as_str())))
        .bind(column(templates, |t| t.0.lineage.upgrade.as_ref().and_then(|u| u.use_case.as_deref())))
        .bind(column(templates, |t| t.0.lineage.upgrade.as_ref().map(|u| u.list_credits)))
        .bind(column(templates, |t| t.0.lineage.upgrade_of_preview))
        .bind(column(templates, |t| t.0.semantic))
        .bind(column(jobs, |j| if let Admitted::Queued(b) = j.0.admitted { Some(b) } else { None }))
}

/// Inserts jobs that share nothing (each its own tenant, model, template
/// and admission; none under an `Idempotency-Key`) in one statement: the
/// group commit of single submissions (see the scheduler's
/// `group_commit`). Returns the rows in the order given.
///
/// # Errors
/// Database errors only; nothing is inserted then.
pub async fn insert_each(conn: &mut PgConnection, jobs: &[(&NewJob, &NewInput, &Admission)]) -> Result<Vec<JobRow>, sqlx::Error> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let templates: Vec<Template<'_>> = jobs.iter().map(|&(t, _, a)| (t, a, None)).collect();
    let own: Vec<(&NewInput, i64)> = jobs.iter().zip(1..).map(|(&(_, i, _), n)| (i, n)).collect();
    let sql = insert_sql(JOB_COLUMNS);
    let inserted = bind_insert(sqlx::query_as::<_, JobRow>(&sql), &templates, &own).fetch_all(conn).await?;
    let mut by_id: std::collections::HashMap<Uuid, JobRow> = inserted.into_iter().map(|r| (r.id, r)).collect();
    jobs.iter()
        .map(|(_, i, _)| by_id.remove(&i.id).ok_or_else(|| sqlx::Error::Protocol(format!("job {} was not returned by its insert", i.id))))
        .collect()
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
    let inserted = bind_insert(sqlx::query_as::<_, JobRow>(&sql), &[(template, admission, idempotency)], &[(input, 1)])
        .fetch_optional(&mut *conn)
        .await?;
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
    let own: Vec<(&NewInput, i64)> = inputs.iter().map(|i| (i, 1)).collect();
    let (hits,): (i64,) =
        bind_insert(sqlx::query_as::<_, (i64,)>(&sql), &[(template, admission, None)], &own).fetch_one(conn).await?;
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

/// Cancels a job that has not started, or whose batch is at a provider's
/// own batch API ([`crate::provider_batches::at_provider`]).
pub async fn cancel(pool: &PgPool, tenant_id: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<CancelOutcome, sqlx::Error> {
    // A try finds the job between waiting and a batch only when a leader's
    // finish put it back to waiting as it read (a follower of a leader that
    // died): the next try sees where it is.
    for _ in 0..3 {
        if let Some(outcome) = try_cancel(pool, tenant_id, id, now).await? {
            return Ok(outcome);
        }
    }
    Err(sqlx::Error::Protocol(format!("job {id} moved between waiting and a batch during three cancels in a row")))
}

/// One try of [`cancel`]; `None`: the job was moving, nothing was written.
async fn try_cancel(pool: &PgPool, tenant_id: Uuid, id: Uuid, now: DateTime<Utc>) -> Result<Option<CancelOutcome>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // Locks in the order every writer takes them: the job's `held_jobs` row
    // first, then its row. A release round deletes the first before it
    // writes anything of the job's, and holds it to its commit; so a cancel
    // of a job a round is releasing waits for the round, and then reads it
    // as a member of its batch. The job's row next (see
    // `cache::lock_leaders`): a round attaching followers to this job
    // commits before the update below looks for them.
    let waiting: Option<Uuid> = sqlx::query_scalar("SELECT id FROM held_jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let locked: Option<(String, bool)> =
        sqlx::query_as("SELECT state, cache_source IS NOT NULL FROM jobs WHERE tenant_id = $1 AND id = $2 FOR UPDATE")
            .bind(tenant_id)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((state, follower)) = locked else {
        return Ok(Some(CancelOutcome::NotFound));
    };
    let (cancellable, batch_id) = if state == "held" || state == "queued" {
        let standing = Standing::read(&mut tx, &[id], waiting.into_iter().collect()).await?;
        let cancellable = match standing.of(id, follower) {
            Cancellable::Yes => true,
            // The one running job that may be cancelled: its batch is at a
            // provider's own batch API, which answers hours later. The
            // poller's finish writes only jobs still live, and this job's
            // row lock orders the two.
            Cancellable::Started(batch_id) => crate::provider_batches::at_provider(&mut tx, batch_id).await?,
            Cancellable::Moving => return Ok(None),
        };
        (cancellable, standing.batch_of(id))
    } else {
        // Ended in its own row: nothing to cancel.
        (false, None)
    };
    let cancelled = if cancellable && !write_cancel(&mut tx, &[id], now).await?.is_empty() {
        // The job as the API shows it, with its batch: a new statement
        // sees the cancel.
        get(&mut *tx, tenant_id, id).await?
    } else {
        None
    };
    if let (Some(_), Some(batch_id)) = (&cancelled, batch_id) {
        // The last open job of a provider batch: the poller cancels it there.
        crate::provider_batches::poll_now_if_empty(&mut tx, batch_id, now).await?;
    }
    let outcome = match cancelled {
        Some(row) => CancelOutcome::Cancelled(row),
        None => match get(&mut *tx, tenant_id, id).await? {
            Some(row) => CancelOutcome::NotCancellable(row),
            None => CancelOutcome::NotFound,
        },
    };
    tx.commit().await?;
    Ok(Some(outcome))
}

/// Where a live job stands for a cancel, as [`Standing::of`] says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancellable {
    /// Waiting in `held_jobs`, a follower waiting for its leader, or a
    /// member of a batch no worker has started (held so, [`Standing::read`]).
    Yes,
    /// A member of this batch, which a worker has started.
    Started(Uuid),
    /// Neither waiting nor in a batch: between the two, as a leader's
    /// finish puts a follower of a dead leader back to waiting. A new try
    /// sees where it is.
    Moving,
}

/// Where the jobs a cancel locked stand: the one classification both
/// cancels use, the tenant's one job (`DELETE /v1/jobs/{id}`,
/// [`cancel`]) and the operator's many ([`crate::operator::cancel`]).
/// Each takes the jobs' row locks and their `held_jobs` row locks first, in
/// its own order (the tenant's waits, the operator's skips what is locked);
/// this reads the rest.
#[derive(Debug, Default)]
pub(crate) struct Standing {
    waiting: std::collections::HashSet<Uuid>,
    batch_of: std::collections::HashMap<Uuid, Uuid>,
    unstarted: std::collections::HashSet<Uuid>,
}

impl Standing {
    /// Reads the batches of `ids` (a new statement after the caller's row
    /// locks: a round that released one of them has committed) and holds
    /// those still unstarted until the caller's transaction ends
    /// ([`hold_unstarted_batches`]). `waiting`: those of `ids` whose
    /// `held_jobs` row the caller locked.
    ///
    /// # Errors
    /// Database errors only.
    pub(crate) async fn read(
        conn: &mut PgConnection,
        ids: &[Uuid],
        waiting: std::collections::HashSet<Uuid>,
    ) -> Result<Self, sqlx::Error> {
        let batch_of: std::collections::HashMap<Uuid, Uuid> =
            sqlx::query_as::<_, (Uuid, Uuid)>("SELECT job_id, batch_id FROM batch_members WHERE job_id = ANY($1)")
                .bind(ids)
                .fetch_all(&mut *conn)
                .await?
                .into_iter()
                .collect();
        let batches: Vec<Uuid> = batch_of.values().copied().collect();
        let unstarted = hold_unstarted_batches(conn, &batches).await?.into_iter().collect();
        Ok(Self { waiting, batch_of, unstarted })
    }

    /// Where the live job `id` stands; `follower`: its row names a leader
    /// (`cache_source`).
    pub(crate) fn of(&self, id: Uuid, follower: bool) -> Cancellable {
        if self.waiting.contains(&id) || follower {
            return Cancellable::Yes;
        }
        match self.batch_of.get(&id) {
            Some(batch) if self.unstarted.contains(batch) => Cancellable::Yes,
            Some(batch) => Cancellable::Started(*batch),
            None => Cancellable::Moving,
        }
    }

    /// The batch the job `id` is a member of, if any.
    pub(crate) fn batch_of(&self, id: Uuid) -> Option<Uuid> {
        self.batch_of.get(&id).copied()
    }
}

/// Cancels these jobs, those still live (one ended meanwhile, by its
/// outcome row, is left out), in one statement; returns the ids cancelled.
/// The caller has locked their rows and decided they may be cancelled
/// ([`Standing`]). A job still waiting leaves `held_jobs` in the same
/// statement, so a release round's claim never sees it again (a round that
/// claimed it already finds its row gone and leaves it out). A cancelled
/// leader's followers go back to `held` ([`FREE_FOLLOWERS_OF_C`]): the next
/// round makes one of them the leader. The terminal effects (webhook
/// events, the group's progress) are written by the same statement.
///
/// This runs after the row locks, so a finish that held a row (a
/// follower's answer, a provider batch's result) has committed.
///
/// # Errors
/// Database errors only.
pub(crate) async fn write_cancel(conn: &mut PgConnection, ids: &[Uuid], now: DateTime<Utc>) -> Result<Vec<Uuid>, sqlx::Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    sqlx::query_scalar(&CANCEL_SQL).bind(ids).bind(now).fetch_all(conn).await
}

static CANCEL_SQL: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH c AS (
             UPDATE jobs SET state = 'cancelled', finished_at = $2
             WHERE id = ANY($1) AND {live}
             RETURNING {effect_columns}
         ),
         unheld AS (DELETE FROM held_jobs WHERE id IN (SELECT id FROM c)),
         {free}{effects}
         SELECT id FROM c",
        live = crate::edge::live!("jobs"),
        effect_columns = crate::outbox::EFFECT_COLUMNS,
        free = &*FREE_FOLLOWERS_OF_C,
        effects = crate::outbox::terminal_effects("c"),
    )
});

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
    let keys: Vec<i64> = ids.iter().copied().map(crate::batches::batch_lock_key).collect();
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

/// The SQL of two CTEs (`freed`, `freed_waiting`) that put the followers
/// of the jobs of a CTE `c` (just cancelled) back to waiting, `held` with
/// their `held_jobs` rows, except those cancelled themselves. They were
/// due when they were claimed, so they are due now: the CTE announces it
/// (`pg_notify` on `release::DUE_CHANNEL`, once per transaction however
/// many rows call it, and only if one does), so a release loop sends them
/// without waiting for its next poll.
pub(crate) static FREE_FOLLOWERS_OF_C: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "freed AS (
             UPDATE jobs SET state = 'held', cache_source = NULL, queued_at = NULL
             WHERE cache_source IN (SELECT id FROM c) AND state = 'queued' AND id NOT IN (SELECT id FROM c)
             RETURNING {held}, pg_notify('offpeak_release', 'now')
         ),
         freed_waiting AS (
             INSERT INTO held_jobs ({held}) SELECT {held} FROM freed
         )",
        held = crate::edge::HELD_COLUMNS,
    )
});

/// The children of each of these jobs of the tenant (the jobs upgraded from
/// it, `POST /v1/jobs/{id}/upgrade`), oldest first, in one query over the
/// partial index `jobs_upgrade`; jobs without children are absent.
///
/// # Errors
/// Database errors only.
pub async fn children<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<Uuid>>, sqlx::Error> {
    let mut out: std::collections::HashMap<Uuid, Vec<Uuid>> = std::collections::HashMap::new();
    if ids.is_empty() {
        return Ok(out);
    }
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT parent_id, id FROM jobs WHERE parent_id = ANY($2) AND tenant_id = $1 ORDER BY parent_id, id",
    )
    .bind(tenant_id)
    .bind(ids)
    .fetch_all(db)
    .await?;
    for (parent, child) in rows {
        out.entry(parent).or_default().push(child);
    }
    Ok(out)
}

/// The job an earlier upgrade of `parent_id` with the same request body
/// (`upgrade_hash`) made, if any.
///
/// # Errors
/// Database errors only.
pub async fn upgrade_child<'e>(
    db: impl PgExecutor<'e>,
    tenant_id: Uuid,
    parent_id: Uuid,
    upgrade_hash: &[u8],
) -> Result<Option<JobRow>, sqlx::Error> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM job_view WHERE parent_id = $2 AND upgrade_hash = $3 AND tenant_id = $1");
    sqlx::query_as::<_, JobRow>(&sql).bind(tenant_id).bind(parent_id).bind(upgrade_hash).fetch_optional(db).await
}

/// Whether an insert failed because the same upgrade (parent and request
/// body) already made its job: the unique index `jobs_upgrade`, hit by a
/// concurrent double click that committed first. The caller's transaction
/// is aborted; [`upgrade_child`] then finds the job that won.
#[must_use]
pub fn is_upgrade_conflict(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation() && d.constraint() == Some("jobs_upgrade"))
}
