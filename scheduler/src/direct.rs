//! Release at submission: a bulk submission due at once (`priority:
//! "normal"`, or `low` inside its window) whose jobs the release loop would
//! publish in its next round anyway is released by its own transaction
//! instead, when nothing else waits for the queue's room. Each job row is
//! then written twice, not three times (inserted `queued` in its batch, and
//! once more when it ends), and the jobs reach a worker without waiting
//! for a round (issue #17's immediate path; BENCHMARKS.md step 26).
//!
//! The submission acts as a release round for its own jobs, under the same
//! rules, so every guarantee of a round holds for it:
//!
//! - **Fairness and backpressure.** It happens only while the [`Room`] is
//!   open: this replica's release loop ran a round less than a few
//!   intervals ago that left no due job behind, was not held back by the
//!   queue's depth, and left room in the queue for the batches taken since.
//!   Under contention (another tenant's due backlog, a full queue) every
//!   submission is held and released by the loop's fair rounds, as before.
//!   The room is each replica's own reading: several replicas may each
//!   hand out the room their last round saw before the next round reads
//!   the depth again (at most four intervals), as rounds of several
//!   replicas may each publish the room they read before the rounds' lock.
//!   A replica that runs no release loop (`OFFPEAK_NO_RELEASE`) never
//!   opens its room.
//! - **One leader per cache key, under the release lock.** The
//!   transaction takes the release lock before it reads the leaders in
//!   flight and the cache, and keeps it to its commit: shared, with its
//!   model's own release lock shared and the lock of its tenant's
//!   submissions of that model exclusive (`db::lock_release_for`). A round
//!   takes the model's lock exclusive for each model it claimed
//!   (`db::claim_due`). So a round and the submissions of the models it
//!   claimed run one at a time, as do one tenant's submissions of one
//!   model, while submissions that cannot share a cache key (the key
//!   hashes the tenant, the model and the input) run side by side: of
//!   different models (BENCHMARKS.md step 28) and of different tenants
//!   (step 30). A round that claimed none of their model (or nothing)
//!   holds them up no more (step 29). Its jobs go
//!   through the round's own cache step ([`coalesce::plan_locked`]): a key
//!   answered by the cache is a cache hit, a key with a leader in flight (or
//!   a second input with one key) stays `held`, due, and the next round
//!   attaches it as a follower; the rest are sent.
//! - **Published before the commit.** As a round does: a worker that gets
//!   a message before the commit waits for the commit in the batch's own
//!   lock, which the submission takes exclusive before it publishes
//!   (`db::lock_new_batches`; `store::batches::start_attempt` takes it
//!   first), and a transaction that rolls back
//!   leaves an orphan message that starts nothing. A publish that fails
//!   puts the jobs back to `held` in the same transaction
//!   ([`db::unrecord_batches`]): the submission still succeeds, and the
//!   release loop publishes them when the broker is back.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use offpeak_core::message::BatchMessage;
use offpeak_runtime::broker::Publisher;
use offpeak_store::jobs::{Admitted, NewInput, NewJob};
use offpeak_store::release::{self as db, ClaimedJob, NewBatch};

use crate::admission::CacheConfig;
use crate::coalesce;
use crate::metrics;

/// Whether, and for how many batches, a submission may release its own
/// jobs: shared by a replica's release loop, which opens it after every
/// round that left nothing due behind ([`Room::after_round`]), and its API.
/// A replica that runs no release loop never opens it.
#[derive(Debug, Clone, Default)]
pub struct Room(Arc<Mutex<RoomState>>);

#[derive(Debug, Default)]
struct RoomState {
    /// Open until this instant, unless a round closes it first: a loop
    /// that stopped running rounds (a database outage, a stuck round) does
    /// not leave it open.
    open_until: Option<Instant>,
    /// Batch messages the queue has room for, less those taken since.
    batches_left: i64,
    /// Most jobs per batch message, the release loop's.
    batch_max: usize,
}

impl Room {
    /// After a round: open for `fresh_for` with room for `batches_left`
    /// messages if the round left nothing due behind (`open`), closed
    /// otherwise.
    pub fn after_round(&self, open: bool, batches_left: i64, batch_max: usize, fresh_for: Duration) {
        let mut room = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *room = if open && batches_left > 0 && batch_max > 0 {
            RoomState { open_until: Some(Instant::now() + fresh_for), batches_left, batch_max }
        } else {
            RoomState::default()
        };
    }

    /// Closes it until the next round that opens it (a round failed).
    pub fn close(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = RoomState::default();
    }

    /// The most jobs per batch while open; `None` when closed.
    #[must_use]
    pub fn batch_max(&self) -> Option<usize> {
        let room = self.0.lock().unwrap_or_else(|e| e.into_inner());
        room.open_until.is_some_and(|t| Instant::now() < t).then_some(room.batch_max)
    }

    /// Takes room for `batches` messages, if it is open and has it.
    fn take(&self, batches: i64) -> bool {
        let mut room = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let open = room.open_until.is_some_and(|t| Instant::now() < t);
        if open && room.batches_left >= batches {
            room.batches_left -= batches;
            true
        } else {
            false
        }
    }
}

/// A submission's jobs released with it: its batches, recorded and
/// published by [`Released::publish`] after the jobs' insert.
#[derive(Debug)]
pub struct Released {
    batches: Vec<NewBatch>,
    now: DateTime<Utc>,
}

/// Decides, in the submission's transaction and before its insert, which
/// of its `held` inputs are released with it (their `admitted` becomes
/// [`Admitted::Queued`]) and which are answered by the cache that a leader
/// filled since admission ([`Admitted::CacheHit`]). Returns `None` when
/// none is released: the submission is not due at once, asked for the
/// semantic cache (searched at release only), or the [`Room`] is closed or
/// too small; its jobs are then held for the release loop, as before.
///
/// # Errors
/// Database errors only.
pub async fn prepare(
    conn: &mut PgConnection,
    room: &Room,
    cache: CacheConfig,
    template: &NewJob,
    inputs: &mut [NewInput],
) -> Result<Option<Released>, sqlx::Error> {
    let now = template.created_at;
    if template.release_at > now || template.semantic {
        return Ok(None);
    }
    let Some(batch_max) = room.batch_max() else { return Ok(None) };
    let claimed: Vec<ClaimedJob> = inputs
        .iter()
        .filter(|i| matches!(i.admitted, Admitted::Held))
        .map(|i| ClaimedJob {
            id: i.id,
            tenant_id: template.tenant_id,
            model: template.model.clone(),
            cache_key: i.cache_key.clone(),
            semantic: false,
        })
        .collect();
    if claimed.is_empty() {
        return Ok(None);
    }
    db::lock_release_for(conn, template.tenant_id, &template.model).await?;
    let plan = coalesce::plan_locked(conn, claimed, cache, now).await?;
    let hits: std::collections::HashMap<Uuid, offpeak_store::cache::CacheHit> =
        plan.answer.into_iter().map(|(id, _, hit)| (id, hit)).collect();
    let send: Vec<Uuid> = plan.send.iter().map(|j| j.id).collect();
    let batches = NewBatch::cut(&template.model, &send, batch_max);
    let released = !batches.is_empty() && room.take(batches.len() as i64);
    let batch_of: std::collections::HashMap<Uuid, Uuid> = if released {
        batches.iter().flat_map(|b| b.job_ids.iter().map(move |&j| (j, b.id))).collect()
    } else {
        Default::default()
    };
    for input in inputs.iter_mut().filter(|i| matches!(i.admitted, Admitted::Held)) {
        if let Some(hit) = hits.get(&input.id) {
            input.admitted = Admitted::CacheHit(hit.clone());
        } else if let Some(&batch) = batch_of.get(&input.id) {
            input.admitted = Admitted::Queued(batch);
        }
    }
    Ok(released.then_some(Released { batches, now }))
}

impl Released {
    /// Records the batches and publishes their messages, in the
    /// submission's transaction, after its insert and before its commit;
    /// returns the messages published. A publish that fails is logged and
    /// counted, and puts the jobs back to `held` (none published): the
    /// caller announces them to the release loop after its commit. Count
    /// what was published with [`count`] once the commit is done.
    ///
    /// # Errors
    /// Database errors only.
    pub async fn publish(self, conn: &mut PgConnection, publisher: &Publisher) -> Result<Vec<BatchMessage>, sqlx::Error> {
        // Before the publish: a worker that gets a message before the
        // commit waits for it in the batch's lock.
        db::lock_new_batches(conn, &self.batches).await?;
        db::record_batches(conn, &self.batches, self.now).await?;
        let messages: Vec<BatchMessage> = self.batches.iter().map(|b| b.message(self.now)).collect();
        if let Err(e) = publisher.publish_all(&messages).await {
            metrics::RELEASE_AT_SUBMIT_FAILED.inc();
            tracing::warn!(error = %e, batches = messages.len(),
                "could not publish a submission's batches; its jobs are held for the release loop instead");
            db::unrecord_batches(conn, &self.batches).await?;
            return Ok(Vec::new());
        }
        crate::release::failpoint_after_publish().await;
        Ok(messages)
    }
}

/// Counts a submission's published batches after its commit, as a round
/// counts its own (`offpeak_jobs_released_total` and the batch metrics),
/// and in `offpeak_jobs_released_at_submit_total`.
pub fn count(messages: &[BatchMessage]) {
    crate::release::count_released(messages);
    metrics::JOBS_RELEASED_AT_SUBMIT.inc_by(messages.iter().map(|m| m.job_ids.len() as u64).sum());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_room_opens_for_a_while_and_hands_out_what_it_has() {
        let room = Room::default();
        assert_eq!(room.batch_max(), None, "closed until a round opens it");
        assert!(!room.take(1));
        room.after_round(true, 3, 100, Duration::from_secs(60));
        assert_eq!(room.batch_max(), Some(100));
        assert!(room.take(2));
        assert!(!room.take(2), "one batch left");
        assert!(room.take(1));
        assert!(!room.take(1));
        room.after_round(false, 50, 100, Duration::from_secs(60));
        assert_eq!(room.batch_max(), None, "a round that left due jobs behind closes it");
        room.after_round(true, 50, 100, Duration::ZERO);
        assert!(!room.take(1), "a reading too old does not open it");
        room.after_round(true, 50, 100, Duration::from_secs(60));
        room.close();
        assert!(!room.take(1));
    }
}
