//! Group commit of single submissions: many `POST /v1/jobs` share one
//! transaction, one `INSERT` and one WAL flush.
//!
//! A committed job must survive a crash, so every commit waits for a WAL
//! flush (`fdatasync`, several milliseconds on this project's disks), and a
//! transaction per request spends most of PostgreSQL's work on what every
//! request repeats (begin, the cache lookup, the tenant's limits, commit).
//! Instead, handlers hand their submission to a few *lanes*: each lane takes
//! whatever submissions are waiting (at most `max_group`), admits them
//! together ([`crate::admission::admit_each`]: one cache lookup, one read of
//! the limits, quota locks in sorted order), inserts them with one statement
//! (`jobs::insert_each`), commits once, and only then answers each
//! handler. Nothing waits for a group to fill: an idle lane takes the first
//! submission alone, so at low load a submission costs what it did before,
//! and under load groups form by themselves while the lanes are busy.
//!
//! Each submission keeps its own outcome: a quota refusal refuses that one
//! only (admission counts each group member after the ones before it, as if
//! they had arrived one by one). If the group's transaction fails, each
//! submission is retried alone, so an error is answered to the submission
//! it belongs to.
//!
//! After its commit, a group announces the jobs it stored that are due now
//! or soon to the release loops ([`crate::wake::DueSignal`]): one
//! announcement per group, sent off the lane.
//!
//! Submissions under an `Idempotency-Key` do not come here: their insert
//! must find the original job when the key is taken, one by one.
//!
//! ```rust,no_run
//! # async fn example(pool: sqlx::PgPool, single: offpeak_scheduler::admission::Single) {
//! use offpeak_scheduler::group_commit::{GroupCommit, GroupCommitConfig};
//! let due = offpeak_scheduler::wake::DueSignal::start(pool.clone());
//! let groups = GroupCommit::start(pool, Default::default(), Default::default(), GroupCommitConfig::default(), due);
//! match groups.submit(single).await {
//!     Ok(Ok(Ok(job))) => println!("stored {}", job.id),
//!     Ok(Ok(Err(refused))) => println!("over the quota: {}", refused.exceeded.limit),
//!     Ok(Err(e)) => eprintln!("database error: {e}"),
//!     Err(stopped) => eprintln!("{stopped}"),
//! }
//! # }
//! ```

use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot, Mutex};
use tracing::Instrument;

use offpeak_store::jobs::{self as db, JobRow};
use offpeak_core::prices::PriceTable;

use crate::admission::{self, CacheConfig, Refused, Single};
use crate::metrics;
use crate::wake::DueSignal;

/// Lanes, hence transactions (and pool connections) in flight at once.
pub const LANES_DEFAULT: usize = 4;
/// The most submissions one transaction takes.
pub const MAX_GROUP_DEFAULT: usize = 64;
/// Submissions waiting for a lane before handlers wait to hand theirs over.
const QUEUE_CAPACITY: usize = 4096;

/// How single submissions are grouped.
#[derive(Debug, Clone, Copy)]
pub struct GroupCommitConfig {
    pub lanes: usize,
    pub max_group: usize,
}

impl Default for GroupCommitConfig {
    fn default() -> Self {
        Self { lanes: LANES_DEFAULT, max_group: MAX_GROUP_DEFAULT }
    }
}

/// What becomes of one submission: stored, refused by a quota, or a
/// database error.
pub type Outcome = Result<Result<JobRow, Refused>, sqlx::Error>;

struct Pending {
    single: Single,
    reply: oneshot::Sender<Outcome>,
}

/// The handle handlers submit through; cheap to clone. The lanes stop when
/// the last handle is dropped.
#[derive(Debug, Clone)]
pub struct GroupCommit {
    /// `None` when group commit is off (zero lanes).
    queue: Option<mpsc::Sender<Pending>>,
}

/// Why a submission got no outcome: there are no lanes (group commit is
/// off) or they are gone (they stop only when the process does).
#[derive(Debug, thiserror::Error)]
#[error("no submission lanes are running")]
pub struct Stopped;

impl GroupCommit {
    /// Spawns `config.lanes` lanes on the current runtime; zero lanes turn
    /// group commit off ([`GroupCommit::enabled`] is then false and callers
    /// commit each submission on its own). `due` announces the jobs due
    /// now or soon after each commit.
    pub fn start(pool: PgPool, cache: CacheConfig, prices: PriceTable, config: GroupCommitConfig, due: DueSignal) -> Self {
        if config.lanes == 0 {
            return Self { queue: None };
        }
        let (queue, rx) = mpsc::channel(QUEUE_CAPACITY);
        let lane = Arc::new(Lane { pool, cache, prices, max_group: config.max_group.max(1), queue: Mutex::new(rx), due });
        for _ in 0..config.lanes {
            tokio::spawn(Arc::clone(&lane).run());
        }
        Self { queue: Some(queue) }
    }

    /// Whether submissions go through lanes.
    pub fn enabled(&self) -> bool {
        self.queue.is_some()
    }

    /// Admits and stores `single` with whatever else is waiting, and
    /// returns once its group is committed (or refused or failed).
    ///
    /// # Errors
    /// [`Stopped`] if the lanes are gone; the outcome's own errors are
    /// database errors.
    pub async fn submit(&self, single: Single) -> Result<Outcome, Stopped> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.as_ref().ok_or(Stopped)?;
        queue.send(Pending { single, reply }).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

struct Lane {
    pool: PgPool,
    cache: CacheConfig,
    prices: PriceTable,
    max_group: usize,
    /// Shared by all lanes: the lane holding it takes the next group. It is
    /// held only while a group is taken off the queue, never during I/O.
    queue: Mutex<mpsc::Receiver<Pending>>,
    due: DueSignal,
}

impl Lane {
    async fn run(self: Arc<Self>) {
        while let Some(group) = self.next_group().await {
            let span = tracing::debug_span!("submit_group", size = group.len());
            self.commit_and_answer(group).instrument(span).await;
        }
    }

    /// The next submission, waiting for it, and whatever else is already
    /// queued behind it up to `max_group`; `None` once every handle is gone.
    async fn next_group(&self) -> Option<Vec<Pending>> {
        let mut queue = self.queue.lock().await;
        let first = queue.recv().await?;
        let mut group = vec![first];
        while group.len() < self.max_group {
            match queue.try_recv() {
                Ok(p) => group.push(p),
                Err(_) => break,
            }
        }
        Some(group)
    }

    async fn commit_and_answer(&self, group: Vec<Pending>) {
        metrics::SUBMIT_GROUP_SIZE.observe(group.len() as f64);
        let (singles, replies): (Vec<Single>, Vec<_>) = group.into_iter().map(|p| (p.single, p.reply)).unzip();
        match self.commit(&singles).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    // The handler is gone only if its client disconnected;
                    // the job stays stored, as if the answer were lost.
                    let _ = reply.send(Ok(outcome));
                }
            }
            Err(e) if singles.len() == 1 => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(e));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, size = singles.len(), "group of submissions failed; retrying each alone");
                metrics::SUBMIT_GROUP_RETRIES.inc();
                for (single, reply) in singles.iter().zip(replies) {
                    let outcome = self.commit(std::slice::from_ref(single)).await.map(|mut o| o.remove(0));
                    let _ = reply.send(outcome);
                }
            }
        }
    }

    /// Admits and inserts `group` in one transaction; one outcome per
    /// submission, in order.
    async fn commit(&self, group: &[Single]) -> Result<Vec<Result<JobRow, Refused>>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let admitted = admission::admit_each(&mut tx, group, self.cache, &self.prices).await?;
        let accepted: Vec<_> =
            group.iter().zip(&admitted).filter_map(|(s, a)| a.as_ref().ok().map(|(input, adm)| (&s.job, input, adm))).collect();
        let mut rows = db::insert_each(&mut tx, &accepted).await?.into_iter();
        // `insert_each` returns one row per accepted submission, in order;
        // matched before the commit, so a mismatch commits nothing.
        let mut outcomes = Vec::with_capacity(group.len());
        for a in admitted {
            outcomes.push(match a {
                Ok(_) => Ok(rows.next().ok_or_else(|| sqlx::Error::Protocol("fewer jobs inserted than accepted".into()))?),
                Err(refused) => Err(refused),
            });
        }
        tx.commit().await?;
        self.due.rows(outcomes.iter().filter_map(|o| o.as_ref().ok()));
        Ok(outcomes)
    }
}
