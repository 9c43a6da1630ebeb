//! The operator token of the dashboard (`OFFPEAK_OPERATOR_TOKEN`), parsed,
//! and the session cookie values made from it. A module of its own, with no
//! dependency on the API or the dashboard: the server's state
//! ([`crate::api::AppState`]) holds the token, and the dashboard's
//! authentication ([`crate::ui::auth`]) checks requests with it.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a browser session lasts.
pub const SESSION_LIFETIME: chrono::Duration = chrono::Duration::hours(12);
/// Shortest accepted operator token: 16 characters of 94 possible ones are
/// over 100 bits, which nobody guesses through a login form.
pub const MIN_TOKEN_LEN: usize = 16;
/// Longest accepted operator token (it travels in a header).
pub const MAX_TOKEN_LEN: usize = 256;
type HmacSha256 = Hmac<Sha256>;

/// The operator token, parsed: long enough, and only visible ASCII so that
/// it fits an `Authorization` header as typed. Its `Debug` never shows it.
#[derive(Clone)]
pub struct OperatorToken {
    secret: Vec<u8>,
    digest: [u8; 32],
}

impl std::fmt::Debug for OperatorToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OperatorToken(..)")
    }
}

/// An operator token that is not acceptable.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("OFFPEAK_OPERATOR_TOKEN must be {MIN_TOKEN_LEN} to {MAX_TOKEN_LEN} characters long (it is {0}); e.g. `openssl rand -hex 32`")]
    Length(usize),
    #[error("OFFPEAK_OPERATOR_TOKEN may hold only visible ASCII characters (no spaces or control characters)")]
    Characters,
}

impl OperatorToken {
    /// Parses a token.
    ///
    /// # Errors
    /// A token shorter than [`MIN_TOKEN_LEN`] or longer than
    /// [`MAX_TOKEN_LEN`], or with characters other than visible ASCII.
    pub fn new(token: &str) -> Result<Self, TokenError> {
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TokenError::Characters);
        }
        // Visible ASCII: bytes are characters.
        if !(MIN_TOKEN_LEN..=MAX_TOKEN_LEN).contains(&token.len()) {
            return Err(TokenError::Length(token.len()));
        }
        Ok(Self { secret: token.as_bytes().to_vec(), digest: Sha256::digest(token.as_bytes()).into() })
    }

    /// Whether `presented` is the token, compared in constant time (by
    /// SHA-256, so not even the length leaks).
    pub fn matches(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        d.ct_eq(&self.digest).into()
    }

    fn mac(&self, expires: i64) -> Option<HmacSha256> {
        // HMAC accepts keys of any length; `new_from_slice` fails on none.
        let mut mac = HmacSha256::new_from_slice(&self.secret).ok()?;
        mac.update(format!("offpeak-ui-session:v1:{expires}").as_bytes());
        Some(mac)
    }

    /// A session cookie value valid until `expires`.
    pub fn session(&self, expires: DateTime<Utc>) -> String {
        let at = expires.timestamp();
        let tag = self.mac(at).map(|m| hex::encode(m.finalize().into_bytes())).unwrap_or_default();
        format!("v1.{at}.{tag}")
    }

    /// Whether a session cookie value was made with this token and has not
    /// expired at `now`.
    pub fn verify_session(&self, value: &str, now: DateTime<Utc>) -> bool {
        let mut parts = value.splitn(3, '.');
        let (Some("v1"), Some(at), Some(tag)) = (parts.next(), parts.next(), parts.next()) else {
            return false;
        };
        let (Ok(at), Ok(tag)) = (at.parse::<i64>(), hex::decode(tag)) else {
            return false;
        };
        if at <= now.timestamp() || at > (now + SESSION_LIFETIME).timestamp() {
            return false;
        }
        self.mac(at).is_some_and(|m| m.verify_slice(&tag).is_ok())
    }
}
