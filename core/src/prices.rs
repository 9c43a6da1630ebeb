//! Prices and routes: what each model costs in credits, the off-peak
//! multiplier that discounts low-priority jobs, and which model a `use_case`
//! is routed to when a job asks for `"model": "auto"`.

use std::collections::BTreeMap;

use crate::job::Priority;

/// Credits per call for each model the provider offers, and the off-peak
/// multiplier.
///
/// The defaults are the provider's list prices; operators override them with
/// `OFFPEAK_PRICES="flux-schnell=1,flux-pro=6"` (entries named replace or add
/// to the defaults). Low-priority jobs, released in their off-peak window,
/// pay the list price times `OFFPEAK_OFFPEAK_MULTIPLIER` (default 1.0);
/// normal-priority jobs pay the list price.
#[derive(Debug, Clone, PartialEq)]
pub struct PriceTable {
    prices: BTreeMap<String, i64>,
    offpeak_multiplier: f64,
}

/// What one successful call costs: the list price and what is charged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    /// The price table's price, undiscounted.
    pub list: i64,
    /// What the job is charged: `list`, or for a low-priority job `list`
    /// times the off-peak multiplier, rounded half up to whole credits.
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
        Self { prices, offpeak_multiplier: 1.0 }
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

    /// Credits one successful call of `model` costs at list price, if the model is known.
    pub fn price(&self, model: &str) -> Option<i64> {
        self.prices.get(model).copied()
    }

    /// What one successful call of `model` costs a job of `priority`, if
    /// the model is known. Credits stay whole: the discounted price is
    /// rounded half up (`f64::round` on a non-negative number), so with a
    /// 0.5 multiplier a 1-credit model costs 1 and a 5-credit one 3.
    pub fn charge(&self, model: &str, priority: Priority) -> Option<Charge> {
        let list = self.price(model)?;
        let charged = match priority {
            Priority::Normal => list,
            // Prices and the multiplier are small; the product fits an i64
            // long before precision matters, and `as` saturates anyway.
            Priority::Low => (list as f64 * self.offpeak_multiplier).round() as i64,
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
