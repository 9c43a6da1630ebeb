//! Run 8: the savings run of issue #19, each lever alone and all together.
//!
//! One stack (scheduler, two workers, the simulator as provider and as
//! embeddings endpoint) with `OFFPEAK_OFFPEAK_MULTIPLIER=0.5`, and one
//! workload, the case study's catalogue: `N` (1,000 × scale, at least 100)
//! requests that each want a full-quality hero image (`"model": "auto",
//! "use_case": "hero-image"`: flux-pro, 5 credits). Of those,
//!
//! - 60% are distinct original prompts (`a photo of a golden fox in the
//!   snow`; no two share their content words, so none is a rewording of
//!   another),
//! - 10% exact repeats of an original (the same input),
//! - 30% rewordings of an original (`Golden fox in the snow, photograph.`:
//!   other case, punctuation, stopwords, word order and synonyms, which the
//!   simulator's embedding scores about 0.99 with their source).
//!
//! Each repeat and rewording has an original of its own, and none of those
//! originals is among the upgraded requests (below): every upgrade is a
//! distinct full-quality request, so the preview lever is measured alone
//! (an upgrade always has at least the exact cache, the tenant's default,
//! whatever its preview had).
//!
//! The workload runs six times, each phase as its own tenant and with
//! `"run": "<phase>"` in every input, so that no phase shares a cache entry or
//! a billed input with another:
//!
//! | phase | how |
//! |---|---|
//! | `before` | `normal`, `"cache": false`: every request at full quality, list price |
//! | `offpeak` | `low`, `"cache": false`, in a tenant whose off-peak window is open: ×0.5, rounded half up (5 → 3) |
//! | `exact` | `normal`, `"cache": "exact"` |
//! | `semantic` | `normal`, `"cache": "semantic"` |
//! | `preview` | `"preview": {"use_case": "thumbnail"}` (flux-schnell, 1 credit, `normal`), `"cache": false`; every 5th request upgraded at `normal` priority |
//! | `together` | previews at `normal` with `"cache": "semantic"`; the upgrades at their default `low` priority (off-peak price), in the open window |
//!
//! In waves, each waited for: the originals; then the repeats and
//! rewordings (their sources have succeeded); then, for the preview phases,
//! `POST /v1/jobs/{id}/upgrade` with `{"input": {"width": 2048}}` on every
//! 5th request's preview (originals, repeats and rewordings alike). Per
//! phase: the credits `/v1/usage` reports (and its `saved_*`), the items the
//! simulator billed, the most times it billed any one input (`GET
//! /v1/stats/inputs`, before and after), and the saving against `before`.

// `is_multiple_of` needs Rust 1.87; the workspace's rust-version is 1.85.
#![allow(clippy::manual_is_multiple_of)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{Timelike, Utc};
use futures_util::StreamExt;
use serde::Serialize;
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_client::{types, UsageQuery};

use super::stack::Stack;
use super::Options;

/// A word as an original says it and as a rewording says it.
type Word = (&'static str, &'static str);

/// Adjectives, as the originals and as the rewordings say them. Among the
/// originals' words here, in [`SUBJECTS`] and in [`SETTINGS`], none is a
/// synonym of another (`provider-sim`'s `SYNONYMS`), another's plural, a
/// stopword or a negation; a rewording's word is the same or a synonym.
#[rustfmt::skip]
const ADJECTIVES: [Word; 24] = [
    ("red", "red"), ("blue", "blue"), ("golden", "golden"), ("silver", "silver"), ("ancient", "ancient"),
    ("rusty", "rusty"), ("wooden", "wooden"), ("marble", "marble"), ("copper", "copper"), ("velvet", "velvet"),
    ("neon", "neon"), ("misty", "misty"), ("striped", "striped"), ("spotted", "spotted"), ("crystal", "crystal"),
    ("paper", "paper"), ("electric", "electric"), ("gothic", "gothic"), ("sleepy", "sleepy"), ("lonely", "lonely"),
    ("large", "big"), ("small", "little"), ("happy", "cheerful"), ("fast", "quick"),
];
#[rustfmt::skip]
const SUBJECTS: [Word; 24] = [
    ("fox", "fox"), ("lighthouse", "lighthouse"), ("teapot", "teapot"), ("bicycle", "bicycle"), ("owl", "owl"),
    ("sailboat", "sailboat"), ("castle", "castle"), ("tiger", "tiger"), ("violin", "violin"), ("robot", "robot"),
    ("whale", "whale"), ("lantern", "lantern"), ("dragon", "dragon"), ("piano", "piano"), ("horse", "horse"),
    ("penguin", "penguin"), ("windmill", "windmill"), ("octopus", "octopus"), ("parrot", "parrot"),
    ("tortoise", "tortoise"), ("cat", "kitten"), ("dog", "puppy"), ("car", "automobile"), ("house", "home"),
];
#[rustfmt::skip]
const SETTINGS: [Word; 22] = [
    ("at dawn", "at sunrise"), ("at dusk", "at sunset"), ("in the snow", "in the snow"), ("in the rain", "in the rain"),
    ("on a beach", "on the beach"), ("in a desert", "in the desert"), ("under the sea", "under the ocean"),
    ("in a forest", "in the woods"), ("on the moon", "on the moon"), ("in a meadow", "in the meadow"),
    ("on a rooftop", "on the rooftop"), ("in a kitchen", "in the kitchen"), ("at a market", "at the market"),
    ("in the fog", "in fog"), ("on a hill", "on the hill"), ("in a cave", "in the cave"), ("in a jungle", "in the jungle"),
    ("on an island", "on the island"), ("in a library", "in the library"), ("at midnight", "at midnight"),
    ("in a garden", "in the garden"), ("on a glacier", "on the glacier"),
];
const COMBINATIONS: usize = ADJECTIVES.len() * SUBJECTS.len() * SETTINGS.len();

/// The parts of the `i`-th original: a stride through every combination,
/// so that even a small run uses every word list.
fn parts(i: usize) -> (Word, Word, Word) {
    // 7919 is prime and does not divide COMBINATIONS: a permutation.
    let j = (i * 7919) % COMBINATIONS;
    let (a, s, p) = (j % ADJECTIVES.len(), (j / ADJECTIVES.len()) % SUBJECTS.len(), j / (ADJECTIVES.len() * SUBJECTS.len()));
    (ADJECTIVES[a], SUBJECTS[s], SETTINGS[p])
}

/// The `i`-th distinct original prompt.
pub fn original(i: usize) -> String {
    let ((a, _), (s, _), (p, _)) = parts(i);
    format!("a photo of a {a} {s} {p}")
}

/// A rewording of [`original`]`(i)`, one of three forms: the same content
/// words (synonyms aside) in another order, case, punctuation and stopwords.
pub fn rewording(i: usize, form: usize) -> String {
    let ((_, a), (_, s), (_, p)) = parts(i);
    let text = match form % 3 {
        0 => format!("{a} {s} {p}, photograph."),
        1 => format!("{p}: the {a} {s}, picture"),
        _ => format!("Image of the {a} {s}, {p}!"),
    };
    let mut chars = text.chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

/// What one of the `N` requests is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Original(usize),
    /// An exact repeat of this original.
    Repeat(usize),
    /// A rewording of this original, in this form.
    Rewording(usize, usize),
}

/// The workload: `n` requests (originals first, then repeats, then
/// rewordings) and whether each is upgraded (every 5th).
#[derive(Debug, Clone)]
pub struct Workload {
    requests: Vec<Request>,
    pub originals: usize,
    pub repeats: usize,
    pub rewordings: usize,
}

impl Workload {
    pub fn new(n: usize) -> Self {
        let originals = (n as f64 * 0.6).round() as usize;
        let repeats = (n as f64 * 0.1).round() as usize;
        let rewordings = n - originals - repeats;
        // The sources of repeats and rewordings: the originals that are not
        // upgraded (index not a multiple of 5), each used once while they
        // last (0.4 N of 0.48 N).
        let eligible: Vec<usize> = (0..originals).filter(|i| i % 5 != 0).collect();
        let source = |j: usize| eligible[j % eligible.len()];
        let mut requests: Vec<Request> = (0..originals).map(Request::Original).collect();
        requests.extend((0..repeats).map(|j| Request::Repeat(source(j))));
        requests.extend((0..rewordings).map(|j| Request::Rewording(source(repeats + j), j)));
        Self { requests, originals, repeats, rewordings }
    }

    fn len(&self) -> usize {
        self.requests.len()
    }

    fn upgraded(k: usize) -> bool {
        k % 5 == 0
    }

    pub fn upgrades(&self) -> usize {
        (0..self.len()).filter(|&k| Self::upgraded(k)).count()
    }

    /// The distinct requests: the originals, plus the distinct upgrades.
    fn distinct(&self, with_upgrades: bool) -> usize {
        self.originals + if with_upgrades { self.upgrades() } else { 0 }
    }

    fn prompt(&self, k: usize) -> String {
        match self.requests[k] {
            Request::Original(i) | Request::Repeat(i) => original(i),
            Request::Rewording(i, form) => rewording(i, form),
        }
    }

    /// The rewordings that score at least `threshold` with their source, in
    /// the simulator's embedding as the scheduler asks for it.
    fn rewordings_close(&self, threshold: f32) -> usize {
        let model = offpeak_scheduler::semantic::embeddings::MODEL_DEFAULT;
        let dims = offpeak_provider_sim::DEFAULT_EMBEDDING_DIMENSIONS;
        self.requests
            .iter()
            .filter(|r| match r {
                Request::Rewording(i, form) => {
                    let (a, b) = (offpeak_provider_sim::embed(model, &original(*i), dims), offpeak_provider_sim::embed(model, &rewording(*i, *form), dims));
                    offpeak_provider_sim::cosine(&a, &b) >= threshold
                }
                _ => false,
            })
            .count()
    }
}

/// One configuration of the run.
#[derive(Debug, Clone, Copy)]
struct Phase {
    name: &'static str,
    /// Of the submissions (the previews, in a preview phase).
    priority: &'static str,
    /// `false`, `"exact"` or `"semantic"`.
    cache: CacheChoice,
    preview: bool,
    /// The upgrades' `priority`; `None`: the default (`low`).
    upgrade_priority: Option<&'static str>,
    /// A tenant whose off-peak window is open now.
    window_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CacheChoice {
    Off,
    Exact,
    Semantic,
}

impl CacheChoice {
    fn json(self) -> Value {
        match self {
            Self::Off => json!(false),
            Self::Exact => json!("exact"),
            Self::Semantic => json!("semantic"),
        }
    }
}

const PHASES: [Phase; 6] = [
    Phase { name: "before", priority: "normal", cache: CacheChoice::Off, preview: false, upgrade_priority: None, window_open: false },
    Phase { name: "offpeak", priority: "low", cache: CacheChoice::Off, preview: false, upgrade_priority: None, window_open: true },
    Phase { name: "exact", priority: "normal", cache: CacheChoice::Exact, preview: false, upgrade_priority: None, window_open: false },
    Phase { name: "semantic", priority: "normal", cache: CacheChoice::Semantic, preview: false, upgrade_priority: None, window_open: false },
    Phase { name: "preview", priority: "normal", cache: CacheChoice::Off, preview: true, upgrade_priority: Some("normal"), window_open: false },
    Phase { name: "together", priority: "normal", cache: CacheChoice::Semantic, preview: true, upgrade_priority: None, window_open: true },
];

/// What one phase cost.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseResult {
    pub name: String,
    /// Credits charged (`/v1/usage` `totals.credits`).
    pub credits: i64,
    pub list_credits: i64,
    pub saved_offpeak: i64,
    pub saved_cache: i64,
    pub saved_semantic: i64,
    pub saved_preview: i64,
    pub previews: i64,
    pub upgrades: i64,
    /// Items the simulator billed during the phase.
    pub provider_items: u64,
    /// The distinct requests of the phase (what "billed once per distinct
    /// request" allows): the originals, plus the upgrades.
    pub distinct_requests: u64,
    /// The most times the simulator billed any one input in the phase.
    pub max_billed_per_input: u64,
    /// Whether the phase has a cache (the no-cache phases send each exact
    /// repeat again, by definition).
    pub cached: bool,
    /// Jobs answered by the semantic cache.
    pub semantic_hits: i64,
    /// Jobs answered by the exact cache (or coalesced).
    pub exact_hits: i64,
    /// 1 − credits ÷ `before`'s credits.
    pub saved: f64,
    pub secs: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SavingsResult {
    pub requests: usize,
    pub originals: usize,
    pub repeats: usize,
    pub rewordings: usize,
    pub upgrades: usize,
    /// Rewordings the simulator's embedding scores at or above the threshold
    /// with their source (computed in-process, before the run).
    pub rewordings_close: usize,
    pub multiplier: f64,
    /// The timezone of the phases whose window had to be open.
    pub window_timezone: String,
    pub phases: Vec<PhaseResult>,
}

impl SavingsResult {
    pub fn phase(&self, name: &str) -> Option<&PhaseResult> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The off-peak multiplier the run's stack prices `low` jobs at.
const MULTIPLIER: f64 = 0.5;
/// Longest a wave may take.
const WAVE_TIMEOUT: Duration = Duration::from_secs(300);

/// Run 8.
///
/// # Errors
/// The stack does not start, a submission or an upgrade is not answered
/// 201, a wave does not end within 300 s, or a job does not succeed.
pub async fn savings(opts: &Options) -> anyhow::Result<SavingsResult> {
    let n = ((1_000.0 * opts.scale).round() as usize).max(100);
    let work = Workload::new(n);
    anyhow::ensure!(work.originals <= COMBINATIONS, "{n} requests need more than the {COMBINATIONS} distinct prompts the word lists make");
    let rewordings_close = work.rewordings_close(super::semantic::THRESHOLD);
    let window_timezone = open_window_timezone();
    eprintln!(
        "bench:   {n} requests: {} originals, {} repeats, {} rewordings ({rewordings_close} scoring ≥ {} with their source), {} upgrades; window timezone {window_timezone}",
        work.originals,
        work.repeats,
        work.rewordings,
        super::semantic::THRESHOLD,
        work.upgrades()
    );
    let env = vec![("OFFPEAK_OFFPEAK_MULTIPLIER".to_owned(), MULTIPLIER.to_string())];
    let stack = Stack::start("savings", opts.stack(2, Duration::ZERO, env)).await?;
    let from = Utc::now() - chrono::Duration::minutes(1);
    let mut phases: Vec<PhaseResult> = Vec::new();
    for phase in PHASES {
        let started = Instant::now();
        let tz = if phase.window_open { offpeak_core::tz::parse(&window_timezone)? } else { chrono_tz::UTC };
        let (tenant, key) = offpeak_store::tenants::create(&stack.pool, &format!("savings-{}", phase.name), tz, None).await?;
        let stats_before = sim_inputs(&stack).await?;
        let items_before = sim_items(&stack).await?;
        run_phase(&stack, &key, &work, phase).await?;
        let stats_after = sim_inputs(&stack).await?;
        let provider_items = sim_items(&stack).await? - items_before;
        let max_billed_per_input =
            stats_after.iter().map(|(h, c)| c - stats_before.get(h).copied().unwrap_or(0)).max().unwrap_or(0);
        let query = UsageQuery {
            start: Some(rfc3339(from)),
            end: Some(rfc3339(Utc::now() + chrono::Duration::minutes(1))),
            ..UsageQuery::default()
        };
        let usage = serde_json::to_value(stack.client_for(&key).usage(&query).await?)?;
        let total = |f: &str| usage["totals"][f].as_i64().unwrap_or(0);
        let (semantic_hits, exact_hits): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE cache_similarity IS NOT NULL), count(*) FILTER (WHERE cache_hit AND cache_similarity IS NULL)
             FROM job_view WHERE tenant_id = $1",
        )
        .bind(tenant.id)
        .fetch_one(&stack.pool)
        .await?;
        let credits = total("credits");
        let before = phases.first().map_or(credits, |b| b.credits);
        let r = PhaseResult {
            name: phase.name.to_owned(),
            credits,
            list_credits: total("list_credits"),
            saved_offpeak: total("saved_offpeak"),
            saved_cache: total("saved_cache"),
            saved_semantic: total("saved_semantic"),
            saved_preview: total("saved_preview"),
            previews: total("previews"),
            upgrades: total("upgrades"),
            provider_items,
            distinct_requests: work.distinct(phase.preview) as u64,
            max_billed_per_input,
            cached: phase.cache != CacheChoice::Off,
            semantic_hits,
            exact_hits,
            saved: if before > 0 { 1.0 - credits as f64 / before as f64 } else { 0.0 },
            secs: started.elapsed().as_secs_f64(),
        };
        eprintln!(
            "bench:   {}: {} credits ({:.0}% saved), {} provider items for {} distinct requests, at most {} per input; \
             saved: offpeak {}, cache {}, semantic {}, preview {}; {} exact and {} semantic hits; {:.1} s",
            r.name,
            r.credits,
            r.saved * 100.0,
            r.provider_items,
            r.distinct_requests,
            r.max_billed_per_input,
            r.saved_offpeak,
            r.saved_cache,
            r.saved_semantic,
            r.saved_preview,
            r.exact_hits,
            r.semantic_hits,
            r.secs
        );
        phases.push(r);
    }
    let _ = stack.stop().await;
    Ok(SavingsResult {
        requests: n,
        originals: work.originals,
        repeats: work.repeats,
        rewordings: work.rewordings,
        upgrades: work.upgrades(),
        rewordings_close,
        multiplier: MULTIPLIER,
        window_timezone,
        phases,
    })
}

/// The three waves of one phase.
async fn run_phase(stack: &Stack, key: &str, work: &Workload, phase: Phase) -> anyhow::Result<()> {
    let client = &stack.client_for(key);
    let mut ids: Vec<Option<Uuid>> = vec![None; work.len()];
    // Wave 1: the originals; wave 2: the repeats and rewordings.
    for wave in [0..work.originals, work.originals..work.len()] {
        let ks: Vec<usize> = wave.collect();
        let mut wave_ids = Vec::with_capacity(ks.len());
        for chunk in ks.chunks(1_000) {
            let inputs: Vec<Value> =
                chunk.iter().map(|&k| json!({"prompt": work.prompt(k), "width": 1024, "run": phase.name})).collect();
            let mut body = json!({"model": "auto", "use_case": "hero-image", "priority": phase.priority, "cache": phase.cache.json(), "inputs": inputs});
            if phase.preview {
                body["preview"] = json!({"use_case": "thumbnail"});
            }
            let request: types::BulkRequest = serde_json::from_value(body)?;
            let got = client
                .submit_bulk(request)
                .await
                .map_err(|e| anyhow::anyhow!("{}: bulk submission: {e}", phase.name))?
                .ids;
            anyhow::ensure!(got.len() == chunk.len(), "{}: bulk submission of {} answered {} ids", phase.name, chunk.len(), got.len());
            for (&k, id) in chunk.iter().zip(&got) {
                ids[k] = Some(*id);
            }
            wave_ids.extend(got);
        }
        wait_all_succeeded(stack, &wave_ids, phase.name).await?;
    }
    if !phase.preview {
        return Ok(());
    }
    // Wave 3: every 5th request's preview upgraded.
    let mut body = json!({"input": {"width": 2048}});
    if let Some(p) = phase.upgrade_priority {
        body["priority"] = json!(p);
    }
    let parents: Vec<Uuid> = (0..work.len()).filter(|&k| Workload::upgraded(k)).filter_map(|k| ids[k]).collect();
    let children: Vec<anyhow::Result<Uuid>> = futures_util::stream::iter(parents)
        .map(|parent| {
            let body = body.clone();
            async move {
                let request: types::UpgradeRequest = serde_json::from_value(body)?;
                let child = client.upgrade(parent, request).await.map_err(|e| anyhow::anyhow!("{}: upgrade of {parent}: {e}", phase.name))?;
                anyhow::ensure!(child.created, "{}: the upgrade of {parent} was not new", phase.name);
                Ok(child.value.id)
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let children: Vec<Uuid> = children.into_iter().collect::<anyhow::Result<_>>()?;
    wait_all_succeeded(stack, &children, phase.name).await
}

/// Waits until every job of `ids` has ended ([`WAVE_TIMEOUT`]), and checks
/// that all succeeded.
async fn wait_all_succeeded(stack: &Stack, ids: &[Uuid], phase: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + WAVE_TIMEOUT;
    loop {
        let (ended, succeeded): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE finished_at IS NOT NULL), count(*) FILTER (WHERE state = 'succeeded')
             FROM job_view WHERE id = ANY($1)",
        )
        .bind(ids)
        .fetch_one(&stack.pool)
        .await?;
        if ended as usize == ids.len() {
            anyhow::ensure!(succeeded == ended, "{phase}: {} of {ended} jobs ended other than succeeded", ended - succeeded);
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{phase}: {ended} of {} jobs ended within {} s; logs in {}",
            ids.len(),
            WAVE_TIMEOUT.as_secs(),
            stack.logs.display()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The simulator's billed count per input hash.
async fn sim_inputs(stack: &Stack) -> anyhow::Result<BTreeMap<String, u64>> {
    Ok(stack.http.get(format!("{}/v1/stats/inputs", stack.sim_url)).send().await?.error_for_status()?.json().await?)
}

/// The simulator's billed items so far.
async fn sim_items(stack: &Stack) -> anyhow::Result<u64> {
    let stats: Value = stack.http.get(format!("{}/v1/stats", stack.sim_url)).send().await?.error_for_status()?.json().await?;
    stats["items"].as_u64().ok_or_else(|| anyhow::anyhow!("the simulator's stats have no items: {stats}"))
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// An `Etc/GMT±N` zone in which it is now 03:xx local: inside the default
/// 02:00–06:00 window with two hours to spare. (`Etc/GMT-9` is UTC+9.)
fn open_window_timezone() -> String {
    let hour = i64::from(Utc::now().hour());
    // Local = UTC + offset; want 3. Offsets run from -12 to +14.
    let mut offset = 3 - hour;
    if offset < -12 {
        offset += 24;
    }
    match offset {
        0 => "Etc/GMT".to_owned(),
        o if o > 0 => format!("Etc/GMT-{o}"),
        o => format!("Etc/GMT+{}", -o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embed(text: &str) -> Vec<f32> {
        offpeak_provider_sim::embed(
            offpeak_scheduler::semantic::embeddings::MODEL_DEFAULT,
            text,
            offpeak_provider_sim::DEFAULT_EMBEDDING_DIMENSIONS,
        )
    }

    #[test]
    fn rewordings_are_close_and_originals_apart() {
        let work = Workload::new(1_000);
        assert_eq!((work.originals, work.repeats, work.rewordings, work.upgrades()), (600, 100, 300, 200));
        assert_eq!(work.rewordings_close(super::super::semantic::THRESHOLD), 300);
        let originals: Vec<Vec<f32>> = (0..work.originals).map(|i| embed(&original(i))).collect();
        let mut worst = f32::MIN;
        for (i, a) in originals.iter().enumerate() {
            for b in &originals[i + 1..] {
                worst = worst.max(offpeak_provider_sim::cosine(a, b));
            }
        }
        assert!(worst < 0.9, "two originals score {worst}");
    }

    #[test]
    fn upgraded_requests_are_distinct() {
        let work = Workload::new(1_000);
        let mut sources = std::collections::HashSet::new();
        for (k, r) in work.requests.iter().enumerate() {
            let i = match r {
                Request::Original(i) | Request::Repeat(i) | Request::Rewording(i, _) => *i,
            };
            if Workload::upgraded(k) {
                assert!(sources.insert(i), "request {k} upgrades the request of original {i} again");
            }
        }
    }

    #[test]
    fn the_window_timezone_is_at_three() {
        let tz = offpeak_core::tz::parse(&open_window_timezone()).expect("a known zone");
        // 3, or 4 when the hour turned in between.
        assert!((3..=4).contains(&Utc::now().with_timezone(&tz).hour()));
    }
}
