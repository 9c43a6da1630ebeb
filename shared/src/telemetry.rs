//! Logging, set up once per process: `RUST_LOG` filters (default `info`),
//! `OFFPEAK_LOG_FORMAT=json` switches to one JSON object per line.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call twice (the second call is ignored).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// `true` when `OFFPEAK_LOG_FORMAT=json`.
pub fn json_requested() -> bool {
    std::env::var("OFFPEAK_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}
