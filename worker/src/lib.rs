//! offpeak's worker: consumes released batches from RabbitMQ, calls the
//! provider's batch API, and writes results, errors and credits back to
//! PostgreSQL. Stateless: run as many as the queue needs.
//!
//! - [`consumer`]: the consume loop, acks, reconnection, graceful shutdown;
//! - [`process`]: one batch from start to written outcome, with retries;
//! - [`handover`]: a batch handed to a provider's own batch API (`openai-batch`), acked once recorded;
//! - [`poller`]: polls provider batches until they end and writes their outcomes;
//! - [`provider`]: the providers' protocols, one adapter each, and every model's route;
//! - [`limits`]: limits on provider calls shared by every worker;
//! - [`listen`]: the address of `/healthz`, `/readyz` and `/metrics` (one
//!   exact address, or the first free port of a range: the default);
//! - [`cli`]: configuration and wiring.

pub mod cli;
pub mod consumer;
pub mod handover;
pub mod limits;
pub mod listen;
pub mod metrics;
pub mod poller;
pub mod process;
pub mod provider;
