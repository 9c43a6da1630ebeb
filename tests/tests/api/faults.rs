//! Fault tests with the real binaries: SIGKILL a worker holding batches,
//! restart RabbitMQ and PostgreSQL under load, SIGTERM a worker. After each,
//! every job has exactly one terminal state and the provider billed every
//! item once.
//!
//! Each test runs on a PostgreSQL cluster and a RabbitMQ node of its own, on
//! free ports in temporary directories (`offpeak_tests::services`), so
//! restarting them never disturbs the machine's services or another test.
//! The tests still run one at a time (a lock), to keep a 2-core machine's
//! load and the timings sane.

use std::time::Duration;

use tokio::sync::Mutex;

use offpeak_core::providers::Adapter;
use offpeak_tests::procs::{System, SystemOptions};
use offpeak_tests::services::{PrivatePostgres, PrivateRabbit};

static SERIAL: Mutex<()> = Mutex::const_new(());

/// A PostgreSQL cluster and a RabbitMQ node for one test.
struct Private {
    pg: PrivatePostgres,
    rabbit: PrivateRabbit,
}

impl Private {
    async fn start() -> Self {
        let pg = tokio::task::spawn_blocking(PrivatePostgres::start);
        let rabbit = tokio::task::spawn_blocking(PrivateRabbit::start);
        let (pg, rabbit) = (pg.await.expect("start PostgreSQL"), rabbit.await.expect("start RabbitMQ"));
        Self { pg, rabbit }
    }

    /// `options` pointed at these services.
    fn options(&self, options: SystemOptions) -> SystemOptions {
        SystemOptions { database_url: Some(self.pg.url()), amqp_url: Some(self.rabbit.url()), ..options }
    }
}

/// Waits until at least `n` jobs have succeeded (work is under way).
async fn wait_succeeded(sys: &System, n: i64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sys.states().await.get("succeeded").copied().unwrap_or(0) < n {
        assert!(tokio::time::Instant::now() < deadline, "no progress");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every job succeeded once, and the provider billed each item once.
async fn assert_exactly_once(sys: &System, jobs: i64, price: i64) {
    let states = sys.wait_all_terminal(Duration::from_secs(120)).await;
    assert_eq!(states.get("succeeded").copied(), Some(jobs), "every job succeeded: {states:?}");
    assert_eq!(sys.succeeded().await, (jobs, jobs * price), "credits counted once");
    let stats = sys.sim_stats().await;
    assert_eq!(stats["items"], jobs, "billed items equal succeeded jobs: {stats}");
    assert_eq!(stats["max_billed_per_input"], 1, "no input billed twice: {stats}");
    println!("{jobs} submitted, {jobs} succeeded, provider billed {}", stats["items"]);
}

#[tokio::test]
async fn a_worker_killed_with_sigkill_while_holding_batches_loses_nothing_and_bills_nothing_twice() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 1,
        sim_args: vec!["--latency-ms".into(), "800".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "20".into())],
        ..Default::default()
    }))
    .await;
    sys.submit(200, "flux-dev").await;
    // Let the worker take batches (its default prefetch, 8) and call the provider.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while sys.sim_stats().await["batches"].as_u64().unwrap_or(0) < 2 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let victim = sys.workers.remove(0);
    victim.signal("KILL");
    drop(victim);
    sys.add_worker();
    sys.add_worker();
    assert_exactly_once(&sys, 200, 2).await;
}

#[tokio::test]
async fn a_rabbitmq_restart_while_batches_are_in_flight_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args: vec!["--latency-ms".into(), "300".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "20".into())],
        ..Default::default()
    }))
    .await;
    sys.submit(600, "flux-schnell").await;
    wait_succeeded(&sys, 40).await;
    private.rabbit.stop_app();
    // Readiness says so while the broker is away.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = sys.http.get(format!("{}/readyz", sys.api)).send().await.expect("the API still answers");
        if r.status() == 503 {
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["checks"]["rabbitmq"], false);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "readyz never said not ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    private.rabbit.start_app();
    assert_exactly_once(&sys, 600, 1).await;
    assert!(sys.scheduler.is_running(), "the scheduler survived");
    for w in &mut sys.workers {
        assert!(w.is_running(), "{} survived", w.name);
    }
    sys.wait_ready(Duration::from_secs(30)).await;
}

#[tokio::test]
async fn a_postgres_restart_while_workers_write_results_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args: vec!["--latency-ms".into(), "200".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "20".into())],
        ..Default::default()
    }))
    .await;
    sys.submit(600, "flux-pro").await;
    wait_succeeded(&sys, 40).await;
    private.pg.restart();
    assert_exactly_once(&sys, 600, 5).await;
    assert!(sys.scheduler.is_running(), "the scheduler survived");
    for w in &mut sys.workers {
        assert!(w.is_running(), "{} survived", w.name);
    }
}

#[tokio::test]
async fn sigterm_lets_a_worker_finish_the_batches_in_hand_and_exit_0() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 1,
        sim_args: vec!["--latency-ms".into(), "1000".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "10".into())],
        ..Default::default()
    }))
    .await;
    sys.submit(100, "flux-dev").await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sys.sim_stats().await["batches"].as_u64().unwrap_or(0) < 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let worker = sys.workers.remove(0);
    let status = worker.terminate(Duration::from_secs(20)).await;
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
    // Nothing it held is running any more: finished, or back in the queue.
    let states = sys.states().await;
    assert_eq!(states.get("running").copied().unwrap_or(0), 0, "{states:?}");
    assert!(states.get("succeeded").copied().unwrap_or(0) >= 10, "it finished what it held: {states:?}");
    sys.add_worker();
    assert_exactly_once(&sys, 100, 2).await;
}

#[tokio::test]
async fn a_provider_failing_every_way_at_once_including_timeouts_still_bills_each_success_once() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args: [
            "--error-rate", "0.2", "--rate-limit-rate", "0.2", "--garbage-rate", "0.2", "--slow-rate", "0.2", "--slow-ms", "3000",
            "--item-error-rate", "0.05",
        ]
        .map(String::from)
        .to_vec(),
        env: vec![
            ("OFFPEAK_BATCH_MAX".into(), "10".into()),
            ("OFFPEAK_WORKER_PREFETCH".into(), "8".into()),
            ("OFFPEAK_PROVIDER_TIMEOUT_SECS".into(), "1".into()),
        ],
        ..Default::default()
    }))
    .await;
    sys.submit(400, "flux-schnell").await;
    let states = sys.wait_all_terminal(Duration::from_secs(120)).await;
    let count = |s: &str| states.get(s).copied().unwrap_or(0);
    assert_eq!(count("succeeded") + count("failed") + count("dead"), 400, "{states:?}");
    assert!(count("succeeded") > 0 && count("failed") > 0, "{states:?}");
    let (succeeded, credits) = sys.succeeded().await;
    assert_eq!(credits, succeeded);
    let stats = sys.sim_stats().await;
    assert_eq!(stats["items"], succeeded, "billed items equal succeeded jobs: {stats}");
    assert_eq!(stats["max_billed_per_input"], 1, "{stats}");
    assert!(stats["garbage"].as_u64().unwrap() > 0 && stats["rate_limited"].as_u64().unwrap() > 0);
    assert!(stats["slow"].as_u64().unwrap() > 0, "some calls timed out: {stats}");
    println!(
        "400 submitted, {succeeded} succeeded, {} failed, {} dead, provider billed {}",
        count("failed"),
        count("dead"),
        stats["items"]
    );
}

#[tokio::test]
async fn two_schedulers_and_three_workers_with_kills_finish_every_job_once() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 3,
        sim_args: vec!["--latency-ms".into(), "300".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "10".into())],
        ..Default::default()
    }))
    .await;
    let (second, _) = sys.add_scheduler();
    sys.submit(500, "flux-dev").await;
    wait_succeeded(&sys, 30).await;
    // Kill a worker and the second scheduler mid-run, then bring a worker back.
    let victim = sys.workers.remove(0);
    victim.signal("KILL");
    second.signal("KILL");
    drop((victim, second));
    let (third, _) = sys.add_scheduler();
    sys.add_worker();
    sys.submit(200, "flux-dev").await;
    wait_succeeded(&sys, 300).await;
    sys.workers.remove(0).signal("KILL");
    assert_exactly_once(&sys, 700, 2).await;
    drop(third);
}

#[tokio::test]
async fn the_metrics_of_both_binaries_agree_with_the_jobs_table() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args: vec!["--item-error-rate".into(), "0.1".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "25".into())],
        ..Default::default()
    }))
    .await;
    sys.submit(300, "flux-pro").await;
    let states = sys.wait_all_terminal(Duration::from_secs(60)).await;
    let (succeeded, credits) = sys.succeeded().await;
    let failed = states.get("failed").copied().unwrap_or(0);
    let api = sys.scheduler.url.clone().unwrap();
    assert_eq!(sys.metric(&api, "offpeak_jobs_submitted_total", &[]).await, 300.0);
    assert_eq!(sys.metric(&api, "offpeak_jobs_released_total", &[]).await, 300.0);
    assert_eq!(sys.metric(&api, "offpeak_batches_published_total", &[]).await, 12.0);
    assert_eq!(sys.metric(&api, "offpeak_batch_size_sum", &[]).await, 300.0);
    let mut finished_ok = 0.0;
    let mut finished_failed = 0.0;
    let mut spent = 0.0;
    for w in &sys.workers {
        let url = w.url.clone().unwrap();
        finished_ok += sys.metric(&url, "offpeak_jobs_finished_total", &["state=\"succeeded\""]).await;
        finished_failed += sys.metric(&url, "offpeak_jobs_finished_total", &["state=\"failed\""]).await;
        spent += sys.metric(&url, "offpeak_credits_spent_total", &[]).await;
        assert_eq!(sys.metric(&url, "offpeak_worker_broker_connected", &[]).await, 1.0);
    }
    assert_eq!(finished_ok, succeeded as f64);
    assert_eq!(finished_failed, failed as f64);
    assert_eq!(spent, credits as f64);
}

/// A system whose scheduler pauses between its batches' confirms and its
/// commit (`OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS`), with `env` besides, and
/// no worker at first, so published but uncommitted batches wait in the
/// queue for the workers that come later to find them orphaned.
async fn pausing_after_publish(private: &Private, env: &[(&str, &str)]) -> System {
    let mut all = vec![("OFFPEAK_BATCH_MAX".into(), "25".into()), ("OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS".into(), "60000".into())];
    all.extend(env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    System::start(private.options(SystemOptions { workers: 0, sim_args: vec![], env: all, ..Default::default() })).await
}

/// Waits for the scheduler to reach the failpoint (`who` published, not
/// committed), then SIGKILLs it.
async fn kill_at_the_failpoint(sys: &System, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !sys.log("scheduler").contains("failpoint: published, not committed") {
        assert!(tokio::time::Instant::now() < deadline, "{who} never reached the failpoint");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sys.scheduler.signal("KILL");
}

#[tokio::test]
async fn a_scheduler_killed_between_publishing_a_batch_and_committing_it_loses_nothing() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    // The round's window, not the submission's (the next test's).
    let mut sys = pausing_after_publish(&private, &[("OFFPEAK_RELEASE_AT_SUBMIT", "false")]).await;
    sys.submit(100, "flux-dev").await;
    kill_at_the_failpoint(&sys, "the release").await;
    let states = sys.states().await;
    assert_eq!(states.get("held").copied(), Some(100), "the release rolled back: {states:?}");

    // A new scheduler (without the failpoint) and workers take over.
    let (replacement, _) = sys.add_scheduler_with(&[("OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS", "")]);
    sys.add_worker();
    sys.add_worker();
    assert_exactly_once(&sys, 100, 2).await;
    drop(replacement);
}

/// The same window in a bulk submission released with its own transaction
/// (`offpeak_scheduler::direct`): its batches are confirmed by the broker,
/// its transaction is not committed, and the scheduler is killed. Nothing
/// of the submission is stored (all or none), the client gets no answer
/// and sends it again under its `Idempotency-Key`, and the orphaned
/// messages start nothing: each job runs and is billed once.
#[tokio::test]
async fn a_scheduler_killed_between_publishing_a_submissions_batches_and_committing_it_stores_nothing() {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = pausing_after_publish(&private, &[]).await;
    // The release loop's rounds open the room for submissions: a second
    // wake-up means the first round has ended (a loop runs one at a time),
    // and each round keeps the room open for four intervals.
    let api = sys.api.clone();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while sys.metric(&api, "offpeak_release_wakeups_total", &[]).await < 2.0 {
        assert!(tokio::time::Instant::now() < deadline, "the release loop ran no round");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let inputs: Vec<serde_json::Value> = (0..100).map(|i| serde_json::json!({"prompt": format!("killed {i}")})).collect();
    let body = serde_json::json!({"model": "flux-dev", "inputs": inputs, "priority": "normal"});
    let (http, key) = (sys.http.clone(), sys.key.clone());
    let send = |api: String| {
        http.post(format!("{api}/v1/jobs/bulk")).bearer_auth(&key).header("Idempotency-Key", "tonight-1").json(&body).send()
    };
    let first = tokio::spawn(send(api.clone()));
    kill_at_the_failpoint(&sys, "the submission").await;
    assert!(first.await.expect("the request task").is_err(), "the killed scheduler answered");
    assert!(sys.states().await.is_empty(), "nothing of the submission was stored");

    let (replacement, api) = sys.add_scheduler_with(&[("OFFPEAK_FAILPOINT_AFTER_PUBLISH_MS", "")]);
    // Sent again until the replacement listens.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let resp = loop {
        match send(api.clone()).await {
            Ok(resp) => break resp,
            Err(e) => assert!(tokio::time::Instant::now() < deadline, "the replacement never answered: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resp.status(), 201, "stored now, as new");
    sys.add_worker();
    sys.add_worker();
    assert_exactly_once(&sys, 100, 2).await;
    drop(replacement);
}

#[tokio::test]
async fn a_scheduler_killed_during_webhook_deliveries_and_a_postgres_restart_lose_no_event_and_complete_each_group_once() {
    use offpeak_tests::receiver::Receiver;
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    let mut sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args: vec!["--latency-ms".into(), "100".into()],
        env: vec![
            ("OFFPEAK_BATCH_MAX".into(), "20".into()),
            ("OFFPEAK_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
            ("OFFPEAK_WEBHOOK_TIMEOUT_SECS".into(), "2".into()),
            // Deliveries beside the jobs, as after a long busy spell
            // (`OFFPEAK_WEBHOOK_MAX_PAUSE_SECS`): the kill and the restart
            // hit both at once.
            ("OFFPEAK_WEBHOOK_BUSY_IN_FLIGHT".into(), "256".into()),
        ],
        ..Default::default()
    }))
    .await;
    let receiver = Receiver::start(None).await;
    let resp = sys
        .http
        .post(format!("{}/v1/webhooks", sys.api))
        .bearer_auth(&sys.key)
        .json(&serde_json::json!({"url": receiver.url()}))
        .send()
        .await
        .expect("register");
    assert_eq!(resp.status(), 201);
    let hook: serde_json::Value = resp.json().await.expect("json");
    receiver.set_secret(Some(offpeak_core::webhook::Secret::parse(hook["secret"].as_str().expect("secret")).expect("whsec_")));

    let mut jobs = Vec::new();
    for _ in 0..3 {
        jobs.extend(sys.submit(200, "flux-schnell").await);
    }
    // Deliveries under way: kill the scheduler mid-stream, restart PostgreSQL, start another.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.count() < 50 {
        assert!(tokio::time::Instant::now() < deadline, "no deliveries");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sys.scheduler.signal("KILL");
    private.pg.restart();
    let (_replacement, _) = sys.add_scheduler();
    let states = sys.wait_all_terminal(Duration::from_secs(120)).await;
    assert_eq!(states.get("succeeded").copied(), Some(600), "{states:?}");

    // Every job's event and one group.completed per group arrive (leases
    // of the killed replica's attempts run out after timeout + 30 s).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let got = receiver.received();
        let mut job_ids: Vec<String> = got
            .iter()
            .filter(|r| r.body["type"] == "job.succeeded")
            .filter_map(|r| r.body["data"]["id"].as_str().map(str::to_owned))
            .collect();
        job_ids.sort();
        job_ids.dedup();
        let mut groups: Vec<(String, String)> = got
            .iter()
            .filter(|r| r.body["type"] == "group.completed")
            .map(|r| (r.body["data"]["id"].as_str().unwrap_or("").to_owned(), r.webhook_id.clone().unwrap_or_default()))
            .collect();
        groups.sort();
        groups.dedup();
        if job_ids.len() == 600 && groups.len() >= 3 {
            let mut names: Vec<&String> = groups.iter().map(|g| &g.0).collect();
            names.dedup();
            assert_eq!(names.len(), 3, "three groups");
            assert_eq!(groups.len(), 3, "one group.completed event (one webhook-id) per group: {groups:?}");
            for g in got.iter().filter(|r| r.body["type"] == "group.completed") {
                assert_eq!(g.body["data"]["counts"]["succeeded"], 200, "{}", g.body);
            }
            assert!(got.iter().all(|r| r.verified == Some(true)), "every delivery signed");
            let mut all = jobs.clone();
            all.sort();
            assert_eq!(job_ids, all, "an event for every job");
            println!("600 jobs, {} deliveries received (duplicates from the kill: {})", got.len(), got.len() - 603);
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{} job events and {} group events after the kill", job_ids.len(), groups.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The fault suite once per protocol: under load through `adapter`, SIGKILL
/// a worker, SIGKILL the scheduler (a replacement takes over), restart
/// RabbitMQ, then PostgreSQL; every job ends succeeded once and the
/// simulator billed every item once.
async fn every_fault_through(adapter: Adapter) {
    let _serial = SERIAL.lock().await;
    let private = Private::start().await;
    // Work for about 15 s on two workers, so that every fault lands while
    // calls are in flight (checked below): 600 jobs as 120 batch calls of
    // 1 s, 600 image calls of 0.4 s (8 at a time per worker), or 30
    // provider batches that take 10 s each.
    let (latency_ms, batch_max) = match adapter {
        Adapter::Batch => ("1000", "5"),
        Adapter::OpenaiImages => ("400", "20"),
        Adapter::OpenaiBatch => ("100", "20"),
    };
    let mut sim_args: Vec<String> = vec!["--latency-ms".into(), latency_ms.into()];
    if adapter == Adapter::OpenaiBatch {
        sim_args.extend(["--openai-batch-duration-ms".into(), "10000".into()]);
    }
    let mut sys = System::start(private.options(SystemOptions {
        workers: 2,
        sim_args,
        env: vec![("OFFPEAK_BATCH_MAX".into(), batch_max.into())],
        adapter: Some(adapter),
        ..Default::default()
    }))
    .await;
    let jobs = 600;
    sys.submit(jobs, "flux-dev").await;
    // Work under way: calls made (and for openai-batch, provider batches open).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let calls = |s: serde_json::Value| ["batches", "image_calls", "openai_batches"].iter().map(|k| s[k].as_u64().unwrap_or(0)).sum::<u64>();
    while calls(sys.sim_stats().await) < 10 {
        assert!(tokio::time::Instant::now() < deadline, "no provider calls ({adapter})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let victim = sys.workers.remove(0);
    victim.signal("KILL");
    drop(victim);
    sys.add_worker();

    sys.scheduler.signal("KILL");
    let (_replacement, _) = sys.add_scheduler();

    private.rabbit.stop_app();
    tokio::time::sleep(Duration::from_secs(1)).await;
    private.rabbit.start_app();

    let before = sys.states().await;
    assert!(
        before.get("succeeded").copied().unwrap_or(0) < jobs as i64,
        "the work ended before the last fault ({adapter}): {before:?}"
    );
    private.pg.restart();

    assert_exactly_once(&sys, jobs as i64, 2).await;
    for w in &mut sys.workers {
        assert!(w.is_running(), "{} survived ({adapter})", w.name);
    }
}

#[tokio::test]
async fn every_fault_through_the_batch_protocol_loses_nothing_and_bills_once() {
    every_fault_through(Adapter::Batch).await;
}

#[tokio::test]
async fn every_fault_through_openai_images_loses_nothing_and_bills_once() {
    every_fault_through(Adapter::OpenaiImages).await;
}

#[tokio::test]
async fn every_fault_through_openai_batch_loses_nothing_and_bills_once() {
    every_fault_through(Adapter::OpenaiBatch).await;
}
