//! Jobs: what a backend service submits and the states a job moves through.
//!
//! ```text
//!  held ──release──▶ queued ──worker starts──▶ running ──▶ succeeded | failed | dead
//!   │                  │
//!   └──── cancel ──────┴──▶ cancelled
//! ```
//!
//! `failed` is a permanent per-item error from the provider; `dead` is a job
//! that ran out of attempts on transient errors. Every job ends in exactly one
//! of `succeeded`, `failed`, `dead` or `cancelled`; the database enforces it by
//! only ever moving a job out of a non-terminal state (see `db::jobs`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The state of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Held,
    Queued,
    Running,
    Succeeded,
    Failed,
    Dead,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 7] = [
        JobState::Held,
        JobState::Queued,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Dead,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Held => "held",
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Dead => "dead",
            JobState::Cancelled => "cancelled",
        }
    }

    /// A terminal state is never left.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Dead | JobState::Cancelled
        )
    }

    /// A job can be cancelled until a worker starts it.
    pub fn is_cancellable(self) -> bool {
        matches!(self, JobState::Held | JobState::Queued)
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the known values of an enum-like field.
#[derive(Debug, thiserror::Error)]
#[error("unknown {what} '{value}', expected one of: {expected}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
    pub expected: String,
}

impl FromStr for JobState {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "state",
                value: s.to_owned(),
                expected: JobState::ALL.map(|s| s.as_str()).join(", "),
            })
    }
}

/// A state equals its name: `state == "held"`.
impl PartialEq<&str> for JobState {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Rows store states as text; the store converts them here, once.
impl TryFrom<String> for JobState {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// How urgent a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Held until the off-peak window in the job's timezone.
    #[default]
    Low,
    /// Released at once, batched with other released work.
    Normal,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Normal => "normal",
        }
    }
}

impl FromStr for Priority {
    type Err = UnknownValue;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "low" => Ok(Priority::Low),
            "normal" => Ok(Priority::Normal),
            _ => Err(UnknownValue {
                what: "priority",
                value: s.to_owned(),
                expected: "low, normal".into(),
            }),
        }
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A priority equals its name: `priority == "low"`.
impl PartialEq<&str> for Priority {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Rows store priorities as text; the store converts them here, once.
impl TryFrom<String> for Priority {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_terminality() {
        for s in JobState::ALL {
            assert_eq!(s.as_str().parse::<JobState>().unwrap(), s);
        }
        assert!(!JobState::Held.is_terminal());
        assert!(JobState::Dead.is_terminal());
        assert!(JobState::Queued.is_cancellable());
        assert!(!JobState::Running.is_cancellable());
        assert!("paused".parse::<JobState>().is_err());
    }
}
