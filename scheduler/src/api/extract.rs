//! Extractors that turn every malformed request into an [`ApiError`]
//! instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use offpeak_shared::db::tenants::{self, Tenant};

use super::error::ApiError;
use super::AppState;

/// A JSON body parsed into `T`; syntax errors are 400 `invalid_json`,
/// shape errors (missing, unknown or mistyped fields) 422 `invalid_field`
/// naming the field, and an oversized body 413.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn body_rejection(r: BytesRejection) -> ApiError {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is larger than the server accepts")
    } else {
        ApiError::bad_request("invalid_body", r.body_text())
    }
}

/// Parses JSON with the path of the offending field on shape errors.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match parsed {
        Ok(v) => {
            // Reject trailing content after the JSON value.
            de.end().map_err(|e| ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {e}")))?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            use serde_json::error::Category;
            match inner.classify() {
                Category::Data => {
                    let field = if path == "." { None } else { Some(path) };
                    let mut err = ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", strip_position(&inner));
                    err.field = field;
                    Err(err)
                }
                Category::Syntax | Category::Eof | Category::Io => {
                    Err(ApiError::bad_request("invalid_json", format!("request body is not valid JSON: {inner}")))
                }
            }
        }
    }
}

/// serde_json appends " at line 1 column 42"; for shape errors the field
/// name says more.
fn strip_position(e: &serde_json::Error) -> String {
    let s = e.to_string();
    match s.rfind(" at line ") {
        Some(i) => s[..i].to_owned(),
        None => s,
    }
}

/// Query parameters parsed into `T`, 400 `invalid_query` otherwise.
pub struct QueryParams<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryParams(v))
            .map_err(|r: QueryRejection| ApiError::bad_request("invalid_query", r.body_text()))
    }
}

/// The tenant whose bearer key authenticated the request.
pub struct AuthTenant(pub Tenant);

impl FromRequestParts<AppState> for AuthTenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <api key> header"))?;
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <api key>'"))?;
        // The key is looked up by its SHA-256, so no comparison of secret
        // bytes happens in our code; the database compares hashes.
        match tenants::by_api_key(&state.pool, key).await? {
            Some(t) => Ok(AuthTenant(t)),
            None => Err(ApiError::unauthorized("invalid API key")),
        }
    }
}
