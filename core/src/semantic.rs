//! The semantic cache's rules, with no I/O: which cache a job uses, what
//! must match exactly for one job to answer another, and the search over
//! embeddings.
//!
//! A job may be answered by a *rewording* of a prompt that succeeded
//! before, never by a different request. The users of semantic caches
//! elsewhere report the same wrong hits: another size or style, another
//! model, another tenant's data, a negation. So everything but the prompt
//! must match exactly:
//!
//! - [`scope`] hashes the tenant, the model and the canonical JSON of the
//!   input *without the prompt* (the field at [`PromptField`], a JSON
//!   pointer, `/prompt` by default). Two jobs are compared only when their
//!   scopes are equal: `{"prompt": "a cat", "width": 512}` is never compared
//!   with `{"prompt": "a cat", "width": 1024}`.
//! - within a scope, the prompts' embeddings must have cosine similarity at
//!   or above the threshold (0.95 by default), and the candidate must have
//!   succeeded from a provider call within the cache's TTL (the store checks
//!   that, in the same transaction that answers).
//!
//! [`Index`] is the nearest-neighbour search: exact (brute force) over a
//! scope's unit vectors, one dot product each. Measured in BENCHMARKS.md
//! against the scope sizes the benchmark uses; an approximate index (HNSW)
//! would be the next step for scopes of millions, at the price of sometimes
//! missing a candidate an exact search finds.
//!
//! ```
//! use offpeak_core::semantic::{scope, Index, PromptField};
//! use serde_json::json;
//!
//! let field = PromptField::parse("/prompt").unwrap();
//! let tenant = uuid::Uuid::nil();
//! let a = json!({"prompt": "a lighthouse at dawn", "width": 512});
//! let b = json!({"prompt": "lighthouse at sunrise", "width": 512});
//! let c = json!({"prompt": "a lighthouse at dawn", "width": 1024});
//! let (scope_a, prompt_a) = scope(tenant, "flux-dev", &a, &field).unwrap();
//! assert_eq!(prompt_a, "a lighthouse at dawn");
//! assert_eq!(scope(tenant, "flux-dev", &b, &field).unwrap().0, scope_a);
//! assert_ne!(scope(tenant, "flux-dev", &c, &field).unwrap().0, scope_a);
//!
//! let mut index = Index::default();
//! let id = uuid::Uuid::now_v7();
//! index.insert(&scope_a, id, 1, vec![1.0, 0.0]);
//! let found = index.search(&scope_a, &[0.96, 0.28], 0.95, 4);
//! assert_eq!(found.len(), 1);
//! assert_eq!(found[0].0, id);
//! ```

use std::collections::HashMap;

use serde_json::Value;
use uuid::Uuid;

/// Which cache a job uses, once the tenant's default is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CacheMode {
    /// Neither answered from nor coalesced with other jobs (`"cache": false`).
    Off,
    /// The exact cache and coalescing (the default).
    #[default]
    Exact,
    /// The exact cache first, then a rewording of a prompt that succeeded
    /// before ([`scope`], [`Index`]).
    Semantic,
}

impl CacheMode {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            CacheMode::Off => "off",
            CacheMode::Exact => "exact",
            CacheMode::Semantic => "semantic",
        }
    }

    /// Whether the job uses the exact cache (a semantic job does too).
    #[must_use]
    pub const fn uses_cache(self) -> bool {
        !matches!(self, CacheMode::Off)
    }

    #[must_use]
    pub const fn is_semantic(self) -> bool {
        matches!(self, CacheMode::Semantic)
    }
}

impl std::str::FromStr for CacheMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(CacheMode::Off),
            "exact" => Ok(CacheMode::Exact),
            "semantic" => Ok(CacheMode::Semantic),
            other => Err(format!("unknown cache mode '{other}': one of off, exact, semantic")),
        }
    }
}

impl std::fmt::Display for CacheMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a submission asked for: `"cache"` absent or `true` takes the
/// tenant's mode (`tenant update NAME --cache semantic`), `false` turns the
/// cache off, `"exact"` and `"semantic"` name a mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheChoice {
    #[default]
    TenantDefault,
    Mode(CacheMode),
}

impl CacheChoice {
    /// The mode, given the tenant's default.
    #[must_use]
    pub fn resolve(self, tenant_default: CacheMode) -> CacheMode {
        match self {
            CacheChoice::TenantDefault => tenant_default,
            CacheChoice::Mode(m) => m,
        }
    }

    /// `true`/`false` of a schedule's template (which stores a boolean).
    #[must_use]
    pub fn from_bool(on: bool) -> Self {
        if on {
            CacheChoice::TenantDefault
        } else {
            CacheChoice::Mode(CacheMode::Off)
        }
    }

    /// Whether the cache is not turned off.
    #[must_use]
    pub fn uses_cache(self) -> bool {
        self != CacheChoice::Mode(CacheMode::Off)
    }
}

/// Where the prompt is in a job's input: a JSON pointer (RFC 6901),
/// `/prompt` by default (`OFFPEAK_SEMANTIC_FIELD`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptField(String);

impl PromptField {
    /// # Errors
    /// A pointer that is empty or does not start with `/`.
    pub fn parse(pointer: &str) -> Result<Self, String> {
        if pointer.len() < 2 || !pointer.starts_with('/') {
            return Err(format!("'{pointer}' is not a JSON pointer to a field (e.g. /prompt or /messages/0/content)"));
        }
        Ok(Self(pointer.to_owned()))
    }

    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for PromptField {
    fn default() -> Self {
        Self("/prompt".to_owned())
    }
}

/// The scope of an input and its prompt: `None` when the input has no
/// non-empty string at `field` (such a job can only be an exact hit).
///
/// The scope is SHA-256 over the tenant, the model, the pointer and the
/// canonical JSON of the input with the prompt replaced by `null`, so
/// every other field (size, style, seed, a negative prompt) must be equal
/// for two jobs to be compared at all.
#[must_use]
pub fn scope(tenant_id: Uuid, model: &str, input: &Value, field: &PromptField) -> Option<(Vec<u8>, String)> {
    use sha2::Digest;
    let prompt = input.pointer(field.as_str())?.as_str()?;
    if prompt.trim().is_empty() {
        return None;
    }
    let prompt = prompt.to_owned();
    let mut rest = input.clone();
    *rest.pointer_mut(field.as_str())? = Value::Null;
    let mut h = sha2::Sha256::new();
    h.update(b"semantic\0");
    h.update(tenant_id.as_bytes());
    // A NUL cannot appear in a stored model name or in a pointer that
    // PostgreSQL stored, so it separates the parts unambiguously.
    h.update(model.as_bytes());
    h.update([0u8]);
    h.update(field.as_str().as_bytes());
    h.update([0u8]);
    h.update(rest.to_string().as_bytes());
    Some((h.finalize().to_vec(), prompt))
}

/// The cosine similarity of two vectors (0 when either is all zeros or
/// their lengths differ).
#[must_use]
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut na, mut nb) = (0f32, 0f32, 0f32);
    for (x, y) in a.iter().zip(b) {
        dot += x * y;
        na += x * x;
        nb += y * y;
    }
    if na == 0.0 || nb == 0.0 {
        return 0.0;
    }
    dot / (na.sqrt() * nb.sqrt())
}

/// `v` scaled to length 1; `None` for an empty, all-zero or non-finite
/// vector (an embeddings answer that cannot be compared).
#[must_use]
pub fn normalize(mut v: Vec<f32>) -> Option<Vec<f32>> {
    if v.is_empty() || v.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return None;
    }
    v.iter_mut().for_each(|x| *x /= norm);
    Some(v)
}

/// A vector as stored (`job_embeddings.embedding`): little-endian `f32`s.
#[must_use]
pub fn encode(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// A stored vector; `None` when its length is not a multiple of 4.
#[must_use]
pub fn decode(bytes: &[u8]) -> Option<Vec<f32>> {
    #[allow(clippy::manual_is_multiple_of)] // `is_multiple_of` needs Rust 1.87; the workspace says 1.85
    if bytes.len() % 4 != 0 {
        return None;
    }
    Some(bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
}

/// The dot product of two vectors of one length, in eight independent
/// sums: a single running sum is a chain the compiler may not reorder
/// (floating-point addition is not associative), so it stays scalar; eight
/// lanes let it use the SIMD registers. Measured in BENCHMARKS.md (step 20):
/// the index's search over 100,000 vectors of 256 took 18 ms with one sum.
#[must_use]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    const LANES: usize = 8;
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// One scope's vectors, in one flat array (`dim` floats each).
#[derive(Debug, Default)]
struct ScopeVectors {
    ids: Vec<Uuid>,
    /// The store's sequence number of each vector.
    seqs: Vec<i64>,
    data: Vec<f32>,
    dim: usize,
}

/// The nearest-neighbour search over scopes of unit vectors: an exact scan
/// of the scope, which never misses a candidate above the threshold.
///
/// The store is the system of record ([`Index::insert`] is fed from its
/// rows, in sequence order, by whoever holds the index); the index only
/// says which jobs *may* answer, and the caller checks each candidate
/// against the store before using it.
#[derive(Debug, Default)]
pub struct Index {
    scopes: HashMap<Vec<u8>, ScopeVectors>,
}

impl Index {
    /// Adds a unit vector. A vector whose length differs from the scope's
    /// (the embeddings model changed) replaces the scope's vectors: the
    /// two cannot be compared.
    pub fn insert(&mut self, scope: &[u8], id: Uuid, seq: i64, v: Vec<f32>) {
        let s = self.scopes.entry(scope.to_vec()).or_default();
        if s.dim != v.len() {
            *s = ScopeVectors { dim: v.len(), ..ScopeVectors::default() };
        }
        s.ids.push(id);
        s.seqs.push(seq);
        s.data.extend_from_slice(&v);
    }

    /// The highest sequence number held for `scope`: the caller loads
    /// rows after it.
    #[must_use]
    pub fn last_seq(&self, scope: &[u8]) -> i64 {
        self.scopes.get(scope).and_then(|s| s.seqs.last().copied()).unwrap_or(0)
    }

    /// Drops the vectors of `scope` with a sequence number below `min_seq`
    /// (too old to answer: their jobs finished before the TTL's start).
    pub fn evict_before(&mut self, scope: &[u8], min_seq: i64) {
        let Some(s) = self.scopes.get_mut(scope) else { return };
        let keep = s.seqs.partition_point(|&q| q < min_seq);
        if keep == 0 {
            return;
        }
        s.ids.drain(..keep);
        s.seqs.drain(..keep);
        s.data.drain(..keep * s.dim);
        if s.ids.is_empty() {
            self.scopes.remove(scope);
        }
    }

    /// The length of the vectors held for `scope`, if it holds any.
    #[must_use]
    pub fn dim(&self, scope: &[u8]) -> Option<usize> {
        self.scopes.get(scope).filter(|s| !s.ids.is_empty()).map(|s| s.dim)
    }

    /// The length of the vectors of some scope: what the embeddings model
    /// answers, when `scope` holds none yet.
    #[must_use]
    pub fn any_dim(&self) -> Option<usize> {
        self.scopes.values().find(|s| !s.ids.is_empty()).map(|s| s.dim)
    }

    /// Vectors held, over every scope.
    #[must_use]
    pub fn len(&self) -> usize {
        self.scopes.values().map(|s| s.ids.len()).sum()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vectors of `scope` whose similarity to the unit vector `q` is at
    /// least `threshold`, most similar first, at most `limit`.
    #[must_use]
    pub fn search(&self, scope: &[u8], q: &[f32], threshold: f32, limit: usize) -> Vec<(Uuid, f32)> {
        let Some(s) = self.scopes.get(scope) else { return Vec::new() };
        if s.dim != q.len() || s.dim == 0 {
            return Vec::new();
        }
        let mut found: Vec<(Uuid, f32)> = s
            .data
            .chunks_exact(s.dim)
            .zip(&s.ids)
            .filter_map(|(v, id)| {
                let sim = dot(v, q);
                (sim >= threshold).then_some((*id, sim))
            })
            .collect();
        found.sort_by(|a, b| b.1.total_cmp(&a.1));
        found.truncate(limit);
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_scope_is_everything_but_the_prompt() {
        let f = PromptField::default();
        let t = Uuid::now_v7();
        let base = json!({"prompt": "a cat", "width": 512, "style": "photo"});
        let (s, p) = scope(t, "flux-dev", &base, &f).unwrap();
        assert_eq!(p, "a cat");
        let reworded = json!({"style": "photo", "width": 512, "prompt": "one cat"});
        assert_eq!(scope(t, "flux-dev", &reworded, &f).unwrap().0, s, "key order and the prompt do not matter");
        for other in [
            json!({"prompt": "a cat", "width": 1024, "style": "photo"}),
            json!({"prompt": "a cat", "width": 512, "style": "oil"}),
            json!({"prompt": "a cat", "width": 512}),
            json!({"prompt": "a cat", "width": 512, "style": "photo", "seed": 1}),
        ] {
            assert_ne!(scope(t, "flux-dev", &other, &f).unwrap().0, s, "{other}");
        }
        assert_ne!(scope(t, "flux-pro", &base, &f).unwrap().0, s, "another model");
        assert_ne!(scope(Uuid::now_v7(), "flux-dev", &base, &f).unwrap().0, s, "another tenant");
    }

    #[test]
    fn an_input_without_a_prompt_string_has_no_scope() {
        let f = PromptField::default();
        for input in [json!({"width": 1}), json!({"prompt": 3}), json!({"prompt": "  "}), json!({"prompt": null})] {
            assert!(scope(Uuid::nil(), "m", &input, &f).is_none(), "{input}");
        }
        let nested = PromptField::parse("/messages/0/content").unwrap();
        let input = json!({"messages": [{"role": "user", "content": "hello"}]});
        assert_eq!(scope(Uuid::nil(), "m", &input, &nested).unwrap().1, "hello");
        assert!(PromptField::parse("prompt").is_err() && PromptField::parse("").is_err() && PromptField::parse("/").is_err());
    }

    #[test]
    fn vectors_round_trip_and_bad_ones_are_refused() {
        let v = normalize(vec![3.0, 4.0]).unwrap();
        assert_eq!(v, vec![0.6, 0.8]);
        assert_eq!(decode(&encode(&v)).unwrap(), v);
        assert!(decode(&[1, 2, 3]).is_none());
        assert!(normalize(vec![]).is_none() && normalize(vec![0.0, 0.0]).is_none() && normalize(vec![f32::NAN, 1.0]).is_none());
        assert!((cosine(&[1.0, 0.0], &[1.0, 1.0]) - std::f32::consts::FRAC_1_SQRT_2).abs() < 1e-6);
        assert_eq!(cosine(&[1.0], &[1.0, 0.0]), 0.0);
    }

    #[test]
    fn the_eight_lane_dot_product_is_the_dot_product() {
        for n in [0, 1, 7, 8, 9, 256, 257] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
    }

    #[test]
    fn the_index_finds_what_is_above_the_threshold_in_the_scope_only() {
        let mut index = Index::default();
        let (a, b, c) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        index.insert(b"s1", a, 1, normalize(vec![1.0, 0.0, 0.0]).unwrap());
        index.insert(b"s1", b, 2, normalize(vec![1.0, 0.1, 0.0]).unwrap());
        index.insert(b"s2", c, 3, normalize(vec![1.0, 0.0, 0.0]).unwrap());
        let q = normalize(vec![1.0, 0.05, 0.0]).unwrap();
        let found = index.search(b"s1", &q, 0.95, 10);
        assert_eq!(found.iter().map(|f| f.0).collect::<Vec<_>>().len(), 2);
        assert!(found[0].1 >= found[1].1);
        assert_eq!(index.search(b"s1", &q, 0.95, 1).len(), 1);
        assert!(index.search(b"s3", &q, 0.5, 10).is_empty());
        assert!(index.search(b"s1", &normalize(vec![0.0, 0.0, 1.0]).unwrap(), 0.95, 10).is_empty());
        assert_eq!(index.last_seq(b"s1"), 2);
        assert_eq!((index.dim(b"s1"), index.dim(b"s3")), (Some(3), None));
        index.evict_before(b"s1", 2);
        assert_eq!(index.search(b"s1", &q, 0.5, 10).iter().map(|f| f.0).collect::<Vec<_>>(), vec![b]);
        index.evict_before(b"s1", 10);
        assert_eq!(index.len(), 1);
        // Another dimension replaces the scope's vectors.
        index.insert(b"s2", a, 4, normalize(vec![1.0, 0.0]).unwrap());
        assert_eq!(index.len(), 1);
    }
}
