//! The whole pipeline: a job travels from the API through the window, the
//! release loop, RabbitMQ and a worker to the provider simulator and back.
//! Requests go through the typed client (`offpeak_client`), as a
//! submitter's Rust service would send them.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use serde_json::{json, Map, Value};

use offpeak_client::types::{self, JobState, Priority};
use offpeak_tests::harness::{EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn object(v: Value) -> Map<String, Value> {
    v.as_object().cloned().expect("a JSON object")
}

#[tokio::test]
async fn a_job_inside_its_window_runs_to_succeeded_with_its_result() {
    // 03:00 in Tokyo (UTC+9) is 18:00 UTC the day before.
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T18:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    env.start_release_loop();
    let client = env.client(&env.tenant("acme", "UTC").await);

    let job = client
        .submit(
            types::SubmitRequest::builder()
                .model("flux-schnell")
                .input(object(json!({"prompt": "a red fox"})))
                .timezone(Some("Asia/Tokyo".into())),
        )
        .await
        .expect("201");
    assert_eq!(job.state, JobState::Held);
    assert_eq!(job.release_at, at("2027-06-01T18:00:00Z"), "inside the window: due at once");

    let rows = env.wait_terminal(&[job.id], Duration::from_secs(20)).await;
    assert_eq!(rows[0].state, "succeeded");
    let view = client.job(job.id).await.expect("200");
    assert_eq!(view.state, JobState::Succeeded);
    assert!(view.result["url"].as_str().unwrap().contains("flux-schnell"), "{view:?}");
    assert_eq!(view.credits, Some(1));
    assert!(!view.cache_hit);
    assert_eq!(view.attempts, 1);
    assert!(view.finished_at.is_some());
    assert_eq!(env.sim.sim.stats().items, 1);
}

#[tokio::test]
async fn a_job_outside_its_window_is_held_until_the_clock_reaches_it() {
    // Noon in New York (EDT, UTC-4).
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T16:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    let client = env.client(&env.tenant("acme", "America/New_York").await);

    let job = client
        .submit(types::SubmitRequest::builder().model("flux-dev").input(object(json!({"prompt": "a boat"}))))
        .await
        .expect("201");
    assert_eq!(job.state, JobState::Held);
    assert_eq!(job.timezone, "America/New_York", "the tenant's timezone is the default");
    assert_eq!(job.release_at, at("2027-06-02T06:00:00Z"), "next local 02:00 EDT");
    assert_eq!(job.window_closes_at, Some(at("2027-06-02T10:00:00Z")));

    // Before the window nothing is released.
    assert_eq!(env.release_once().await.released, 0);
    env.clock.set(at("2027-06-02T05:59:59Z"));
    assert_eq!(env.release_once().await.released, 0);
    assert_eq!(env.job(job.id).await.state, "held");

    // At 02:00 local it goes.
    env.clock.set(at("2027-06-02T06:00:00Z"));
    let report = env.release_once().await;
    assert_eq!((report.released, report.batches), (1, 1));
    let rows = env.wait_terminal(&[job.id], Duration::from_secs(20)).await;
    assert_eq!(rows[0].state, "succeeded");
    assert_eq!(rows[0].credits, Some(2));
}

#[tokio::test]
async fn normal_priority_is_released_at_once_whatever_the_hour() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T16:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    let client = env.client(&env.tenant("acme", "Europe/Berlin").await);
    let job = client
        .submit(
            types::SubmitRequest::builder()
                .model("flux-pro")
                .input(object(json!({"prompt": "now"})))
                .priority(Some(Priority::Normal)),
        )
        .await
        .expect("201");
    assert_eq!(job.release_at, at("2027-06-01T16:00:00Z"));
    assert!(job.window_closes_at.is_none());
    assert_eq!(env.release_once().await.released, 1);
    let rows = env.wait_terminal(&[job.id], Duration::from_secs(20)).await;
    assert_eq!(rows[0].state, "succeeded");
    assert_eq!(rows[0].credits, Some(5));
}

#[tokio::test]
async fn bulk_submission_is_batched_by_model_and_every_job_succeeds() {
    let mut env = TestEnv::with(EnvOptions { now: at("2027-06-01T01:00:00Z"), ..Default::default() }).await;
    env.start_worker();
    let client = env.client(&env.tenant("acme", "Europe/Berlin").await); // 03:00 CEST
    let inputs: Vec<_> = (0..250).map(|i| object(json!({"prompt": format!("tile {i}")}))).collect();
    let body = client
        .submit_bulk(types::BulkRequest::builder().model("flux-schnell").inputs(inputs).metadata(Some(json!({"run": 7}))))
        .await
        .expect("201");
    assert_eq!(body.count, 250);
    assert_eq!(body.release_at, at("2027-06-01T01:00:00Z"));
    let ids = body.ids;
    assert_eq!(ids.len(), 250);
    // Ids come back in input order.
    let third = env.job(ids[3]).await;
    assert_eq!(third.input, json!({"prompt": "tile 3"}));
    assert_eq!(third.metadata, Some(json!({"run": 7})));

    let report = env.release_once().await;
    assert_eq!(report.released, 250);
    assert_eq!(report.batches, 3, "batches of at most 100");
    let rows = env.wait_terminal(&ids, Duration::from_secs(30)).await;
    assert!(rows.iter().all(|r| r.state == "succeeded"));
    let stats = env.sim.sim.stats();
    assert_eq!(stats.items, 250, "the provider billed each job once");
    assert_eq!(stats.batches, 3);
}

#[tokio::test]
async fn a_low_priority_job_waits_for_02_00_in_its_own_timezone_not_the_servers() {
    let env = TestEnv::with(EnvOptions { now: Utc.with_ymd_and_hms(2027, 1, 15, 12, 0, 0).unwrap(), ..Default::default() }).await;
    let client = env.client(&env.tenant("acme", "UTC").await);
    for (tz, expected) in [
        ("Asia/Kolkata", "2027-01-15T20:30:00Z"),   // 02:00 IST on the 16th
        ("America/Los_Angeles", "2027-01-15T12:00:00Z"), // 04:00 PST: inside, due at once
        ("Pacific/Chatham", "2027-01-15T12:15:00Z"), // 01:45 CHADT (+13:45) now: opens at 02:00 local
        ("UTC", "2027-01-16T02:00:00Z"),
    ] {
        let job = client
            .submit(types::SubmitRequest::builder().model("flux-dev").input(Map::new()).timezone(Some(tz.into())))
            .await
            .unwrap_or_else(|e| panic!("{tz}: {e}"));
        assert_eq!(job.release_at, at(expected), "{tz}");
    }
}
