//! Webhook signatures, checked as the Standard Webhooks specification says
//! (<https://www.standardwebhooks.com>): the payload is signed by HMAC-SHA256
//! over `{webhook-id}.{webhook-timestamp}.{body}` with the endpoint's secret
//! (`whsec_` and the base64 key), and `webhook-signature` carries one or more
//! space-separated `v1,<base64 signature>` (several while a rotated secret's
//! old one still signs).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use reqwest::header::HeaderMap;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// How far a delivery's `webhook-timestamp` may be from now, either way:
/// an older one may be a replay of a captured delivery.
pub const WEBHOOK_TOLERANCE: Duration = Duration::from_secs(5 * 60);

/// Why a delivery is not to be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the `{0}` header is missing or not text")]
    MissingHeader(&'static str),
    #[error("the secret is not `whsec_` followed by base64")]
    InvalidSecret,
    #[error("`webhook-timestamp` is not a Unix time in seconds")]
    InvalidTimestamp,
    #[error("`webhook-timestamp` is more than five minutes from now (a replay, or a clock far off)")]
    TimestampOutOfTolerance,
    #[error("no signature in `webhook-signature` matches the payload")]
    NoMatchingSignature,
    #[error("the payload is not JSON: {0}")]
    InvalidPayload(String),
}

/// Checks a delivery and returns its event (`{"type", "timestamp", "data"}`).
///
/// # Errors
/// A [`WebhookError`] saying what did not hold; never a partial result.
pub fn verify_webhook(secret: &str, headers: &HeaderMap, body: &[u8]) -> Result<serde_json::Value, WebhookError> {
    verify_webhook_at(secret, headers, body, Utc::now())
}

/// [`verify_webhook`] as of `now`.
///
/// # Errors
/// See [`verify_webhook`].
pub fn verify_webhook_at(secret: &str, headers: &HeaderMap, body: &[u8], now: DateTime<Utc>) -> Result<serde_json::Value, WebhookError> {
    let header = |name: &'static str| headers.get(name).and_then(|v| v.to_str().ok()).ok_or(WebhookError::MissingHeader(name));
    let id = header("webhook-id")?;
    let timestamp = header("webhook-timestamp")?;
    let signatures = header("webhook-signature")?;
    let key = STANDARD.decode(secret.strip_prefix("whsec_").unwrap_or(secret)).map_err(|_| WebhookError::InvalidSecret)?;
    let sent: i64 = timestamp.trim().parse().map_err(|_| WebhookError::InvalidTimestamp)?;
    let tolerance = WEBHOOK_TOLERANCE.as_secs() as i64;
    if (now.timestamp() - sent).abs() > tolerance {
        return Err(WebhookError::TimestampOutOfTolerance);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| WebhookError::InvalidSecret)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected = mac.finalize().into_bytes();
    let matches = signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .any(|given| bool::from(given.as_slice().ct_eq(expected.as_slice())));
    if !matches {
        return Err(WebhookError::NoMatchingSignature);
    }
    serde_json::from_slice(body).map_err(|e| WebhookError::InvalidPayload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    // The example of the Standard Webhooks specification's reference
    // libraries (a fixed secret, id, timestamp and payload, and the
    // signature they compute), so this is checked against the spec rather
    // than against itself.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TIMESTAMP: i64 = 1614265330;
    const PAYLOAD: &str = r#"{"test": 2432232314}"#;
    const SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers(signature: &str, timestamp: i64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("webhook-id", HeaderValue::from_static(ID));
        h.insert("webhook-timestamp", HeaderValue::from_str(&timestamp.to_string()).unwrap());
        h.insert("webhook-signature", HeaderValue::from_str(signature).unwrap());
        h
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn the_specifications_example_verifies() {
        let event = verify_webhook_at(SECRET, &headers(SIGNATURE, TIMESTAMP), PAYLOAD.as_bytes(), at(TIMESTAMP)).unwrap();
        assert_eq!(event["test"], 2432232314_i64);
        // One of several signatures (a rotation) is enough.
        let several = format!("v1,bm90IGl0 {SIGNATURE}");
        assert!(verify_webhook_at(SECRET, &headers(&several, TIMESTAMP), PAYLOAD.as_bytes(), at(TIMESTAMP + 299)).is_ok());
    }

    #[test]
    fn anything_altered_is_refused() {
        let h = headers(SIGNATURE, TIMESTAMP);
        let now = at(TIMESTAMP);
        assert_eq!(verify_webhook_at(SECRET, &h, br#"{"test": 2432232315}"#, now), Err(WebhookError::NoMatchingSignature));
        assert_eq!(
            verify_webhook_at("whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &h, PAYLOAD.as_bytes(), now),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            verify_webhook_at(SECRET, &headers(SIGNATURE, TIMESTAMP + 1), PAYLOAD.as_bytes(), at(TIMESTAMP + 1)),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(verify_webhook_at(SECRET, &h, PAYLOAD.as_bytes(), at(TIMESTAMP + 301)), Err(WebhookError::TimestampOutOfTolerance));
        assert_eq!(verify_webhook_at(SECRET, &h, PAYLOAD.as_bytes(), at(TIMESTAMP - 301)), Err(WebhookError::TimestampOutOfTolerance));
        assert_eq!(
            verify_webhook_at(SECRET, &headers("v2,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", TIMESTAMP), PAYLOAD.as_bytes(), now),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(verify_webhook_at("whsec_not base64!", &h, PAYLOAD.as_bytes(), now), Err(WebhookError::InvalidSecret));
        assert_eq!(verify_webhook_at(SECRET, &HeaderMap::new(), PAYLOAD.as_bytes(), now), Err(WebhookError::MissingHeader("webhook-id")));
    }
}
