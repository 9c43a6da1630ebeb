//! `provider-sim`: the provider simulator as a standalone server, for local
//! runs, compose and the demo. See `offpeak_provider_sim` for what it does.

use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use offpeak_provider_sim::{self as sim, SimConfig, Simulator, MAX_EMBEDDING_DIMENSIONS};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc (BENCHMARKS.md step 15).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated provider batch API, and an OpenAI-compatible embeddings API,
/// with configurable latency and failure rates.
#[derive(Debug, Parser)]
#[command(name = "provider-sim", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:8090")]
    listen: String,
    /// Delay before each call is answered, in milliseconds.
    #[arg(long, env = "SIM_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,
    /// Probability of a 503.
    #[arg(long, env = "SIM_ERROR_RATE", default_value_t = 0.0, value_parser = rate)]
    error_rate: f64,
    /// Probability of a 429 with Retry-After.
    #[arg(long, env = "SIM_RATE_LIMIT_RATE", default_value_t = 0.0, value_parser = rate)]
    rate_limit_rate: f64,
    /// Probability that an item is rejected (permanent per-item error).
    #[arg(long, env = "SIM_ITEM_ERROR_RATE", default_value_t = 0.0, value_parser = rate)]
    item_error_rate: f64,
    /// Probability of a 200 with a malformed body.
    #[arg(long, env = "SIM_GARBAGE_RATE", default_value_t = 0.0, value_parser = rate)]
    garbage_rate: f64,
    /// Probability that a call hangs for --slow-ms more (a timeout for a client with a shorter timeout).
    #[arg(long, env = "SIM_SLOW_RATE", default_value_t = 0.0, value_parser = rate)]
    slow_rate: f64,
    /// How long a slow call hangs, in milliseconds.
    #[arg(long, env = "SIM_SLOW_MS", default_value_t = 30_000)]
    slow_ms: u64,
    /// The only bearer key accepted; without it any non-empty key is.
    #[arg(long, env = "PROVIDER_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Seed of the failure draws, for reproducible runs.
    #[arg(long, env = "SIM_SEED")]
    seed: Option<u64>,
    /// Length of the vectors POST /v1/embeddings returns when the request names no `dimensions`.
    #[arg(long, env = "SIM_EMBEDDINGS_DIMENSIONS", default_value_t = sim::DEFAULT_EMBEDDING_DIMENSIONS, value_parser = dimensions)]
    embeddings_dimensions: usize,
    /// Delay before each embeddings call is answered, in milliseconds.
    #[arg(long, env = "SIM_EMBEDDINGS_LATENCY_MS", default_value_t = 0)]
    embeddings_latency_ms: u64,
    /// Probability that an embeddings call is answered 503.
    #[arg(long, env = "SIM_EMBEDDINGS_ERROR_RATE", default_value_t = 0.0, value_parser = rate)]
    embeddings_error_rate: f64,
    /// Probability that an embeddings call is answered 429 with Retry-After.
    #[arg(long, env = "SIM_EMBEDDINGS_RATE_LIMIT_RATE", default_value_t = 0.0, value_parser = rate)]
    embeddings_rate_limit_rate: f64,
    /// Probability that an embeddings call gets a 200 with a malformed body.
    #[arg(long, env = "SIM_EMBEDDINGS_GARBAGE_RATE", default_value_t = 0.0, value_parser = rate)]
    embeddings_garbage_rate: f64,
    /// Every embeddings call hangs for --slow-ms before it is answered.
    #[arg(long, env = "SIM_EMBEDDINGS_HANG")]
    embeddings_hang: bool,
    /// Calls accepted in any 60 s on the provider routes; more are answered 429 (OpenAI's shape and headers).
    #[arg(long, env = "SIM_RPM_LIMIT")]
    rpm_limit: Option<u32>,
    /// Calls in flight on the provider routes; more are answered 429.
    #[arg(long, env = "SIM_MAX_CONCURRENT")]
    max_concurrent: Option<u32>,
    /// OpenAI Batch API: milliseconds a provider batch takes from `validating` to `completed`.
    #[arg(long, env = "SIM_OPENAI_BATCH_DURATION_MS", default_value_t = 0)]
    openai_batch_duration_ms: u64,
    /// OpenAI Batch API: probability that a provider batch ends `failed`.
    #[arg(long, env = "SIM_OPENAI_BATCH_FAILURE_RATE", default_value_t = 0.0, value_parser = rate)]
    openai_batch_failure_rate: f64,
    /// OpenAI Batch API: probability that a provider batch ends `expired`, half of its requests done.
    #[arg(long, env = "SIM_OPENAI_BATCH_EXPIRY_RATE", default_value_t = 0.0, value_parser = rate)]
    openai_batch_expiry_rate: f64,
}

/// A vector length the embeddings API can return: 1 to 3072.
fn dimensions(value: &str) -> Result<usize, String> {
    let dimensions: usize = value
        .parse()
        .map_err(|e| format!("not a whole number: {e}"))?;
    if (1..=MAX_EMBEDDING_DIMENSIONS).contains(&dimensions) {
        Ok(dimensions)
    } else {
        Err(format!(
            "{dimensions} is not within 1..={MAX_EMBEDDING_DIMENSIONS}"
        ))
    }
}

/// A probability: a number in [0, 1].
fn rate(value: &str) -> Result<f64, String> {
    let rate: f64 = value.parse().map_err(|e| format!("not a number: {e}"))?;
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("{rate} is not within [0, 1]"))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let config = SimConfig {
        latency: Duration::from_millis(args.latency_ms),
        error_rate: args.error_rate,
        rate_limit_rate: args.rate_limit_rate,
        item_error_rate: args.item_error_rate,
        garbage_rate: args.garbage_rate,
        slow_rate: args.slow_rate,
        slow: Duration::from_millis(args.slow_ms),
        api_key: args.api_key,
        seed: args.seed,
        embedding_dimensions: args.embeddings_dimensions,
        embeddings_latency: Duration::from_millis(args.embeddings_latency_ms),
        embeddings_error_rate: args.embeddings_error_rate,
        embeddings_rate_limit_rate: args.embeddings_rate_limit_rate,
        embeddings_garbage_rate: args.embeddings_garbage_rate,
        embeddings_hang: args.embeddings_hang,
        rpm_limit: args.rpm_limit,
        max_concurrent: args.max_concurrent,
        openai_batch_duration: Duration::from_millis(args.openai_batch_duration_ms),
        openai_batch_failure_rate: args.openai_batch_failure_rate,
        openai_batch_expiry_rate: args.openai_batch_expiry_rate,
    };
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let addr = listener.local_addr().context("reading the bound address")?;
    tracing::info!(%addr, ?config, "provider simulator listening");

    sim::serve(listener, Simulator::new(config), shutdown_signal()).await?;
    tracing::info!("provider simulator stopped");
    Ok(())
}

/// Completes on ctrl-c or SIGTERM. If a handler cannot be installed that
/// signal is just not awaited: the process can still be stopped by the other.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_flags_parse_into_the_config_fields() {
        let args = Args::try_parse_from([
            "provider-sim",
            "--embeddings-dimensions",
            "1536",
            "--embeddings-latency-ms",
            "25",
            "--embeddings-error-rate",
            "0.1",
            "--embeddings-rate-limit-rate",
            "0.2",
            "--embeddings-garbage-rate",
            "0.3",
            "--embeddings-hang",
        ])
        .expect("the flags parse");
        assert_eq!(args.embeddings_dimensions, 1536);
        assert_eq!(args.embeddings_latency_ms, 25);
        assert_eq!(
            (
                args.embeddings_error_rate,
                args.embeddings_rate_limit_rate,
                args.embeddings_garbage_rate
            ),
            (0.1, 0.2, 0.3)
        );
        assert!(args.embeddings_hang);

        let defaults = Args::try_parse_from(["provider-sim"]).expect("no flag is required");
        assert_eq!(
            defaults.embeddings_dimensions,
            sim::DEFAULT_EMBEDDING_DIMENSIONS
        );
        assert!(!defaults.embeddings_hang);

        for bad in ["0", "3073", "many"] {
            assert!(
                Args::try_parse_from(["provider-sim", "--embeddings-dimensions", bad]).is_err(),
                "{bad}"
            );
        }
    }
}
