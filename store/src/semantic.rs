//! The semantic cache's rows: each semantic job's prompt embedding
//! (`job_embeddings`), stored once when a release round sends the job to
//! the provider, and the checks a candidate source must pass before it
//! answers a job.
//!
//! The search itself is the scheduler's (`offpeak_core::semantic::Index`,
//! fed from [`load_scope`]); PostgreSQL stays the system of record: a
//! replica that starts, or another replica, loads the same vectors, and a
//! candidate the index finds is only used once [`sources`] has read it as
//! a provider-made success within the TTL, in the round's transaction.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// A job's input, to find its prompt and scope.
#[derive(Debug, Clone, FromRow)]
pub struct JobInput {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub model: String,
    pub input: Value,
}

/// The inputs of these jobs.
///
/// # Errors
/// Database errors only.
pub async fn inputs(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<JobInput>, sqlx::Error> {
    sqlx::query_as("SELECT id, tenant_id, model, input FROM jobs WHERE id = ANY($1)").bind(ids).fetch_all(conn).await
}

/// The vectors already stored for these jobs by `embed_model` (a job sent
/// before and back to `held`, e.g. a follower of a leader that died): they
/// are not embedded again.
///
/// # Errors
/// Database errors only.
pub async fn stored(conn: &mut PgConnection, ids: &[Uuid], embed_model: &str) -> Result<HashMap<Uuid, Vec<u8>>, sqlx::Error> {
    let rows: Vec<(Uuid, Vec<u8>)> =
        sqlx::query_as("SELECT job_id, embedding FROM job_embeddings WHERE job_id = ANY($1) AND embed_model = $2")
            .bind(ids)
            .bind(embed_model)
            .fetch_all(conn)
            .await?;
    Ok(rows.into_iter().collect())
}

/// A stored vector, in the order of its scope's rows.
#[derive(Debug, Clone, FromRow)]
pub struct StoredVector {
    pub job_id: Uuid,
    pub seq: i64,
    pub embedding: Vec<u8>,
}

/// The vectors of a scope stored after `after_seq` and no older than
/// `since`, in `seq` order: what an index that holds the scope up to
/// `after_seq` must add.
///
/// # Errors
/// Database errors only.
pub async fn load_scope(
    conn: &mut PgConnection,
    scope: &[u8],
    embed_model: &str,
    after_seq: i64,
    since: DateTime<Utc>,
) -> Result<Vec<StoredVector>, sqlx::Error> {
    sqlx::query_as(
        "SELECT job_id, seq, embedding FROM job_embeddings
         WHERE scope = $1 AND embed_model = $2 AND seq > $3 AND created_at >= $4
         ORDER BY seq",
    )
    .bind(scope)
    .bind(embed_model)
    .bind(after_seq)
    .bind(since)
    .fetch_all(conn)
    .await
}

/// The lowest `seq` of a scope's vectors no older than `since` (`None`:
/// there is none): an index drops what is below it.
///
/// # Errors
/// Database errors only.
pub async fn first_live_seq(conn: &mut PgConnection, scope: &[u8], embed_model: &str, since: DateTime<Utc>) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar("SELECT min(seq) FROM job_embeddings WHERE scope = $1 AND embed_model = $2 AND created_at >= $3")
        .bind(scope)
        .bind(embed_model)
        .bind(since)
        .fetch_one(conn)
        .await
}

/// A vector to store: the job, its scope, the unit vector's bytes.
#[derive(Debug, Clone)]
pub struct NewVector {
    pub job_id: Uuid,
    pub scope: Vec<u8>,
    pub embedding: Vec<u8>,
}

/// Stores vectors, in the release round's transaction (see the migration
/// on why `seq` needs that). A job that has one keeps it. Returns how many
/// were stored.
///
/// # Errors
/// Database errors only.
pub async fn store(conn: &mut PgConnection, vectors: &[NewVector], embed_model: &str, now: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    if vectors.is_empty() {
        return Ok(0);
    }
    let ids: Vec<Uuid> = vectors.iter().map(|v| v.job_id).collect();
    let scopes: Vec<&[u8]> = vectors.iter().map(|v| v.scope.as_slice()).collect();
    let embeddings: Vec<&[u8]> = vectors.iter().map(|v| v.embedding.as_slice()).collect();
    let done = sqlx::query(
        "INSERT INTO job_embeddings (job_id, scope, embed_model, embedding, created_at)
         SELECT u.id, u.scope, $4, u.embedding, $5 FROM unnest($1::uuid[], $2::bytea[], $3::bytea[]) AS u(id, scope, embedding)
         ON CONFLICT (job_id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&scopes)
    .bind(&embeddings)
    .bind(embed_model)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// A job that may answer others: a provider-made success within the TTL.
#[derive(Debug, Clone, FromRow)]
pub struct Source {
    pub id: Uuid,
    /// Its scope as stored with its vector: checked against the asking
    /// job's, so an index that somehow mixed scopes can never answer across them.
    pub scope: Vec<u8>,
    pub result: Value,
}

/// Of these candidates, the ones that may answer now: `succeeded` from a
/// provider call (not a cache hit), with a result, finished at or after
/// `since` (the TTL's start).
///
/// # Errors
/// Database errors only.
pub async fn sources(conn: &mut PgConnection, candidates: &[Uuid], since: DateTime<Utc>) -> Result<HashMap<Uuid, Source>, sqlx::Error> {
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let rows: Vec<Source> = sqlx::query_as(
        "SELECT j.id, e.scope, j.result FROM job_view j JOIN job_embeddings e ON e.job_id = j.id
         WHERE j.id = ANY($1) AND j.state = 'succeeded' AND NOT j.cache_hit AND j.result IS NOT NULL
           AND j.finished_at >= $2",
    )
    .bind(candidates)
    .bind(since)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().map(|s| (s.id, s)).collect())
}
