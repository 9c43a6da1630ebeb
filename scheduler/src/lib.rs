//! offpeak's scheduler: the HTTP API that accepts jobs, the release loop
//! that moves due jobs to RabbitMQ, and the operator commands.
//!
//! `main.rs` only parses the command line ([`cli`]) and calls into here;
//! [`startup`] wires the parts so tests run exactly what production runs;
//! [`ui`] is the operator dashboard served beside the API.

pub mod admission;
pub mod api;
pub mod cli;
pub mod clock;
pub mod coalesce;
pub mod direct;
pub mod firing;
pub mod group_commit;
pub mod metrics;
pub mod operator_token;
pub mod ops;
pub mod prune;
pub mod release;
pub mod rescue;
pub mod rounds;
pub mod semantic;
pub mod startup;
pub mod ui;
pub mod wake;
pub mod webhooks;
