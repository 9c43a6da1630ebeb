//! Configuration shared by the binaries: every flag is also an environment
//! variable, and every default is safe for a local run against the services
//! the README's commands start.

use std::time::Duration;

use clap::Args;

use offpeak_core::prices::{PriceTable, RouteTable};

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
    /// What low-priority jobs (released in their off-peak window) pay, as a
    /// multiple of the list price: a number of at least 0; normal-priority
    /// jobs pay the list price. Charges are rounded half up to whole credits.
    #[arg(long, env = "OFFPEAK_OFFPEAK_MULTIPLIER", default_value_t = 1.0)]
    pub offpeak_multiplier: f64,
    /// Model routing overrides, `USE_CASE=MODEL,...`, applied over the
    /// defaults (thumbnail and preview → flux-schnell, product-image and
    /// marketing → flux-dev, hero-image and print → flux-pro). Used by the API
    /// for jobs with `"model": "auto"`.
    #[arg(long, env = "OFFPEAK_ROUTES", default_value = "")]
    pub routes: String,
}

/// A price or routing setting that is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum PriceConfigError {
    #[error(transparent)]
    Price(#[from] offpeak_core::prices::InvalidPrice),
    #[error(transparent)]
    Multiplier(#[from] offpeak_core::prices::InvalidMultiplier),
    #[error(transparent)]
    Route(#[from] offpeak_core::prices::InvalidRoute),
}

impl PriceArgs {
    /// The price table, with its off-peak multiplier.
    ///
    /// # Errors
    /// An override that does not parse, or a bad multiplier.
    pub fn table(&self) -> Result<PriceTable, PriceConfigError> {
        Ok(PriceTable::with_overrides(&self.prices)?.with_offpeak_multiplier(self.offpeak_multiplier)?)
    }

    /// The routing table, every route checked against the price table.
    ///
    /// # Errors
    /// An override that does not parse or routes to an unknown model.
    pub fn routes(&self) -> Result<RouteTable, PriceConfigError> {
        let routes = RouteTable::with_overrides(&self.routes)?;
        routes.check(&self.table()?)?;
        Ok(routes)
    }
}
