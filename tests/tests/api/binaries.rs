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
