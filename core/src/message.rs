//! The message the release loop publishes and workers consume: one batch of
//! jobs of one model.
//!
//! The message carries only identities. A worker reads the jobs' inputs from
//! PostgreSQL in the same statement that marks them `running`, so the
//! database stays the one place a job's truth lives, and a message that
//! outlived its batch (published, then the publishing transaction rolled
//! back) finds no jobs and is acknowledged without effect.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Bumped on any incompatible change; workers refuse versions they do not know.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchMessage {
    pub version: u32,
    /// Also the provider's `Idempotency-Key`, so a replayed batch is not billed twice.
    pub batch_id: Uuid,
    pub model: String,
    pub job_ids: Vec<Uuid>,
    pub published_at: DateTime<Utc>,
}

/// A message body that is not a batch this worker understands.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("batch message is not valid JSON of the expected shape: {0}")]
    Malformed(#[from] serde_json::Error),
    #[error("batch message has schema version {0}, this worker understands {SCHEMA_VERSION}")]
    UnknownVersion(u32),
}

impl BatchMessage {
    pub fn new(batch_id: Uuid, model: String, job_ids: Vec<Uuid>, published_at: DateTime<Utc>) -> Self {
        Self { version: SCHEMA_VERSION, batch_id, model, job_ids, published_at }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // Serialising a struct of plain strings, ids and a timestamp cannot fail.
        serde_json::to_vec(self).expect("BatchMessage serialises")
    }

    /// # Errors
    /// A body that is not JSON of this shape, or of another schema version.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessageError> {
        let msg: BatchMessage = serde_json::from_slice(bytes)?;
        if msg.version != SCHEMA_VERSION {
            return Err(MessageError::UnknownVersion(msg.version));
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let m = BatchMessage::new(Uuid::now_v7(), "flux-dev".into(), vec![Uuid::now_v7()], Utc::now());
        assert_eq!(BatchMessage::from_bytes(&m.to_bytes()).unwrap(), m);
        assert!(BatchMessage::from_bytes(b"{not json").is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&m.to_bytes()).unwrap();
        v["version"] = 99.into();
        assert!(matches!(
            BatchMessage::from_bytes(&serde_json::to_vec(&v).unwrap()),
            Err(MessageError::UnknownVersion(99))
        ));
    }
}
