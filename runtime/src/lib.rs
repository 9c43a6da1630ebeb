//! The runtime pieces both binaries share, apart from the domain
//! (`offpeak-core`) and the SQL (`offpeak-store`): RabbitMQ ([`broker`]),
//! the flags and environment variables every binary reads ([`config`]),
//! metrics both count ([`metrics`]), logging ([`telemetry`]) and graceful
//! shutdown ([`shutdown`]).

pub mod broker;
pub mod config;
pub mod metrics;
pub mod shutdown;
pub mod telemetry;
