//! Job groups: every bulk submission is one, and single submissions may
//! name one. A group completes once, when every job it holds has reached a
//! terminal state: [`complete`] sets `completed_at` and writes the
//! `group.completed` deliveries in one statement, so the event is written
//! once whatever replicas run it.
//!
//! How completion is counted: each statement that moves jobs to a terminal
//! state appends how many of each group's jobs it moved to `group_progress`
//! (see [`crate::outbox`]); [`complete`] folds those rows into the group's
//! `done` and compares it with the group's `total`. The rule for a job an operator retries: it is open
//! again (minus one), so an open group waits for it; a group that already
//! completed stays completed and its event is not sent again; its counts
//! (`GET /v1/groups/{id}`) show the job's state as it is now.

use chrono::{DateTime, Utc};
use offpeak_core::job::JobState;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

/// A group as `GET /v1/groups/{id}` shows it.
#[derive(Debug, Clone, FromRow)]
pub struct GroupRow {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub held: i64,
    pub queued: i64,
    pub running: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub dead: i64,
    pub cancelled: i64,
    pub total: i64,
    /// Credits charged so far to the group's finished jobs.
    pub credits: i64,
}

/// Creates the group of a bulk submission with its jobs' ids (their count
/// and range), in the caller's transaction (the one that inserts them).
/// Under an `Idempotency-Key` (the key and the request's canonical hash),
/// returns `false` and creates nothing when the tenant's key is taken: the
/// caller rolls back and answers with [`by_idempotency_key`]'s group.
///
/// # Errors
/// Database errors only.
pub async fn create(
    conn: &mut PgConnection,
    id: Uuid,
    tenant_id: Uuid,
    job_ids: &[Uuid],
    now: DateTime<Utc>,
    idempotency: Option<(&str, &[u8])>,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO job_groups (id, tenant_id, total, first_job_id, last_job_id, created_at, idempotency_key, request_hash)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING",
    )
    .bind(id)
    .bind(tenant_id)
    .bind(job_ids.len() as i64)
    .bind(job_ids.iter().min())
    .bind(job_ids.iter().max())
    .bind(now)
    .bind(idempotency.map(|(k, _)| k))
    .bind(idempotency.map(|(_, h)| h))
    .execute(conn)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

/// Records what a keyed bulk submission answered, which a replay of it
/// repeats: how many of its inputs were answered from the cache, and the
/// `state` of the others (`queued` if they were released with it).
///
/// # Errors
/// Database errors only.
pub async fn set_answer(conn: &mut PgConnection, id: Uuid, cache_hits: u64, state: JobState) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE job_groups SET cache_hits = $2, answered_state = $3 WHERE id = $1")
        .bind(id)
        .bind(i64::try_from(cache_hits).unwrap_or(i64::MAX))
        .bind((state == JobState::Queued).then_some(state.as_str()))
        .execute(conn)
        .await?;
    Ok(())
}

/// The bulk submission a tenant's `Idempotency-Key` created.
#[derive(Debug, Clone)]
pub struct KeyedBulk {
    pub group_id: Uuid,
    pub request_hash: Vec<u8>,
    pub cache_hits: u64,
    /// The `state` its answer gave: `queued` if its jobs were released
    /// with it, else `held`.
    pub state: JobState,
    /// Its jobs' ids, in the order of its inputs (the order they were made in).
    pub ids: Vec<Uuid>,
    pub release_at: Option<DateTime<Utc>>,
    pub window_closes_at: Option<DateTime<Utc>>,
}

/// The bulk submission stored under the tenant's `key`, with its jobs (those
/// not yet pruned).
///
/// # Errors
/// Database errors only.
pub async fn by_idempotency_key(pool: &PgPool, tenant_id: Uuid, key: &str) -> Result<Option<KeyedBulk>, sqlx::Error> {
    let group: Option<(Uuid, Vec<u8>, Option<i64>, bool)> = sqlx::query_as(
        "SELECT id, request_hash, cache_hits, answered_state IS NOT NULL FROM job_groups
         WHERE tenant_id = $1 AND idempotency_key = $2 AND idempotency_key IS NOT NULL",
    )
    .bind(tenant_id)
    .bind(key)
    .fetch_optional(pool)
    .await?;
    let Some((group_id, request_hash, cache_hits, queued)) = group else { return Ok(None) };
    let jobs: Vec<(Uuid, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(&format!(
        "SELECT j.id, j.release_at, j.window_closes_at FROM job_groups g JOIN job_view j ON {JOBS_OF_G}
         WHERE g.id = $1 ORDER BY j.id"
    ))
    .bind(group_id)
    .fetch_all(pool)
    .await?;
    Ok(Some(KeyedBulk {
        group_id,
        request_hash,
        cache_hits: cache_hits.map_or(0, |c| u64::try_from(c).unwrap_or(0)),
        state: if queued { JobState::Queued } else { JobState::Held },
        release_at: jobs.first().map(|j| j.1),
        window_closes_at: jobs.first().and_then(|j| j.2),
        ids: jobs.into_iter().map(|j| j.0).collect(),
    }))
}

/// What naming a group in a single submission found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The group (new or open), locked until the caller's transaction ends:
    /// the caller inserts its job, then [`count_job`].
    Open(Uuid),
    /// The group has completed and takes no new job.
    Completed(Uuid),
}

/// Finds or creates the tenant's group called `name` and locks it for the
/// caller's transaction, so a completion pass cannot close it between this
/// and the job's insert.
///
/// # Errors
/// Database errors only.
pub async fn open_named(conn: &mut PgConnection, tenant_id: Uuid, name: &str, now: DateTime<Utc>) -> Result<Named, sqlx::Error> {
    // `DO UPDATE` (a no-op write) rather than `DO NOTHING`: it returns the
    // existing row and locks it.
    let (id, completed_at): (Uuid, Option<DateTime<Utc>>) = sqlx::query_as(
        "INSERT INTO job_groups (id, tenant_id, name, total, created_at) VALUES ($1, $2, $3, 0, $4)
         ON CONFLICT (tenant_id, name) WHERE name IS NOT NULL DO UPDATE SET name = EXCLUDED.name
         RETURNING id, completed_at",
    )
    .bind(Uuid::now_v7())
    .bind(tenant_id)
    .bind(name)
    .bind(now)
    .fetch_one(conn)
    .await?;
    Ok(if completed_at.is_some() { Named::Completed(id) } else { Named::Open(id) })
}

/// Counts one more job in a group opened by [`open_named`], and widens the
/// group's id range to it.
///
/// # Errors
/// Database errors only.
pub async fn count_job(conn: &mut PgConnection, group_id: Uuid, job_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE job_groups SET total = total + 1,
                first_job_id = LEAST(first_job_id, $2), last_job_id = GREATEST(last_job_id, $2)
         WHERE id = $1",
    )
    .bind(group_id)
    .bind(job_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// How a group's jobs are found: within its id range, on the tenant's
/// index `jobs_tenant_list`, by `group_id` (the schema's migration
/// `20261205000001` says why there is no index on `group_id`). The SQL
/// over a group `g` and jobs (or `job_view`) `j`.
const JOBS_OF_G: &str = "j.tenant_id = g.tenant_id AND j.id BETWEEN g.first_job_id AND g.last_job_id AND j.group_id = g.id";

/// The columns of [`GroupRow`] over `job_groups g`, counting its jobs through
/// `job_view` (so `running` is derived as everywhere else).
const GROUP_SELECT: &str = "SELECT g.id, g.tenant_id, g.name, g.created_at, g.completed_at,
        count(j.id) FILTER (WHERE j.state = 'held') AS held,
        count(j.id) FILTER (WHERE j.state = 'queued') AS queued,
        count(j.id) FILTER (WHERE j.state = 'running') AS running,
        count(j.id) FILTER (WHERE j.state = 'succeeded') AS succeeded,
        count(j.id) FILTER (WHERE j.state = 'failed') AS failed,
        count(j.id) FILTER (WHERE j.state = 'dead') AS dead,
        count(j.id) FILTER (WHERE j.state = 'cancelled') AS cancelled,
        count(j.id) AS total,
        COALESCE(sum(j.credits), 0)::bigint AS credits
    FROM job_groups g LEFT JOIN job_view j ON";

/// The tenant's group `id` with its counts by state; `None` if it does not
/// exist or is another tenant's.
///
/// # Errors
/// Database errors only.
pub async fn get<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<Option<GroupRow>, sqlx::Error> {
    let sql = format!("{GROUP_SELECT} {JOBS_OF_G} WHERE g.id = $1 AND g.tenant_id = $2 GROUP BY g.id");
    sqlx::query_as::<_, GroupRow>(&sql).bind(id).bind(tenant_id).fetch_optional(db).await
}

/// One line of a group's results.
#[derive(Debug, Clone, FromRow)]
pub struct ResultRow {
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub state: offpeak_core::job::JobState,
    pub result: Option<Value>,
    pub error: Option<Value>,
    pub credits: Option<i64>,
    pub metadata: Option<Value>,
}

/// Up to `limit` jobs of a group, by id, after `after`: the pages the
/// results stream reads one at a time (keyset on `jobs_tenant_list`, within
/// the group's id range).
///
/// # Errors
/// Database errors only.
pub async fn results_page<'e>(
    db: impl PgExecutor<'e>,
    group_id: Uuid,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<ResultRow>, sqlx::Error> {
    let sql = format!(
        "SELECT j.id, j.state, j.result, j.error, j.credits, j.metadata
         FROM job_groups g JOIN job_view j ON {JOBS_OF_G}
         WHERE g.id = $1 AND ($2::uuid IS NULL OR j.id > $2)
         ORDER BY j.id LIMIT $3"
    );
    sqlx::query_as::<_, ResultRow>(&sql).bind(group_id).bind(after).bind(limit).fetch_all(db).await
}

/// A group [`complete`] closed.
#[derive(Debug, Clone, FromRow)]
pub struct Completed {
    pub id: Uuid,
    pub tenant_id: Uuid,
}

/// Closes up to `limit` open groups whose jobs have all reached a terminal
/// state: sets `completed_at` and the final counts, writes the
/// `group.completed` deliveries of the tenant's subscribed endpoints and
/// drops the group's progress rows, in one statement. Groups locked by a
/// submission naming them are skipped (this round) so the total they count
/// is never stale. Returns the groups closed.
///
/// # Errors
/// Database errors only.
pub async fn complete(pool: &PgPool, now: DateTime<Utc>, limit: i64) -> Result<Vec<Completed>, sqlx::Error> {
    // The progress rows written since the last pass, folded into their
    // groups' counts (two replicas folding at once take disjoint rows).
    sqlx::query(
        "WITH folded AS (DELETE FROM group_progress RETURNING group_id, done),
              sums AS (SELECT group_id, sum(done) AS done FROM folded GROUP BY group_id)
         UPDATE job_groups g SET done = g.done + s.done FROM sums s WHERE g.id = s.group_id",
    )
    .execute(pool)
    .await?;
    let sql = format!(
        "WITH ready AS MATERIALIZED (
             SELECT g.id, g.tenant_id, g.first_job_id, g.last_job_id FROM job_groups g
             WHERE g.completed_at IS NULL AND g.total > 0 AND g.done >= g.total
             ORDER BY g.created_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ),
         counted AS (
             SELECT g.id,
                    jsonb_build_object(
                        'held', count(j.id) FILTER (WHERE j.state = 'held'),
                        'queued', count(j.id) FILTER (WHERE j.state = 'queued'),
                        'running', 0,
                        'succeeded', count(j.id) FILTER (WHERE j.state = 'succeeded'),
                        'failed', count(j.id) FILTER (WHERE j.state = 'failed'),
                        'dead', count(j.id) FILTER (WHERE j.state = 'dead'),
                        'cancelled', count(j.id) FILTER (WHERE j.state = 'cancelled'),
                        'total', count(j.id)) AS counts,
                    COALESCE(sum(j.credits), 0)::bigint AS credits
             FROM ready g LEFT JOIN job_view j ON {JOBS_OF_G}
             GROUP BY g.id
         ),
         closed AS (
             UPDATE job_groups g SET completed_at = $1, final_counts = c.counts
             FROM counted c
             WHERE g.id = c.id AND g.completed_at IS NULL
             RETURNING g.id, g.tenant_id, g.name, g.created_at, c.counts, c.credits
         ),
         events AS (
             INSERT INTO webhook_deliveries (event_id, endpoint_id, tenant_id, event_type, payload, created_at, next_attempt_at)
             SELECT s.event_id, e.id, s.tenant_id, 'group.completed', s.payload, $1, $1
             FROM (SELECT c.tenant_id, gen_random_uuid() AS event_id,
                          jsonb_build_object(
                              'type', 'group.completed',
                              'timestamp', offpeak_utc_text($1),
                              'data', jsonb_build_object(
                                  'id', c.id, 'name', c.name, 'counts', c.counts, 'credits', c.credits,
                                  'created_at', offpeak_utc_text(c.created_at),
                                  'completed_at', offpeak_utc_text($1))) AS payload
                   FROM closed c) s
             JOIN webhook_endpoints e
               ON e.tenant_id = s.tenant_id AND e.disabled_at IS NULL AND 'group.completed' = ANY(e.events)
         )
         SELECT c.id, c.tenant_id FROM closed c"
    );
    sqlx::query_as::<_, Completed>(&sql)
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Deletes up to `chunk` groups that completed before `before` (their jobs
/// keep their `group_id`; the pruner deletes them by their own age).
/// Returns how many.
///
/// # Errors
/// Database errors only.
pub async fn prune_completed<'e>(db: impl PgExecutor<'e>, before: DateTime<Utc>, chunk: i64) -> Result<u64, sqlx::Error> {
    let res = sqlx::query(
        "DELETE FROM job_groups WHERE id IN (
             SELECT id FROM job_groups WHERE completed_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
    )
    .bind(before)
    .bind(chunk)
    .execute(db)
    .await?;
    Ok(res.rows_affected())
}

/// Whether the tenant has a group `id`.
///
/// # Errors
/// Database errors only.
pub async fn exists<'e>(db: impl PgExecutor<'e>, tenant_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM job_groups WHERE id = $1 AND tenant_id = $2)")
        .bind(id)
        .bind(tenant_id)
        .fetch_one(db)
        .await
}
