//! Running workers as the README says: `offpeak-worker &  # run as many as
//! you like`, on one host, with nothing configured but the services.
//!
//! Why the default range itself, not a test-only base port: the test must
//! run the code path a new user runs. It needs no lock against other tests
//! either: what it checks (each worker takes a free port of 9091-9190, says
//! which, and works) holds whoever else holds ports of that range meanwhile;
//! only the exact numbers differ, and the test does not assume them. No
//! other test starts a worker without an explicit address.

use std::time::Duration;

use serde_json::Value;

use offpeak_tests::harness::{amqp_url, database_url};
use offpeak_tests::procs::{binary, free_port, System, SystemOptions};

#[tokio::test]
async fn two_workers_started_the_readme_way_on_one_host_both_listen_and_both_consume() {
    // Small batches, each held a moment by the provider, so that the work
    // is many batches spread over both consumers.
    let mut sys = System::start(SystemOptions {
        workers: 0,
        sim_args: vec!["--latency-ms".into(), "100".into()],
        env: vec![("OFFPEAK_BATCH_MAX".into(), "2".into())],
        ..Default::default()
    })
    .await;
    // Both at once, as `a & b &` does: they race for 9091.
    let first = sys.add_worker_with_default_listen();
    let second = sys.add_worker_with_default_listen();
    let a = sys.wait_worker_url(first, Duration::from_secs(30)).await;
    let b = sys.wait_worker_url(second, Duration::from_secs(30)).await;
    assert_ne!(a, b, "each worker took a port of its own");
    for url in [&a, &b] {
        let port: u16 = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL");
        assert!(url.starts_with("http://127.0.0.1:") && (9091..=9190).contains(&port), "{url}: in the default range");
    }

    // Each says on /readyz and /healthz where it is and which consumer it is.
    let mut tags = Vec::new();
    for url in [&a, &b] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let ready = loop {
            let resp = sys.http.get(format!("{url}/readyz")).send().await.expect("the worker answers where it said");
            let (status, body) = (resp.status(), resp.json::<Value>().await.expect("JSON"));
            if status == 200 {
                break body;
            }
            assert!(tokio::time::Instant::now() < deadline, "{url} not ready: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(ready["status"], "ready");
        assert_eq!(format!("http://{}", ready["listen"].as_str().expect("listen")), *url);
        assert_eq!(ready["queue"], sys.queue.as_str());
        let health: Value = sys.http.get(format!("{url}/healthz")).send().await.unwrap().json().await.unwrap();
        assert_eq!(health["status"], "ok");
        assert_eq!(health["listen"], ready["listen"]);
        assert_eq!(health["consumer_tag"], ready["consumer_tag"]);
        tags.push(ready["consumer_tag"].as_str().expect("consumer_tag").to_owned());
    }
    assert_ne!(tags[0], tags[1]);

    // RabbitMQ sees two consumers on the batch queue.
    let conn = offpeak_runtime::broker::connect(&amqp_url(), "workers-test", Duration::from_secs(10)).await.expect("RabbitMQ");
    let channel = conn.create_channel().await.expect("channel");
    let stats = offpeak_runtime::broker::Topology::new(&sys.queue).stats(&channel).await.expect("queue stats");
    assert_eq!(stats.consumers, 2);
    let _ = conn.close(200, "done").await;

    // Both work: the jobs all succeed, and each worker finished batches.
    let n = 40;
    sys.submit(n, "flux-schnell").await;
    let states = sys.wait_all_terminal(Duration::from_secs(60)).await;
    assert_eq!(states.get("succeeded").copied(), Some(n as i64), "{states:?}");
    assert_eq!(sys.sim_stats().await["items"], n, "the provider billed each job once");
    let mut total = 0.0;
    for url in [&a, &b] {
        let done = sys.metric(url, "offpeak_worker_batches_total", &["outcome=\"done\""]).await;
        assert!(done >= 1.0, "{url} finished no batch: both should consume");
        total += done;
    }
    assert_eq!(total, (n / 2) as f64, "{n} jobs in batches of 2, each finished by one worker");
}

#[tokio::test]
async fn a_worker_told_to_listen_on_an_address_in_use_exits_non_zero_naming_it() {
    let taken = std::net::TcpListener::bind(("127.0.0.1", free_port())).expect("hold a port");
    let addr = taken.local_addr().expect("address");
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::process::Command::new(binary("offpeak-worker"))
            .env("DATABASE_URL", database_url())
            .env("AMQP_URL", amqp_url())
            .env("OFFPEAK_WORKER_LISTEN", addr.to_string())
            .output(),
    )
    .await
    .expect("exits at once, without waiting for anything")
    .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "non-zero exit, got {}", out.status);
    assert!(stderr.contains(&format!("{addr} is already in use")), "names the address: {stderr}");
    assert!(stderr.contains("OFFPEAK_WORKER_LISTEN"), "names the setting: {stderr}");
    assert!(!stderr.contains("worker listening on"), "no quiet move to another port: {stderr}");
}
