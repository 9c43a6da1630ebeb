//! Providers and the models they serve: which protocol (adapter) a model's
//! jobs go through, where, with which key, under which limits.
//!
//! A [`Catalog`] maps every model of the price table to one [`Provider`].
//! Without a configuration file there is one provider, `default`, speaking
//! the `batch` protocol at `PROVIDER_URL` with `PROVIDER_API_KEY`, and every
//! priced model goes to it ([`Catalog::single`]). With one, the file names
//! the providers and the models (see `runtime::config` for its format).
//!
//! Nothing here holds a secret: a provider names the environment variable
//! its key is read from, and the binaries read it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Adapter {
    /// `POST {base}/v1/batch` with `{"model", "inputs"}`: one synchronous
    /// call per batch (docs/spec.md, "The provider batch API").
    Batch,
    /// OpenAI's Images API and the endpoints compatible with it: one
    /// synchronous call per job to `POST {base}{endpoint}`.
    OpenaiImages,
    /// OpenAI's Batch API: the batch's jobs as a JSONL file, a provider
    /// batch with a 24-hour completion window, polled until it ends.
    OpenaiBatch,
}

impl Adapter {
    pub const ALL: [Adapter; 3] = [Adapter::Batch, Adapter::OpenaiImages, Adapter::OpenaiBatch];

    pub fn as_str(self) -> &'static str {
        match self {
            Adapter::Batch => "batch",
            Adapter::OpenaiImages => "openai-images",
            Adapter::OpenaiBatch => "openai-batch",
        }
    }
}

impl fmt::Display for Adapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Adapter::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown adapter '{0}': expected batch, openai-images or openai-batch")]
pub struct UnknownAdapter(pub String);

impl FromStr for Adapter {
    type Err = UnknownAdapter;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Adapter::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| UnknownAdapter(s.to_owned()))
    }
}

/// Limits on the calls made to a provider (or to one model of it), shared
/// by every worker replica: at most `requests_per_minute` calls started in
/// any minute and at most `max_concurrent` calls in flight. `None`: no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub requests_per_minute: Option<u32>,
    pub max_concurrent: Option<u32>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        self.requests_per_minute.is_none() && self.max_concurrent.is_none()
    }
}

/// The provider of a deployment without a configuration file: `batch` at
/// `PROVIDER_URL` with the key in `PROVIDER_API_KEY`.
pub const DEFAULT_PROVIDER: &str = "default";

/// Not a provider: the key under which usage reports the jobs offpeak's
/// caches answered without calling any provider. A configuration file may
/// not name a provider so.
pub const CACHE_PROVIDER: &str = "cache";

/// Default time an `openai-batch` provider batch is first polled after its
/// creation, and the longest pause between polls.
pub const POLL_INTERVAL_DEFAULT: Duration = Duration::from_secs(30);
pub const POLL_INTERVAL_MAX_DEFAULT: Duration = Duration::from_secs(600);

/// One provider: an endpoint, a key and a protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// The configuration's name for it (`openai`, `sim`, ...); usage is
    /// reported by it.
    pub name: String,
    pub adapter: Adapter,
    /// Base URL, without the `/v1/...` path (`https://api.openai.com`).
    pub base_url: String,
    /// The environment variable the bearer key is read from. The key itself
    /// is never in the configuration, a log line or an error.
    pub api_key_env: String,
    /// Calls to this provider, over all its models and all workers.
    pub limits: Limits,
    /// What a call through this provider costs, as a multiple of the
    /// model's list price: the provider's own discount (OpenAI's Batch API
    /// charges half, 0.5). 1.0 by default.
    pub price_multiplier: f64,
    /// Timeout of one HTTP call; `None`: the worker's default.
    pub timeout: Option<Duration>,
    /// `openai-batch`: first poll after creating a provider batch, and the
    /// longest pause between polls (the pause doubles from the first).
    pub poll_interval: Duration,
    pub poll_interval_max: Duration,
}

impl Provider {
    /// A provider with no limits, no discount and the default timeouts.
    pub fn new(name: &str, adapter: Adapter, base_url: &str, api_key_env: &str) -> Self {
        Self {
            name: name.to_owned(),
            adapter,
            base_url: base_url.trim_end_matches('/').to_owned(),
            api_key_env: api_key_env.to_owned(),
            limits: Limits::default(),
            price_multiplier: 1.0,
            timeout: None,
            poll_interval: POLL_INTERVAL_DEFAULT,
            poll_interval_max: POLL_INTERVAL_MAX_DEFAULT,
        }
    }
}

/// The path of OpenAI's image generation endpoint, the default endpoint of
/// an `openai-images` or `openai-batch` model.
pub const IMAGES_ENDPOINT: &str = "/v1/images/generations";

/// One model as offpeak's API names it, and how its jobs reach a provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub name: String,
    /// The name of its [`Provider`].
    pub provider: String,
    /// The provider's own name for it, sent as the request's `model`
    /// (`gpt-image-1` for a model offpeak calls `openai-image`). By default
    /// the model's own name.
    pub provider_model: String,
    /// `openai-images` and `openai-batch`: the path of the generation
    /// endpoint ([`IMAGES_ENDPOINT`] by default). Unused by `batch`.
    pub endpoint: String,
    /// Limits on this model's calls alone, on top of its provider's.
    pub limits: Limits,
}

impl Model {
    pub fn new(name: &str, provider: &str) -> Self {
        Self {
            name: name.to_owned(),
            provider: provider.to_owned(),
            provider_model: name.to_owned(),
            endpoint: IMAGES_ENDPOINT.to_owned(),
            limits: Limits::default(),
        }
    }
}

/// A catalog that does not hold together.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CatalogError {
    #[error("model '{model}' names provider '{provider}', which is not configured")]
    UnknownProvider { model: String, provider: String },
    #[error("provider '{0}' is configured twice")]
    DuplicateProvider(String),
    #[error("model '{0}' is configured twice")]
    DuplicateModel(String),
}

/// Every model's provider.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Catalog {
    providers: BTreeMap<String, Provider>,
    models: BTreeMap<String, Model>,
}

impl Catalog {
    /// The catalog of a deployment without a configuration file: every
    /// model named goes to `provider`, under its own name.
    pub fn single<'a>(provider: Provider, models: impl IntoIterator<Item = &'a str>) -> Self {
        let models = models.into_iter().map(|m| (m.to_owned(), Model::new(m, &provider.name))).collect();
        Self { providers: BTreeMap::from([(provider.name.clone(), provider)]), models }
    }

    /// A catalog of these providers and models.
    ///
    /// # Errors
    /// A name given twice, or a model whose provider is not among them.
    pub fn new(providers: Vec<Provider>, models: Vec<Model>) -> Result<Self, CatalogError> {
        let mut catalog = Self::default();
        for p in providers {
            if catalog.providers.contains_key(&p.name) {
                return Err(CatalogError::DuplicateProvider(p.name));
            }
            catalog.providers.insert(p.name.clone(), p);
        }
        for m in models {
            if !catalog.providers.contains_key(&m.provider) {
                return Err(CatalogError::UnknownProvider { model: m.name, provider: m.provider });
            }
            if catalog.models.contains_key(&m.name) {
                return Err(CatalogError::DuplicateModel(m.name));
            }
            catalog.models.insert(m.name.clone(), m);
        }
        Ok(catalog)
    }

    /// The model and its provider, if the model is configured.
    pub fn route(&self, model: &str) -> Option<(&Model, &Provider)> {
        let m = self.models.get(model)?;
        // `new` and `single` never keep a model without its provider.
        let p = self.providers.get(&m.provider)?;
        Some((m, p))
    }

    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.get(name)
    }

    pub fn providers(&self) -> impl Iterator<Item = &Provider> {
        self.providers.values()
    }

    pub fn models(&self) -> impl Iterator<Item = &Model> {
        self.models.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapters_parse_by_their_names() {
        for a in Adapter::ALL {
            assert_eq!(a.as_str().parse::<Adapter>().unwrap(), a);
        }
        assert!("openai".parse::<Adapter>().is_err());
    }

    #[test]
    fn a_catalog_routes_each_model_to_its_provider() {
        let sim = Provider::new("sim", Adapter::Batch, "http://127.0.0.1:8090/", "PROVIDER_API_KEY");
        let openai = Provider::new("openai", Adapter::OpenaiBatch, "https://api.openai.com", "OPENAI_API_KEY");
        let mut image = Model::new("openai-image", "openai");
        image.provider_model = "gpt-image-1".into();
        let c = Catalog::new(vec![sim.clone(), openai], vec![Model::new("flux-dev", "sim"), image]).unwrap();
        let (m, p) = c.route("openai-image").unwrap();
        assert_eq!((m.provider_model.as_str(), p.adapter), ("gpt-image-1", Adapter::OpenaiBatch));
        assert_eq!(c.route("flux-dev").unwrap().1.base_url, "http://127.0.0.1:8090");
        assert!(c.route("nope").is_none());
        assert_eq!(
            Catalog::new(vec![sim.clone()], vec![Model::new("x", "elsewhere")]),
            Err(CatalogError::UnknownProvider { model: "x".into(), provider: "elsewhere".into() })
        );
        assert_eq!(Catalog::new(vec![sim.clone(), sim], vec![]), Err(CatalogError::DuplicateProvider("sim".into())));
    }

    #[test]
    fn without_a_file_every_model_goes_to_one_provider() {
        let c = Catalog::single(Provider::new("default", Adapter::Batch, "http://x", "PROVIDER_API_KEY"), ["a", "b"]);
        assert_eq!(c.route("b").unwrap().0.provider_model, "b");
        assert_eq!(c.providers().count(), 1);
    }
}
