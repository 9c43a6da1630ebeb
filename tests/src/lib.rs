//! offpeak's test support: the provider simulator ([`sim`]) and the harness
//! ([`harness`]) that gives each end-to-end test its own database, its own
//! queues, its own simulator and its own clock.

pub mod bench;
pub mod harness;
pub mod procs;
pub mod services;
pub mod sim;
