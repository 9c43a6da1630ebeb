//! The real binaries as processes, for end-to-end and fault tests: a whole
//! offpeak (simulator, scheduler, workers) on its own database and queue,
//! with helpers to kill, restart and wait.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use sqlx::{ConnectOptions, Connection};
use tokio::process::{Child, Command};

use crate::harness::{amqp_url, database_url};

/// Path of a workspace binary built next to the test executable.
///
/// # Panics
/// If it has not been built (`tests/run.sh` builds them first).
pub fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(
        path.exists(),
        "{} is missing: build the binaries first (tests/run.sh does: cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// A TCP port on 127.0.0.1 that is free now, for a child process to listen on.
///
/// Taken below Linux's ephemeral range (32768–60999 by default), from which
/// the kernel picks the local port of every outgoing connection: a port
/// found free there (`bind` to port 0, as this did before) could become a
/// client connection's local port before the child bound it, and the child
/// failed with "Address already in use" (seen once in CI, a scheduler of the
/// fault tests). Ports are handed out in turn from a start that depends on
/// the process id, so one test process never hands out the same port twice
/// and two processes rarely start at the same place.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 32_768 - LOW;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = std::process::id().wrapping_mul(7_919) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (LOW + (start + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// Where a system's process logs go: `target/test-logs/<system id>/`.
fn log_dir(id: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe.ancestors().nth(3).map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = target.join("test-logs").join(id);
    let _ = std::fs::create_dir_all(&dir);
    dir
}

/// Stdout and stderr of a process, appended to `<dir>/<name>.log`.
fn log_to(dir: &std::path::Path, name: &str) -> (Stdio, Stdio) {
    let open = || std::fs::OpenOptions::new().create(true).append(true).open(dir.join(format!("{name}.log")));
    match (open(), open()) {
        (Ok(out), Ok(err)) => (Stdio::from(out), Stdio::from(err)),
        _ => (Stdio::null(), Stdio::inherit()),
    }
}

/// A child process, killed when dropped.
pub struct Proc {
    pub child: Child,
    pub name: String,
    /// Base URL of its HTTP endpoints (`/healthz`, `/metrics`), if any.
    pub url: Option<String>,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id().expect("process is running")
    }

    pub fn signal(&self, sig: &str) {
        let target = self.kill_target().unwrap_or_else(|| self.pid().to_string());
        let _ = std::process::Command::new("kill").arg(format!("-{sig}")).arg("--").arg(target).status();
    }

    /// What `kill` is pointed at: the process's group when the process
    /// leads one, the process otherwise. A wrapper (`faketime`, see
    /// [`System::add_scheduler_wrapped`]) is started in a group of its own
    /// because it forks the program it runs: a signal to the wrapper alone
    /// left the program running after the test (a scheduler under
    /// libfaketime outlived its test by half an hour). `None` once the
    /// process has been reaped.
    fn kill_target(&self) -> Option<String> {
        let pid = self.child.id()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // `pid (comm) state ppid pgrp ...`: comm may hold spaces and parentheses.
        let pgrp = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(2)).and_then(|g| g.parse::<u32>().ok());
        Some(if pgrp == Some(pid) { format!("-{pid}") } else { pid.to_string() })
    }

    /// `true` while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits for the exit status.
    pub async fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        self.signal("TERM");
        tokio::time::timeout(within, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("{} did not exit within {within:?} of SIGTERM", self.name))
            .expect("wait")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        // A wrapper's group first: the program it forked goes with it.
        if let Some(group) = self.kill_target().filter(|t| t.starts_with('-')) {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &group]).status();
        }
        let _ = self.child.start_kill();
    }
}

/// Options of a [`System`].
#[derive(Debug, Clone)]
pub struct SystemOptions {
    pub workers: usize,
    pub sim_args: Vec<String>,
    /// Extra environment for the scheduler and workers.
    pub env: Vec<(String, String)>,
    /// The PostgreSQL server to use (default: the harness's `DATABASE_URL`);
    /// the system creates its own database there.
    pub database_url: Option<String>,
    /// The RabbitMQ to use (default: the harness's `AMQP_URL`).
    pub amqp_url: Option<String>,
    /// The protocol every model is called through: with one, the system
    /// runs from a configuration file (`OFFPEAK_CONFIG`) whose one provider
    /// speaks it at the simulator, with the default models and prices;
    /// without, from the environment alone (the `batch` protocol).
    pub adapter: Option<offpeak_core::providers::Adapter>,
}

impl Default for SystemOptions {
    fn default() -> Self {
        Self { workers: 2, sim_args: vec![], env: vec![], database_url: None, amqp_url: None, adapter: None }
    }
}

/// One offpeak made of real processes.
pub struct System {
    pub id: String,
    pub db_name: String,
    pub database_url: String,
    pub queue: String,
    pub api: String,
    pub sim_url: String,
    pub key: String,
    pub sim: Proc,
    pub scheduler: Proc,
    pub workers: Vec<Proc>,
    pub http: reqwest::Client,
    options: SystemOptions,
    /// Workers started so far: each gets a name (and a log file) of its
    /// own, `worker-<n>`, so a replacement never shares a dead one's log.
    workers_started: usize,
}

/// A configuration file with one provider, `sim`, speaking `adapter` at
/// `sim_url`, and the default models at their default prices (so that a
/// test's credits are the same whichever protocol carried its jobs). An
/// `openai-batch` provider is polled every second.
pub fn adapter_config(adapter: offpeak_core::providers::Adapter, sim_url: &str) -> String {
    use offpeak_core::providers::Adapter;
    let mut file = format!("[providers.sim]\nadapter = \"{adapter}\"\nbase_url = \"{sim_url}\"\napi_key_env = \"PROVIDER_API_KEY\"\n");
    if adapter == Adapter::OpenaiBatch {
        file.push_str("poll_interval_secs = 1\npoll_interval_max_secs = 1\n");
    }
    let prices = offpeak_core::prices::PriceTable::default();
    for model in prices.models() {
        let price = prices.price(model).unwrap_or(0);
        file.push_str(&format!("\n[models.{model}]\nprovider = \"sim\"\nprice = {price}\n"));
    }
    file
}

impl System {
    /// Migrates a fresh database, creates a tenant, and starts the simulator,
    /// the scheduler and the workers; returns once the scheduler is ready.
    pub async fn start(options: SystemOptions) -> Self {
        let id = format!("{}_{}", Utc::now().timestamp(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let db_name = format!("offpeak_test_{id}");
        let server_url = options.database_url.clone().unwrap_or_else(database_url);
        let amqp = options.amqp_url.clone().unwrap_or_else(amqp_url);
        let mut url = url::Url::parse(&server_url).expect("DATABASE_URL is a URL");
        url.set_path(&db_name);
        let database_url = url.to_string();
        let queue = format!("offpeak.test.{id}");
        let (api_port, sim_port) = (free_port(), free_port());
        let mut sys_env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), database_url.clone()),
            ("AMQP_URL".into(), amqp.clone()),
            ("OFFPEAK_QUEUE".into(), queue.clone()),
            ("OFFPEAK_LISTEN".into(), format!("127.0.0.1:{api_port}")),
            ("PROVIDER_URL".into(), format!("http://127.0.0.1:{sim_port}")),
            ("OFFPEAK_RELEASE_INTERVAL_MS".into(), "100".into()),
            ("OFFPEAK_RETRY_BASE_MS".into(), "100".into()),
            ("OFFPEAK_RETRY_CAP_MS".into(), "1000".into()),
            // A worker killed mid-poll leaves its provider batch leased for
            // this long (the default, for 120 s provider timeouts, is 450 s).
            ("OFFPEAK_POLL_LEASE_SECS".into(), "10".into()),
            ("RUST_LOG".into(), std::env::var("OFFPEAK_TEST_LOG").unwrap_or_else(|_| "info,lapin=off".into())),
        ];
        if let Some(adapter) = options.adapter {
            let path = log_dir(&id).join("offpeak.toml");
            std::fs::write(&path, adapter_config(adapter, &format!("http://127.0.0.1:{sim_port}"))).expect("write the configuration file");
            sys_env.push(("OFFPEAK_CONFIG".into(), path.display().to_string()));
        }
        sys_env.extend(options.env.iter().cloned());

        let run = |args: &[&str]| {
            let mut cmd = Command::new(binary("offpeak-scheduler"));
            cmd.args(args).envs(sys_env.iter().map(|(k, v)| (k, v)));
            cmd
        };
        let status = run(&["migrate"]).env("RUST_LOG", "error").status().await.expect("run migrate");
        assert!(status.success(), "offpeak-scheduler migrate failed");
        let out = run(&["tenant", "create", "--name", "faults", "--timezone", "UTC"])
            .env("RUST_LOG", "error")
            .output()
            .await
            .expect("tenant create");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        let key = stdout.lines().last().expect("a key line").trim().to_owned();

        let logs = log_dir(&id);
        let (out, err) = log_to(&logs, "provider-sim");
        let sim = Proc {
            child: Command::new(binary("provider-sim"))
                .stdout(out)
                .stderr(err)
                .args(["--listen", &format!("127.0.0.1:{sim_port}")])
                .args(&options.sim_args)
                .env("RUST_LOG", "error,lapin=off")
                .kill_on_drop(true)
                .spawn()
                .expect("start provider-sim"),
            name: "provider-sim".into(),
            url: Some(format!("http://127.0.0.1:{sim_port}")),
        };
        let mut scheduler_cmd = run(&["serve"]);
        let (out, err) = log_to(&logs, "scheduler");
        scheduler_cmd.stdout(out).stderr(err);
        let scheduler = Proc {
            child: scheduler_cmd.kill_on_drop(true).spawn().expect("start scheduler"),
            name: "scheduler".into(),
            url: Some(format!("http://127.0.0.1:{api_port}")),
        };
        let mut system = Self {
            id,
            db_name,
            database_url,
            queue,
            api: format!("http://127.0.0.1:{api_port}"),
            sim_url: format!("http://127.0.0.1:{sim_port}"),
            key,
            sim,
            scheduler,
            workers: vec![],
            http: reqwest::Client::new(),
            options: SystemOptions { env: sys_env, ..options.clone() },
            workers_started: 0,
        };
        for _ in 0..options.workers {
            system.add_worker();
        }
        system.wait_ready(Duration::from_secs(30)).await;
        system
    }

    /// Starts one more scheduler replica (API on its own port, release loop
    /// and rescuer on the same database and queue); returns its API URL.
    pub fn add_scheduler(&mut self) -> (Proc, String) {
        self.add_scheduler_with(&[])
    }

    /// [`System::add_scheduler`] with extra environment (overriding the system's).
    pub fn add_scheduler_with(&mut self, env: &[(&str, &str)]) -> (Proc, String) {
        self.add_scheduler_wrapped(&[], env)
    }

    /// [`System::add_scheduler_with`], run through `wrapper` (a program and
    /// its arguments, e.g. `["faketime", "-f", "+10m"]`), which runs the
    /// scheduler binary with the arguments that follow it.
    pub fn add_scheduler_wrapped(&mut self, wrapper: &[&str], env: &[(&str, &str)]) -> (Proc, String) {
        let port = free_port();
        let (out, err) = log_to(&log_dir(&self.id), &format!("scheduler-{port}"));
        let scheduler = binary("offpeak-scheduler");
        let mut cmd = match wrapper.split_first() {
            Some((program, args)) => {
                let mut cmd = Command::new(program);
                // In a group of its own, so that killing it kills what it forks (`Proc::kill_target`).
                cmd.args(args).arg(&scheduler).process_group(0);
                cmd
            }
            None => Command::new(&scheduler),
        };
        let child = cmd
            .arg("serve")
            .stdout(out)
            .stderr(err)
            .envs(self.options.env.iter().map(|(k, v)| (k, v)))
            .env("OFFPEAK_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().copied())
            .kill_on_drop(true)
            .spawn()
            .expect("start scheduler");
        let url = format!("http://127.0.0.1:{port}");
        (Proc { child, name: format!("scheduler-{port}"), url: Some(url.clone()) }, url)
    }

    /// What a process of this system has logged so far (`scheduler`,
    /// `worker-0`, `provider-sim`, `scheduler-<port>`).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(log_dir(&self.id).join(format!("{name}.log"))).unwrap_or_default()
    }

    /// Starts one more worker, on a port of its own.
    pub fn add_worker(&mut self) {
        let port = free_port();
        self.spawn_worker(Some(port));
    }

    /// Starts one more worker the README's way: no `OFFPEAK_WORKER_LISTEN`,
    /// so it takes the first free port of its default range. Its `url` is
    /// `None` until [`System::wait_worker_url`] reads it from its log.
    /// Returns its index in `workers`.
    pub fn add_worker_with_default_listen(&mut self) -> usize {
        self.spawn_worker(None);
        self.workers.len() - 1
    }

    fn spawn_worker(&mut self, port: Option<u16>) {
        let name = format!("worker-{}", self.workers_started);
        self.workers_started += 1;
        let (out, err) = log_to(&log_dir(&self.id), &name);
        let mut cmd = Command::new(binary("offpeak-worker"));
        cmd.envs(self.options.env.iter().map(|(k, v)| (k, v)));
        match port {
            Some(port) => cmd.env("OFFPEAK_WORKER_LISTEN", format!("127.0.0.1:{port}")),
            // Not inherited from the test's environment either.
            None => cmd.env_remove("OFFPEAK_WORKER_LISTEN"),
        };
        let child = cmd.stdout(out).stderr(err).kill_on_drop(true).spawn().expect("start worker");
        let url = port.map(|port| format!("http://127.0.0.1:{port}"));
        self.workers.push(Proc { child, name, url });
    }

    /// Waits until worker `index` logs the address it listens on
    /// (`worker listening on http://ADDR`), records it as the worker's
    /// `url` and returns it.
    ///
    /// # Panics
    /// If the worker exits first, or says nothing within `within`.
    pub async fn wait_worker_url(&mut self, index: usize, within: Duration) -> String {
        const SAYS: &str = "worker listening on http://";
        let deadline = tokio::time::Instant::now() + within;
        let name = self.workers[index].name.clone();
        loop {
            let log = self.log(&name);
            if let Some(rest) = log.lines().find_map(|l| l.split_once(SAYS).map(|(_, rest)| rest)) {
                let addr: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
                let url = format!("http://{addr}");
                self.workers[index].url = Some(url.clone());
                return url;
            }
            assert!(self.workers[index].is_running(), "{name} exited before listening:\n{log}");
            assert!(tokio::time::Instant::now() < deadline, "{name} did not say where it listens within {within:?}:\n{log}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn wait_ready(&self, within: Duration) {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Ok(r) = self.http.get(format!("{}/readyz", self.api)).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            assert!(tokio::time::Instant::now() < deadline, "scheduler not ready within {within:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Submits `n` normal-priority jobs with distinct inputs in bulk; returns their ids.
    pub async fn submit(&self, n: usize, model: &str) -> Vec<String> {
        let call = uuid::Uuid::new_v4();
        let inputs: Vec<Value> = (0..n).map(|i| json!({"prompt": format!("{call} {i}")})).collect();
        let resp = self
            .http
            .post(format!("{}/v1/jobs/bulk", self.api))
            .bearer_auth(&self.key)
            .json(&json!({"model": model, "inputs": inputs, "priority": "normal"}))
            .send()
            .await
            .expect("bulk submit");
        assert_eq!(resp.status(), 201);
        let body: Value = resp.json().await.expect("json");
        body["ids"].as_array().expect("ids").iter().map(|v| v.as_str().expect("id").to_owned()).collect()
    }

    /// A direct connection to this system's database.
    pub async fn db(&self) -> sqlx::PgConnection {
        let opts: sqlx::postgres::PgConnectOptions = self.database_url.parse().expect("URL");
        opts.connect().await.expect("connect")
    }

    /// Job counts by state, straight from PostgreSQL (retrying while it restarts).
    pub async fn states(&self) -> std::collections::BTreeMap<String, i64> {
        for _ in 0..100 {
            let opts: sqlx::postgres::PgConnectOptions = self.database_url.parse().expect("URL");
            if let Ok(mut c) = opts.connect().await {
                if let Ok(rows) = sqlx::query_as::<_, (String, i64)>("SELECT state, count(*) FROM job_view GROUP BY state")
                    .fetch_all(&mut c)
                    .await
                {
                    let _ = c.close().await;
                    return rows.into_iter().collect();
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("PostgreSQL unreachable");
    }

    /// Waits until no job is held, queued or running.
    pub async fn wait_all_terminal(&self, within: Duration) -> std::collections::BTreeMap<String, i64> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let states = self.states().await;
            let open: i64 = ["held", "queued", "running"].iter().map(|s| states.get(*s).copied().unwrap_or(0)).sum();
            if open == 0 {
                return states;
            }
            assert!(tokio::time::Instant::now() < deadline, "jobs still open after {within:?}: {states:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The simulator's counters.
    pub async fn sim_stats(&self) -> Value {
        self.http.get(format!("{}/v1/stats", self.sim_url)).send().await.expect("sim stats").json().await.expect("json")
    }

    /// Sums a Prometheus counter or gauge over the label sets matching
    /// `labels` (e.g. `state="succeeded"`), from a process's `/metrics`.
    pub async fn metric(&self, base_url: &str, name: &str, labels: &[&str]) -> f64 {
        let text = self.http.get(format!("{base_url}/metrics")).send().await.expect("scrape").text().await.expect("text");
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .filter(|l| labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
            .sum()
    }

    /// Succeeded jobs and their credits.
    pub async fn succeeded(&self) -> (i64, i64) {
        let mut c = self.db().await;
        sqlx::query_as("SELECT count(*), COALESCE(sum(credits), 0)::bigint FROM job_view WHERE state = 'succeeded'")
            .fetch_one(&mut c)
            .await
            .expect("query")
    }
}

impl Drop for System {
    fn drop(&mut self) {
        let logs = log_dir(&self.id);
        if std::thread::panicking() {
            // The test failed: show the end of every process's log.
            if let Ok(entries) = std::fs::read_dir(&logs) {
                for e in entries.flatten() {
                    let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                    let lines: Vec<&str> = text.lines().collect();
                    eprintln!("---- {} (last 40 lines) ----", e.path().display());
                    for l in &lines[lines.len().saturating_sub(40)..] {
                        eprintln!("{l}");
                    }
                }
            }
        } else if std::env::var_os("OFFPEAK_TEST_KEEP_LOGS").is_some() {
            // Kept for a rare failure's neighbours: what a passing run of
            // the same test logged.
            eprintln!("logs kept in {}", logs.display());
        } else {
            let _ = std::fs::remove_dir_all(&logs);
        }
        for w in &mut self.workers {
            let _ = w.child.start_kill();
        }
        let _ = self.scheduler.child.start_kill();
        let name = self.db_name.clone();
        let queue = self.queue.clone();
        let server_url = self.options.database_url.clone().unwrap_or_else(database_url);
        let amqp = self.options.amqp_url.clone().unwrap_or_else(amqp_url);
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
            rt.block_on(async {
                let cleanup = async {
                    if let Ok(conn) = offpeak_runtime::broker::connect(&amqp, "cleanup", Duration::ZERO).await {
                        if let Ok(ch) = conn.create_channel().await {
                            let _ = offpeak_runtime::broker::Topology::new(queue).delete(&ch).await;
                        }
                        let _ = conn.close(200, "cleanup").await;
                    }
                    let opts: sqlx::postgres::PgConnectOptions = match server_url.parse() {
                        Ok(o) => o,
                        Err(_) => return,
                    };
                    if let Ok(mut c) = opts.database("postgres").connect().await {
                        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                        let _ = c.close().await;
                    }
                };
                let _ = tokio::time::timeout(Duration::from_secs(30), cleanup).await;
            });
        })
        .join();
    }
}
