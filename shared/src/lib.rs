//! offpeak's shared library: the domain (jobs, their states, prices), the
//! off-peak window calculation, the message schema between scheduler and
//! worker, configuration, and the PostgreSQL and RabbitMQ code both binaries
//! use.

pub mod broker;
pub mod clock;
pub mod config;
pub mod db;
pub mod job;
pub mod message;
pub mod schedule;
pub mod telemetry;
pub mod window;

/// SHA-256 of the canonical JSON of a value: object keys sorted, no
/// whitespace. Two requests that differ only in key order or spacing hash
/// the same.
pub fn canonical_hash(value: &serde_json::Value) -> Vec<u8> {
    use sha2::Digest;
    // serde_json's Value keeps objects in a BTreeMap (the `preserve_order`
    // feature is off), so serialising it is already canonical.
    sha2::Sha256::digest(value.to_string().as_bytes()).to_vec()
}

pub mod shutdown;

#[cfg(test)]
mod tests {
    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": null}}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{"a":{"x":null,"y":[1,2]},"b":1}"#).unwrap();
        assert_eq!(super::canonical_hash(&a), super::canonical_hash(&b));
        let c: serde_json::Value = serde_json::from_str(r#"{"a":{"x":null,"y":[2,1]},"b":1}"#).unwrap();
        assert_ne!(super::canonical_hash(&a), super::canonical_hash(&c));
    }
}
