//! One clock: PostgreSQL's (issue #17). A scheduler replica whose host
//! clock runs 10 minutes fast, run under libfaketime (Debian's `faketime`,
//! which `tests/run.sh` installs) beside a correct replica on the same
//! database, decides exactly as the correct one does: a submission gets the
//! window's opening as its `release_at`, held jobs are not released before
//! their window opens, and the replica reports its offset.

use std::time::Duration;

use chrono::{DateTime, DurationRound, Utc};
use serde_json::{json, Value};

use offpeak_core::clock::Clock;
use offpeak_scheduler::clock::{measure, ClockSync, ClockSyncConfig};
use offpeak_tests::harness::TestEnv;
use offpeak_tests::procs::{System, SystemOptions};

/// How far the fast replica's clock runs ahead.
const AHEAD: chrono::TimeDelta = chrono::TimeDelta::minutes(10);

async fn submit(sys: &System, api: &str, priority: &str, prompt: &str) -> Value {
    let resp = sys
        .http
        .post(format!("{api}/v1/jobs"))
        .bearer_auth(&sys.key)
        .json(&json!({"model": "flux-schnell", "input": {"prompt": prompt}, "priority": priority, "timezone": "UTC"}))
        .send()
        .await
        .expect("submit");
    assert_eq!(resp.status(), 201, "submit through {api}");
    resp.json().await.expect("json")
}

fn release_at(job: &Value) -> DateTime<Utc> {
    job["release_at"].as_str().expect("release_at").parse().expect("RFC 3339")
}

async fn wait_ready(sys: &System, url: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    while !matches!(sys.http.get(format!("{url}/readyz")).send().await, Ok(r) if r.status() == 200) {
        assert!(tokio::time::Instant::now() < deadline, "{url} not ready within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_succeeded(sys: &System, id: &str, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let job: Value =
            sys.http.get(format!("{}/v1/jobs/{id}", sys.api)).bearer_auth(&sys.key).send().await.expect("get").json().await.expect("json");
        if job["state"] == "succeeded" {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "job {id} not succeeded within {within:?}: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The window chosen so that real time is outside it and real time plus
/// [`AHEAD`] inside: it opens 4 to 5 minutes from now and lasts an hour.
fn window_opening_soon() -> (String, DateTime<Utc>) {
    let now = Utc::now();
    let opens = (now + chrono::TimeDelta::minutes(5)).duration_trunc(chrono::TimeDelta::minutes(1)).expect("truncate");
    let closes = opens + chrono::TimeDelta::hours(1);
    (format!("{}-{}", opens.format("%H:%M"), closes.format("%H:%M")), opens)
}

#[tokio::test]
async fn a_replica_whose_clock_runs_ten_minutes_fast_decides_by_the_databases_time() {
    assert!(
        std::process::Command::new("faketime").arg("--help").output().is_ok(),
        "libfaketime's `faketime` is missing: apt-get install faketime (tests/run.sh does)"
    );
    let (window, opens) = window_opening_soon();
    // The correct replica (the system's own scheduler) serves the API but
    // does not release, so that any release is the fast replica's.
    let mut sys = System::start(SystemOptions {
        workers: 1,
        env: vec![("OFFPEAK_WINDOW".into(), window.clone()), ("OFFPEAK_NO_RELEASE".into(), "true".into())],
        ..SystemOptions::default()
    })
    .await;
    let (fast, fast_api) = sys.add_scheduler_wrapped(
        &["faketime", "-m", "-f", "+10m"],
        // Timers and timeouts run on the monotonic clock: leave it alone.
        &[("FAKETIME_DONT_FAKE_MONOTONIC", "1"), ("OFFPEAK_NO_RELEASE", "false")],
    );
    wait_ready(&sys, &fast_api, Duration::from_secs(30)).await;

    // (a) The same low-priority submission gets the same release_at through
    // either replica: the window's opening, not the fast replica's "now".
    let through_correct = submit(&sys, &sys.api, "low", "through the correct replica").await;
    let through_fast = submit(&sys, &fast_api, "low", "through the fast replica").await;
    assert_eq!(through_correct["state"], "held", "{through_correct}");
    assert_eq!(through_fast["state"], "held", "{through_fast}");
    assert_eq!(release_at(&through_correct), opens, "{through_correct}");
    assert_eq!(release_at(&through_fast), opens, "the fast replica set release_at by its own clock: {through_fast}");

    // (b) Held jobs whose window opens in a few minutes stay held while the
    // fast replica runs release rounds. Each normal-priority job succeeding
    // proves a round ran after the held jobs were stored (the fast replica
    // is the only releaser, and a round claims every due job of a tenant up
    // to its share, far above these few).
    let mut held: Vec<String> = vec![];
    for n in 0..5 {
        held.push(submit(&sys, &sys.api, "low", &format!("held {n}")).await["id"].as_str().expect("id").to_owned());
    }
    held.push(through_correct["id"].as_str().expect("id").to_owned());
    held.push(through_fast["id"].as_str().expect("id").to_owned());
    for n in 0..2 {
        let now = submit(&sys, &fast_api, "normal", &format!("normal {n}")).await;
        wait_succeeded(&sys, now["id"].as_str().expect("id"), Duration::from_secs(60)).await;
    }
    assert!(Utc::now() < opens, "the test ran past the window's opening; its verdict on (b) would mean nothing");
    let mut db = sys.db().await;
    let states: Vec<(String, i64)> = sqlx::query_as("SELECT state, count(*) FROM job_view WHERE id::text = ANY($1) GROUP BY state")
        .bind(&held)
        .fetch_all(&mut db)
        .await
        .expect("query");
    assert_eq!(states, vec![("held".to_owned(), held.len() as i64)], "held jobs released before their window opened");
    assert_eq!(sys.sim_stats().await["items"], 2, "the provider billed only the two normal jobs");
    // (c) The fast replica knows how far off it is; the correct one too.
    let offset = sys.metric(&fast_api, "offpeak_clock_offset_seconds", &[]).await;
    assert!((offset - AHEAD.num_seconds() as f64).abs() < 5.0, "the fast replica's offset gauge reads {offset}, not about +600");
    let correct = sys.metric(&sys.api, "offpeak_clock_offset_seconds", &[]).await;
    assert!(correct.abs() < 1.0, "the correct replica's offset gauge reads {correct}");
    assert!(sys.log(&fast.name).contains("clock disagrees"), "the fast replica warns about its clock:\n{}", sys.log(&fast.name));
    drop(fast);
}

/// On a host whose clock agrees with PostgreSQL's (this one), the measured
/// offset is about zero, the round trip short, and the clock reads the
/// host's time; a measurement refreshes it.
#[tokio::test]
async fn the_database_clock_measures_postgresql_and_agrees_with_a_correct_host() {
    let env = TestEnv::new().await;
    let m = measure(&env.pool, 5).await.expect("measure");
    assert!(m.offset_seconds().abs() < 0.5, "{m:?}");
    assert!(m.round_trip < Duration::from_secs(1), "{m:?}");
    let sync = ClockSync::start(env.pool.clone(), ClockSyncConfig::default()).await.expect("start");
    let clock = sync.clock();
    let drift = (clock.now() - Utc::now()).num_milliseconds().abs();
    assert!(drift < 500, "the database's time is {drift} ms from this host's");
    let before = clock.now();
    sync.run_once().await.expect("refresh");
    assert!(clock.now() >= before, "never backwards across a refresh");
}
