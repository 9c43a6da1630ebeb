//! Prometheus metrics that both binaries count, defined once so that a
//! process running both (the tests) registers each name once. Labels are
//! low cardinality (model, reason, kind).

use std::sync::LazyLock;

use prometheus::{register_int_counter_vec, IntCounterVec};

// Registering in the default registry fails only on a duplicate name, a
// programming error the first test run would show; hence the `expect`s.

/// Credits not charged against the list price, by model and reason.
pub static CREDITS_SAVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_credits_saved_total",
        "Credits not charged against the list price of succeeded jobs, by model and reason (offpeak: the off-peak multiplier; cache: answered from an identical job's result)",
        &["model", "reason"]
    )
    .expect("metric registers once")
});

/// Jobs answered without a provider call, by model and kind.
pub static CACHE_HITS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "offpeak_cache_hits_total",
        "Jobs answered from an identical job's result without a provider call, by model and kind (submit, release: from the cache; coalesced: waited for an identical job in flight)",
        &["model", "kind"]
    )
    .expect("metric registers once")
});
