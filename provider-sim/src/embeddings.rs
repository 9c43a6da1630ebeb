//! `POST /v1/embeddings`: an OpenAI-compatible embeddings endpoint with
//! vectors that a test can predict.
//!
//! offpeak's semantic cache answers a job from an earlier job whose prompt
//! is a rewording of this one (cosine similarity of their embeddings at
//! least 0.95). In production the embeddings come from any OpenAI-compatible
//! endpoint; in tests, the demo and the benchmark they come from here. A
//! real model's vectors cannot be predicted, so the simulator's are a small,
//! documented function of the text, [`embed`], designed so that **rewordings
//! are close and different requests are not**.
//!
//! # The contract (OpenAI's `POST /v1/embeddings`)
//!
//! `Authorization: Bearer <key>` is checked as for `/v1/batch` (any
//! non-empty key, or exactly [`SimConfig::api_key`] when set). The body:
//!
//! ```json
//! {"model": "text-embedding-3-small", "input": "a lighthouse at dawn",
//!  "encoding_format": "float", "dimensions": 256, "user": "user-1"}
//! ```
//!
//! - `model`: required, a non-empty string; any name is accepted, and it
//!   seeds the vectors (two models embed the same text differently).
//! - `input`: required, a non-empty string or an array of 1 to
//!   [`MAX_EMBEDDING_INPUTS`] (2048, OpenAI's cap) non-empty strings. OpenAI
//!   also takes token arrays (`[1212, 318]` or `[[1212, 318], ...]`); the
//!   simulator has no tokenizer and answers those 400.
//! - `encoding_format`: `"float"` (default) or `"base64"`: each embedding is
//!   then the standard base64 (with padding) of its floats as little-endian
//!   `f32` bytes, as OpenAI sends it.
//! - `dimensions`: the vectors' length, `1..=`[`MAX_EMBEDDING_DIMENSIONS`];
//!   default [`SimConfig::embedding_dimensions`] (256). Unlike OpenAI's
//!   shortened embeddings, a vector of 64 is not a prefix of the one of 256
//!   for the same text: each length hashes on its own.
//! - `user`: optional string, ignored. No other field is accepted (OpenAI's
//!   schema has `additionalProperties: false`); `null` counts as absent.
//!
//! No per-input token limit is enforced.
//!
//! | status | body |
//! |---|---|
//! | 200 | `{"object": "list", "data": [{"object": "embedding", "index": i, "embedding": [f32, ...] or "base64"}, ...], "model": <model>, "usage": {"prompt_tokens": n, "total_tokens": n}}`, `data` in input order |
//! | 400 | `invalid_request_error`: body not JSON or not an object, a field missing, of the wrong type or out of range, an empty string or array, more than 2048 inputs, token arrays, an unknown field |
//! | 401 | `invalid_request_error`: missing key (`code: null`) or wrong key (`code: "invalid_api_key"`) |
//! | 429 | `requests`, `code: "rate_limit_exceeded"`, header `Retry-After: 1` |
//! | 503 | `server_error` |
//!
//! Every error body has OpenAI's shape,
//! `{"error": {"message": string, "type": string, "param": string|null, "code": string|null}}`;
//! `param` names the offending field of a 400. `usage` counts one token per
//! word (see the rules below), at least one per input: a stand-in, not
//! OpenAI's tokenizer.
//!
//! # The embedding, exactly
//!
//! [`embed`]`(model, text, dimensions)`:
//!
//! 1. **Words.** The text is lowercased (Unicode) and split at every
//!    character that is neither alphanumeric nor an apostrophe (`'` or `’`).
//!    Apostrophes at a word's ends are dropped; a word ending in `n't` becomes
//!    its stem and `not` (`don't` → `do not`; `can't`, `won't`, `shan't` →
//!    `can`, `will`, `shall` + `not`); a trailing `'s` is dropped (`cat's` →
//!    `cat`); other apostrophes are removed (`o'clock` → `oclock`).
//! 2. **Negations** (`no`, `not`, `without`, `never`, `none`, `nothing`,
//!    `non`, `nor`, `neither`, `cannot`) are never stopwords: each adds 2.0
//!    to the feature `NEG`, and the next content word becomes the feature
//!    `not_<word>` instead of `<word>` (`without apples` → `NEG`,
//!    `not_apple`). Stopwords in between do not end the negation's reach.
//! 3. **Stopwords** (the list in [`STOPWORDS`]: articles, prepositions,
//!    auxiliaries, pronouns, `showing`/`depicting`/`featuring`, ...) are
//!    kept, not dropped: each distinct stopword is the feature
//!    `stop:<word>` with weight 0.25, however often it occurs. A rewording
//!    that changes stopwords scores about 0.99, not exactly 1.0. (Content
//!    features never contain `:`, so no stopword can collide with one.)
//! 4. **Content words** (all the other words) are canonicalised: a word in
//!    the synonym table ([`SYNONYMS`]) becomes its canonical word; otherwise
//!    it is stemmed and looked up again. Stemming, for words longer than 3
//!    letters: `-sses` → `-ss`, `-xes`/`-ches`/`-shes` → `-x`/`-ch`/`-sh`,
//!    `-ies` → `-y` (words longer than 4 letters), `-ie` → `-y` (so that
//!    `movie` and `movies` meet at `movy`), else one trailing `s` is dropped
//!    unless the word ends in `ss`, `us` or `is` (`apples` → `apple`;
//!    `glass`, `cactus`, `iris` stay). Each occurrence adds 1.0 to its
//!    feature.
//! 5. **The word set.** When there is at least one content word, the feature
//!    `SET:<the content features, sorted, deduplicated, joined by a space>`
//!    gets weight 3.0. Two texts share it only when they have the same
//!    content words (after rules 1, 2 and 4), so a changed, added or negated
//!    word loses it on top of its own feature. That keeps a long prompt with
//!    one word changed well below 0.95: about `(n-1)/(n+9)` for `n` content
//!    words, where a plain bag of words would give `(n-1)/n`, above 0.95
//!    from 20 words on.
//! 6. **Hashing.** Each feature `f` of weight `w` adds `±w/2` to four
//!    buckets: with `d = SHA-256(model ‖ 0x00 ‖ f)`, for `j` in `0..4`,
//!    `v = d[8j..8j+8]` read as a little-endian `u64`, the bucket is
//!    `(v >> 1) mod dimensions` and the sign `+` when `v` is even. Features
//!    are added in sorted order (so the sums are bit-for-bit reproducible),
//!    then the vector is L2-normalised and returned as `f32`. Four
//!    half-weight buckets rather than one full one: the same similarities
//!    on average, but two colliding features move a score by a quarter as
//!    much, so that no model name is unlucky.
//! 7. **No features** (no words at all, say `"!!!"`), or features that
//!    cancel out in their buckets: the vector is that of the single feature
//!    `RAW:<text as given>` (should its four buckets cancel too, a 1 in its
//!    first bucket), still a unit vector. `dimensions == 0` gives an empty
//!    vector.
//!
//! Measured with [`cosine`] (the module's `similarity_report` test prints and checks
//! these): for the model `text-embedding-3-small` at 256 dimensions, and the
//! range over 500 model names at 256 dimensions. The module's tests check
//! the thresholds for 100 model names at 256 and at 1536 dimensions; fewer
//! dimensions mean more collisions, and below about 128 unrelated prompts
//! can score above 0.5.
//!
//! | pair | what differs | cosine | over 500 models |
//! |---|---|---|---|
//! | `a lighthouse at dawn` / `A lighthouse at dawn.` | case, punctuation | 1.0 | 1.0 (identical vectors) |
//! | `a photo of a lighthouse at dawn` / `lighthouse at sunrise, photograph` | synonyms, order, stopwords | 0.995 | 0.990 – 0.997 |
//! | `a red car parked on a quiet street at night` / `a blue car parked on a quiet street at night` | one word | 0.22 | 0.03 – 0.51 |
//! | `a cat wearing a hat` / `a cat not wearing a hat` | negation | 0.15 | -0.17 – 0.40 |
//! | `a bowl of fruit with apples` / `a bowl of fruit without apples` | negation | 0.14 | -0.09 – 0.37 |
//! | `a lighthouse at dawn` / `a bowl of fruit with apples` | unrelated | -0.001 | -0.23 – 0.26 |
//! | a prompt of 90 content words / the same with one word changed | one word | | at most 0.93 (0.95 at 120 words) |
//!
//! In general: texts with the same content words (after synonyms and
//! stemming), in any order, differing only in case, punctuation,
//! apostrophes and stopwords, score at least 0.95 (about 0.99); texts whose
//! content words differ score below 0.95 as long as they have fewer than
//! about 90 content words each. This is a bag of words, not a language
//! model: `a dog chasing a cat` and `a cat chasing a dog` are rewordings to
//! it, and synonyms missing from the table are different words.
//!
//! # Faults
//!
//! Each call sleeps [`SimConfig::embeddings_latency`], then, with
//! [`SimConfig::embeddings_hang`], [`SimConfig::slow`] more; then it is
//! authenticated and parsed, then its fate is drawn: with probability
//! `embeddings_error_rate` a 503, else with `embeddings_rate_limit_rate` a
//! 429, else with `embeddings_garbage_rate` a 200 whose body breaks the
//! contract in one of eight ways (truncated JSON, one item too few, one too
//! many, an embedding that is not numbers or not base64, a first vector of
//! half the length, indexes shifted by one, an HTML page, an empty body),
//! else success. A strict client catches every kind by checking that the
//! body parses, that `data` has one item per input with `index` equal to its
//! position, and that every vector decodes to the length it asked for (or,
//! without `dimensions`, that all have the same length: with a single input
//! the half-length vector is only caught by a client that knows the length
//! to expect).

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use super::{
    check_bearer, digest_of, json_bytes, lock, AuthFailure, SimConfig, Simulator, RETRY_AFTER_SECS,
};

/// Length of the vectors when neither the request nor the config says:
/// [`SimConfig::embedding_dimensions`]'s default.
pub const DEFAULT_EMBEDDING_DIMENSIONS: usize = 256;

/// The largest `dimensions` a request may ask for (text-embedding-3-large's
/// length).
pub const MAX_EMBEDDING_DIMENSIONS: usize = 3072;

/// The most inputs one request may carry, as at OpenAI.
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Weight of each distinct stopword (rule 3).
const STOPWORD_WEIGHT: f64 = 0.25;

/// Weight of each negation word, on the feature `NEG` (rule 2). Heavy, so
/// that a negated prompt lands far from the plain one even when the negated
/// word is one of many.
const NEGATION_WEIGHT: f64 = 2.0;

/// Weight of the word-set feature (rule 5). Its square, 9, is what keeps a
/// one-word change below 0.95 up to about 90 content words:
/// `(n-1)/(n+9) < 0.95` while `n < 191`, less a margin for hash collisions
/// (measured: at most 0.93 at 90 words, 0.95 at 120, 256 dimensions).
const WORD_SET_WEIGHT: f64 = 3.0;

/// The feature every negation word adds to (rule 2). Upper case: no word can
/// be it, since words are lowercased.
const NEG: &str = "NEG";

/// Words that never carry a prompt's meaning on their own (rule 3); the
/// negations of rule 2 are not among them.
#[rustfmt::skip]
pub const STOPWORDS: &[&str] = &[
    "a", "am", "an", "and", "are", "as", "at", "be", "been", "being", "but", "by", "can",
    "could", "depicting", "depicts", "did", "do", "does", "featuring", "for", "from", "had",
    "has", "have", "having", "here", "i", "in", "into", "is", "it", "its", "just", "may", "me",
    "might", "must", "my", "of", "on", "onto", "or", "our", "please", "shall", "should",
    "showing", "shows", "some", "that", "the", "their", "there", "these", "this", "those", "to",
    "very", "was", "we", "were", "which", "while", "who", "will", "with", "would", "you", "your",
];

/// Negation words (rule 2); `n't` contractions become `not` (rule 1).
pub const NEGATIONS: &[&str] = &[
    "cannot", "neither", "never", "no", "non", "none", "nor", "not", "nothing", "without",
];

/// The synonym table (rule 4): `(canonical, words that become it)`. Small on
/// purpose, for the prompts tests and the demo use; irregular plurals are
/// here too, since the stemmer only knows regular ones.
#[rustfmt::skip]
pub const SYNONYMS: &[(&str, &[&str])] = &[
    ("photo", &["photo", "photograph", "picture", "image", "shot", "pic", "snapshot"]),
    ("dawn", &["dawn", "sunrise", "daybreak"]),
    ("dusk", &["dusk", "sunset", "sundown"]),
    ("large", &["large", "big", "huge", "giant", "enormous"]),
    ("small", &["small", "little", "tiny"]),
    ("car", &["car", "automobile", "auto"]),
    ("cat", &["cat", "kitten", "kitty"]),
    ("dog", &["dog", "puppy", "pup"]),
    ("sea", &["sea", "ocean"]),
    ("forest", &["forest", "woods", "woodland"]),
    ("house", &["house", "home"]),
    ("happy", &["happy", "joyful", "cheerful"]),
    ("fast", &["fast", "quick", "rapid"]),
    ("child", &["child", "children", "kid"]),
    ("person", &["person", "people"]),
    ("man", &["man", "men"]),
    ("woman", &["woman", "women"]),
    ("mouse", &["mouse", "mice"]),
    ("leaf", &["leaf", "leaves"]),
    ("wolf", &["wolf", "wolves"]),
    ("foot", &["foot", "feet"]),
    ("tooth", &["tooth", "teeth"]),
];

/// The embedding of `text` by `model`, `dimensions` long, as
/// `POST /v1/embeddings` returns it: the rules in the module docs. Unit
/// length unless `dimensions` is 0 (then empty).
///
/// ```
/// use offpeak_provider_sim::{cosine, embed};
///
/// let a = embed("text-embedding-3-small", "a photo of a lighthouse at dawn", 256);
/// let b = embed("text-embedding-3-small", "lighthouse at sunrise, photograph", 256);
/// assert!(cosine(&a, &b) >= 0.95);
/// ```
pub fn embed(model: &str, text: &str, dimensions: usize) -> Vec<f32> {
    if dimensions == 0 {
        return Vec::new();
    }
    let mut vector = vec![0f64; dimensions];
    // A BTreeMap: the additions happen in the features' sorted order, so the
    // same text always sums to the same bits.
    for (feature, weight) in features(text) {
        // Half the weight in each of four buckets: the feature's squared
        // norm is still weight².
        for (bucket, sign) in buckets(model, &feature, dimensions) {
            vector[bucket] += sign * weight / 2.0;
        }
    }
    if let Some(unit) = normalised(&vector) {
        return unit;
    }
    // Rule 7: no feature at all, or features cancelling out in their
    // buckets.
    let raw = buckets(model, &format!("RAW:{text}"), dimensions);
    vector.fill(0.0);
    for (bucket, sign) in raw {
        vector[bucket] += sign / 2.0;
    }
    normalised(&vector).unwrap_or_else(|| {
        // RAW's four buckets cancelled each other too (two pairs of opposite
        // signs, possible with very few dimensions): its first bucket alone.
        let mut unit = vec![0.0; dimensions];
        let (bucket, sign) = raw[0];
        unit[bucket] = sign as f32;
        unit
    })
}

/// `vector` scaled to unit length, as `f32`; `None` when it is (about) zero.
fn normalised(vector: &[f64]) -> Option<Vec<f32>> {
    let norm = vector.iter().map(|x| x * x).sum::<f64>().sqrt();
    // Every half weight is a multiple of 0.125, so a bucket that is not zero
    // holds at least that much: a norm far below it is zero up to rounding.
    (norm >= 1e-6).then(|| vector.iter().map(|x| (x / norm) as f32).collect())
}

/// Cosine similarity of two vectors, in `[-1, 1]`, computed in `f64`. 0.0
/// when their lengths differ or either is all zeros (or empty).
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    let (mut dot, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (f64::from(x), f64::from(y));
        dot += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa <= 0.0 || bb <= 0.0 {
        return 0.0;
    }
    (dot / (aa.sqrt() * bb.sqrt())) as f32
}

/// Rule 1: the words of `text`.
fn words(text: &str) -> Vec<String> {
    let text = text.to_lowercase().replace('\u{2019}', "'");
    let mut words = Vec::new();
    let mut push = |word: &str| {
        let word = word.replace('\'', "");
        if !word.is_empty() {
            words.push(word);
        }
    };
    for token in text.split(|c: char| !c.is_alphanumeric() && c != '\'') {
        let token = token.trim_matches('\'');
        if let Some(stem) = token.strip_suffix("n't") {
            push(match stem {
                "ca" => "can",
                "wo" => "will",
                "sha" => "shall",
                stem => stem,
            });
            push("not");
        } else {
            push(token.strip_suffix("'s").unwrap_or(token));
        }
    }
    words
}

/// Rules 2 to 5: feature → weight.
fn features(text: &str) -> BTreeMap<String, f64> {
    let mut weights: BTreeMap<String, f64> = BTreeMap::new();
    let mut content = BTreeSet::new();
    let mut negate = false;
    for word in words(text) {
        if NEGATIONS.contains(&word.as_str()) {
            *weights.entry(NEG.to_owned()).or_default() += NEGATION_WEIGHT;
            negate = true;
        } else if STOPWORDS.contains(&word.as_str()) {
            // Once per distinct stopword: summed, the "a"s and "of"s of a
            // long prompt would outweigh its content words.
            weights.insert(format!("stop:{word}"), STOPWORD_WEIGHT);
        } else {
            let mut feature = canonical(&word);
            if std::mem::take(&mut negate) {
                feature = format!("not_{feature}");
            }
            *weights.entry(feature.clone()).or_default() += 1.0;
            content.insert(feature);
        }
    }
    if !content.is_empty() {
        let set: Vec<String> = content.into_iter().collect();
        weights.insert(format!("SET:{}", set.join(" ")), WORD_SET_WEIGHT);
    }
    weights
}

/// Rule 4: synonym, else stem then synonym.
fn canonical(word: &str) -> String {
    if let Some(canonical) = synonym(word) {
        return canonical.to_owned();
    }
    let stem = stem(word);
    match synonym(&stem) {
        Some(canonical) => canonical.to_owned(),
        None => stem,
    }
}

fn synonym(word: &str) -> Option<&'static str> {
    SYNONYMS
        .iter()
        .find(|(_, words)| words.contains(&word))
        .map(|(canonical, _)| *canonical)
}

/// Rule 4's light stemmer: regular English plurals, nothing else.
fn stem(word: &str) -> String {
    let letters = word.chars().count();
    if letters <= 3 {
        return word.to_owned();
    }
    if let Some(stem) = word.strip_suffix("sses") {
        return format!("{stem}ss");
    }
    if ["xes", "ches", "shes"]
        .iter()
        .any(|end| word.ends_with(end))
    {
        return word.strip_suffix("es").unwrap_or(word).to_owned();
    }
    if letters > 4 {
        if let Some(stem) = word.strip_suffix("ies") {
            return format!("{stem}y");
        }
    }
    if let Some(stem) = word.strip_suffix("ie") {
        return format!("{stem}y");
    }
    if ["ss", "us", "is"].iter().any(|end| word.ends_with(end)) {
        return word.to_owned();
    }
    word.strip_suffix('s').unwrap_or(word).to_owned()
}

/// How many buckets each feature is spread over (rule 6).
const BUCKETS_PER_FEATURE: usize = 4;

/// Rule 6: a feature's buckets and signs.
fn buckets(model: &str, feature: &str, dimensions: usize) -> [(usize, f64); BUCKETS_PER_FEATURE] {
    let digest = digest_of(model, feature.as_bytes());
    let mut buckets = [(0, 0.0); BUCKETS_PER_FEATURE];
    for (slot, bytes) in buckets.iter_mut().zip(digest.chunks_exact(8)) {
        // Little-endian.
        let v = bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b));
        // The remainder is below `dimensions`, a usize: the cast is lossless.
        let bucket = ((v >> 1) % dimensions as u64) as usize;
        *slot = (bucket, if v % 2 == 0 { 1.0 } else { -1.0 });
    }
    buckets
}

/// `usage`'s tokens for one input: its words, at least one.
fn tokens(text: &str) -> u64 {
    words(text).len().max(1) as u64
}

/// Standard base64 (RFC 4648 §4, with `=` padding): what OpenAI's
/// `encoding_format: "base64"` carries.
fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The floats of `vector` as little-endian `f32` bytes, base64-encoded.
fn base64_floats(vector: &[f32]) -> String {
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64(&bytes)
}

/// A request that passed validation.
struct EmbeddingRequest {
    model: String,
    inputs: Vec<String>,
    base64: bool,
    dimensions: Option<usize>,
}

impl EmbeddingRequest {
    fn parse(body: &[u8]) -> Result<Self, OpenAiError> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| OpenAiError::invalid(None, format!("the body is not valid JSON: {e}")))?;
        let Value::Object(mut body) = value else {
            return Err(OpenAiError::invalid(None, "the body must be a JSON object"));
        };
        let model = match body.remove("model") {
            Some(Value::String(model)) if !model.is_empty() => model,
            None | Some(Value::Null) => {
                return Err(OpenAiError::invalid(Some("model"), "'model' is required"))
            }
            Some(_) => {
                return Err(OpenAiError::invalid(
                    Some("model"),
                    "'model' must be a non-empty string",
                ))
            }
        };
        let inputs = match body.remove("input") {
            Some(Value::String(input)) => vec![input],
            Some(Value::Array(items)) => Self::inputs(items)?,
            None | Some(Value::Null) => {
                return Err(OpenAiError::invalid(Some("input"), "'input' is required"))
            }
            Some(_) => {
                return Err(OpenAiError::invalid(
                    Some("input"),
                    "'input' must be a string or an array of strings",
                ))
            }
        };
        if let Some(i) = inputs.iter().position(String::is_empty) {
            return Err(OpenAiError::invalid(
                Some("input"),
                format!("input {i} is an empty string; there is nothing to embed"),
            ));
        }
        let base64 = match body.remove("encoding_format") {
            None | Some(Value::Null) => false,
            Some(Value::String(format)) if format == "float" => false,
            Some(Value::String(format)) if format == "base64" => true,
            Some(other) => {
                return Err(OpenAiError::invalid(
                    Some("encoding_format"),
                    format!("'encoding_format' must be \"float\" or \"base64\", not {other}"),
                ))
            }
        };
        let dimensions = match body.remove("dimensions") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64() {
                // At most MAX_EMBEDDING_DIMENSIONS, so the cast is lossless.
                Some(d) if (1..=MAX_EMBEDDING_DIMENSIONS as u64).contains(&d) => Some(d as usize),
                _ => {
                    return Err(OpenAiError::invalid(
                        Some("dimensions"),
                        format!(
                            "'dimensions' must be an integer from 1 to \
                             {MAX_EMBEDDING_DIMENSIONS}, not {value}"
                        ),
                    ))
                }
            },
        };
        match body.remove("user") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => {
                return Err(OpenAiError::invalid(
                    Some("user"),
                    "'user' must be a string",
                ))
            }
        }
        if let Some(field) = body.keys().next() {
            return Err(OpenAiError::invalid(
                Some(field),
                format!("unrecognized request argument supplied: {field}"),
            ));
        }
        Ok(Self {
            model,
            inputs,
            base64,
            dimensions,
        })
    }

    /// `input` as an array: 1 to 2048 strings.
    fn inputs(items: Vec<Value>) -> Result<Vec<String>, OpenAiError> {
        if items.is_empty() {
            return Err(OpenAiError::invalid(
                Some("input"),
                "'input' must not be empty",
            ));
        }
        if items.len() > MAX_EMBEDDING_INPUTS {
            return Err(OpenAiError::invalid(
                Some("input"),
                format!(
                    "'input' has {} items; at most {MAX_EMBEDDING_INPUTS} are allowed",
                    items.len()
                ),
            ));
        }
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(text) => Ok(text),
                Value::Number(_) | Value::Array(_) => Err(OpenAiError::invalid(
                    Some("input"),
                    "token arrays are not supported by the simulator; send text",
                )),
                _ => Err(OpenAiError::invalid(
                    Some("input"),
                    format!("input {i} must be a string"),
                )),
            })
            .collect()
    }
}

/// An error in OpenAI's shape:
/// `{"error": {"message", "type", "param", "code"}}` with its status.
pub(crate) struct OpenAiError {
    pub(crate) status: StatusCode,
    pub(crate) error: ErrorFields,
}

/// An error's body. Structs rather than `json!`, which would sort the keys:
/// OpenAI's field order.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a ErrorFields,
}

#[derive(Serialize)]
pub(crate) struct ErrorFields {
    pub(crate) message: String,
    #[serde(rename = "type")]
    pub(crate) kind: &'static str,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl OpenAiError {
    pub(crate) fn new(
        status: StatusCode,
        kind: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error: ErrorFields {
                message: message.into(),
                kind,
                param: None,
                code,
            },
        }
    }

    /// A 400 `invalid_request_error` about `param`.
    pub(crate) fn invalid(param: Option<&str>, message: impl Into<String>) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        );
        e.error.param = param.map(str::to_owned);
        e
    }

    pub(crate) fn unauthorized(failure: AuthFailure) -> Self {
        // OpenAI's codes: none for a missing key, `invalid_api_key` for a
        // wrong one. The key itself is not echoed.
        let (code, message) = match failure {
            AuthFailure::Missing => (
                None,
                "no API key provided: send 'Authorization: Bearer <key>'",
            ),
            AuthFailure::Wrong => (Some("invalid_api_key"), "incorrect API key provided"),
        };
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            code,
            message,
        )
    }
}

impl IntoResponse for OpenAiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: &self.error };
        (self.status, Json(body)).into_response()
    }
}

/// The body of a 200, in OpenAI's field order.
#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    data: Vec<EmbeddingObject>,
    model: &'a str,
    usage: Usage,
}

#[derive(Serialize)]
struct EmbeddingObject {
    object: &'static str,
    index: usize,
    embedding: Encoded,
}

/// `Vec<f32>` serializes each float in its shortest form that reads back as
/// the same `f32` (`0.1`, not `0.10000000149011612`).
#[derive(Serialize)]
#[serde(untagged)]
enum Encoded {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    total_tokens: u64,
}

/// The JSON of a 200 carrying `vectors`, the first with index `first_index`
/// (0 but for the `WrongIndexes` garbage).
fn render(
    request: &EmbeddingRequest,
    vectors: Vec<Vec<f32>>,
    first_index: usize,
) -> Result<Vec<u8>, serde_json::Error> {
    let tokens = request.inputs.iter().map(|text| tokens(text)).sum();
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(i, vector)| EmbeddingObject {
            object: "embedding",
            index: first_index + i,
            embedding: if request.base64 {
                Encoded::Base64(base64_floats(&vector))
            } else {
                Encoded::Floats(vector)
            },
        })
        .collect();
    serde_json::to_vec(&EmbeddingList {
        object: "list",
        data,
        model: &request.model,
        usage: Usage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    })
}

enum Fate {
    Unavailable,
    RateLimited,
    Garbage(Garbage),
    Success,
}

/// The ways an embeddings 200 can break the contract (see the module docs).
#[derive(Debug, Clone, Copy)]
enum Garbage {
    /// A valid answer cut in the middle.
    Truncated,
    /// One item fewer than inputs (none for one input).
    TooFewItems,
    /// One item more than inputs.
    TooManyItems,
    /// The first embedding as strings (`["0.12", ...]`), or not base64.
    NotNumbers,
    /// The first vector half as long as the others.
    ShortVector,
    /// Indexes 1..=n instead of 0..n.
    WrongIndexes,
    /// An HTML error page from some proxy, with a 200.
    HtmlPage,
    /// Nothing at all.
    EmptyBody,
}

impl Garbage {
    const ALL: [Garbage; 8] = [
        Garbage::Truncated,
        Garbage::TooFewItems,
        Garbage::TooManyItems,
        Garbage::NotNumbers,
        Garbage::ShortVector,
        Garbage::WrongIndexes,
        Garbage::HtmlPage,
        Garbage::EmptyBody,
    ];
}

fn garbage(
    kind: Garbage,
    request: &EmbeddingRequest,
    mut vectors: Vec<Vec<f32>>,
) -> Result<Response, serde_json::Error> {
    let body = match kind {
        Garbage::Truncated => {
            let mut full = render(request, vectors, 0)?;
            // Bytes, not chars: a cut through a multi-byte character of the
            // model's name is as broken as any other.
            full.truncate(full.len() / 2);
            full
        }
        Garbage::TooFewItems => {
            vectors.pop();
            render(request, vectors, 0)?
        }
        Garbage::TooManyItems => {
            if let Some(last) = vectors.last().cloned() {
                vectors.push(last);
            }
            render(request, vectors, 0)?
        }
        Garbage::NotNumbers => {
            let mut value: Value = serde_json::from_slice(&render(request, vectors, 0)?)?;
            let first = &mut value["data"][0]["embedding"];
            *first = match first {
                Value::Array(numbers) => {
                    Value::Array(numbers.iter().map(|n| json!(n.to_string())).collect())
                }
                _ => json!("not base64: %%%"),
            };
            serde_json::to_vec(&value)?
        }
        Garbage::ShortVector => {
            if let Some(first) = vectors.first_mut() {
                first.truncate(first.len() / 2);
            }
            render(request, vectors, 0)?
        }
        Garbage::WrongIndexes => render(request, vectors, 1)?,
        Garbage::HtmlPage => {
            return Ok((
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response());
        }
        Garbage::EmptyBody => Vec::new(),
    };
    Ok(json_bytes(StatusCode::OK, Bytes::from(body)))
}

impl Simulator {
    /// Everything after the latency and the hang: authenticate, parse,
    /// draw, answer. `Ok(texts embedded)` for a well-formed 200, else
    /// `Err(what happened)` for the log.
    fn handle_embeddings(
        &self,
        headers: &HeaderMap,
        body: &[u8],
    ) -> (Response, Result<u64, String>) {
        // A fresh config: it may have changed while the call slept.
        let config = self.config();
        if let Err(failure) = check_bearer(&config, headers) {
            return (
                OpenAiError::unauthorized(failure).into_response(),
                Err("unauthorized".into()),
            );
        }
        let request = match EmbeddingRequest::parse(body) {
            Ok(request) => request,
            Err(e) => {
                let outcome = Err(format!("bad_request: {}", e.error.message));
                return (e.into_response(), outcome);
            }
        };
        let dimensions = request.dimensions.unwrap_or_else(|| {
            config
                .embedding_dimensions
                .clamp(1, MAX_EMBEDDING_DIMENSIONS)
        });
        let fate = self.draw_embeddings(&config);
        match fate {
            Fate::Unavailable => {
                let e = OpenAiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "server_error",
                    None,
                    "the (simulated) server is overloaded; retry later",
                );
                return (e.into_response(), Err("503".into()));
            }
            Fate::RateLimited => {
                let e = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "requests",
                    Some("rate_limit_exceeded"),
                    "(simulated) rate limit reached for requests",
                );
                let mut response = e.into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                return (response, Err("429".into()));
            }
            Fate::Garbage(_) | Fate::Success => {}
        }

        let vectors: Vec<Vec<f32>> = request
            .inputs
            .iter()
            .map(|text| embed(&request.model, text, dimensions))
            .collect();
        let answer = match fate {
            Fate::Garbage(kind) => {
                garbage(kind, &request, vectors).map(|r| (r, Err(format!("garbage:{kind:?}"))))
            }
            _ => render(&request, vectors, 0).map(|body| {
                let texts = request.inputs.len() as u64;
                (json_bytes(StatusCode::OK, Bytes::from(body)), Ok(texts))
            }),
        };
        // Serializing floats, strings and integers does not fail; should it
        // ever, the client gets a 500 in OpenAI's shape rather than a panic.
        answer.unwrap_or_else(|e| {
            let e = OpenAiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                None,
                format!("the simulator could not serialize its answer: {e}"),
            );
            (e.into_response(), Err("500".into()))
        })
    }

    /// Draws an embeddings call's fate from the embeddings generator.
    fn draw_embeddings(&self, config: &SimConfig) -> Fate {
        let mut rng = lock(&self.inner.embeddings_rng);
        match crate::draw_fault(&mut rng, config.embeddings_error_rate, config.embeddings_rate_limit_rate, config.embeddings_garbage_rate) {
            Some(crate::Fault::ServerError) => Fate::Unavailable,
            Some(crate::Fault::RateLimited) => Fate::RateLimited,
            Some(crate::Fault::Garbage) => Fate::Garbage(Garbage::ALL[rng.gen_range(0..Garbage::ALL.len())]),
            None => Fate::Success,
        }
    }
}

/// `POST /v1/embeddings`.
pub(crate) async fn post_embeddings(
    State(sim): State<Simulator>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    sim.record(|l| l.embedding_calls += 1);
    let config = sim.config();
    if !config.embeddings_latency.is_zero() {
        tokio::time::sleep(config.embeddings_latency).await;
    }
    // If the client gives up during a sleep, this future is dropped with the
    // connection: the call counts in `embedding_calls` only.
    if config.embeddings_hang {
        tokio::time::sleep(config.slow).await;
    }
    let (response, outcome) = sim.handle_embeddings(&headers, &body);
    sim.record(|l| match &outcome {
        Ok(texts) => l.embedded_texts += texts,
        Err(_) => l.embedding_errors += 1,
    });
    tracing::debug!(
        status = response.status().as_u16(),
        outcome = ?outcome,
        "embeddings call"
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::{spawn, RunningSim, SimStats};

    const KEY: &str = "sim-test-key";
    const MODEL: &str = "text-embedding-3-small";

    /// Rewordings: the first pair must score at least the bound.
    const REWORDINGS: &[(&str, &str, f32)] = &[
        ("a lighthouse at dawn", "A lighthouse at dawn.", 0.99),
        (
            "a photo of a lighthouse at dawn",
            "lighthouse at sunrise, photograph",
            0.95,
        ),
        ("a cat wearing a hat", "the cat wearing hats", 0.95),
        (
            "kittens playing in the woods",
            "a kitten playing in a forest",
            0.95,
        ),
        (
            "a dog that isn't sleeping",
            "a dog that is not sleeping",
            0.95,
        ),
        (
            "the cat's big red hat",
            "a large red hat of the kitten",
            0.95,
        ),
    ];

    /// Different requests: below 0.95.
    const DIFFERENT: &[(&str, &str)] = &[
        (
            "a red car parked on a quiet street at night",
            "a blue car parked on a quiet street at night",
        ),
        ("a cat wearing a hat", "a cat not wearing a hat"),
        (
            "a bowl of fruit with apples",
            "a bowl of fruit without apples",
        ),
        ("a dog that is sleeping", "a dog that isn't sleeping"),
        (
            "a photo of a lighthouse at dawn",
            "a lovely photo of a lighthouse at dawn",
        ),
        ("a lighthouse at dawn", "a lighthouse at dusk"),
    ];

    /// Unrelated prompts: below 0.5.
    const UNRELATED: &[(&str, &str)] = &[
        ("a lighthouse at dawn", "a bowl of fruit with apples"),
        (
            "a watercolor painting of a fox in the snow",
            "a cyberpunk city street at night, neon lights",
        ),
        ("portrait of an old fisherman", "isometric pixel art castle"),
    ];

    fn similarity(model: &str, a: &str, b: &str, dimensions: usize) -> f32 {
        cosine(&embed(model, a, dimensions), &embed(model, b, dimensions))
    }

    #[test]
    fn rewordings_score_at_least_0_95() {
        for &(a, b, bound) in REWORDINGS {
            let score = similarity(MODEL, a, b, DEFAULT_EMBEDDING_DIMENSIONS);
            assert!(score >= bound, "{a:?} / {b:?}: {score} < {bound}");
        }
        // Stopwords count, a little: a rewording that changes them is close,
        // not equal.
        let score = similarity(MODEL, "a photo of a lighthouse", "photo lighthouse", 256);
        assert!((0.95..0.999).contains(&score), "{score}");
    }

    #[test]
    fn different_requests_score_below_0_95() {
        for &(a, b) in DIFFERENT {
            let score = similarity(MODEL, a, b, DEFAULT_EMBEDDING_DIMENSIONS);
            assert!(score < 0.95, "{a:?} / {b:?}: {score}");
        }
    }

    #[test]
    fn unrelated_prompts_score_below_0_5() {
        for &(a, b) in UNRELATED {
            let score = similarity(MODEL, a, b, DEFAULT_EMBEDDING_DIMENSIONS);
            assert!(score < 0.5, "{a:?} / {b:?}: {score}");
        }
    }

    /// The thresholds are not luck of one model name's hashes.
    #[test]
    fn thresholds_hold_for_many_models_and_both_dimensions() {
        for dimensions in [256, 1536] {
            for m in 0..100 {
                let model = format!("model-{m}");
                for &(a, b, bound) in REWORDINGS {
                    let score = similarity(&model, a, b, dimensions);
                    assert!(
                        score >= bound.min(0.95),
                        "{model}/{dimensions}: {a:?} / {b:?}: {score}"
                    );
                }
                for &(a, b) in DIFFERENT {
                    let score = similarity(&model, a, b, dimensions);
                    assert!(score < 0.95, "{model}/{dimensions}: {a:?} / {b:?}: {score}");
                }
                for &(a, b) in UNRELATED {
                    let score = similarity(&model, a, b, dimensions);
                    assert!(score < 0.5, "{model}/{dimensions}: {a:?} / {b:?}: {score}");
                }
            }
        }
    }

    /// The numbers of the module docs' table
    /// (`cargo test -p offpeak-provider-sim similarity_report -- --nocapture`
    /// prints them), checked over 500 model names at the dimensions the
    /// docs vouch for (256 and 1536): the two rewordings at or above 0.95,
    /// the three near misses below it, the unrelated pair below 0.5, and a
    /// one-word change below 0.95 up to 90 content words.
    #[test]
    fn similarity_report() {
        let pairs = [
            ("a lighthouse at dawn", "A lighthouse at dawn."),
            (
                "a photo of a lighthouse at dawn",
                "lighthouse at sunrise, photograph",
            ),
            (
                "a red car parked on a quiet street at night",
                "a blue car parked on a quiet street at night",
            ),
            ("a cat wearing a hat", "a cat not wearing a hat"),
            (
                "a bowl of fruit with apples",
                "a bowl of fruit without apples",
            ),
            ("a lighthouse at dawn", "a bowl of fruit with apples"),
        ];
        for dimensions in [64, 128, 256, 1536] {
            println!("{dimensions} dimensions: {MODEL}, then min..max over 500 models");
            for (i, (a, b)) in pairs.into_iter().enumerate() {
                let (mut min, mut max) = (f32::MAX, f32::MIN);
                for m in 0..500 {
                    let score = similarity(&format!("model-{m}"), a, b, dimensions);
                    (min, max) = (min.min(score), max.max(score));
                }
                let score = similarity(MODEL, a, b, dimensions);
                println!("  {score:.4}  {min:.4}..{max:.4}  {a:?} / {b:?}");
                if dimensions >= 256 {
                    match i {
                        0 | 1 => assert!(min >= 0.95, "a rewording at {dimensions}: {min} {a:?} / {b:?}"),
                        2..=4 => assert!(max < 0.95, "a near miss at {dimensions}: {max} {a:?} / {b:?}"),
                        _ => assert!(max < 0.5, "unrelated at {dimensions}: {max} {a:?} / {b:?}"),
                    }
                }
            }
        }
        let words: Vec<String> = (0..150).map(|i| format!("word{i}")).collect();
        for n in [20, 45, 90, 120, 150] {
            let (a, b) = long_pair(&words[..n]);
            let max = (0..500)
                .map(|m| similarity(&format!("model-{m}"), &a, &b, 256))
                .fold(f32::MIN, f32::max);
            println!("{n} content words, one changed: at most {max:.4} over 500 models at 256");
            if n <= 90 {
                assert!(max < 0.95, "{n} content words, one changed: {max}");
            }
        }
    }

    /// A prompt of `words` and the same with its middle word changed.
    fn long_pair(words: &[String]) -> (String, String) {
        let prompt = |words: &[String]| {
            format!(
                "a photo of the {}, in the style of a painting",
                words.join(", ")
            )
        };
        let mut changed = words.to_vec();
        changed[words.len() / 2] = "different".into();
        (prompt(words), prompt(&changed))
    }

    #[test]
    fn one_word_changed_in_a_long_prompt_stays_below_0_95() {
        let words: Vec<String> = (0..90).map(|i| format!("word{i}")).collect();
        let (a, b) = long_pair(&words);
        for m in 0..50 {
            let model = format!("model-{m}");
            let score = similarity(&model, &a, &b, DEFAULT_EMBEDDING_DIMENSIONS);
            assert!(score < 0.95, "{model}: {score}");
        }
    }

    #[test]
    fn same_text_same_vector_and_other_models_other_vectors() {
        let text = "a photo of a lighthouse at dawn";
        assert_eq!(embed(MODEL, text, 256), embed(MODEL, text, 256));
        assert_eq!(
            embed(MODEL, "a lighthouse at dawn", 256),
            embed(MODEL, "A lighthouse at dawn.", 256),
            "case and punctuation do not count"
        );
        let (a, b) = (embed("a", text, 256), embed("b", text, 256));
        assert_ne!(a, b);
        assert!(cosine(&a, &b) < 0.5, "{}", cosine(&a, &b));
    }

    #[test]
    fn vectors_are_unit_length_and_as_long_as_asked() {
        for dimensions in [1, 2, 7, 256, MAX_EMBEDDING_DIMENSIONS] {
            for text in [
                "a lighthouse at dawn",
                "the of a",
                "!!!",
                "",
                "非常に 美しい 灯台",
            ] {
                let vector = embed(MODEL, text, dimensions);
                assert_eq!(vector.len(), dimensions);
                let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
                assert!(
                    (norm - 1.0).abs() < 1e-5,
                    "{text:?}/{dimensions}: norm {norm}"
                );
            }
        }
        assert!(embed(MODEL, "a lighthouse", 0).is_empty());
        // Texts without words still differ by their raw text.
        assert_ne!(embed(MODEL, "!!!", 256), embed(MODEL, "???", 256));
    }

    #[test]
    fn words_split_apostrophes_and_contractions() {
        assert_eq!(
            words("Don't STOP: the cat's hat, o'clock; can't ‘quote’ won’t"),
            [
                "do", "not", "stop", "the", "cat", "hat", "oclock", "can", "not", "quote", "will",
                "not"
            ]
            .map(String::from)
        );
        let features = features("a bowl of fruit without the apples, no pears, a pie");
        assert_eq!(canonical("pie"), "pie", "3 letters: not stemmed");
        assert_eq!(features["NEG"], 2.0 * NEGATION_WEIGHT);
        assert!(features.contains_key("not_apple") && features.contains_key("not_pear"));
        assert!(!features.contains_key("apple"));
        assert_eq!(features["stop:the"], STOPWORD_WEIGHT);
        assert_eq!(features["stop:a"], STOPWORD_WEIGHT, "once, however often");
        assert_eq!(
            features["SET:bowl fruit not_apple not_pear pie"],
            WORD_SET_WEIGHT
        );
    }

    #[test]
    fn stemming_and_synonyms() {
        for (word, expected) in [
            ("photographs", "photo"),
            ("pictures", "photo"),
            ("sunrise", "dawn"),
            ("puppies", "dog"),
            ("kittens", "cat"),
            ("children", "child"),
            ("kids", "child"),
            ("apples", "apple"),
            ("glasses", "glass"),
            ("glass", "glass"),
            ("boxes", "box"),
            ("beaches", "beach"),
            ("cities", "city"),
            ("movies", "movy"),
            ("movie", "movy"),
            ("skies", "sky"),
            ("cactus", "cactus"),
            ("iris", "iris"),
            ("bus", "bus"),
            ("gas", "gas"),
        ] {
            assert_eq!(canonical(word), expected, "{word}");
        }
    }

    #[test]
    fn base64_matches_rfc_4648() {
        for (bytes, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(bytes.as_bytes()), encoded);
            assert_eq!(unbase64(encoded).unwrap(), bytes.as_bytes());
        }
        assert_eq!(base64(&[0xfb, 0xff, 0xbf]), "+/+/");
        // 1.0f32 is 00 00 80 3f in little-endian.
        assert_eq!(base64_floats(&[1.0]), "AACAPw==");
    }

    #[test]
    fn cosine_edge_cases() {
        assert_eq!(cosine(&[1.0, 0.0], &[1.0, 0.0, 0.0]), 0.0);
        assert_eq!(cosine(&[0.0, 0.0], &[1.0, 0.0]), 0.0);
        assert_eq!(cosine(&[], &[]), 0.0);
        assert!((cosine(&[3.0, 4.0], &[6.0, 8.0]) - 1.0).abs() < 1e-6);
        assert!((cosine(&[1.0, 2.0], &[-1.0, -2.0]) + 1.0).abs() < 1e-6);
        assert!(cosine(&[1.0, 0.0], &[0.0, 1.0]).abs() < 1e-6);
    }

    /// Standard base64 back to bytes, strictly (the test's client side).
    fn unbase64(text: &str) -> Result<Vec<u8>, String> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| e.to_string())
    }

    /// Reads a 200's body the way a strict client must: OpenAI's shape, one
    /// item per input with `index` equal to its position, every vector
    /// `dimensions` long.
    fn parse_strictly(
        body: &[u8],
        inputs: usize,
        dimensions: usize,
        base64: bool,
    ) -> Result<Vec<Vec<f32>>, String> {
        let value: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if value["object"] != "list" {
            return Err(format!("object is {}", value["object"]));
        }
        if !value["model"].is_string() {
            return Err("no model".into());
        }
        let tokens = &value["usage"]["prompt_tokens"];
        if !tokens.is_u64() || *tokens != value["usage"]["total_tokens"] {
            return Err(format!("usage is {}", value["usage"]));
        }
        let data = value["data"].as_array().ok_or("data is not an array")?;
        if data.len() != inputs {
            return Err(format!("{} items for {inputs} inputs", data.len()));
        }
        let mut vectors = Vec::new();
        for (i, item) in data.iter().enumerate() {
            if item["object"] != "embedding" || item["index"] != json!(i) {
                return Err(format!("item {i} is {}", item["object"]));
            }
            let vector: Vec<f32> = if base64 {
                let text = item["embedding"].as_str().ok_or("not a string")?;
                let bytes = unbase64(text)?;
                if bytes.len() % 4 != 0 {
                    return Err("not whole f32s".into());
                }
                bytes
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect()
            } else {
                serde_json::from_value(item["embedding"].clone()).map_err(|e| e.to_string())?
            };
            if vector.len() != dimensions {
                return Err(format!("item {i} has {} dimensions", vector.len()));
            }
            vectors.push(vector);
        }
        Ok(vectors)
    }

    async fn start(config: SimConfig) -> RunningSim {
        spawn(config).await.expect("simulator starts")
    }

    async fn post(sim: &RunningSim, body: &Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}/v1/embeddings", sim.url))
            .bearer_auth(KEY)
            .json(body)
            .send()
            .await
            .expect("request reaches the simulator")
    }

    const PROMPTS: [&str; 3] = [
        "a lighthouse at dawn",
        "a red car parked on a quiet street at night",
        "a bowl of fruit without apples",
    ];

    #[tokio::test]
    async fn answers_in_openai_shape_in_input_order() {
        let sim = start(SimConfig::default()).await;
        let response = post(
            &sim,
            &json!({ "model": MODEL, "input": PROMPTS, "user": "u-1" }),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let body = response.bytes().await.unwrap();
        let vectors = parse_strictly(&body, 3, DEFAULT_EMBEDDING_DIMENSIONS, false).unwrap();
        for (vector, prompt) in vectors.iter().zip(PROMPTS) {
            assert_eq!(*vector, embed(MODEL, prompt, DEFAULT_EMBEDDING_DIMENSIONS));
        }
        let value: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(value["model"], MODEL);
        // 4 + 10 + 6 words.
        assert_eq!(
            value["usage"],
            json!({ "prompt_tokens": 20, "total_tokens": 20 })
        );
        let keys: Vec<&String> = value.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        let item: Vec<&String> = value["data"][0].as_object().unwrap().keys().collect();
        assert_eq!(item.len(), 3, "{item:?}");

        // A single string is one input.
        let one = post(&sim, &json!({ "model": MODEL, "input": PROMPTS[1] })).await;
        let one = parse_strictly(&one.bytes().await.unwrap(), 1, 256, false).unwrap();
        assert_eq!(one[0], vectors[1]);

        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedded_texts,
                stats.embedding_errors
            ),
            (2, 4, 0)
        );
    }

    #[tokio::test]
    async fn base64_carries_the_same_floats_little_endian() {
        let sim = start(SimConfig::default()).await;
        let floats = post(&sim, &json!({ "model": MODEL, "input": PROMPTS, "dimensions": 64, "encoding_format": "float" })).await;
        let floats = parse_strictly(&floats.bytes().await.unwrap(), 3, 64, false).unwrap();
        let encoded = post(&sim, &json!({ "model": MODEL, "input": PROMPTS, "dimensions": 64, "encoding_format": "base64" })).await;
        assert_eq!(encoded.status(), 200);
        let encoded = encoded.bytes().await.unwrap();
        let value: Value = serde_json::from_slice(&encoded).unwrap();
        assert!(value["data"][0]["embedding"].is_string());
        assert_eq!(parse_strictly(&encoded, 3, 64, true).unwrap(), floats);
    }

    #[tokio::test]
    async fn dimensions_come_from_the_request_else_the_config() {
        let sim = start(SimConfig {
            embedding_dimensions: 64,
            ..SimConfig::default()
        })
        .await;
        let body = |dimensions: Value| json!({ "model": MODEL, "input": "a lighthouse", "dimensions": dimensions });
        for (asked, expected) in [
            (json!(null), 64),
            (json!(1), 1),
            (json!(1536), 1536),
            (json!(3072), 3072),
        ] {
            let response = post(&sim, &body(asked.clone())).await;
            assert_eq!(response.status(), 200, "{asked}");
            let vectors = parse_strictly(&response.bytes().await.unwrap(), 1, expected, false);
            assert_eq!(vectors.unwrap()[0], embed(MODEL, "a lighthouse", expected));
        }
        for bad in [json!(0), json!(3073), json!(-1), json!(2.5), json!("256")] {
            let response = post(&sim, &body(bad.clone())).await;
            assert_eq!(response.status(), 400, "{bad}");
            let error: Value = response.json().await.unwrap();
            assert_eq!(error["error"]["param"], "dimensions", "{bad}");
        }
        // An out-of-range config is clamped, not an error.
        sim.sim.set_config(SimConfig {
            embedding_dimensions: 0,
            ..SimConfig::default()
        });
        let response = post(&sim, &json!({ "model": MODEL, "input": "x" })).await;
        assert!(parse_strictly(&response.bytes().await.unwrap(), 1, 1, false).is_ok());
    }

    #[tokio::test]
    async fn malformed_requests_are_400_in_openai_shape() {
        let sim = start(SimConfig::default()).await;
        let url = format!("{}/v1/embeddings", sim.url);
        let client = reqwest::Client::new();
        let cases: Vec<(String, Option<&str>)> = vec![
            ("not json".into(), None),
            ("[]".into(), None),
            (json!({ "input": "x" }).to_string(), Some("model")),
            (
                json!({ "model": 5, "input": "x" }).to_string(),
                Some("model"),
            ),
            (
                json!({ "model": "", "input": "x" }).to_string(),
                Some("model"),
            ),
            (json!({ "model": MODEL }).to_string(), Some("input")),
            (
                json!({ "model": MODEL, "input": null }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": "" }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": [] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": ["a", ""] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": ["a", 5] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": [1212, 318] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": [[1212, 318]] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": ["a", null] }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": { "text": "a" } }).to_string(),
                Some("input"),
            ),
            (
                json!({ "model": MODEL, "input": "a", "encoding_format": "hex" }).to_string(),
                Some("encoding_format"),
            ),
            (
                json!({ "model": MODEL, "input": "a", "user": 7 }).to_string(),
                Some("user"),
            ),
            (
                json!({ "model": MODEL, "input": "a", "temperature": 0.5 }).to_string(),
                Some("temperature"),
            ),
        ];
        for (body, param) in &cases {
            let response = client
                .post(&url)
                .bearer_auth(KEY)
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            let error = error["error"].as_object().expect("an error object");
            assert_eq!(error["type"], "invalid_request_error", "{body}");
            assert!(error["message"].is_string(), "{body}");
            assert_eq!(error["param"], json!(param), "{body}");
            assert_eq!(error["code"], Value::Null, "{body}");
            assert_eq!(error.len(), 4, "{body}");
        }
        let stats = sim.sim.stats();
        let n = cases.len() as u64;
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedding_errors,
                stats.embedded_texts
            ),
            (n, n, 0)
        );
        // Embeddings' refusals are not the batch route's.
        assert_eq!((stats.rejected, stats.batches), (0, 0));
    }

    #[tokio::test]
    async fn at_most_2048_inputs() {
        let sim = start(SimConfig::default()).await;
        let inputs = |n: usize| -> Vec<String> { (0..n).map(|i| format!("prompt {i}")).collect() };
        let response = post(
            &sim,
            &json!({ "model": MODEL, "input": inputs(MAX_EMBEDDING_INPUTS), "dimensions": 1 }),
        )
        .await;
        assert_eq!(response.status(), 200);
        assert!(parse_strictly(
            &response.bytes().await.unwrap(),
            MAX_EMBEDDING_INPUTS,
            1,
            false
        )
        .is_ok());
        let response = post(
            &sim,
            &json!({ "model": MODEL, "input": inputs(MAX_EMBEDDING_INPUTS + 1), "dimensions": 1 }),
        )
        .await;
        assert_eq!(response.status(), 400);
        let stats = sim.sim.stats();
        assert_eq!((stats.embedded_texts, stats.embedding_errors), (2048, 1));
    }

    #[tokio::test]
    async fn wrong_or_missing_key_is_401() {
        let sim = start(SimConfig {
            api_key: Some(KEY.into()),
            ..SimConfig::default()
        })
        .await;
        let url = format!("{}/v1/embeddings", sim.url);
        let client = reqwest::Client::new();
        let body = json!({ "model": MODEL, "input": "a lighthouse" });
        let wrong = client
            .post(&url)
            .bearer_auth("nope")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let error: Value = wrong.json().await.unwrap();
        assert_eq!(error["error"]["type"], "invalid_request_error");
        assert_eq!(error["error"]["code"], "invalid_api_key");
        assert!(!error.to_string().contains("nope"), "the key is not echoed");
        let missing = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        let error: Value = missing.json().await.unwrap();
        assert_eq!(error["error"]["code"], Value::Null);
        // Authentication comes first: a bad body with a bad key is a 401.
        let both = client
            .post(&url)
            .bearer_auth("nope")
            .body("not json")
            .send()
            .await
            .unwrap();
        assert_eq!(both.status(), 401);
        assert_eq!(post(&sim, &body).await.status(), 200);
        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedding_errors,
                stats.embedded_texts
            ),
            (4, 3, 1)
        );

        // Without a configured key any non-empty bearer is accepted, none is not.
        let open = start(SimConfig::default()).await;
        let url = format!("{}/v1/embeddings", open.url);
        let any = client
            .post(&url)
            .bearer_auth("anything")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(any.status(), 200);
        let none = client.post(&url).json(&body).send().await.unwrap();
        assert_eq!(none.status(), 401);
    }

    #[tokio::test]
    async fn error_rate_one_answers_503() {
        let sim = start(SimConfig {
            embeddings_error_rate: 1.0,
            ..SimConfig::default()
        })
        .await;
        for _ in 0..3 {
            let response = post(&sim, &json!({ "model": MODEL, "input": PROMPTS })).await;
            assert_eq!(response.status(), 503);
            let text = response.text().await.unwrap();
            assert!(
                text.starts_with(r#"{"error":{"message":"#),
                "OpenAI's order: {text}"
            );
            let error: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(error["error"]["type"], "server_error");
            assert_eq!(error["error"]["param"], Value::Null);
        }
        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedding_errors,
                stats.embedded_texts
            ),
            (3, 3, 0)
        );
        assert_eq!(stats.errors, 0, "the batch route's counter");
    }

    #[tokio::test]
    async fn rate_limit_rate_one_answers_429_with_retry_after() {
        let sim = start(SimConfig {
            embeddings_rate_limit_rate: 1.0,
            ..SimConfig::default()
        })
        .await;
        let response = post(&sim, &json!({ "model": MODEL, "input": "a lighthouse" })).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let error: Value = response.json().await.unwrap();
        assert_eq!(error["error"]["code"], "rate_limit_exceeded");
        assert_eq!(error["error"]["type"], "requests");
        let stats = sim.sim.stats();
        assert_eq!((stats.embedding_errors, stats.rate_limited), (1, 0));
    }

    #[tokio::test]
    async fn every_garbage_kind_is_caught_by_a_strict_client() {
        for base64 in [false, true] {
            for inputs in [1, 3] {
                let request = EmbeddingRequest {
                    model: MODEL.into(),
                    inputs: PROMPTS[..inputs].iter().map(|p| p.to_string()).collect(),
                    base64,
                    dimensions: Some(8),
                };
                let vectors: Vec<Vec<f32>> =
                    request.inputs.iter().map(|t| embed(MODEL, t, 8)).collect();
                // The untouched answer passes, so each failure below is the garbage's.
                let valid = render(&request, vectors.clone(), 0).unwrap();
                assert!(parse_strictly(&valid, inputs, 8, base64).is_ok());
                for kind in Garbage::ALL {
                    let response = garbage(kind, &request, vectors.clone()).unwrap();
                    assert_eq!(response.status(), 200);
                    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
                        .await
                        .unwrap();
                    assert!(
                        parse_strictly(&body, inputs, 8, base64).is_err(),
                        "{kind:?} with {inputs} inputs, base64 {base64} passed: {body:?}"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn garbage_rate_one_breaks_the_contract_and_embeds_nothing() {
        let sim = start(SimConfig {
            embeddings_garbage_rate: 1.0,
            seed: Some(42),
            ..SimConfig::default()
        })
        .await;
        let mut bodies = std::collections::HashSet::new();
        let mut calls = 0;
        for base64 in [false, true] {
            for inputs in [1, 3] {
                for _ in 0..8 {
                    let format = if base64 { "base64" } else { "float" };
                    let body = json!({ "model": MODEL, "input": PROMPTS[..inputs], "encoding_format": format });
                    let response = post(&sim, &body).await;
                    assert_eq!(response.status(), 200);
                    let body = response.bytes().await.unwrap();
                    assert!(
                        parse_strictly(&body, inputs, 256, base64).is_err(),
                        "{body:?}"
                    );
                    bodies.insert(body);
                    calls += 1;
                }
            }
        }
        assert!(
            bodies.len() >= 8,
            "garbage should vary, got {} bodies",
            bodies.len()
        );
        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedding_errors,
                stats.embedded_texts,
                stats.garbage
            ),
            (calls, calls, 0, 0)
        );
    }

    #[tokio::test]
    async fn hang_outlasts_a_client_timeout() {
        let sim = start(SimConfig {
            embeddings_hang: true,
            slow: Duration::from_millis(500),
            ..SimConfig::default()
        })
        .await;
        let body = json!({ "model": MODEL, "input": "a lighthouse" });
        let impatient = reqwest::Client::builder()
            .timeout(Duration::from_millis(100))
            .build()
            .unwrap();
        let error = impatient
            .post(format!("{}/v1/embeddings", sim.url))
            .bearer_auth(KEY)
            .json(&body)
            .send()
            .await
            .expect_err("the call hangs past the timeout");
        assert!(error.is_timeout(), "{error}");

        let started = Instant::now();
        let response = post(&sim, &body).await;
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(500));
        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedded_texts,
                stats.embedding_errors
            ),
            (2, 1, 0)
        );
    }

    #[tokio::test]
    async fn latency_delays_embeddings_not_batches() {
        let sim = start(SimConfig {
            embeddings_latency: Duration::from_millis(300),
            ..SimConfig::default()
        })
        .await;
        let started = Instant::now();
        let response = post(&sim, &json!({ "model": MODEL, "input": "a lighthouse" })).await;
        assert_eq!(response.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(300));

        sim.sim.set_config(SimConfig {
            embeddings_latency: Duration::from_secs(30),
            ..SimConfig::default()
        });
        let batch = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap()
            .post(format!("{}/v1/batch", sim.url))
            .bearer_auth(KEY)
            .json(&json!({ "model": "flux-schnell", "inputs": [{ "prompt": "a lighthouse" }] }))
            .send()
            .await
            .expect("a batch call is not delayed by embeddings_latency");
        assert_eq!(batch.status(), 200);
    }

    #[tokio::test]
    async fn embeddings_are_counted_not_billed() {
        let sim = start(SimConfig::default()).await;
        let client = reqwest::Client::new();
        let batch = client
            .post(format!("{}/v1/batch", sim.url))
            .bearer_auth(KEY)
            .json(&json!({ "model": "flux-schnell", "inputs": [{ "prompt": "a lighthouse at dawn" }] }))
            .send()
            .await
            .unwrap();
        assert_eq!(batch.status(), 200);
        for _ in 0..3 {
            let response = post(&sim, &json!({ "model": "flux-schnell", "input": ["a lighthouse at dawn", "a lighthouse"] })).await;
            assert_eq!(response.status(), 200);
        }
        post(&sim, &json!({ "model": MODEL })).await;

        let stats: SimStats = client
            .get(format!("{}/v1/stats", sim.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats, sim.sim.stats());
        assert_eq!(
            (
                stats.embedding_calls,
                stats.embedded_texts,
                stats.embedding_errors
            ),
            (4, 6, 1)
        );
        assert_eq!(
            (stats.batches, stats.items, stats.max_billed_per_input),
            (1, 1, 1)
        );
        assert_eq!(stats.by_model.len(), 1);
        assert_eq!(stats.by_model["flux-schnell"], 1);
        assert_eq!(sim.sim.billed_inputs().len(), 1);

        client
            .post(format!("{}/v1/stats/reset", sim.url))
            .send()
            .await
            .unwrap();
        assert_eq!(sim.sim.stats(), SimStats::default());

        // Stats served by an older simulator, without these fields, still parse.
        let old: SimStats = serde_json::from_value(json!({
            "batches": 1, "items": 1, "replays": 0, "errors": 0, "rate_limited": 0,
            "garbage": 0, "by_model": {}, "max_billed_per_input": 1
        }))
        .unwrap();
        assert_eq!(
            (
                old.embedding_calls,
                old.embedded_texts,
                old.embedding_errors
            ),
            (0, 0, 0)
        );
    }

    /// Embeddings traffic in a seeded run does not change which batch calls
    /// fail: the two routes draw from separate generators.
    #[tokio::test]
    async fn embeddings_draws_do_not_shift_seeded_batch_draws() {
        let config = SimConfig {
            item_error_rate: 0.5,
            embeddings_error_rate: 0.5,
            seed: Some(7),
            ..SimConfig::default()
        };
        let batch = |sim: &RunningSim| {
            reqwest::Client::new()
                .post(format!("{}/v1/batch", sim.url))
                .bearer_auth(KEY)
                .json(&json!({ "model": "flux-schnell", "inputs": (0..20).map(|i| json!({ "prompt": format!("p{i}") })).collect::<Vec<_>>() }))
                .send()
        };
        let quiet = start(config.clone()).await;
        let busy = start(config).await;
        for _ in 0..5 {
            post(&busy, &json!({ "model": MODEL, "input": "a lighthouse" })).await;
        }
        let a = batch(&quiet).await.unwrap().bytes().await.unwrap();
        let b = batch(&busy).await.unwrap().bytes().await.unwrap();
        assert_eq!(a, b);

        // And seeded embeddings fates are reproducible too.
        let fates = |sim: &RunningSim| {
            let sim = sim.url.clone();
            async move {
                let mut statuses = Vec::new();
                for _ in 0..12 {
                    let response = reqwest::Client::new()
                        .post(format!("{sim}/v1/embeddings"))
                        .bearer_auth(KEY)
                        .json(&json!({ "model": MODEL, "input": "x" }))
                        .send()
                        .await
                        .unwrap();
                    statuses.push(response.status().as_u16());
                }
                statuses
            }
        };
        quiet.sim.reset();
        busy.sim.reset();
        let (a, b) = (fates(&quiet).await, fates(&busy).await);
        assert_eq!(a, b);
        assert!(a.contains(&200) && a.contains(&503), "{a:?}");
    }
}
