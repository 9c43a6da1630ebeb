//! Run 7: the semantic cache (issue #19).
//!
//! - **Lookup**: the release loop's index ([`offpeak_core::semantic::Index`])
//!   holding 100,000 prompts of one scope (the simulator's embeddings, 256
//!   dimensions), searched for 1,000 prompts: 500 rewordings of prompts it
//!   holds (each must be found) and 500 that share all but one word with
//!   one it holds (none may be). Per search: p50, p99; and how long loading
//!   the 100,000 vectors into an empty index takes.
//! - **Release**: the whole stack (scheduler, two workers, the simulator as
//!   provider and as embeddings endpoint) finishing 20,000 normal-priority
//!   jobs submitted in bulk with the exact cache, then 20,000 others with
//!   the semantic cache (all misses: each is embedded and stored), then
//!   20,000 rewordings of those (all hits); the time from the first request
//!   to the last job finished, and what the semantic step added to the
//!   release rounds (`offpeak_semantic_step_seconds` of the scheduler).

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{json, Value};

use offpeak_core::semantic::{normalize, Index};

use super::stack::Stack;
use super::Options;

const SUBJECTS: [&str; 50] = [
    "fox", "lighthouse", "teapot", "bicycle", "mountain", "owl", "sailboat", "castle", "tiger", "violin", "cactus", "robot",
    "train", "bridge", "whale", "lantern", "garden", "dragon", "camera", "piano", "horse", "tractor", "forest", "pumpkin",
    "rocket", "umbrella", "penguin", "windmill", "cathedral", "motorcycle", "octopus", "waterfall", "library", "parrot",
    "skyscraper", "submarine", "vineyard", "glacier", "giraffe", "typewriter", "canyon", "carousel", "jellyfish", "harbor",
    "volcano", "greenhouse", "hedgehog", "zeppelin", "orchard", "tortoise",
];
const ADJECTIVES: [&str; 40] = [
    "red", "blue", "green", "golden", "silver", "ancient", "modern", "rusty", "shiny", "wooden", "glass", "stone",
    "frozen", "burning", "floating", "giant", "miniature", "sleepy", "angry", "happy", "lonely", "crowded", "broken",
    "painted", "velvet", "neon", "misty", "striped", "spotted", "hollow", "crystal", "paper", "copper", "marble",
    "electric", "feathered", "woolen", "origami", "pixelated", "gothic",
];
const SETTINGS: [&str; 50] = [
    "at dawn", "at dusk", "at midnight", "in the rain", "in the snow", "on a beach", "in a desert", "in a city street",
    "on the moon", "under the sea", "in a meadow", "on a rooftop", "in a kitchen", "in a museum", "at a market",
    "in the fog", "by a river", "on a hill", "in a cave", "in a stadium", "on a train platform", "in a jungle",
    "on an island", "in a classroom", "at a festival", "in a snowstorm", "on a frozen lake", "in a sunflower field",
    "at a harbor", "in a bamboo forest", "on a volcano", "in an attic", "in a greenhouse", "at a gas station",
    "in a subway", "on a farm", "in a laboratory", "at a wedding", "in a library", "on a balcony", "in a canyon",
    "at a carnival", "in a garage", "on a glacier", "in a cathedral", "at a lighthouse", "in a vineyard",
    "on a pier", "in a ballroom", "in a bakery",
];
/// Adjectives none of the held prompts use: a prompt with one of these
/// shares every word but one with a held prompt.
const OTHER_ADJECTIVES: [&str; 10] = ["purple", "tiny", "smiling", "ruined", "dusty", "orange", "bronze", "icy", "royal", "muddy"];

/// The `i`-th of the 100,000 distinct prompts.
fn prompt(i: usize) -> String {
    let (s, a, p) = (i % SUBJECTS.len(), (i / SUBJECTS.len()) % ADJECTIVES.len(), i / (SUBJECTS.len() * ADJECTIVES.len()) % SETTINGS.len());
    format!("a {} {} {}, photo", ADJECTIVES[a], SUBJECTS[s], SETTINGS[p])
}

/// A rewording of [`prompt`]`(i)`: other case and punctuation, articles
/// added, a synonym (photo → photograph).
fn rewording(i: usize) -> String {
    let (s, a, p) = (i % SUBJECTS.len(), (i / SUBJECTS.len()) % ADJECTIVES.len(), i / (SUBJECTS.len() * ADJECTIVES.len()) % SETTINGS.len());
    format!("Photograph of the {} {}, {}.", ADJECTIVES[a], SUBJECTS[s], SETTINGS[p])
}

/// [`prompt`]`(i)` with its adjective replaced by one no held prompt uses.
fn one_word_off(i: usize) -> String {
    let (s, p) = (i % SUBJECTS.len(), i / (SUBJECTS.len() * ADJECTIVES.len()) % SETTINGS.len());
    format!("a {} {} {}, photo", OTHER_ADJECTIVES[i % OTHER_ADJECTIVES.len()], SUBJECTS[s], SETTINGS[p])
}

#[derive(Debug, Clone, Serialize)]
pub struct SemanticResult {
    pub held: usize,
    pub dimensions: usize,
    pub lookup_p50_us: f64,
    pub lookup_p99_us: f64,
    /// Loading the held vectors into an empty index (decode + insert).
    pub load_ms: f64,
    /// Rewordings found / asked.
    pub rewordings_found: usize,
    pub rewordings: usize,
    /// One-word-off prompts answered / asked (must be 0).
    pub false_hits: usize,
    pub near_misses: usize,
    pub jobs: u64,
    /// Seconds from the first request to the last job finished.
    pub exact_secs: f64,
    pub semantic_miss_secs: f64,
    pub semantic_hit_secs: f64,
    pub hits: u64,
    /// The semantic step's time in the release rounds of each semantic phase.
    pub step_secs_miss: f64,
    pub step_secs_hit: f64,
    pub step_rounds_miss: u64,
    pub step_rounds_hit: u64,
}

/// Run 7.
///
/// # Errors
/// The stack does not start, a request fails, or the jobs do not finish.
pub async fn semantic(opts: &Options) -> anyhow::Result<SemanticResult> {
    let dimensions = 256;
    let held = ((100_000.0 * opts.scale).round() as usize).clamp(1_000, 100_000);
    // Lookup, in-process: the index the release loop searches.
    let vectors: Vec<Vec<f32>> = (0..held)
        .map(|i| normalize(offpeak_provider_sim::embed("sim-embed", &prompt(i), dimensions)).expect("a non-zero vector"))
        .collect();
    let bytes: Vec<Vec<u8>> = vectors.iter().map(|v| offpeak_core::semantic::encode(v)).collect();
    let scope = b"bench-scope".to_vec();
    let started = Instant::now();
    let mut index = Index::default();
    for (i, b) in bytes.iter().enumerate() {
        let v = offpeak_core::semantic::decode(b).expect("4-byte floats");
        index.insert(&scope, uuid::Uuid::from_u128(i as u128 + 1), i as i64 + 1, v);
    }
    let load_ms = started.elapsed().as_secs_f64() * 1e3;
    let asked = 500.min(held);
    let mut times = Vec::new();
    let (mut found, mut false_hits) = (0, 0);
    for k in 0..asked {
        let i = (k * 7919) % held;
        for (text, reworded) in [(rewording(i), true), (one_word_off(i), false)] {
            let q = normalize(offpeak_provider_sim::embed("sim-embed", &text, dimensions)).expect("a non-zero vector");
            let t = Instant::now();
            let hits = index.search(&scope, &q, THRESHOLD, 8);
            times.push(t.elapsed().as_secs_f64() * 1e6);
            // Found: the source is among the hits (another held prompt with
            // the same content words may score as high).
            let hit_right = hits.iter().any(|h| h.0 == uuid::Uuid::from_u128(i as u128 + 1));
            if reworded && hit_right {
                found += 1;
            }
            if !reworded && !hits.is_empty() {
                false_hits += 1;
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let (lookup_p50_us, lookup_p99_us) = (super::runs::quantile(&times, 0.5), super::runs::quantile(&times, 0.99));
    drop(index);
    drop(vectors);

    // Release, through the whole stack.
    let jobs = ((20_000.0 * opts.scale).round() as u64).clamp(200, 20_000);
    let stack = Stack::start("semantic", opts.stack(2, Duration::ZERO, vec![])).await?;
    let exact_secs = phase(&stack, jobs, "exact", |i| format!("{} #{i}", prompt(i))).await?;
    let before = step_metrics(&stack).await?;
    let semantic_miss_secs = phase(&stack, jobs, "semantic", |i| prompt(i + 50_000)).await?;
    let after_miss = step_metrics(&stack).await?;
    let semantic_hit_secs = phase(&stack, jobs, "semantic", |i| rewording(i + 50_000)).await?;
    let after_hit = step_metrics(&stack).await?;
    let hits: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs WHERE cache_similarity IS NOT NULL").fetch_one(&stack.pool).await?;
    let _ = stack.stop().await;
    Ok(SemanticResult {
        held,
        dimensions,
        lookup_p50_us,
        lookup_p99_us,
        load_ms,
        rewordings_found: found,
        rewordings: asked,
        false_hits,
        near_misses: asked,
        jobs,
        exact_secs,
        semantic_miss_secs,
        semantic_hit_secs,
        hits: u64::try_from(hits).unwrap_or(0),
        step_secs_miss: after_miss.0 - before.0,
        step_secs_hit: after_hit.0 - after_miss.0,
        step_rounds_miss: after_miss.1 - before.1,
        step_rounds_hit: after_hit.1 - after_miss.1,
    })
}

/// The threshold the run searches with: the scheduler's default.
pub const THRESHOLD: f32 = offpeak_scheduler::semantic::THRESHOLD_DEFAULT;

/// Submits `jobs` normal-priority flux-schnell jobs with `cache`, 1,000 per
/// bulk request, and waits for all of them to finish; returns the seconds
/// from the first request to the last finish.
async fn phase(stack: &Stack, jobs: u64, cache: &str, text: impl Fn(usize) -> String) -> anyhow::Result<f64> {
    let base: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&stack.pool).await?;
    let bodies: Vec<offpeak_client::types::BulkRequest> = (0..jobs as usize)
        .collect::<Vec<_>>()
        .chunks(1_000)
        .map(|c| {
            let inputs: Vec<Value> = c.iter().map(|&i| json!({"prompt": text(i), "width": 512})).collect();
            serde_json::from_value(json!({"model": "flux-schnell", "priority": "normal", "cache": cache, "inputs": inputs}))
        })
        .collect::<Result<_, _>>()?;
    // Without idempotency keys, as the run measured before the client had them.
    let client = offpeak_client::Client::builder(stack.api.clone(), stack.key.clone())
        .http_client(stack.http.clone())
        .idempotency_keys(false)
        .build()?;
    let started = Instant::now();
    for body in bodies {
        client.submit_bulk(body).await?;
    }
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE finished_at IS NOT NULL").fetch_one(&stack.pool).await?;
        if done >= base + jobs as i64 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the semantic run's jobs did not finish within 600 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// `offpeak_semantic_step_seconds`' sum and count, from the scheduler's `/metrics`.
async fn step_metrics(stack: &Stack) -> anyhow::Result<(f64, u64)> {
    let text = stack.http.get(format!("{}/metrics", stack.api)).send().await?.text().await?;
    let value = |name: &str| {
        text.lines().find_map(|l| l.strip_prefix(name).and_then(|rest| rest.trim().parse::<f64>().ok())).unwrap_or(0.0)
    };
    Ok((value("offpeak_semantic_step_seconds_sum"), value("offpeak_semantic_step_seconds_count") as u64))
}
