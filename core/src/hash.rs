//! Canonical hashes of JSON values: the idempotency check's request hash and
//! the exact cache's key.

/// SHA-256 of the canonical JSON of a value: object keys sorted, no
/// whitespace. Two requests that differ only in key order or spacing hash
/// the same.
pub fn canonical_hash(value: &serde_json::Value) -> Vec<u8> {
    use sha2::Digest;
    // serde_json's Value keeps objects in a BTreeMap (the `preserve_order`
    // feature is off), so serialising it is already canonical.
    sha2::Sha256::digest(value.to_string().as_bytes()).to_vec()
}

/// The exact cache's key of a job: SHA-256 over the tenant, the model and
/// the canonical JSON of the input (object key order and whitespace do not
/// matter). The tenant is part of the key so a tenant is only ever answered
/// from its own results: a shared cache would tell one tenant what another
/// has asked for.
pub fn cache_key(tenant_id: uuid::Uuid, model: &str, input: &serde_json::Value) -> Vec<u8> {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(tenant_id.as_bytes());
    // A NUL cannot appear in a stored model name, so it separates the parts
    // unambiguously.
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(input.to_string().as_bytes());
    h.finalize().to_vec()
}

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

    #[test]
    fn cache_key_ignores_key_order_but_not_tenant_model_or_input() {
        let t = uuid::Uuid::now_v7();
        let a: serde_json::Value = serde_json::from_str(r#"{"prompt": "cat", "size": [1, 2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "size":[1,2],"prompt":"cat" }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"prompt": "dog", "size": [1, 2]}"#).unwrap();
        assert_eq!(super::cache_key(t, "flux-dev", &a), super::cache_key(t, "flux-dev", &b));
        assert_ne!(super::cache_key(t, "flux-dev", &a), super::cache_key(t, "flux-pro", &a));
        assert_ne!(super::cache_key(t, "flux-dev", &a), super::cache_key(t, "flux-dev", &c));
        assert_ne!(super::cache_key(t, "flux-dev", &a), super::cache_key(uuid::Uuid::now_v7(), "flux-dev", &a));
    }
}
