//! Issue #21: the Rust client (`clients/rust`, `offpeak-client`) against the
//! real API: every operation, its retries and idempotency keys, pagination,
//! a group's results as a stream, and webhook signatures checked by the
//! client's own `verify_webhook` on real deliveries.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::{StreamExt, TryStreamExt};
use reqwest::header::{HeaderMap, HeaderValue};
use serde_json::{json, Map, Value};
use uuid::Uuid;

use offpeak_client::{types, Client, Error, JobQuery, PageQuery, RetryPolicy, UsageQuery};
use offpeak_tests::harness::{EnvOptions, TestEnv};
use offpeak_tests::receiver::Receiver;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Noon UTC: a `low` job in UTC is held until 02:00 tomorrow.
fn noon() -> EnvOptions {
    let mut o = EnvOptions { now: at("2027-06-01T12:00:00Z"), ..Default::default() };
    o.api.webhooks_allow_private = true;
    o
}

fn input(prompt: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("prompt".into(), prompt.into());
    m
}

fn api_error(result: Result<impl std::fmt::Debug, Error>) -> offpeak_client::ApiError {
    match result {
        Err(Error::Api(e)) => e,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn jobs_are_submitted_read_listed_page_by_page_and_cancelled() {
    let env = TestEnv::with(noon()).await;
    let client = env.client(&env.tenant("acme", "UTC").await);

    let job = client.submit(types::SubmitRequest::builder().model("flux-schnell").input(input("a lighthouse"))).await.unwrap();
    assert_eq!(job.state, types::JobState::Held);
    assert_eq!(job.release_at, at("2027-06-02T02:00:00Z"), "held until tonight's window");
    assert_eq!(client.job(job.id).await.unwrap().id, job.id);

    // A key of the caller's: the same body again is the same job, another body a 409.
    let request = || types::SubmitRequest::builder().model("flux-dev").input(input("a harbour")).metadata(Some(json!({"sku": 7})));
    let first = client.submit_with_key(request(), "order-1").await.unwrap();
    let again = client.submit_with_key(request(), "order-1").await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.value.id, again.value.id);
    let conflict = client.submit_with_key(types::SubmitRequest::builder().model("flux-dev").input(input("a river")), "order-1").await;
    assert_eq!(api_error(conflict).code, "idempotency_conflict");

    // Bulk, with a key: the same jobs again.
    let inputs: Vec<Map<String, Value>> = (0..25).map(|i| input(&format!("frame {i}"))).collect();
    let bulk = || types::BulkRequest::builder().model("flux-schnell").inputs(inputs.clone());
    let stored = client.submit_bulk_with_key(bulk(), "night-7").await.unwrap();
    let replayed = client.submit_bulk_with_key(bulk(), "night-7").await.unwrap();
    assert!(stored.created && !replayed.created);
    assert_eq!(stored.value.ids, replayed.value.ids);
    assert_eq!(stored.value.ids.len(), 25);
    assert_eq!(env.count_jobs().await, 27);

    // Every job, ten a page, newest first, each once.
    let listed: Vec<types::JobView> = client.jobs(JobQuery { limit: Some(10), ..Default::default() }).try_collect().await.unwrap();
    assert_eq!(listed.len(), 27);
    assert_eq!(listed.iter().map(|j| j.id).collect::<HashSet<_>>().len(), 27);
    assert!(listed.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let dev: Vec<types::JobView> =
        client.jobs(JobQuery { model: Some("flux-dev".into()), ..Default::default() }).try_collect().await.unwrap();
    assert_eq!(dev.iter().map(|j| j.id).collect::<Vec<_>>(), vec![first.value.id]);

    let cancelled = client.cancel(job.id).await.unwrap();
    assert_eq!(cancelled.state, types::JobState::Cancelled);
    let held: Vec<types::JobView> =
        client.jobs(JobQuery { state: Some(types::JobState::Held), ..Default::default() }).try_collect().await.unwrap();
    assert_eq!(held.len(), 26);
    assert_eq!(api_error(client.cancel(job.id).await).status, 409, "a cancelled job cannot be cancelled again");

    // What the document forbids is refused before it is sent.
    let empty_group = "".parse::<types::SubmitRequestGroup>();
    assert!(empty_group.is_err(), "a group name has at least one character");
    let rival = env.client(&env.tenant("rival", "UTC").await);
    assert_eq!(api_error(rival.job(job.id).await).code, "not_found", "another tenant's job does not exist for it");
    assert_eq!(env.count_jobs().await, 27);
}

#[tokio::test]
async fn a_quota_refusal_is_returned_at_once_with_its_retry_after() {
    let env = TestEnv::with(noon()).await;
    let (_, key) = offpeak_store::tenants::create(&env.pool, "frugal", chrono_tz::UTC, Some(10)).await.unwrap();
    let client = env.client(&key);
    let pro = || types::SubmitRequest::builder().model("flux-pro").input(input("a cathedral")).priority(Some(types::Priority::Normal));
    client.submit(pro()).await.unwrap();
    client.submit(pro()).await.unwrap();
    let started = std::time::Instant::now();
    let refused = api_error(client.submit(pro()).await);
    assert_eq!((refused.status, refused.code.as_str()), (429, "quota_exceeded"));
    let wait = refused.retry_after.expect("a Retry-After");
    assert_eq!(wait, Duration::from_secs(12 * 3600), "until midnight UTC, from noon");
    assert!(started.elapsed() < Duration::from_secs(60), "not slept through: {:?}", started.elapsed());
    assert_eq!(refused.details.as_ref().and_then(|d| d["limit"].as_i64()), Some(10));
}

/// A stand-in for the API that answers `503 Retry-After: 1` a number of
/// times and then the real answer it was given, recording each request's
/// `Idempotency-Key`. It tests the client's own retry logic, which the real
/// server does not exercise on demand.
async fn flaky_server(failures: usize, answer: Value) -> (String, Arc<Mutex<Vec<Option<String>>>>) {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let seen = keys.clone();
    let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap| {
        let seen = seen.clone();
        let answer = answer.clone();
        async move {
            let mut keys = seen.lock().unwrap();
            keys.push(headers.get("idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned));
            if keys.len() <= failures {
                let body = json!({"error": {"code": "unavailable", "message": "the database is unreachable"}});
                (axum::http::StatusCode::SERVICE_UNAVAILABLE, [("retry-after", "1")], axum::Json(body))
            } else {
                (axum::http::StatusCode::CREATED, [("x-fake", "1")], axum::Json(answer))
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, keys)
}

#[tokio::test]
async fn a_503_is_retried_after_its_retry_after_under_the_same_idempotency_key() {
    let env = TestEnv::with(noon()).await;
    let real = env.client(&env.tenant("acme", "UTC").await);
    let job = real.submit(types::SubmitRequest::builder().model("flux-schnell").input(input("x"))).await.unwrap();
    let answer = serde_json::to_value(&job).unwrap();

    let (url, keys) = flaky_server(2, answer.clone()).await;
    let client = Client::new(url.clone(), "op_test").unwrap();
    let started = std::time::Instant::now();
    let got = client.submit(types::SubmitRequest::builder().model("flux-schnell").input(input("x"))).await.unwrap();
    assert_eq!(got.id, job.id);
    assert!(started.elapsed() >= Duration::from_secs(2), "waited Retry-After twice: {:?}", started.elapsed());
    let keys = keys.lock().unwrap().clone();
    assert_eq!(keys.len(), 3);
    assert!(keys[0].is_some() && keys.iter().all(|k| *k == keys[0]), "one key for the call and its retries: {keys:?}");

    // Out of attempts: the last 503 is the error.
    let (url, keys) = flaky_server(5, answer).await;
    let policy = RetryPolicy { max_attempts: 2, ..RetryPolicy::default() };
    let client = Client::builder(url, "op_test").retry(policy).build().unwrap();
    let error = api_error(client.job(job.id).await);
    assert_eq!((error.status, error.code.as_str()), (503, "unavailable"));
    assert_eq!(keys.lock().unwrap().len(), 2);
}

fn headers_of(r: &offpeak_tests::receiver::Received) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in
        [("webhook-id", &r.webhook_id), ("webhook-timestamp", &r.webhook_timestamp), ("webhook-signature", &r.webhook_signature)]
    {
        if let Some(v) = value {
            h.insert(name, HeaderValue::from_str(v).unwrap());
        }
    }
    h
}

/// "Submit tonight's thumbnails and get a webhook when the group completes",
/// in its daytime form (`normal` priority, so the group completes now).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_results_stream_and_its_completion_webhook_verifies_with_the_clients_check() {
    let mut env = TestEnv::with(noon()).await;
    let client = env.client(&env.tenant("acme", "UTC").await);
    let receiver = Receiver::start(None).await;
    let events = vec![types::WebhookEventName::GroupCompleted];
    let hook = client
        .create_webhook(types::CreateWebhook::builder().url(receiver.url().parse::<types::CreateWebhookUrl>().unwrap()).events(Some(events)))
        .await
        .unwrap();
    env.start_release_loop();
    env.start_worker();
    env.start_delivery_loop();

    let inputs: Vec<Map<String, Value>> = (0..30).map(|i| input(&format!("thumbnail {i}"))).collect();
    let bulk = client
        .submit_bulk(types::BulkRequest::builder().model("flux-schnell").inputs(inputs).priority(Some(types::Priority::Normal)))
        .await
        .unwrap();
    let delivered = receiver.wait_for(1, Duration::from_secs(60)).await.expect("group.completed arrives");
    let delivery = &delivered[0];
    // Signed at the environment's (manual) time, checked as of then; as of
    // the real day, a year before, it is out of tolerance.
    let now = env.shared_clock().now();
    let event =
        offpeak_client::verify_webhook_at(&hook.secret, &headers_of(delivery), &delivery.raw_body, now).expect("a valid signature");
    assert_eq!(event["type"], "group.completed");
    assert_eq!(event["data"]["id"], bulk.group_id.to_string());
    let mut tampered = delivery.raw_body.clone();
    tampered.push(b' ');
    assert_eq!(
        offpeak_client::verify_webhook_at(&hook.secret, &headers_of(delivery), &tampered, now),
        Err(offpeak_client::WebhookError::NoMatchingSignature)
    );
    assert_eq!(
        offpeak_client::verify_webhook(&hook.secret, &headers_of(delivery), &delivery.raw_body),
        Err(offpeak_client::WebhookError::TimestampOutOfTolerance)
    );

    let group = client.group(bulk.group_id).await.unwrap();
    assert_eq!((group.counts.total, group.counts.succeeded), (30, 30));
    assert!(group.completed_at.is_some());
    let lines: Vec<types::ResultLine> = client.group_results(bulk.group_id).await.unwrap().try_collect().await.unwrap();
    assert_eq!(lines.iter().map(|l| l.id).collect::<Vec<_>>(), bulk.ids, "every job, in id (= input) order");
    assert!(lines.iter().all(|l| l.state == types::JobState::Succeeded && l.result.is_some()));

    let deliveries = client.webhook_deliveries(hook.id, &PageQuery::default()).await.unwrap();
    assert_eq!(deliveries.deliveries.len(), 1);
    let replay = client.replay_webhook_delivery(hook.id, deliveries.deliveries[0].id).await.unwrap();
    assert_eq!(replay.event_id, deliveries.deliveries[0].event_id);
    let usage = client.usage(&UsageQuery { start: Some("2027-06-01".into()), end: Some("2027-06-02".into()), ..Default::default() }).await.unwrap();
    assert_eq!(usage.groups["flux-schnell"].requests, 30);
    assert!(client.group_results(Uuid::now_v7()).await.is_err(), "an unknown group is a 404");
}

#[tokio::test]
async fn schedules_webhooks_windows_tenant_and_probes_round_trip() {
    let env = TestEnv::with(noon()).await;
    let client = env.client(&env.tenant("acme", "Europe/Berlin").await);

    let template = types::JobTemplateRequest::builder().model("flux-dev").input(input("nightly render"));
    let schedule = client
        .create_schedule(types::CreateScheduleRequest::builder().name("nightly".parse::<types::CreateScheduleRequestName>().unwrap()).cron("0 0 1 * * *").job(template))
        .await
        .unwrap();
    assert_eq!(schedule.timezone, "Europe/Berlin", "the tenant's timezone by default");
    assert!(!schedule.next_fire_times.is_empty());
    let paused = client.update_schedule(schedule.id, types::PatchScheduleRequest::builder().paused(Some(true))).await.unwrap();
    assert!(paused.paused);
    assert!(client.schedule(schedule.id).await.unwrap().paused);
    let listed = client.list_schedules(&PageQuery::default()).await.unwrap();
    assert_eq!(listed.schedules.iter().map(|s| s.id).collect::<Vec<_>>(), vec![schedule.id]);
    client.delete_schedule(schedule.id).await.unwrap();
    assert_eq!(api_error(client.schedule(schedule.id).await).code, "not_found");

    let hook = client
        .create_webhook(types::CreateWebhook::builder().url("https://hooks.example.com/offpeak".parse::<types::CreateWebhookUrl>().unwrap()))
        .await
        .unwrap();
    assert!(hook.secret.starts_with("whsec_"));
    let updated = client.update_webhook(hook.id, types::UpdateWebhook::builder().enabled(Some(false))).await.unwrap();
    assert!(!updated.enabled);
    let rotated = client.rotate_webhook_secret(hook.id).await.unwrap();
    assert_ne!(rotated.secret, hook.secret);
    assert_eq!(client.list_webhooks().await.unwrap().webhooks.len(), 1);
    assert_eq!(client.webhook(hook.id).await.unwrap().id, hook.id);
    client.delete_webhook(hook.id).await.unwrap();
    assert!(client.list_webhooks().await.unwrap().webhooks.is_empty());

    let window = client.next_window(Some("Asia/Kolkata"), Some(at("2027-06-01T12:00:00Z"))).await.unwrap();
    assert_eq!(window.opens_at, at("2027-06-01T20:30:00Z"), "02:00 in Kolkata");
    let tenant = client.tenant().await.unwrap();
    assert_eq!(tenant.name, "acme");
    client.healthz().await.unwrap();
    client.readyz().await.unwrap();
    let unauthorised = Client::new(env.url(""), "op_nobody").unwrap();
    assert_eq!(api_error(unauthorised.tenant().await).status, 401);
    // A stream of an empty listing ends at once.
    assert_eq!(client.jobs(JobQuery::default()).count().await, 0);
}
