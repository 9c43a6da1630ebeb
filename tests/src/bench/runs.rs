//! The six runs of the benchmark (issue #5). Each starts its own [`Stack`],
//! measures, and stops it; each measures its bare-PostgreSQL baseline in the
//! same run, so the ratios hold on a noisy machine.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use sqlx::{Connection, PgPool};
use uuid::Uuid;

use offpeak_core::window::{self, WindowSpec};

use super::stack::{Rss, Stack, StackConfig};
use super::Options;

/// Rows per COPY chunk sent to the server.
const COPY_CHUNK_BYTES: usize = 1 << 20;
/// Ids per statement of the bare `UPDATE` baseline: the release loop's
/// round size until step 36 of BENCHMARKS.md (10,000 since), kept so that
/// the baseline stays comparable with every earlier run.
const BARE_UPDATE_BATCH: usize = 5_000;

// ---------------------------------------------------------------- run 1

#[derive(Debug, Clone, Serialize)]
pub struct BulkResult {
    pub jobs: u64,
    pub per_request: usize,
    pub clients: usize,
    pub api_secs: f64,
    pub api_rate: f64,
    pub copy_secs: f64,
    pub copy_rate: f64,
    pub ratio: f64,
    pub rss: Rss,
}

/// Run 1: `POST /v1/jobs/bulk` against PostgreSQL's own `COPY` of the same rows.
pub async fn bulk(opts: &Options) -> anyhow::Result<BulkResult> {
    let total = scaled(1_000_000, opts.scale, 1_000);
    let per_request = 10_000.min(total as usize);
    let clients = opts.bulk_clients;
    let stack = Stack::start("bulk", opts.stack(2, Duration::ZERO, vec![])).await?;
    let tz = quiet_timezone();

    // Bodies are built before the clock starts: the client's JSON encoding
    // is not what is measured (it still shares the two cores). This is the
    // one run that sends bytes rather than the typed client's requests
    // (`offpeak_client`), which encode as they send: a million inputs'
    // encoding would land inside the measured time, on the server's cores.
    let requests = (total as usize).div_ceil(per_request);
    let bodies: Vec<Vec<u8>> = (0..requests)
        .map(|r| {
            let n = per_request.min(total as usize - r * per_request);
            let inputs: Vec<serde_json::Value> = (0..n).map(|i| json!({"prompt": format!("bulk {r} {i}")})).collect();
            serde_json::to_vec(&json!({"model": "flux-schnell", "inputs": inputs, "timezone": tz})).expect("json")
        })
        .collect();
    let bodies = Arc::new(std::sync::Mutex::new(bodies));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (bodies, http, url, key) = (Arc::clone(&bodies), stack.http.clone(), format!("{}/v1/jobs/bulk", stack.api), stack.key.clone());
        tasks.spawn(async move {
            loop {
                let Some(body) = bodies.lock().expect("lock").pop() else { return Ok::<_, anyhow::Error>(()) };
                let resp = http
                    .post(&url)
                    .bearer_auth(&key)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await?;
                if resp.status() != 201 {
                    anyhow::bail!("bulk submit: {} {}", resp.status(), resp.text().await.unwrap_or_default());
                }
                let _ = resp.bytes().await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    let api_secs = started.elapsed().as_secs_f64();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&stack.pool).await?;
    anyhow::ensure!(stored as u64 == total, "the API stored {stored} jobs, not {total}");
    let rss = stack.rss();

    // The same rows (the columns insert_many writes) into an equivalent
    // table (same columns, defaults, constraints and indexes; no foreign
    // key), with as many concurrent COPY streams as there were API clients.
    sqlx::query("CREATE TABLE jobs_copy (LIKE jobs INCLUDING ALL)").execute(&stack.pool).await?;
    let now = Utc::now();
    let w = window::next_window(offpeak_core::tz::parse(&tz)?, now, &WindowSpec::default());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let per_stream = (total as usize).div_ceil(clients);
    for c in 0..clients {
        let (url, tenant, tz) = (stack.database_url.clone(), stack.tenant_id, tz.clone());
        let from = c * per_stream;
        let to = ((c + 1) * per_stream).min(total as usize);
        tasks.spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            // With the cache key (the same hash the API computes) and the
            // quota columns, as the API writes them.
            let rows = (from..to).map(|i| {
                let input = json!({"prompt": format!("bulk {i}")});
                format!(
                    "{}\t{tenant}\tflux-schnell\t{input}\tlow\t{tz}\t\\N\t\\N\theld\t{}\t{}\t5\t{}\t\\N\t\\\\x{}\t{}\t1\n",
                    Uuid::now_v7(),
                    ts(w.opens_at),
                    ts(w.closes_at),
                    ts(now),
                    hex::encode(offpeak_core::hash::cache_key(tenant, "flux-schnell", &input)),
                    now.date_naive(),
                )
            });
            copy_rows(
                &mut conn,
                "COPY jobs_copy (id, tenant_id, model, input, priority, timezone, user_id, metadata, state, release_at, \
                 window_closes_at, max_attempts, created_at, use_case, cache_key, quota_day, reserved_credits) FROM STDIN",
                rows,
            )
            .await
        });
    }
    let mut copied = 0;
    while let Some(r) = tasks.join_next().await {
        copied += r??;
    }
    let copy_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(copied == total, "COPY stored {copied} rows, not {total}");
    let rss = max_rss(rss, stack.stop().await);
    let api_rate = total as f64 / api_secs;
    let copy_rate = total as f64 / copy_secs;
    Ok(BulkResult { jobs: total, per_request, clients, api_secs, api_rate, copy_secs, copy_rate, ratio: api_rate / copy_rate, rss })
}

// ---------------------------------------------------------------- run 2

#[derive(Debug, Clone, Serialize)]
pub struct SingleResult {
    pub clients: usize,
    pub secs: f64,
    pub requests: u64,
    pub errors: u64,
    pub rate: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// The same clients, each on its own database connection, committing a
    /// single-row `INSERT` of the same row into an equivalent table: what
    /// one commit per job costs PostgreSQL here.
    pub bare_rate: f64,
    pub bare_p99_ms: f64,
    /// API rate ÷ bare commit rate.
    pub ratio: f64,
}

/// Run 2: `POST /v1/jobs` from 64 concurrent clients (an in-process load
/// generator: one keep-alive connection per client).
pub async fn single(opts: &Options) -> anyhow::Result<SingleResult> {
    let clients = 64;
    let secs = (30.0 * opts.scale).clamp(2.0, 30.0);
    let warmup = Duration::from_secs_f64((secs / 10.0).min(2.0));
    let stack = Stack::start("single", opts.stack(2, Duration::ZERO, vec![])).await?;
    let tz = quiet_timezone();
    let http = reqwest::Client::builder().pool_max_idle_per_host(clients).build()?;
    // The typed client without idempotency keys and retries: a keyed
    // submission skips the group commit this run measures (see
    // `ClientBuilder::idempotency_keys`), and a failure is counted, not retried.
    let client = offpeak_client::Client::builder(stack.api.clone(), stack.key.clone())
        .http_client(http)
        .idempotency_keys(false)
        .retry(offpeak_client::RetryPolicy::none())
        .build()?;
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let measure_from = t0 + warmup;
    let until = measure_from + Duration::from_secs_f64(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, tz, errors) = (client.clone(), tz.clone(), Arc::clone(&errors));
        tasks.spawn(async move {
            let mut latencies: Vec<u32> = Vec::with_capacity(8192);
            let mut n = 0u64;
            loop {
                let sent = Instant::now();
                if sent >= until {
                    return latencies;
                }
                n += 1;
                let mut input = serde_json::Map::new();
                input.insert("prompt".into(), format!("single {c} {n}").into());
                let request = offpeak_client::types::SubmitRequest::builder().model("flux-schnell").input(input).timezone(Some(tz.as_str().into()));
                let ok = client.submit(request).await.is_ok();
                if sent < measure_from {
                    continue;
                }
                if ok {
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    let mut all = Vec::new();
    while let Some(r) = tasks.join_next().await {
        all.extend(r?);
    }
    anyhow::ensure!(!all.is_empty(), "no submission succeeded ({} errors)", errors.load(Ordering::Relaxed));

    // The baseline: the same number of clients, each committing one
    // single-row INSERT at a time on its own connection (autocommit), for
    // the same time: one transaction and one WAL flush per job, as a
    // submission cost before group commit, with no HTTP, JSON or admission.
    sqlx::query("CREATE TABLE jobs_single (LIKE jobs INCLUDING ALL)").execute(&stack.pool).await?;
    let now = Utc::now();
    let w = window::next_window(offpeak_core::tz::parse(&tz)?, now, &WindowSpec::default());
    let t0 = Instant::now();
    let (measure_from, until) = (t0 + warmup, t0 + warmup + Duration::from_secs_f64(secs));
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (url, tenant, tz) = (stack.database_url.clone(), stack.tenant_id, tz.clone());
        tasks.spawn(async move {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            let mut latencies: Vec<u32> = Vec::with_capacity(8192);
            for n in 0u64.. {
                let sent = Instant::now();
                if sent >= until {
                    break;
                }
                sqlx::query(
                    "INSERT INTO jobs_single (id, tenant_id, model, input, priority, timezone, state, release_at,
                                              window_closes_at, max_attempts, created_at, quota_day, reserved_credits)
                     VALUES ($1, $2, 'flux-schnell', $3, 'low', $4, 'held', $5, $6, 5, $7, $8, 1)",
                )
                .bind(Uuid::now_v7())
                .bind(tenant)
                .bind(json!({"prompt": format!("single {c} {n}")}))
                .bind(&tz)
                .bind(w.opens_at)
                .bind(w.closes_at)
                .bind(now)
                .bind(now.date_naive())
                .execute(&mut conn)
                .await?;
                if sent >= measure_from {
                    latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
                }
            }
            Ok::<_, anyhow::Error>(latencies)
        });
    }
    let mut bare = Vec::new();
    while let Some(r) = tasks.join_next().await {
        bare.extend(r??);
    }
    let _ = stack.stop().await;
    all.sort_unstable();
    bare.sort_unstable();
    let q = |v: &[u32], p: f64| v.get(((v.len() as f64 * p) as usize).min(v.len().saturating_sub(1))).map_or(0.0, |&us| us as f64 / 1000.0);
    let rate = all.len() as f64 / secs;
    let bare_rate = bare.len() as f64 / secs;
    Ok(SingleResult {
        clients,
        secs,
        requests: all.len() as u64,
        errors: errors.load(Ordering::Relaxed),
        rate,
        p50_ms: q(&all, 0.50),
        p99_ms: q(&all, 0.99),
        max_ms: all.last().map_or(0.0, |&us| us as f64 / 1000.0),
        bare_rate,
        bare_p99_ms: q(&bare, 0.99),
        ratio: rate / bare_rate.max(f64::MIN_POSITIVE),
    })
}

// ---------------------------------------------------------------- run 3

#[derive(Debug, Clone, Serialize)]
pub struct BurstResult {
    pub jobs: u64,
    pub tenants: usize,
    pub models: usize,
    /// The jobs carry cache keys and quota days, as the API stores a job
    /// submitted with the cache on (the default).
    pub cache_keys: bool,
    /// Seconds from the window opening until no job was `held`.
    pub published_secs: f64,
    /// Seconds from the window opening until every job was finished.
    pub finished_secs: f64,
    pub publish_rate: f64,
    pub finish_rate: f64,
    /// Jobs that finished (succeeded), of `jobs`.
    pub succeeded: u64,
    /// The run hit its time limit before everything finished.
    pub timed_out: bool,
    /// Bare `UPDATE jobs SET state = 'queued' WHERE id = ANY($1)` of the
    /// same number of rows, in statements of `BARE_UPDATE_BATCH` ids.
    pub bare_update_rate: Option<f64>,
    /// Publish rate ÷ bare update rate.
    pub ratio: Option<f64>,
    /// Seconds the backlog's COPY took (setup, not measured against a target).
    pub setup_copy_secs: f64,
    /// CPU spent from the window's opening until every job finished, in
    /// µs a job (`/proc`): by PostgreSQL's processes, and by the whole
    /// machine (every process, RabbitMQ's, the simulator's and this
    /// benchmark's polls included).
    pub cpu: CpuPerJob,
    pub rss: Rss,
    /// The groups the jobs belong to, as the bulk submissions that would
    /// have made them: one per (tenant, model).
    pub groups: usize,
    /// With `--burst-webhooks`: the deliveries of every job's and group's event.
    pub webhooks: Option<WebhookRun>,
}

/// The webhook side of a burst with every tenant subscribed.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRun {
    /// Endpoints (one per tenant, all to one local receiver).
    pub endpoints: usize,
    /// Events expected: one per job, one per group.
    pub expected: u64,
    /// Distinct deliveries the receiver got (2xx answered).
    pub received: u64,
    /// Seconds from the window opening until the last expected delivery arrived.
    pub delivered_secs: f64,
    /// Deliveries per second over that time.
    pub rate: f64,
    /// The time limit was hit before every event arrived.
    pub timed_out: bool,
}

/// A webhook receiver that only counts what it gets (the benchmark's: a
/// million bodies would not fit the recording receiver of the tests).
struct CountingReceiver {
    url: String,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl CountingReceiver {
    async fn start() -> anyhow::Result<Self> {
        let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let c = count.clone();
        let app = axum::Router::new().fallback(move || {
            let c = c.clone();
            async move {
                c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                "ok"
            }
        });
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, count, task })
    }

    fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for CountingReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The 20 models of the burst, priced 1 credit each (`OFFPEAK_PRICES`).
pub fn burst_models() -> Vec<String> {
    (0..20).map(|m| format!("bench-m{m:02}")).collect()
}

/// Run 3: `jobs` held jobs across 1,000 tenants and 20 models, all due at
/// one instant a few seconds ahead; then publish and finish with 2 workers.
pub async fn burst(opts: &Options, jobs: u64, with_baseline: bool, cache_keys: bool) -> anyhow::Result<BurstResult> {
    let models = burst_models();
    let prices: Vec<String> = models.iter().map(|m| format!("{m}=1")).collect();
    let env = vec![("OFFPEAK_PRICES".into(), prices.join(",")), ("OFFPEAK_WEBHOOK_ALLOW_PRIVATE".into(), "true".into())];
    let stack = Stack::start("burst", opts.stack(2, Duration::ZERO, env)).await?;
    let n_tenants = 1_000.min(jobs as usize);
    let tenants = make_tenants(&stack.pool, n_tenants).await?;
    // Each (tenant, model) is one group, as one bulk submission of the
    // API would make it (group progress, completion); and as the API
    // would number them, a group's jobs have consecutive ids.
    let group_of = |i: usize| (i % n_tenants) * models.len() + (i / n_tenants) % models.len();
    let ids: Vec<Uuid> = {
        let fresh: Vec<Uuid> = (0..jobs).map(|_| Uuid::now_v7()).collect();
        let mut order: Vec<usize> = (0..jobs as usize).collect();
        order.sort_by_key(|i| group_of(*i));
        let mut ids = vec![Uuid::nil(); jobs as usize];
        for (k, i) in order.into_iter().enumerate() {
            ids[i] = fresh[k];
        }
        ids
    };
    let groups: Vec<Uuid> = (0..n_tenants * models.len()).map(|_| Uuid::now_v7()).collect();
    let mut totals = vec![0i64; groups.len()];
    for i in 0..jobs as usize {
        totals[group_of(i)] += 1;
    }
    let group_tenants: Vec<Uuid> = (0..groups.len()).map(|g| tenants[g / models.len()]).collect();
    let used: Vec<usize> = (0..groups.len()).filter(|g| totals[*g] > 0).collect();
    let (mut first, mut last) = (vec![Uuid::max(); groups.len()], vec![Uuid::nil(); groups.len()]);
    for (i, id) in ids.iter().enumerate() {
        let g = group_of(i);
        first[g] = first[g].min(*id);
        last[g] = last[g].max(*id);
    }
    sqlx::query(
        "INSERT INTO job_groups (id, tenant_id, total, first_job_id, last_job_id, created_at)
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int8[], $4::uuid[], $5::uuid[], $6::timestamptz[])",
    )
    .bind(used.iter().map(|g| groups[*g]).collect::<Vec<_>>())
    .bind(used.iter().map(|g| group_tenants[*g]).collect::<Vec<_>>())
    .bind(used.iter().map(|g| totals[*g]).collect::<Vec<_>>())
    .bind(used.iter().map(|g| first[*g]).collect::<Vec<_>>())
    .bind(used.iter().map(|g| last[*g]).collect::<Vec<_>>())
    .bind(vec![Utc::now(); used.len()])
    .execute(&stack.pool)
    .await?;
    let n_groups = used.len();
    // With `--burst-webhooks`: every tenant subscribed to every event, at one local receiver.
    let receiver = if opts.burst_webhooks { Some(CountingReceiver::start().await?) } else { None };
    if let Some(r) = &receiver {
        let all: Vec<&str> = offpeak_core::webhook::EventType::ALL.iter().map(|e| e.as_str()).collect();
        for t in &tenants {
            let e = offpeak_store::webhooks::NewEndpoint {
                id: Uuid::now_v7(),
                tenant_id: *t,
                url: &r.url,
                events: &all,
                description: Some("bench"),
                secret: &[7u8; 32],
                now: Utc::now(),
            };
            offpeak_store::webhooks::create(&stack.pool, &e).await?;
        }
    }
    let rows = |release_at: DateTime<Utc>, ids: &[Uuid]| {
        let (tenants, models, groups) = (tenants.clone(), models.clone(), groups.clone());
        let close = release_at + chrono::Duration::hours(4);
        let created = Utc::now();
        ids.to_vec().into_iter().enumerate().map(move |(i, id)| {
            let t = &tenants[i % tenants.len()];
            let m = &models[(i / tenants.len()) % models.len()];
            let g = groups[(i % tenants.len()) * models.len() + (i / tenants.len()) % models.len()];
            // With `cache_keys` (run `burst-keys`, or `--burst-cache-keys`
            // for runs 3 and 5), as the API stores a job submitted
            // with the cache on (the default): its cache key, so the
            // release's coalescing step does its work, and its quota day.
            // Without, the rows of the runs in the table above.
            let input = json!({"prompt": format!("burst {i}")});
            let (key, day, reserved) = if cache_keys {
                let key = format!("\\\\x{}", hex::encode(offpeak_core::hash::cache_key(*t, m, &input)));
                (key, created.date_naive().to_string(), 1)
            } else {
                ("\\N".to_owned(), "\\N".to_owned(), 0)
            };
            format!(
                "{id}\t{t}\t{m}\t{input}\tlow\tUTC\theld\t{}\t{}\t5\t{}\t{key}\t{day}\t{reserved}\t{g}\n",
                ts(release_at),
                ts(close),
                ts(created),
            )
        })
    };
    const COLUMNS: &str = "(id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, max_attempts, \
                           created_at, cache_key, quota_day, reserved_credits, group_id)";

    // The baseline first, in the same database: an equivalent table, the
    // same rows, and the bare UPDATE the release has to do at the least.
    let mut conn = stack.pool.acquire().await?;
    let far = Utc::now() + chrono::Duration::days(1);
    sqlx::query("CREATE TABLE jobs_bare (LIKE jobs INCLUDING ALL)").execute(&mut *conn).await?;
    let copy_started = Instant::now();
    copy_rows(&mut conn, &format!("COPY jobs_bare {COLUMNS} FROM STDIN"), rows(far, &ids)).await?;
    let copy_estimate = copy_started.elapsed();
    let mut bare_update_rate = None;
    if with_baseline {
        sqlx::query("VACUUM ANALYZE jobs_bare").execute(&mut *conn).await?;
        let started = Instant::now();
        for chunk in ids.chunks(BARE_UPDATE_BATCH) {
            sqlx::query("UPDATE jobs_bare SET state = 'queued' WHERE id = ANY($1)").bind(chunk).execute(&mut *conn).await?;
        }
        bare_update_rate = Some(jobs as f64 / started.elapsed().as_secs_f64());
    }
    sqlx::query("DROP TABLE jobs_bare").execute(&mut *conn).await?;

    // The backlog: due at `opening`, far enough ahead for the COPY, the
    // jobs' `held_jobs` rows (the API inserts both) and a VACUUM ANALYZE of
    // both tables (autovacuum would have done it during the day).
    let opening = Utc::now() + chrono::Duration::from_std(copy_estimate * 2 + Duration::from_secs(5))?;
    let copy_started = Instant::now();
    copy_rows(&mut conn, &format!("COPY jobs {COLUMNS} FROM STDIN"), rows(opening, &ids)).await?;
    hold_copied(&mut conn).await?;
    sqlx::query("VACUUM ANALYZE jobs").execute(&mut *conn).await?;
    sqlx::query("VACUUM ANALYZE held_jobs").execute(&mut *conn).await?;
    let setup_copy_secs = copy_started.elapsed().as_secs_f64();
    drop(conn);
    announce(&stack.pool).await?;
    let lead = (opening - Utc::now()).to_std().unwrap_or_default();
    if lead.is_zero() {
        eprintln!("bench: warning: the backlog was ready only after its window opened; the times below include the late part of the setup");
    }
    tokio::time::sleep(lead).await;

    let timeout = Duration::from_secs_f64(opts.burst_timeout_secs);
    let cpu_before = CpuSample::read();
    let (published, finished, timed_out) = watch_until_done(&stack.pool, opening, timeout).await?;
    let cpu = CpuSample::read().per_job_since(&cpu_before, jobs);
    let succeeded: i64 = sqlx::query_scalar("SELECT count(*) FROM job_view WHERE state = 'succeeded'").fetch_one(&stack.pool).await?;
    let webhooks = match &receiver {
        None => None,
        Some(r) => {
            let expected = jobs + n_groups as u64;
            let deadline = Instant::now() + timeout;
            while r.count() < expected && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let delivered_secs = (Utc::now() - opening).to_std().unwrap_or_default().as_secs_f64();
            let received = r.count();
            Some(WebhookRun {
                endpoints: n_tenants,
                expected,
                received,
                delivered_secs,
                rate: received as f64 / delivered_secs,
                timed_out: received < expected,
            })
        }
    };
    let rss = stack.stop().await;
    let publish_rate = jobs as f64 / published;
    Ok(BurstResult {
        jobs,
        tenants: n_tenants,
        models: models.len(),
        cache_keys,
        published_secs: published,
        finished_secs: finished,
        publish_rate,
        finish_rate: if timed_out { succeeded as f64 / finished } else { jobs as f64 / finished },
        succeeded: succeeded as u64,
        timed_out,
        bare_update_rate,
        ratio: bare_update_rate.map(|b| publish_rate / b),
        setup_copy_secs,
        cpu,
        rss,
        groups: n_groups,
        webhooks,
    })
}

/// CPU seconds so far, from `/proc`: of every process named `postgres` (its
/// children's that have exited included, through the postmaster's
/// `cutime`), and of the whole machine (`/proc/stat`'s busy time).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct CpuSample {
    postgres: f64,
    machine: f64,
}

/// [`CpuSample`]s' difference, in µs a job.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CpuPerJob {
    pub postgres_us: f64,
    pub machine_us: f64,
}

/// Clock ticks a second, as `/proc` counts CPU time (`USER_HZ`, 100 on
/// every Linux architecture this runs on).
const TICKS: f64 = 100.0;

impl CpuSample {
    pub(crate) fn read() -> Self {
        let mut postgres = 0.0;
        if let Ok(dir) = std::fs::read_dir("/proc") {
            for entry in dir.flatten() {
                let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
                // `pid (comm) state ...`: comm may hold spaces, so split after its `)`.
                let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
                if &stat[open + 1..close] != "postgres" {
                    continue;
                }
                let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
                // utime, stime, cutime, cstime: fields 14 to 17 of the line,
                // 11 to 14 after the state (field 3).
                let ticks: f64 = fields.get(11..15).map_or(0.0, |f| f.iter().filter_map(|v| v.parse::<f64>().ok()).sum());
                postgres += ticks / TICKS;
            }
        }
        let machine = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| s.lines().next().map(str::to_owned))
            .map_or(0.0, |line| {
                // cpu user nice system idle iowait irq softirq steal: busy is all but idle and iowait.
                let v: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
                [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum::<f64>() / TICKS
            });
        Self { postgres, machine }
    }

    pub(crate) fn per_job_since(&self, before: &CpuSample, jobs: u64) -> CpuPerJob {
        let per = |now: f64, then: f64| (now - then).max(0.0) * 1e6 / jobs.max(1) as f64;
        CpuPerJob { postgres_us: per(self.postgres, before.postgres), machine_us: per(self.machine, before.machine) }
    }
}

/// Polls (every 100 ms, with two cheap probes) until no job is held
/// (waiting in `held_jobs`: a job a round released keeps `held` in its own
/// row) and then no batch is open; returns seconds from `opening` to each,
/// and whether `timeout` cut it short.
pub(super) async fn watch_until_done(pool: &PgPool, opening: DateTime<Utc>, timeout: Duration) -> anyhow::Result<(f64, f64, bool)> {
    let since = |_: ()| (Utc::now() - opening).to_std().unwrap_or_default().as_secs_f64();
    let deadline = Instant::now() + timeout;
    let mut published = None;
    loop {
        if published.is_none() {
            let held: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM held_jobs)").fetch_one(pool).await?;
            if !held {
                published = Some(since(()));
            }
        }
        if published.is_some() {
            let open: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM batches WHERE NOT finished)")
                .fetch_one(pool)
                .await?;
            if !open {
                let p = published.unwrap_or_default();
                return Ok((p, since(()), false));
            }
        }
        if Instant::now() > deadline {
            let t = since(());
            return Ok((published.unwrap_or(t), t, true));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------- run 4

#[derive(Debug, Clone, Serialize)]
pub struct SlowResult {
    pub jobs: u64,
    pub latency_ms: u64,
    pub workers: usize,
    pub prefetch: u16,
    pub batch_max: usize,
    pub ideal_rate: f64,
    /// Steady-state rate: jobs finished between the 10th and 90th
    /// percentile of finish times, over that span.
    pub rate: f64,
    pub ratio: f64,
}

/// Run 4: the simulator answers each call after 500 ms.
pub async fn slow(opts: &Options) -> anyhow::Result<SlowResult> {
    let latency = Duration::from_millis(500);
    let workers = 2;
    let prefetch = opts.prefetch.unwrap_or(offpeak_worker::consumer::PREFETCH_DEFAULT);
    let batch_max = opts.batch_max.unwrap_or(offpeak_scheduler::release::BATCH_MAX_DEFAULT);
    let ideal_rate = (workers * prefetch as usize * batch_max) as f64 / latency.as_secs_f64();
    // About 20 s of work at the ideal rate.
    let jobs = ((ideal_rate * 20.0 * opts.scale.max(0.1)) as u64).max(batch_max as u64 * 8);
    let stack = Stack::start("slow", opts.stack(workers, latency, vec![])).await?;
    let tenants = make_tenants(&stack.pool, 20).await?;
    let opening = Utc::now() + chrono::Duration::seconds(3);
    let close = opening + chrono::Duration::hours(4);
    let created = Utc::now();
    let rows = (0..jobs as usize).map(|i| {
        format!(
            "{}\t{}\tflux-schnell\t{{\"prompt\": \"slow {i}\"}}\tlow\tUTC\theld\t{}\t{}\t5\t{}\n",
            Uuid::now_v7(),
            tenants[i % tenants.len()],
            ts(opening),
            ts(close),
            ts(created)
        )
    });
    let mut conn = stack.pool.acquire().await?;
    copy_rows(
        &mut conn,
        "COPY jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, max_attempts, created_at) FROM STDIN",
        rows,
    )
    .await?;
    hold_copied(&mut conn).await?;
    drop(conn);
    announce(&stack.pool).await?;
    tokio::time::sleep((opening - Utc::now()).to_std().unwrap_or_default()).await;
    let (_, _, timed_out) = watch_until_done(&stack.pool, opening, Duration::from_secs(600)).await?;
    anyhow::ensure!(!timed_out, "slow-provider run did not finish within 600 s");
    let finished: Vec<DateTime<Utc>> =
        sqlx::query_scalar("SELECT finished_at FROM job_view ORDER BY finished_at").fetch_all(&stack.pool).await?;
    let _ = stack.stop().await;
    let (a, b) = (finished.len() / 10, finished.len() * 9 / 10);
    let span = (finished[b] - finished[a]).to_std().unwrap_or_default().as_secs_f64().max(1e-3);
    let rate = (b - a) as f64 / span;
    Ok(SlowResult { jobs, latency_ms: latency.as_millis() as u64, workers, prefetch, batch_max, ideal_rate, rate, ratio: rate / ideal_rate })
}

// ---------------------------------------------------------------- run 6

#[derive(Debug, Clone, Serialize)]
pub struct WindowResult {
    pub openings: usize,
    /// Window opening → the release round that published its first batch
    /// (`job_view.queued_at`: its batch's `published_at`, the round's instant).
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Window opening → its first jobs committed `queued`, as a poll every
    /// [`COMMIT_POLL`] saw them: the round's work up to its commit
    /// included, which `queued_at` (the round's instant) leaves out.
    pub committed_p50_ms: f64,
    pub committed_p99_ms: f64,
    /// Window opening → a worker started its first job (`started_at`):
    /// includes the publish, the broker and the worker's start.
    pub started_p50_ms: f64,
    pub started_p99_ms: f64,
}

/// How often run 6 looks for newly committed releases.
pub const COMMIT_POLL: Duration = Duration::from_millis(5);

/// Run 6: 100 window openings 137 ms apart (not a multiple of the release
/// interval, so the openings fall at every phase of the loop), 5 jobs each,
/// on an otherwise idle system. The jobs are copied in 3 s before the first
/// opening and announced as the API announces jobs due that soon.
pub async fn window_precision(opts: &Options) -> anyhow::Result<WindowResult> {
    let openings = ((100.0 * opts.scale).round() as usize).clamp(3, 100);
    let stack = Stack::start("window", opts.stack(2, Duration::ZERO, vec![])).await?;
    let tenants = make_tenants(&stack.pool, 10).await?;
    let first = Utc::now() + chrono::Duration::seconds(3);
    let created = Utc::now();
    let rows = (0..openings).flat_map(|o| {
        let at = first + chrono::Duration::milliseconds(137 * o as i64);
        let tenant = tenants[o % tenants.len()];
        (0..5).map(move |j| {
            format!(
                "{}\t{tenant}\tflux-schnell\t{{\"prompt\": \"window {o} {j}\"}}\tlow\tUTC\theld\t{}\t{}\t5\t{}\n",
                Uuid::now_v7(),
                ts(at),
                ts(at + chrono::Duration::hours(4)),
                ts(created)
            )
        })
    });
    let mut conn = stack.pool.acquire().await?;
    copy_rows(
        &mut conn,
        "COPY jobs (id, tenant_id, model, input, priority, timezone, state, release_at, window_closes_at, max_attempts, created_at) FROM STDIN",
        rows,
    )
    .await?;
    hold_copied(&mut conn).await?;
    drop(conn);
    announce(&stack.pool).await?;
    let committed = tokio::spawn(watch_commits(stack.pool.clone(), openings, Duration::from_secs(120)));
    tokio::time::sleep((first - Utc::now()).to_std().unwrap_or_default()).await;
    let (_, _, timed_out) = watch_until_done(&stack.pool, first, Duration::from_secs(120)).await?;
    anyhow::ensure!(!timed_out, "window run did not finish within 120 s");
    let mut committed = committed.await??;
    committed.sort_by(f64::total_cmp);
    let rows: Vec<(f64, f64)> = sqlx::query_as(
        "SELECT EXTRACT(EPOCH FROM min(queued_at) - release_at)::float8 * 1000,
                EXTRACT(EPOCH FROM min(started_at) - release_at)::float8 * 1000
         FROM job_view GROUP BY release_at",
    )
    .fetch_all(&stack.pool)
    .await?;
    let _ = stack.stop().await;
    let mut queued: Vec<f64> = rows.iter().map(|r| r.0).collect();
    let mut started: Vec<f64> = rows.iter().map(|r| r.1).collect();
    queued.sort_by(f64::total_cmp);
    started.sort_by(f64::total_cmp);
    Ok(WindowResult {
        openings,
        p50_ms: quantile(&queued, 0.5),
        p99_ms: quantile(&queued, 0.99),
        max_ms: queued.last().copied().unwrap_or_default(),
        committed_p50_ms: quantile(&committed, 0.5),
        committed_p99_ms: quantile(&committed, 0.99),
        started_p50_ms: quantile(&started, 0.5),
        started_p99_ms: quantile(&started, 0.99),
    })
}

// ---------------------------------------------------------------- helpers

/// Tells the scheduler's release loop that jobs were stored due soon, as
/// the API does for the jobs it stores (`offpeak_scheduler::wake`): the
/// runs copy their jobs in, a few seconds before they are due.
async fn announce(pool: &PgPool) -> anyhow::Result<()> {
    offpeak_store::release::notify_due(pool, offpeak_store::release::Due::Soon).await?;
    Ok(())
}

/// Polls every [`COMMIT_POLL`] for release instants whose jobs have left
/// `held` (committed: `job_view`'s state; a released job's own row keeps
/// `held`), until `openings` of them are seen or `timeout`; returns, for
/// each, milliseconds from the instant to the poll that saw it first.
async fn watch_commits(pool: PgPool, openings: usize, timeout: Duration) -> anyhow::Result<Vec<f64>> {
    let deadline = Instant::now() + timeout;
    let mut seen: std::collections::HashMap<DateTime<Utc>, DateTime<Utc>> = std::collections::HashMap::new();
    while seen.len() < openings && Instant::now() < deadline {
        // A few hundred rows in all: a scan costs less than the poll's interval.
        let due: Vec<DateTime<Utc>> =
            sqlx::query_scalar("SELECT DISTINCT release_at FROM job_view WHERE state <> 'held'").fetch_all(&pool).await?;
        let now = Utc::now();
        for at in due {
            seen.entry(at).or_insert(now);
        }
        tokio::time::sleep(COMMIT_POLL).await;
    }
    Ok(seen.into_iter().map(|(at, first)| (first - at).num_microseconds().unwrap_or_default() as f64 / 1000.0).collect())
}

pub(super) fn quantile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank.
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

pub(super) fn scaled(n: u64, scale: f64, min: u64) -> u64 {
    ((n as f64 * scale).round() as u64).max(min)
}

fn max_rss(a: Rss, b: Rss) -> Rss {
    Rss {
        scheduler: a.scheduler.max(b.scheduler),
        workers: a.workers.iter().zip(b.workers.iter().chain(std::iter::repeat(&0))).map(|(x, y)| *x.max(y)).collect(),
    }
}

/// A timestamp in the form PostgreSQL's text COPY reads.
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// A timezone whose off-peak window is more than two hours away, so the
/// jobs of runs 1 and 2 stay `held` whenever the benchmark runs.
fn quiet_timezone() -> String {
    let now = Utc::now();
    for name in ["UTC", "Asia/Tokyo", "America/New_York", "Australia/Sydney", "Asia/Kolkata"] {
        let tz = offpeak_core::tz::parse(name).expect("known zone");
        if window::next_window(tz, now, &WindowSpec::default()).opens_at > now + chrono::Duration::hours(2) {
            return name.to_owned();
        }
    }
    "Asia/Tokyo".to_owned()
}

/// `n` tenants (`bench-00000`, ...) without keys: the burst's jobs are
/// copied in, not submitted.
async fn make_tenants(pool: &PgPool, n: usize) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..n).map(|i| format!("bench-{i:05}")).collect();
    sqlx::query("INSERT INTO tenants (id, name, timezone) SELECT id, name, 'UTC' FROM unnest($1::uuid[], $2::text[]) AS u(id, name)")
        .bind(&ids)
        .bind(&names)
        .execute(pool)
        .await?;
    Ok(ids)
}

/// Makes the jobs just copied in `held` wait for the release loop, as the
/// API's insert does: their `held_jobs` rows, which is all the loop's claim
/// reads (a fresh database: every `held` job without one, and not
/// released).
async fn hold_copied(conn: &mut sqlx::PgConnection) -> anyhow::Result<u64> {
    let held = sqlx::query(
        "INSERT INTO held_jobs (id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic)
         SELECT id, tenant_id, model, release_at, window_closes_at, timezone, cache_key, semantic FROM jobs
         WHERE state = 'held' AND NOT EXISTS (SELECT 1 FROM batch_members m WHERE m.job_id = jobs.id)
           AND NOT EXISTS (SELECT 1 FROM held_jobs h WHERE h.id = jobs.id)",
    )
    .execute(&mut *conn)
    .await?;
    Ok(held.rows_affected())
}

/// Streams text-format rows through `COPY ... FROM STDIN`; returns the rows stored.
async fn copy_rows(conn: &mut sqlx::PgConnection, statement: &str, rows: impl Iterator<Item = String>) -> anyhow::Result<u64> {
    let mut copy = conn.copy_in_raw(statement).await?;
    let mut buf = String::with_capacity(COPY_CHUNK_BYTES + 4096);
    for row in rows {
        buf.push_str(&row);
        if buf.len() >= COPY_CHUNK_BYTES {
            copy.send(std::mem::take(&mut buf).into_bytes()).await?;
            buf.reserve(COPY_CHUNK_BYTES + 4096);
        }
    }
    if !buf.is_empty() {
        copy.send(buf.into_bytes()).await?;
    }
    Ok(copy.finish().await?)
}

impl Options {
    pub(super) fn stack(&self, workers: usize, sim_latency: Duration, mut env: Vec<(String, String)>) -> StackConfig {
        if let Some(p) = self.prefetch {
            env.push(("OFFPEAK_WORKER_PREFETCH".into(), p.to_string()));
        }
        if let Some(b) = self.batch_max {
            env.push(("OFFPEAK_BATCH_MAX".into(), b.to_string()));
        }
        env.extend(self.env.iter().cloned());
        StackConfig {
            database_url: self.database_url.clone(),
            amqp_url: self.amqp_url.clone(),
            workers,
            sim_latency,
            env,
            keep: self.keep,
        }
    }
}
