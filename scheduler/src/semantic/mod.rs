//! The release round's semantic step: a due job that asked for the
//! semantic cache and was not answered by the exact cache is answered from
//! an earlier job whose prompt is a rewording of its own.
//!
//! For the round's semantic jobs still to send (after `crate::coalesce`),
//! in the round's transaction:
//!
//! 1. read their inputs; a job whose input has no prompt string at
//!    `OFFPEAK_SEMANTIC_FIELD` is sent as it is;
//! 2. embed the prompts that have no stored vector, one call per chunk of
//!    [`embeddings::MAX_TEXTS_PER_CALL`], the chunks concurrently, under one
//!    deadline. **Fail open:** a job whose embedding failed is a miss (a log
//!    line and `offpeak_embeddings_calls_total{outcome}`), sent to the
//!    provider like any other, never failed and never held back longer than
//!    the deadline; after a failed call the next rounds skip the endpoint
//!    for 5 s, doubling per failure up to 60 s (a circuit breaker,
//!    `offpeak_embeddings_breaker_open`), so an outage does not cost every
//!    round its deadline;
//! 3. bring the index up to date for each scope (the vectors other rounds,
//!    and other replicas, stored since; `offpeak_store::semantic::load_scope`)
//!    and search it: candidates at or above the threshold, most similar
//!    first, for at most [`SemanticConfig::search_budget`] a round (the jobs left over stay
//!    `held` and lead the next round, which runs at once);
//! 4. check the candidates in the store (`offpeak_store::semantic::sources`:
//!    provider-made success within the TTL, same scope), answer each job
//!    from its most similar valid source (`cache_similarity`, 0 credits, a
//!    ledger row marked `semantic`), and
//! 5. store the vectors of the jobs that go to the provider: they are the
//!    sources of later rewordings.
//!
//! Two rewordings due in the same round are both sent: neither has a
//! result yet. (The exact cache's coalescing covers identical jobs.)

pub mod embeddings;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use offpeak_core::prices::PriceTable;
use offpeak_core::semantic::{self as rules, Index, PromptField};
use offpeak_store::cache::{self, Answer, CacheHit};
use offpeak_store::release::ClaimedJob;
use offpeak_store::semantic::{self as db, NewVector};

use crate::admission::CacheConfig;
use crate::metrics;
pub use embeddings::{EmbeddingsConfig, Embeddings};

/// Default least cosine similarity of a semantic hit.
pub const THRESHOLD_DEFAULT: f32 = 0.95;
/// Candidates checked per job, most similar first.
const CANDIDATES: usize = 8;
/// How much older than the TTL's start a stored vector may be and still be
/// loaded: a vector is stored when its job is sent, and the job finishes
/// (the time the TTL counts from) after that, within its attempts.
const VECTOR_GRACE: TimeDelta = TimeDelta::days(1);
/// Default longest a round searches the index
/// ([`SemanticConfig::search_budget`]): the round holds the release lock,
/// and a tenant with many semantic jobs against a large scope must not hold
/// back every other tenant's release. At least one job is searched per
/// round, so each round makes progress.
pub const SEARCH_BUDGET_DEFAULT: Duration = Duration::from_millis(250);
/// How often a scope's expired vectors are dropped from memory.
const EVICT_EVERY: Duration = Duration::from_secs(600);
/// After a failed embeddings call, how long rounds skip the endpoint
/// (their semantic jobs are misses at once), doubled for each failure in a
/// row up to [`BREAKER_MAX`]: a down or hanging endpoint would otherwise
/// cost every release round, every tenant's, its full deadline.
const BREAKER_BASE: Duration = Duration::from_secs(5);
const BREAKER_MAX: Duration = Duration::from_secs(60);

/// The semantic cache's settings.
#[derive(Debug, Clone)]
pub struct SemanticConfig {
    /// `None`: no embeddings endpoint (`OFFPEAK_EMBEDDINGS_URL` unset);
    /// jobs that ask for the semantic cache get the exact cache only.
    pub embeddings: Option<EmbeddingsConfig>,
    /// Least cosine similarity of a hit (`OFFPEAK_SEMANTIC_THRESHOLD`).
    pub threshold: f32,
    /// Where the prompt is in an input (`OFFPEAK_SEMANTIC_FIELD`).
    pub field: PromptField,
    /// The longest a round searches (`OFFPEAK_SEMANTIC_SEARCH_BUDGET_MS`).
    pub search_budget: Duration,
}

impl Default for SemanticConfig {
    fn default() -> Self {
        Self { embeddings: None, threshold: THRESHOLD_DEFAULT, field: PromptField::default(), search_budget: SEARCH_BUDGET_DEFAULT }
    }
}

/// What the step did in a round.
#[derive(Debug, Default)]
pub struct SemanticStep {
    /// Jobs to batch and send to the provider.
    pub send: Vec<ClaimedJob>,
    /// Jobs answered by a rewording (written).
    pub answered: u64,
    /// Jobs left `held` because the round's search budget was spent: the
    /// next round, which should run at once, takes them first.
    pub deferred: u64,
}

#[derive(Debug)]
struct ScopeState {
    last_evicted: Instant,
}

/// The circuit breaker of the embeddings endpoint.
#[derive(Debug, Default)]
struct Breaker {
    /// Failed rounds in a row.
    failures: u32,
    /// Until when rounds skip the endpoint.
    open_until: Option<Instant>,
}

/// The embeddings client and the index, held by the release loop.
pub struct SemanticCache {
    config: SemanticConfig,
    client: Option<Embeddings>,
    index: Mutex<Index>,
    scopes: Mutex<HashMap<Vec<u8>, ScopeState>>,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for SemanticCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SemanticCache").field("config", &self.config).finish_non_exhaustive()
    }
}

/// A job of the step with its scope and prompt.
struct Asking {
    job: ClaimedJob,
    scope: Vec<u8>,
    prompt: String,
    vector: Option<Vec<f32>>,
    /// Its vector was stored before (it was sent once already).
    stored: bool,
}

impl SemanticCache {
    /// # Errors
    /// The embeddings client cannot be built.
    pub fn new(config: SemanticConfig) -> Result<Self, reqwest::Error> {
        let client = config.embeddings.clone().map(Embeddings::new).transpose()?;
        Ok(Self { config, client, index: Mutex::default(), scopes: Mutex::default(), breaker: Mutex::default() })
    }

    /// The step that sends every job on (no embeddings endpoint).
    pub fn disabled(config: SemanticConfig) -> Self {
        Self {
            config: SemanticConfig { embeddings: None, ..config },
            client: None,
            index: Mutex::default(),
            scopes: Mutex::default(),
            breaker: Mutex::default(),
        }
    }

    /// Whether jobs can get semantic hits (an embeddings endpoint is set).
    pub fn enabled(&self) -> bool {
        self.client.is_some()
    }

    fn index(&self) -> std::sync::MutexGuard<'_, Index> {
        // A panic while holding the lock leaves a consistent index (each
        // method completes its change or does none), so keep using it.
        self.index.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the step on the jobs the exact cache did not answer.
    ///
    /// # Errors
    /// Database errors; the round rolls back. Embeddings errors are misses.
    pub async fn run(
        &self,
        conn: &mut PgConnection,
        jobs: Vec<ClaimedJob>,
        cache_config: CacheConfig,
        prices: &PriceTable,
        now: DateTime<Utc>,
    ) -> Result<SemanticStep, sqlx::Error> {
        let Some(client) = self.client.as_ref().filter(|_| cache_config.enabled()) else {
            return Ok(SemanticStep { send: jobs, ..SemanticStep::default() });
        };
        let (semantic, mut send): (Vec<ClaimedJob>, Vec<ClaimedJob>) = jobs.into_iter().partition(|j| j.semantic);
        if semantic.is_empty() {
            return Ok(SemanticStep { send, ..SemanticStep::default() });
        }
        let started = Instant::now();
        let ids: Vec<Uuid> = semantic.iter().map(|j| j.id).collect();
        let inputs: HashMap<Uuid, db::JobInput> = db::inputs(conn, &ids).await?.into_iter().map(|i| (i.id, i)).collect();
        let stored = db::stored(conn, &ids, client.model()).await?;
        let mut asking = Vec::new();
        for job in semantic {
            let scoped = inputs.get(&job.id).and_then(|i| rules::scope(i.tenant_id, &i.model, &i.input, &self.config.field));
            match scoped {
                Some((scope, prompt)) => {
                    let vector = stored.get(&job.id).and_then(|b| rules::decode(b)).and_then(rules::normalize);
                    let was_stored = vector.is_some();
                    asking.push(Asking { job, scope, prompt, vector, stored: was_stored });
                }
                None => {
                    metrics::SEMANTIC_LOOKUPS.with_label_values(&["no_prompt"]).inc();
                    send.push(job);
                }
            }
        }

        // The index, up to date for the scopes asked about.
        let since = cache_config.since(now);
        let scopes: HashSet<Vec<u8>> = asking.iter().map(|a| a.scope.clone()).collect();
        for scope in &scopes {
            self.refresh(conn, scope, client.model(), since).await?;
        }

        self.embed_missing(client, &mut asking).await;
        self.drop_misshapen(&mut asking);
        // The search, within the round's budget: the jobs it leaves stay
        // `held` (their vectors stored, so they are not embedded again) and
        // are the first the next round claims.
        let searched_from = Instant::now();
        let mut found: Vec<Vec<(Uuid, f32)>> = Vec::with_capacity(asking.len());
        {
            let index = self.index();
            for a in &asking {
                if !found.is_empty() && searched_from.elapsed() >= self.config.search_budget {
                    break;
                }
                found.push(a.vector.as_ref().map_or_else(Vec::new, |v| index.search(&a.scope, v, self.config.threshold, CANDIDATES)));
            }
        }
        let deferred = asking.split_off(found.len());
        let candidates: Vec<Uuid> = found.iter().flatten().map(|c| c.0).collect::<HashSet<_>>().into_iter().collect();
        let sources = db::sources(conn, &candidates, since).await?;

        let mut answers = Vec::new();
        let mut models = HashMap::new();
        let mut misses = Vec::new();
        for (a, found) in asking.into_iter().zip(found) {
            let best = found.iter().find_map(|(id, sim)| sources.get(id).filter(|s| s.scope == a.scope && *id != a.job.id).map(|s| (s, *sim)));
            match best {
                Some((source, similarity)) => {
                    tracing::debug!(job_id = %a.job.id, source = %source.id, similarity, "semantic hit");
                    models.insert(a.job.id, a.job.model.clone());
                    answers.push(Answer {
                        id: a.job.id,
                        hit: CacheHit { source: source.id, result: source.result.clone() },
                        list_credits: prices.price(&a.job.model).unwrap_or(0),
                        similarity: Some(similarity),
                    });
                }
                None => {
                    let outcome = if a.vector.is_some() { "miss" } else { "no_vector" };
                    metrics::SEMANTIC_LOOKUPS.with_label_values(&[outcome]).inc();
                    misses.push(a);
                }
            }
        }
        let answered: HashSet<Uuid> = cache::answer(conn, &answers, now).await?.into_iter().collect();
        for a in answers.iter().filter(|a| answered.contains(&a.id)) {
            let model = models.get(&a.id).map_or("", String::as_str);
            metrics::SEMANTIC_LOOKUPS.with_label_values(&["hit"]).inc();
            metrics::CACHE_HITS.with_label_values(&[model, "semantic"]).inc();
            metrics::CREDITS_SAVED.with_label_values(&[model, "semantic"]).inc_by(u64::try_from(a.list_credits).unwrap_or(0));
        }

        let vectors: Vec<NewVector> = misses
            .iter()
            .chain(&deferred)
            .filter(|a| !a.stored)
            .filter_map(|a| a.vector.as_ref().map(|v| NewVector { job_id: a.job.id, scope: a.scope.clone(), embedding: rules::encode(v) }))
            .collect();
        db::store(conn, &vectors, client.model(), now).await?;
        send.extend(misses.into_iter().map(|a| a.job));
        metrics::SEMANTIC_STEP_SECONDS.observe(started.elapsed().as_secs_f64());
        metrics::SEMANTIC_INDEX_VECTORS.set(self.index().len() as i64);
        if !deferred.is_empty() {
            metrics::SEMANTIC_LOOKUPS.with_label_values(&["deferred"]).inc_by(deferred.len() as u64);
            tracing::debug!(jobs = deferred.len(), "semantic search budget spent: jobs left for the next round");
        }
        Ok(SemanticStep { send, answered: answered.len() as u64, deferred: deferred.len() as u64 })
    }

    /// Embeds the prompts without a vector: chunks in parallel, one
    /// deadline (the client's); a failed chunk leaves its jobs without one.
    async fn embed_missing(&self, client: &Embeddings, asking: &mut [Asking]) {
        let todo: Vec<usize> = (0..asking.len()).filter(|&i| asking[i].vector.is_none()).collect();
        if todo.is_empty() {
            return;
        }
        let open = self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner).open_until.is_some_and(|t| Instant::now() < t);
        if open {
            metrics::EMBEDDINGS_CALLS.with_label_values(&["skipped"]).inc();
            tracing::debug!(jobs = todo.len(), "embeddings endpoint skipped after recent failures: these jobs are misses");
            return;
        }
        let chunks: Vec<Vec<usize>> = todo.chunks(embeddings::MAX_TEXTS_PER_CALL).map(<[usize]>::to_vec).collect();
        let calls = chunks.iter().map(|chunk| {
            let texts: Vec<String> = chunk.iter().map(|&i| asking[i].prompt.clone()).collect();
            async move { client.embed(&texts).await }
        });
        let results = futures_util::future::join_all(calls).await;
        self.record(results.iter().all(Result::is_ok));
        for (chunk, result) in chunks.iter().zip(results) {
            match result {
                Ok(vectors) => {
                    for (&i, v) in chunk.iter().zip(vectors) {
                        asking[i].vector = Some(v);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, jobs = chunk.len(),
                        "embeddings failed: these jobs get no semantic lookup and go to the provider (fail open)");
                }
            }
        }
    }

    /// Closes the breaker after a round whose calls all answered, or opens
    /// it for [`BREAKER_BASE`] doubled per failed round in a row.
    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if ok {
            if b.failures > 0 {
                tracing::info!("embeddings endpoint answering again; semantic lookups resume");
            }
            *b = Breaker::default();
        } else {
            b.failures = b.failures.saturating_add(1);
            let pause = BREAKER_BASE.saturating_mul(1 << (b.failures - 1).min(4)).min(BREAKER_MAX);
            b.open_until = Some(Instant::now() + pause);
            tracing::warn!(pause_secs = pause.as_secs(), failures = b.failures,
                "embeddings endpoint failed; release rounds skip it for a while (their semantic jobs are misses)");
        }
        metrics::EMBEDDINGS_BREAKER_OPEN.set(i64::from(!ok));
    }

    /// Drops new vectors whose length is not the one their scope's vectors
    /// have (else the configured `dimensions`, else any scope's): an answer that breaks the
    /// contract in a way a single vector cannot show (a truncated vector
    /// looks like a shorter model's). Such a job is a miss, and its vector
    /// is not stored to mislead later rounds.
    fn drop_misshapen(&self, asking: &mut [Asking]) {
        let configured = self.config.embeddings.as_ref().and_then(|e| e.dimensions).map(|d| d as usize);
        let index = self.index();
        for a in asking.iter_mut().filter(|a| !a.stored) {
            let Some(v) = &a.vector else { continue };
            let want = index.dim(&a.scope).or(configured).or_else(|| index.any_dim());
            if want.is_some_and(|d| d != v.len()) {
                tracing::warn!(job_id = %a.job.id, got = v.len(), want = ?want,
                    "embeddings answer of the wrong length: no semantic lookup for this job (fail open)");
                metrics::EMBEDDINGS_CALLS.with_label_values(&["garbage"]).inc();
                a.vector = None;
            }
        }
    }

    /// Loads the scope's vectors stored since the index last read it, and
    /// now and then drops the ones too old to answer.
    async fn refresh(&self, conn: &mut PgConnection, scope: &[u8], model: &str, since: DateTime<Utc>) -> Result<(), sqlx::Error> {
        let oldest = since.checked_sub_signed(VECTOR_GRACE).unwrap_or(DateTime::<Utc>::MIN_UTC);
        let evict = {
            let mut scopes = self.scopes.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let state = scopes.entry(scope.to_vec()).or_insert(ScopeState { last_evicted: Instant::now() });
            if state.last_evicted.elapsed() >= EVICT_EVERY {
                state.last_evicted = Instant::now();
                true
            } else {
                false
            }
        };
        if evict {
            let first = db::first_live_seq(conn, scope, model, oldest).await?;
            self.index().evict_before(scope, first.unwrap_or(i64::MAX));
        }
        let after = self.index().last_seq(scope);
        let rows = db::load_scope(conn, scope, model, after, oldest).await?;
        let mut index = self.index();
        for r in rows {
            if let Some(v) = rules::decode(&r.embedding) {
                index.insert(scope, r.job_id, r.seq, v);
            }
        }
        Ok(())
    }
}
