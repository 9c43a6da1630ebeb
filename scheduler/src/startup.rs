//! Wiring: builds the API and the release loop from configuration, and runs
//! them until shutdown. Tests call [`serve`] with their own listener and
//! clock, so they run exactly what `offpeak-scheduler serve` runs.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::net::TcpListener;

use offpeak_shared::broker::Publisher;
use offpeak_shared::clock::SharedClock;
use offpeak_shared::db;
use offpeak_shared::shutdown::ShutdownSignal;

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
}

/// How often the jobs-by-state gauge is refreshed.
pub const STATS_INTERVAL: Duration = Duration::from_secs(15);

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
    let groups = crate::group_commit::GroupCommit::start(
        pool.clone(),
        api_config.cache,
        api_config.prices.clone(),
        api_config.group_commit,
    );
    let state =
        AppState { pool: pool.clone(), clock: clock.clone(), config: Arc::new(api_config), publisher: Some(publisher.clone()), auth, groups };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(cfg) = loops.release {
        let releaser = Releaser::new(pool.clone(), publisher.clone(), clock.clone(), cfg);
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

async fn refresh_state_gauge(pool: PgPool, clock: SharedClock, mut shutdown: ShutdownSignal) {
    use offpeak_shared::db::stats;
    while !shutdown.is_triggered() {
        match db::jobs::count_by_state(&pool).await {
            Ok(counts) => {
                for st in offpeak_shared::job::JobState::ALL {
                    let n = counts.iter().find(|(s, _)| s == st.as_str()).map_or(0, |(_, n)| *n);
                    metrics::JOBS_BY_STATE.with_label_values(&[st.as_str()]).set(n);
                }
            }
            Err(e) => tracing::debug!(error = %e, "could not refresh jobs-by-state gauge"),
        }
        if let Ok(rows) = stats::by_state_and_model(&pool).await {
            // Reset first, so a (state, model) pair that emptied reads 0 rather than its last count.
            metrics::JOBS_BY_STATE_MODEL.reset();
            for (state, model, n) in rows {
                metrics::JOBS_BY_STATE_MODEL.with_label_values(&[&state, &model]).set(n);
            }
        }
        if let Ok(rows) = stats::held_by_hours_until_due(&pool, clock.now()).await {
            for bucket in stats::due_buckets() {
                let n = rows.iter().find(|(b, _)| *b == bucket).map_or(0, |(_, n)| *n);
                metrics::HELD_BY_DUE.with_label_values(&[&bucket]).set(n);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(STATS_INTERVAL) => {}
            _ = shutdown.wait() => {}
        }
    }
}
