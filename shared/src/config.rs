//! Configuration shared by the binaries: every flag is also an environment
//! variable, and every default is safe for a local run against the services
//! the README's commands start.

use std::time::Duration;

use clap::Args;

use crate::job::PriceTable;

/// Where PostgreSQL is.
#[derive(Debug, Clone, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL.
    #[arg(long, env = "DATABASE_URL", default_value = "postgres://postgres@127.0.0.1:5432/offpeak")]
    pub database_url: String,
    /// Connections in this process's pool.
    #[arg(long, env = "OFFPEAK_DB_MAX_CONNECTIONS", default_value_t = 10)]
    pub db_max_connections: u32,
    /// How long to keep retrying the first connection before giving up, in seconds.
    #[arg(long, env = "OFFPEAK_CONNECT_TIMEOUT_SECS", default_value_t = 60)]
    pub connect_timeout_secs: u64,
}

impl DatabaseArgs {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_secs(self.connect_timeout_secs)
    }
}

/// Where RabbitMQ is and which queue carries batches.
#[derive(Debug, Clone, Args)]
pub struct BrokerArgs {
    /// AMQP URL.
    #[arg(long, env = "AMQP_URL", default_value = "amqp://guest:guest@127.0.0.1:5672/%2f")]
    pub amqp_url: String,
    /// Name of the batch queue (its dead-letter queue is `<name>.dead`).
    #[arg(long, env = "OFFPEAK_QUEUE", default_value = "offpeak.batches")]
    pub queue: String,
}

/// Prices, shared by the API (to refuse unknown models) and the worker (to
/// record what each job cost).
#[derive(Debug, Clone, Args)]
pub struct PriceArgs {
    /// Price overrides, `MODEL=CREDITS,...`, applied over the defaults
    /// (flux-schnell=1, flux-dev=2, flux-pro=5, minimax-video=15, stable-audio=3).
    #[arg(long, env = "OFFPEAK_PRICES", default_value = "")]
    pub prices: String,
}

impl PriceArgs {
    /// # Errors
    /// An override that does not parse.
    pub fn table(&self) -> Result<PriceTable, crate::job::InvalidPrice> {
        PriceTable::with_overrides(&self.prices)
    }
}
