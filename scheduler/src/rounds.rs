//! The loop a scheduler duty runs: a round, then at once another if the
//! round says there is more, otherwise a pause of `interval`; after a failed
//! round a pause that doubles up to [`MAX_ERROR_PAUSE`]; all until shutdown.
//! Each duty (`release.rs`, `firing.rs`) keeps its own `run_once`, logging
//! and metrics, and hands this loop the round.

use std::future::Future;
use std::time::Duration;

use offpeak_runtime::shutdown::ShutdownSignal;

/// Longest pause after failed rounds.
pub const MAX_ERROR_PAUSE: Duration = Duration::from_secs(10);

/// What a successful round says about the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// It was cut short: run again at once.
    Now,
    /// Nothing more for now: wait `interval`.
    Later,
}

/// Runs `round` until `shutdown` fires. A failed round is logged (naming
/// `duty` and `failed`, what a failure leaves behind) and retried after the
/// backoff.
pub async fn run<F, Fut, E>(duty: &'static str, failed: &'static str, interval: Duration, mut shutdown: ShutdownSignal, mut round: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Next, E>>,
    E: std::fmt::Display,
{
    let mut backoff = interval;
    while !shutdown.is_triggered() {
        let pause = match round().await {
            Ok(next) => {
                backoff = interval;
                if next == Next::Now { Duration::ZERO } else { interval }
            }
            Err(e) => {
                tracing::warn!(duty, error = %e, retry_in_ms = backoff.as_millis() as u64, "{duty} round failed; {failed}, retrying");
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_ERROR_PAUSE);
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => {}
        }
    }
    tracing::info!(duty, "{duty} loop stopped");
}
