//! Logging, set up once per process: `RUST_LOG` filters (default `info`),
//! `OFFPEAK_LOG_FORMAT=json` switches to one JSON object per line. Colours
//! only when stderr is a terminal, so log files stay plain text.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// The filter when `RUST_LOG` is not set. lapin logs every connection
/// error at ERROR level, including on each clean shutdown; offpeak's own
/// code logs every broker outage (with what it does about it) at WARN, so
/// lapin's lines are off unless asked for (`RUST_LOG=info,lapin=warn`).
pub const DEFAULT_FILTER: &str = "info,lapin=off";

/// Installs the global subscriber. Safe to call twice (the second call is ignored).
pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// `true` when `OFFPEAK_LOG_FORMAT=json`.
pub fn json_requested() -> bool {
    std::env::var("OFFPEAK_LOG_FORMAT").is_ok_and(|v| v.eq_ignore_ascii_case("json"))
}
