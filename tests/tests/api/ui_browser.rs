//! Issue 7, end to end: the dashboard in headless Chromium against the real
//! binaries (`provider-sim`, `offpeak-scheduler serve`, one
//! `offpeak-worker`) on the real clock, with real data:
//!
//! - succeeded jobs of two tenants, normal priority and low priority in a
//!   timezone whose window is open now (they pay the off-peak price, 0.5 ×
//!   list here, so the Spend panel has savings to show);
//! - dead jobs: the simulator is stopped, so their only attempt
//!   (`OFFPEAK_MAX_ATTEMPTS=1`) meets a refused connection; then it is
//!   started again, healthy;
//! - held jobs in several timezones and models, due at different UTC hours.
//!
//! Then `tests/ui/e2e.mjs` (playwright-core, with Debian's `chromium`)
//! logs in, checks each panel's numbers against the tenant API, screenshots
//! the Tonight chart, retries a dead job and sees it succeed, cancels a held
//! one. This test fails if the script does, and prints what it printed.
//!
//! Needs `node` and `chromium` (`tests/run.sh` installs both, and runs `npm
//! ci` in `tests/ui`); `CHROMIUM` overrides `/usr/bin/chromium`. The
//! screenshot goes to `target/ui-e2e/ui-tonight.png` (with one of each panel
//! beside it); with
//! `OFFPEAK_UPDATE_SCREENSHOT=1` it also replaces `docs/ui-tonight.png`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use serde_json::{json, Value};
use tokio::process::Command;

use offpeak_core::tz::parse as parse_timezone;
use offpeak_core::window::{next_window, WindowSpec};
use offpeak_tests::procs::{binary, Proc, System, SystemOptions};

const TOKEN: &str = "browser-test-operator-token-42";

/// Zones spread round the world, to find some whose window is open now and
/// several whose window opens at different hours later.
const ZONES: &[&str] = &[
    "Pacific/Kiritimati", "Pacific/Auckland", "Australia/Sydney", "Asia/Tokyo", "Asia/Shanghai", "Asia/Bangkok",
    "Asia/Kolkata", "Asia/Dubai", "Europe/Moscow", "Europe/Berlin", "Europe/London", "Atlantic/Azores",
    "America/Noronha", "America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver",
    "America/Los_Angeles", "America/Anchorage", "Pacific/Honolulu", "Pacific/Pago_Pago", "Asia/Kathmandu",
];

fn ui_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ui")
}

fn chromium() -> String {
    let path = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: the browser test needs Debian's chromium (tests/run.sh installs it: apt-get install chromium), or CHROMIUM=<path>"
    );
    path
}

/// `npm ci` in tests/ui when playwright-core is not installed yet.
async fn ensure_node_modules() {
    let node = Command::new("node").arg("--version").output().await;
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is missing: the browser test needs Node.js 18+ (tests/run.sh installs it: apt-get install nodejs npm)"
    );
    if ui_dir().join("node_modules/playwright-core/package.json").exists() {
        return;
    }
    let out = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(ui_dir())
        .output()
        .await
        .expect("npm is missing (tests/run.sh installs it: apt-get install npm)");
    assert!(out.status.success(), "npm ci in tests/ui failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// Zones whose window is open now (for at least 10 more minutes), and zones
/// whose window opens in 10 minutes to 23 hours, one per opening hour.
fn zones() -> (&'static str, Vec<&'static str>) {
    let now = Utc::now();
    let spec = WindowSpec::default();
    let mut open = None;
    let mut later: Vec<(i64, &str)> = vec![];
    for z in ZONES {
        let w = next_window(parse_timezone(z).expect("zone"), now, &spec);
        if w.opens_at <= now && w.closes_at > now + TimeDelta::minutes(10) {
            open.get_or_insert(*z);
        } else if w.opens_at > now + TimeDelta::minutes(10) && w.opens_at < now + TimeDelta::hours(23) {
            let hour = w.opens_at.timestamp() / 3600;
            if !later.iter().any(|(h, _)| *h == hour) {
                later.push((hour, z));
            }
        }
    }
    (open.expect("some zone is always inside 02:00-06:00 with 10 minutes left"), later.into_iter().map(|(_, z)| z).collect())
}

async fn post(sys: &System, key: &str, path: &str, body: Value) -> Value {
    let r = sys.http.post(format!("{}{path}", sys.api)).bearer_auth(key).json(&body).send().await.expect("request");
    let status = r.status();
    let body: Value = r.json().await.expect("json");
    assert_eq!(status, 201, "{path}: {body}");
    body
}

async fn bulk(sys: &System, key: &str, model: &str, n: usize, extra: Value) -> usize {
    let call = uuid::Uuid::new_v4();
    let inputs: Vec<Value> = (0..n).map(|i| json!({"prompt": format!("ui {call} {i}")})).collect();
    let mut body = json!({"model": model, "inputs": inputs});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    post(sys, key, "/v1/jobs/bulk", body).await["count"].as_u64().expect("count") as usize
}

/// Starts the simulator of `sys` again on its port, healthy.
async fn restart_sim(sys: &mut System) {
    let listen = sys.sim_url.trim_start_matches("http://").to_owned();
    let child = Command::new(binary("provider-sim"))
        .args(["--listen", &listen])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start provider-sim");
    sys.sim = Proc { child, name: "provider-sim".into(), url: Some(sys.sim_url.clone()) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !sys.http.get(format!("{}/healthz", sys.sim_url)).send().await.is_ok_and(|r| r.status() == 200) {
        assert!(Instant::now() < deadline, "provider-sim did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_dashboard_in_chromium_shows_what_the_api_says_and_retries_a_dead_job() {
    let started = Instant::now();
    let chromium = chromium();
    ensure_node_modules().await;
    let env = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let mut sys = System::start(SystemOptions {
        workers: 1,
        env: vec![
            env("OFFPEAK_OPERATOR_TOKEN", TOKEN),
            env("OFFPEAK_MAX_ATTEMPTS", "1"),
            env("OFFPEAK_OFFPEAK_MULTIPLIER", "0.5"),
        ],
        ..Default::default()
    })
    .await;
    let acme = sys.key.clone();
    let globex = {
        let pool = offpeak_store::connect(&sys.database_url, 1, Duration::from_secs(10)).await.expect("database");
        let (_, key) = offpeak_store::tenants::create(&pool, "globex", chrono_tz::Asia::Tokyo, None).await.expect("tenant");
        pool.close().await;
        key
    };
    let (open_zone, later_zones) = zones();
    assert!(later_zones.len() >= 4, "zones whose windows open at different hours: {later_zones:?}");
    let t_start = started.elapsed();

    // Succeeded: normal priority, and low priority inside an open window.
    let mut succeeded = 0;
    succeeded += bulk(&sys, &acme, "flux-schnell", 6, json!({"priority": "normal"})).await;
    succeeded += bulk(&sys, &acme, "flux-dev", 3, json!({"priority": "normal", "user_id": "u-7"})).await;
    succeeded += bulk(&sys, &acme, "flux-pro", 4, json!({"timezone": open_zone})).await;
    succeeded += bulk(&sys, &globex, "flux-dev", 5, json!({"priority": "normal"})).await;
    succeeded += bulk(&sys, &globex, "stable-audio", 2, json!({"timezone": open_zone})).await;
    let states = sys.wait_all_terminal(Duration::from_secs(30)).await;
    assert_eq!(states.get("succeeded").copied(), Some(succeeded as i64), "{states:?}");

    // Dead: the provider is gone, the one attempt fails.
    let _ = sys.sim.child.kill().await;
    for (key, model) in [(&acme, "flux-dev"), (&acme, "flux-pro"), (&globex, "minimax-video")] {
        post(&sys, key, "/v1/jobs", json!({"model": model, "input": {"prompt": format!("doomed {model}")}, "priority": "normal"})).await;
    }
    let states = sys.wait_all_terminal(Duration::from_secs(30)).await;
    assert_eq!(states.get("dead").copied(), Some(3), "{states:?}");
    restart_sim(&mut sys).await;

    // Held: across timezones and models, due at different hours.
    let models = ["flux-schnell", "flux-dev", "flux-pro", "minimax-video", "stable-audio"];
    for (i, zone) in later_zones.iter().take(8).enumerate() {
        let key = if i % 2 == 0 { &acme } else { &globex };
        bulk(&sys, key, models[i % models.len()], 4 + 3 * i, json!({"timezone": zone})).await;
        bulk(&sys, key, models[(i + 2) % models.len()], 2 + i, json!({"timezone": zone})).await;
    }
    let seeded = started.elapsed();

    let target = std::env::current_exe().expect("exe").ancestors().nth(3).map(PathBuf::from).expect("target dir");
    let shots = target.join("ui-e2e");
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let screenshot = shots.join("ui-tonight.png");
    let _ = std::fs::remove_file(&screenshot);
    let script = tokio::time::timeout(
        Duration::from_secs(180),
        Command::new("node")
            .arg("e2e.mjs")
            .current_dir(ui_dir())
            .env("UI_BASE", &sys.api)
            .env("OPERATOR_TOKEN", TOKEN)
            .env("TENANT_KEYS", json!([acme, globex]).to_string())
            .env("SCREENSHOT", &screenshot)
            .env("SHOTS_DIR", &shots)
            .env("CHROMIUM", &chromium)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser script finishes within 3 minutes")
    .expect("run node");
    let stdout = String::from_utf8_lossy(&script.stdout);
    let stderr = String::from_utf8_lossy(&script.stderr);
    println!("---- tests/ui/e2e.mjs ----\n{stdout}{stderr}");
    assert!(script.status.success(), "the browser script failed ({}); its output is above", script.status);

    // What the clicks did, seen in the database.
    let retried = stdout.lines().find_map(|l| l.strip_prefix("RETRIED ")).expect("the script retried a job");
    let cancelled = stdout.lines().find_map(|l| l.strip_prefix("CANCELLED ")).expect("the script cancelled a job");
    let mut db = sys.db().await;
    let state_of = |id: &str| sqlx::query_scalar::<_, String>("SELECT state FROM job_view WHERE id = $1::uuid").bind(id.to_owned());
    assert_eq!(state_of(retried).fetch_one(&mut db).await.expect("job"), "succeeded");
    assert_eq!(state_of(cancelled).fetch_one(&mut db).await.expect("job"), "cancelled");
    let states = sys.states().await;
    assert_eq!((states.get("dead").copied(), states.get("succeeded").copied()), (Some(2), Some(succeeded as i64 + 1)), "{states:?}");

    assert!(std::fs::metadata(&screenshot).is_ok_and(|m| m.len() > 1000), "no screenshot at {}", screenshot.display());
    if std::env::var_os("OFFPEAK_UPDATE_SCREENSHOT").is_some() {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs");
        std::fs::create_dir_all(&docs).expect("docs dir");
        std::fs::copy(&screenshot, docs.join("ui-tonight.png")).expect("copy the screenshot to docs/");
    }
    println!(
        "timings: system up {:.1}s, seeded at {:.1}s, browser script done at {:.1}s",
        t_start.as_secs_f64(),
        seeded.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
