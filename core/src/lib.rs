//! offpeak's domain, with no I/O: what a job is and the states it moves
//! through ([`job`]), what it costs and which model a use case gets
//! ([`prices`]), which provider and protocol serves a model ([`providers`]), the
//! configuration file that names them ([`config`]), the off-peak window ([`window`]) and the one search for a
//! timezone's offset changes it rests on ([`tz`]), recurring schedules
//! ([`schedule`]), tenants and the one rule for their window ([`tenant`]),
//! daily quotas ([`quota`]), the batch message between scheduler and worker
//! ([`message`]), the injected clock ([`clock`]), the canonical hashes of
//! JSON values ([`hash`]), the one parse of a job submission
//! ([`submission`]), what PostgreSQL's `jsonb` keeps of a JSON value
//! ([`jsonb`]), the semantic cache's rules and search ([`semantic`]), and a
//! submission's preview and the upgrade of a job ([`preview`]).
//!
//! Nothing here talks to PostgreSQL, RabbitMQ or the network: `offpeak-store`
//! converts rows into these types at its edge, and the binaries wire them to
//! the outside world.

pub mod clock;
pub mod config;
pub mod hash;
pub mod job;
pub mod jsonb;
pub mod message;
pub mod preview;
pub mod prices;
pub mod providers;
pub mod quota;
pub mod schedule;
pub mod semantic;
pub mod submission;
pub mod tenant;
pub mod tz;
pub mod webhook;
pub mod window;
