//! Wiring: builds the API and the release loop from configuration, and runs
//! them until shutdown. Tests call [`serve`] with their own listener and
//! clock, so they run exactly what `offpeak-scheduler serve` runs.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio::net::TcpListener;

use offpeak_runtime::broker::Publisher;
use offpeak_core::clock::SharedClock;
use offpeak_runtime::shutdown::ShutdownSignal;

use crate::api::{self, ApiConfig, AppState};
use crate::firing::{Firer, FiringConfig};
use crate::metrics;
use crate::prune::{PruneConfig, Pruner};
use crate::release::{ReleaseConfig, Releaser};
use crate::rescue::{RescueConfig, Rescuer};

/// The background loops a scheduler replica runs beside its API; `None`
/// leaves a loop off (tests drive loops by hand with `run_once`).
#[derive(Debug, Clone, Default)]
pub struct Loops {
    pub release: Option<ReleaseConfig>,
    pub rescue: Option<RescueConfig>,
    pub firing: Option<FiringConfig>,
    pub prune: Option<PruneConfig>,
    /// Webhook deliveries and group completion ([`crate::webhooks`]).
    pub webhooks: Option<crate::webhooks::DeliveryConfig>,
    /// Shared by the API and the release loop (if this replica runs one),
    /// which opens it (`crate::direct`); closed by default.
    pub room: crate::direct::Room,
}

/// The shortest pause between two refreshes of the counting gauges.
pub const STATS_INTERVAL: Duration = Duration::from_secs(15);
/// The pause between two refreshes of the counting gauges is at least this
/// many times as long as the last refresh took.
pub const STATS_COST_FACTOR: u32 = 10;

/// Serves the API on `listener` and runs the configured `loops` beside it,
/// until `shutdown` fires; then stops taking requests, finishes those in
/// flight, waits for the loops, and returns.
///
/// # Errors
/// Only if the HTTP server itself fails.
pub async fn serve(
    listener: TcpListener,
    pool: PgPool,
    publisher: Publisher,
    clock: SharedClock,
    api_config: ApiConfig,
    loops: Loops,
    shutdown: ShutdownSignal,
) -> std::io::Result<()> {
    let auth = Arc::new(api::auth::AuthCache::new(api_config.auth_cache_ttl));
    let due = crate::wake::DueSignal::start(pool.clone());
    let groups = crate::group_commit::GroupCommit::start(
        pool.clone(),
        api_config.cache,
        api_config.prices.clone(),
        api_config.group_commit,
        due.clone(),
    );
    let room = loops.room.clone();
    let state = AppState {
        pool: pool.clone(),
        clock: clock.clone(),
        config: Arc::new(api_config),
        publisher: Some(publisher.clone()),
        auth,
        groups,
        due,
        room: room.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    // Set by the release loop, read by the webhook delivery loop.
    let pressure = crate::release::Pressure::default();
    if let Some(cfg) = loops.release {
        let releaser =
            Releaser::new(pool.clone(), publisher.clone(), clock.clone(), cfg).with_pressure(pressure.clone()).with_room(room);
        tasks.spawn(releaser.run(shutdown.clone()));
    }
    if let Some(cfg) = loops.rescue {
        let rescuer = Rescuer::new(pool.clone(), publisher.clone(), clock.clone(), cfg);
        tasks.spawn(rescuer.run(shutdown.clone()));
    }
    if let Some(cfg) = loops.prune {
        tasks.spawn(Pruner::new(pool.clone(), clock.clone(), cfg).run(shutdown.clone()));
    }
    if let Some(cfg) = loops.firing {
        let firer = Firer::new(pool.clone(), clock.clone(), cfg);
        tasks.spawn(firer.run(shutdown.clone()));
    }
    if let Some(cfg) = loops.webhooks {
        match crate::webhooks::Deliverer::new(pool.clone(), clock.clone(), cfg) {
            Ok(deliverer) => {
                tasks.spawn(deliverer.with_pressure(pressure).run(shutdown.clone()));
            }
            // The client's TLS setup failing is a broken build, not a
            // passing condition: say so loudly and serve the rest.
            Err(e) => tracing::error!(error = %e, "webhook delivery loop not started: its HTTP client could not be built"),
        }
    }
    tasks.spawn(refresh_state_gauge(pool, clock.clone(), shutdown.clone()));

    let addr = listener.local_addr()?;
    tracing::info!(%addr, "API listening");
    let mut stop = shutdown.clone();
    // The dashboard's routes sit beside the API's, not inside them: they
    // are not part of the tenant API or its OpenAPI document.
    let app = api::router(state.clone()).merge(crate::ui::router(state));
    let result = axum::serve(listener, app)
        .with_graceful_shutdown(async move { stop.wait().await })
        .await;
    while tasks.join_next().await.is_some() {}
    tracing::info!("scheduler stopped");
    result
}

/// One pass of [`refresh_state_gauge`], in one counting transaction. A
/// gauge keeps its last value when the pass fails.
async fn refresh_gauges_once(pool: &PgPool, now: DateTime<Utc>) -> Result<(), sqlx::Error> {
    use offpeak_store::operator::gauges as stats;
    let mut tx = stats::begin_counting(pool).await?;
    let rows = stats::by_state_and_model(&mut *tx).await?;
    for st in offpeak_core::job::JobState::ALL {
        let n: i64 = rows.iter().filter(|(s, _, _)| s == st.as_str()).map(|(_, _, n)| n).sum();
        metrics::JOBS_BY_STATE.with_label_values(&[st.as_str()]).set(n);
    }
    // Reset first, so a (state, model) pair that emptied reads 0 rather than its last count.
    metrics::JOBS_BY_STATE_MODEL.reset();
    for (state, model, n) in rows {
        metrics::JOBS_BY_STATE_MODEL.with_label_values(&[&state, &model]).set(n);
    }
    let o = offpeak_store::webhooks::outbox_stats(&mut *tx, now).await?;
    metrics::WEBHOOK_OUTBOX_PENDING.set(o.pending);
    metrics::WEBHOOK_EVENTS_WAITING.set(o.events_waiting);
    metrics::WEBHOOK_OUTBOX_OLDEST_SECONDS.set(o.oldest_pending_seconds as i64);
    metrics::WEBHOOK_DELIVERIES_FAILED.set(o.failed);
    metrics::WEBHOOK_ENDPOINTS_DISABLED.set(o.endpoints_disabled);
    let rows = stats::held_by_hours_until_due(&mut *tx, now).await?;
    for bucket in stats::due_buckets() {
        let n = rows.iter().find(|(b, _)| *b == bucket).map_or(0, |(_, n)| *n);
        metrics::HELD_BY_DUE.with_label_values(&[&bucket]).set(n);
    }
    tx.commit().await
}

/// Refreshes the gauges that count the jobs table (`offpeak_jobs`,
/// `offpeak_jobs_by_model`, `offpeak_held_jobs_due`) and the webhook
/// outbox: every [`STATS_INTERVAL`], or, when a pass is slow,
/// [`STATS_COST_FACTOR`] times as long as the pass took. Counting is a scan
/// of the table: at 1,000,000 jobs in the middle of the 02:00 burst, the
/// three queries this used to run took 1 s each, every 15 s, a sixth of
/// what PostgreSQL spent on the release (BENCHMARKS.md, step 7). Now jobs
/// by state are summed from jobs by state and model (one scan), a pass
/// reads in one counting transaction (one backend, no JIT), and the pause
/// keeps the counting under a tenth of one connection's time however big
/// the table grows.
async fn refresh_state_gauge(pool: PgPool, clock: SharedClock, mut shutdown: ShutdownSignal) {
    while !shutdown.is_triggered() {
        let started = std::time::Instant::now();
        if let Err(e) = refresh_gauges_once(&pool, clock.now()).await {
            tracing::debug!(error = %e, "could not refresh the gauges of the jobs table and the webhook outbox");
        }
        let pause = STATS_INTERVAL.max(started.elapsed() * STATS_COST_FACTOR);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait() => {}
        }
    }
}
