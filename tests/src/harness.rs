//! `TestEnv`: one isolated offpeak per test, against the real PostgreSQL and
//! RabbitMQ (in the spirit of zero2prod's `spawn_app`).
//!
//! Each environment gets a fresh database `offpeak_test_<random>` (migrated),
//! its own queue names `offpeak.test.<random>`, its own provider simulator on
//! a random port, and a [`ManualClock`]. The API is served on a random port;
//! the release loop is driven by the test (`release_once`) or runs on its own
//! (`start_release_loop`); workers run in-process (`start_worker`).
//! Dropping the environment stops everything and deletes the database and
//! queues, even when the test panicked, so tests run in parallel and leave
//! nothing behind.
//!
//! The services are found through `DATABASE_URL` (any database on the
//! server; the harness creates its own beside it) and `AMQP_URL`, with the
//! local defaults of `tests/run.sh`.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

use offpeak_scheduler::api::ApiConfig;
use offpeak_scheduler::release::{ReleaseConfig, ReleaseReport, Releaser};
use offpeak_runtime::broker::{self, Publisher, Topology};
use offpeak_core::clock::{Clock, ManualClock, SharedClock};
use offpeak_core::message::BatchMessage;
use offpeak_store::{self as db, jobs::JobRow};
use offpeak_core::prices::PriceTable;
use offpeak_runtime::shutdown::{Shutdown, ShutdownSignal};
use offpeak_worker::consumer::{self, ConsumerConfig};
use offpeak_worker::process::{process_batch, Backoff, BatchContext};
use offpeak_worker::provider::Providers;
use offpeak_core::providers::{Adapter, Catalog, Model, Provider};

use crate::sim::{self, RunningSim, SimConfig};

/// The services' URLs, from the environment or local defaults.
/// The job ids of a `POST /v1/jobs/bulk` answer (`"ids"`), in order.
///
/// # Panics
/// If the answer has no `ids` array of UUID strings.
pub fn bulk_ids(answer: &Value) -> Vec<Uuid> {
    let ids = answer["ids"].as_array().unwrap_or_else(|| panic!("a bulk answer with ids: {answer}"));
    ids.iter().map(|i| i.as_str().and_then(|i| i.parse().ok()).unwrap_or_else(|| panic!("a job id: {i}"))).collect()
}

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into())
}

pub fn amqp_url() -> String {
    std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Options for a new environment.
#[derive(Debug, Clone)]
pub struct EnvOptions {
    pub now: DateTime<Utc>,
    pub sim: SimConfig,
    pub api: ApiConfig,
    pub release: ReleaseConfig,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            now: Utc::now(),
            sim: SimConfig::default(),
            api: ApiConfig::default(),
            release: ReleaseConfig { interval: Duration::from_millis(50), ..Default::default() },
        }
    }
}

pub struct TestEnv {
    pub id: String,
    pub db_name: String,
    pub pool: PgPool,
    pub topology: Topology,
    pub amqp: lapin::Connection,
    pub publisher: Publisher,
    pub clock: ManualClock,
    pub sim: RunningSim,
    /// `http://127.0.0.1:PORT` of the API.
    pub api_url: String,
    pub http: reqwest::Client,
    pub options: EnvOptions,
    /// The API's [`offpeak_scheduler::direct::Room`]: closed unless a
    /// release loop opens it ([`TestEnv::start_release_loop_at_submit`]),
    /// so bulk submissions are held for rounds as in every other test.
    pub room: offpeak_scheduler::direct::Room,
    shutdown: Shutdown,
    signal: ShutdownSignal,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    server_options: PgConnectOptions,
}

impl TestEnv {
    pub async fn new() -> Self {
        Self::with(EnvOptions::default()).await
    }

    /// # Panics
    /// If PostgreSQL or RabbitMQ cannot be reached: tests need them.
    pub async fn with(options: EnvOptions) -> Self {
        if std::env::var_os("RUST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
                .with_test_writer()
                .try_init();
        }
        // The creation time in the name lets a later run drop databases
        // that a killed test run could not clean up.
        let id = format!("{}_{}", Utc::now().timestamp(), &Uuid::new_v4().simple().to_string()[..8]);
        let db_name = format!("offpeak_test_{id}");
        let server_options = PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL parses");
        let mut admin = server_options.clone().database("postgres").connect().await.expect(
            "PostgreSQL must be reachable for tests (run tests/run.sh, which starts it, or set DATABASE_URL)",
        );
        drop_abandoned_databases(&mut admin).await;
        sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(&mut admin).await.expect("create test database");
        admin.close().await.ok();
        let pool = db::connect_with(server_options.clone().database(&db_name), 10).await.expect("connect test database");
        db::migrate(&pool).await.expect("migrations apply");

        // Test queues expire on their own if a killed run leaves them behind.
        let topology = Topology::new(format!("offpeak.test.{id}")).with_expiry(Duration::from_secs(600));
        let amqp = broker::connect(&amqp_url(), "offpeak-test", Duration::from_secs(10))
            .await
            .expect("RabbitMQ must be reachable for tests (run tests/run.sh, which starts it, or set AMQP_URL)");
        let publisher = Publisher::connect(&amqp_url(), "offpeak-test", topology.clone(), Duration::from_secs(10))
            .await
            .expect("declare test queues");

        let clock = ManualClock::new(options.now);
        let sim = sim::spawn(options.sim.clone()).await.expect("simulator starts");
        let (shutdown, signal) = Shutdown::new();

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind API port");
        let api_url = format!("http://{}", listener.local_addr().expect("bound address"));
        let shared_clock: SharedClock = Arc::new(clock.clone());
        let room = offpeak_scheduler::direct::Room::default();
        let server = tokio::spawn({
            let (pool, publisher, api, signal, room) =
                (pool.clone(), publisher.clone(), options.api.clone(), signal.clone(), room.clone());
            async move {
                let loops = offpeak_scheduler::startup::Loops { room, ..Default::default() };
                let _ = offpeak_scheduler::startup::serve(listener, pool, publisher, shared_clock, api, loops, signal).await;
            }
        });
        Self {
            id,
            db_name,
            pool,
            topology,
            amqp,
            publisher,
            clock,
            sim,
            api_url,
            http: reqwest::Client::new(),
            options,
            room,
            shutdown,
            signal,
            tasks: vec![server],
            server_options,
        }
    }

    /// URL of this environment's database (for the real binaries).
    pub fn database_url(&self) -> String {
        let mut url = url::Url::parse(&database_url()).expect("DATABASE_URL is a URL");
        url.set_path(&self.db_name);
        url.to_string()
    }

    pub fn shared_clock(&self) -> SharedClock {
        Arc::new(self.clock.clone())
    }

    /// A release loop over this environment, with its config.
    pub fn releaser(&self) -> Releaser {
        self.releaser_with(self.options.release.clone())
    }

    pub fn releaser_with(&self, config: ReleaseConfig) -> Releaser {
        Releaser::new(self.pool.clone(), self.publisher.clone(), self.shared_clock(), config)
    }

    /// A rescuer over this environment.
    pub fn rescuer(&self, config: offpeak_scheduler::rescue::RescueConfig) -> offpeak_scheduler::rescue::Rescuer {
        offpeak_scheduler::rescue::Rescuer::new(self.pool.clone(), self.publisher.clone(), self.shared_clock(), config)
    }

    /// A webhook delivery loop over this environment (the clock's time),
    /// allowed to reach this machine's receivers unless `cfg` says otherwise.
    pub fn deliverer(&self, cfg: offpeak_scheduler::webhooks::DeliveryConfig) -> offpeak_scheduler::webhooks::Deliverer {
        offpeak_scheduler::webhooks::Deliverer::new(self.pool.clone(), self.shared_clock(), cfg).expect("webhook client builds")
    }

    /// The delivery settings tests use: private destinations allowed (the
    /// receivers are on 127.0.0.1), a short timeout, quick passes.
    pub fn test_delivery_config() -> offpeak_scheduler::webhooks::DeliveryConfig {
        offpeak_scheduler::webhooks::DeliveryConfig {
            interval: Duration::from_millis(50),
            sender: offpeak_scheduler::webhooks::http::SenderConfig {
                timeout: Duration::from_secs(2),
                allow_private: true,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Runs a delivery loop ([`Self::test_delivery_config`]) in the
    /// background until the environment drops.
    pub fn start_delivery_loop(&mut self) {
        let d = self.deliverer(Self::test_delivery_config());
        self.tasks.push(tokio::spawn(d.run(self.signal.clone())));
    }

    /// One release round at the clock's instant.
    pub async fn release_once(&self) -> ReleaseReport {
        self.releaser().run_once().await.expect("release round")
    }

    /// Runs the release loop in the background until the environment drops.
    pub fn start_release_loop(&mut self) {
        self.start_release_loop_with(self.options.release.clone());
    }

    /// Runs a release loop with `config` in the background until the
    /// environment drops; returns a clone of its releaser, which counts the
    /// loop's rounds ([`Releaser::rounds`]) and shares its wake-ups.
    pub fn start_release_loop_with(&mut self, config: ReleaseConfig) -> Releaser {
        let r = self.releaser_with(config);
        self.tasks.push(tokio::spawn(r.clone().run(self.signal.clone())));
        r
    }

    /// Runs a release loop with `config` that opens the API's room, as a
    /// replica's does (`offpeak_scheduler::direct`): bulk submissions due
    /// at once release their own jobs while its rounds leave nothing due.
    pub fn start_release_loop_at_submit(&mut self, config: ReleaseConfig) -> Releaser {
        let r = self.releaser_with(config).with_room(self.room.clone());
        self.tasks.push(tokio::spawn(r.clone().run(self.signal.clone())));
        r
    }

    /// The context an in-process worker uses (fast retries for tests).
    pub fn batch_context(&self) -> BatchContext {
        BatchContext {
            pool: self.pool.clone(),
            providers: Providers::from_catalog(
                &Catalog::single(Provider::new("default", Adapter::Batch, &self.sim.url, "PROVIDER_API_KEY"), PriceTable::default().models()),
                |_| Some("test-provider-key".into()),
                Duration::from_secs(10),
                &offpeak_worker::limits::Limiter::new(self.pool.clone()),
            )
            .expect("http client"),
            prices: PriceTable::default(),
            backoff: Backoff { base: Duration::from_millis(10), cap: Duration::from_millis(100) },
            clock: self.shared_clock(),
        }
    }

    /// The context of an in-process worker whose models go where
    /// `catalog` says (every provider's key: `test-provider-key`), with
    /// [`TestEnv::batch_context`]'s fast retries.
    pub fn batch_context_with(&self, catalog: &Catalog) -> BatchContext {
        BatchContext {
            providers: Providers::from_catalog(
                catalog,
                |_| Some("test-provider-key".into()),
                Duration::from_secs(10),
                &offpeak_worker::limits::Limiter::new(self.pool.clone()),
            )
            .expect("providers set up"),
            ..self.batch_context()
        }
    }

    /// The context of an in-process worker whose every priced model goes
    /// to the simulator's OpenAI Batch API (`openai-batch`), polled
    /// without pauses (poll interval 0), for the poller to run in-process
    /// ([`TestEnv::poller`]).
    pub fn openai_batch_context(&self) -> BatchContext {
        let mut provider = Provider::new("openai", Adapter::OpenaiBatch, &self.sim.url, "OPENAI_API_KEY");
        provider.poll_interval = Duration::ZERO;
        provider.poll_interval_max = Duration::ZERO;
        let models = PriceTable::default().models().map(|m| offpeak_core::providers::Model::new(m, "openai")).collect();
        let catalog = Catalog::new(vec![provider], models).expect("a catalog");
        BatchContext {
            ..self.batch_context_with(&catalog)
        }
    }

    /// A catalog that sends every priced model to one `openai-images`
    /// provider, `images`, at this environment's simulator, as the
    /// provider's model `gpt-image-1`; `configure` adjusts the provider
    /// (its timeout, its limits).
    pub fn images_catalog(&self, configure: impl FnOnce(&mut Provider)) -> Catalog {
        let mut provider = Provider::new("images", Adapter::OpenaiImages, &self.sim.url, "IMAGES_API_KEY");
        configure(&mut provider);
        let models = PriceTable::default()
            .models()
            .map(|m| Model { provider_model: "gpt-image-1".into(), ..Model::new(m, "images") })
            .collect();
        Catalog::new(vec![provider], models).expect("a catalog of one provider")
    }

    /// A poller of provider batches with `ctx`, for a test to call
    /// `run_once` on.
    pub fn poller(&self, ctx: &BatchContext) -> offpeak_worker::poller::Poller {
        self.poller_with(ctx, offpeak_worker::poller::PollerConfig::default())
    }

    /// A poller of provider batches with `ctx` and `config` (its lease).
    pub fn poller_with(&self, ctx: &BatchContext, config: offpeak_worker::poller::PollerConfig) -> offpeak_worker::poller::Poller {
        offpeak_worker::poller::Poller::new(Arc::new(ctx.clone()), config)
    }

    /// The batches released but not yet worked, as the messages a worker
    /// would get (followers of a coalesced job, which have no batch, aside).
    pub async fn queued_batches(&self) -> Vec<BatchMessage> {
        let rows: Vec<(Uuid, String, Vec<Uuid>)> = sqlx::query_as(
            "SELECT batch_id, model, array_agg(id ORDER BY id) FROM job_view
             WHERE state = 'queued' AND batch_id IS NOT NULL GROUP BY batch_id, model",
        )
        .fetch_all(&self.pool)
        .await
        .expect("read the released batches");
        rows.into_iter().map(|(b, m, ids)| BatchMessage::new(b, m, ids, self.clock.now())).collect()
    }

    /// Works every released batch with `ctx`, in-process, so the jobs
    /// finish at the clock's instant.
    pub async fn work_released(&self, ctx: &BatchContext) {
        for msg in self.queued_batches().await {
            process_batch(ctx, &msg).await.expect("work a batch");
        }
    }

    /// One release round at the clock's instant, then every released batch
    /// worked with `ctx` ([`TestEnv::work_released`]).
    pub async fn release_and_work(&self, ctx: &BatchContext) -> ReleaseReport {
        let report = self.release_once().await;
        self.work_released(ctx).await;
        report
    }

    /// Starts an in-process worker consuming this environment's queue.
    pub fn start_worker(&mut self) {
        let ctx = self.batch_context();
        self.start_worker_with(ctx);
    }

    /// Starts an in-process worker with its own context (its providers,
    /// limits, backoff), consuming this environment's queue.
    pub fn start_worker_with(&mut self, ctx: BatchContext) {
        let config = ConsumerConfig {
            amqp_url: amqp_url(),
            topology: self.topology.clone(),
            prefetch: 4,
            shutdown_grace: Duration::from_secs(5),
            consumer_tag: consumer::new_consumer_tag(),
        };
        self.tasks.push(tokio::spawn(consumer::run(Arc::new(ctx), config, self.signal.clone())));
    }

    /// Creates a tenant and returns its API key.
    pub async fn tenant(&self, name: &str, timezone: &str) -> String {
        let (_, key) = db::tenants::create(&self.pool, name, offpeak_core::tz::parse(timezone).expect("a known timezone"), None).await.expect("create tenant");
        key
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_url, path)
    }

    /// The typed client (`clients/rust`) for a tenant's key, on this
    /// environment's API.
    pub fn client(&self, key: &str) -> offpeak_client::Client {
        offpeak_client::Client::new(self.api_url.clone(), key).expect("an API key is a header value")
    }

    /// POSTs JSON with a tenant key; returns status and body.
    pub async fn post(&self, key: &str, path: &str, body: &Value) -> (u16, Value) {
        let resp = self.http.post(self.url(path)).bearer_auth(key).json(body).send().await.expect("request");
        Self::read(resp).await
    }

    pub async fn get(&self, key: &str, path: &str) -> (u16, Value) {
        let resp = self.http.get(self.url(path)).bearer_auth(key).send().await.expect("request");
        Self::read(resp).await
    }

    pub async fn delete(&self, key: &str, path: &str) -> (u16, Value) {
        let resp = self.http.delete(self.url(path)).bearer_auth(key).send().await.expect("request");
        Self::read(resp).await
    }

    pub async fn read(resp: reqwest::Response) -> (u16, Value) {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("response with status {status} is not JSON: {}", String::from_utf8_lossy(&bytes)));
        (status, body)
    }

    pub async fn job(&self, id: Uuid) -> JobRow {
        db::jobs::get_any(&self.pool, id).await.expect("query").expect("job exists")
    }

    pub async fn count_jobs(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM jobs").fetch_one(&self.pool).await.expect("count")
    }

    /// Waits (up to `timeout`) until every given job is in a terminal state.
    pub async fn wait_terminal(&self, ids: &[Uuid], timeout: Duration) -> Vec<JobRow> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rows: Vec<JobRow> = futures_util::future::join_all(ids.iter().map(|id| self.job(*id))).await;
            let states: Vec<&str> = rows.iter().map(|r| r.state.as_str()).collect();
            if states.iter().all(|s| matches!(*s, "succeeded" | "failed" | "dead" | "cancelled")) {
                return rows;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("jobs not terminal after {timeout:?}: {states:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Ready messages in this environment's batch queue.
    pub async fn queue_depth(&self) -> u32 {
        self.publisher.depth().await.expect("queue depth")
    }
}

/// Test databases older than an hour belong to runs that were killed before
/// they could clean up (a test never runs that long).
async fn drop_abandoned_databases(admin: &mut sqlx::PgConnection) {
    let names: Vec<String> = sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'offpeak\\_test\\_%'")
        .fetch_all(&mut *admin)
        .await
        .unwrap_or_default();
    let cutoff = Utc::now().timestamp() - 3600;
    for name in names {
        let created = name.trim_start_matches("offpeak_test_").split('_').next().and_then(|t| t.parse::<i64>().ok());
        // Names without a timestamp come from older harness versions.
        if created.is_none_or(|t| t < cutoff) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut *admin).await;
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        self.shutdown.trigger();
        for t in &self.tasks {
            t.abort();
        }
        // Clean up on a thread of its own: Drop cannot await, and may run
        // while a panicking test unwinds.
        let db_name = self.db_name.clone();
        let topology = self.topology.clone();
        let server = self.server_options.clone();
        let _ = std::thread::spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(_) => return,
            };
            let cleanup = async move {
                // Not `pool.close()`: it waits for connections held by the
                // tasks just aborted, which cannot finish while this thread
                // blocks the test's runtime. FORCE ends them instead.
                if let Ok(conn) = broker::connect(&amqp_url(), "offpeak-test-cleanup", Duration::ZERO).await {
                    if let Ok(ch) = conn.create_channel().await {
                        let _ = topology.delete(&ch).await;
                    }
                    let _ = conn.close(200, "cleanup").await;
                }
                if let Ok(mut admin) = server.database("postgres").connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(&mut admin).await;
                    let _ = admin.close().await;
                }
            };
            // The timeout is created inside the runtime: it needs its timer.
            rt.block_on(async move {
                let _ = tokio::time::timeout(Duration::from_secs(30), cleanup).await;
            });
        })
        .join();
    }
}
