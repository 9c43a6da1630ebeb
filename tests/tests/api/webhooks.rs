//! Webhooks: endpoints per tenant, events written with the job's terminal
//! state, signed as the Standard Webhooks specification says, delivered at
//! least once with retries, and never to a destination the operator did not
//! allow.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use offpeak_core::webhook::Secret;
use offpeak_tests::harness::{bulk_ids, EnvOptions, TestEnv};
use offpeak_tests::receiver::{Mode, Receiver};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Inside the window, with private destinations allowed (receivers are local).
fn opts() -> EnvOptions {
    let mut o = EnvOptions { now: at("2027-06-01T03:00:00Z"), ..Default::default() };
    o.api.webhooks_allow_private = true;
    o
}

async fn register(env: &TestEnv, key: &str, url: &str, events: Option<Vec<&str>>) -> (Uuid, Secret) {
    let mut body = json!({"url": url, "description": "test receiver"});
    if let Some(e) = events {
        body["events"] = json!(e);
    }
    let (status, hook) = env.post(key, "/v1/webhooks", &body).await;
    assert_eq!(status, 201, "{hook}");
    let secret = Secret::parse(hook["secret"].as_str().unwrap()).expect("a whsec_ secret");
    (hook["id"].as_str().unwrap().parse().unwrap(), secret)
}

/// Submits a job held for its window (Auckland's night) and cancels it: one
/// `job.cancelled` event. Returns the job's id.
async fn cancelled_job(env: &TestEnv, key: &str) -> String {
    let body = json!({"model": "flux-schnell", "input": {"prompt": Uuid::now_v7().to_string()}, "timezone": "Pacific/Auckland"});
    let (status, job) = env.post(key, "/v1/jobs", &body).await;
    assert_eq!(status, 201, "{job}");
    let id = job["id"].as_str().unwrap().to_owned();
    assert_eq!(env.delete(key, &format!("/v1/jobs/{id}")).await.0, 200);
    id
}

fn wid(r: &offpeak_tests::receiver::Received) -> &str {
    r.webhook_id.as_deref().expect("a webhook-id header")
}

/// Runs delivery passes until `n` requests reached the receiver.
async fn deliver_until(env: &TestEnv, receiver: &Receiver, n: usize) {
    let d = env.deliverer(TestEnv::test_delivery_config());
    for _ in 0..200 {
        d.run_once().await.unwrap();
        if receiver.received().len() >= n {
            // Let the attempts' records land.
            while d.in_flight() > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("only {} of {n} deliveries arrived", receiver.received().len());
}

#[tokio::test]
async fn an_endpoint_is_created_read_changed_rotated_and_deleted_and_its_secret_shown_only_when_made() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let other = env.tenant("other", "UTC").await;
    let (status, hook) = env
        .post(&key, "/v1/webhooks", &json!({"url": "https://example.com/hook", "events": ["job.succeeded", "group.completed"]}))
        .await;
    assert_eq!(status, 201, "{hook}");
    let secret = hook["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    assert_eq!(Secret::parse(secret).unwrap().as_bytes().len(), 32);
    assert_eq!(hook["enabled"], true);
    let id = hook["id"].as_str().unwrap();

    let (status, list) = env.get(&key, "/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(list["webhooks"].as_array().unwrap().len(), 1);
    assert!(list["webhooks"][0].get("secret").is_none(), "the secret is not shown again");
    let (status, one) = env.get(&key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["events"], json!(["job.succeeded", "group.completed"]));
    assert!(one.get("secret").is_none());
    let (status, _) = env.get(&other, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404, "another tenant's endpoint does not exist for it");
    let (status, list) = env.get(&other, "/v1/webhooks").await;
    assert_eq!((status, list["webhooks"].as_array().unwrap().len()), (200, 0));

    let resp = env
        .http
        .patch(env.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&key)
        .json(&json!({"events": ["job.failed"], "description": null, "enabled": false}))
        .send()
        .await
        .unwrap();
    let (status, changed) = TestEnv::read(resp).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["events"], json!(["job.failed"]));
    assert_eq!(changed["enabled"], false);
    assert_eq!(changed["description"], Value::Null);

    let (status, rotated) = env.post(&key, &format!("/v1/webhooks/{id}/rotate-secret"), &json!({})).await;
    assert_eq!(status, 200, "{rotated}");
    assert_ne!(rotated["secret"], hook["secret"]);
    assert!(rotated["previous_secret_expires_at"].is_string());

    let (status, _) = env.delete(&other, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
    let (status, gone) = env.delete(&key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!((status, gone["id"].as_str()), (200, Some(id)), "{gone}");
    let (status, _) = env.get(&key, &format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn unsafe_or_malformed_endpoints_are_refused_and_store_nothing() {
    // The operator has not allowed private destinations here.
    let env = TestEnv::with(EnvOptions::default()).await;
    let key = env.tenant("acme", "UTC").await;
    for (body, field) in [
        (json!({"url": "http://example.com/hook"}), "url"),
        (json!({"url": "https://127.0.0.1/hook"}), "url"),
        (json!({"url": "https://169.254.169.254/latest/meta-data"}), "url"),
        (json!({"url": "https://10.1.2.3/hook"}), "url"),
        (json!({"url": "https://[::1]/hook"}), "url"),
        (json!({"url": "https://localhost/hook"}), "url"),
        (json!({"url": "https://user:pass@example.com/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": "https://example.com/hook", "events": []}), "events"),
        (json!({"url": "https://example.com/hook", "events": ["job.exploded"]}), "events"),
        (json!({"url": "https://example.com/hook", "description": "x".repeat(501)}), "description"),
    ] {
        let (status, err) = env.post(&key, "/v1/webhooks", &body).await;
        assert_eq!(status, 422, "{body}: {err}");
        assert_eq!(err["error"]["field"], field, "{body}: {err}");
    }
    let (status, err) = env.post(&key, "/v1/webhooks", &json!({"url": "https://example.com", "secret": "mine"})).await;
    assert_eq!(status, 422, "{err}");
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints").fetch_one(&env.pool).await.unwrap();
    assert_eq!(n, 0, "nothing stored");
}

#[tokio::test]
async fn every_terminal_job_event_arrives_signed_with_what_the_receiver_needs() {
    let mut env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    let (hook_id, secret) = register(&env, &key, &receiver.url(), None).await;
    receiver.set_secret(Some(secret.clone()));
    env.start_worker();
    env.start_release_loop();

    let (_, ok) = env
        .post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "fox"}, "user_id": "u1", "metadata": {"sku": 7}, "priority": "normal"}))
        .await;
    let ok_id: Uuid = ok["id"].as_str().unwrap().parse().unwrap();
    env.wait_terminal(&[ok_id], Duration::from_secs(20)).await;
    // A cache hit at submission, and a cancel.
    let (_, hit) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "fox"}})).await;
    assert_eq!(hit["cache_hit"], true);
    let (_, held) =
        env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {"prompt": "later"}, "timezone": "Pacific/Auckland"})).await;
    let (status, _) = env.delete(&key, &format!("/v1/jobs/{}", held["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);

    deliver_until(&env, &receiver, 3).await;
    let got = receiver.received();
    assert_eq!(got.len(), 3, "one delivery per event");
    for r in &got {
        assert_eq!(r.verified, Some(true), "the signature verifies with the endpoint's secret: {r:?}");
        assert!(wid(r).starts_with("msg_"));
    }
    let by_job = |id: &Value| got.iter().find(|r| r.body["data"]["id"] == *id).expect("an event for the job").clone();
    let e = by_job(&ok["id"]);
    assert_eq!(e.body["type"], "job.succeeded");
    assert!(e.body["timestamp"].is_string());
    let data = &e.body["data"];
    assert_eq!(data["state"], "succeeded");
    assert_eq!(data["model"], "flux-schnell");
    assert!(data["result"]["url"].is_string(), "{data}");
    assert_eq!(data["credits"], 1);
    assert_eq!(data["cache_hit"], false);
    assert_eq!(data["user_id"], "u1");
    assert_eq!(data["metadata"], json!({"sku": 7}));
    assert!(data["created_at"].is_string() && data["finished_at"].is_string());
    let e = by_job(&hit["id"]);
    assert_eq!((e.body["type"].as_str(), e.body["data"]["cache_hit"].as_bool()), (Some("job.succeeded"), Some(true)));
    assert_eq!(by_job(&held["id"]).body["type"], "job.cancelled");

    // The deliveries, listed with their attempts; a replay sends the same event again.
    let (status, page) = env.get(&key, &format!("/v1/webhooks/{hook_id}/deliveries")).await;
    assert_eq!(status, 200, "{page}");
    let deliveries = page["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries.iter().all(|d| d["state"] == "delivered" && d["attempt_log"][0]["status"] == 200), "{page}");
    let first = &deliveries[0];
    let (status, replayed) =
        env.post(&key, &format!("/v1/webhooks/{hook_id}/deliveries/{}/replay", first["id"].as_str().unwrap()), &json!({})).await;
    assert_eq!(status, 202, "{replayed}");
    deliver_until(&env, &receiver, 4).await;
    let got = receiver.received();
    assert_eq!(wid(&got[3]), format!("msg_{}", first["event_id"].as_str().unwrap().replace('-', "")));
    assert_eq!(got.iter().filter(|r| r.webhook_id == got[3].webhook_id).count(), 2, "the replay carries the event's id");
    let (status, _) = env.post(&key, &format!("/v1/webhooks/{hook_id}/deliveries/{}/replay", Uuid::now_v7()), &json!({})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_receiver_down_for_a_while_gets_every_event_afterwards_each_retry_with_one_webhook_id() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    let (hook_id, secret) = register(&env, &key, &receiver.url(), Some(vec!["job.cancelled"])).await;
    receiver.set_secret(Some(secret));
    receiver.set_mode(Mode::Fail(503));
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(cancelled_job(&env, &key).await);
    }
    let d = env.deliverer(TestEnv::test_delivery_config());
    // Down through three rounds of retries: 5 s, 5 min, 30 min later (plus jitter).
    for advance in [0, 7, 6 * 60, 36 * 60] {
        env.clock.advance(TimeDelta::seconds(advance));
        d.run_once().await.unwrap();
        while d.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let failures = receiver.received();
    assert_eq!(failures.len(), 20, "5 events × 4 attempts");
    let (_, hook) = env.get(&key, &format!("/v1/webhooks/{hook_id}")).await;
    assert!(hook["failing_since"].is_string(), "{hook}");
    assert_eq!(hook["enabled"], true, "not disabled after an hour");

    receiver.set_mode(Mode::Ok);
    env.clock.advance(TimeDelta::hours(3));
    d.run_once().await.unwrap();
    while d.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let all = receiver.received();
    assert_eq!(all.len(), 25);
    let ok: Vec<_> = all.iter().filter(|r| r.answered == Some(200)).collect();
    assert_eq!(ok.len(), 5, "every event delivered once the receiver is back");
    for r in &ok {
        let tries: Vec<_> = all.iter().filter(|x| x.webhook_id == r.webhook_id).collect();
        assert_eq!(tries.len(), 5, "each retry carries the same webhook-id");
        assert!(tries.iter().all(|t| t.raw_body == r.raw_body), "and the same body");
        assert!(tries.iter().all(|t| t.verified == Some(true)));
    }
    let mut delivered: Vec<String> = ok.iter().map(|r| r.body["data"]["id"].as_str().unwrap().to_owned()).collect();
    delivered.sort();
    ids.sort();
    assert_eq!(delivered, ids);
    let (_, hook) = env.get(&key, &format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(hook["failing_since"], Value::Null, "a success clears the failure");
    let (_, page) = env.get(&key, &format!("/v1/webhooks/{hook_id}/deliveries?limit=2")).await;
    assert_eq!(page["deliveries"].as_array().unwrap().len(), 2);
    assert_eq!(page["deliveries"][0]["attempts"], 5);
    assert_eq!(page["deliveries"][0]["attempt_log"][0]["status"], 503);
    assert!(page["next_cursor"].is_string());
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_and_can_be_enabled_again() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    let (hook_id, _) = register(&env, &key, &receiver.url(), None).await;
    receiver.set_mode(Mode::Fail(500));
    let mut cfg = TestEnv::test_delivery_config();
    cfg.disable_after = Duration::from_secs(2 * 24 * 3600);
    let d = env.deliverer(cfg);
    // A new failing event every 12 hours for three days.
    for _ in 0..7 {
        cancelled_job(&env, &key).await;
        d.run_once().await.unwrap();
        while d.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        env.clock.advance(TimeDelta::hours(12));
    }
    let (_, hook) = env.get(&key, &format!("/v1/webhooks/{hook_id}")).await;
    assert_eq!(hook["enabled"], false, "{hook}");
    assert!(hook["disabled_reason"].as_str().unwrap().contains("failed"), "{hook}");
    // Disabled: no new deliveries are written for it.
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&env.pool).await.unwrap();
    cancelled_job(&env, &key).await;
    offpeak_store::webhooks::fan_out(&env.pool, 1_000, 0).await.unwrap();
    let after: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_deliveries").fetch_one(&env.pool).await.unwrap();
    assert_eq!(after, before);

    let resp = env.http.patch(env.url(&format!("/v1/webhooks/{hook_id}"))).bearer_auth(&key).json(&json!({"enabled": true})).send().await.unwrap();
    let (status, hook) = TestEnv::read(resp).await;
    assert_eq!((status, &hook["enabled"], &hook["failing_since"]), (200, &json!(true), &Value::Null), "{hook}");
}

#[tokio::test]
async fn a_delivery_whose_retries_are_used_up_is_failed_and_the_outbox_gauges_count_it() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    register(&env, &key, &receiver.url(), None).await;
    receiver.set_mode(Mode::Fail(500));
    // Not disabled while its one delivery runs through its retries.
    let mut cfg = TestEnv::test_delivery_config();
    cfg.disable_after = Duration::from_secs(30 * 24 * 3600);
    let d = env.deliverer(cfg);
    cancelled_job(&env, &key).await;
    // Every attempt fails; a day later the next is due (the schedule's
    // longest delay is hours), until the retry schedule is used up.
    for _ in 0..offpeak_core::webhook::MAX_ATTEMPTS {
        d.run_once().await.unwrap();
        while d.in_flight() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        env.clock.advance(TimeDelta::hours(25));
    }
    let by_state = |state: &'static str| {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM webhook_deliveries WHERE state = $1").bind(state).fetch_one(&env.pool)
    };
    assert_eq!((by_state("failed").await.unwrap(), by_state("pending").await.unwrap()), (1, 0));
    // A new event's delivery is pending beside it.
    cancelled_job(&env, &key).await;
    offpeak_store::webhooks::fan_out(&env.pool, 1_000, 0).await.unwrap();
    let now = offpeak_core::clock::Clock::now(&env.clock);
    let outbox = offpeak_store::webhooks::outbox_stats(&env.pool, now).await.unwrap();
    assert_eq!((outbox.failed, outbox.pending, outbox.events_waiting), (1, 1, 0), "{outbox:?}");
}

#[tokio::test]
async fn a_hanging_receiver_delays_no_one_else() {
    let env = TestEnv::with(opts()).await;
    let slow_key = env.tenant("slow", "UTC").await;
    let fast_key = env.tenant("fast", "UTC").await;
    let hanging = Receiver::start(None).await;
    hanging.set_mode(Mode::Hang);
    let fast = Receiver::start(None).await;
    register(&env, &slow_key, &hanging.url(), None).await;
    register(&env, &fast_key, &fast.url(), None).await;
    for key in [&slow_key, &slow_key, &slow_key, &fast_key] {
        cancelled_job(&env, key).await;
    }
    let mut cfg = TestEnv::test_delivery_config();
    cfg.sender.timeout = Duration::from_secs(10);
    let d = env.deliverer(cfg);
    let started = std::time::Instant::now();
    d.run_once().await.unwrap();
    while fast.received().is_empty() {
        assert!(started.elapsed() < Duration::from_secs(5), "the fast receiver waited for the hanging one");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fast.received().len(), 1);
    assert!(d.in_flight() >= 3, "the hanging receiver's attempts are still out");
}

#[tokio::test]
async fn deliveries_to_destinations_the_operator_did_not_allow_are_refused_at_delivery_time() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    let port = receiver.url().rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
    // Registered while allowed (or with a public name that later resolves
    // to a private address): each delivery checks the resolved address again.
    register(&env, &key, &format!("http://localhost:{port}/hook"), None).await;
    register(&env, &key, &format!("http://127.0.0.1:{port}/hook"), None).await;
    // A redirect to a private address is not followed, even where allowed.
    let redirecting = Receiver::start(None).await;
    redirecting.set_mode(Mode::Redirect(format!("{}/stolen", receiver.url())));
    register(&env, &key, &redirecting.url(), None).await;

    let (_, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "x"}, "timezone": "Pacific/Auckland"})).await;
    env.delete(&key, &format!("/v1/jobs/{}", job["id"].as_str().unwrap())).await;
    let mut strict = TestEnv::test_delivery_config();
    strict.sender.allow_private = false;
    let d = env.deliverer(strict);
    d.run_once().await.unwrap();
    while d.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(receiver.received().is_empty(), "nothing reached the loopback receiver");
    let errors: Vec<(Option<i32>, Option<String>)> =
        sqlx::query_as("SELECT last_status, last_error FROM webhook_deliveries ORDER BY endpoint_id").fetch_all(&env.pool).await.unwrap();
    assert_eq!(errors.len(), 3);
    for (status, error) in &errors {
        assert_eq!(*status, None, "{error:?}");
        assert!(error.as_deref().is_some_and(|e| !e.is_empty()), "{error:?}");
    }

    // Allowed, the redirect answers 3xx: a failure, and the target gets nothing.
    let d = env.deliverer(TestEnv::test_delivery_config());
    env.clock.advance(TimeDelta::seconds(10));
    d.run_once().await.unwrap();
    while d.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(redirecting.received().len(), 1);
    assert!(receiver.received().iter().all(|r| r.path != "/stolen"), "the redirect was not followed");
    let redirect_status: Option<i32> = sqlx::query_scalar(
        "SELECT d.last_status FROM webhook_deliveries d JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE e.url = $1",
    )
    .bind(redirecting.url())
    .fetch_one(&env.pool)
    .await
    .unwrap();
    assert_eq!(redirect_status, Some(302));
}

#[tokio::test]
async fn a_rotated_secret_signs_beside_the_new_one_for_a_day() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let old_receiver = Receiver::start(None).await;
    let (hook_id, old) = register(&env, &key, &old_receiver.url(), None).await;
    let (_, rotated) = env.post(&key, &format!("/v1/webhooks/{hook_id}/rotate-secret"), &json!({})).await;
    let new = Secret::parse(rotated["secret"].as_str().unwrap()).unwrap();
    cancelled_job(&env, &key).await;
    deliver_until(&env, &old_receiver, 1).await;
    let r = &old_receiver.received()[0];
    let (sig, ts) = (r.webhook_signature.clone().unwrap(), r.webhook_timestamp.as_deref().unwrap().parse::<i64>().unwrap());
    assert_eq!(sig.split(' ').count(), 2, "two signatures while the old secret is honoured");
    for secret in [&old, &new] {
        offpeak_core::webhook::verify(secret, wid(r), ts, &r.raw_body, &sig, ts, 300).expect("each secret verifies");
    }
    env.clock.advance(TimeDelta::hours(25));
    cancelled_job(&env, &key).await;
    deliver_until(&env, &old_receiver, 2).await;
    let r = &old_receiver.received()[1];
    let (sig, ts) = (r.webhook_signature.clone().unwrap(), r.webhook_timestamp.as_deref().unwrap().parse::<i64>().unwrap());
    assert_eq!(sig.split(' ').count(), 1, "after a day only the new secret signs");
    assert!(offpeak_core::webhook::verify(&old, wid(r), ts, &r.raw_body, &sig, ts, 300).is_err());
    offpeak_core::webhook::verify(&new, wid(r), ts, &r.raw_body, &sig, ts, 300).unwrap();
}

#[tokio::test]
async fn a_job_retried_before_its_event_was_fanned_out_still_sends_the_state_it_reached() {
    // The statement that ends a job writes a narrow event row; the delivery
    // loop builds the payload from the job's row later. The operator's
    // retry is the one write that changes an ended job: it fans the job's
    // event out first, so the receiver hears `job.failed`, not `held`.
    let mut env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    let (_, secret) = register(&env, &key, &receiver.url(), None).await;
    receiver.set_secret(Some(secret));
    env.sim.sim.set_config(offpeak_provider_sim::SimConfig { item_error_rate: 1.0, ..Default::default() });
    env.start_worker();
    let (_, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-schnell", "input": {"prompt": "refused"}, "priority": "normal"})).await;
    let id: Uuid = job["id"].as_str().unwrap().parse().unwrap();
    env.release_once().await;
    let ended = env.wait_terminal(&[id], Duration::from_secs(20)).await;
    assert_eq!(ended[0].state, "failed");
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&env.pool).await.unwrap();
    assert_eq!(waiting, 1, "the finish wrote the event, not yet its deliveries");

    let filter = offpeak_store::operator::RetryFilter {
        states: vec![offpeak_core::job::JobState::Failed],
        job_id: Some(id),
        tenant_id: None,
        model: None,
        limit: 10,
    };
    let retried = offpeak_scheduler::ops::jobs::retry_jobs(&env.pool, &filter, false, &Default::default(), env.shared_clock().now()).await.unwrap();
    assert_eq!(retried.len(), 1);
    assert_eq!(env.job(id).await.state, "held");
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&env.pool).await.unwrap();
    assert_eq!(waiting, 0, "the retry fanned the event out");

    deliver_until(&env, &receiver, 1).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].verified, Some(true));
    assert_eq!(got[0].body["type"], "job.failed", "{}", got[0].body);
    assert_eq!(got[0].body["data"]["state"], "failed");
    assert_eq!(got[0].body["data"]["error"]["code"], offpeak_provider_sim::CONTENT_REJECTED);
}

#[tokio::test]
async fn deliveries_wait_while_the_jobs_pipeline_is_busy_and_go_out_when_it_is_not_or_the_pause_is_too_long() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    let receiver = Receiver::start(None).await;
    register(&env, &key, &receiver.url(), None).await;
    cancelled_job(&env, &key).await;

    // The defaults: nothing in flight while busy, for up to two minutes.
    let pressure = offpeak_scheduler::release::Pressure::default();
    let d = env.deliverer(TestEnv::test_delivery_config()).with_pressure(pressure.clone());
    pressure.set(true);
    for _ in 0..5 {
        let pass = d.deliver_once().await.unwrap();
        assert_eq!((pass.events_fanned_out, pass.attempts_started), (0, 0), "busy: nothing moves");
    }
    let waiting: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&env.pool).await.unwrap();
    assert_eq!(waiting, 1);

    pressure.set(false);
    let pass = d.deliver_once().await.unwrap();
    assert_eq!((pass.events_fanned_out, pass.attempts_started), (1, 1), "{pass:?}");
    while d.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received().len(), 1);
    assert_eq!(receiver.received()[0].body["type"], "job.cancelled");

    // A busy spell longer than the longest pause: deliveries run beside it.
    cancelled_job(&env, &key).await;
    pressure.set(true);
    let cfg = offpeak_scheduler::webhooks::DeliveryConfig { max_pause: Duration::from_millis(200), ..TestEnv::test_delivery_config() };
    let d = env.deliverer(cfg).with_pressure(pressure.clone());
    assert_eq!(d.deliver_once().await.unwrap().attempts_started, 0, "within the pause");
    tokio::time::sleep(Duration::from_millis(300)).await;
    pressure.set(true);
    assert!(pressure.busy_for().unwrap() >= Duration::from_millis(300), "one spell, not a new one");
    assert_eq!(d.deliver_once().await.unwrap().attempts_started, 1, "past the pause");
    while d.in_flight() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn fan_out_takes_every_event_row_once_across_pages_and_finds_rows_written_behind_it() {
    let env = TestEnv::with(opts()).await;
    let key = env.tenant("acme", "UTC").await;
    register(&env, &key, "https://example.com/hook", Some(vec!["job.cancelled"])).await;
    let inputs: Vec<Value> = (0..400).map(|i| json!({"prompt": format!("p{i}")})).collect();
    let (status, bulk) =
        env.post(&key, "/v1/jobs/bulk", &json!({"model": "flux-schnell", "inputs": inputs, "timezone": "Pacific/Auckland"})).await;
    assert_eq!(status, 201, "{bulk}");
    let ids = bulk_ids(&bulk);
    // One cancel, one statement, one event row: 300 rows over several pages.
    for id in &ids[..300] {
        assert_eq!(env.delete(&key, &format!("/v1/jobs/{id}")).await.0, 200);
    }
    let pages: i64 = sqlx::query_scalar("SELECT count(DISTINCT (ctid::text::point)[0]) FROM webhook_events").fetch_one(&env.pool).await.unwrap();
    assert!(pages > 1, "the rows span {pages} page(s)");

    let (mut block, mut events, mut deliveries) = (0, 0, 0);
    let mut f = offpeak_store::webhooks::fan_out(&env.pool, 150, block).await.unwrap();
    (block, events, deliveries) = (f.next_block, events + f.events, deliveries + f.deliveries);
    assert_eq!((f.rows, f.events), (150, 150));
    assert!(block > 0, "the cursor moved past the first page");
    // Space the fan-out freed on the first pages is reused by new rows.
    sqlx::query("VACUUM webhook_events").execute(&env.pool).await.unwrap();
    for id in &ids[300..] {
        assert_eq!(env.delete(&key, &format!("/v1/jobs/{id}")).await.0, 200);
    }
    let behind: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events WHERE (ctid::text::point)[0] < $1")
        .bind(block as f64)
        .fetch_one(&env.pool)
        .await
        .unwrap();
    assert!(behind > 0, "some new rows were written behind the cursor (page {block})");
    for _ in 0..10 {
        f = offpeak_store::webhooks::fan_out(&env.pool, 100, block).await.unwrap();
        (block, events, deliveries) = (f.next_block, events + f.events, deliveries + f.deliveries);
    }
    assert_eq!((events, deliveries), (400, 400), "every event once, wherever its row was written");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_events").fetch_one(&env.pool).await.unwrap();
    assert_eq!(left, 0);
    let distinct: i64 =
        sqlx::query_scalar("SELECT count(DISTINCT payload->'data'->>'id') FROM webhook_deliveries WHERE event_type = 'job.cancelled'")
            .fetch_one(&env.pool)
            .await
            .unwrap();
    assert_eq!(distinct, 400);
}
