//! The release loop's statements: the release lock, the fair claim of due
//! jobs, marking a round's batches queued, the roll-over of held jobs
//! whose window closed, and what wakes the loop: the next instant a held
//! job becomes due ([`next_due`]) and the notifications of jobs due now
//! ([`DUE_CHANNEL`], [`notify_due`], [`listen_due`]).
//!
//! A round runs in one transaction under the release lock, so rounds run one
//! at a time across replicas. Waiting jobs are the rows of `held_jobs`; a
//! round's writes start by deleting the rows of the jobs they move, so a
//! job cancelled since the claim (its row deleted by the cancel) is
//! skipped. A released job's own row is not written: the round inserts
//! its `batch_members` row instead (migration `20261212000000`).

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use offpeak_core::message::BatchMessage;
use offpeak_core::window::WindowSpec;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

/// A job claimed for release.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ClaimedJob {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    /// For the cache and coalescing step of the release.
    pub cache_key: Option<Vec<u8>>,
    /// It asked for the semantic cache (see the scheduler's `semantic`).
    pub semantic: bool,
}

/// The name the release lock is keyed by (`hashtextextended(name, 0)`),
/// bound as a parameter by every statement that takes it; a model's lock is
/// keyed by this name, `/` and the model's.
const RELEASE_LOCK_NAME: &str = "offpeak/release";
/// The name of the lock rounds take exclusive, one round at a time.
const ROUNDS_LOCK_NAME: &str = "offpeak/rounds";

/// Takes the locks a release round holds to its commit, waiting for another
/// replica's round to end: the release lock shared, then the rounds' own
/// lock exclusive. So release rounds run one at a time across replicas (as
/// River runs its scheduler on one leader) and [`claim_due`] can read due
/// jobs without locking them, which then takes the lock of each model it
/// claimed, exclusive. A round is bound by PostgreSQL's writes, so a second
/// one in parallel on the same server would not add throughput; row locks
/// on 5,000 claimed jobs did cost a tuple write and a WAL record each
/// (claim 61–91 ms with them, 19–28 ms without, per round of 5,000 on
/// 300,000 held jobs; BENCHMARKS.md).
///
/// A round therefore excludes submissions released at once
/// ([`lock_release_for`]) only of the models it claimed, and only from its
/// claim to its commit: a round that finds nothing due, or due jobs of
/// other models, holds none up. (Until step 29 of BENCHMARKS.md a round took
/// the release lock exclusive, and every submission queued behind it.) A
/// round of an older version, which takes the release lock exclusive, still
/// runs alone.
///
/// # Errors
/// Database errors only.
pub async fn lock_release(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    lock_release_shared(&mut *conn).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))").bind(ROUNDS_LOCK_NAME).execute(&mut *conn).await?;
    Ok(())
}

/// The release lock, shared: every taker of a model's lock takes it first.
async fn lock_release_shared(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))").bind(RELEASE_LOCK_NAME).execute(conn).await?;
    Ok(())
}

/// The release locks of `models`, exclusive, in sorted order, so that two
/// takers of several never wait for each other in a cycle (the caller holds
/// the release lock shared). The one statement that takes a model's lock
/// exclusive: a round's claim.
async fn lock_models(conn: &mut PgConnection, mut models: Vec<&str>) -> Result<(), sqlx::Error> {
    models.sort_unstable();
    models.dedup();
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || m, 0))
         FROM unnest($2::text[]) WITH ORDINALITY AS t(m, n) ORDER BY n",
    )
    .bind(RELEASE_LOCK_NAME)
    .bind(&models)
    .execute(conn)
    .await?;
    Ok(())
}

/// Takes the release lock for the caller's transaction as a submission
/// released at once needs it (the scheduler's `direct`): the release lock
/// shared, `model`'s own release lock shared, and the lock of the tenant's
/// submissions of `model` exclusive. The model's lock waits for a round
/// that claimed jobs of `model` (it holds it exclusive, [`claim_due`]) and
/// keeps the next one out; the tenant's lock waits for another submission
/// of the same tenant and model. Submissions of different models ran side
/// by side since step 28 of BENCHMARKS.md; submissions of one model by
/// different tenants now do too: until step 30 they took the model's lock
/// exclusive and inserted their rows one after another.
///
/// That is enough for one leader per cache key: a cache key is the hash of
/// the tenant, the model and the input (`offpeak_core::hash`), so two
/// submissions share one only if they share the tenant and the model.
/// Always in this order, the release lock first, as [`wait_for_release`]
/// takes them. A submission of an older version takes the model's lock
/// exclusive, so it still excludes this one and a round.
///
/// A worker may get the submission's batches before its commit: it then
/// waits in the batch's own lock, which the submission holds exclusive
/// from before its publish to its commit ([`lock_new_batches`]), not in
/// the model's, which the submission holds only shared.
///
/// # Errors
/// Database errors only.
pub async fn lock_release_for(conn: &mut PgConnection, tenant_id: Uuid, model: &str) -> Result<(), sqlx::Error> {
    lock_release_shared(&mut *conn).await?;
    lock_model_shared(&mut *conn, model).await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2 || '/' || $3::text, 0))")
        .bind(RELEASE_LOCK_NAME)
        .bind(model)
        .bind(tenant_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// `model`'s release lock, shared: a submission of it and a worker's wait.
async fn lock_model_shared(conn: &mut PgConnection, model: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared(hashtextextended($1 || '/' || $2, 0))")
        .bind(RELEASE_LOCK_NAME)
        .bind(model)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the locks of batches about to be published (`batches::lock_batch`),
/// exclusive, until the caller's transaction ends, in key order. A
/// submission released at once takes them before its publish: a worker
/// that gets one of the messages before the commit then waits for the
/// commit in its start (`batches::start_attempt` locks the batch first),
/// and finds the jobs. A worker of an older version does the same, so this
/// needs no upgrade order. The batch ids are new, so nothing else waits on
/// these locks but such a worker (or, by a hash collision of two ids, the
/// holder of another batch's lock, which only waits).
///
/// # Errors
/// Database errors only.
pub async fn lock_new_batches(conn: &mut PgConnection, batches: &[NewBatch]) -> Result<(), sqlx::Error> {
    let keys = crate::batches::batch_lock_keys(batches.iter().map(|b| b.id));
    sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) WITH ORDINALITY AS b(k, n) ORDER BY n")
        .bind(&keys)
        .execute(conn)
        .await?;
    Ok(())
}

/// Waits, in the caller's transaction, for any release round in progress
/// that may have published a batch of `model`: a round that claimed jobs
/// of it (it holds its model's lock exclusive), a submission of it of an
/// older version (the same), or a round of an older version (the release
/// lock exclusive); both shared. Holds both until the transaction ends; the
/// caller ends it at once (see `batches::start_attempt`). A submission of
/// this version holds its batches' own locks instead ([`lock_new_batches`]),
/// which the start takes first.
///
/// # Errors
/// Database errors only.
pub async fn wait_for_release(conn: &mut PgConnection, model: &str) -> Result<(), sqlx::Error> {
    lock_release_shared(&mut *conn).await?;
    lock_model_shared(conn, model).await
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

/// Reads each tenant's share of the due jobs, `total` in all, then takes
/// the release lock of each model among them, exclusive, to the caller's
/// commit: it waits for a submission of that model released at once to end,
/// and keeps the next out, so that the round's cache step reads the leaders
/// in flight alone. The caller holds the round's lock ([`lock_release`]),
/// so no other round reads them; they are not locked, so every write that
/// follows re-checks that a job is still `held` (a job cancelled since this
/// read is skipped).
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
                 SELECT 1 FROM held_jobs
                 WHERE tenant_id = t.id AND release_at <= $1
                   AND (window_closes_at IS NULL OR window_closes_at > $1)
             )
             ORDER BY random()
         ),
         share AS (
             SELECT LEAST($2, GREATEST(1, ceil($3::float8 / GREATEST(count(*), 1))))::bigint AS n FROM due
         )
         SELECT j.id, d.id AS tenant_id, j.model, j.cache_key, j.semantic, s.n AS share
         FROM due d CROSS JOIN share s
         CROSS JOIN LATERAL (
             SELECT id, model, cache_key, semantic FROM held_jobs
             WHERE tenant_id = d.id AND release_at <= $1
               AND (window_closes_at IS NULL OR window_closes_at > $1)
             ORDER BY release_at, id
             LIMIT s.n
         ) j
         LIMIT $3",
    )
    .bind(now)
    .bind(per_tenant)
    .bind(total)
    .fetch_all(&mut *conn)
    .await?;
    let share = rows.first().map_or(per_tenant, |r| r.share);
    if !rows.is_empty() {
        lock_models(&mut *conn, rows.iter().map(|r| r.job.model.as_str()).collect()).await?;
    }
    Ok(Claim { jobs: rows.into_iter().map(|r| r.job).collect(), share })
}

/// A batch the release loop is about to publish.
#[derive(Debug, Clone)]
pub struct NewBatch {
    pub id: Uuid,
    pub model: String,
    pub job_ids: Vec<Uuid>,
}

impl NewBatch {
    /// Jobs of one model cut into batches of at most `batch_max`, each with
    /// a new id (time-ordered, as the jobs'), in the order given.
    #[must_use]
    pub fn cut(model: &str, ids: &[Uuid], batch_max: usize) -> Vec<NewBatch> {
        ids.chunks(batch_max.max(1)).map(|c| NewBatch { id: Uuid::now_v7(), model: model.to_owned(), job_ids: c.to_vec() }).collect()
    }

    /// The message a worker gets for this batch, published at `now`.
    #[must_use]
    pub fn message(&self, now: DateTime<Utc>) -> BatchMessage {
        BatchMessage::new(self.id, self.model.clone(), self.job_ids.clone(), now)
    }
}

/// Moves a batch's jobs that are still waiting into the batch and records
/// it, in the caller's transaction. Returns the jobs moved.
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

/// Moves the jobs of every batch of a release round that are still waiting
/// into their batches, and records the batches that got jobs, in the
/// caller's transaction: two set-based statements per round, whatever the
/// number of batches. Returns those batches with the jobs actually moved,
/// in their order: a job cancelled since the claim is left out of its
/// batch's message and count.
///
/// The jobs' own rows are not written: each job's `held_jobs` row is
/// deleted and its `batch_members` row inserted, in one statement. That
/// costs 31–64% of the `UPDATE` of every job to `queued` it replaces
/// (BENCHMARKS.md step 34), which wrote a new version of each wide row and
/// an entry in each of its indexes.
pub async fn mark_queued_many(conn: &mut PgConnection, batches: &[NewBatch], now: DateTime<Utc>) -> Result<Vec<NewBatch>, sqlx::Error> {
    let job_ids: Vec<Uuid> = batches.iter().flat_map(|b| b.job_ids.iter().copied()).collect();
    let batch_of: Vec<Uuid> = batches.iter().flat_map(|b| std::iter::repeat_n(b.id, b.job_ids.len())).collect();
    // The round's instant is the batches' `published_at` ([`record_batches`]),
    // which `job_view` shows as their jobs' `queued_at`.
    let moved: Vec<Uuid> = sqlx::query_scalar(
        "WITH waiting AS (
             DELETE FROM held_jobs WHERE id = ANY($1) RETURNING id, cache_key
         )
         INSERT INTO batch_members (job_id, batch_id, cache_key)
         SELECT u.id, u.batch_id, w.cache_key
         FROM unnest($1::uuid[], $2::uuid[]) AS u(id, batch_id) JOIN waiting w ON w.id = u.id
         RETURNING job_id",
    )
    .bind(&job_ids)
    .bind(&batch_of)
    .fetch_all(&mut *conn)
    .await?;
    let moved: std::collections::HashSet<Uuid> = moved.into_iter().collect();
    let queued: Vec<NewBatch> = batches
        .iter()
        .map(|b| NewBatch { id: b.id, model: b.model.clone(), job_ids: b.job_ids.iter().copied().filter(|id| moved.contains(id)).collect() })
        .filter(|b| !b.job_ids.is_empty())
        .collect();
    record_batches(conn, &queued, now).await?;
    Ok(queued)
}

/// Records the rows of batches whose jobs are members of them (by a
/// round's [`mark_queued_many`], or inserted so by a submission released at
/// once, `jobs::Admitted::Queued`), in the caller's transaction: one
/// statement, whatever the number of batches.
///
/// # Errors
/// Database errors only.
pub async fn record_batches(conn: &mut PgConnection, queued: &[NewBatch], now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    if queued.is_empty() {
        return Ok(());
    }
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
    Ok(())
}

/// Undoes [`record_batches`] and the batches' members, in the caller's
/// transaction that wrote them, when their messages could not be
/// published: the jobs wait again (`held`, due), for the release loop.
/// Returns the jobs put back.
///
/// # Errors
/// Database errors only.
pub async fn unrecord_batches(conn: &mut PgConnection, batches: &[NewBatch]) -> Result<u64, sqlx::Error> {
    let job_ids: Vec<Uuid> = batches.iter().flat_map(|b| b.job_ids.iter().copied()).collect();
    let ids: Vec<Uuid> = batches.iter().map(|b| b.id).collect();
    // A round's jobs kept their rows `held`; a submission's were inserted
    // `queued` in their batch, and their rows go back to `held`. The rows
    // read by `back` are as before this statement: the same columns.
    let sql = format!(
        "WITH gone AS (
             DELETE FROM batch_members WHERE job_id = ANY($1) AND batch_id = ANY($2) RETURNING job_id
         ),
         unqueued AS (
             UPDATE jobs SET state = 'held', batch_id = NULL, queued_at = NULL
             WHERE id IN (SELECT job_id FROM gone) AND state = 'queued'
         ),
         back AS (
             INSERT INTO held_jobs ({held})
             SELECT {held} FROM jobs j WHERE j.id IN (SELECT job_id FROM gone) AND {live}
             RETURNING id
         )
         SELECT count(*) FROM back",
        held = crate::edge::HELD_COLUMNS,
        live = crate::edge::live!("j"),
    );
    let moved: i64 = sqlx::query_scalar(&sql).bind(&job_ids).bind(&ids).fetch_one(&mut *conn).await?;
    let moved = u64::try_from(moved).unwrap_or(0);
    sqlx::query("DELETE FROM batches WHERE id = ANY($1)").bind(&ids).execute(&mut *conn).await?;
    Ok(moved)
}

/// Jobs of one timezone and one tenant window (`None`: the deployment's),
/// whose next window is computed once for the whole group: the held jobs
/// whose window closed ([`expired_held_groups`], [`roll_over`]) and the
/// jobs an operator retries (`operator::retry_groups`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowGroup {
    pub timezone: Tz,
    /// The tenant's own window; `None`: the deployment's
    /// ([`offpeak_core::tenant::effective_window`]).
    pub window: Option<WindowSpec>,
    /// The group's columns as stored, which [`roll_over`] matches exactly.
    stored: (String, Option<String>, Option<String>),
}

impl WindowGroup {
    /// The timezone, window start and window end as stored.
    pub(crate) fn stored(&self) -> (&str, Option<&str>, Option<&str>) {
        (&self.stored.0, self.stored.1.as_deref(), self.stored.2.as_deref())
    }

    /// The group's next window at `now`: in its timezone, with the tenant's
    /// own window or else `default`, the deployment's.
    #[must_use]
    pub fn next_window(&self, now: DateTime<Utc>, default: &WindowSpec) -> offpeak_core::window::Window {
        offpeak_core::window::next_window(self.timezone, now, &offpeak_core::tenant::effective_window(self.window, default))
    }
}

/// A [`WindowGroup`] from a row of `(timezone, window_start, window_end)`.
pub(crate) fn window_group(row: sqlx::postgres::PgRow) -> Result<WindowGroup, sqlx::Error> {
    use sqlx::Row;
    Ok(WindowGroup {
        timezone: crate::edge::tz_column(&row, "timezone")?,
        window: crate::edge::window_columns(&row, "window_start", "window_end")?,
        stored: (row.try_get("timezone")?, row.try_get("window_start")?, row.try_get("window_end")?),
    })
}

/// The distinct (timezone, tenant window) pairs of held jobs whose window
/// closed before they were released; the release loop computes each
/// pair's next window once.
///
/// Runs every release round, so the usual answer (nothing expired) must be
/// cheap whatever the backlog: first whether any held job's window closed
/// by `now`, a range scan of the partial index `held_jobs_window` that stops
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
pub async fn expired_held_groups(pool: &PgPool, now: DateTime<Utc>) -> Result<Vec<WindowGroup>, sqlx::Error> {
    let expired: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM held_jobs WHERE window_closes_at <= $1)",
    )
    .bind(now)
    .persistent(false)
    .fetch_one(pool)
    .await?;
    if !expired {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT DISTINCT h.timezone, t.window_start, t.window_end
         FROM held_jobs h JOIN tenants t ON t.id = h.tenant_id
         WHERE h.window_closes_at <= $1",
    )
    .bind(now)
    .fetch_all(pool)
    .await?;
    // One group whose stored zone or window no longer parses (a zone removed
    // from a newer tz database) must not stop every other group's roll-over,
    // nor the release round: it is left held, with an error each round.
    Ok(rows
        .into_iter()
        .filter_map(|row| match window_group(row) {
            Ok(group) => Some(group),
            Err(e) => {
                tracing::error!(error = %e, "held jobs have a timezone or tenant window that does not parse; not rolling them over");
                None
            }
        })
        .collect())
}

/// Moves the held jobs of one (timezone, tenant window) group whose window
/// has closed to the next window: their rows, which the API reads, and
/// their `held_jobs` rows, which the claim reads, in one statement.
pub async fn roll_over<'e>(
    db: impl PgExecutor<'e>,
    now: DateTime<Utc>,
    group: &WindowGroup,
    opens_at: DateTime<Utc>,
    closes_at: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "WITH moved AS (
             UPDATE held_jobs h SET release_at = $3, window_closes_at = $4
             FROM tenants t
             WHERE t.id = h.tenant_id AND h.window_closes_at <= $1 AND h.timezone = $2
               AND t.window_start IS NOT DISTINCT FROM $5 AND t.window_end IS NOT DISTINCT FROM $6
             RETURNING h.id
         )
         UPDATE jobs j SET release_at = $3, window_closes_at = $4 FROM moved WHERE j.id = moved.id",
    )
    .bind(now)
    .bind(group.stored().0)
    .bind(opens_at)
    .bind(closes_at)
    .bind(group.stored().1)
    .bind(group.stored().2)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// The channel on which whatever makes a job due tells the release loops
/// (`NOTIFY offpeak_release`), so they need not poll for it.
pub const DUE_CHANNEL: &str = "offpeak_release";

/// How far ahead a job's due instant is announced: a job stored `held` and
/// due within this of being written is announced ([`Due::Soon`]), so a
/// release loop can trust, for this long, its own reading of the next due
/// instant ([`next_due`]) as long as nothing was announced since.
pub const DUE_SOON: std::time::Duration = std::time::Duration::from_secs(60);

/// What a notification on [`DUE_CHANNEL`] says: its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// A job is due now: run a round.
    Now,
    /// A job is due within [`DUE_SOON`] (or now): run a round, and read the
    /// next due instant again.
    Soon,
}

impl Due {
    /// The notification's payload.
    #[must_use]
    pub fn payload(self) -> &'static str {
        match self {
            Due::Now => "now",
            Due::Soon => "soon",
        }
    }

    /// A payload read back; anything but `now` counts as [`Due::Soon`], the
    /// announcement that asks more of the loop.
    #[must_use]
    pub fn from_payload(payload: &str) -> Self {
        if payload == "now" {
            Due::Now
        } else {
            Due::Soon
        }
    }

    /// How a job stored `held` with `release_at`, written at `now`, is
    /// announced; `None`: not at all (it is due later than [`DUE_SOON`], and
    /// the release loop finds it by reading the next due instant).
    #[must_use]
    pub fn of(release_at: DateTime<Utc>, now: DateTime<Utc>) -> Option<Self> {
        if release_at <= now {
            Some(Due::Now)
        } else if release_at <= now + chrono::Duration::from_std(DUE_SOON).unwrap_or_default() {
            Some(Due::Soon)
        } else {
            None
        }
    }
}

/// `NOTIFY offpeak_release`: in a transaction, PostgreSQL delivers it at
/// commit, and only then (identical ones sent by one transaction once).
///
/// A transaction that sends a notification holds a lock shared by the
/// whole cluster from its commit's start to its end (PostgreSQL's
/// `PreCommit_Notify`): two such commits never overlap, WAL flush included.
/// So the paths that commit many transactions at once (the API's
/// submissions) send it after their commit instead, from one task per
/// process (`offpeak_scheduler::wake::DueSignal`), and only the rare or
/// serial paths (a schedule's firing, followers put back to `held`) send
/// it in their own transaction.
///
/// # Errors
/// Database errors only.
pub async fn notify_due<'e>(db: impl PgExecutor<'e>, due: Due) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)").bind(DUE_CHANNEL).bind(due.payload()).execute(db).await?;
    Ok(())
}

/// A listener on [`DUE_CHANNEL`], on a connection of its own (a pool of
/// one, with `pool`'s options, so it takes nothing from `pool`). sqlx's
/// `PgListener` reconnects and listens again by itself when its connection
/// is lost.
///
/// # Errors
/// The connection or the `LISTEN` failed.
pub async fn listen_due(pool: &PgPool) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
    let own = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect_lazy_with(pool.connect_options().as_ref().clone());
    let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
    listener.listen(DUE_CHANNEL).await?;
    Ok(listener)
}

/// The first instant after `after`, and at or before `until`, at which a
/// held job becomes due or a held job's window closes (its roll-over);
/// `None` if there is none in that span.
///
/// `after` is the instant of the round that has just run: a job due at or
/// before it that the round did not release (backpressure, a round cut
/// short) is not a reason to wake, so a loop that wakes at this instant
/// never spins on work it cannot do.
///
/// Due instants: `held_jobs_due_order (tenant_id, release_at, id)` is
/// ordered by tenant first, so the earliest due instant of all tenants is
/// one probe per tenant (PostgreSQL 15 has no skip scan), each reading at
/// most one entry, the first after `after`, and only if it is before
/// `until`; about 4 ms for 1,000 tenants over 1,000,000 held jobs, warm
/// (an index-only scan; BENCHMARKS.md). The entries of jobs released since
/// the last vacuum lie before `after` (they were due), so they are not
/// read. Window closes: a range scan of `held_jobs_window`, bounded by
/// `until`.
///
/// # Errors
/// Database errors only.
pub async fn next_due(pool: &PgPool, after: DateTime<Utc>, until: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT LEAST(
             (SELECT min(j.release_at) FROM tenants t
              CROSS JOIN LATERAL (
                  SELECT release_at FROM held_jobs
                  WHERE tenant_id = t.id AND release_at > $1 AND release_at <= $2
                  ORDER BY release_at LIMIT 1
              ) j),
             (SELECT min(window_closes_at) FROM held_jobs
              WHERE window_closes_at > $1 AND window_closes_at <= $2))",
    )
    .bind(after)
    .bind(until)
    .fetch_one(pool)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_job_is_announced_now_soon_or_not_at_all() {
        let now = Utc.with_ymd_and_hms(2027, 6, 1, 1, 59, 0).unwrap();
        assert_eq!(Due::of(now - chrono::Duration::seconds(1), now), Some(Due::Now));
        assert_eq!(Due::of(now, now), Some(Due::Now));
        assert_eq!(Due::of(now + chrono::Duration::seconds(60), now), Some(Due::Soon));
        assert_eq!(Due::of(now + chrono::Duration::seconds(61), now), None);
    }

    #[test]
    fn payloads_read_back_and_anything_unknown_asks_for_more() {
        for due in [Due::Now, Due::Soon] {
            assert_eq!(Due::from_payload(due.payload()), due);
        }
        assert_eq!(Due::from_payload(""), Due::Soon);
        assert!(Due::Now < Due::Soon, "the stronger announcement wins when several are merged");
    }

    #[test]
    fn freed_followers_are_announced_on_the_release_channel() {
        assert!(crate::jobs::FREE_FOLLOWERS_OF_C.contains(&format!("pg_notify('{DUE_CHANNEL}', '{}')", Due::Now.payload())));
    }
}
