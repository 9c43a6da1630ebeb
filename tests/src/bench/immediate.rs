//! Run 9: the immediate path (issue #17). Normal-priority jobs are released
//! at once; this measures how fast a batch of them goes through the whole
//! stack, from the first submission to the last result written, at the
//! provider cost the issue compares against (a lean Celery 5 setup doing
//! the same batches of 100 on the same services finishes 20,000 in ~2 s).
//!
//! Set-up: the simulator answers every call after 20 ms; two workers; 5
//! models (the burst's first five, priced 1 credit each through
//! `OFFPEAK_PRICES`); 20,000 normal-priority jobs, 4,000 per model, sent as
//! `POST /v1/jobs/bulk` requests of 4,000 inputs, all 5 at once (one client
//! per model), bodies built before the clock starts. Each job's input is
//! distinct, so no job is answered by the cache or coalesced with another.
//!
//! Two phases, each on a fresh stack:
//! - `default`: the bodies carry no `"cache"` field, as most users send
//!   them: the tenant's mode, the exact cache, so every job has a cache key
//!   and the release round runs its coalescing step over them. This is the
//!   row with the target.
//! - `no_cache`: `"cache": false`, as the Celery comparison does no caching.
//!
//! With `--immediate-one-model`, the five clients are five tenants, each
//! sending its 4,000 jobs of one model (the same for all): what several
//! tenants' submissions of one model cost each other. Not in the table.
//!
//! The clock starts just before the first request is sent. "Submitted" is
//! when the last `201` has been read (measured by the benchmark's own clock).
//! "Finished" is exact: once the burst's watcher (`runs::watch_until_done`)
//! finds no job open (`held`, `queued` or `running`), it reads
//! `max(finished_at)` of the jobs
//! (the worker's instant for the last result, taken just before the commit
//! that writes it) and takes the wall-clock instant of the start from it; the
//! poll only decides when to look, so its interval does not enter the
//! figure. "Released" is likewise `max(queued_at)`, for where the time
//! goes: the instant of the release round that published the last job, or,
//! for a submission released with its own transaction
//! (`offpeak_scheduler::direct`), the submission's (its `created_at`; the
//! publish is before its `201`). "Releases" counts the distinct instants:
//! rounds and such submissions. CPU a job is read from `/proc` from just
//! before the first request to the last result (PostgreSQL's processes, and
//! the whole machine), as run 3 does.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;

use super::runs::{burst_models, scaled, watch_until_done, CpuPerJob, CpuSample};
use super::stack::Stack;
use super::Options;

/// Jobs at scale 1.
pub const JOBS: u64 = 20_000;
/// Models, one client each.
pub const MODELS: usize = 5;
/// Most inputs per bulk request.
pub const PER_REQUEST: usize = 4_000;
/// The simulator's latency per call.
pub const LATENCY: Duration = Duration::from_millis(20);
/// Workers.
pub const WORKERS: usize = 2;
/// The target, jobs per second from the first submission to the last result.
pub const TARGET_RATE: f64 = 25_000.0;

#[derive(Debug, Clone, Serialize)]
pub struct ImmediateResult {
    pub jobs: u64,
    pub models: usize,
    /// Inputs per bulk request (4,000, fewer at a small scale).
    pub per_request: usize,
    pub requests: usize,
    pub latency_ms: u64,
    pub workers: usize,
    /// No `"cache"` field: the tenant's mode, the exact cache (the target's row).
    pub default: ImmediatePhase,
    /// `"cache": false`.
    pub no_cache: ImmediatePhase,
}

/// One phase: seconds from the first request sent.
#[derive(Debug, Clone, Serialize)]
pub struct ImmediatePhase {
    /// The `"cache"` value sent (`null`: none, the default).
    pub cache: Option<bool>,
    /// Until the last `201` was read.
    pub submitted_secs: f64,
    /// Until the release round that published the last job (`max(queued_at)`).
    pub released_secs: f64,
    /// Until the last result was written (`max(finished_at)`).
    pub finished_secs: f64,
    /// Jobs ÷ `finished_secs`.
    pub rate: f64,
    /// Release rounds, and submissions released with their own
    /// transaction, that published the jobs (distinct `queued_at`).
    pub rounds: u64,
    /// Batches the jobs went in.
    pub batches: u64,
    /// Jobs that succeeded, of `jobs`.
    pub succeeded: u64,
    /// CPU a job from the first request to the last result.
    pub cpu: CpuPerJob,
}

impl ImmediatePhase {
    /// `submitted / released / finished s (n rounds, m batches)`, for the
    /// table and the progress line.
    pub fn times(&self) -> String {
        format!(
            "{:.2} / {:.2} / {:.2} s ({} releases, {} batches); CPU µs a job, PostgreSQL / machine: {:.0} / {:.0}",
            self.submitted_secs, self.released_secs, self.finished_secs, self.rounds, self.batches, self.cpu.postgres_us, self.cpu.machine_us
        )
    }
}

/// Run 9.
///
/// # Errors
/// The stack does not start, a request fails, or the jobs do not finish
/// within 300 s.
pub async fn immediate(opts: &Options) -> anyhow::Result<ImmediateResult> {
    let jobs = scaled(JOBS, opts.scale, MODELS as u64);
    // One model per client: five, or the first five times with --immediate-one-model.
    let models: Vec<String> = if opts.immediate_one_model {
        vec![burst_models().remove(0); MODELS]
    } else {
        burst_models().into_iter().take(MODELS).collect()
    };
    let per_model = (jobs as usize).div_ceil(MODELS);
    let jobs = (per_model * MODELS) as u64;
    let per_request = PER_REQUEST.min(per_model);
    let requests = per_model.div_ceil(per_request) * MODELS;
    let default = phase(opts, &models, per_model, per_request, None).await?;
    let no_cache = phase(opts, &models, per_model, per_request, Some(false)).await?;
    let distinct: std::collections::HashSet<&String> = models.iter().collect();
    Ok(ImmediateResult {
        jobs,
        models: distinct.len(),
        per_request,
        requests,
        latency_ms: LATENCY.as_millis() as u64,
        workers: WORKERS,
        default,
        no_cache,
    })
}

async fn phase(
    opts: &Options,
    models: &[String],
    per_model: usize,
    per_request: usize,
    cache: Option<bool>,
) -> anyhow::Result<ImmediatePhase> {
    let prices: Vec<String> = models.iter().map(|m| format!("{m}=1")).collect();
    let env = vec![("OFFPEAK_PRICES".into(), prices.join(","))];
    let stack = Stack::start("immediate", opts.stack(WORKERS, LATENCY, env)).await?;
    let jobs = (per_model * models.len()) as i64;
    // A tenant per client where they share a model, the stack's one otherwise.
    let mut keys = Vec::with_capacity(models.len());
    for (i, model) in models.iter().enumerate() {
        if models[..i].contains(model) {
            let (_, key) = offpeak_store::tenants::create(&stack.pool, &format!("immediate-{i}"), chrono_tz::UTC, None).await?;
            keys.push(key);
        } else {
            keys.push(stack.key.clone());
        }
    }

    // Bodies are built before the clock starts (as in run 1): per model,
    // its requests in order.
    let label = if cache.is_none() { "default" } else { "no-cache" };
    let bodies: Vec<Vec<Vec<u8>>> = models
        .iter()
        .enumerate()
        .map(|(client, model)| {
            (0..per_model)
                .collect::<Vec<_>>()
                .chunks(per_request)
                .map(|c| {
                    let inputs: Vec<serde_json::Value> =
                        c.iter().map(|i| json!({"prompt": format!("immediate {label} {model} {client} {i}")})).collect();
                    let mut body = json!({"model": model, "priority": "normal", "inputs": inputs});
                    if let Some(c) = cache {
                        body["cache"] = json!(c);
                    }
                    serde_json::to_vec(&body).expect("json")
                })
                .collect()
        })
        .collect();

    let url = format!("{}/v1/jobs/bulk", stack.api);
    let cpu_before = CpuSample::read();
    let started_at: DateTime<Utc> = Utc::now();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (requests, key) in bodies.into_iter().zip(keys) {
        let (http, url) = (stack.http.clone(), url.clone());
        tasks.spawn(async move {
            for body in requests {
                let resp = http.post(&url).bearer_auth(&key).header("content-type", "application/json").body(body).send().await?;
                if resp.status() != 201 {
                    anyhow::bail!("bulk submit: {} {}", resp.status(), resp.text().await.unwrap_or_default());
                }
                let _ = resp.bytes().await?;
            }
            Ok::<_, anyhow::Error>(started.elapsed())
        });
    }
    let mut submitted = Duration::ZERO;
    while let Some(r) = tasks.join_next().await {
        submitted = submitted.max(r??);
    }

    // Its times are its polls'; the figures below are the rows' own.
    let (_, _, timed_out) = watch_until_done(&stack.pool, started_at, Duration::from_secs(300)).await?;
    let cpu = CpuSample::read().per_job_since(&cpu_before, jobs as u64);
    anyhow::ensure!(!timed_out, "the immediate run's jobs did not finish within 300 s");
    let (stored, succeeded, last_queued, last_finished, rounds, batches): (i64, i64, Option<DateTime<Utc>>, Option<DateTime<Utc>>, i64, i64) =
        sqlx::query_as(
            "SELECT count(*), count(*) FILTER (WHERE state = 'succeeded'), max(queued_at), max(finished_at),
                    count(DISTINCT queued_at), count(DISTINCT batch_id)
             FROM job_view",
        )
        .fetch_one(&stack.pool)
        .await?;
    let _ = stack.stop().await;
    anyhow::ensure!(stored == jobs, "the API stored {stored} jobs, not {jobs}");
    anyhow::ensure!(succeeded == jobs, "{succeeded} of {jobs} jobs succeeded");
    let since = |t: Option<DateTime<Utc>>| t.map_or(0.0, |t| (t - started_at).num_microseconds().unwrap_or_default() as f64 / 1e6);
    let finished_secs = since(last_finished);
    Ok(ImmediatePhase {
        cache,
        submitted_secs: submitted.as_secs_f64(),
        released_secs: since(last_queued),
        finished_secs,
        rate: jobs as f64 / finished_secs.max(1e-6),
        rounds: u64::try_from(rounds).unwrap_or(0),
        batches: u64::try_from(batches).unwrap_or(0),
        succeeded: u64::try_from(succeeded).unwrap_or(0),
        cpu,
    })
}
