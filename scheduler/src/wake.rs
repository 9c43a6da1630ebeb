//! What wakes the release loop besides its own timer: announcements of jobs
//! due now, or soon, over PostgreSQL's `LISTEN/NOTIFY` on
//! `offpeak_store::release::DUE_CHANNEL`, so that every replica's loop
//! hears of them, whichever replica stored them.
//!
//! - [`DueSignal`]: the API's submissions (single, grouped, bulk,
//!   upgrades) announce the jobs they stored due within
//!   `store::release::DUE_SOON`, *after* their commit, through one task per
//!   process that sends `NOTIFY` on a connection of its own and merges
//!   every announcement made while it was sending into its next one.
//!   A transaction that sends `NOTIFY` holds a cluster-wide lock through its
//!   commit (WAL flush included), so notifying transactions commit one at a
//!   time: with 4 connections committing 16-row inserts, `pgbench` measured
//!   5,465 transactions/s without `NOTIFY` and 4,152 with it; with 16, 4,441
//!   and 952. Sent from this task, the submissions' commits never wait for
//!   it (3,988 transactions/s at 16 connections with a task sending `NOTIFY`
//!   in a loop beside them; BENCHMARKS.md, "Waking the release loop"). The cost is that a
//!   process killed between a commit and its announcement leaves the job to
//!   the loop's next poll (`OFFPEAK_RELEASE_INTERVAL_MS`), as before.
//!   Rare or serial paths (schedule firings, followers put back to `held`)
//!   notify inside their own transaction (`store::release::notify_due`).
//! - [`Wakeups`]: the release loop's side. A task listens (sqlx's
//!   `PgListener`, which reconnects by itself); a notification wakes the
//!   loop, and `soon` also tells it to read the next due instant again. A
//!   lost connection is logged and counted, never fatal: the loop then runs
//!   a round and reads the next due instant again, as notifications may
//!   have been missed, and polls as before until the listener is back.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::sync::{mpsc, Notify};

use offpeak_core::job::JobState;
use offpeak_runtime::shutdown::ShutdownSignal;
use offpeak_store::jobs::JobRow;
use offpeak_store::release::{self as db, Due};

use crate::metrics;

const NOW: u8 = 1;
const SOON: u8 = 2;

/// Announces stored jobs that are due now or soon to every release loop
/// (see the module's doc). Cheap to clone; the task it started stops when
/// the last clone is dropped.
#[derive(Debug, Clone, Default)]
pub struct DueSignal {
    /// `None`: announcements go nowhere (tests that drive rounds by hand).
    send: Option<mpsc::Sender<()>>,
    /// What is to be announced: bits of `NOW` and `SOON`.
    pending: Arc<AtomicU8>,
}

impl DueSignal {
    /// Starts the task that sends the announcements over `pool`.
    pub fn start(pool: PgPool) -> Self {
        // One slot: a send waiting in it already covers what is announced
        // after it was put there, as the task reads `pending` only once it
        // has taken it.
        let (send, mut recv) = mpsc::channel::<()>(1);
        let pending = Arc::new(AtomicU8::new(0));
        let bits = Arc::clone(&pending);
        tokio::spawn(async move {
            while recv.recv().await.is_some() {
                let due = match bits.swap(0, Ordering::AcqRel) {
                    0 => continue,
                    b if b & SOON != 0 => Due::Soon,
                    _ => Due::Now,
                };
                if let Err(e) = db::notify_due(&pool, due).await {
                    metrics::DUE_NOTIFY_ERRORS.inc();
                    tracing::warn!(error = %e, "could not announce due jobs to the release loops; they are released at their next poll");
                }
            }
        });
        Self { send: Some(send), pending }
    }

    /// Announces a job due at `release_at`, stored at `now` (nothing if it
    /// is due later than `DUE_SOON`). Call it after the commit.
    pub fn job(&self, release_at: DateTime<Utc>, now: DateTime<Utc>) {
        if let Some(due) = Due::of(release_at, now) {
            self.announce(due);
        }
    }

    /// Announces the stored rows that are `held` and due now or soon, as of
    /// their submission (`created_at`). Call it after the commit.
    pub fn rows<'a>(&self, rows: impl IntoIterator<Item = &'a JobRow>) {
        let due = rows.into_iter().filter(|r| r.state == JobState::Held).filter_map(|r| Due::of(r.release_at, r.created_at)).max();
        if let Some(due) = due {
            self.announce(due);
        }
    }

    fn announce(&self, due: Due) {
        let Some(send) = &self.send else { return };
        self.pending.fetch_or(if due == Due::Soon { SOON } else { NOW }, Ordering::AcqRel);
        // Full: a send is already waiting, and it will carry this one.
        let _ = send.try_send(());
    }
}

/// The release loop's wake-ups: what a notification tells it (see the
/// module's doc). Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wakeups(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    notify: Notify,
    /// Counts `soon` announcements (and lost connections, which may have
    /// missed one): a next due instant read before the last of them may
    /// miss a job.
    soon: AtomicU64,
    /// Whether the listener is connected, so that announcements arrive.
    listening: AtomicBool,
}

/// Pause before trying again to listen, doubling up to [`MAX_LISTEN_PAUSE`].
const LISTEN_PAUSE: Duration = Duration::from_millis(100);
const MAX_LISTEN_PAUSE: Duration = Duration::from_secs(5);

impl Wakeups {
    /// What cuts the loop's pause short.
    #[must_use]
    pub fn notify(&self) -> &Notify {
        &self.0.notify
    }

    /// The count of `soon` announcements heard so far.
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.0.soon.load(Ordering::Acquire)
    }

    /// Whether announcements are being heard.
    #[must_use]
    pub fn listening(&self) -> bool {
        self.0.listening.load(Ordering::Acquire)
    }

    /// Wakes the loop as an announcement does.
    pub fn wake(&self, due: Due) {
        if due == Due::Soon {
            self.0.soon.fetch_add(1, Ordering::AcqRel);
        }
        self.0.notify.notify_one();
    }

    fn set_listening(&self, on: bool) {
        self.0.listening.store(on, Ordering::Release);
        metrics::RELEASE_LISTENING.set(i64::from(on));
    }

    /// Listens on `DUE_CHANNEL` until `shutdown`, waking the loop for every
    /// announcement; reconnects when the connection is lost, with a log
    /// line and `offpeak_release_listener_lost_total`, and wakes the loop
    /// then (announcements may have been missed meanwhile).
    pub async fn listen(&self, pool: PgPool, mut shutdown: ShutdownSignal) {
        let mut listener = None;
        let mut pause = LISTEN_PAUSE;
        let mut connected_before = false;
        while !shutdown.is_triggered() {
            let l = match &mut listener {
                Some(l) => l,
                None => {
                    let made = tokio::select! {
                        made = db::listen_due(&pool) => made,
                        _ = shutdown.wait() => break,
                    };
                    match made {
                        Ok(l) => {
                            self.set_listening(true);
                            if connected_before {
                                tracing::info!("listening for due jobs again");
                                self.wake(Due::Soon);
                            }
                            connected_before = true;
                            pause = LISTEN_PAUSE;
                            listener.insert(l)
                        }
                        Err(e) => {
                            self.lost(&e.to_string(), pause);
                            tokio::select! {
                                _ = tokio::time::sleep(pause) => {}
                                _ = shutdown.wait() => break,
                            }
                            pause = (pause * 2).min(MAX_LISTEN_PAUSE);
                            continue;
                        }
                    }
                }
            };
            let received = tokio::select! {
                r = l.try_recv() => r,
                _ = shutdown.wait() => break,
            };
            match received {
                Ok(Some(n)) => self.wake(Due::from_payload(n.payload())),
                // Lost, and already connected and listening again.
                Ok(None) => {
                    metrics::RELEASE_LISTENER_LOST.inc();
                    tracing::warn!("the connection listening for due jobs was lost; reconnected, running a round for what it may have missed");
                    self.wake(Due::Soon);
                }
                // Lost, and not connected again: start over with a new one.
                Err(e) => {
                    listener = None;
                    self.lost(&e.to_string(), pause);
                    self.wake(Due::Soon);
                }
            }
        }
        self.set_listening(false);
    }

    fn lost(&self, error: &str, pause: Duration) {
        self.set_listening(false);
        metrics::RELEASE_LISTENER_LOST.inc();
        tracing::warn!(error, retry_in_ms = pause.as_millis() as u64,
            "cannot listen for due jobs; the release loop polls meanwhile, listening again");
    }
}
