//! The configuration file: providers, models, prices and routes in one TOML
//! document, parsed into a [`Deployment`] (docs/configuration.md has the
//! format and every key).
//!
//! Nothing here reads a file or the environment: [`Deployment::parse`] takes
//! the text and the file's name (for its messages), and `runtime::config`
//! reads the file named by `--config` / `OFFPEAK_CONFIG`. A file that does
//! not hold together is refused as a whole, with every problem found, each
//! as `FILE:LINE: message` so an operator can go straight to it. Secrets are
//! never in the file (a provider names the environment variable its key is
//! in) nor in a message: an error about a value that may hold a key does not
//! quote it.
//!
//! ```
//! use offpeak_core::config::Deployment;
//! use offpeak_core::job::Priority;
//!
//! let text = r#"
//! offpeak_multiplier = 0.8
//!
//! [providers.openai-batch]
//! adapter = "openai-batch"
//! base_url = "https://api.openai.com"
//! api_key_env = "OPENAI_API_KEY"
//! price_multiplier = 0.5
//!
//! [models.openai-image]
//! provider = "openai-batch"
//! price = 10
//! provider_model = "gpt-image-1"
//!
//! [routes]
//! hero-image = "openai-image"
//! "#;
//! let d = Deployment::parse("offpeak.toml", text).expect("a valid file");
//! // 10 × 0.5 (the provider's batch discount) × 0.8 (off-peak) = 4.
//! assert_eq!(d.prices.charge("openai-image", Priority::Low).map(|c| c.charged), Some(4));
//! assert_eq!(d.routes.model_for("hero-image"), Some("openai-image"));
//! assert_eq!(d.catalog.route("openai-image").map(|(m, _)| m.provider_model.as_str()), Some("gpt-image-1"));
//!
//! let bad = Deployment::parse("offpeak.toml", "[models.x]\nprovider = \"nowhere\"\nprice = 1\n").unwrap_err();
//! assert!(bad.to_string().starts_with("offpeak.toml:2: model 'x' names provider 'nowhere'"));
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::prices::{PriceTable, RouteTable};
use crate::providers::{Adapter, Catalog, Limits, Model, Provider, CACHE_PROVIDER, DEFAULT_PROVIDER};
use crate::submission::{AUTO_MODEL, MAX_MODEL_LEN};

/// What a deployment charges and where it sends each model: the price
/// table (with the off-peak and provider multipliers), the routes of
/// `"model": "auto"`, and every model's provider.
#[derive(Debug, Clone, PartialEq)]
pub struct Deployment {
    pub prices: PriceTable,
    pub routes: RouteTable,
    pub catalog: Catalog,
}

/// The environment variable the `default` provider's key is read from.
pub const DEFAULT_API_KEY_ENV: &str = "PROVIDER_API_KEY";

impl Deployment {
    /// The deployment without a configuration file, as before there was
    /// one: `prices` and `routes` (from `OFFPEAK_PRICES` and
    /// `OFFPEAK_ROUTES`), and every priced model sent to one provider,
    /// `default`, speaking `batch` at `provider_url` with the key in
    /// `PROVIDER_API_KEY`.
    pub fn without_file(prices: PriceTable, routes: RouteTable, provider_url: &str) -> Self {
        let provider = Provider::new(DEFAULT_PROVIDER, Adapter::Batch, provider_url, DEFAULT_API_KEY_ENV);
        let catalog = Catalog::single(provider, prices.models());
        Self { prices, routes, catalog }
    }

    /// Parses a configuration file's `text`; `file` names it in messages.
    /// The file's models are the whole price table (no built-in prices),
    /// its routes the whole route table.
    ///
    /// # Errors
    /// Every problem found, each with the line it is on: TOML that does not
    /// parse (then only that one), an unknown key, a missing one, a value of
    /// the wrong type or out of range, a model whose provider or a route
    /// whose model is not configured.
    pub fn parse(file: &str, text: &str) -> Result<Self, ConfigErrors> {
        let mut c = Checker { file, text, errors: Vec::new() };
        let raw: RawFile = match toml::from_str(text) {
            Ok(raw) => raw,
            Err(e) => {
                // serde names Rust's types; say what the file should hold.
                let message = e.message().trim_end().replace("expected i64", "expected a whole number").replace("expected f64", "expected a number");
                c.error(e.span(), message);
                return Err(c.finish_err());
            }
        };
        let deployment = c.deployment(raw);
        match deployment {
            Some(d) if c.errors.is_empty() => Ok(d),
            _ => Err(c.finish_err()),
        }
    }
}

/// One problem of a configuration file, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    /// 1-based; `None` for a problem of the file as a whole.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Every problem of a configuration file, in line order, one per line when
/// printed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// The file as written. Every value keeps its span (byte range) for the
/// messages; numbers are read wide and range-checked here, so that a
/// `0` or a `-1` gets a message that says what is expected.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    offpeak_multiplier: Option<Spanned<f64>>,
    #[serde(default)]
    providers: BTreeMap<Spanned<String>, Spanned<RawProvider>>,
    #[serde(default)]
    models: BTreeMap<Spanned<String>, Spanned<RawModel>>,
    #[serde(default)]
    routes: BTreeMap<Spanned<String>, Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProvider {
    adapter: Spanned<String>,
    base_url: Spanned<String>,
    api_key_env: Spanned<String>,
    requests_per_minute: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
    price_multiplier: Option<Spanned<f64>>,
    timeout_secs: Option<Spanned<i64>>,
    poll_interval_secs: Option<Spanned<i64>>,
    poll_interval_max_secs: Option<Spanned<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    provider: Spanned<String>,
    price: Spanned<i64>,
    provider_model: Option<Spanned<String>>,
    endpoint: Option<Spanned<String>>,
    requests_per_minute: Option<Spanned<i64>>,
    max_concurrent: Option<Spanned<i64>>,
}

/// Collects the problems of one file while it is turned into a deployment.
struct Checker<'a> {
    file: &'a str,
    text: &'a str,
    errors: Vec<(usize, ConfigError)>,
}

impl Checker<'_> {
    /// The 1-based line of byte `offset`.
    fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
    }

    fn error(&mut self, span: Option<Range<usize>>, message: String) {
        let start = span.map(|s| s.start);
        let e = ConfigError { file: self.file.to_owned(), line: start.map(|s| self.line_of(s)), message };
        self.errors.push((start.unwrap_or(0), e));
    }

    fn at(&mut self, span: Range<usize>, message: String) {
        self.error(Some(span), message);
    }

    fn finish_err(&mut self) -> ConfigErrors {
        let mut errors = std::mem::take(&mut self.errors);
        // A stable sort: problems on one line keep the order found.
        errors.sort_by_key(|(offset, _)| *offset);
        ConfigErrors(errors.into_iter().map(|(_, e)| e).collect())
    }

    /// A multiplier: finite and at least 0.
    fn multiplier(&mut self, key: &str, v: Option<&Spanned<f64>>) -> f64 {
        let Some(v) = v else { return 1.0 };
        let m = *v.get_ref();
        if !m.is_finite() || m < 0.0 {
            self.at(v.span(), format!("{key} must be a finite number of at least 0, not {m}"));
            return 1.0;
        }
        m
    }

    /// A count that must be at least 1 (limits, seconds).
    fn positive(&mut self, key: &str, v: Option<&Spanned<i64>>) -> Option<u32> {
        let v = v?;
        match u32::try_from(*v.get_ref()) {
            Ok(n) if n >= 1 => Some(n),
            _ => {
                self.at(v.span(), format!("{key} must be a whole number from 1 to {}, not {}", u32::MAX, v.get_ref()));
                None
            }
        }
    }

    fn limits(&mut self, rpm: Option<&Spanned<i64>>, concurrent: Option<&Spanned<i64>>) -> Limits {
        Limits {
            requests_per_minute: self.positive("requests_per_minute", rpm),
            max_concurrent: self.positive("max_concurrent", concurrent),
        }
    }

    fn deployment(&mut self, raw: RawFile) -> Option<Deployment> {
        let offpeak = self.multiplier("offpeak_multiplier", raw.offpeak_multiplier.as_ref());
        let providers: Vec<Provider> = raw.providers.iter().map(|(name, p)| self.provider(name, p)).collect();
        let adapters: BTreeMap<&str, Adapter> = providers.iter().map(|p| (p.name.as_str(), p.adapter)).collect();
        let mut models = Vec::new();
        let mut prices = Vec::new();
        for (name, m) in &raw.models {
            let (model, price) = self.model(name, m, &adapters);
            models.push(model);
            prices.push((name.get_ref().clone(), price));
        }
        if raw.models.is_empty() {
            self.error(None, "no models: a configuration file names every model the API accepts, under [models.NAME]".into());
        }
        let mut routes = Vec::new();
        for (use_case, model) in &raw.routes {
            if use_case.get_ref().is_empty() || use_case.get_ref().len() > MAX_MODEL_LEN {
                self.at(use_case.span(), format!("a use case must be 1 to {MAX_MODEL_LEN} bytes long"));
            } else if !raw.models.keys().any(|m| m.get_ref() == model.get_ref()) {
                self.at(
                    model.span(),
                    format!("route '{}' names model '{}', which is not configured under [models]", use_case.get_ref(), model.get_ref()),
                );
            } else {
                routes.push((use_case.get_ref().clone(), model.get_ref().clone()));
            }
        }
        if !self.errors.is_empty() {
            return None;
        }
        // The checks above leave none of these to fail; should one, its
        // error is still reported rather than unwrapped.
        let built = Catalog::new(providers, models).map_err(|e| e.to_string()).and_then(|catalog| {
            let prices = PriceTable::from_prices(prices)
                .map_err(|e| e.to_string())?
                .with_offpeak_multiplier(offpeak)
                .map_err(|e| e.to_string())?
                .with_provider_multipliers(&catalog)
                .map_err(|e| e.to_string())?;
            let routes = RouteTable::from_routes(routes).map_err(|e| e.to_string())?;
            Ok(Deployment { prices, routes, catalog })
        });
        built.map_err(|e| self.error(None, e)).ok()
    }

    fn provider(&mut self, name: &Spanned<String>, p: &Spanned<RawProvider>) -> Provider {
        let n = name.get_ref();
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-') {
            self.at(name.span(), format!("provider name '{n}' must be made of a-z, 0-9, '_' and '-'"));
        } else if n == CACHE_PROVIDER {
            self.at(name.span(), format!("provider name '{CACHE_PROVIDER}' is reserved: usage reports cache hits under it"));
        }
        let p = p.get_ref();
        let adapter = match p.adapter.get_ref().parse::<Adapter>() {
            Ok(a) => a,
            Err(e) => {
                self.at(p.adapter.span(), e.to_string());
                Adapter::Batch
            }
        };
        self.base_url(&p.base_url);
        let env = p.api_key_env.get_ref();
        let first_ok = env.bytes().next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
        if !first_ok || !env.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            // The value is not quoted: an operator who put the key itself here must not find it in a log.
            self.at(
                p.api_key_env.span(),
                "api_key_env must name the environment variable that holds the key (letters, digits and '_', e.g. OPENAI_API_KEY), never the key itself".into(),
            );
        }
        let mut provider = Provider::new(n, adapter, p.base_url.get_ref(), env);
        provider.limits = self.limits(p.requests_per_minute.as_ref(), p.max_concurrent.as_ref());
        provider.price_multiplier = self.multiplier("price_multiplier", p.price_multiplier.as_ref());
        provider.timeout = self.positive("timeout_secs", p.timeout_secs.as_ref()).map(|s| Duration::from_secs(s.into()));
        for v in [&p.poll_interval_secs, &p.poll_interval_max_secs].into_iter().flatten() {
            if adapter != Adapter::OpenaiBatch && p.adapter.get_ref().parse::<Adapter>().is_ok() {
                self.at(v.span(), format!("poll_interval_secs and poll_interval_max_secs apply to openai-batch providers only, and '{n}' is {adapter}"));
            }
        }
        let first = self.positive("poll_interval_secs", p.poll_interval_secs.as_ref());
        let max = self.positive("poll_interval_max_secs", p.poll_interval_max_secs.as_ref());
        if let Some(first) = first {
            provider.poll_interval = Duration::from_secs(first.into());
        }
        if let Some(max) = max {
            provider.poll_interval_max = Duration::from_secs(max.into());
        }
        if (first.is_some() || max.is_some()) && provider.poll_interval_max < provider.poll_interval {
            let span = p.poll_interval_max_secs.as_ref().or(p.poll_interval_secs.as_ref()).map(Spanned::span);
            self.error(
                span,
                format!(
                    "poll_interval_max_secs ({}) must be at least poll_interval_secs ({})",
                    provider.poll_interval_max.as_secs(),
                    provider.poll_interval.as_secs()
                ),
            );
        }
        provider
    }

    /// An `http://` or `https://` URL with a host and nothing after its path.
    fn base_url(&mut self, v: &Spanned<String>) {
        let message = match url::Url::parse(v.get_ref()) {
            Err(e) => format!("base_url is not a URL ({e}): expected e.g. https://api.openai.com"),
            Ok(u) if !u.username().is_empty() || u.password().is_some() => {
                // Not quoted: it holds a secret.
                "base_url must not hold credentials; put the key in the environment variable api_key_env names".into()
            }
            Ok(u) if !matches!(u.scheme(), "http" | "https") || u.host().is_none() => {
                format!("base_url '{}' must be an http:// or https:// URL with a host", v.get_ref())
            }
            Ok(u) if u.query().is_some() || u.fragment().is_some() => {
                format!("base_url '{}' must not have a query or a fragment: the adapter appends the endpoint's path", v.get_ref())
            }
            Ok(_) => return,
        };
        self.at(v.span(), message);
    }

    fn model(&mut self, name: &Spanned<String>, m: &Spanned<RawModel>, adapters: &BTreeMap<&str, Adapter>) -> (Model, i64) {
        let n = name.get_ref();
        if n.is_empty() || n.len() > MAX_MODEL_LEN {
            self.at(name.span(), format!("a model name must be 1 to {MAX_MODEL_LEN} bytes long"));
        } else if n == AUTO_MODEL {
            self.at(name.span(), format!("model name '{AUTO_MODEL}' is reserved: it asks for a route by use case"));
        }
        let m = m.get_ref();
        let provider = m.provider.get_ref();
        let adapter = adapters.get(provider.as_str()).copied();
        if adapter.is_none() {
            let known: Vec<&str> = adapters.keys().copied().collect();
            let known = if known.is_empty() { "none".to_owned() } else { known.join(", ") };
            self.at(m.provider.span(), format!("model '{n}' names provider '{provider}', which is not configured under [providers] (configured: {known})"));
        }
        let price = *m.price.get_ref();
        if price < 0 {
            self.at(m.price.span(), format!("price must be a whole number of credits of at least 0, not {price}"));
        }
        let mut model = Model::new(n, provider);
        if let Some(pm) = &m.provider_model {
            if pm.get_ref().trim().is_empty() {
                self.at(pm.span(), "provider_model must not be empty (leave it out to send the model's own name)".into());
            }
            model.provider_model = pm.get_ref().clone();
        }
        if let Some(e) = &m.endpoint {
            if !e.get_ref().starts_with('/') {
                self.at(e.span(), format!("endpoint '{}' must be a path starting with '/', e.g. /v1/images/generations", e.get_ref()));
            } else if adapter == Some(Adapter::Batch) {
                self.at(e.span(), format!("endpoint applies to openai-images and openai-batch models only, and provider '{provider}' is batch"));
            }
            model.endpoint = e.get_ref().clone();
        }
        model.limits = self.limits(m.requests_per_minute.as_ref(), m.max_concurrent.as_ref());
        (model, price.max(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Priority;

    const GOOD: &str = r#"offpeak_multiplier = 0.8

[providers.sim]
adapter = "batch"
base_url = "http://127.0.0.1:8090/"
api_key_env = "PROVIDER_API_KEY"
requests_per_minute = 600
max_concurrent = 16
timeout_secs = 30

[providers.openai-batch]
adapter = "openai-batch"
base_url = "https://api.openai.com"
api_key_env = "OPENAI_API_KEY"
price_multiplier = 0.5
poll_interval_secs = 10
poll_interval_max_secs = 300

[models.flux-schnell]
provider = "sim"
price = 1

[models.openai-image]
provider = "openai-batch"
price = 10
provider_model = "gpt-image-1"
endpoint = "/v1/images/generations"
requests_per_minute = 60
max_concurrent = 4

[routes]
thumbnail = "flux-schnell"
hero-image = "openai-image"
"#;

    /// The errors of `text`, as printed.
    fn errors(text: &str) -> Vec<String> {
        match Deployment::parse("f.toml", text) {
            Ok(_) => panic!("expected errors from:\n{text}"),
            Err(e) => e.0.iter().map(ToString::to_string).collect(),
        }
    }

    /// The one error of `text`; it starts with `f.toml:LINE: ` and contains `needle`.
    #[track_caller]
    fn one_error(text: &str, line: usize, needle: &str) {
        let errs = errors(text);
        assert_eq!(errs.len(), 1, "{errs:?}");
        let prefix = format!("f.toml:{line}: ");
        assert!(errs[0].starts_with(&prefix) && errs[0].contains(needle), "expected '{prefix}…{needle}…', got {errs:?}");
    }

    /// A minimal valid file with `extra` appended to the provider's table.
    fn with_provider(extra: &str) -> String {
        format!("[providers.p]\nadapter = \"batch\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n{extra}\n[models.m]\nprovider = \"p\"\nprice = 1\n")
    }

    /// A minimal valid file with `extra` appended to the model's table (line 5 on).
    fn with_model(adapter: &str, extra: &str) -> String {
        format!("[models.m]\nprovider = \"p\"\nprice = 1\n\n{extra}\n[providers.p]\nadapter = \"{adapter}\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n")
    }

    #[test]
    fn a_valid_file_gives_prices_routes_and_providers() {
        let d = Deployment::parse("f.toml", GOOD).unwrap();
        assert_eq!(d.prices.models().collect::<Vec<_>>(), ["flux-schnell", "openai-image"]);
        assert_eq!(d.prices.price("flux-dev"), None, "no built-in prices with a file");
        assert_eq!(d.prices.offpeak_multiplier(), 0.8);
        assert_eq!(d.prices.charge("openai-image", Priority::Normal).unwrap().charged, 5);
        assert_eq!(d.prices.charge("openai-image", Priority::Low).unwrap().charged, 4);
        assert_eq!(d.prices.charge("flux-schnell", Priority::Low).unwrap().charged, 1);
        assert_eq!(d.routes.model_for("hero-image"), Some("openai-image"));
        assert_eq!(d.routes.model_for("print"), None, "no built-in routes with a file");
        let (m, p) = d.catalog.route("openai-image").unwrap();
        assert_eq!((m.provider_model.as_str(), m.endpoint.as_str()), ("gpt-image-1", "/v1/images/generations"));
        assert_eq!(m.limits, Limits { requests_per_minute: Some(60), max_concurrent: Some(4) });
        assert_eq!((p.adapter, p.price_multiplier, p.api_key_env.as_str()), (Adapter::OpenaiBatch, 0.5, "OPENAI_API_KEY"));
        assert_eq!((p.poll_interval, p.poll_interval_max), (Duration::from_secs(10), Duration::from_secs(300)));
        let (m, p) = d.catalog.route("flux-schnell").unwrap();
        assert_eq!((m.provider_model.as_str(), p.base_url.as_str()), ("flux-schnell", "http://127.0.0.1:8090"));
        assert_eq!(p.limits, Limits { requests_per_minute: Some(600), max_concurrent: Some(16) });
        assert_eq!(p.timeout, Some(Duration::from_secs(30)));
    }

    #[test]
    fn without_a_file_every_priced_model_goes_to_the_default_provider() {
        let d = Deployment::without_file(PriceTable::default(), RouteTable::default(), "http://sim:8090/");
        let (m, p) = d.catalog.route("flux-pro").unwrap();
        assert_eq!((m.provider.as_str(), p.adapter, p.base_url.as_str()), ("default", Adapter::Batch, "http://sim:8090"));
        assert_eq!(p.api_key_env, "PROVIDER_API_KEY");
        assert_eq!(d.prices, PriceTable::default());
    }

    #[test]
    fn toml_that_does_not_parse_names_its_line() {
        one_error("[providers.p]\nadapter = \"batch\"\nbase_url = http://x\n", 3, "");
        one_error("[models.m]\nprovider = \"p\"\nprice = 1\nprice = 2\n", 4, "duplicate key");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_line() {
        one_error(&with_provider("api_key = \"sk-secret\""), 5, "unknown field `api_key`");
        assert!(!errors(&with_provider("api_key = \"sk-secret\""))[0].contains("sk-secret"));
        one_error(&with_model("batch", "prize = 3"), 5, "unknown field `prize`");
        one_error(&format!("offpeak_multipler = 1\n{}", with_provider("")), 1, "unknown field `offpeak_multipler`");
    }

    #[test]
    fn missing_and_mistyped_keys_name_their_line() {
        one_error("[providers.p]\nadapter = \"batch\"\napi_key_env = \"K\"\n", 1, "missing field `base_url`");
        one_error(&with_model("batch", "").replace("price = 1", "price = 1.5"), 3, "expected a whole number");
        one_error(&with_provider("max_concurrent = \"4\""), 5, "");
    }

    #[test]
    fn adapters_must_be_known() {
        one_error(&with_provider("").replace("\"batch\"", "\"openai\""), 2, "unknown adapter 'openai'");
    }

    #[test]
    fn base_urls_must_be_http_or_https_urls_with_a_host() {
        for bad in ["ftp://x", "not a url", "http://x/?a=1", "unix:/tmp/sock"] {
            one_error(&with_provider("").replace("http://x", bad), 3, "base_url");
        }
        let creds = with_provider("").replace("http://x", "https://me:sk-secret@x");
        one_error(&creds, 3, "must not hold credentials");
        assert!(!errors(&creds)[0].contains("sk-secret"));
        Deployment::parse("f.toml", &with_provider("").replace("http://x", "https://gateway.example.com/openai")).unwrap();
    }

    #[test]
    fn api_key_env_names_a_variable_and_never_echoes_a_key() {
        let text = with_provider("").replace("\"K\"", "\"sk-proj-abc123\"");
        one_error(&text, 4, "api_key_env must name the environment variable");
        assert!(!errors(&text)[0].contains("sk-proj"));
    }

    #[test]
    fn provider_names_are_lowercase_words_and_cache_is_reserved() {
        one_error(&with_provider("").replace("providers.p", "providers.OpenAI").replace("\"p\"", "\"OpenAI\""), 1, "must be made of a-z");
        one_error(&with_provider("").replace("providers.p", "providers.cache").replace("\"p\"", "\"cache\""), 1, "reserved");
    }

    #[test]
    fn every_models_provider_must_exist() {
        one_error(&with_provider("").replace("provider = \"p\"", "provider = \"q\""), 7, "names provider 'q', which is not configured");
    }

    #[test]
    fn every_routes_model_must_exist() {
        let text = format!("{}\n[routes]\nthumbnail = \"m\"\nprint = \"flux-pro\"\n", with_provider(""));
        one_error(&text, 12, "route 'print' names model 'flux-pro'");
    }

    #[test]
    fn prices_are_whole_credits_of_at_least_zero() {
        one_error(&with_model("batch", "").replace("price = 1", "price = -1"), 3, "price must be a whole number");
        assert_eq!(Deployment::parse("f.toml", &with_model("batch", "").replace("price = 1", "price = 0")).unwrap().prices.price("m"), Some(0));
    }

    #[test]
    fn multipliers_are_finite_and_at_least_zero() {
        one_error(&with_provider("price_multiplier = -0.5"), 5, "price_multiplier must be a finite number");
        one_error(&with_provider("price_multiplier = nan"), 5, "price_multiplier");
        one_error(&format!("offpeak_multiplier = inf\n{}", with_provider("")), 1, "offpeak_multiplier must be a finite number");
        let d = Deployment::parse("f.toml", &format!("offpeak_multiplier = 1\n{}", with_provider("price_multiplier = 0"))).unwrap();
        assert_eq!(d.prices.charge("m", Priority::Normal).unwrap().charged, 0);
    }

    #[test]
    fn limits_and_seconds_are_at_least_one() {
        one_error(&with_provider("requests_per_minute = 0"), 5, "requests_per_minute must be a whole number from 1");
        one_error(&with_provider("max_concurrent = -3"), 5, "max_concurrent");
        one_error(&with_provider("timeout_secs = 0"), 5, "timeout_secs");
        one_error(&with_model("batch", "max_concurrent = 0"), 5, "max_concurrent");
        one_error(&with_model("batch", "requests_per_minute = 99999999999"), 5, "requests_per_minute");
    }

    #[test]
    fn poll_intervals_belong_to_openai_batch_and_grow() {
        one_error(&with_provider("poll_interval_secs = 5"), 5, "apply to openai-batch providers only");
        let batch = with_provider("poll_interval_secs = 60\npoll_interval_max_secs = 30").replace("\"batch\"", "\"openai-batch\"");
        one_error(&batch, 6, "must be at least poll_interval_secs");
        let first_only = with_provider("poll_interval_secs = 900").replace("\"batch\"", "\"openai-batch\"");
        one_error(&first_only, 5, "poll_interval_max_secs (600) must be at least poll_interval_secs (900)");
    }

    #[test]
    fn provider_model_and_endpoint_are_checked() {
        one_error(&with_model("openai-images", "provider_model = \" \""), 5, "provider_model must not be empty");
        one_error(&with_model("openai-images", "endpoint = \"v1/images/edits\""), 5, "must be a path starting with '/'");
        one_error(&with_model("batch", "endpoint = \"/v1/images/edits\""), 5, "openai-images and openai-batch models only");
        let d = Deployment::parse("f.toml", &with_model("openai-images", "endpoint = \"/v1/images/edits\"")).unwrap();
        assert_eq!(d.catalog.route("m").unwrap().0.endpoint, "/v1/images/edits");
    }

    #[test]
    fn model_names_auto_is_reserved() {
        one_error(&with_model("batch", "").replace("models.m", "models.auto"), 1, "reserved");
    }

    #[test]
    fn a_file_without_models_is_refused() {
        let errs = errors("[providers.p]\nadapter = \"batch\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n");
        assert_eq!(errs, ["f.toml: no models: a configuration file names every model the API accepts, under [models.NAME]"]);
    }

    #[test]
    fn every_problem_is_reported_in_line_order() {
        let text = "[models.a]\nprovider = \"nope\"\nprice = -2\n\n[providers.p]\nadapter = \"batch\"\nbase_url = \"gopher://x\"\napi_key_env = \"K\"\n";
        let errs = errors(text);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("f.toml:2: "), "{errs:?}");
        assert!(errs[1].starts_with("f.toml:3: "), "{errs:?}");
        assert!(errs[2].starts_with("f.toml:7: "), "{errs:?}");
        let all = ConfigErrors(Deployment::parse("f.toml", text).unwrap_err().0).to_string();
        assert_eq!(all.lines().count(), 3);
    }
}
