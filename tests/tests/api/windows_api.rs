//! docs/spec.md, "The off-peak window": `GET /v1/windows/next?timezone=&at=`
//! answers when a low-priority job submitted at `at` would run, exactly, on
//! every daylight-saving case the spec names.
//!
//! The window is the set of instants whose local wall-clock time lies in
//! `[02:00, 06:00)`. Every expected instant below is worked out by hand in
//! its comment (and was checked against a minute-by-minute scan of the tz
//! database).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use offpeak_tests::harness::{EnvOptions, TestEnv};

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// Percent-encodes the few characters an RFC 3339 instant or a zone name
/// may hold that mean something else in a query string.
fn q(s: &str) -> String {
    s.replace('%', "%25").replace('+', "%2B").replace('&', "%26").replace(' ', "%20")
}

/// The window for a job submitted at `at_` in `tz`; panics unless 200.
async fn next(env: &TestEnv, key: &str, tz: &str, at_: &str) -> Value {
    let (status, body) = env.get(key, &format!("/v1/windows/next?timezone={}&at={}", q(tz), q(at_))).await;
    assert_eq!(status, 200, "{tz} at {at_}: {body}");
    body
}

/// Checks `opens_at`, `closes_at` and the duration of a window answer.
#[track_caller]
fn assert_window(w: &Value, opens_at: &str, closes_at: &str, duration: chrono::TimeDelta) {
    assert_eq!(w["opens_at"], opens_at, "opens_at of {w}");
    assert_eq!(w["closes_at"], closes_at, "closes_at of {w}");
    assert_eq!(w["duration_seconds"], duration.num_seconds(), "duration of {w}");
}

fn hours(h: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::hours(h)
}

fn minutes(m: i64) -> chrono::TimeDelta {
    chrono::TimeDelta::minutes(m)
}

async fn env_and_key() -> (TestEnv, String) {
    let env = TestEnv::with(EnvOptions { now: at("2027-01-01T00:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    (env, key)
}

#[tokio::test]
async fn the_answer_has_every_field_the_api_documents() {
    let (env, key) = env_and_key().await;
    let w = next(&env, &key, "Europe/Berlin", "2027-06-01T12:00:00Z").await;
    // 12:00Z is 14:00 CEST (UTC+2); the next 02:00 CEST is 2027-06-02T00:00Z.
    assert_eq!(
        w,
        json!({
            "timezone": "Europe/Berlin",
            "at": "2027-06-01T12:00:00Z",
            "window": "02:00-06:00",
            "opens_at": "2027-06-02T00:00:00Z",
            "closes_at": "2027-06-02T04:00:00Z",
            "duration_seconds": 14_400,
            "open_now": false,
        })
    );
}

// ------------------------------------------------------------ America/New_York

#[tokio::test]
async fn new_york_spring_forward_opens_at_03_00_edt_and_lasts_3_hours() {
    let (env, key) = env_and_key().await;
    // 2027-03-13T17:00Z is noon EST (UTC-5) the day before. On 2027-03-14
    // the clock jumps 01:59:59 EST -> 03:00 EDT at 07:00Z: no instant reads
    // 02:xx, so the first one in the window is the jump itself, 03:00 EDT =
    // 07:00Z. It closes at 06:00 EDT (UTC-4) = 10:00Z: 3 hours.
    let w = next(&env, &key, "America/New_York", "2027-03-13T17:00:00Z").await;
    assert_window(&w, "2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z", hours(3));
    assert_eq!(w["open_now"], false);
    // Same answer from 01:59:59 EST, the last second before the jump.
    let w = next(&env, &key, "America/New_York", "2027-03-14T06:59:59Z").await;
    assert_window(&w, "2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z", hours(3));
}

#[tokio::test]
async fn new_york_fall_back_repeats_01_00_outside_the_window_which_stays_4_hours() {
    let (env, key) = env_and_key().await;
    // On 2027-11-07 the clock goes 01:59:59 EDT -> 01:00 EST at 06:00Z. The
    // repeated hour is 01:xx, before the window. 02:00 EST (UTC-5) = 07:00Z,
    // 06:00 EST = 11:00Z.
    let w = next(&env, &key, "America/New_York", "2027-11-06T17:00:00Z").await;
    assert_window(&w, "2027-11-07T07:00:00Z", "2027-11-07T11:00:00Z", hours(4));
    // From 01:30 EDT (05:30Z), the first pass through 01:xx: still 07:00Z.
    let w = next(&env, &key, "America/New_York", "2027-11-07T05:30:00Z").await;
    assert_window(&w, "2027-11-07T07:00:00Z", "2027-11-07T11:00:00Z", hours(4));
}

#[tokio::test]
async fn new_york_plain_summer_day() {
    let (env, key) = env_and_key().await;
    // 16:00Z is noon EDT (UTC-4); 02:00 EDT next day = 06:00Z, 06:00 EDT = 10:00Z.
    let w = next(&env, &key, "America/New_York", "2027-06-01T16:00:00Z").await;
    assert_window(&w, "2027-06-02T06:00:00Z", "2027-06-02T10:00:00Z", hours(4));
}

#[tokio::test]
async fn an_at_with_an_offset_is_the_same_instant() {
    let (env, key) = env_and_key().await;
    // Noon EST written with its offset is 17:00Z: the spring-forward answer.
    let w = next(&env, &key, "America/New_York", "2027-03-13T12:00:00-05:00").await;
    assert_eq!(w["at"], "2027-03-13T17:00:00Z", "`at` is echoed in UTC");
    assert_window(&w, "2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z", hours(3));
    let w = next(&env, &key, "America/New_York", "2027-03-14T02:00:00+05:00").await;
    assert_eq!(w["at"], "2027-03-13T21:00:00Z");
    assert_window(&w, "2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z", hours(3));
}

// ------------------------------------------------------------ Europe/Berlin

#[tokio::test]
async fn berlin_fall_back_covers_both_02_00_hours_and_lasts_5_hours() {
    let (env, key) = env_and_key().await;
    // 2027-10-30T12:00Z is 14:00 CEST. On 2027-10-31: 02:00 CEST (UTC+2) =
    // 00:00Z; at 01:00Z (03:00 CEST) the clock returns to 02:00 CET, so
    // 02:00-02:59 happens twice and both are in the window; it closes at
    // 06:00 CET (UTC+1) = 05:00Z. 5 hours.
    let w = next(&env, &key, "Europe/Berlin", "2027-10-30T12:00:00Z").await;
    assert_window(&w, "2027-10-31T00:00:00Z", "2027-10-31T05:00:00Z", hours(5));
    assert_eq!(w["open_now"], false);
}

#[tokio::test]
async fn berlin_inside_either_02_00_hour_is_open_now_until_06_00_cet() {
    let (env, key) = env_and_key().await;
    // 00:30Z = 02:30 CEST (first pass), 01:30Z = 02:30 CET (second pass):
    // both inside, so the window is open from `at` to 05:00Z.
    for (inside, secs) in [("2027-10-31T00:30:00Z", 4 * 3600 + 1800), ("2027-10-31T01:30:00Z", 3 * 3600 + 1800)] {
        let w = next(&env, &key, "Europe/Berlin", inside).await;
        assert_eq!(w["opens_at"], inside, "inside the window it opens at `at`");
        assert_eq!(w["closes_at"], "2027-10-31T05:00:00Z");
        assert_eq!(w["duration_seconds"], secs);
        assert_eq!(w["open_now"], true);
    }
}

#[tokio::test]
async fn berlin_spring_forward_opens_at_03_00_cest_and_lasts_3_hours() {
    let (env, key) = env_and_key().await;
    // 2027-03-28: 02:00 CET -> 03:00 CEST at 01:00Z. The window opens at the
    // jump (03:00 CEST = 01:00Z) and closes at 06:00 CEST = 04:00Z.
    let w = next(&env, &key, "Europe/Berlin", "2027-03-27T12:00:00Z").await;
    assert_window(&w, "2027-03-28T01:00:00Z", "2027-03-28T04:00:00Z", hours(3));
}

#[tokio::test]
async fn exactly_06_00_local_belongs_to_the_next_days_window() {
    let (env, key) = env_and_key().await;
    // 05:00Z on 2027-10-31 is 06:00 CET: the window's exclusive end. The next
    // one is 02:00 CET on 2027-11-01 = 01:00Z, to 06:00 CET = 05:00Z.
    let w = next(&env, &key, "Europe/Berlin", "2027-10-31T05:00:00Z").await;
    assert_window(&w, "2027-11-01T01:00:00Z", "2027-11-01T05:00:00Z", hours(4));
    assert_eq!(w["open_now"], false);
    // One second earlier is still inside, with one second left.
    let w = next(&env, &key, "Europe/Berlin", "2027-10-31T04:59:59Z").await;
    assert_window(&w, "2027-10-31T04:59:59Z", "2027-10-31T05:00:00Z", chrono::TimeDelta::seconds(1));
    assert_eq!(w["open_now"], true);
}

#[tokio::test]
async fn exactly_02_00_local_is_open_now() {
    let (env, key) = env_and_key().await;
    // 02:00 CEST on 2027-06-02 = 00:00Z.
    let w = next(&env, &key, "Europe/Berlin", "2027-06-02T00:00:00Z").await;
    assert_window(&w, "2027-06-02T00:00:00Z", "2027-06-02T04:00:00Z", hours(4));
    assert_eq!(w["open_now"], true);
    // A nanosecond-precise `at` just before: not open, opens at 00:00Z.
    let w = next(&env, &key, "Europe/Berlin", "2027-06-01T23:59:59.999Z").await;
    assert_eq!(w["opens_at"], "2027-06-02T00:00:00Z");
    assert_eq!(w["open_now"], false);
}

// ------------------------------------------------------------ Asia/Kolkata (UTC+5:30, no DST)

#[tokio::test]
async fn kolkata_half_hour_offset() {
    let (env, key) = env_and_key().await;
    // 12:00Z = 17:30 IST. 02:00 IST on the 16th = 20:30Z on the 15th;
    // 06:00 IST = 00:30Z.
    let w = next(&env, &key, "Asia/Kolkata", "2027-01-15T12:00:00Z").await;
    assert_window(&w, "2027-01-15T20:30:00Z", "2027-01-16T00:30:00Z", hours(4));
    // 22:00Z = 03:30 IST: inside, open until 00:30Z.
    let w = next(&env, &key, "Asia/Kolkata", "2027-01-15T22:00:00Z").await;
    assert_window(&w, "2027-01-15T22:00:00Z", "2027-01-16T00:30:00Z", hours(2) + minutes(30));
    assert_eq!(w["open_now"], true);
    // 00:30Z = 06:00 IST exactly: the next night's window.
    let w = next(&env, &key, "Asia/Kolkata", "2027-01-16T00:30:00Z").await;
    assert_window(&w, "2027-01-16T20:30:00Z", "2027-01-17T00:30:00Z", hours(4));
    assert_eq!(w["open_now"], false);
}

// ------------------------------------------------------------ Australia/Lord_Howe (+10:30 / +11, a 30-minute shift)

#[tokio::test]
async fn lord_howe_plain_summer_and_winter_days() {
    let (env, key) = env_and_key().await;
    // January, LHDT (UTC+11): 02:00 on the 16th = 15:00Z on the 15th; 06:00 = 19:00Z.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-01-15T00:00:00Z").await;
    assert_window(&w, "2027-01-15T15:00:00Z", "2027-01-15T19:00:00Z", hours(4));
    // June, LHST (UTC+10:30): 02:00 on the 2nd = 15:30Z on the 1st; 06:00 = 19:30Z.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-06-01T00:00:00Z").await;
    assert_window(&w, "2027-06-01T15:30:00Z", "2027-06-01T19:30:00Z", hours(4));
}

#[tokio::test]
async fn lord_howe_dst_start_skips_02_00_to_02_29_and_the_window_is_3_and_a_half_hours() {
    let (env, key) = env_and_key().await;
    // First Sunday of October 2027 is the 3rd. At 02:00 LHST (UTC+10:30) =
    // 15:30Z on the 2nd the clock jumps to 02:30 LHDT (UTC+11). 01:59:59
    // LHST is outside; the jump instant reads 02:30, inside. So the window
    // opens at 15:30Z and closes at 06:00 LHDT = 19:00Z: 3 h 30 min.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-10-02T12:00:00Z").await;
    assert_window(&w, "2027-10-02T15:30:00Z", "2027-10-02T19:00:00Z", hours(3) + minutes(30));
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-10-02T15:29:59Z").await;
    assert_window(&w, "2027-10-02T15:30:00Z", "2027-10-02T19:00:00Z", hours(3) + minutes(30));
    assert_eq!(w["open_now"], false);
}

#[tokio::test]
async fn lord_howe_dst_end_repeats_01_30_to_01_59_before_the_window_which_stays_4_hours() {
    let (env, key) = env_and_key().await;
    // First Sunday of April 2027 is the 4th. At 02:00 LHDT (UTC+11) = 15:00Z
    // on the 3rd the clock goes back to 01:30 LHST (UTC+10:30), so 02:00
    // LHDT is never shown: the first 02:00 is 02:00 LHST = 15:30Z. It closes
    // at 06:00 LHST = 19:30Z. 4 hours.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-04-03T12:00:00Z").await;
    assert_window(&w, "2027-04-03T15:30:00Z", "2027-04-03T19:30:00Z", hours(4));
    // 14:59:59Z is 01:59:59 LHDT, the last second before the change; a
    // window that believed 15:00Z were 02:00 would open there. It does not.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-04-03T14:59:59Z").await;
    assert_window(&w, "2027-04-03T15:30:00Z", "2027-04-03T19:30:00Z", hours(4));
    assert_eq!(w["open_now"], false);
    // 15:15Z is 01:45 LHST, in the repeated half hour: still waiting.
    let w = next(&env, &key, "Australia/Lord_Howe", "2027-04-03T15:15:00Z").await;
    assert_window(&w, "2027-04-03T15:30:00Z", "2027-04-03T19:30:00Z", hours(4));
}

// ------------------------------------------------------------ Pacific/Chatham (+12:45 / +13:45, changes at 02:45 standard)

#[tokio::test]
async fn chatham_plain_summer_and_winter_days() {
    let (env, key) = env_and_key().await;
    // January, CHADT (UTC+13:45): 12:00Z is 01:45 on the 16th; 02:00 =
    // 12:15Z, 06:00 = 16:15Z.
    let w = next(&env, &key, "Pacific/Chatham", "2027-01-15T12:00:00Z").await;
    assert_window(&w, "2027-01-15T12:15:00Z", "2027-01-15T16:15:00Z", hours(4));
    // June, CHAST (UTC+12:45): 02:00 on the 2nd = 13:15Z on the 1st; 06:00 = 17:15Z.
    let w = next(&env, &key, "Pacific/Chatham", "2027-06-01T00:00:00Z").await;
    assert_window(&w, "2027-06-01T13:15:00Z", "2027-06-01T17:15:00Z", hours(4));
}

#[tokio::test]
async fn chatham_dst_start_at_02_45_cuts_an_hour_out_of_the_window() {
    let (env, key) = env_and_key().await;
    // Last Sunday of September 2027 is the 26th. 02:00 CHAST (UTC+12:45) =
    // 13:15Z on the 25th, inside; at 02:45 CHAST = 14:00Z the clock jumps to
    // 03:45 CHADT (UTC+13:45), still inside; 06:00 CHADT = 16:15Z. 3 hours.
    let w = next(&env, &key, "Pacific/Chatham", "2027-09-25T12:00:00Z").await;
    assert_window(&w, "2027-09-25T13:15:00Z", "2027-09-25T16:15:00Z", hours(3));
    // Across the jump the window stays open: 13:59:59Z is 02:44:59 CHAST,
    // 14:00Z is 03:45 CHADT.
    let w = next(&env, &key, "Pacific/Chatham", "2027-09-25T13:59:59Z").await;
    assert_window(&w, "2027-09-25T13:59:59Z", "2027-09-25T16:15:00Z", hours(2) + minutes(15) + chrono::TimeDelta::seconds(1));
    assert_eq!(w["open_now"], true);
}

#[tokio::test]
async fn chatham_dst_end_at_03_45_repeats_an_hour_inside_the_window_which_lasts_5_hours() {
    let (env, key) = env_and_key().await;
    // First Sunday of April 2027 is the 4th. 02:00 CHADT (UTC+13:45) =
    // 12:15Z on the 3rd; at 03:45 CHADT = 14:00Z the clock returns to 02:45
    // CHAST (UTC+12:45), so 02:45-03:44 happens twice, all inside; 06:00
    // CHAST = 17:15Z. 5 hours.
    let w = next(&env, &key, "Pacific/Chatham", "2027-04-03T11:00:00Z").await;
    assert_window(&w, "2027-04-03T12:15:00Z", "2027-04-03T17:15:00Z", hours(5));
    // 14:30Z is 03:15 CHAST, the second pass: open until 17:15Z.
    let w = next(&env, &key, "Pacific/Chatham", "2027-04-03T14:30:00Z").await;
    assert_window(&w, "2027-04-03T14:30:00Z", "2027-04-03T17:15:00Z", hours(2) + minutes(45));
    assert_eq!(w["open_now"], true);
}

// ------------------------------------------------------------ defaults

#[tokio::test]
async fn without_timezone_the_tenants_timezone_is_used() {
    let env = TestEnv::with(EnvOptions { now: at("2027-01-01T00:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("nyc", "America/New_York").await;
    let (status, w) = env.get(&key, "/v1/windows/next?at=2027-03-13T17:00:00Z").await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["timezone"], "America/New_York");
    assert_window(&w, "2027-03-14T07:00:00Z", "2027-03-14T10:00:00Z", hours(3));
}

#[tokio::test]
async fn without_at_the_injected_clock_is_used() {
    let env = TestEnv::with(EnvOptions { now: at("2027-10-30T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("berlin", "Europe/Berlin").await;
    let (status, w) = env.get(&key, "/v1/windows/next").await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["at"], "2027-10-30T12:00:00Z", "the clock's instant, not the machine's");
    assert_eq!(w["timezone"], "Europe/Berlin");
    assert_window(&w, "2027-10-31T00:00:00Z", "2027-10-31T05:00:00Z", hours(5));

    // Moving the clock into the window: open now.
    env.clock.set(at("2027-10-31T01:15:00Z"));
    let (_, w) = env.get(&key, "/v1/windows/next?timezone=Europe/Berlin").await;
    assert_eq!(w["at"], "2027-10-31T01:15:00Z");
    assert_eq!(w["opens_at"], "2027-10-31T01:15:00Z");
    assert_eq!(w["open_now"], true);
}

#[tokio::test]
async fn the_preview_agrees_with_the_release_at_of_a_submitted_job() {
    // The preview is what a low-priority job gets.
    let env = TestEnv::with(EnvOptions { now: at("2027-09-25T12:00:00Z"), ..Default::default() }).await;
    let key = env.tenant("acme", "UTC").await;
    for tz in ["Pacific/Chatham", "Australia/Lord_Howe", "America/New_York", "Asia/Kolkata", "Europe/Berlin"] {
        let (status, preview) = env.get(&key, &format!("/v1/windows/next?timezone={tz}")).await;
        assert_eq!(status, 200, "{preview}");
        let (status, job) = env.post(&key, "/v1/jobs", &json!({"model": "flux-dev", "input": {}, "timezone": tz})).await;
        assert_eq!(status, 201, "{job}");
        assert_eq!(job["release_at"], preview["opens_at"], "{tz}");
        assert_eq!(job["window_closes_at"], preview["closes_at"], "{tz}");
    }
}

// ------------------------------------------------------------ errors

#[tokio::test]
async fn an_unknown_timezone_is_a_422_invalid_timezone() {
    let (env, key) = env_and_key().await;
    let (status, body) = env.get(&key, "/v1/windows/next?timezone=Mars/Olympus&at=2027-01-01T00:00:00Z").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        body,
        json!({"error": {"code": "invalid_timezone", "message": "unknown IANA timezone 'Mars/Olympus'", "field": "timezone"}})
    );
    let (status, body) = env.get(&key, "/v1/windows/next?timezone=").await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("invalid_timezone")), "{body}");
}

#[tokio::test]
async fn an_at_that_is_not_rfc3339_is_a_400_naming_at() {
    let (env, key) = env_and_key().await;
    for bad in ["yesterday", "2027-03-14", "2027-03-14T02:00:00", "1789000000", "2027-02-30T02:00:00Z"] {
        let (status, body) = env.get(&key, &format!("/v1/windows/next?timezone=UTC&at={bad}")).await;
        assert_eq!(status, 400, "at={bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_query", "{body}");
        assert_eq!(body["error"]["field"], "at", "{body}");
        let msg = body["error"]["message"].as_str().unwrap();
        assert!(msg.contains("RFC 3339"), "the message says what is expected: {msg}");
    }
}

#[tokio::test]
async fn an_unknown_query_parameter_is_a_400() {
    let (env, key) = env_and_key().await;
    let (status, body) = env.get(&key, "/v1/windows/next?timezone=UTC&tz=Europe/Berlin").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_query");
    assert!(body["error"]["message"].as_str().unwrap().contains("tz"), "{body}");
}

#[tokio::test]
async fn the_preview_needs_a_key() {
    let (env, _key) = env_and_key().await;
    let resp = env.http.get(env.url("/v1/windows/next?timezone=UTC")).send().await.unwrap();
    let (status, body) = TestEnv::read(resp).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized");
    let (status, body) = env.get("op_not-a-key", "/v1/windows/next?timezone=UTC").await;
    assert_eq!((status, body["error"]["code"].as_str()), (401, Some("unauthorized")));
}

#[tokio::test]
async fn extreme_instants_are_answered_not_crashed_on() {
    let (env, key) = env_and_key().await;
    // The far ends of what RFC 3339 can write; a panic here would drop the
    // connection instead of answering.
    // A leap second too, which chrono represents as the 59th second's
    // second billion nanoseconds.
    for edge in [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:59:59-23:59",
        "0000-01-01T00:00:00Z",
        "0000-01-01T00:00:00+23:59",
        "2016-12-31T23:59:60Z",
        "2027-06-01T03:59:60+02:00",
    ] {
        for tz in ["Pacific/Chatham", "America/New_York", "UTC"] {
            let resp = env
                .http
                .get(env.url(&format!("/v1/windows/next?timezone={tz}&at={}", q(edge))))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{tz} at {edge}: no answer ({e})"));
            let (status, body) = TestEnv::read(resp).await;
            assert!(status == 200 || status == 400 || status == 422, "{tz} at {edge}: {status} {body}");
            if status == 200 {
                let opens: DateTime<Utc> = serde_json::from_value(body["opens_at"].clone()).unwrap();
                let closes: DateTime<Utc> = serde_json::from_value(body["closes_at"].clone()).unwrap();
                assert!(opens < closes, "{tz} at {edge}: {body}");
            }
        }
    }
}
