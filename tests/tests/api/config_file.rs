//! The configuration file (`--config` / `OFFPEAK_CONFIG`, docs/configuration.md),
//! as an operator meets it: a file with a mistake stops the binaries at
//! start with `FILE:LINE: message`, the overrides of the environment are
//! refused beside it, and a valid file's models, prices, provider
//! discounts and routes are what the API accepts, charges and reports.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;

use offpeak_tests::procs::{binary, free_port, Proc, System, SystemOptions};

/// Writes `text` to `name` in a fresh directory of the system's temporary one.
fn write_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("offpeak-config-file-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a temporary directory");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a temporary file");
    path
}

/// Runs `binary args` with `env`; its exit status and stderr, once it exits
/// (within 20 s: a configuration error stops it before it connects to anything).
async fn run(name: &str, args: &[&str], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        Command::new(binary(name))
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "off")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{name} did not exit within 20 s with a bad configuration file"))
    .expect("run the binary");
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A file with two mistakes: an unknown adapter (line 3) and a model whose
/// provider is not configured (line 8).
const BAD: &str = "# two mistakes\n[providers.sim]\nadapter = \"batchy\"\nbase_url = \"http://127.0.0.1:1\"\napi_key_env = \"PROVIDER_API_KEY\"\n\n[models.house]\nprovider = \"elsewhere\"\nprice = 1\n";

#[track_caller]
fn assert_names_lines(path: &Path, stderr: &str) {
    let p = path.display();
    assert!(stderr.contains(&format!("{p}:3: unknown adapter 'batchy'")), "stderr: {stderr}");
    assert!(stderr.contains(&format!("{p}:8: model 'house' names provider 'elsewhere'")), "stderr: {stderr}");
}

#[tokio::test]
async fn a_bad_configuration_file_stops_the_scheduler_and_the_worker_naming_each_line() {
    let path = write_file("offpeak.toml", BAD);
    let p = path.to_str().expect("a UTF-8 path");
    // Nothing else is reachable: the file is checked before any connection.
    let nowhere = [("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"), ("AMQP_URL", "amqp://127.0.0.1:1")];

    let (status, stderr) = run("offpeak-scheduler", &["serve", "--config", p], &nowhere).await;
    assert!(!status.success(), "the scheduler started with a bad file: {stderr}");
    assert_names_lines(&path, &stderr);

    let listen = format!("127.0.0.1:{}", free_port());
    let mut env = nowhere.to_vec();
    env.extend([("OFFPEAK_CONFIG", p), ("OFFPEAK_WORKER_LISTEN", listen.as_str())]);
    let (status, stderr) = run("offpeak-worker", &[], &env).await;
    assert!(!status.success(), "the worker started with a bad file: {stderr}");
    assert_names_lines(&path, &stderr);
}

#[tokio::test]
async fn price_or_route_overrides_beside_a_file_are_refused_at_start() {
    let path = write_file("offpeak.toml", "[providers.p]\nadapter = \"batch\"\nbase_url = \"http://x\"\napi_key_env = \"K\"\n[models.m]\nprovider = \"p\"\nprice = 1\n");
    let p = path.to_str().expect("a UTF-8 path");
    let (status, stderr) =
        run("offpeak-scheduler", &["serve"], &[("OFFPEAK_CONFIG", p), ("OFFPEAK_PRICES", "flux-pro=6"), ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none")]).await;
    assert!(!status.success());
    assert!(stderr.contains("OFFPEAK_PRICES (--prices) is set together with a configuration file"), "stderr: {stderr}");
}

/// The file of the test below: one simulator behind two providers, one
/// with a 0.5 discount; no built-in model survives it.
fn valid_file(sim_url: &str) -> String {
    format!(
        r#"offpeak_multiplier = 0.5

[providers.sim-batch]
adapter = "batch"
base_url = "{sim_url}"
api_key_env = "PROVIDER_API_KEY"
price_multiplier = 0.5

[providers.sim]
adapter = "batch"
base_url = "{sim_url}"
api_key_env = "PROVIDER_API_KEY"

[models.house]
provider = "sim-batch"
price = 7

[models.full]
provider = "sim"
price = 3

[routes]
banner = "house"
"#
    )
}

async fn get(sys: &System, path: &str) -> Value {
    let resp = sys.http.get(format!("{}{path}", sys.api)).bearer_auth(&sys.key).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{path}");
    resp.json().await.expect("json")
}

async fn post(sys: &System, body: Value) -> (u16, Value) {
    let resp = sys.http.post(format!("{}/v1/jobs", sys.api)).bearer_auth(&sys.key).json(&body).send().await.expect("POST");
    (resp.status().as_u16(), resp.json().await.expect("json"))
}

async fn wait_succeeded(sys: &System, id: &str) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let job = get(sys, &format!("/v1/jobs/{id}")).await;
        if job["state"] == "succeeded" {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "job did not succeed: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_valid_files_models_prices_and_routes_are_what_the_api_accepts_charges_and_reports() {
    // A simulator of this test's own, whose address the file can name (the
    // system's own simulator picks its port after the file is written).
    let port = free_port();
    let sim_url = format!("http://127.0.0.1:{port}");
    let _sim = Proc {
        child: Command::new(binary("provider-sim"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start provider-sim"),
        name: "provider-sim (config file)".into(),
        url: Some(sim_url.clone()),
    };
    let path = write_file("offpeak.toml", &valid_file(&sim_url));
    let sys = System::start(SystemOptions {
        workers: 1,
        env: vec![("OFFPEAK_CONFIG".into(), path.display().to_string()), ("PROVIDER_URL".into(), sim_url.clone())],
        ..Default::default()
    })
    .await;

    // Only the file's models: no built-in price survives it.
    let (status, body) = post(&sys, json!({"model": "flux-schnell", "input": {"prompt": "x"}, "priority": "normal"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("unknown_model")), "{body}");

    // Normal priority pays list × the provider's multiplier: 7 × 0.5 = 3.5 → 4, and 3 × 1.0 = 3.
    let (s1, house) = post(&sys, json!({"model": "house", "input": {"prompt": "a"}, "priority": "normal"})).await;
    let (s2, full) = post(&sys, json!({"model": "full", "input": {"prompt": "b"}, "priority": "normal"})).await;
    // The file's route.
    let (s3, routed) = post(&sys, json!({"model": "auto", "use_case": "banner", "input": {"prompt": "c"}, "priority": "normal"})).await;
    assert_eq!((s1, s2, s3), (201, 201, 201), "{house} {full} {routed}");
    assert_eq!(routed["model"], "house");
    let house = wait_succeeded(&sys, house["id"].as_str().expect("id")).await;
    let full = wait_succeeded(&sys, full["id"].as_str().expect("id")).await;
    let routed = wait_succeeded(&sys, routed["id"].as_str().expect("id")).await;
    assert_eq!((&house["credits"], &full["credits"], &routed["credits"]), (&json!(4), &json!(3), &json!(4)));

    // The same job again: answered by the exact cache, for 0 credits, calling no provider.
    let (status, hit) = post(&sys, json!({"model": "full", "input": {"prompt": "b"}, "priority": "normal"})).await;
    assert_eq!(status, 201, "{hit}");
    let hit = wait_succeeded(&sys, hit["id"].as_str().expect("id")).await;
    assert_eq!((&hit["cache_hit"], &hit["credits"]), (&json!(true), &json!(0)));

    let by_model = get(&sys, "/v1/usage?group_by=model").await;
    assert_eq!(by_model["groups"]["house"]["credits"], 8);
    assert_eq!(by_model["groups"]["house"]["list_credits"], 14);
    assert_eq!(by_model["groups"]["full"]["credits"], 3);
    assert_eq!(by_model["groups"]["full"]["requests"], 2);
    assert_eq!(by_model["totals"]["credits"], 11);

    let by_provider = get(&sys, "/v1/usage?group_by=provider").await;
    assert_eq!(by_provider["group_by"], "provider");
    let groups = by_provider["groups"].as_object().expect("groups");
    assert_eq!(groups["cache"]["requests"], 1, "{by_provider}");
    assert_eq!(groups["cache"]["credits"], 0);
    assert_eq!((&groups["sim-batch"]["requests"], &groups["sim-batch"]["credits"]), (&json!(2), &json!(8)), "{by_provider}");
    assert_eq!((&groups["sim"]["requests"], &groups["sim"]["credits"]), (&json!(1), &json!(3)), "{by_provider}");
    assert_eq!(groups.len(), 3, "{by_provider}");
    assert_eq!(by_provider["totals"]["requests"], 4);
}
