//! Webhooks, the domain without the I/O: which events a tenant can subscribe
//! to ([`EventType`]), the signing secrets and signatures of the
//! [Standard Webhooks](https://www.standardwebhooks.com) specification
//! ([`Secret`], [`sign`], [`signature_header`], [`verify`]), when a failed
//! delivery is tried again ([`RETRY_SCHEDULE`], [`retry_delay`]) and where
//! offpeak may deliver at all ([`is_public_ip`], [`check_url`]).
//!
//! Why here: the API checks a URL when an endpoint is registered, the
//! delivery loop checks it again (and every address its name resolves to)
//! before each attempt, and the tests and the demo receiver verify what was
//! sent. One copy of each rule keeps the three from drifting apart, and none
//! of it needs a socket, so it lives in core; the guarded HTTP sender is the
//! scheduler's (`webhooks::http`).
//!
//! # Signatures
//!
//! A delivery carries three headers: `webhook-id` (the message id, the same
//! on every attempt of one message), `webhook-timestamp` (Unix seconds of
//! the attempt) and `webhook-signature`, a space-separated list of
//! `v1,<base64 HMAC-SHA256>` over `"{id}.{timestamp}.{body}"`, one per key:
//! while a secret is being rotated the old key still signs, so receivers
//! that have not switched yet keep verifying.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::time::Duration;

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::job::UnknownValue;

// ---------------------------------------------------------------------------
// Event types
// ---------------------------------------------------------------------------

/// What a webhook endpoint can subscribe to: a job reaching a terminal state,
/// or every job of a group having done so.
///
/// Written (in JSON, the database and the `type` of a payload) as the
/// dotted names of [`EventType::as_str`], as the Standard Webhooks
/// specification recommends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    /// `job.succeeded`
    #[serde(rename = "job.succeeded")]
    JobSucceeded,
    /// `job.failed`: a permanent error from the provider.
    #[serde(rename = "job.failed")]
    JobFailed,
    /// `job.dead`: out of attempts on transient errors.
    #[serde(rename = "job.dead")]
    JobDead,
    /// `job.cancelled`
    #[serde(rename = "job.cancelled")]
    JobCancelled,
    /// `group.completed`: every job of a group is in a terminal state.
    #[serde(rename = "group.completed")]
    GroupCompleted,
}

impl EventType {
    /// Every event type, in the order the API documents them.
    pub const ALL: [EventType; 5] = [
        EventType::JobSucceeded,
        EventType::JobFailed,
        EventType::JobDead,
        EventType::JobCancelled,
        EventType::GroupCompleted,
    ];

    /// The event type's name, e.g. `job.succeeded`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::JobSucceeded => "job.succeeded",
            EventType::JobFailed => "job.failed",
            EventType::JobDead => "job.dead",
            EventType::JobCancelled => "job.cancelled",
            EventType::GroupCompleted => "group.completed",
        }
    }

    /// The event a job's terminal state raises (`"succeeded"` →
    /// `job.succeeded`, and `failed`, `dead`, `cancelled` likewise); `None`
    /// for a state that raises none (`held`, `queued`, `running`, or an
    /// unknown one).
    pub fn for_job_state(state: &str) -> Option<EventType> {
        match state {
            "succeeded" => Some(EventType::JobSucceeded),
            "failed" => Some(EventType::JobFailed),
            "dead" => Some(EventType::JobDead),
            "cancelled" => Some(EventType::JobCancelled),
            _ => None,
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EventType {
    type Err = UnknownValue;
    /// Parses an event type's name; the error names the value and lists the
    /// known ones ("unknown event type 'job.done', expected one of: ...").
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| UnknownValue {
                what: "event type",
                value: s.to_owned(),
                expected: EventType::ALL.map(|e| e.as_str()).join(", "),
            })
    }
}

/// Rows store event types as text; the store converts them here, once.
impl TryFrom<String> for EventType {
    type Error = UnknownValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

// ---------------------------------------------------------------------------
// Secrets
// ---------------------------------------------------------------------------

/// The prefix of a serialised signing secret, so a secret is recognisable as
/// one (Standard Webhooks: "base64 encoded, prefixed with `whsec_`").
pub const SECRET_PREFIX: &str = "whsec_";

/// The shortest key [`Secret::parse`] accepts, in bytes (the specification's
/// lower bound, 192 bits).
pub const MIN_SECRET_BYTES: usize = 24;

/// The longest key [`Secret::parse`] accepts, in bytes (the specification's
/// upper bound, 512 bits).
pub const MAX_SECRET_BYTES: usize = 64;

/// The length of the keys offpeak generates ([`Secret::from_bytes`]): 256
/// bits.
pub const GENERATED_SECRET_BYTES: usize = 32;

/// An endpoint's HMAC signing key.
///
/// Its `Debug` prints `Secret(..)` and it has no `Display`, so a secret
/// cannot end up in a log line by accident; the only way to text is the
/// deliberate [`Secret::encode`].
#[derive(Clone)]
pub struct Secret(Vec<u8>);

/// Why a string is not a signing secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    /// Nothing after the optional prefix.
    #[error("the webhook secret is empty")]
    Empty,
    /// Not standard base64.
    #[error(
        "the webhook secret is not valid base64 (expected 'whsec_' followed by standard base64)"
    )]
    NotBase64,
    /// A key shorter or longer than the specification allows.
    #[error(
        "the webhook secret is {len} bytes long; it must be between {MIN_SECRET_BYTES} and {MAX_SECRET_BYTES} bytes"
    )]
    Length {
        /// The decoded key's length in bytes.
        len: usize,
    },
}

/// Standard base64 that decodes with or without the trailing `=` padding
/// (some receivers' libraries strip it); encoding always pads.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl Secret {
    /// A secret from 32 random bytes the caller supplies (core has no
    /// randomness of its own).
    pub fn from_bytes(bytes: [u8; GENERATED_SECRET_BYTES]) -> Secret {
        Secret(bytes.to_vec())
    }

    /// The serialised form shown to users and stored: `whsec_` followed by
    /// the key in standard base64 with padding.
    pub fn encode(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    /// Reads a serialised secret, with or without the `whsec_` prefix, in
    /// standard base64 with or without padding. The key must be
    /// [`MIN_SECRET_BYTES`]..=[`MAX_SECRET_BYTES`] long.
    pub fn parse(s: &str) -> Result<Secret, SecretError> {
        let b64 = s.trim().strip_prefix(SECRET_PREFIX).unwrap_or(s.trim());
        if b64.is_empty() {
            return Err(SecretError::Empty);
        }
        let key = BASE64_LENIENT
            .decode(b64)
            .map_err(|_| SecretError::NotBase64)?;
        if !(MIN_SECRET_BYTES..=MAX_SECRET_BYTES).contains(&key.len()) {
            return Err(SecretError::Length { len: key.len() });
        }
        Ok(Secret(key))
    }

    /// The raw key, for [`sign`] and [`signature_header`].
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

// ---------------------------------------------------------------------------
// Signing and verifying
// ---------------------------------------------------------------------------

/// The version tag of a symmetric (HMAC-SHA256) signature.
pub const SIGNATURE_VERSION: &str = "v1";

/// How far a `webhook-timestamp` may be from the receiver's clock, either
/// way, before [`verify`] refuses it: the reference libraries' 5 minutes.
pub const DEFAULT_TOLERANCE_SECS: i64 = 5 * 60;

/// HMAC-SHA256 keyed with `key`, fed `"{msg_id}.{timestamp}."`; the caller
/// adds the body.
fn mac_over(key: &[u8], msg_id: &str, timestamp: i64) -> Hmac<Sha256> {
    // HMAC takes a key of any length (a long one is hashed, a short one
    // padded), so `new_from_slice` cannot fail for `Hmac<Sha256>`.
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac
}

/// One signature: `"v1," + base64(HMAC-SHA256(key, "{msg_id}.{timestamp}.{body}"))`.
///
/// The body is signed as the exact bytes sent; re-serialising JSON would
/// change them.
pub fn sign(key: &[u8], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = mac_over(key, msg_id, timestamp);
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    format!("{SIGNATURE_VERSION},{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header: one [`sign`]ature per key, separated by a
/// single space. Pass the current key first, then a rotated-out key that is
/// still honoured.
pub fn signature_header(keys: &[&[u8]], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|k| sign(k, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why [`verify`] refused a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The timestamp is further in the past than the tolerance.
    #[error("webhook timestamp {timestamp} is too old (now {now}, tolerance {tolerance_secs} s)")]
    TooOld {
        /// The `webhook-timestamp` received.
        timestamp: i64,
        /// The receiver's clock.
        now: i64,
        /// The tolerance allowed.
        tolerance_secs: i64,
    },
    /// The timestamp is further in the future than the tolerance.
    #[error(
        "webhook timestamp {timestamp} is in the future (now {now}, tolerance {tolerance_secs} s)"
    )]
    TooNew {
        /// The `webhook-timestamp` received.
        timestamp: i64,
        /// The receiver's clock.
        now: i64,
        /// The tolerance allowed.
        tolerance_secs: i64,
    },
    /// The header holds no `v1,` signature at all.
    #[error("the webhook-signature header holds no v1 signature")]
    NoSignature,
    /// No `v1,` signature matches.
    #[error("no webhook signature matches")]
    Mismatch,
}

/// Checks a delivery as a receiver would: the timestamp is within
/// `tolerance_secs` of `now` (both Unix seconds) and at least one of the
/// space-separated `v1,` signatures of `header` is the HMAC of
/// `"{msg_id}.{timestamp}.{body}"` under `secret`. Signatures of other
/// versions (e.g. `v1a`) are skipped; the comparison is constant-time
/// (`hmac`'s `verify_slice`).
pub fn verify(
    secret: &Secret,
    msg_id: &str,
    timestamp: i64,
    body: &[u8],
    header: &str,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    if timestamp < now.saturating_sub(tolerance_secs) {
        return Err(VerifyError::TooOld {
            timestamp,
            now,
            tolerance_secs,
        });
    }
    if timestamp > now.saturating_add(tolerance_secs) {
        return Err(VerifyError::TooNew {
            timestamp,
            now,
            tolerance_secs,
        });
    }
    let mut expected = mac_over(secret.as_bytes(), msg_id, timestamp);
    expected.update(body);
    let mut seen_v1 = false;
    for candidate in header.split(' ') {
        let Some((version, b64)) = candidate.split_once(',') else {
            continue;
        };
        if version != SIGNATURE_VERSION {
            continue;
        }
        seen_v1 = true;
        let Ok(tag) = STANDARD.decode(b64) else {
            continue;
        };
        if expected.clone().verify_slice(&tag).is_ok() {
            return Ok(());
        }
    }
    Err(if seen_v1 {
        VerifyError::Mismatch
    } else {
        VerifyError::NoSignature
    })
}

// ---------------------------------------------------------------------------
// Retries
// ---------------------------------------------------------------------------

const MINUTE: u64 = 60;
const HOUR: u64 = 60 * MINUTE;

/// The delays between attempts after the first, immediate one: 5 s, 5 min,
/// 30 min, 2 h, 5 h, 10 h, 10 h. Together more than 24 h (27 h 35 min 5 s),
/// so a receiver that is down for a day still gets the message. The
/// specification's example schedule, cut after a day.
pub const RETRY_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * MINUTE),
    Duration::from_secs(30 * MINUTE),
    Duration::from_secs(2 * HOUR),
    Duration::from_secs(5 * HOUR),
    Duration::from_secs(10 * HOUR),
    Duration::from_secs(10 * HOUR),
];

/// Attempts of one delivery in all: the immediate one and one per
/// [`RETRY_SCHEDULE`] entry.
pub const MAX_ATTEMPTS: u32 = 1 + RETRY_SCHEDULE.len() as u32;

/// How far a scheduled delay is moved either way, as a fraction: ±20 %, so
/// deliveries that failed together do not all come back together.
pub const RETRY_JITTER: f64 = 0.2;

/// The longest a receiver's `Retry-After` can push an attempt back.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * HOUR);

/// The delay before the next attempt of a delivery of which `attempts_made`
/// attempts failed, or `None` when the schedule is used up (give up: the
/// delivery is dead).
///
/// `jitter` is a random number in `[0, 1)` the caller draws (core has no
/// randomness); it scales the scheduled delay by `0.8 + 0.4 × jitter`, so
/// into `[−20 %, +20 %)`. A value outside `[0, 1)` is clamped and NaN counts
/// as `0.5` (no jitter). A receiver's `Retry-After` is honoured: the delay
/// is never less than it, capped at [`MAX_RETRY_AFTER`]. It never extends
/// the schedule itself.
///
/// `attempts_made == 0` (nothing tried yet) gives `Some(ZERO)`: the first
/// attempt is immediate.
pub fn retry_delay(
    attempts_made: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Option<Duration> {
    if attempts_made == 0 {
        return Some(Duration::ZERO);
    }
    let base = *RETRY_SCHEDULE.get(attempts_made as usize - 1)?;
    let jitter = if jitter.is_nan() {
        0.5
    } else {
        jitter.clamp(0.0, 1.0)
    };
    let factor = 1.0 - RETRY_JITTER + 2.0 * RETRY_JITTER * jitter;
    let delay = base.mul_f64(factor);
    let floor = retry_after.map_or(Duration::ZERO, |r| r.min(MAX_RETRY_AFTER));
    Some(delay.max(floor))
}

// ---------------------------------------------------------------------------
// Destinations
// ---------------------------------------------------------------------------

/// Whether offpeak may deliver to `ip`: `false` for every address that is
/// not a globally routed unicast one (loopback, unspecified, private,
/// shared CGNAT, link-local including the cloud metadata address
/// 169.254.169.254, documentation, benchmarking, reserved, multicast and
/// broadcast). An IPv6 address that embeds an IPv4 one (IPv4-mapped
/// `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, IPv4-compatible `::a.b.c.d`,
/// 6to4 `2002::/16`) is judged by the IPv4 address, since that is where the
/// packets may end up.
pub fn is_public_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let refused = a == 0 // 0.0.0.0/8, "this network" (incl. unspecified)
        || a == 10 // 10/8 private
        || (a == 100 && (64..128).contains(&b)) // 100.64/10 shared (CGNAT)
        || a == 127 // 127/8 loopback
        || (a == 169 && b == 254) // 169.254/16 link-local, cloud metadata
        || (a == 172 && (16..32).contains(&b)) // 172.16/12 private
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
        || (a == 192 && b == 0 && c == 2) // 192.0.2/24 TEST-NET-1
        || (a == 192 && b == 168) // 192.168/16 private
        || (a == 198 && (b == 18 || b == 19)) // 198.18/15 benchmarking
        || (a == 198 && b == 51 && c == 100) // 198.51.100/24 TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // 203.0.113/24 TEST-NET-3
        || (224..240).contains(&a) // 224/4 multicast
        || a >= 240; // 240/4 reserved, incl. 255.255.255.255 broadcast
    !refused
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    // ::ffff:a.b.c.d, IPv4-mapped.
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // ::a.b.c.d, IPv4-compatible (deprecated, still routed by some stacks).
    if s[..6] == [0; 6] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b::/96, the NAT64 well-known prefix.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2..6] == [0; 4] {
        return is_public_v4(embedded(s[6], s[7]));
    }
    // 64:ff9b:1::/48, NAT64 local use.
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        return false;
    }
    // 2002::/16, 6to4: the IPv4 address is in the next 32 bits.
    if s[0] == 0x2002 {
        return is_public_v4(embedded(s[1], s[2]));
    }
    let refused = (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // ff00::/8 multicast
        || (s[0] == 0x2001 && s[1] == 0x0db8) // 2001:db8::/32 documentation
        || (s[0] == 0x0100 && s[1..4] == [0; 3]); // 100::/64 discard-only
    !refused
}

/// The longest webhook URL accepted, in bytes.
pub const MAX_URL_LEN: usize = 2048;

/// Why a webhook URL is refused. The messages are sentences for the user
/// who registered it (the API returns them in its 400 response).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlRefusal {
    /// Longer than [`MAX_URL_LEN`].
    #[error("the webhook URL is {len} characters long; at most {max} are allowed")]
    TooLong {
        /// The URL's length in bytes.
        len: usize,
        /// [`MAX_URL_LEN`].
        max: usize,
    },
    /// Not an absolute URL.
    #[error("the webhook URL is not a valid absolute URL ({reason})")]
    Invalid {
        /// The parser's reason.
        reason: String,
    },
    /// A scheme other than `https` (or `http` where private destinations
    /// are allowed).
    #[error("the webhook URL must use {allowed}, not '{scheme}'")]
    Scheme {
        /// The URL's scheme.
        scheme: String,
        /// What is allowed, as words ("https" or "https or http").
        allowed: &'static str,
    },
    /// `user:pass@` in the URL.
    #[error(
        "the webhook URL must not contain a user name or password; verify deliveries with the webhook signature instead"
    )]
    Credentials,
    /// No host.
    #[error("the webhook URL must name a host")]
    NoHost,
    /// A literal IP address that is not public.
    #[error(
        "the webhook URL's host {ip} is not a public address (loopback, private, link-local and reserved addresses are refused)"
    )]
    NotPublicAddress {
        /// The address.
        ip: IpAddr,
    },
    /// `localhost` or a name under `.localhost`.
    #[error("the webhook URL's host '{host}' is a local name; webhooks are only delivered to public hosts")]
    LocalName {
        /// The host name.
        host: String,
    },
}

/// The registration-time check of a webhook URL, without DNS (the sender
/// checks the resolved addresses at delivery time): at most
/// [`MAX_URL_LEN`] bytes; `https` only, unless `allow_private` (then `http`
/// too); no user name or password; a host; a literal IP host must be
/// public and the names `localhost` and `*.localhost` are refused, unless
/// `allow_private`.
///
/// The URL is parsed with the WHATWG rules clients use, so hosts such as
/// `2130706433`, `0x7f.1` or `[::ffff:127.0.0.1]` are seen as the loopback
/// addresses they are.
pub fn check_url(url: &str, allow_private: bool) -> Result<(), UrlRefusal> {
    if url.len() > MAX_URL_LEN {
        return Err(UrlRefusal::TooLong {
            len: url.len(),
            max: MAX_URL_LEN,
        });
    }
    let parsed = url::Url::parse(url).map_err(|e| UrlRefusal::Invalid {
        reason: e.to_string(),
    })?;
    let scheme_ok = match parsed.scheme() {
        "https" => true,
        "http" => allow_private,
        _ => false,
    };
    if !scheme_ok {
        return Err(UrlRefusal::Scheme {
            scheme: parsed.scheme().to_owned(),
            allowed: if allow_private {
                "https or http"
            } else {
                "https"
            },
        });
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(UrlRefusal::Credentials);
    }
    let host = parsed.host().ok_or(UrlRefusal::NoHost)?;
    if allow_private {
        return Ok(());
    }
    match host {
        url::Host::Ipv4(ip) if !is_public_v4(ip) => {
            Err(UrlRefusal::NotPublicAddress { ip: ip.into() })
        }
        url::Host::Ipv6(ip) if !is_public_v6(ip) => {
            Err(UrlRefusal::NotPublicAddress { ip: ip.into() })
        }
        url::Host::Domain(name) if is_local_name(name) => Err(UrlRefusal::LocalName {
            host: name.to_owned(),
        }),
        url::Host::Domain("") => Err(UrlRefusal::NoHost),
        _ => Ok(()),
    }
}

/// `localhost` and names under it (RFC 6761 says they resolve to loopback),
/// with or without the trailing root dot, in any case.
fn is_local_name(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    // --- event types -------------------------------------------------------

    #[test]
    fn event_types_round_trip_as_their_names() {
        for e in EventType::ALL {
            assert_eq!(e.as_str().parse::<EventType>().unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(json, format!("\"{}\"", e.as_str()));
            assert_eq!(serde_json::from_str::<EventType>(&json).unwrap(), e);
        }
        assert_eq!(EventType::GroupCompleted.to_string(), "group.completed");
    }

    #[test]
    fn unknown_event_type_is_a_clear_error() {
        let err = "job.done".parse::<EventType>().unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown event type 'job.done', expected one of: job.succeeded, job.failed, \
             job.dead, job.cancelled, group.completed"
        );
        assert!(serde_json::from_str::<EventType>("\"succeeded\"").is_err());
    }

    #[test]
    fn terminal_states_map_to_events() {
        assert_eq!(
            EventType::for_job_state("succeeded"),
            Some(EventType::JobSucceeded)
        );
        assert_eq!(
            EventType::for_job_state("failed"),
            Some(EventType::JobFailed)
        );
        assert_eq!(EventType::for_job_state("dead"), Some(EventType::JobDead));
        assert_eq!(
            EventType::for_job_state("cancelled"),
            Some(EventType::JobCancelled)
        );
        for s in ["held", "queued", "running", "", "Succeeded"] {
            assert_eq!(EventType::for_job_state(s), None, "{s}");
        }
        // Every terminal job state raises an event, and only those.
        for st in crate::job::JobState::ALL {
            assert_eq!(
                EventType::for_job_state(st.as_str()).is_some(),
                st.is_terminal()
            );
        }
    }

    // --- secrets -----------------------------------------------------------

    #[test]
    fn secret_encodes_with_prefix_and_padding_and_parses_back() {
        let s = Secret::from_bytes([7u8; 32]);
        let enc = s.encode();
        assert!(enc.starts_with("whsec_"));
        assert!(
            enc.ends_with('='),
            "32 bytes need one '=' of padding: {enc}"
        );
        assert_eq!(Secret::parse(&enc).unwrap().as_bytes(), &[7u8; 32]);
        let bare = enc.strip_prefix("whsec_").unwrap();
        assert_eq!(Secret::parse(bare).unwrap().as_bytes(), &[7u8; 32]);
        // Without padding too.
        assert_eq!(
            Secret::parse(bare.trim_end_matches('='))
                .unwrap()
                .as_bytes(),
            &[7u8; 32]
        );
    }

    #[test]
    fn bad_secrets_are_refused() {
        assert_eq!(Secret::parse("").unwrap_err(), SecretError::Empty);
        assert_eq!(Secret::parse("whsec_").unwrap_err(), SecretError::Empty);
        assert_eq!(
            Secret::parse("whsec_not base64!").unwrap_err(),
            SecretError::NotBase64
        );
        let short = STANDARD.encode([1u8; 16]);
        assert_eq!(
            Secret::parse(&short).unwrap_err(),
            SecretError::Length { len: 16 }
        );
        let long = STANDARD.encode([1u8; 65]);
        assert_eq!(
            Secret::parse(&long).unwrap_err(),
            SecretError::Length { len: 65 }
        );
    }

    #[test]
    fn secret_debug_hides_the_key() {
        let s = Secret::from_bytes([0xab; 32]);
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(Secret(..))");
    }

    // --- signatures --------------------------------------------------------

    /// The test vector every Standard Webhooks reference library checks
    /// (python `test_sign_function`, and the same values in the go,
    /// javascript, ruby, php, java and csharp tests of
    /// github.com/standard-webhooks/standard-webhooks, `libraries/`).
    #[test]
    fn standard_webhooks_reference_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let msg_id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let timestamp = 1614265330;
        let body = br#"{"test": 2432232314}"#;
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(sign(secret.as_bytes(), msg_id, timestamp, body), expected);
        assert_eq!(
            verify(&secret, msg_id, timestamp, body, expected, timestamp, 300),
            Ok(())
        );
    }

    /// The Rust reference library's own vector (`libraries/rust/src/lib.rs`,
    /// `test_sign`).
    #[test]
    fn standard_webhooks_rust_library_vector() {
        let secret = Secret::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        assert_eq!(
            sign(
                secret.as_bytes(),
                "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
                1649367553,
                br#"{"email":"test@example.com","username":"test_user"}"#,
            ),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    /// The same HMAC computed by the `openssl` CLI, independently of the
    /// `hmac` crate; skipped when `openssl` is not installed.
    #[test]
    fn signature_matches_openssl() {
        use std::io::Write;
        use std::process::{Command, Stdio};

        let key: Vec<u8> = (0u8..32)
            .map(|i| i.wrapping_mul(37).wrapping_add(11))
            .collect();
        let msg_id = "msg_openssl";
        let timestamp = 1_700_000_000;
        let body = "{\"k\":\"é ü \\u0000\",\"n\":1}".as_bytes();
        let hexkey: String = key.iter().map(|b| format!("{b:02x}")).collect();
        let child = Command::new("openssl")
            .args(["dgst", "-sha256", "-mac", "HMAC", "-macopt"])
            .arg(format!("hexkey:{hexkey}"))
            .arg("-binary")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn();
        let Ok(mut child) = child else {
            eprintln!("openssl not installed: skipping the cross-check");
            return;
        };
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("{msg_id}.{timestamp}.").as_bytes())
            .unwrap();
        stdin.write_all(body).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "openssl failed");
        assert_eq!(out.stdout.len(), 32);
        let ours = sign(&key, msg_id, timestamp, body);
        let ours_raw = STANDARD.decode(ours.strip_prefix("v1,").unwrap()).unwrap();
        assert_eq!(ours_raw, out.stdout);
    }

    #[test]
    fn header_carries_one_signature_per_key_current_first() {
        let current = Secret::from_bytes([1; 32]);
        let old = Secret::from_bytes([2; 32]);
        let body = b"{}";
        let h = signature_header(&[current.as_bytes(), old.as_bytes()], "m", 10, body);
        let parts: Vec<&str> = h.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], sign(current.as_bytes(), "m", 10, body));
        assert_eq!(parts[1], sign(old.as_bytes(), "m", 10, body));
        // A receiver with either key verifies; one with neither does not.
        assert_eq!(verify(&current, "m", 10, body, &h, 10, 300), Ok(()));
        assert_eq!(verify(&old, "m", 10, body, &h, 10, 300), Ok(()));
        let other = Secret::from_bytes([3; 32]);
        assert_eq!(
            verify(&other, "m", 10, body, &h, 10, 300),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn verify_refuses_tampering_and_stale_timestamps() {
        let s = Secret::from_bytes([9; 32]);
        let ts = 1_000_000;
        let h = sign(s.as_bytes(), "id", ts, b"body");
        assert_eq!(verify(&s, "id", ts, b"body", &h, ts + 300, 300), Ok(()));
        assert_eq!(verify(&s, "id", ts, b"body", &h, ts - 300, 300), Ok(()));
        assert_eq!(
            verify(&s, "id", ts, b"bodx", &h, ts, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(&s, "id2", ts, b"body", &h, ts, 300),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            verify(&s, "id", ts, b"body", &h, ts + 301, 300),
            Err(VerifyError::TooOld { .. })
        ));
        assert!(matches!(
            verify(&s, "id", ts, b"body", &h, ts - 301, 300),
            Err(VerifyError::TooNew { .. })
        ));
        // Other versions are skipped, garbage tolerated, a valid one found.
        let mixed = format!("v1a,AAAA v1,!!! v2,{} {h}", &h[3..]);
        assert_eq!(verify(&s, "id", ts, b"body", &mixed, ts, 300), Ok(()));
        assert_eq!(
            verify(&s, "id", ts, b"body", &format!("v2,{}", &h[3..]), ts, 300),
            Err(VerifyError::NoSignature)
        );
        assert_eq!(
            verify(&s, "id", ts, b"body", "", ts, 300),
            Err(VerifyError::NoSignature)
        );
        // A truncated signature does not match.
        let cut = &h[..h.len() - 8];
        assert_eq!(
            verify(&s, "id", ts, b"body", cut, ts, 300),
            Err(VerifyError::Mismatch)
        );
    }

    // --- retries -----------------------------------------------------------

    #[test]
    fn schedule_spans_more_than_a_day() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total >= Duration::from_secs(24 * 3600), "{total:?}");
        assert_eq!(total, Duration::from_secs(27 * 3600 + 35 * 60 + 5));
        assert_eq!(MAX_ATTEMPTS, 8);
        // Even with the most negative jitter it still spans a day.
        let min_total: Duration = (1..MAX_ATTEMPTS)
            .map(|n| retry_delay(n, None, 0.0).unwrap())
            .sum();
        assert!(min_total >= Duration::from_secs(22 * 3600), "{min_total:?}");
    }

    #[test]
    fn delays_follow_the_schedule_then_stop() {
        assert_eq!(retry_delay(0, None, 0.5), Some(Duration::ZERO));
        for (i, d) in RETRY_SCHEDULE.iter().enumerate() {
            assert_eq!(retry_delay(i as u32 + 1, None, 0.5), Some(*d));
        }
        assert_eq!(retry_delay(MAX_ATTEMPTS, None, 0.5), None);
        assert_eq!(
            retry_delay(u32::MAX, Some(Duration::from_secs(1)), 0.5),
            None
        );
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        for n in 1..MAX_ATTEMPTS {
            let base = RETRY_SCHEDULE[n as usize - 1];
            for j in [0.0, 0.1, 0.25, 0.5, 0.75, 0.999_999] {
                let d = retry_delay(n, None, j).unwrap();
                assert!(d >= base.mul_f64(0.8), "{n} {j} {d:?}");
                assert!(d < base.mul_f64(1.2), "{n} {j} {d:?}");
            }
            assert_eq!(retry_delay(n, None, 0.0).unwrap(), base.mul_f64(0.8));
            // Out-of-range and NaN jitter are tamed.
            assert!(retry_delay(n, None, 7.0).unwrap() <= base.mul_f64(1.2));
            assert!(retry_delay(n, None, -1.0).unwrap() >= base.mul_f64(0.8));
            assert_eq!(retry_delay(n, None, f64::NAN).unwrap(), base);
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_a_day() {
        // Longer than the scheduled 5 s: Retry-After wins.
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(120)), 0.5),
            Some(Duration::from_secs(120))
        );
        // Shorter than the scheduled 5 min: the schedule wins.
        assert_eq!(
            retry_delay(2, Some(Duration::from_secs(1)), 0.5),
            Some(Duration::from_secs(300))
        );
        // Absurd values are capped at 24 h.
        assert_eq!(
            retry_delay(1, Some(Duration::from_secs(10 * 24 * 3600)), 0.5),
            Some(MAX_RETRY_AFTER)
        );
    }

    // --- destinations ------------------------------------------------------

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public_ip(ip(s)), "{s} should be public");
        }
    }

    #[test]
    fn non_public_addresses_are_refused() {
        for s in [
            // IPv4
            "0.0.0.0",
            "0.1.2.3",
            "10.0.0.1",
            "10.255.255.255",
            "100.64.0.1",
            "100.127.255.255",
            "127.0.0.1",
            "127.1.2.3",
            "169.254.0.1",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            // IPv6
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "100::1",
            "64:ff9b:1::1",
            // IPv6 embedding a non-public IPv4
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "::127.0.0.1",
            "::10.1.2.3",
            "2002:7f00:1::",
            "2002:c0a8:101::1",
        ] {
            assert!(!is_public_ip(ip(s)), "{s} should not be public");
        }
    }

    #[test]
    fn urls_public_https_accepted() {
        for u in [
            "https://example.com/hooks",
            "https://example.com:8443/hooks?x=1",
            "https://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            "https://localhost.example.com/",
            "https://notlocalhost/",
        ] {
            assert_eq!(check_url(u, false), Ok(()), "{u}");
        }
    }

    #[test]
    fn urls_scheme() {
        assert!(matches!(
            check_url("http://example.com/", false),
            Err(UrlRefusal::Scheme { ref scheme, allowed: "https" }) if scheme == "http"
        ));
        assert_eq!(check_url("http://example.com/", true), Ok(()));
        for u in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://x/",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(check_url(u, true), Err(UrlRefusal::Scheme { .. })),
                "{u}"
            );
        }
        let msg = check_url("ftp://example.com/", false)
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "the webhook URL must use https, not 'ftp'");
    }

    #[test]
    fn urls_invalid_and_too_long() {
        for u in [
            "",
            "example.com",
            "/hooks",
            "https://",
            "https://exa mple.com/",
            "https://[::1/",
        ] {
            assert!(
                matches!(check_url(u, true), Err(UrlRefusal::Invalid { .. })),
                "{u}"
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
        assert!(matches!(
            check_url(&long, true),
            Err(UrlRefusal::TooLong { max: 2048, .. })
        ));
        let exact = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN - 20));
        assert_eq!(exact.len(), MAX_URL_LEN);
        assert_eq!(check_url(&exact, false), Ok(()));
    }

    #[test]
    fn urls_credentials_refused_even_when_private_allowed() {
        for u in [
            "https://user:pass@example.com/",
            "https://user@example.com/",
            "https://:pw@example.com/",
        ] {
            assert_eq!(check_url(u, true), Err(UrlRefusal::Credentials), "{u}");
            assert_eq!(check_url(u, false), Err(UrlRefusal::Credentials), "{u}");
        }
    }

    #[test]
    fn urls_private_literals_refused_unless_allowed() {
        for u in [
            "https://127.0.0.1/",
            "https://127.0.0.1:8080/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://10.0.0.1/",
            "https://[::1]/",
            "https://[::ffff:127.0.0.1]/",
            "https://[fd00::1]/",
            "https://0.0.0.0/",
            // Other spellings of 127.0.0.1 that clients accept.
            "https://2130706433/",
            "https://0x7f.1/",
            "https://0177.0.0.1/",
            "https://127.1/",
        ] {
            assert!(
                matches!(
                    check_url(u, false),
                    Err(UrlRefusal::NotPublicAddress { .. })
                ),
                "{u}: {:?}",
                check_url(u, false)
            );
            assert_eq!(check_url(u, true), Ok(()), "{u}");
        }
        let msg = check_url("https://169.254.169.254/", false)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("169.254.169.254") && msg.contains("not a public address"),
            "{msg}"
        );
    }

    #[test]
    fn urls_localhost_names_refused_unless_allowed() {
        for u in [
            "https://localhost/",
            "https://LOCALHOST:8443/",
            "https://localhost./",
            "https://api.localhost/",
            "https://a.b.localhost./x",
        ] {
            assert!(
                matches!(check_url(u, false), Err(UrlRefusal::LocalName { .. })),
                "{u}"
            );
            assert_eq!(check_url(u, true), Ok(()), "{u}");
        }
        assert_eq!(check_url("http://localhost:3000/", true), Ok(()));
    }
}
