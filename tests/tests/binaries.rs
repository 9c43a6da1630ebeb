//! The real binaries, as an operator runs them: `provider-sim`,
//! `offpeak-scheduler migrate|tenant create|serve` and two `offpeak-worker`s,
//! on the real clock. `tests/run.sh` builds them first
//! (`cargo build --workspace --bins`).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use offpeak_tests::harness::{amqp_url, database_url};

fn binary(name: &str) -> PathBuf {
    // Test executables live in target/<profile>/deps; binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe.parent().and_then(|deps| deps.parent()).expect("target dir").join(name);
    assert!(path.exists(), "{} is missing: build the binaries first (tests/run.sh does: cargo build --workspace --bins)", path.display());
    path
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running child") as i32;
    // SAFETY-free: kill(2) through the `kill` command keeps this test free of libc.
    let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

/// An IANA zone where the local time is now inside 02:00–06:00 (at least 10
/// minutes before its end), and one where it is the afternoon.
fn zones_now() -> (&'static str, &'static str) {
    let candidates = [
        "Pacific/Kiritimati", "Pacific/Auckland", "Australia/Sydney", "Asia/Tokyo", "Asia/Shanghai", "Asia/Bangkok",
        "Asia/Kolkata", "Asia/Dubai", "Europe/Moscow", "Europe/Berlin", "Europe/London", "Atlantic/Azores",
        "America/Noronha", "America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver",
        "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "Pacific/Pago_Pago", "Asia/Kathmandu",
        "Australia/Eucla", "Pacific/Chatham",
    ];
    let now = Utc::now();
    let local = |z: &str| now.with_timezone(&z.parse::<chrono_tz::Tz>().unwrap()).time();
    let inside = candidates
        .iter()
        .find(|z| {
            let t = local(z);
            t.hour() >= 2 && (t.hour() < 5 || (t.hour() == 5 && t.minute() < 50))
        })
        .expect("some zone is always between 02:00 and 05:50");
    let outside = candidates.iter().find(|z| (12..18).contains(&local(z).hour())).expect("some zone is always in the afternoon");
    (inside, outside)
}

#[tokio::test]
async fn the_binaries_run_the_pipeline_end_to_end() {
    let id = format!("{}_{}", Utc::now().timestamp(), &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let db_name = format!("offpeak_test_{id}");
    let mut url = url::Url::parse(&database_url()).unwrap();
    url.set_path(&db_name);
    let database_url = url.to_string();
    let queue = format!("offpeak.test.{id}");
    let (api_port, sim_port) = (free_port(), free_port());
    let env = |cmd: &mut Command| {
        cmd.env("DATABASE_URL", &database_url)
            .env("AMQP_URL", amqp_url())
            .env("OFFPEAK_QUEUE", &queue)
            .env("OFFPEAK_LISTEN", format!("127.0.0.1:{api_port}"))
            .env("PROVIDER_URL", format!("http://127.0.0.1:{sim_port}"))
            .env("OFFPEAK_RELEASE_INTERVAL_MS", "100")
            .env("RUST_LOG", "warn")
            .kill_on_drop(true);
    };

    // migrate creates the database.
    let mut cmd = Command::new(binary("offpeak-scheduler"));
    env(&mut cmd);
    let status = cmd.arg("migrate").status().await.unwrap();
    assert!(status.success());
    let _cleanup = DropDb(db_name.clone());

    let mut cmd = Command::new(binary("offpeak-scheduler"));
    env(&mut cmd);
    let out = cmd.args(["tenant", "create", "--name", "e2e", "--timezone", "Europe/Berlin"]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let key = stdout.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("op_"), "the API key alone on the last line: {stdout}");

    let sim = Proc(Command::new(binary("provider-sim")).args(["--listen", &format!("127.0.0.1:{sim_port}")]).env("RUST_LOG", "warn").kill_on_drop(true).spawn().unwrap());
    let mut cmd = Command::new(binary("offpeak-scheduler"));
    env(&mut cmd);
    let scheduler = Proc(cmd.arg("serve").spawn().unwrap());
    let mut workers = Vec::new();
    for _ in 0..2 {
        let mut cmd = Command::new(binary("offpeak-worker"));
        env(&mut cmd);
        workers.push(Proc(cmd.env("OFFPEAK_WORKER_LISTEN", format!("127.0.0.1:{}", free_port())).stdout(Stdio::null()).spawn().unwrap()));
    }

    let http = reqwest::Client::new();
    let api = format!("http://127.0.0.1:{api_port}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(format!("{api}/readyz")).send().await {
            if r.status() == 200 {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "scheduler never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (inside, outside) = zones_now();
    let submit = |tz: &str, i: u32| {
        http.post(format!("{api}/v1/jobs"))
            .bearer_auth(&key)
            .json(&json!({"model": "flux-schnell", "input": {"prompt": format!("e2e {i}")}, "timezone": tz}))
            .send()
    };
    let mut running = Vec::new();
    for i in 0..5 {
        let job: Value = submit(inside, i).await.unwrap().json().await.unwrap();
        running.push(job["id"].as_str().unwrap().to_owned());
    }
    let held: Value = submit(outside, 99).await.unwrap().json().await.unwrap();
    assert_eq!(held["state"], "held");
    let preview: Value = http
        .get(format!("{api}/v1/windows/next?timezone={outside}&at={}", held["created_at"].as_str().unwrap()))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(held["release_at"], preview["opens_at"], "held until the next local 02:00 of {outside}");

    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    for id in &running {
        loop {
            let job: Value = http.get(format!("{api}/v1/jobs/{id}")).bearer_auth(&key).send().await.unwrap().json().await.unwrap();
            if job["state"] == "succeeded" {
                assert!(job["result"]["url"].is_string());
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "job from {inside} did not succeed: {job}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stats: Value = http.get(format!("http://127.0.0.1:{sim_port}/v1/stats")).send().await.unwrap().json().await.unwrap();
    assert_eq!(stats["items"], 5, "the simulator billed exactly the succeeded jobs");

    // SIGTERM: every process exits cleanly (0).
    let mut all = workers;
    all.push(scheduler);
    for mut p in all {
        sigterm(&p.0);
        let status = tokio::time::timeout(Duration::from_secs(20), p.0.wait()).await.expect("exits after SIGTERM").unwrap();
        assert!(status.success(), "graceful exit, got {status}");
    }
    drop(sim);
    let ch = offpeak_shared::broker::connect(&amqp_url(), "e2e-cleanup", Duration::ZERO).await.unwrap().create_channel().await.unwrap();
    let _ = offpeak_shared::broker::Topology::new(queue).delete(&ch).await;
}

struct DropDb(String);

impl Drop for DropDb {
    fn drop(&mut self) {
        let name = self.0.clone();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::{ConnectOptions, Connection};
                let opts: sqlx::postgres::PgConnectOptions = database_url().parse().unwrap();
                if let Ok(mut c) = opts.database("postgres").connect().await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).execute(&mut c).await;
                    let _ = c.close().await;
                }
            });
        })
        .join();
    }
}
