//! One offpeak of real processes for one benchmark run: the simulator, the
//! scheduler (`serve`) and the workers, on a database and a queue of their
//! own, started from the binaries built next to `offpeak-bench`.
//!
//! Unlike `procs::System` (the fault tests' stack), it is configured for
//! speed measurements: production defaults everywhere unless a run says
//! otherwise, logs to files under `target/bench/logs/`, and it reports each
//! process's peak resident memory before stopping it.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use tokio::process::{Child, Command};

use offpeak_runtime::broker::{self, Topology};
use offpeak_store as db;

/// Where a run's processes come from and where they may reach the services.
#[derive(Debug, Clone)]
pub struct StackConfig {
    pub database_url: String,
    pub amqp_url: String,
    pub workers: usize,
    /// Provider latency per call.
    pub sim_latency: Duration,
    /// Extra environment for the scheduler and the workers.
    pub env: Vec<(String, String)>,
    /// Keep the database and logs afterwards.
    pub keep: bool,
}

/// A running process.
pub struct Proc {
    pub name: String,
    pub child: Child,
}

impl Proc {
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Peak resident set size (`VmHWM`) in bytes, while the process lives.
    pub fn peak_rss(&self) -> Option<u64> {
        peak_rss(self.pid()?)
    }

    async fn stop(&mut self, within: Duration) {
        if let Some(pid) = self.pid() {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
        if tokio::time::timeout(within, self.child.wait()).await.is_err() {
            let _ = self.child.start_kill();
            let _ = self.child.wait().await;
        }
    }
}

/// `VmHWM` of a process, in bytes.
pub fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Path of a workspace binary built beside this one.
///
/// # Panics
/// If it is missing (`deploy/bench.sh` builds them).
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("own path");
    let dir = exe.parent().expect("binary directory");
    // A test executable lives in target/<profile>/deps, a bin one level up.
    let candidates = [dir.join(name), dir.parent().map(|p| p.join(name)).unwrap_or_default()];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} is missing next to {}: build the workspace's binaries first", exe.display()))
}

/// `target/` (the parent of the profile directory the binaries live in).
pub fn target_dir() -> PathBuf {
    let bin = binary("offpeak-scheduler");
    bin.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir)
}

pub use crate::procs::free_port;

/// One running offpeak.
pub struct Stack {
    pub id: String,
    pub db_name: String,
    /// URL of this stack's database.
    pub database_url: String,
    pub queue: String,
    pub api: String,
    /// The simulator's base URL (provider and embeddings endpoint; `GET /v1/stats`).
    pub sim_url: String,
    pub pool: PgPool,
    /// API key of the tenant `bench`.
    pub key: String,
    pub tenant_id: uuid::Uuid,
    pub sim: Proc,
    pub scheduler: Proc,
    pub workers: Vec<Proc>,
    pub http: reqwest::Client,
    pub logs: PathBuf,
    config: StackConfig,
    server_options: PgConnectOptions,
    stopped: bool,
}

/// Peak RSS of a stack's processes, in bytes.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Rss {
    pub scheduler: u64,
    pub workers: Vec<u64>,
}

impl Stack {
    /// Creates and migrates a fresh database, creates the tenant `bench`,
    /// and starts the simulator, the scheduler and the workers; returns once
    /// all answer `/readyz`.
    ///
    /// # Errors
    /// Services unreachable, a binary that does not start.
    pub async fn start(run: &str, config: StackConfig) -> anyhow::Result<Self> {
        // The creation time after `offpeak_test_` lets the test harness drop
        // a database a killed bench left behind (it drops those older than an hour).
        let id = format!("{}_bench{}", Utc::now().timestamp(), &uuid::Uuid::new_v4().simple().to_string()[..6]);
        let db_name = format!("offpeak_test_{id}");
        let server_options: PgConnectOptions = config.database_url.parse()?;
        let mut admin = server_options.clone().database("postgres").connect().await?;
        sqlx::query(&format!("CREATE DATABASE {db_name}")).execute(&mut admin).await?;
        admin.close().await?;
        let mut url = url::Url::parse(&config.database_url)?;
        url.set_path(&db_name);
        let database_url = url.to_string();
        let pool = db::connect_with(server_options.clone().database(&db_name), 8).await?;
        db::migrate(&pool).await?;
        let (tenant, key) = db::tenants::create(&pool, "bench", chrono_tz::UTC, None).await?;

        let queue = format!("offpeak.bench.{id}");
        let logs = target_dir().join("bench").join("logs").join(format!("{run}-{id}"));
        std::fs::create_dir_all(&logs)?;
        let (api_port, sim_port) = (free_port(), free_port());
        let api = format!("http://127.0.0.1:{api_port}");
        let mut env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.clone()),
            ("AMQP_URL".into(), config.amqp_url.clone()),
            ("OFFPEAK_QUEUE".into(), queue.clone()),
            ("OFFPEAK_LISTEN".into(), format!("127.0.0.1:{api_port}")),
            ("PROVIDER_URL".into(), format!("http://127.0.0.1:{sim_port}")),
            // The simulator's embeddings endpoint too, for the semantic
            // cache (only jobs that ask for it call it).
            ("OFFPEAK_EMBEDDINGS_URL".into(), format!("http://127.0.0.1:{sim_port}")),
            ("OFFPEAK_EMBEDDINGS_API_KEY".into(), "local-dev-key".into()),
        ];
        env.extend(config.env.iter().cloned());

        let sim = spawn(
            "provider-sim",
            Command::new(binary("provider-sim"))
                .args(["--listen", &format!("127.0.0.1:{sim_port}")])
                .args(["--latency-ms", &config.sim_latency.as_millis().to_string()])
                .env("RUST_LOG", "warn"),
            &logs,
        )?;
        let scheduler = spawn("scheduler", Command::new(binary("offpeak-scheduler")).arg("serve").envs(env.clone()), &logs)?;
        let mut workers = Vec::new();
        let mut worker_urls = Vec::new();
        for i in 0..config.workers {
            let port = free_port();
            worker_urls.push(format!("http://127.0.0.1:{port}"));
            workers.push(spawn(
                &format!("worker-{i}"),
                Command::new(binary("offpeak-worker")).envs(env.clone()).env("OFFPEAK_WORKER_LISTEN", format!("127.0.0.1:{port}")),
                &logs,
            )?);
        }
        let stack = Self {
            id,
            db_name,
            database_url,
            queue,
            api: api.clone(),
            sim_url: format!("http://127.0.0.1:{sim_port}"),
            pool,
            key,
            tenant_id: tenant.id,
            sim,
            scheduler,
            workers,
            http: reqwest::Client::new(),
            logs,
            config,
            server_options,
            stopped: false,
        };
        let mut ready = vec![format!("{api}/readyz"), format!("http://127.0.0.1:{sim_port}/healthz")];
        ready.extend(worker_urls.iter().map(|u| format!("{u}/readyz")));
        for url in ready {
            stack.wait_ready(&url, Duration::from_secs(60)).await?;
        }
        Ok(stack)
    }

    /// The typed client (`clients/rust`) for the tenant `bench`.
    ///
    /// # Panics
    /// Never: the key is a header value.
    pub fn client(&self) -> offpeak_client::Client {
        self.client_for(&self.key)
    }

    /// The typed client for another tenant's key.
    ///
    /// # Panics
    /// For a key that cannot be a header value (keys are `op_` and hex).
    pub fn client_for(&self, key: &str) -> offpeak_client::Client {
        offpeak_client::Client::builder(self.api.clone(), key).http_client(self.http.clone()).build().expect("an API key is a header value")
    }

    async fn wait_ready(&self, url: &str, within: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(url).send().await {
                if r.status() == 200 {
                    return Ok(());
                }
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!("{url} not ready within {within:?}; see the logs in {}", self.logs.display());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Peak RSS of the scheduler and the workers so far.
    pub fn rss(&self) -> Rss {
        Rss {
            scheduler: self.scheduler.peak_rss().unwrap_or(0),
            workers: self.workers.iter().map(|w| w.peak_rss().unwrap_or(0)).collect(),
        }
    }

    /// Stops the processes (SIGTERM), returns their peak RSS read just
    /// before, and drops the database and the queues unless asked to keep them.
    pub async fn stop(mut self) -> Rss {
        let rss = self.rss();
        self.stopped = true;
        for w in &mut self.workers {
            w.stop(Duration::from_secs(40)).await;
        }
        self.scheduler.stop(Duration::from_secs(20)).await;
        self.sim.stop(Duration::from_secs(5)).await;
        self.pool.close().await;
        if !self.config.keep {
            cleanup(&self.config.amqp_url, &self.queue, &self.server_options, &self.db_name).await;
            let _ = std::fs::remove_dir_all(&self.logs);
        }
        rss
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        // A run that failed: kill the processes and leave the database and
        // logs for a look (the test harness drops old bench databases).
        for w in &mut self.workers {
            let _ = w.child.start_kill();
        }
        let _ = self.scheduler.child.start_kill();
        let _ = self.sim.child.start_kill();
        eprintln!("bench: run failed; logs kept in {}, database {}", self.logs.display(), self.db_name);
    }
}

async fn cleanup(amqp_url: &str, queue: &str, server: &PgConnectOptions, db_name: &str) {
    if let Ok(conn) = broker::connect(amqp_url, "offpeak-bench-cleanup", Duration::ZERO).await {
        if let Ok(ch) = conn.create_channel().await {
            let _ = Topology::new(queue).delete(&ch).await;
        }
        let _ = conn.close(200, "cleanup").await;
    }
    if let Ok(mut admin) = server.clone().database("postgres").connect().await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db_name} WITH (FORCE)")).execute(&mut admin).await;
        let _ = admin.close().await;
    }
}

fn spawn(name: &str, cmd: &mut Command, logs: &Path) -> anyhow::Result<Proc> {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(logs.join(format!("{name}.log")))?;
    let child = cmd
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {name}: {e}"))?;
    Ok(Proc { name: name.to_owned(), child })
}
