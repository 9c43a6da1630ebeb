//! The real binaries, as an operator runs them: `provider-sim`,
//! `offpeak-scheduler migrate|tenant create|serve` and two `offpeak-worker`s,
//! on the real clock. `tests/run.sh` builds them first
//! (`cargo build --workspace --bins`).

use std::time::Duration;

use chrono::{Timelike, Utc};
use serde_json::{json, Value};

use offpeak_tests::procs::{System, SystemOptions};

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
    let mut sys = System::start(SystemOptions::default()).await;
    assert!(sys.key.starts_with("op_"), "tenant create prints the API key alone on its last line");
    let (http, api, key) = (sys.http.clone(), sys.api.clone(), sys.key.clone());

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
    assert_eq!(sys.sim_stats().await["items"], 5, "the simulator billed exactly the succeeded jobs");

    // SIGTERM: every process exits cleanly (0).
    let mut all: Vec<_> = sys.workers.drain(..).collect();
    // A second scheduler replica, once it is serving, is stopped the same way.
    let (scheduler, url) = sys.add_scheduler();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !matches!(http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(tokio::time::Instant::now() < deadline, "second scheduler never ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    all.push(scheduler);
    for p in all {
        let name = p.name.clone();
        let status = p.terminate(Duration::from_secs(20)).await;
        assert!(status.success(), "{name}: graceful exit, got {status}");
    }
}

/// The request limits an operator sets (README's configuration table) are
/// the ones `serve` enforces and its OpenAPI document states; a limit of 0
/// is refused at start.
#[tokio::test]
async fn the_request_limits_set_in_the_environment_are_enforced_and_documented() {
    let limits = [
        ("OFFPEAK_MAX_BULK_INPUTS", "3"),
        ("OFFPEAK_MAX_INPUT_BYTES", "100"),
        ("OFFPEAK_MAX_METADATA_BYTES", "50"),
        ("OFFPEAK_MAX_BODY_BYTES", "4000"),
    ];
    let env = limits.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let sys = System::start(SystemOptions { workers: 0, env, ..SystemOptions::default() }).await;
    let post = |path: &str, body: Vec<u8>| {
        let req = sys.http.post(format!("{}{path}", sys.api)).bearer_auth(&sys.key).header("content-type", "application/json");
        async move {
            let resp = req.body(body).send().await.expect("the API answers");
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.expect("a JSON body"))
        }
    };
    let json = |v: Value| serde_json::to_vec(&v).expect("serialise");
    let error = |(status, body): (u16, Value)| (status, body["error"]["code"].as_str().map(str::to_owned), body["error"]["field"].as_str().map(str::to_owned));

    let doc: Value = sys.http.get(format!("{}/openapi.json", sys.api)).send().await.expect("answers").json().await.expect("JSON");
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["BulkRequest"]["properties"]["inputs"]["maxItems"], 3);
    let described = |s: &Value| s["description"].as_str().unwrap_or_default().to_owned();
    assert!(described(&schemas["SubmitRequest"]["properties"]["input"]).contains("at most 100 bytes"));
    assert!(described(&schemas["SubmitRequest"]["properties"]["metadata"]).contains("at most 50 bytes"));
    assert!(described(&doc["info"]).contains("limited to 4000 bytes"));

    let inputs = |n: usize| json(json!({"model": "flux-schnell", "inputs": vec![json!({"p": 1}); n]}));
    assert_eq!(post("/v1/jobs/bulk", inputs(3)).await.0, 201);
    assert_eq!(error(post("/v1/jobs/bulk", inputs(4)).await), (422, Some("too_many_inputs".into()), Some("inputs".into())));
    let job = |input: Value, metadata: Value| json(json!({"model": "flux-schnell", "input": input, "metadata": metadata}));
    assert_eq!(post("/v1/jobs", job(json!({"p": "x".repeat(80)}), json!({"m": "y".repeat(40)}))).await.0, 201);
    assert_eq!(error(post("/v1/jobs", job(json!({"p": "x".repeat(100)}), Value::Null)).await), (413, Some("payload_too_large".into()), Some("input".into())));
    assert_eq!(error(post("/v1/jobs", job(json!({}), json!({"m": "y".repeat(50)}))).await), (413, Some("payload_too_large".into()), Some("metadata".into())));
    let mut padded = job(json!({}), Value::Null);
    padded.extend(std::iter::repeat_n(b' ', 4000));
    assert_eq!(error(post("/v1/jobs", padded).await).0, 413);

    let out = tokio::process::Command::new(offpeak_tests::procs::binary("offpeak-scheduler"))
        .arg("serve")
        .env("OFFPEAK_MAX_BULK_INPUTS", "0")
        .output()
        .await
        .expect("run serve");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("max-bulk-inputs"), "a limit of 0 is refused: {stderr}");
}
