//! Extractors that turn every malformed request into an [`ApiError`]
//! instead of axum's plain-text rejections.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use offpeak_store::tenants::Tenant;

use super::error::ApiError;
use super::AppState;

/// A JSON body parsed into `T`; syntax errors are 400 `invalid_json`,
/// shape errors (missing, unknown or mistyped fields) 422 `invalid_field`
/// naming the field, and an oversized body 413. The body must be a JSON
/// object (see [`require_object`]).
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(body_rejection)?;
        require_object(&bytes)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Refuses a body that is valid JSON but not an object: 422 `invalid_field`.
/// serde would otherwise read a request struct from an array of its fields
/// in declaration order (`["flux-schnell", {"prompt": "fox"}, "low", null,
/// null, null]`), a form the API does not document. A body that is not
/// JSON at all is left to [`parse_json`], which says what is wrong with it.
pub fn require_object(bytes: &[u8]) -> Result<(), ApiError> {
    let first = bytes.iter().find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first == Some(&b'{') || serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() {
        return Ok(());
    }
    Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", "the request body must be a JSON object"))
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
                    // A missing field is reported at the parent's path
                    // ("."); its name is only in serde's message.
                    let field = if path == "." { missing_field_name(&inner) } else { Some(path) };
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

/// The field named by serde's "missing field `name`" message.
fn missing_field_name(e: &serde_json::Error) -> Option<String> {
    let msg = e.to_string();
    let rest = msg.strip_prefix("missing field `")?;
    Some(rest[..rest.find('`')?].to_owned())
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

/// A raw request body; an oversized one is a JSON 413 like everywhere else.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(body_rejection)
    }
}

/// What a path id names, for its 404 message.
pub trait Resource {
    const NAME: &'static str;
}

/// `/v1/jobs/{id}`.
pub struct JobId;
impl Resource for JobId {
    const NAME: &'static str = "job";
}

/// `/v1/schedules/{id}`.
pub struct ScheduleId;
impl Resource for ScheduleId {
    const NAME: &'static str = "schedule";
}

/// An id in the path. Anything that is not a UUID, bad percent-encoding
/// included, names nothing that exists: the same 404 as an unknown id.
pub struct PathId<R>(pub uuid::Uuid, pub std::marker::PhantomData<R>);

impl<R: Resource, S: Send + Sync> FromRequestParts<S> for PathId<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::not_found(R::NAME);
        let Path(raw) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        uuid::Uuid::parse_str(&raw).map(|id| PathId(id, std::marker::PhantomData)).map_err(|_| not_found())
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
        // The scheme name is case-insensitive (RFC 7235).
        let key = header
            .to_str()
            .ok()
            .and_then(|h| h.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, k)| k.trim())
            .filter(|k| !k.is_empty() && k.len() <= 256)
            .ok_or_else(|| ApiError::unauthorized("Authorization header must be 'Bearer <api key>'"))?;
        // The key is looked up by its SHA-256, so no comparison of secret
        // bytes happens in our code; the database (or the short-lived cache
        // of `auth.rs`, keyed by the hash) compares hashes.
        match state.auth.tenant(&state.pool, key).await? {
            Some(t) => Ok(AuthTenant(t)),
            None => Err(ApiError::unauthorized("invalid API key")),
        }
    }
}

/// `deserialize_with` for a nested struct that must be a JSON object: serde
/// would otherwise also read a struct from an array of its fields in order.
///
/// # Errors
/// Anything but an object, or an object that is not a valid `T`.
pub fn object_only<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: serde::Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}

/// [`object_only`] for an optional field (with `#[serde(default)]`): present
/// means an object.
///
/// # Errors
/// As [`object_only`].
pub fn object_only_opt<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    object_only(d).map(Some)
}
