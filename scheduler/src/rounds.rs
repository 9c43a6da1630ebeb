//! The loop a scheduler duty runs: a round, then at once another if the
//! round says there is more, otherwise a pause of at most `interval`; after
//! a failed round a pause that doubles up to [`MAX_ERROR_PAUSE`]; all until
//! shutdown. Each duty (`release.rs`, `firing.rs`, `prune.rs`) keeps its own
//! `run_once`, logging and metrics, and hands this loop the round.
//!
//! A duty that knows when its next work is due says so ([`Next::In`]), and
//! one that can be told that work has arrived passes a [`Wake`]: a
//! notification cuts its pause short, at most once per [`Wake::gap`] after
//! the start of the last round, so a stream of notifications never runs
//! rounds back to back. A round that could do nothing however soon it ran
//! (backpressure: [`Next::Blocked`]) and a failed round are not cut short.

use std::future::Future;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use offpeak_runtime::shutdown::ShutdownSignal;

/// Longest pause after failed rounds.
pub const MAX_ERROR_PAUSE: Duration = Duration::from_secs(10);

/// What a successful round says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It was cut short: run again at once.
    Now,
    /// Nothing more for now: wait `interval`, or until woken.
    Later,
    /// Work becomes due in this long: wait that long (at most `interval`),
    /// or until woken. Zero runs the next round at once: the duty says so
    /// only for an instant after the round's own, so it cannot spin.
    In(Duration),
    /// Nothing can be done until time passes (the queue is full): wait
    /// `interval`, and let no notification cut it short.
    Blocked,
}

/// Why a round runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Woke {
    /// The loop's first round.
    Start,
    /// The last round was cut short ([`Next::Now`]).
    More,
    /// The instant the last round named ([`Next::In`]).
    Due,
    /// A notification ([`Wake`]).
    Notified,
    /// The pause ran out.
    Interval,
    /// After a failed round.
    Retry,
}

impl Woke {
    /// The label of `offpeak_release_wakeups_total`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Woke::Start => "start",
            Woke::More => "more",
            Woke::Due => "due",
            Woke::Notified => "notified",
            Woke::Interval => "interval",
            Woke::Retry => "retry",
        }
    }
}

/// Notifications that cut a pause short.
#[derive(Debug, Clone, Copy)]
pub struct Wake<'a> {
    pub notify: &'a Notify,
    /// The least time from the start of a round to a round a notification
    /// starts.
    pub gap: Duration,
}

/// Runs `round` until `shutdown` fires. A failed round is logged (naming
/// `duty` and `failed`, what a failure leaves behind) and retried after the
/// backoff.
pub async fn run<F, Fut, E>(duty: &'static str, failed: &'static str, interval: Duration, shutdown: ShutdownSignal, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Next, E>>,
    E: std::fmt::Display,
{
    run_woken(duty, failed, interval, shutdown, None, move |_| round()).await;
}

/// [`run`], with the reason each round runs handed to it, and pauses that
/// `wake`'s notifications cut short.
pub async fn run_woken<F, Fut, E>(
    duty: &'static str,
    failed: &'static str,
    interval: Duration,
    mut shutdown: ShutdownSignal,
    wake: Option<Wake<'_>>,
    mut round: F,
) where
    F: FnMut(Woke) -> Fut,
    Fut: Future<Output = Result<Next, E>>,
    E: std::fmt::Display,
{
    let mut backoff = interval;
    let mut woke = Woke::Start;
    while !shutdown.is_triggered() {
        let started = Instant::now();
        // The pause, whether a notification may cut it short, and what its
        // end means.
        let (pause, wakeable, timer) = match round(woke).await {
            Ok(next) => {
                backoff = interval;
                match next {
                    Next::Now => (Duration::ZERO, false, Woke::More),
                    Next::Later => (interval, true, Woke::Interval),
                    Next::In(d) if d < interval => (d, true, Woke::Due),
                    Next::In(_) => (interval, true, Woke::Interval),
                    Next::Blocked => (interval, false, Woke::Interval),
                }
            }
            Err(e) => {
                tracing::warn!(duty, error = %e, retry_in_ms = backoff.as_millis() as u64, "{duty} round failed; {failed}, retrying");
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_ERROR_PAUSE);
                (pause, false, Woke::Retry)
            }
        };
        woke = timer;
        if pause.is_zero() {
            continue;
        }
        let deadline = Instant::now() + pause;
        let notified = async {
            match wake {
                Some(w) if wakeable => w.notify.notified().await,
                _ => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {}
            _ = notified => {
                // Not before the gap is over, nor after the pause would
                // have ended anyway (a due instant is not made late).
                let gap_over = started + wake.map_or(Duration::ZERO, |w| w.gap);
                if gap_over < deadline {
                    woke = Woke::Notified;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(gap_over.min(deadline)) => {}
                    _ = shutdown.wait() => {}
                }
            }
            _ = shutdown.wait() => {}
        }
    }
    tracing::info!(duty, "{duty} loop stopped");
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use offpeak_runtime::shutdown::Shutdown;

    use super::*;

    const INTERVAL: Duration = Duration::from_secs(1);
    const GAP: Duration = Duration::from_millis(50);

    /// Runs the loop over `answers` (one per round; the loop stops after the
    /// last), with a notification `notify_after` each round's start; returns
    /// each round's reason and start, from the first round's.
    async fn rounds(answers: Vec<Result<Next, &'static str>>, notify_after: Option<Duration>) -> Vec<(Woke, Duration)> {
        let notify = Arc::new(Notify::new());
        let (shutdown, signal) = Shutdown::new();
        let seen: Arc<Mutex<Vec<(Woke, Instant)>>> = Arc::default();
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let wake = Wake { notify: &notify, gap: GAP };
        run_woken("test", "nothing", INTERVAL, signal, Some(wake), |woke| {
            let (seen, answers, notify) = (Arc::clone(&seen), Arc::clone(&answers), Arc::clone(&notify));
            let shutdown = &shutdown;
            async move {
                seen.lock().unwrap().push((woke, Instant::now()));
                let answer = answers.lock().unwrap().next();
                if let Some(after) = notify_after {
                    tokio::spawn(async move {
                        tokio::time::sleep(after).await;
                        notify.notify_one();
                    });
                }
                match answer {
                    Some(a) => a,
                    None => {
                        shutdown.trigger();
                        Ok(Next::Later)
                    }
                }
            }
        })
        .await;
        let seen = seen.lock().unwrap().clone();
        let t0 = seen[0].1;
        seen.into_iter().map(|(w, t)| (w, t - t0)).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn a_notification_cuts_the_pause_short_but_not_before_the_gap() {
        let seen = rounds(vec![Ok(Next::Later)], Some(Duration::from_millis(10))).await;
        assert_eq!(seen, vec![(Woke::Start, Duration::ZERO), (Woke::Notified, GAP)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_round_runs_at_the_instant_it_named_and_a_notification_does_not_make_it_late() {
        let due = Duration::from_millis(30);
        let seen = rounds(vec![Ok(Next::In(due)), Ok(Next::In(due))], Some(Duration::from_millis(10))).await;
        // The notification came first, but the gap would end after the
        // instant: the round runs at the instant.
        assert_eq!(seen, vec![(Woke::Start, Duration::ZERO), (Woke::Due, due), (Woke::Due, due * 2)]);
        let seen = rounds(vec![Ok(Next::In(INTERVAL * 5))], None).await;
        assert_eq!(seen, vec![(Woke::Start, Duration::ZERO), (Woke::Interval, INTERVAL)], "never longer than the interval");
        let seen = rounds(vec![Ok(Next::In(Duration::ZERO))], None).await;
        assert_eq!(seen, vec![(Woke::Start, Duration::ZERO), (Woke::Due, Duration::ZERO)]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocked_or_failed_round_waits_whatever_is_announced() {
        let seen = rounds(vec![Ok(Next::Blocked), Err("down"), Ok(Next::Now)], Some(Duration::from_millis(10))).await;
        assert_eq!(
            seen,
            vec![
                (Woke::Start, Duration::ZERO),
                (Woke::Interval, INTERVAL),
                (Woke::Retry, INTERVAL * 2),
                (Woke::More, INTERVAL * 2),
            ]
        );
    }
}
