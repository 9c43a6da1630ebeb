//! Who may use the dashboard: the operator, who holds the token set with
//! `OFFPEAK_OPERATOR_TOKEN` (not a tenant's API key: the dashboard sees every
//! tenant).
//!
//! - **Scripts** send `Authorization: Bearer <operator token>` to the JSON
//!   endpoints under `/ui/api/`.
//! - **Browsers** log in once: `POST /ui/login` with the token sets the
//!   cookie `offpeak_ui`, whose value is
//!   `v1.<expiry, unix seconds>.<hex HMAC-SHA256(token, "offpeak-ui-session:v1:<expiry>")>`.
//!   It carries no secret and needs no server-side state: every scheduler
//!   replica with the same token verifies it, it expires by itself after
//!   [`SESSION_LIFETIME`], and changing the token ends every session. It is
//!   `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's
//!   page makes the browser send it) and scoped to `Path=/ui`.
//! - **Mutations** (retry, cancel) are POSTs that must carry
//!   `X-Offpeak-UI: 1` ([`UiHeader`]): a cross-site form cannot set a
//!   custom header, and a cross-site script could only with a CORS grant
//!   that `/ui` never gives. With the `SameSite=Strict` cookie that is two
//!   independent defences against cross-site request forgery.
//!
//! Secrets are compared in constant time: the bearer token by its SHA-256
//! (`subtle`), the cookie by `hmac`'s own verification.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use chrono::{DateTime, Utc};

use crate::api::error::ApiError;
use crate::api::AppState;
pub use crate::operator_token::{OperatorToken, TokenError, MAX_TOKEN_LEN, MIN_TOKEN_LEN, SESSION_LIFETIME};

/// Name of the session cookie.
pub const COOKIE: &str = "offpeak_ui";
/// The header every mutation must carry, with the value `1`.
pub const UI_HEADER: &str = "x-offpeak-ui";

/// How a request presented itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented {
    /// Bearer token or session cookie, valid.
    Valid,
    /// Neither an `Authorization` header nor the session cookie.
    Nothing,
    /// A wrong or malformed token, or an expired or forged cookie.
    Invalid,
}

/// Checks the request's credentials: an `Authorization` header, if present,
/// decides alone (a wrong bearer token is refused even with a good cookie);
/// otherwise the session cookie.
pub fn check(headers: &HeaderMap, token: &OperatorToken, now: DateTime<Utc>) -> Presented {
    if let Some(h) = headers.get(header::AUTHORIZATION) {
        let bearer = h
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| t.trim());
        return match bearer {
            Some(t) if token.matches(t) => Presented::Valid,
            _ => Presented::Invalid,
        };
    }
    match cookie(headers, COOKIE) {
        Some(v) if token.verify_session(v, now) => Presented::Valid,
        Some(_) => Presented::Invalid,
        None => Presented::Nothing,
    }
}

/// The value of cookie `name`, from any `Cookie` header.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The `Set-Cookie` value that starts a session. `Secure` is added when
/// the request came through an HTTPS proxy (`X-Forwarded-Proto: https`);
/// plain-HTTP local use would otherwise lose the cookie.
pub fn session_cookie(token: &OperatorToken, now: DateTime<Utc>, secure: bool) -> String {
    let value = token.session(now + SESSION_LIFETIME);
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_LIFETIME.num_seconds())
}

/// The `Set-Cookie` value that ends a session.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// The answer of every `/ui` route while `OFFPEAK_OPERATOR_TOKEN` is unset.
pub fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "ui_disabled",
        "the dashboard is disabled: start the scheduler with OFFPEAK_OPERATOR_TOKEN (or --operator-token) set to enable it",
    )
}

/// A request made by the operator (bearer token or session cookie);
/// otherwise 401, or 403 `ui_disabled` when no token is configured.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = state.config.operator_token.as_ref().ok_or_else(disabled)?;
        match check(&parts.headers, token, state.clock.now()) {
            Presented::Valid => Ok(Operator),
            Presented::Nothing => Err(ApiError::unauthorized(
                "log in at /ui/login, or send Authorization: Bearer <operator token>",
            )),
            Presented::Invalid => Err(ApiError::unauthorized("invalid operator token or expired session; log in again at /ui/login")),
        }
    }
}

/// The anti-CSRF header of mutations: `X-Offpeak-UI: 1`, else 403
/// `csrf_header_required`.
#[derive(Debug, Clone, Copy)]
pub struct UiHeader;

impl<S: Send + Sync> FromRequestParts<S> for UiHeader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(UI_HEADER).map(|v| v.as_bytes()) {
            Some(b"1") => Ok(UiHeader),
            _ => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "csrf_header_required",
                "changes must be sent with the header X-Offpeak-UI: 1",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn token() -> OperatorToken {
        OperatorToken::new("correct-horse-battery-staple").expect("a valid token")
    }

    #[test]
    fn tokens_must_be_long_visible_ascii() {
        assert!(OperatorToken::new("short").is_err());
        assert!(OperatorToken::new("sixteen chars ok").is_err(), "spaces are refused");
        assert!(OperatorToken::new("ünïcödé-token-with-long-length").is_err());
        assert!(OperatorToken::new(&"x".repeat(MAX_TOKEN_LEN + 1)).is_err());
        assert!(OperatorToken::new("0123456789abcdef").is_ok());
        assert_eq!(format!("{:?}", token()), "OperatorToken(..)");
    }

    #[test]
    fn the_token_matches_itself_only() {
        let t = token();
        assert!(t.matches("correct-horse-battery-staple"));
        assert!(!t.matches("correct-horse-battery-stapl"));
        assert!(!t.matches(""));
    }

    #[test]
    fn sessions_verify_until_they_expire_and_resist_forgery() {
        let t = token();
        let now = Utc::now();
        let s = t.session(now + SESSION_LIFETIME);
        assert!(t.verify_session(&s, now));
        assert!(t.verify_session(&s, now + SESSION_LIFETIME - chrono::Duration::seconds(2)));
        assert!(!t.verify_session(&s, now + SESSION_LIFETIME + chrono::Duration::seconds(1)), "expired");
        let other = OperatorToken::new("another-token-entirely").expect("valid");
        assert!(!other.verify_session(&s, now), "a new token ends old sessions");
        // Moving the expiry breaks the MAC.
        let at = (now + SESSION_LIFETIME).timestamp();
        let forged = s.replace(&at.to_string(), &(at - 10).to_string());
        assert!(!t.verify_session(&forged, now));
        // An expiry further out than a session lasts is refused even with a valid MAC.
        let far = t.session(now + SESSION_LIFETIME * 10);
        assert!(!t.verify_session(&far, now));
        for junk in ["", "v1", "v1..", "v2.1.00", "v1.x.00", "v1.1.zz"] {
            assert!(!t.verify_session(junk, now), "{junk:?}");
        }
    }

    #[test]
    fn a_bearer_header_decides_alone_then_the_cookie() {
        let t = token();
        let now = Utc::now();
        let mut h = HeaderMap::new();
        assert_eq!(check(&h, &t, now), Presented::Nothing);
        let cookie_value = format!("a=b; {COOKIE}={}; c=d", t.session(now + SESSION_LIFETIME));
        h.insert(header::COOKIE, HeaderValue::from_str(&cookie_value).expect("header"));
        assert_eq!(check(&h, &t, now), Presented::Valid);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer nope"));
        assert_eq!(check(&h, &t, now), Presented::Invalid);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("bearer correct-horse-battery-staple"));
        assert_eq!(check(&h, &t, now), Presented::Valid);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("offpeak_ui=v1.1.00"));
        assert_eq!(check(&h, &t, now), Presented::Invalid);
    }
}
