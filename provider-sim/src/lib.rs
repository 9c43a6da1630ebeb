//! The provider simulator: a stand-in for the paid AI-generation provider that
//! offpeak's workers call, for tests, load runs and the demo.
//!
//! Real providers bill per generated item, fail transiently, rate-limit and
//! now and then send a corrupted response. The simulator does all of that on
//! purpose, at rates you choose, and keeps a ledger of what it billed so a
//! test can check offpeak's central promise: every job's effect happens
//! exactly once, so nobody is billed twice for the same job.
//!
//! # The contract (docs/spec.md, "The provider batch API")
//!
//! `POST /v1/batch` with `Authorization: Bearer <key>`, an optional
//! `Idempotency-Key: <batch id>` and the body
//! `{"model": "flux-schnell", "inputs": [{...}, ...]}`. Answers:
//!
//! | status | body | meaning for the worker |
//! |---|---|---|
//! | 200 | `{"results": [...]}`, one item per input, in input order: `{"output": {...}}` or `{"error": {"code", "message"}}` | done; per-item errors are permanent |
//! | 429 | JSON error, header `Retry-After: 1` | transient: wait, retry |
//! | 503 | JSON error | transient: retry with backoff |
//! | 401 | JSON error | permanent: missing or wrong bearer key |
//! | 400 | JSON error | permanent: body is not `{"model": string, "inputs": [objects]}` or `inputs` is empty |
//! | 422 | JSON error, code `idempotency_mismatch` | permanent: the key was used before with a different body |
//!
//! Error bodies have the shape `{"error": {"code": "...", "message": "..."}}`.
//!
//! # Behaviour
//!
//! Each call sleeps [`SimConfig::latency`], then draws its fate: with
//! probability `error_rate` a 503, else with `rate_limit_rate` a 429, else
//! with `garbage_rate` a 200 whose body breaks the contract (truncated JSON,
//! wrong number of results, an HTML page, ...), else success. On success each
//! item is, with probability `item_error_rate`, a `content_rejected` error;
//! otherwise an output that depends only on `(model, input)`, so a test can
//! compare results across runs and retries.
//!
//! Only successful 200 responses are stored under their `Idempotency-Key` and
//! billed. Replaying the key with the same body returns the stored bytes again
//! (header `Idempotent-Replayed: true`) without billing; calls with the same
//! key are serialized, so concurrent duplicates are replays too. Garbage is
//! treated as corruption in transit: neither stored nor billed.
//!
//! # Embeddings
//!
//! `POST /v1/embeddings` is an OpenAI-compatible embeddings endpoint, for
//! offpeak's semantic cache: `{"model", "input": string or [strings],
//! "encoding_format"?, "dimensions"?, "user"?}` answered with
//! `{"object": "list", "data": [{"object": "embedding", "index", "embedding"}],
//! "model", "usage"}` and errors in OpenAI's shape
//! `{"error": {"message", "type", "param", "code"}}`. Its vectors are a
//! documented function of `(model, text, dimensions)` built so that
//! rewordings of a prompt score at least 0.95 and different prompts (a
//! changed word, a negation) score below; [`embed`] and [`cosine`] compute
//! them without a server. The contract, the exact rules and the faults
//! (`embeddings_*` in [`SimConfig`]) are in the [`embeddings`] module.
//! Embeddings are counted (`embedding_*` in [`SimStats`]) but not billed:
//! they never change `items`, `by_model` or `max_billed_per_input`.
//!
//! # Images
//!
//! `POST /v1/images/generations` is OpenAI's image generation endpoint
//! (`createImage`), which offpeak's `openai-images` adapter calls once per
//! job: a `CreateImageRequest` answered with an `ImagesResponse`, errors in
//! OpenAI's shape, the fault knobs above (`content_policy_violation` 400s
//! stand for per-item errors), and an `Idempotency-Key` honoured as here.
//! Its images are billed in the same ledger. See the [`images`] module.
//!
//! # Routes
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/batch` | the batch API above |
//! | `POST /v1/embeddings` | OpenAI-compatible embeddings, see [`embeddings`] |
//! | `POST /v1/images/generations` | OpenAI's image generation, one call per job, billed; see [`images`] |
//! | `POST /v1/files`, `GET /v1/files/{id}`, `GET /v1/files/{id}/content` | OpenAI's Files API, for batches, see [`openai_batch`] |
//! | `POST /v1/batches`, `GET /v1/batches`, `GET /v1/batches/{id}`, `POST /v1/batches/{id}/cancel` | OpenAI's Batch API, see [`openai_batch`] |
//! | `GET /v1/stats` | the counters, [`SimStats`] |
//! | `GET /v1/stats/inputs` | billed count per input hash, see [`input_hash`] |
//! | `POST /v1/stats/reset` | clears the counters and stored responses |
//! | `GET /healthz` | `ok` |
//!
//! # Limits
//!
//! Every provider route (all but the stats and `/healthz`) passes the
//! [`limits`] middleware: optional `rpm_limit` and `max_concurrent` answered
//! with OpenAI's 429 and `x-ratelimit-*` headers, and the most calls seen
//! in flight and in any minute (`max_in_flight`, `max_calls_in_any_minute`).
//!
//! # Example
//!
//! ```rust,no_run
//! use offpeak_provider_sim::{self as sim, SimConfig};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let provider = sim::spawn(SimConfig { error_rate: 0.2, ..SimConfig::default() }).await?;
//! // Point the worker's PROVIDER_URL at `provider.url`, run the jobs, then:
//! let stats = provider.sim.stats();
//! assert_eq!(stats.max_billed_per_input, 1, "some input was billed twice");
//! # Ok(())
//! # }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinHandle;

pub mod embeddings;
pub mod limits;
pub mod images;
pub mod openai_batch;

pub use embeddings::{
    cosine, embed, DEFAULT_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_DIMENSIONS, MAX_EMBEDDING_INPUTS,
};

/// Seconds announced in `Retry-After` on a 429.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Base of the (fake) URLs in successful outputs.
pub const CDN_BASE: &str = "https://cdn.sim.offpeak.test";

/// Header set on a response replayed from the idempotency store.
pub const IDEMPOTENT_REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Code of the per-item error drawn with `item_error_rate`.
pub const CONTENT_REJECTED: &str = "content_rejected";

/// Large enough for batches of thousands of inputs; axum's default is 2 MiB.
const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// How the simulator misbehaves. `Default` is a perfect, instant provider
/// that accepts any non-empty bearer key and embeds into
/// [`DEFAULT_EMBEDDING_DIMENSIONS`] dimensions.
///
/// Rates are probabilities in `[0, 1]`: 0 never, 1 always. The fields named
/// `embedding…` are about `POST /v1/embeddings`, the others about
/// `POST /v1/batch` and `POST /v1/images/generations` (see [`images`]),
/// except `slow`, `api_key` and `seed`, which every route uses.
#[derive(Clone, PartialEq)]
pub struct SimConfig {
    /// Delay before each call is answered (any outcome).
    pub latency: Duration,
    /// Probability that a call is answered 503.
    pub error_rate: f64,
    /// Probability that a call that was not a 503 is answered 429.
    pub rate_limit_rate: f64,
    /// Probability that each item of a successful call is `content_rejected`.
    pub item_error_rate: f64,
    /// Probability that a call that was neither 503 nor 429 gets a 200 with a
    /// body that breaks the contract.
    pub garbage_rate: f64,
    /// Probability that a call hangs for [`SimConfig::slow`] more before it
    /// is answered: with a client timeout shorter than that, a timeout.
    pub slow_rate: f64,
    /// How long a slow call hangs.
    pub slow: Duration,
    /// The only bearer key accepted; `None` accepts any non-empty key.
    pub api_key: Option<String>,
    /// Seed of the draws, for reproducible runs; `None` seeds from entropy.
    /// Outputs are deterministic whatever the seed: only failures are drawn.
    /// Embeddings calls draw from a second generator derived from the same
    /// seed, so that adding embeddings traffic to a seeded run does not
    /// change which batch calls fail.
    pub seed: Option<u64>,
    /// Length of the vectors `POST /v1/embeddings` returns when the request
    /// names no `dimensions`. Used clamped to
    /// `1..=`[`MAX_EMBEDDING_DIMENSIONS`].
    pub embedding_dimensions: usize,
    /// Delay before each embeddings call is answered (any outcome). The
    /// batch `latency` does not apply to embeddings.
    pub embeddings_latency: Duration,
    /// Probability that an embeddings call is answered 503 (`server_error`).
    pub embeddings_error_rate: f64,
    /// Probability that an embeddings call that was not a 503 is answered
    /// 429 (`rate_limit_exceeded`, with `Retry-After`).
    pub embeddings_rate_limit_rate: f64,
    /// Probability that an embeddings call that was neither 503 nor 429 gets
    /// a 200 whose body breaks the contract (see [`embeddings`]).
    pub embeddings_garbage_rate: f64,
    /// When set, every embeddings call hangs for [`SimConfig::slow`] (after
    /// `embeddings_latency`) before it is answered: for a client's timeout
    /// test. `slow` is zero by default, so set it too.
    pub embeddings_hang: bool,
    /// Calls accepted in any 60 s on the provider routes; one more is
    /// refused with 429 (see [`limits`]). `None`: no limit.
    pub rpm_limit: Option<u32>,
    /// Calls in flight on the provider routes; one more is refused with
    /// 429 (see [`limits`]). `None`: no limit.
    pub max_concurrent: Option<u32>,
    /// OpenAI Batch API: how long a provider batch takes from `validating`
    /// to `completed` (a third validating, a third in progress, a third
    /// finalizing); 0 ends it at its first read. See [`openai_batch`].
    pub openai_batch_duration: Duration,
    /// Probability that a provider batch ends `failed` after validation.
    pub openai_batch_failure_rate: f64,
    /// Probability that a provider batch not failed ends `expired`, half of
    /// its requests done.
    pub openai_batch_expiry_rate: f64,
}

// By hand for `embedding_dimensions`, whose perfect value is not 0.
impl Default for SimConfig {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            rate_limit_rate: 0.0,
            item_error_rate: 0.0,
            garbage_rate: 0.0,
            slow_rate: 0.0,
            slow: Duration::ZERO,
            api_key: None,
            seed: None,
            embedding_dimensions: DEFAULT_EMBEDDING_DIMENSIONS,
            embeddings_latency: Duration::ZERO,
            embeddings_error_rate: 0.0,
            embeddings_rate_limit_rate: 0.0,
            embeddings_garbage_rate: 0.0,
            embeddings_hang: false,
            rpm_limit: None,
            max_concurrent: None,
            openai_batch_duration: openai_batch::OPENAI_BATCH_DURATION_DEFAULT,
            openai_batch_failure_rate: 0.0,
            openai_batch_expiry_rate: 0.0,
        }
    }
}

// By hand so that logging the config at startup never prints the key.
impl fmt::Debug for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimConfig")
            .field("latency", &self.latency)
            .field("error_rate", &self.error_rate)
            .field("rate_limit_rate", &self.rate_limit_rate)
            .field("item_error_rate", &self.item_error_rate)
            .field("garbage_rate", &self.garbage_rate)
            .field("slow_rate", &self.slow_rate)
            .field("slow", &self.slow)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("seed", &self.seed)
            .field("embedding_dimensions", &self.embedding_dimensions)
            .field("embeddings_latency", &self.embeddings_latency)
            .field("embeddings_error_rate", &self.embeddings_error_rate)
            .field(
                "embeddings_rate_limit_rate",
                &self.embeddings_rate_limit_rate,
            )
            .field("embeddings_garbage_rate", &self.embeddings_garbage_rate)
            .field("embeddings_hang", &self.embeddings_hang)
            .field("rpm_limit", &self.rpm_limit)
            .field("max_concurrent", &self.max_concurrent)
            .field("openai_batch_duration", &self.openai_batch_duration)
            .field("openai_batch_failure_rate", &self.openai_batch_failure_rate)
            .field("openai_batch_expiry_rate", &self.openai_batch_expiry_rate)
            .finish()
    }
}

/// A snapshot of the simulator's counters, as served by `GET /v1/stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimStats {
    /// Every `POST /v1/batch` received, whatever its outcome.
    pub batches: u64,
    /// Billed items: outputs in stored (first) successful responses.
    pub items: u64,
    /// Responses served again from the idempotency store (not billed).
    pub replays: u64,
    /// Calls answered 503.
    pub errors: u64,
    /// Calls answered 429.
    pub rate_limited: u64,
    /// Calls answered with a malformed 200 (not stored, not billed).
    pub garbage: u64,
    /// Items answered `content_rejected` (not billed).
    #[serde(default)]
    pub item_errors: u64,
    /// Calls refused with 400, 401 or 422.
    #[serde(default)]
    pub rejected: u64,
    /// Calls that hung for `slow` before being answered (or abandoned).
    #[serde(default)]
    pub slow: u64,
    /// Billed items per model.
    pub by_model: BTreeMap<String, u64>,
    /// The most times any one input (see [`input_hash`]) was billed; 1 in a
    /// run where every job has a distinct input and nothing was billed twice.
    pub max_billed_per_input: u64,
    /// Every `POST /v1/embeddings` received, whatever its outcome. Not
    /// billed: embeddings never change `items`, `by_model` or
    /// `max_billed_per_input`.
    #[serde(default)]
    pub embedding_calls: u64,
    /// Texts embedded in successful (well-formed 200) embeddings answers.
    #[serde(default)]
    pub embedded_texts: u64,
    /// Embeddings calls not answered with a well-formed 200: 400, 401, 429,
    /// 503 and garbage. A call abandoned by its client during
    /// `embeddings_latency` or a hang counts only in `embedding_calls`.
    #[serde(default)]
    pub embedding_errors: u64,
    /// The most calls in flight at once on the provider routes (see
    /// [`limits`]), refused ones included.
    #[serde(default)]
    pub max_in_flight: u64,
    /// The most calls arriving on the provider routes within any 60 s,
    /// refused ones included.
    #[serde(default)]
    pub max_calls_in_any_minute: u64,
    /// Calls refused with 429 by `rpm_limit` or `max_concurrent` (also
    /// counted in `rate_limited`).
    #[serde(default)]
    pub over_limit: u64,
    /// Every `POST /v1/images/generations` received, whatever its outcome.
    /// Its faults count in the counters above (`errors`, `rate_limited`,
    /// `garbage`, `item_errors`, `rejected`, `slow`, `replays`) and its
    /// images are billed in `items`, `by_model` and `max_billed_per_input`
    /// (see [`images`]).
    #[serde(default)]
    pub image_calls: u64,
    /// Every call of the Files and Batch API (`/v1/files...`, `/v1/batches...`).
    #[serde(default)]
    pub openai_calls: u64,
    /// Provider batches created (`POST /v1/batches` that took effect).
    #[serde(default)]
    pub openai_batches: u64,
    /// Files uploaded (`POST /v1/files` that took effect).
    #[serde(default)]
    pub files_uploaded: u64,
}

/// One item of a 200 response: externally tagged, so it serializes as
/// `{"output": {...}}` or `{"error": {...}}` and parsing rejects anything else.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum BatchItem {
    /// The generated result.
    Output(Map<String, Value>),
    /// A permanent per-item error.
    Error(ItemError),
}

/// A per-item error, also the shape of whole-call error bodies' `error`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemError {
    pub code: String,
    pub message: String,
}

/// The body of a 200 from `POST /v1/batch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchResponse {
    /// One per input, in input order.
    pub results: Vec<BatchItem>,
}

/// The hash under which the simulator bills an input, as served by
/// `GET /v1/stats/inputs`: hex SHA-256 of the model, a NUL byte and the input
/// as canonical JSON (object keys sorted, no whitespace).
pub fn input_hash(model: &str, input: &Value) -> String {
    hex::encode(input_digest(model, input))
}

fn input_digest(model: &str, input: &Value) -> [u8; 32] {
    let mut buf = Vec::new();
    canonical_json(input, &mut buf);
    digest_of(model, &buf)
}

fn digest_of(model: &str, canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(model.as_bytes());
    hasher.update([0u8]);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// Appends `value` as JSON with object keys sorted at every level, so that
/// two inputs equal as JSON hash the same whatever order their keys were
/// sent in. The keys are sorted here (rather than relying on
/// `serde_json::Map` being a `BTreeMap`), which keeps this true if some
/// crate turns on `preserve_order`. Written straight into `out`, without
/// copying the value: the simulator does this for every input it receives
/// (BENCHMARKS.md step 15).
fn canonical_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => canonical_object(map, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        // Scalars as `Value`'s compact `Display` writes them.
        other => scalar_json(other, out),
    }
}

fn canonical_object(map: &Map<String, Value>, out: &mut Vec<u8>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        scalar_json(key, out);
        out.push(b':');
        canonical_json(value, out);
    }
    out.push(b'}');
}

fn scalar_json<T: Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing JSON into a Vec cannot fail for strings, numbers, booleans
    // and null.
    serde_json::to_writer(&mut *out, value).expect("a JSON scalar serializes");
}

/// The simulated provider: shared state behind an `Arc`, cheap to clone.
#[derive(Clone)]
pub struct Simulator {
    inner: Arc<Inner>,
}

struct Inner {
    config: RwLock<SimConfig>,
    rng: Mutex<StdRng>,
    /// The embeddings calls' draws, apart from `rng` (see `SimConfig::seed`).
    embeddings_rng: Mutex<StdRng>,
    /// The images calls' draws, apart from both (see [`images`]).
    images_rng: Mutex<StdRng>,
    ledger: Mutex<Ledger>,
    /// One async mutex per Idempotency-Key in flight. Entries are removed by
    /// [`KeyLock`] when the last holder leaves, so the map stays small.
    key_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Calls in flight and per minute on the provider routes.
    limits: limits::Tracker,
    /// The Files and Batch API's files and batches. Locked after `ledger`
    /// when both are held.
    openai: Mutex<openai_batch::OpenAiState>,
}

#[derive(Default)]
struct Ledger {
    batches: u64,
    items: u64,
    replays: u64,
    errors: u64,
    rate_limited: u64,
    garbage: u64,
    item_errors: u64,
    rejected: u64,
    slow: u64,
    embedding_calls: u64,
    embedded_texts: u64,
    embedding_errors: u64,
    image_calls: u64,
    openai_calls: u64,
    openai_batches: u64,
    files_uploaded: u64,
    by_model: BTreeMap<String, u64>,
    /// Input hash (hex) → times billed.
    billed: HashMap<String, u64>,
    /// Idempotency-Key → the successful response stored for it (images
    /// calls' keys prefixed `images:`).
    stored: HashMap<String, Stored>,
}

struct Stored {
    body_hash: [u8; 32],
    response: Bytes,
}

/// Locks a std mutex, ignoring poisoning: the data behind these mutexes are
/// counters and maps updated in single statements, which a panicking thread
/// cannot leave half-written.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn new_rng(seed: Option<u64>) -> StdRng {
    match seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    }
}

/// The embeddings calls' generator: the same seed, xored with a constant so
/// that its stream is not the batch calls' one.
fn new_embeddings_rng(seed: Option<u64>) -> StdRng {
    new_rng(seed.map(|seed| seed ^ 0x656d_6265_6464_696e)) // "embeddin"
}

/// The images calls' generator, likewise apart from the others.
fn new_images_rng(seed: Option<u64>) -> StdRng {
    new_rng(seed.map(|seed| seed ^ 0x696d_6167_6573_0000)) // "images"
}

impl Simulator {
    /// A simulator with empty counters.
    pub fn new(config: SimConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                rng: Mutex::new(new_rng(config.seed)),
                embeddings_rng: Mutex::new(new_embeddings_rng(config.seed)),
                images_rng: Mutex::new(new_images_rng(config.seed)),
                config: RwLock::new(config),
                ledger: Mutex::new(Ledger::default()),
                key_locks: Mutex::new(HashMap::new()),
                limits: limits::Tracker::default(),
                openai: Mutex::new(openai_batch::OpenAiState::default()),
            }),
        }
    }

    /// The HTTP routes: `/v1/batch`, `/v1/embeddings`,
    /// `/v1/images/generations`, `/v1/stats`,
    /// `/v1/stats/inputs`, `/v1/stats/reset`, `/healthz`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/v1/batch", post(post_batch))
            .route("/v1/embeddings", post(embeddings::post_embeddings))
            .route("/v1/images/generations", post(images::post_images))
            .route("/v1/files", post(openai_batch::post_file))
            .route("/v1/files/{file_id}", get(openai_batch::get_file))
            .route("/v1/files/{file_id}/content", get(openai_batch::get_file_content))
            .route("/v1/batches", post(openai_batch::post_batches).get(openai_batch::list_batches))
            .route("/v1/batches/{batch_id}", get(openai_batch::get_batch))
            .route("/v1/batches/{batch_id}/cancel", post(openai_batch::cancel_batch))
            .route("/v1/stats", get(get_stats))
            .route("/v1/stats/inputs", get(get_billed_inputs))
            .route("/v1/stats/reset", post(post_reset))
            .route("/healthz", get(|| async { "ok" }))
            // Every provider route (all but stats and healthz, see `limits`).
            .layer(axum::middleware::from_fn_with_state(self.clone(), limits::middleware))
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
            .with_state(self.clone())
    }

    /// The current configuration.
    pub fn config(&self) -> SimConfig {
        self.inner
            .config
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the configuration; calls already sleeping their latency use
    /// the new rates. A new `Some` seed restarts the draws from that seed.
    pub fn set_config(&self, config: SimConfig) {
        let mut current = self
            .inner
            .config
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if config.seed.is_some() && config.seed != current.seed {
            *lock(&self.inner.rng) = new_rng(config.seed);
            *lock(&self.inner.embeddings_rng) = new_embeddings_rng(config.seed);
            *lock(&self.inner.images_rng) = new_images_rng(config.seed);
        }
        *current = config;
    }

    /// A snapshot of the counters.
    pub fn stats(&self) -> SimStats {
        let observed = self.inner.limits.observed();
        let ledger = lock(&self.inner.ledger);
        SimStats {
            batches: ledger.batches,
            items: ledger.items,
            replays: ledger.replays,
            errors: ledger.errors,
            rate_limited: ledger.rate_limited,
            garbage: ledger.garbage,
            item_errors: ledger.item_errors,
            rejected: ledger.rejected,
            slow: ledger.slow,
            by_model: ledger.by_model.clone(),
            max_billed_per_input: ledger.billed.values().copied().max().unwrap_or(0),
            embedding_calls: ledger.embedding_calls,
            embedded_texts: ledger.embedded_texts,
            embedding_errors: ledger.embedding_errors,
            max_in_flight: observed.max_in_flight,
            max_calls_in_any_minute: observed.max_calls_in_any_minute,
            over_limit: observed.over_limit,
            image_calls: ledger.image_calls,
            openai_calls: ledger.openai_calls,
            openai_batches: ledger.openai_batches,
            files_uploaded: ledger.files_uploaded,
        }
    }

    /// How many times each input was billed, by [`input_hash`].
    pub fn billed_inputs(&self) -> BTreeMap<String, u64> {
        let ledger = lock(&self.inner.ledger);
        ledger.billed.iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Clears every counter and stored response, and restarts the draws from
    /// the configured seed. Calls in flight still count when they finish.
    pub fn reset(&self) {
        *lock(&self.inner.ledger) = Ledger::default();
        self.inner.limits.reset();
        self.reset_openai();
        let seed = self.config().seed;
        *lock(&self.inner.rng) = new_rng(seed);
        *lock(&self.inner.embeddings_rng) = new_embeddings_rng(seed);
        *lock(&self.inner.images_rng) = new_images_rng(seed);
    }

    fn record(&self, update: impl FnOnce(&mut Ledger)) {
        update(&mut lock(&self.inner.ledger));
    }

    /// Waits for exclusive use of an Idempotency-Key.
    async fn lock_key(&self, key: &str) -> KeyLock {
        let mutex = {
            let mut locks = lock(&self.inner.key_locks);
            Arc::clone(locks.entry(key.to_owned()).or_default())
        };
        KeyLock {
            guard: Some(mutex.lock_owned().await),
            key: key.to_owned(),
            sim: self.clone(),
        }
    }

    /// Everything after the latency: authenticate, parse, replay or draw.
    async fn handle_batch(&self, headers: &HeaderMap, body: &[u8]) -> (Response, String) {
        let config = self.config();
        if let Err(e) = authorize(&config, headers) {
            self.record(|l| l.rejected += 1);
            return (e.into_response(), "unauthorized".into());
        }
        let request = match idempotency_key(headers).and_then(|key| BatchRequest::parse(body, key))
        {
            Ok(request) => request,
            Err(e) => {
                self.record(|l| l.rejected += 1);
                return (e.into_response(), "bad_request".into());
            }
        };

        // Held until the response is stored, so a concurrent call with the
        // same key waits here and then finds the stored response: billed once.
        let _key_lock = match &request.idempotency_key {
            Some(key) => Some(self.lock_key(key).await),
            None => None,
        };
        if let Some(key) = &request.idempotency_key {
            match self.lookup(key, &request.body_hash) {
                Lookup::Miss => {}
                Lookup::Replay(response) => {
                    self.record(|l| l.replays += 1);
                    let mut response = json_bytes(StatusCode::OK, response);
                    response
                        .headers_mut()
                        .insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                    return (response, "replay".into());
                }
                Lookup::Mismatch => {
                    self.record(|l| l.rejected += 1);
                    let e = ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "idempotency_mismatch",
                        format!("Idempotency-Key '{key}' was already used with a different body"),
                    );
                    return (e.into_response(), "idempotency_mismatch".into());
                }
            }
        }

        // A fresh config: the rates may have been flipped while we waited.
        let config = self.config();
        match self.draw(&config, request.inputs.len()) {
            Fate::Unavailable => {
                self.record(|l| l.errors += 1);
                let e = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "simulated outage, retry later",
                );
                (e.into_response(), "503".into())
            }
            Fate::RateLimited => {
                self.record(|l| l.rate_limited += 1);
                let e = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "simulated rate limit",
                );
                let mut response = e.into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                (response, "429".into())
            }
            Fate::Garbage(kind) => {
                self.record(|l| l.garbage += 1);
                (
                    garbage_response(kind, &request),
                    format!("garbage:{kind:?}"),
                )
            }
            Fate::Success { rejected } => {
                let response = BatchResponse {
                    results: request
                        .inputs
                        .iter()
                        .zip(&request.input_digests)
                        .zip(&rejected)
                        .map(|((input, digest), &rejected)| {
                            if rejected {
                                BatchItem::Error(ItemError {
                                    code: CONTENT_REJECTED.into(),
                                    message:
                                        "the input was rejected by the (simulated) content filter"
                                            .into(),
                                })
                            } else {
                                BatchItem::Output(render_output(&request.model, input, digest))
                            }
                        })
                        .collect(),
                };
                let bytes = match serde_json::to_vec(&response) {
                    Ok(bytes) => Bytes::from(bytes),
                    Err(e) => {
                        let e = ApiError::new(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "internal",
                            e.to_string(),
                        );
                        return (e.into_response(), "500".into());
                    }
                };
                self.bill(&request, &rejected, bytes.clone());
                let billed = rejected.iter().filter(|r| !**r).count();
                (
                    json_bytes(StatusCode::OK, bytes),
                    format!("ok:{billed}/{}", rejected.len()),
                )
            }
        }
    }

    fn lookup(&self, key: &str, body_hash: &[u8; 32]) -> Lookup {
        match lock(&self.inner.ledger).stored.get(key) {
            None => Lookup::Miss,
            Some(stored) if stored.body_hash == *body_hash => {
                Lookup::Replay(stored.response.clone())
            }
            Some(_) => Lookup::Mismatch,
        }
    }

    /// Draws a call's fate; one lock of the RNG so a seeded run is
    /// reproducible call by call.
    fn draw(&self, config: &SimConfig, items: usize) -> Fate {
        let mut rng = lock(&self.inner.rng);
        match draw_fault(&mut rng, config.error_rate, config.rate_limit_rate, config.garbage_rate) {
            Some(Fault::ServerError) => Fate::Unavailable,
            Some(Fault::RateLimited) => Fate::RateLimited,
            Some(Fault::Garbage) => Fate::Garbage(GarbageKind::ALL[rng.gen_range(0..GarbageKind::ALL.len())]),
            None => Fate::Success {
                rejected: (0..items)
                    .map(|_| rng.gen::<f64>() < config.item_error_rate)
                    .collect(),
            },
        }
    }

    /// Bills a successful call's outputs and stores its response, in one
    /// critical section so that stats never show one without the other.
    fn bill(&self, request: &BatchRequest, rejected: &[bool], response: Bytes) {
        let mut ledger = lock(&self.inner.ledger);
        for (hash, &rejected) in request.input_hashes.iter().zip(rejected) {
            if rejected {
                ledger.item_errors += 1;
            } else {
                ledger.items += 1;
                *ledger.by_model.entry(request.model.clone()).or_default() += 1;
                *ledger.billed.entry(hash.clone()).or_default() += 1;
            }
        }
        if let Some(key) = &request.idempotency_key {
            ledger.stored.insert(
                key.clone(),
                Stored {
                    body_hash: request.body_hash,
                    response,
                },
            );
        }
    }
}

/// Exclusive use of one Idempotency-Key. On drop (including when the client
/// goes away and the handler is cancelled) it releases the key and removes
/// the map entry if nobody else is waiting for it.
struct KeyLock {
    guard: Option<OwnedMutexGuard<()>>,
    key: String,
    sim: Simulator,
}

impl Drop for KeyLock {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut locks = lock(&self.sim.inner.key_locks);
        // Clones of the Arc are only made under this map lock, so a count of
        // 1 (the map's own) means no call holds or awaits this key.
        if locks
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            locks.remove(&self.key);
        }
    }
}

enum Lookup {
    Miss,
    Replay(Bytes),
    Mismatch,
}

enum Fate {
    Unavailable,
    RateLimited,
    Garbage(GarbageKind),
    /// `rejected[i]`: item i is a `content_rejected` error.
    Success {
        rejected: Vec<bool>,
    },
}

/// The ways a 200 can break the contract; each must be refused by a client
/// that parses strictly and checks the number of results.
#[derive(Debug, Clone, Copy)]
enum GarbageKind {
    /// A valid response cut in the middle.
    Truncated,
    /// `{"results": "oops"}`.
    ResultsNotArray,
    /// One result fewer than inputs.
    TooFewResults,
    /// One result more than inputs.
    TooManyResults,
    /// An HTML error page from some proxy, with a 200.
    HtmlPage,
    /// Items that are neither `output` nor `error`.
    UnknownItems,
    /// Nothing at all.
    EmptyBody,
}

impl GarbageKind {
    const ALL: [GarbageKind; 7] = [
        GarbageKind::Truncated,
        GarbageKind::ResultsNotArray,
        GarbageKind::TooFewResults,
        GarbageKind::TooManyResults,
        GarbageKind::HtmlPage,
        GarbageKind::UnknownItems,
        GarbageKind::EmptyBody,
    ];
}

fn garbage_response(kind: GarbageKind, request: &BatchRequest) -> Response {
    let outputs = || -> Vec<Value> {
        request
            .inputs
            .iter()
            .zip(&request.input_digests)
            .map(|(input, digest)| json!({ "output": render_output(&request.model, input, digest) }))
            .collect()
    };
    let body = match kind {
        GarbageKind::Truncated => {
            let full = json!({ "results": outputs() }).to_string();
            // Cut at a char boundary: the input may hold multi-byte text.
            let mut cut = full.len() / 2;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            full[..cut].to_owned()
        }
        GarbageKind::ResultsNotArray => json!({ "results": "oops" }).to_string(),
        GarbageKind::TooFewResults => {
            let mut results = outputs();
            results.pop();
            json!({ "results": results }).to_string()
        }
        GarbageKind::TooManyResults => {
            let mut results = outputs();
            results.push(json!({ "output": { "url": format!("{CDN_BASE}/stray.png") } }));
            json!({ "results": results }).to_string()
        }
        GarbageKind::HtmlPage => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response();
        }
        GarbageKind::UnknownItems => {
            let results: Vec<Value> = request
                .inputs
                .iter()
                .map(|_| json!({ "status": "ok" }))
                .collect();
            json!({ "results": results }).to_string()
        }
        GarbageKind::EmptyBody => String::new(),
    };
    json_bytes(StatusCode::OK, Bytes::from(body))
}

/// What a successful item returns: shaped like a real image/video/audio
/// API's answer and a pure function of `(model, input)`.
fn render_output(model: &str, input: &Map<String, Value>, digest: &[u8; 32]) -> Map<String, Value> {
    let id = hex::encode(&digest[..16]);
    // Image APIs take 32-bit seeds; echo the caller's if it gave one.
    let derived_seed = digest
        .iter()
        .take(4)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    let seed = input
        .get("seed")
        .and_then(Value::as_u64)
        .unwrap_or(derived_seed);
    let int = |name: &str, default: u64| input.get(name).and_then(Value::as_u64).unwrap_or(default);
    let duration = |default: f64| {
        input
            .get("duration_s")
            .or_else(|| input.get("duration"))
            .and_then(Value::as_f64)
            .unwrap_or(default)
    };

    let mut output = Map::new();
    output.insert("id".into(), json!(format!("gen_{id}")));
    output.insert("model".into(), json!(model));
    output.insert("seed".into(), json!(seed));
    match MediaKind::of(model) {
        MediaKind::Image => {
            output.insert("url".into(), json!(format!("{CDN_BASE}/{model}/{id}.png")));
            output.insert("content_type".into(), json!("image/png"));
            output.insert("width".into(), json!(int("width", 1024)));
            output.insert("height".into(), json!(int("height", 1024)));
        }
        MediaKind::Video => {
            output.insert("url".into(), json!(format!("{CDN_BASE}/{model}/{id}.mp4")));
            output.insert("content_type".into(), json!("video/mp4"));
            output.insert("width".into(), json!(int("width", 1280)));
            output.insert("height".into(), json!(int("height", 720)));
            output.insert("duration_s".into(), json!(duration(6.0)));
        }
        MediaKind::Audio => {
            output.insert("url".into(), json!(format!("{CDN_BASE}/{model}/{id}.wav")));
            output.insert("content_type".into(), json!("audio/wav"));
            output.insert("duration_s".into(), json!(duration(30.0)));
        }
    }
    output
}

enum MediaKind {
    Image,
    Video,
    Audio,
}

impl MediaKind {
    /// By name, so new models work without a table: `minimax-video` is a
    /// video model, `stable-audio` an audio one, anything else makes images.
    fn of(model: &str) -> Self {
        if model.contains("video") {
            MediaKind::Video
        } else if model.contains("audio") || model.contains("music") {
            MediaKind::Audio
        } else {
            MediaKind::Image
        }
    }
}

/// A request that passed validation: only this type reaches the draws.
struct BatchRequest {
    model: String,
    inputs: Vec<Map<String, Value>>,
    input_hashes: Vec<String>,
    /// The digests behind `input_hashes`, which also seed each output.
    input_digests: Vec<[u8; 32]>,
    /// Hash of the canonical body, compared on replay.
    body_hash: [u8; 32],
    idempotency_key: Option<String>,
}

impl BatchRequest {
    fn parse(body: &[u8], idempotency_key: Option<String>) -> Result<Self, ApiError> {
        let invalid =
            |message: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message);
        let value: Value = serde_json::from_slice(body)
            .map_err(|e| invalid(format!("body is not valid JSON: {e}")))?;
        let Value::Object(mut body) = value else {
            return Err(invalid("body must be a JSON object".into()));
        };
        let mut canonical = Vec::new();
        canonical_object(&body, &mut canonical);
        let body_hash: [u8; 32] = Sha256::digest(&canonical).into();
        let model = match body.remove("model") {
            Some(Value::String(model)) if !model.is_empty() => model,
            Some(_) => return Err(invalid("'model' must be a non-empty string".into())),
            None => return Err(invalid("'model' is required".into())),
        };
        let inputs = match body.remove("inputs") {
            Some(Value::Array(inputs)) if !inputs.is_empty() => inputs,
            Some(Value::Array(_)) => return Err(invalid("'inputs' must not be empty".into())),
            Some(_) => return Err(invalid("'inputs' must be an array of objects".into())),
            None => return Err(invalid("'inputs' is required".into())),
        };
        let inputs = inputs
            .into_iter()
            .enumerate()
            .map(|(i, input)| match input {
                Value::Object(input) => Ok(input),
                _ => Err(invalid(format!("inputs[{i}] must be an object"))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let input_digests: Vec<[u8; 32]> = inputs
            .iter()
            .map(|input| {
                canonical.clear();
                canonical_object(input, &mut canonical);
                digest_of(&model, &canonical)
            })
            .collect();
        let input_hashes = input_digests.iter().map(hex::encode).collect();
        Ok(Self {
            model,
            inputs,
            input_hashes,
            input_digests,
            body_hash,
            idempotency_key,
        })
    }
}

/// Why a bearer key was refused. One check for every route; each route
/// words the refusal in its own error shape.
enum AuthFailure {
    /// No `Authorization: Bearer <non-empty key>` header.
    Missing,
    /// A key other than [`SimConfig::api_key`].
    Wrong,
}

fn check_bearer(config: &SimConfig, headers: &HeaderMap) -> Result<(), AuthFailure> {
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|key| !key.is_empty())
        .ok_or(AuthFailure::Missing)?;
    match &config.api_key {
        Some(expected) if expected != key => Err(AuthFailure::Wrong),
        _ => Ok(()),
    }
}

fn authorize(config: &SimConfig, headers: &HeaderMap) -> Result<(), ApiError> {
    check_bearer(config, headers).map_err(|failure| {
        let message = match failure {
            AuthFailure::Missing => "missing 'Authorization: Bearer <key>'",
            AuthFailure::Wrong => "invalid API key",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    })
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match value.to_str().map(str::trim) {
        Ok(key) if !key.is_empty() => Ok(Some(key.to_owned())),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "Idempotency-Key must be a non-empty ASCII string",
        )),
    }
}

/// A whole-call error: `{"error": {"code", "message"}}` with its status.
struct ApiError {
    status: StatusCode,
    error: ItemError,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            error: ItemError {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.error }))).into_response()
    }
}

/// A call's fault at the transport level, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    ServerError,
    RateLimited,
    Garbage,
}

/// Draws a call's fault with these rates, in one fixed order (server
/// error, then rate limit, then garbage), so that a seeded run is
/// reproducible call by call; the caller draws whatever else the call
/// needs (a garbage kind, per-item rejections) from the same locked
/// generator afterwards. `gen::<f64>()` is in [0, 1): a rate of 1.0 always
/// hits, 0.0 never.
pub(crate) fn draw_fault(rng: &mut StdRng, error_rate: f64, rate_limit_rate: f64, garbage_rate: f64) -> Option<Fault> {
    if rng.gen::<f64>() < error_rate {
        Some(Fault::ServerError)
    } else if rng.gen::<f64>() < rate_limit_rate {
        Some(Fault::RateLimited)
    } else if rng.gen::<f64>() < garbage_rate {
        Some(Fault::Garbage)
    } else {
        None
    }
}

impl Simulator {
    /// A call's latency, then, drawn from `rng` with `slow_rate`, a hang
    /// of `slow`. If the client gives up first, the handler's future is
    /// dropped with the connection and nothing is billed or stored.
    pub(crate) async fn latency_and_hang(&self, config: &SimConfig, rng: &Mutex<StdRng>) {
        if !config.latency.is_zero() {
            tokio::time::sleep(config.latency).await;
        }
        if config.slow_rate > 0.0 && lock(rng).gen::<f64>() < config.slow_rate {
            self.record(|l| l.slow += 1);
            tokio::time::sleep(config.slow).await;
        }
    }
}

fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn post_batch(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    sim.record(|l| l.batches += 1);
    let config = sim.config();
    sim.latency_and_hang(&config, &sim.inner.rng).await;
    let (response, outcome) = sim.handle_batch(&headers, &body).await;
    tracing::debug!(
        status = response.status().as_u16(),
        outcome,
        idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        "batch call"
    );
    response
}

async fn get_stats(State(sim): State<Simulator>) -> Json<SimStats> {
    Json(sim.stats())
}

async fn get_billed_inputs(State(sim): State<Simulator>) -> Json<BTreeMap<String, u64>> {
    Json(sim.billed_inputs())
}

async fn post_reset(State(sim): State<Simulator>) -> StatusCode {
    sim.reset();
    StatusCode::NO_CONTENT
}

/// A simulator serving on a local port from a background task, which is
/// aborted when this is dropped.
pub struct RunningSim {
    /// Base URL, e.g. `http://127.0.0.1:41234`: the worker's `PROVIDER_URL`.
    pub url: String,
    /// The bound address.
    pub addr: SocketAddr,
    /// The simulator's state, to read stats or change rates.
    pub sim: Simulator,
    task: JoinHandle<()>,
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a simulator on `127.0.0.1:0` in a background tokio task.
///
/// # Errors
///
/// When no local port can be bound.
pub async fn spawn(config: SimConfig) -> anyhow::Result<RunningSim> {
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .context("binding the provider simulator")?;
    let addr = listener
        .local_addr()
        .context("reading the simulator's address")?;
    let sim = Simulator::new(config);
    let app = sim.router();
    let task = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "provider simulator stopped");
        }
    });
    Ok(RunningSim {
        url: format!("http://{addr}"),
        addr,
        sim,
        task,
    })
}

/// Serves `sim` on `listener` until `shutdown` completes, then lets calls in
/// flight finish. Used by the `provider-sim` binary.
///
/// # Errors
///
/// When accepting connections fails.
pub async fn serve(
    listener: TcpListener,
    sim: Simulator,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, sim.router())
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving the provider simulator")
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::future::join_all;

    const KEY: &str = "sim-test-key";

    async fn start(config: SimConfig) -> RunningSim {
        spawn(config).await.expect("simulator starts")
    }

    fn images(n: usize) -> Value {
        let inputs: Vec<Value> = (0..n)
            .map(|i| json!({ "prompt": format!("a lighthouse, take {i}"), "width": 512 + i }))
            .collect();
        json!({ "model": "flux-schnell", "inputs": inputs })
    }

    async fn call(
        sim: &RunningSim,
        idempotency_key: Option<&str>,
        body: &Value,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(format!("{}/v1/batch", sim.url))
            .bearer_auth(KEY)
            .json(body);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        request.send().await.expect("request reaches the simulator")
    }

    /// Parses a body the way a strict worker must: the contract's shape and
    /// exactly one result per input.
    fn parse_contract(body: &[u8], inputs: usize) -> Result<BatchResponse, String> {
        let response: BatchResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        if response.results.len() != inputs {
            return Err(format!(
                "{} results for {inputs} inputs",
                response.results.len()
            ));
        }
        Ok(response)
    }

    fn output(item: &BatchItem) -> &Map<String, Value> {
        match item {
            BatchItem::Output(output) => output,
            BatchItem::Error(e) => panic!("expected an output, got {e:?}"),
        }
    }

    #[tokio::test]
    async fn success_outputs_are_deterministic_and_in_input_order() {
        let sim = start(SimConfig::default()).await;
        let body = images(3);

        let first = call(&sim, Some("batch-1"), &body).await;
        assert_eq!(first.status(), 200);
        let first = parse_contract(&first.bytes().await.unwrap(), 3).unwrap();
        // Another key and no key: fresh calls, same outputs.
        let second = call(&sim, Some("batch-2"), &body)
            .await
            .bytes()
            .await
            .unwrap();
        let third = call(&sim, None, &body).await.bytes().await.unwrap();
        assert_eq!(first, parse_contract(&second, 3).unwrap());
        assert_eq!(first, parse_contract(&third, 3).unwrap());

        for (i, item) in first.results.iter().enumerate() {
            let output = output(item);
            assert_eq!(
                output["width"],
                json!(512 + i),
                "result {i} belongs to input {i}"
            );
            assert_eq!(output["height"], json!(1024));
            assert_eq!(output["model"], json!("flux-schnell"));
            let url = output["url"].as_str().unwrap();
            assert!(
                url.starts_with("https://cdn.sim.offpeak.test/flux-schnell/")
                    && url.ends_with(".png"),
                "{url}"
            );
        }
        let urls: Vec<_> = first
            .results
            .iter()
            .map(|item| output(item)["url"].clone())
            .collect();
        assert_ne!(urls[0], urls[1]);

        let stats = sim.sim.stats();
        assert_eq!((stats.batches, stats.items, stats.replays), (3, 9, 0));
        assert_eq!(stats.by_model["flux-schnell"], 9);
        // The same inputs under three different batches: billed three times each.
        assert_eq!(stats.max_billed_per_input, 3);
        let hash = input_hash("flux-schnell", &body["inputs"][0]);
        assert_eq!(sim.sim.billed_inputs()[&hash], 3);
    }

    #[tokio::test]
    async fn input_key_order_does_not_change_output_or_hash() {
        let sim = start(SimConfig::default()).await;
        let a: Value =
            serde_json::from_str(r#"{"prompt":"cat","width":640,"style":{"a":1,"b":2}}"#).unwrap();
        let b: Value =
            serde_json::from_str(r#"{"style":{"b":2,"a":1},"width":640,"prompt":"cat"}"#).unwrap();
        assert_eq!(input_hash("flux-dev", &a), input_hash("flux-dev", &b));
        assert_ne!(input_hash("flux-dev", &a), input_hash("flux-pro", &a));
        let ra = call(&sim, None, &json!({ "model": "flux-dev", "inputs": [a] }))
            .await
            .bytes()
            .await
            .unwrap();
        let rb = call(&sim, None, &json!({ "model": "flux-dev", "inputs": [b] }))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(ra, rb);
    }

    #[tokio::test]
    async fn video_and_audio_models_return_their_media() {
        let sim = start(SimConfig::default()).await;
        let video = call(&sim, None, &json!({ "model": "minimax-video", "inputs": [{ "prompt": "waves", "duration_s": 10 }] }))
            .await
            .bytes()
            .await
            .unwrap();
        let video = parse_contract(&video, 1).unwrap();
        let video = output(&video.results[0]);
        assert!(video["url"].as_str().unwrap().ends_with(".mp4"));
        assert_eq!(video["duration_s"], json!(10.0));

        let audio = call(
            &sim,
            None,
            &json!({ "model": "stable-audio", "inputs": [{ "prompt": "rain" }] }),
        )
        .await
        .bytes()
        .await
        .unwrap();
        let audio = parse_contract(&audio, 1).unwrap();
        let audio = output(&audio.results[0]);
        assert!(audio["url"].as_str().unwrap().ends_with(".wav"));
        assert!(audio["duration_s"].as_f64().unwrap() > 0.0);
        assert!(audio.get("width").is_none());
    }

    #[tokio::test]
    async fn error_rate_one_answers_503_and_bills_nothing() {
        let sim = start(SimConfig {
            error_rate: 1.0,
            ..SimConfig::default()
        })
        .await;
        for i in 0..5 {
            let response = call(&sim, Some(&format!("b{i}")), &images(2)).await;
            assert_eq!(response.status(), 503);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unavailable");
        }
        let stats = sim.sim.stats();
        assert_eq!((stats.batches, stats.errors, stats.items), (5, 5, 0));

        // Not stored: the same key succeeds once the outage is over.
        sim.sim.set_config(SimConfig::default());
        let response = call(&sim, Some("b0"), &images(2)).await;
        assert_eq!(response.status(), 200);
        assert!(response.headers().get(IDEMPOTENT_REPLAYED).is_none());
        assert_eq!(sim.sim.stats().items, 2);
    }

    #[tokio::test]
    async fn rate_limit_rate_one_answers_429_with_retry_after() {
        let sim = start(SimConfig {
            rate_limit_rate: 1.0,
            ..SimConfig::default()
        })
        .await;
        let response = call(&sim, Some("b"), &images(1)).await;
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "rate_limited");
        let stats = sim.sim.stats();
        assert_eq!((stats.batches, stats.rate_limited, stats.items), (1, 1, 0));
    }

    #[tokio::test]
    async fn garbage_rate_one_breaks_the_contract_and_bills_nothing() {
        let sim = start(SimConfig {
            garbage_rate: 1.0,
            seed: Some(42),
            ..SimConfig::default()
        })
        .await;
        let mut bodies = std::collections::HashSet::new();
        for n in [1, 3] {
            for i in 0..15 {
                let response = call(&sim, Some(&format!("g{n}-{i}")), &images(n)).await;
                assert_eq!(response.status(), 200);
                let body = response.bytes().await.unwrap();
                assert!(
                    parse_contract(&body, n).is_err(),
                    "garbage parsed as a valid response: {body:?}"
                );
                bodies.insert(body);
            }
        }
        assert!(
            bodies.len() >= 4,
            "garbage should vary, got {} kinds",
            bodies.len()
        );
        let stats = sim.sim.stats();
        assert_eq!(
            (
                stats.batches,
                stats.garbage,
                stats.items,
                stats.max_billed_per_input
            ),
            (30, 30, 0, 0)
        );

        // Not stored: a retry under the same key is processed afresh.
        sim.sim.set_config(SimConfig::default());
        let response = call(&sim, Some("g3-0"), &images(3)).await;
        assert!(response.headers().get(IDEMPOTENT_REPLAYED).is_none());
        assert!(parse_contract(&response.bytes().await.unwrap(), 3).is_ok());
        assert_eq!(sim.sim.stats().items, 3);
    }

    #[tokio::test]
    async fn item_error_rate_one_rejects_every_item_without_billing() {
        let sim = start(SimConfig {
            item_error_rate: 1.0,
            ..SimConfig::default()
        })
        .await;
        let body = call(&sim, Some("b"), &images(4))
            .await
            .bytes()
            .await
            .unwrap();
        let response = parse_contract(&body, 4).unwrap();
        for item in &response.results {
            assert!(
                matches!(item, BatchItem::Error(e) if e.code == CONTENT_REJECTED),
                "{item:?}"
            );
        }
        let stats = sim.sim.stats();
        assert_eq!(
            (stats.items, stats.item_errors, stats.max_billed_per_input),
            (0, 4, 0)
        );
    }

    #[tokio::test]
    async fn seeded_item_errors_are_reproducible() {
        let config = SimConfig {
            item_error_rate: 0.5,
            seed: Some(7),
            ..SimConfig::default()
        };
        let pattern = |body: &[u8]| -> Vec<bool> {
            parse_contract(body, 20)
                .unwrap()
                .results
                .iter()
                .map(|i| matches!(i, BatchItem::Error(_)))
                .collect()
        };
        let a = start(config.clone()).await;
        let b = start(config).await;
        let pa = pattern(&call(&a, None, &images(20)).await.bytes().await.unwrap());
        let pb = pattern(&call(&b, None, &images(20)).await.bytes().await.unwrap());
        assert_eq!(pa, pb);
        assert!(pa.contains(&true) && pa.contains(&false), "{pa:?}");
    }

    #[tokio::test]
    async fn replay_returns_the_same_body_and_is_not_billed_again() {
        let sim = start(SimConfig {
            item_error_rate: 0.5,
            ..SimConfig::default()
        })
        .await;
        let first = call(&sim, Some("batch-7"), &images(10)).await;
        assert!(first.headers().get(IDEMPOTENT_REPLAYED).is_none());
        let first = first.bytes().await.unwrap();
        let billed = sim.sim.stats().items;

        // Failures switched on: a replay is served from the store regardless.
        sim.sim.set_config(SimConfig {
            error_rate: 1.0,
            ..SimConfig::default()
        });
        let again = call(&sim, Some("batch-7"), &images(10)).await;
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()[IDEMPOTENT_REPLAYED], "true");
        assert_eq!(
            again.bytes().await.unwrap(),
            first,
            "a replay is byte-identical, item errors included"
        );

        let stats = sim.sim.stats();
        assert_eq!((stats.batches, stats.replays, stats.items), (2, 1, billed));
        assert!(stats.max_billed_per_input <= 1);
    }

    #[tokio::test]
    async fn concurrent_calls_with_the_same_key_bill_once() {
        let sim = start(SimConfig {
            latency: Duration::from_millis(100),
            ..SimConfig::default()
        })
        .await;
        let body = images(5);
        let responses = join_all((0..8).map(|_| call(&sim, Some("same-batch"), &body))).await;
        let mut bodies = Vec::new();
        for response in responses {
            assert_eq!(response.status(), 200);
            bodies.push(response.bytes().await.unwrap());
        }
        assert!(bodies.iter().all(|b| *b == bodies[0]));
        let stats = sim.sim.stats();
        assert_eq!((stats.batches, stats.items, stats.replays), (8, 5, 7));
        assert_eq!(stats.max_billed_per_input, 1);
    }

    #[tokio::test]
    async fn same_key_with_a_different_body_is_422() {
        let sim = start(SimConfig::default()).await;
        assert_eq!(call(&sim, Some("k"), &images(2)).await.status(), 200);
        let response = call(&sim, Some("k"), &images(3)).await;
        assert_eq!(response.status(), 422);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "idempotency_mismatch");
        assert_eq!(sim.sim.stats().items, 2);
    }

    #[tokio::test]
    async fn malformed_bodies_are_400() {
        let sim = start(SimConfig::default()).await;
        let url = format!("{}/v1/batch", sim.url);
        let client = reqwest::Client::new();
        let bad = [
            "not json".to_owned(),
            "[]".to_owned(),
            json!({ "inputs": [{}] }).to_string(),
            json!({ "model": 5, "inputs": [{}] }).to_string(),
            json!({ "model": "flux-schnell" }).to_string(),
            json!({ "model": "flux-schnell", "inputs": [] }).to_string(),
            json!({ "model": "flux-schnell", "inputs": {} }).to_string(),
            json!({ "model": "flux-schnell", "inputs": [{}, "prompt"] }).to_string(),
        ];
        for body in &bad {
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
            assert_eq!(error["error"]["code"], "invalid_request", "{body}");
        }
        let stats = sim.sim.stats();
        assert_eq!(
            (stats.batches, stats.rejected, stats.items),
            (bad.len() as u64, bad.len() as u64, 0)
        );
    }

    #[tokio::test]
    async fn wrong_or_missing_key_is_401() {
        let sim = start(SimConfig {
            api_key: Some(KEY.into()),
            ..SimConfig::default()
        })
        .await;
        let url = format!("{}/v1/batch", sim.url);
        let client = reqwest::Client::new();
        let wrong = client
            .post(&url)
            .bearer_auth("nope")
            .json(&images(1))
            .send()
            .await
            .unwrap();
        assert_eq!(wrong.status(), 401);
        let missing = client.post(&url).json(&images(1)).send().await.unwrap();
        assert_eq!(missing.status(), 401);
        assert_eq!(call(&sim, None, &images(1)).await.status(), 200);

        // Without a configured key any non-empty bearer is accepted, none is not.
        let open = start(SimConfig::default()).await;
        let url = format!("{}/v1/batch", open.url);
        assert_eq!(
            client
                .post(&url)
                .bearer_auth("anything")
                .json(&images(1))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            client
                .post(&url)
                .json(&images(1))
                .send()
                .await
                .unwrap()
                .status(),
            401
        );
    }

    #[tokio::test]
    async fn stats_routes_serve_and_reset_the_ledger() {
        let sim = start(SimConfig::default()).await;
        let client = reqwest::Client::new();
        assert_eq!(
            client
                .get(format!("{}/healthz", sim.url))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
            "ok"
        );
        call(&sim, Some("k"), &images(2)).await;

        let stats: SimStats = client
            .get(format!("{}/v1/stats", sim.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(stats, sim.sim.stats());
        assert_eq!((stats.items, stats.max_billed_per_input), (2, 1));
        let inputs: BTreeMap<String, u64> = client
            .get(format!("{}/v1/stats/inputs", sim.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(inputs.len(), 2);
        assert!(inputs.contains_key(&input_hash("flux-schnell", &images(2)["inputs"][1])));

        let reset = client
            .post(format!("{}/v1/stats/reset", sim.url))
            .send()
            .await
            .unwrap();
        assert!(reset.status().is_success());
        assert_eq!(sim.sim.stats(), SimStats::default());
        assert!(sim.sim.billed_inputs().is_empty());
        // The stored response went too: the key is processed (and billed) afresh.
        let response = call(&sim, Some("k"), &images(2)).await;
        assert!(response.headers().get(IDEMPOTENT_REPLAYED).is_none());
        assert_eq!(sim.sim.stats().items, 2);
    }

    #[test]
    fn config_debug_redacts_the_api_key() {
        let config = SimConfig {
            api_key: Some("secret-key".into()),
            ..SimConfig::default()
        };
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("secret-key") && debug.contains("redacted"),
            "{debug}"
        );
    }
}
