//! offpeak's test support: the harness
//! ([`harness`]) that gives each end-to-end test its own database, its own
//! queues, its own simulator and its own clock.

pub mod bench;
pub mod clients;
pub mod harness;
pub mod procs;
pub mod receiver;
pub mod services;

/// The provider simulator, its own crate (`provider-sim/`); re-exported so
/// tests name it `offpeak_tests::sim`.
pub use offpeak_provider_sim as sim;
