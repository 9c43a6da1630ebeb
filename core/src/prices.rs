//! Prices and routes: what each model costs in credits, the off-peak
//! multiplier that discounts low-priority jobs, the discount of the
//! provider each model goes through, and which model a `use_case` is
//! routed to when a job asks for `"model": "auto"`.

use std::collections::BTreeMap;

use crate::job::Priority;
use crate::providers::Catalog;

/// Credits per call for each model the provider offers, and the off-peak
/// multiplier.
///
/// The defaults are the provider's list prices; operators override them with
/// `OFFPEAK_PRICES="flux-schnell=1,flux-pro=6"` (entries named replace or add
/// to the defaults). Low-priority jobs, released in their off-peak window,
/// pay the list price times `OFFPEAK_OFFPEAK_MULTIPLIER` (default 1.0);
/// normal-priority jobs pay the list price.
///
/// A model may also go through a provider that charges less than the list
/// price (OpenAI's Batch API charges half): its provider's
/// `price_multiplier` ([`PriceTable::with_provider_multipliers`]) applies to
/// every job of the model, whatever its priority.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, i64>,
    offpeak_multiplier: f64,
    /// Each model's provider multiplier, where it is not 1.0.
    provider_multipliers: BTreeMap<String, f64>,
}

/// What one successful call costs: the list price and what is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The price table's price, undiscounted.
    pub list: i64,
    /// What the job is charged: `list` times the model's provider
    /// multiplier and, for a low-priority job, the off-peak multiplier,
    /// rounded half up to whole credits.
    pub charged: i64,
}

impl Default for PriceTable {
    fn default() -> Self {
        let prices = [
            ("flux-schnell", 1),
            ("flux-dev", 2),
            ("flux-pro", 5),
            ("minimax-video", 15),
            ("stable-audio", 3),
        ]
        .into_iter()
        .map(|(m, p)| (m.to_owned(), p))
        .collect();
        Self { prices, offpeak_multiplier: 1.0, provider_multipliers: BTreeMap::new() }
    }
}

/// An off-peak multiplier that is not a finite number of at least 0.
#[derive(Debug, thiserror::Error)]
#[error("invalid off-peak multiplier {0}: expected a finite number of at least 0")]
pub struct InvalidMultiplier(pub f64);

/// A price table override that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("invalid price entry '{0}': expected MODEL=CREDITS with CREDITS a non-negative integer")]
pub struct InvalidPrice(pub String);

impl PriceTable {
    /// A table of exactly these prices (no defaults), with an off-peak
    /// multiplier of 1.0: the configuration file's models.
    ///
    /// # Errors
    /// A negative price, or an empty model name.
    pub fn from_prices(prices: impl IntoIterator<Item = (String, i64)>) -> Result<Self, InvalidPrice> {
        let mut table = Self { prices: BTreeMap::new(), ..Self::default() };
        for (model, credits) in prices {
            if credits < 0 || model.is_empty() {
                return Err(InvalidPrice(format!("{model}={credits}")));
            }
            table.prices.insert(model, credits);
        }
        Ok(table)
    }

    /// The defaults with `overrides` applied (`model=credits,model=credits`).
    ///
    /// # Errors
    /// An entry that is not `MODEL=CREDITS` with a non-negative integer.
    pub fn with_overrides(overrides: &str) -> Result<Self, InvalidPrice> {
        let mut table = Self::default();
        for entry in overrides.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (model, credits) = entry
                .split_once('=')
                .ok_or_else(|| InvalidPrice(entry.to_owned()))?;
            let credits: i64 = credits
                .trim()
                .parse()
                .ok()
                .filter(|c| *c >= 0)
                .ok_or_else(|| InvalidPrice(entry.to_owned()))?;
            let model = model.trim();
            if model.is_empty() {
                return Err(InvalidPrice(entry.to_owned()));
            }
            table.prices.insert(model.to_owned(), credits);
        }
        Ok(table)
    }

    /// The same table with another off-peak multiplier.
    ///
    /// # Errors
    /// A multiplier that is negative, infinite or NaN.
    pub fn with_offpeak_multiplier(mut self, multiplier: f64) -> Result<Self, InvalidMultiplier> {
        if !multiplier.is_finite() || multiplier < 0.0 {
            return Err(InvalidMultiplier(multiplier));
        }
        self.offpeak_multiplier = multiplier;
        Ok(self)
    }

    pub fn offpeak_multiplier(&self) -> f64 {
        self.offpeak_multiplier
    }

    /// The same table with each priced model charged at its provider's
    /// `price_multiplier` in `catalog` (models the catalog does not name
    /// keep 1.0).
    ///
    /// # Errors
    /// A provider's multiplier that is negative, infinite or NaN.
    pub fn with_provider_multipliers(mut self, catalog: &Catalog) -> Result<Self, InvalidMultiplier> {
        let mut multipliers = BTreeMap::new();
        for model in self.prices.keys() {
            let Some((_, provider)) = catalog.route(model) else { continue };
            let m = provider.price_multiplier;
            if !m.is_finite() || m < 0.0 {
                return Err(InvalidMultiplier(m));
            }
            if m != 1.0 {
                multipliers.insert(model.clone(), m);
            }
        }
        self.provider_multipliers = multipliers;
        Ok(self)
    }

    /// What `model`'s provider charges, as a multiple of its list price
    /// (1.0 for a model the table does not know).
    pub fn provider_multiplier(&self, model: &str) -> f64 {
        self.provider_multipliers.get(model).copied().unwrap_or(1.0)
    }

    /// Credits one successful call of `model` costs at list price, if the model is known.
    pub fn price(&self, model: &str) -> Option<i64> {
        self.prices.get(model).copied()
    }

    /// What one successful call of `model` costs a job of `priority`, if
    /// the model is known: the list price times the model's provider
    /// multiplier and, for a low-priority job, the off-peak multiplier.
    /// Credits stay whole: the product is rounded once, half up
    /// (`f64::round` on a non-negative number), so with a 0.5 multiplier a
    /// 1-credit model costs 1 and a 5-credit one 3, and with a provider's
    /// 0.5 and an off-peak 0.5 a 5-credit model costs 1 (1.25), not 2.
    pub fn charge(&self, model: &str, priority: Priority) -> Option<Charge> {
        let list = self.price(model)?;
        let offpeak = match priority {
            Priority::Normal => 1.0,
            Priority::Low => self.offpeak_multiplier,
        };
        let provider = self.provider_multiplier(model);
        let charged = if provider == 1.0 && offpeak == 1.0 {
            list
        } else {
            // Prices and the multipliers are small; the product fits an i64
            // long before precision matters, and `as` saturates anyway.
            (list as f64 * provider * offpeak).round() as i64
        };
        Some(Charge { list, charged })
    }

    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.prices.keys().map(String::as_str)
    }
}

/// Model routing: which model a `use_case` gets when a job says
/// `"model": "auto"`.
///
/// The defaults follow the provider's cost guide (the cheapest adequate
/// model); operators override them with
/// `OFFPEAK_ROUTES="thumbnail=flux-schnell,print=flux-dev"` (entries named
/// replace or add to the defaults).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteTable {
    routes: BTreeMap<String, String>,
}

impl Default for RouteTable {
    fn default() -> Self {
        let routes = [
            ("thumbnail", "flux-schnell"),
            ("preview", "flux-schnell"),
            ("product-image", "flux-dev"),
            ("marketing", "flux-dev"),
            ("hero-image", "flux-pro"),
            ("print", "flux-pro"),
        ]
        .into_iter()
        .map(|(u, m)| (u.to_owned(), m.to_owned()))
        .collect();
        Self { routes }
    }
}

/// A route table override that does not parse, or routes to an unknown model.
#[derive(Debug, thiserror::Error)]
#[error("invalid route entry '{0}': expected USE_CASE=MODEL with MODEL a model of the price table")]
pub struct InvalidRoute(pub String);

impl RouteTable {
    /// A table with no routes: every use case is unknown, so a parse given
    /// it accepts only requests that name their model.
    #[must_use]
    pub fn none() -> Self {
        Self { routes: BTreeMap::new() }
    }

    /// A table of exactly these routes (no defaults): the configuration
    /// file's. Check them against the prices with [`RouteTable::check`].
    ///
    /// # Errors
    /// An empty use case or model, or a route to `auto`.
    pub fn from_routes(routes: impl IntoIterator<Item = (String, String)>) -> Result<Self, InvalidRoute> {
        let mut table = Self::none();
        for (use_case, model) in routes {
            if use_case.is_empty() || model.is_empty() || model == "auto" {
                return Err(InvalidRoute(format!("{use_case}={model}")));
            }
            table.routes.insert(use_case, model);
        }
        Ok(table)
    }

    /// The defaults with `overrides` applied (`use_case=model,...`).
    ///
    /// # Errors
    /// An entry that is not `USE_CASE=MODEL` with both sides non-empty.
    pub fn with_overrides(overrides: &str) -> Result<Self, InvalidRoute> {
        let mut table = Self::default();
        for entry in overrides.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (use_case, model) = entry.split_once('=').ok_or_else(|| InvalidRoute(entry.to_owned()))?;
            let (use_case, model) = (use_case.trim(), model.trim());
            if use_case.is_empty() || model.is_empty() || model == "auto" {
                return Err(InvalidRoute(entry.to_owned()));
            }
            table.routes.insert(use_case.to_owned(), model.to_owned());
        }
        Ok(table)
    }

    /// Every route leads to a model of `prices`.
    ///
    /// # Errors
    /// The first route whose model the price table does not know.
    pub fn check(&self, prices: &PriceTable) -> Result<(), InvalidRoute> {
        match self.routes.iter().find(|(_, m)| prices.price(m).is_none()) {
            Some((u, m)) => Err(InvalidRoute(format!("{u}={m}"))),
            None => Ok(()),
        }
    }

    /// The model a use case is routed to, if the use case is known.
    pub fn model_for(&self, use_case: &str) -> Option<&str> {
        self.routes.get(use_case).map(String::as_str)
    }

    pub fn use_cases(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_overrides_replace_and_add() {
        let t = PriceTable::with_overrides("flux-pro=6, new-model=9").unwrap();
        assert_eq!(t.price("flux-pro"), Some(6));
        assert_eq!(t.price("new-model"), Some(9));
        assert_eq!(t.price("flux-schnell"), Some(1));
        assert!(PriceTable::with_overrides("flux-pro").is_err());
        assert!(PriceTable::with_overrides("flux-pro=-1").is_err());
    }

    #[test]
    fn the_offpeak_multiplier_discounts_low_priority_only_rounding_half_up() {
        let t = PriceTable::default().with_offpeak_multiplier(0.5).unwrap();
        assert_eq!(t.charge("flux-schnell", Priority::Low), Some(Charge { list: 1, charged: 1 }));
        assert_eq!(t.charge("flux-pro", Priority::Low), Some(Charge { list: 5, charged: 3 }));
        assert_eq!(t.charge("flux-pro", Priority::Normal), Some(Charge { list: 5, charged: 5 }));
        assert_eq!(t.charge("minimax-video", Priority::Low), Some(Charge { list: 15, charged: 8 }));
        assert_eq!(t.charge("nope", Priority::Low), None);
        let free = PriceTable::default().with_offpeak_multiplier(0.0).unwrap();
        assert_eq!(free.charge("flux-dev", Priority::Low), Some(Charge { list: 2, charged: 0 }));
        assert_eq!(PriceTable::default().charge("flux-dev", Priority::Low), Some(Charge { list: 2, charged: 2 }));
        assert!(PriceTable::default().with_offpeak_multiplier(-0.1).is_err());
        assert!(PriceTable::default().with_offpeak_multiplier(f64::NAN).is_err());
        assert!(PriceTable::default().with_offpeak_multiplier(f64::INFINITY).is_err());
    }

    #[test]
    fn a_providers_multiplier_applies_to_every_priority_and_compounds_with_the_offpeak_one() {
        use crate::providers::{Adapter, Model, Provider};
        let mut batch = Provider::new("openai-batch", Adapter::OpenaiBatch, "https://api.openai.com", "OPENAI_API_KEY");
        batch.price_multiplier = 0.5;
        let sim = Provider::new("sim", Adapter::Batch, "http://127.0.0.1:8090", "PROVIDER_API_KEY");
        let catalog = Catalog::new(
            vec![batch, sim],
            vec![Model::new("flux-pro", "openai-batch"), Model::new("minimax-video", "openai-batch"), Model::new("flux-dev", "sim")],
        )
        .unwrap();
        let t = PriceTable::default().with_provider_multipliers(&catalog).unwrap();
        assert_eq!(t.provider_multiplier("flux-pro"), 0.5);
        assert_eq!(t.provider_multiplier("flux-dev"), 1.0);
        // Normal priority pays the provider's price: 5 × 0.5 = 2.5, half up.
        assert_eq!(t.charge("flux-pro", Priority::Normal), Some(Charge { list: 5, charged: 3 }));
        assert_eq!(t.charge("minimax-video", Priority::Normal), Some(Charge { list: 15, charged: 8 }));
        assert_eq!(t.charge("flux-dev", Priority::Normal), Some(Charge { list: 2, charged: 2 }));
        // A model the catalog does not name keeps its list price.
        assert_eq!(t.charge("flux-schnell", Priority::Low), Some(Charge { list: 1, charged: 1 }));
        let t = t.with_offpeak_multiplier(0.5).unwrap();
        // One rounding of the whole product: 5 × 0.5 × 0.5 = 1.25 → 1 (not round(round(2.5) × 0.5) = 2).
        assert_eq!(t.charge("flux-pro", Priority::Low), Some(Charge { list: 5, charged: 1 }));
        // 15 × 0.25 = 3.75 → 4.
        assert_eq!(t.charge("minimax-video", Priority::Low), Some(Charge { list: 15, charged: 4 }));
        assert_eq!(t.charge("flux-dev", Priority::Low), Some(Charge { list: 2, charged: 1 }));
        let mut free = Provider::new("free", Adapter::Batch, "http://x", "K");
        free.price_multiplier = 0.0;
        let c = Catalog::new(vec![free.clone()], vec![Model::new("flux-dev", "free")]).unwrap();
        assert_eq!(PriceTable::default().with_provider_multipliers(&c).unwrap().charge("flux-dev", Priority::Normal).unwrap().charged, 0);
        free.price_multiplier = f64::NAN;
        let c = Catalog::new(vec![free], vec![Model::new("flux-dev", "free")]).unwrap();
        assert!(PriceTable::default().with_provider_multipliers(&c).is_err());
    }

    #[test]
    fn tables_from_a_file_have_no_defaults() {
        let t = PriceTable::from_prices([("house".to_owned(), 4)]).unwrap();
        assert_eq!(t.models().collect::<Vec<_>>(), ["house"]);
        assert_eq!(t.price("flux-schnell"), None);
        assert!(PriceTable::from_prices([("house".to_owned(), -1)]).is_err());
        let r = RouteTable::from_routes([("banner".to_owned(), "house".to_owned())]).unwrap();
        assert_eq!(r.use_cases().collect::<Vec<_>>(), ["banner"]);
        r.check(&t).unwrap();
        assert!(RouteTable::from_routes([("x".to_owned(), "auto".to_owned())]).is_err());
    }

    #[test]
    fn routes_parse_override_and_resolve() {
        let prices = PriceTable::default();
        let r = RouteTable::default();
        assert_eq!(r.model_for("thumbnail"), Some("flux-schnell"));
        assert_eq!(r.model_for("print"), Some("flux-pro"));
        assert_eq!(r.model_for("nope"), None);
        r.check(&prices).unwrap();
        let r = RouteTable::with_overrides("print=flux-dev, banner=flux-schnell").unwrap();
        assert_eq!(r.model_for("print"), Some("flux-dev"));
        assert_eq!(r.model_for("banner"), Some("flux-schnell"));
        assert_eq!(r.model_for("marketing"), Some("flux-dev"));
        assert!(RouteTable::with_overrides("print").is_err());
        assert!(RouteTable::with_overrides("=flux-dev").is_err());
        assert!(RouteTable::with_overrides("x=nope").unwrap().check(&prices).is_err());
    }
}
