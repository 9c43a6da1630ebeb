//! Private PostgreSQL clusters and RabbitMQ nodes for fault tests: each on
//! free ports, in a temporary directory, so restarting one never disturbs
//! the machine's own services or any other test.
//!
//! They use the Debian packages `tests/run.sh` installs (`initdb`/`pg_ctl`
//! under `/usr/lib/postgresql/<version>/bin`, `rabbitmq-server`,
//! `rabbitmqctl`). Run as root, the servers run as their packages' users
//! (`postgres`, `rabbitmq`), as those packages expect.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::free_port;

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

/// Runs a command (as `user` when we are root); panics with its output if it fails.
fn run_as(user: &str, program: &str, args: &[&str], envs: &[(&str, String)]) {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", user, "--", program]);
        c
    } else {
        Command::new(program)
    };
    let out = cmd
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("fault tests need {program} (Debian packages postgresql, rabbitmq-server): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A fresh directory owned by `user` (when root).
fn temp_dir(prefix: &str, user: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    if is_root() {
        let status = Command::new("chown").args(["-R", &format!("{user}:{user}")]).arg(&dir).status().expect("chown");
        assert!(status.success(), "chown {user} {}", dir.display());
    }
    dir
}

/// A PostgreSQL cluster of its own.
pub struct PrivatePostgres {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
}

impl PrivatePostgres {
    /// initdb + start on a free port (trust auth on 127.0.0.1).
    pub fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL server binaries under /usr/lib/postgresql")
            .flatten()
            .map(|e| e.path().join("bin"))
            .filter(|p| p.join("initdb").exists())
            .max()
            .expect("an initdb under /usr/lib/postgresql/*/bin");
        let dir = temp_dir("offpeak-pg", "postgres");
        let port = free_port();
        let data = dir.join("data");
        let pg = Self { dir, bin, port };
        pg.ctl(&["initdb", "-D", &data.to_string_lossy(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]);
        pg.pg_ctl(&["start", "-w", "-t", "60", "-l", &pg.dir.join("log").to_string_lossy(), "-o", &pg.server_options()]);
        pg
    }

    fn server_options(&self) -> String {
        format!("-p {} -k {} -c listen_addresses=127.0.0.1", self.port, self.dir.display())
    }

    fn ctl(&self, args: &[&str]) {
        run_as("postgres", &self.bin.join(args[0]).to_string_lossy(), &args[1..], &[]);
    }

    fn pg_ctl(&self, args: &[&str]) {
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let mut full = vec!["pg_ctl", "-D", data.as_str()];
        full.extend_from_slice(args);
        self.ctl(&full);
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A fast restart: every connection is cut, the data stays.
    pub fn restart(&self) {
        // -l again: without it the new postmaster would write to (and hold
        // open) our output pipe.
        let log = self.dir.join("log").to_string_lossy().into_owned();
        self.pg_ctl(&["restart", "-m", "fast", "-w", "-t", "60", "-l", &log, "-o", &self.server_options()]);
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new(if is_root() { "runuser" } else { "sh" })
            .args(if is_root() { vec!["-u", "postgres", "--"] } else { vec!["-c", "exec \"$0\" \"$@\""] })
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A RabbitMQ node of its own.
pub struct PrivateRabbit {
    dir: PathBuf,
    pub node: String,
    pub port: u16,
}

impl PrivateRabbit {
    /// Starts a node on a free port and waits until it takes connections.
    pub fn start() -> Self {
        let dir = temp_dir("offpeak-rabbit", "rabbitmq");
        let port = free_port();
        let dist = free_port();
        let node = format!("offpeak-test-{port}@localhost");
        // Our own config file: the machine's may pin the listener to 5672.
        write_owned(&dir.join("rabbitmq.conf"), &format!("listeners.tcp.local = 127.0.0.1:{port}\n"));
        write_owned(&dir.join("enabled_plugins"), "[].\n");
        let envs = [
            ("RABBITMQ_NODENAME", node.clone()),
            ("RABBITMQ_NODE_PORT", port.to_string()),
            ("RABBITMQ_DIST_PORT", dist.to_string()),
            ("RABBITMQ_CONFIG_FILE", dir.join("rabbitmq.conf").to_string_lossy().into_owned()),
            ("RABBITMQ_MNESIA_BASE", dir.join("mnesia").to_string_lossy().into_owned()),
            ("RABBITMQ_LOG_BASE", dir.join("log").to_string_lossy().into_owned()),
            ("RABBITMQ_ENABLED_PLUGINS_FILE", dir.join("enabled_plugins").to_string_lossy().into_owned()),
            ("RABBITMQ_PID_FILE", dir.join("pid").to_string_lossy().into_owned()),
        ];
        // Debian's rabbitmq-server switches to the rabbitmq user by itself.
        let status = Command::new("rabbitmq-server")
            .arg("-detached")
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("fault tests need rabbitmq-server (Debian package rabbitmq-server)");
        assert!(status.success(), "rabbitmq-server -detached failed");
        let rabbit = Self { dir, node, port };
        let deadline = Instant::now() + Duration::from_secs(90);
        while !rabbit.ctl_ok(&["ping"]) {
            assert!(Instant::now() < deadline, "RabbitMQ node {} did not start; see {}", rabbit.node, rabbit.dir.display());
            std::thread::sleep(Duration::from_millis(300));
        }
        rabbit.ctl(&["await_startup", "--timeout", "60"]);
        rabbit
    }

    fn ctl_ok(&self, args: &[&str]) -> bool {
        Command::new("rabbitmqctl")
            .args(["-q", "-n", &self.node])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    fn ctl(&self, args: &[&str]) {
        assert!(self.ctl_ok(args), "rabbitmqctl -n {} {args:?} failed", self.node);
    }

    /// `amqp://guest:guest@127.0.0.1:<port>/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// Stops the broker application (every connection is cut; the node and
    /// its durable queues stay).
    pub fn stop_app(&self) {
        self.ctl(&["stop_app"]);
    }

    /// Starts it again and waits until it takes connections.
    pub fn start_app(&self) {
        self.ctl(&["start_app"]);
        self.ctl(&["await_startup", "--timeout", "60"]);
    }
}

impl Drop for PrivateRabbit {
    fn drop(&mut self) {
        let _ = self.ctl_ok(&["stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_owned(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write config");
    if is_root() {
        let _ = Command::new("chown").args(["rabbitmq:rabbitmq"]).arg(path).status();
    }
}
