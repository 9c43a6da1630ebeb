//! Configuration (flags and environment) and wiring of a worker process.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use clap::Parser;

use offpeak_runtime::broker::Topology;
use offpeak_core::clock::{SharedClock, SystemClock};
use offpeak_runtime::config::{BrokerArgs, DatabaseArgs, PriceArgs};
use offpeak_store as db;
use offpeak_runtime::shutdown::{self, Shutdown};

use crate::consumer::{self, ConsumerConfig};
use crate::listen::{self, Listen};
use crate::process::{Backoff, BatchContext};
use crate::limits::Limiter;
use crate::provider::Providers;

#[derive(Debug, Parser)]
#[command(name = "offpeak-worker", version, about = "offpeak worker: consumes batches, calls the provider, writes results")]
pub struct Cli {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Base URL of the provider (its batch API is `<url>/v1/batch`).
    #[arg(long, env = "PROVIDER_URL", default_value = "http://127.0.0.1:8090")]
    pub provider_url: String,
    /// Bearer key for the provider. Never logged.
    #[arg(long, env = "PROVIDER_API_KEY", default_value = "local-dev-key", hide_env_values = true)]
    pub provider_api_key: String,
    /// Timeout of one provider call, in seconds.
    #[arg(long, env = "OFFPEAK_PROVIDER_TIMEOUT_SECS", default_value_t = 120)]
    pub provider_timeout_secs: u64,
    /// Seconds a poller leases a provider batch (openai-batch) for one poll: what a poller killed
    /// mid-poll delays that batch's next poll. Default: three provider timeouts (the longest of the
    /// openai-batch providers) and a quarter more.
    #[arg(long, env = "OFFPEAK_POLL_LEASE_SECS")]
    pub poll_lease_secs: Option<u64>,
    /// Batches this worker holds and works at once.
    #[arg(long, env = "OFFPEAK_WORKER_PREFETCH", default_value_t = consumer::PREFETCH_DEFAULT)]
    pub prefetch: u16,
    /// First retry pause after a transient provider error, in milliseconds (doubles each attempt).
    #[arg(long, env = "OFFPEAK_RETRY_BASE_MS", default_value_t = 1000)]
    pub retry_base_ms: u64,
    /// Longest retry pause, in milliseconds.
    #[arg(long, env = "OFFPEAK_RETRY_CAP_MS", default_value_t = 60_000)]
    pub retry_cap_ms: u64,
    /// Seconds batches in hand get to finish after SIGTERM.
    #[arg(long, env = "OFFPEAK_SHUTDOWN_GRACE_SECS", default_value_t = consumer::SHUTDOWN_GRACE_DEFAULT.as_secs())]
    pub shutdown_grace_secs: u64,
    /// Address of the worker's /healthz, /readyz and /metrics. HOST:PORT is taken exactly (in use: the
    /// worker exits with an error); HOST:FIRST-LAST takes the first free port of the range, so each of
    /// several workers on one host gets its own. The log and /readyz say which was taken.
    #[arg(long, env = "OFFPEAK_WORKER_LISTEN", default_value = listen::DEFAULT)]
    pub listen: Listen,
}

/// Runs a worker until SIGTERM.
///
/// # Errors
/// Bad configuration, or PostgreSQL unreachable at start.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if cli.prefetch == 0 {
        anyhow::bail!("--prefetch must be at least 1");
    }
    // Listen first: an address in use is a configuration error to report
    // at once, not after waiting up to the connect timeout for PostgreSQL.
    let bound = cli.listen.bind().await?;
    tracing::info!(
        addr = %bound.addr, requested = %cli.listen, ports_in_use_before = bound.skipped, provider = %cli.provider_url,
        "worker listening on http://{} (/healthz, /readyz, /metrics)", bound.addr
    );
    let deployment = cli.prices.deployment(&cli.provider_url)?;
    let prices = deployment.prices;
    let catalog = deployment.catalog;
    let pool = db::connect(&cli.db.database_url, cli.db.db_max_connections, cli.db.connect_timeout()).await?;
    let limiter = Limiter::new(pool.clone());
    let default_timeout = Duration::from_secs(cli.provider_timeout_secs);
    let providers = Providers::from_catalog(&catalog, |env| provider_key(&cli, env), default_timeout, &limiter)?;
    let clock: SharedClock = Arc::new(SystemClock);
    let ctx = Arc::new(BatchContext {
        pool,
        providers,
        prices,
        backoff: Backoff { base: Duration::from_millis(cli.retry_base_ms), cap: Duration::from_millis(cli.retry_cap_ms) },
        clock,
    });
    let config = ConsumerConfig {
        amqp_url: cli.broker.amqp_url.clone(),
        topology: Topology::new(&cli.broker.queue),
        prefetch: cli.prefetch,
        shutdown_grace: Duration::from_secs(cli.shutdown_grace_secs),
        consumer_tag: consumer::new_consumer_tag(),
    };
    let identity = Arc::new(Identity {
        listen: bound.addr.to_string(),
        queue: config.topology.queue.clone(),
        consumer_tag: config.consumer_tag.clone(),
    });

    let (trigger, signal) = Shutdown::new();
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .with_state(identity);
    let mut http_stop = signal.clone();
    let listener = bound.listener;
    let http = tokio::spawn(async move {
        let _ = axum::serve(listener, app).with_graceful_shutdown(async move { http_stop.wait().await }).await;
    });
    tokio::spawn(async move {
        shutdown::os_signal().await;
        tracing::info!("shutdown requested; finishing batches in hand");
        trigger.trigger();
    });
    // The poller of provider batches (openai-batch): every worker runs one;
    // their leases keep them off each other's batches.
    let lease = match cli.poll_lease_secs {
        Some(secs) => Duration::from_secs(secs.max(1)),
        // The longest timeout of the providers polled.
        None => crate::poller::lease_for(
            catalog
                .providers()
                .filter(|p| p.adapter == offpeak_core::providers::Adapter::OpenaiBatch)
                .map(|p| p.timeout.unwrap_or(default_timeout))
                .max()
                .unwrap_or(default_timeout),
        ),
    };
    let poller_config = crate::poller::PollerConfig { lease, ..Default::default() };
    let poller = tokio::spawn(crate::poller::Poller::new(Arc::clone(&ctx), poller_config).run(signal.clone()));
    consumer::run(ctx, config, signal).await;
    let _ = poller.await;
    limiter.release_all().await;
    let _ = http.await;
    Ok(())
}

/// A provider's API key, from the environment variable it names:
/// `PROVIDER_API_KEY` through its flag (which has a local default), any
/// other from the environment.
fn provider_key(cli: &Cli, env: &str) -> Option<String> {
    if env == "PROVIDER_API_KEY" {
        return Some(cli.provider_api_key.clone());
    }
    std::env::var(env).ok().filter(|k| !k.is_empty())
}

/// Which worker answers: on `/healthz` and `/readyz`, so that of several
/// workers on one host (each on a port of the listen range) an operator can
/// tell which is which, and find each among the queue's consumers in
/// RabbitMQ by its tag.
#[derive(Debug)]
struct Identity {
    /// The address actually taken (not the range asked for).
    listen: String,
    queue: String,
    consumer_tag: String,
}

impl Identity {
    fn json(&self, mut body: serde_json::Value) -> axum::Json<serde_json::Value> {
        body["listen"] = self.listen.clone().into();
        body["queue"] = self.queue.clone().into();
        body["consumer_tag"] = self.consumer_tag.clone().into();
        axum::Json(body)
    }
}

/// Alive: the process serves HTTP.
async fn healthz(State(me): State<Arc<Identity>>) -> axum::Json<serde_json::Value> {
    me.json(serde_json::json!({"status": "ok"}))
}

/// Ready while the worker is consuming from RabbitMQ; 503 during an outage.
async fn readyz(State(me): State<Arc<Identity>>) -> (axum::http::StatusCode, axum::Json<serde_json::Value>) {
    let consuming = crate::metrics::CONNECTED.get() == 1;
    let status = if consuming { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (status, me.json(serde_json::json!({"status": if consuming { "ready" } else { "not_ready" }, "checks": {"rabbitmq": consuming}})))
}
