//! Configuration shared by the binaries: every flag is also an environment
//! variable, and every default is safe for a local run against the services
//! the README's commands start.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use offpeak_core::config::{ConfigErrors, Deployment};
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

/// The provider's base URL when nothing names one (the simulator of the
/// README's local run): the worker's `--provider-url` default.
pub const PROVIDER_URL_DEFAULT: &str = "http://127.0.0.1:8090";

/// Prices, routes and providers, shared by the API (to refuse unknown
/// models and route `"model": "auto"`) and the worker (to record what each
/// job cost, and to reach each model's provider): from a configuration
/// file (`--config`, docs/configuration.md), or without one from
/// `OFFPEAK_PRICES` and `OFFPEAK_ROUTES` and one `batch` provider at
/// `PROVIDER_URL`.
#[derive(Debug, Clone, Args)]
pub struct PriceArgs {
    /// Configuration file of providers, models, prices and routes (TOML; see
    /// docs/configuration.md). With it, its models are the whole price table
    /// and its routes the whole route table, and OFFPEAK_PRICES and
    /// OFFPEAK_ROUTES must not be set; it is checked at start, and every
    /// problem is reported as FILE:LINE: message.
    #[arg(long = "config", env = "OFFPEAK_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Price overrides, `MODEL=CREDITS,...`, applied over the defaults
    /// (flux-schnell=1, flux-dev=2, flux-pro=5, minimax-video=15, stable-audio=3).
    /// Not with --config (the file has the prices).
    #[arg(long, env = "OFFPEAK_PRICES", default_value = "")]
    pub prices: String,
    /// What low-priority jobs (released in their off-peak window) pay, as a
    /// multiple of the list price: a number of at least 0; normal-priority
    /// jobs pay the list price. Charges are rounded half up to whole credits.
    /// Default 1.0, or the configuration file's `offpeak_multiplier`; set,
    /// it overrides the file's.
    #[arg(long, env = "OFFPEAK_OFFPEAK_MULTIPLIER")]
    pub offpeak_multiplier: Option<f64>,
    /// Model routing overrides, `USE_CASE=MODEL,...`, applied over the
    /// defaults (thumbnail and preview → flux-schnell, product-image and
    /// marketing → flux-dev, hero-image and print → flux-pro). Used by the API
    /// for jobs with `"model": "auto"`. Not with --config (the file has the routes).
    #[arg(long, env = "OFFPEAK_ROUTES", default_value = "")]
    pub routes: String,
}

/// A price, routing or configuration file setting that is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum PriceConfigError {
    #[error(transparent)]
    Price(#[from] offpeak_core::prices::InvalidPrice),
    #[error(transparent)]
    Multiplier(#[from] offpeak_core::prices::InvalidMultiplier),
    #[error(transparent)]
    Route(#[from] offpeak_core::prices::InvalidRoute),
    /// Every problem of the file, one `FILE:LINE: message` per line.
    #[error(transparent)]
    File(#[from] ConfigErrors),
    #[error("{file}: cannot read the configuration file: {source}")]
    Read { file: String, source: std::io::Error },
    #[error("{file}: {vars} set together with a configuration file; the file's [models] and [routes] are the whole tables, so set one or the other")]
    Conflict { file: String, vars: &'static str },
}

impl PriceArgs {
    /// The deployment: from the configuration file if one is named, else
    /// from the price and route overrides with every model sent to one
    /// `batch` provider at `provider_url` (the worker's `--provider-url`).
    /// `OFFPEAK_OFFPEAK_MULTIPLIER`, when set, applies in both cases.
    ///
    /// # Errors
    /// A file that cannot be read or does not hold together (every problem
    /// with its line), overrides set together with a file, an override that
    /// does not parse, a route to an unknown model, or a bad multiplier.
    pub fn deployment(&self, provider_url: &str) -> Result<Deployment, PriceConfigError> {
        let Some(path) = &self.config else {
            return Ok(Deployment::without_file(self.table()?, self.routes()?, provider_url));
        };
        let file = path.display().to_string();
        let vars = match (self.prices.trim().is_empty(), self.routes.trim().is_empty()) {
            (true, true) => None,
            (false, true) => Some("OFFPEAK_PRICES (--prices) is"),
            (true, false) => Some("OFFPEAK_ROUTES (--routes) is"),
            (false, false) => Some("OFFPEAK_PRICES (--prices) and OFFPEAK_ROUTES (--routes) are"),
        };
        if let Some(vars) = vars {
            return Err(PriceConfigError::Conflict { file, vars });
        }
        let text = std::fs::read_to_string(path).map_err(|source| PriceConfigError::Read { file: file.clone(), source })?;
        let mut deployment = Deployment::parse(&file, &text)?;
        if let Some(m) = self.offpeak_multiplier {
            deployment.prices = deployment.prices.with_offpeak_multiplier(m)?;
        }
        Ok(deployment)
    }

    /// The price table of the overrides (no configuration file), with its
    /// off-peak multiplier.
    ///
    /// # Errors
    /// An override that does not parse, or a bad multiplier.
    pub fn table(&self) -> Result<PriceTable, PriceConfigError> {
        Ok(PriceTable::with_overrides(&self.prices)?.with_offpeak_multiplier(self.offpeak_multiplier.unwrap_or(1.0))?)
    }

    /// The routing table of the overrides (no configuration file), every
    /// route checked against the price table.
    ///
    /// # Errors
    /// An override that does not parse or routes to an unknown model.
    pub fn routes(&self) -> Result<RouteTable, PriceConfigError> {
        let routes = RouteTable::with_overrides(&self.routes)?;
        routes.check(&self.table()?)?;
        Ok(routes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use offpeak_core::job::Priority;

    fn args(config: Option<PathBuf>, prices: &str, routes: &str, multiplier: Option<f64>) -> PriceArgs {
        PriceArgs { config, prices: prices.into(), offpeak_multiplier: multiplier, routes: routes.into() }
    }

    /// A file in a fresh directory under the system's temporary one.
    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("offpeak-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("a temporary file");
        path
    }

    #[test]
    fn without_a_file_the_overrides_and_one_default_provider_as_before() {
        let d = args(None, "flux-pro=6", "print=flux-dev", Some(0.5)).deployment("http://sim:8090").unwrap();
        assert_eq!(d.prices.charge("flux-pro", Priority::Low).unwrap().charged, 3);
        assert_eq!(d.routes.model_for("print"), Some("flux-dev"));
        assert_eq!(d.routes.model_for("thumbnail"), Some("flux-schnell"));
        let (_, p) = d.catalog.route("stable-audio").unwrap();
        assert_eq!((p.name.as_str(), p.base_url.as_str()), ("default", "http://sim:8090"));
        assert!(args(None, "", "x=nope", None).deployment("http://x").is_err());
    }

    #[test]
    fn a_file_is_the_whole_table_and_the_env_multiplier_overrides_its_own() {
        let path = file("ok.toml", "offpeak_multiplier = 0.5\n[providers.p]\nadapter = \"batch\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n[models.m]\nprovider = \"p\"\nprice = 10\n");
        let d = args(Some(path.clone()), "", "", None).deployment("http://ignored").unwrap();
        assert_eq!(d.prices.models().collect::<Vec<_>>(), ["m"]);
        assert_eq!(d.prices.charge("m", Priority::Low).unwrap().charged, 5);
        let d = args(Some(path), "", "", Some(0.2)).deployment("http://ignored").unwrap();
        assert_eq!(d.prices.charge("m", Priority::Low).unwrap().charged, 2);
    }

    #[test]
    fn overrides_with_a_file_are_refused() {
        let path = file("ok.toml", "");
        let e = args(Some(path.clone()), "flux-pro=6", "", None).deployment("http://x").unwrap_err().to_string();
        assert!(e.contains("OFFPEAK_PRICES (--prices) is set together with a configuration file"), "{e}");
        let e = args(Some(path), "a=b", "t=a", None).deployment("http://x").unwrap_err().to_string();
        assert!(e.contains("OFFPEAK_PRICES (--prices) and OFFPEAK_ROUTES (--routes) are set"), "{e}");
    }

    #[test]
    fn a_bad_or_missing_file_names_itself_and_the_line() {
        let path = file("bad.toml", "[providers.p]\nadapter = \"batch\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n[models.m]\nprovider = \"q\"\nprice = 1\n");
        let e = args(Some(path.clone()), "", "", None).deployment("http://x").unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:6: model 'm' names provider 'q'", path.display())), "{e}");
        let missing = path.with_file_name("missing.toml");
        let e = args(Some(missing.clone()), "", "", None).deployment("http://x").unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}: cannot read the configuration file", missing.display())), "{e}");
    }

    /// The example shipped in deploy/ is a valid file.
    #[test]
    fn the_example_file_in_deploy_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/offpeak.example.toml");
        let d = args(Some(path), "", "", None).deployment("http://x").unwrap();
        assert!(d.catalog.providers().count() >= 3);
        assert!(d.routes.use_cases().count() >= 1);
    }
}
