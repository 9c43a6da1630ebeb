//! `POST /v1/images/generations`: OpenAI's image generation endpoint
//! (`createImage` in OpenAI's published OpenAPI document,
//! `openai/openai-openapi`), one request per image job, for offpeak's
//! `openai-images` adapter.
//!
//! # The contract
//!
//! `Authorization: Bearer <key>` is checked as for `/v1/batch`. The body is
//! a `CreateImageRequest`:
//!
//! ```json
//! {"model": "gpt-image-1", "prompt": "a lighthouse at dawn", "n": 1,
//!  "size": "1024x1024", "quality": "high", "output_format": "png"}
//! ```
//!
//! | field | accepted |
//! |---|---|
//! | `prompt` | required, a non-empty string of at most 32000 characters (1000 for `dall-e-2`, 4000 for `dall-e-3`) |
//! | `model` | a non-empty string, default `dall-e-2`; any name is accepted (an OpenAI-compatible gateway serves its own models) |
//! | `n` | integer 1 to 10, default 1; only 1 for `dall-e-3` |
//! | `quality` | `standard`, `hd`, `low`, `medium`, `high`, `auto` |
//! | `response_format` | `url` (default) or `b64_json`; GPT image models (`gpt-image-*`) always answer `b64_json` |
//! | `output_format` | `png` (default), `jpeg`, `webp` |
//! | `output_compression` | integer 0 to 100 |
//! | `stream` | `false`; `true` is answered 400 (streaming is not simulated) |
//! | `partial_images` | integer 0 to 3 |
//! | `size` | `auto`, `1024x1024`, `1536x1024`, `1024x1536`, `256x256`, `512x512`, `1792x1024`, `1024x1792`; `gpt-image-2*` also `WxH` with both edges divisible by 16, at most 3840 |
//! | `moderation` | `low`, `auto` |
//! | `background` | `transparent`, `opaque`, `auto` |
//! | `style` | `vivid`, `natural` |
//! | `user` | a string, ignored |
//!
//! `null` counts as absent (the reference marks the fields nullable). Any
//! other field is refused, as OpenAI refuses it (`unknown_parameter`).
//!
//! | status | body |
//! |---|---|
//! | 200 | `ImagesResponse`: `{"created", "data": [{"url"} or {"b64_json"}, ...], ...}`, `n` images; `dall-e-3` adds `revised_prompt`; GPT image models add `background`, `output_format`, `size`, `quality` and `usage` |
//! | 400 | `invalid_request_error` with `param`: body not a JSON object, a field missing, of the wrong type or out of range, an unknown field |
//! | 400 | `invalid_request_error`, code `content_policy_violation`: drawn with [`SimConfig::item_error_rate`] (a prompt the safety system refuses); not billed, not stored |
//! | 401 | `invalid_request_error`: missing key (`code: null`) or wrong key (`code: "invalid_api_key"`) |
//! | 422 | `invalid_request_error`, code `idempotency_mismatch`: the `Idempotency-Key` was used with another body |
//! | 429 | `requests`, code `rate_limit_exceeded`, headers `retry-after: 1`, `x-ratelimit-limit-requests`, `x-ratelimit-remaining-requests: 0`, `x-ratelimit-reset-requests: 1s` |
//! | 500, 503 | `server_error` (half each), drawn with [`SimConfig::error_rate`] |
//! | 200, broken | drawn with [`SimConfig::garbage_rate`]: JSON cut short, an HTML page, an empty body, `data` not an array, `data` empty, images with neither `url` nor `b64_json`; not billed, not stored |
//!
//! Errors have OpenAI's shape,
//! `{"error": {"message": string, "type": string, "param": string|null, "code": string|null}}`.
//!
//! # Behaviour
//!
//! Each call sleeps [`SimConfig::latency`], then hangs [`SimConfig::slow`]
//! more with probability `slow_rate`, then its fate is drawn from a
//! generator of its own (so that images traffic does not change which
//! batch calls of a seeded run fail): 5xx with `error_rate`, else 429 with
//! `rate_limit_rate`, else garbage with `garbage_rate`, else
//! `content_policy_violation` with `item_error_rate`, else success.
//!
//! A success is a pure function of `(model, request without model)`: the
//! image bytes, URLs, `revised_prompt` and `usage` are derived from
//! [`input_hash`]`(model, body without "model")`, and `created` is the
//! fixed [`IMAGES_CREATED`], so a replayed or repeated request answers the
//! same bytes. The "image" is not a picture: [`image_bytes`] gives the
//! bytes behind `b64_json` (the PNG signature, then the hash and index).
//!
//! # Billing
//!
//! A success is billed in the batch endpoint's ledger: `items` and
//! `by_model[model]` grow by the number of images, and the request is billed
//! once under [`input_hash`]`(model, body without its "model" key)`. offpeak's
//! worker sends a job's input with `model` set to the provider's model name,
//! so that hash is `input_hash(provider_model, job input)` for a job input
//! without a `model` key. Calls count in `image_calls`; faults count in the
//! counters the batch endpoint uses (`errors`, `rate_limited`, `garbage`,
//! `item_errors`, `rejected`, `slow`, `replays`).
//!
//! # Idempotency
//!
//! OpenAI's reference promises no idempotency for this endpoint. The
//! simulator models a gateway that does, as its batch endpoint does: a 200
//! is stored under its `Idempotency-Key` (offpeak's worker sends the job id)
//! and a call with the same key and body gets the stored bytes again
//! (header `Idempotent-Replayed: true`) without being billed; calls with
//! the same key wait for each other. The keys are kept apart from the
//! batch endpoint's.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::embeddings::OpenAiError;
use crate::{
    canonical_object, check_bearer, digest_of, json_bytes, lock, Lookup, Simulator, CDN_BASE,
    IDEMPOTENT_REPLAYED, RETRY_AFTER_SECS,
};
#[cfg(doc)]
use crate::{input_hash, SimConfig};

/// `created` of every successful answer: a fixed time (2026-01-01T00:00:00Z)
/// so that an answer is a pure function of its request.
pub const IMAGES_CREATED: i64 = 1_767_225_600;

/// What a 429 announces in `x-ratelimit-limit-requests`.
pub const IMAGES_RATE_LIMIT_REQUESTS: u32 = 50;

/// Code of the 400 drawn with `item_error_rate`.
pub const CONTENT_POLICY_VIOLATION: &str = "content_policy_violation";

/// The key of the idempotency store an images call is stored under, apart
/// from the batch endpoint's keys.
fn store_key(key: &str) -> String {
    format!("images:{key}")
}

const SIZES: &[&str] = &[
    "auto", "1024x1024", "1536x1024", "1024x1536", "256x256", "512x512", "1792x1024", "1024x1792",
];

/// A request that passed validation.
struct ImageRequest {
    model: String,
    prompt: String,
    n: u64,
    b64: bool,
    gpt_image: bool,
    output_format: String,
    size: Option<String>,
    quality: Option<String>,
    background: Option<String>,
    /// Digest of `(model, body without model)`: the billing hash and the
    /// seed of the answer.
    digest: [u8; 32],
    /// Hash of the whole canonical body, compared on replay.
    body_hash: [u8; 32],
}

/// One field's value, `null` counting as absent.
fn field<'a>(body: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    body.get(name).filter(|v| !v.is_null())
}

fn one_of(body: &Map<String, Value>, name: &str, allowed: &[&str]) -> Result<Option<String>, OpenAiError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s.clone())),
        Some(v) => Err(OpenAiError::invalid(
            Some(name),
            format!("Invalid value for '{name}': {v}. Supported values are: {}.", allowed.join(", ")),
        )),
    }
}

fn integer(body: &Map<String, Value>, name: &str, min: u64, max: u64) -> Result<Option<u64>, OpenAiError> {
    match field(body, name) {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(i) if (min..=max).contains(&i) => Ok(Some(i)),
            _ => Err(OpenAiError::invalid(
                Some(name),
                format!("Invalid value for '{name}': {v}. Expected an integer from {min} to {max}."),
            )),
        },
    }
}

/// `WxH` with both edges divisible by 16, at most 3840, aspect within 1:3..3:1.
fn free_size(size: &str) -> bool {
    let Some((w, h)) = size.split_once('x') else { return false };
    let (Ok(w), Ok(h)) = (w.parse::<u32>(), h.parse::<u32>()) else { return false };
    w > 0 && h > 0 && w % 16 == 0 && h % 16 == 0 && w <= 3840 && h <= 3840 && w <= 3 * h && h <= 3 * w
}

impl ImageRequest {
    fn parse(body: &[u8]) -> Result<Self, OpenAiError> {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            OpenAiError::invalid(None, format!("We could not parse the JSON body of your request: {e}"))
        })?;
        let Value::Object(mut body) = value else {
            return Err(OpenAiError::invalid(None, "The request body must be a JSON object."));
        };
        let mut canonical = Vec::new();
        canonical_object(&body, &mut canonical);
        let body_hash: [u8; 32] = Sha256::digest(&canonical).into();

        const KNOWN: &[&str] = &[
            "prompt", "model", "n", "quality", "response_format", "output_format", "output_compression",
            "stream", "partial_images", "size", "moderation", "background", "style", "user",
        ];
        if let Some(unknown) = body.keys().find(|k| !KNOWN.contains(&k.as_str())) {
            let mut e = OpenAiError::invalid(Some(unknown.as_str()), format!("Unknown parameter: '{unknown}'."));
            e.error.code = Some("unknown_parameter");
            return Err(e);
        }
        let model = match body.remove("model") {
            None | Some(Value::Null) => "dall-e-2".to_owned(),
            Some(Value::String(m)) if !m.is_empty() => m,
            Some(_) => return Err(OpenAiError::invalid(Some("model"), "'model' must be a non-empty string.")),
        };
        let gpt_image = model.starts_with("gpt-image");
        let prompt = match field(&body, "prompt") {
            Some(Value::String(p)) if !p.is_empty() => p.clone(),
            Some(Value::String(_)) => return Err(OpenAiError::invalid(Some("prompt"), "'prompt' must not be empty.")),
            Some(_) => return Err(OpenAiError::invalid(Some("prompt"), "'prompt' must be a string.")),
            None => return Err(OpenAiError::invalid(Some("prompt"), "Missing required parameter: 'prompt'.")),
        };
        let max_prompt = match model.as_str() {
            "dall-e-2" => 1000,
            "dall-e-3" => 4000,
            _ => 32_000,
        };
        if prompt.chars().count() > max_prompt {
            return Err(OpenAiError::invalid(
                Some("prompt"),
                format!("'prompt' is too long: at most {max_prompt} characters for {model}."),
            ));
        }
        let n = integer(&body, "n", 1, 10)?.unwrap_or(1);
        if model == "dall-e-3" && n != 1 {
            return Err(OpenAiError::invalid(Some("n"), "dall-e-3 supports only n=1."));
        }
        let quality = one_of(&body, "quality", &["standard", "hd", "low", "medium", "high", "auto"])?;
        let response_format = one_of(&body, "response_format", &["url", "b64_json"])?;
        let output_format = one_of(&body, "output_format", &["png", "jpeg", "webp"])?;
        integer(&body, "output_compression", 0, 100)?;
        match field(&body, "stream") {
            None | Some(Value::Bool(false)) => {}
            Some(Value::Bool(true)) => {
                return Err(OpenAiError::invalid(Some("stream"), "Streaming is not supported by this simulator."))
            }
            Some(_) => return Err(OpenAiError::invalid(Some("stream"), "'stream' must be a boolean.")),
        }
        integer(&body, "partial_images", 0, 3)?;
        let size = match field(&body, "size") {
            None => None,
            Some(Value::String(s)) if SIZES.contains(&s.as_str()) => Some(s.clone()),
            Some(Value::String(s)) if model.starts_with("gpt-image-2") && free_size(s) => Some(s.clone()),
            Some(v) => {
                return Err(OpenAiError::invalid(
                    Some("size"),
                    format!("Invalid value for 'size': {v}. Supported values are: {}.", SIZES.join(", ")),
                ))
            }
        };
        one_of(&body, "moderation", &["low", "auto"])?;
        let background = one_of(&body, "background", &["transparent", "opaque", "auto"])?;
        one_of(&body, "style", &["vivid", "natural"])?;
        if let Some(v) = field(&body, "user") {
            if !v.is_string() {
                return Err(OpenAiError::invalid(Some("user"), "'user' must be a string."));
            }
        }
        canonical.clear();
        canonical_object(&body, &mut canonical);
        let digest = digest_of(&model, &canonical);
        Ok(Self {
            b64: gpt_image || response_format.as_deref() == Some("b64_json"),
            output_format: output_format.unwrap_or_else(|| "png".into()),
            model,
            prompt,
            n,
            gpt_image,
            size,
            quality,
            background,
            digest,
            body_hash,
        })
    }
}

/// The bytes an image of a successful answer stands for: the PNG
/// signature, `offpeak-sim`, the request's digest and the image's index.
pub fn image_bytes(digest: &[u8; 32], index: u64) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\noffpeak-sim".to_vec();
    bytes.extend_from_slice(digest);
    bytes.extend_from_slice(&index.to_be_bytes());
    bytes
}

fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The path of this endpoint.
pub(crate) const ENDPOINT: &str = "/v1/images/generations";

/// What `POST /v1/images/generations` answers `body` with when it
/// succeeds, if `body` is a valid request: the same `ImagesResponse`, for
/// a Batch API request to this endpoint (see `openai_batch`).
pub(crate) fn rendered(body: &Map<String, Value>) -> Option<Value> {
    let bytes = serde_json::to_vec(body).ok()?;
    ImageRequest::parse(&bytes).ok().map(|r| render(&r))
}

/// The body of a 200, as a JSON value (keys in `serde_json`'s order).
fn render(request: &ImageRequest) -> Value {
    let id = hex::encode(&request.digest[..16]);
    let data: Vec<Value> = (0..request.n)
        .map(|i| {
            let mut image = Map::new();
            if request.b64 {
                image.insert("b64_json".into(), json!(base64(&image_bytes(&request.digest, i))));
            } else {
                let ext = &request.output_format;
                image.insert("url".into(), json!(format!("{CDN_BASE}/{}/{id}-{i}.{ext}", request.model)));
            }
            if request.model == "dall-e-3" {
                image.insert("revised_prompt".into(), json!(format!("A detailed rendering of: {}", request.prompt)));
            }
            Value::Object(image)
        })
        .collect();
    let mut body = json!({ "created": IMAGES_CREATED, "data": data });
    if request.gpt_image {
        let size = match request.size.as_deref() {
            None | Some("auto") => "1024x1024",
            Some(s) => s,
        };
        let quality = request
            .quality
            .as_deref()
            .filter(|q| matches!(*q, "low" | "medium" | "high"))
            .unwrap_or("high");
        let background = match request.background.as_deref() {
            Some("transparent") => "transparent",
            _ => "opaque",
        };
        // A stand-in for OpenAI's tokenizer: one text token per word.
        let text_tokens = request.prompt.split_whitespace().count().max(1) as u64;
        let output_tokens = 1056 * request.n;
        body["background"] = json!(background);
        body["output_format"] = json!(request.output_format);
        body["size"] = json!(size);
        body["quality"] = json!(quality);
        body["usage"] = json!({
            "total_tokens": text_tokens + output_tokens,
            "input_tokens": text_tokens,
            "output_tokens": output_tokens,
            "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        });
    }
    body
}

enum Fate {
    ServerError(StatusCode),
    RateLimited,
    Garbage(Garbage),
    ContentPolicy,
    Success,
}

/// The ways a 200 breaks the contract.
#[derive(Debug, Clone, Copy)]
enum Garbage {
    Truncated,
    HtmlPage,
    EmptyBody,
    DataNotArray,
    EmptyData,
    ImagesWithoutContent,
}

impl Garbage {
    const ALL: [Garbage; 6] = [
        Garbage::Truncated,
        Garbage::HtmlPage,
        Garbage::EmptyBody,
        Garbage::DataNotArray,
        Garbage::EmptyData,
        Garbage::ImagesWithoutContent,
    ];
}

fn garbage(kind: Garbage, request: &ImageRequest) -> Response {
    let body = match kind {
        Garbage::Truncated => {
            let full = render(request).to_string();
            // Cut at a char boundary: a revised prompt may hold multi-byte text.
            let mut cut = full.len() / 2;
            while !full.is_char_boundary(cut) {
                cut -= 1;
            }
            full[..cut].to_owned()
        }
        Garbage::HtmlPage => {
            return (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "text/html")],
                "<html><body><h1>502 Bad Gateway</h1></body></html>",
            )
                .into_response()
        }
        Garbage::EmptyBody => String::new(),
        Garbage::DataNotArray => json!({"created": IMAGES_CREATED, "data": "oops"}).to_string(),
        Garbage::EmptyData => json!({"created": IMAGES_CREATED, "data": []}).to_string(),
        Garbage::ImagesWithoutContent => json!({"created": IMAGES_CREATED, "data": [{"status": "ok"}]}).to_string(),
    };
    json_bytes(StatusCode::OK, Bytes::from(body))
}

impl Simulator {
    fn draw_images(&self) -> Fate {
        let config = self.config();
        let mut rng = lock(&self.inner.images_rng);
        match crate::draw_fault(&mut rng, config.error_rate, config.rate_limit_rate, config.garbage_rate) {
            Some(crate::Fault::ServerError) => Fate::ServerError(if rng.gen::<bool>() {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            }),
            Some(crate::Fault::RateLimited) => Fate::RateLimited,
            Some(crate::Fault::Garbage) => Fate::Garbage(Garbage::ALL[rng.gen_range(0..Garbage::ALL.len())]),
            None if rng.gen::<f64>() < config.item_error_rate => Fate::ContentPolicy,
            None => Fate::Success,
        }
    }

    /// Everything after the latency: authenticate, parse, replay or draw.
    async fn handle_images(&self, headers: &HeaderMap, body: &[u8]) -> (Response, &'static str) {
        let config = self.config();
        if let Err(failure) = check_bearer(&config, headers) {
            self.record(|l| l.rejected += 1);
            return (OpenAiError::unauthorized(failure).into_response(), "unauthorized");
        }
        let key = match headers.get("idempotency-key").map(|v| v.to_str().map(str::trim)) {
            None => None,
            Some(Ok(key)) if !key.is_empty() => Some(store_key(key)),
            Some(_) => {
                self.record(|l| l.rejected += 1);
                let e = OpenAiError::invalid(None, "Idempotency-Key must be a non-empty ASCII string.");
                return (e.into_response(), "bad_request");
            }
        };
        let request = match ImageRequest::parse(body) {
            Ok(request) => request,
            Err(e) => {
                self.record(|l| l.rejected += 1);
                return (e.into_response(), "bad_request");
            }
        };
        // Held until the answer is stored: a concurrent call with the same
        // key waits, then finds it.
        let _key_lock = match &key {
            Some(key) => Some(self.lock_key(key).await),
            None => None,
        };
        if let Some(key) = &key {
            match self.lookup(key, &request.body_hash) {
                Lookup::Miss => {}
                Lookup::Replay(stored) => {
                    self.record(|l| l.replays += 1);
                    let mut response = json_bytes(StatusCode::OK, stored);
                    response.headers_mut().insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
                    return (response, "replay");
                }
                Lookup::Mismatch => {
                    self.record(|l| l.rejected += 1);
                    let e = OpenAiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "invalid_request_error",
                        Some("idempotency_mismatch"),
                        "This Idempotency-Key was already used with a different body.",
                    );
                    return (e.into_response(), "idempotency_mismatch");
                }
            }
        }
        match self.draw_images() {
            Fate::ServerError(status) => {
                self.record(|l| l.errors += 1);
                let e = OpenAiError::new(
                    status,
                    "server_error",
                    None,
                    "The server had an error while processing your request (simulated).",
                );
                (e.into_response(), "5xx")
            }
            Fate::RateLimited => {
                self.record(|l| l.rate_limited += 1);
                let e = OpenAiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "requests",
                    Some("rate_limit_exceeded"),
                    format!(
                        "Rate limit reached for images per min: Limit {IMAGES_RATE_LIMIT_REQUESTS} (simulated). Please try again in {RETRY_AFTER_SECS}s."
                    ),
                );
                let mut response = e.into_response();
                let h = response.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
                h.insert("x-ratelimit-limit-requests", HeaderValue::from(IMAGES_RATE_LIMIT_REQUESTS));
                h.insert("x-ratelimit-remaining-requests", HeaderValue::from(0u32));
                if let Ok(reset) = HeaderValue::from_str(&format!("{RETRY_AFTER_SECS}s")) {
                    h.insert("x-ratelimit-reset-requests", reset);
                }
                (response, "429")
            }
            Fate::Garbage(kind) => {
                self.record(|l| l.garbage += 1);
                (garbage(kind, &request), "garbage")
            }
            Fate::ContentPolicy => {
                self.record(|l| l.item_errors += 1);
                let e = OpenAiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some(CONTENT_POLICY_VIOLATION),
                    "Your request was rejected as a result of our safety system (simulated).",
                );
                (e.into_response(), "content_policy_violation")
            }
            Fate::Success => {
                let bytes = Bytes::from(render(&request).to_string());
                let mut ledger = lock(&self.inner.ledger);
                ledger.items += request.n;
                *ledger.by_model.entry(request.model.clone()).or_default() += request.n;
                *ledger.billed.entry(hex::encode(request.digest)).or_default() += 1;
                if let Some(key) = key {
                    ledger.stored.insert(key, crate::Stored { body_hash: request.body_hash, response: bytes.clone() });
                }
                drop(ledger);
                (json_bytes(StatusCode::OK, bytes), "ok")
            }
        }
    }
}

/// `POST /v1/images/generations`.
pub(crate) async fn post_images(State(sim): State<Simulator>, headers: HeaderMap, body: Bytes) -> Response {
    sim.record(|l| l.image_calls += 1);
    let config = sim.config();
    sim.latency_and_hang(&config, &sim.inner.images_rng).await;
    let (response, outcome) = sim.handle_images(&headers, &body).await;
    tracing::debug!(
        status = response.status().as_u16(),
        outcome,
        idempotency_key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()),
        "images call"
    );
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::{input_hash, spawn, RunningSim, SimConfig};

    const KEY: &str = "sim-test-key";

    async fn start(config: SimConfig) -> RunningSim {
        spawn(SimConfig { api_key: Some(KEY.into()), ..config }).await.unwrap()
    }

    async fn post(sim: &RunningSim, body: &Value, idempotency_key: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/v1/images/generations", sim.url))
            .bearer_auth(KEY)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        let resp = req.send().await.unwrap();
        let status = StatusCode::from_u16(resp.status().as_u16()).unwrap();
        let mut headers = HeaderMap::new();
        for (k, v) in resp.headers() {
            headers.insert(
                axum::http::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                HeaderValue::from_bytes(v.as_bytes()).unwrap(),
            );
        }
        (status, headers, resp.bytes().await.unwrap().to_vec())
    }

    fn json_of(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    /// What the worker's adapter accepts: `data`, a non-empty array of
    /// images each with a `url` or `b64_json` string.
    fn well_formed(bytes: &[u8]) -> bool {
        let Ok(v) = serde_json::from_slice::<Value>(bytes) else { return false };
        v["data"].as_array().is_some_and(|d| {
            !d.is_empty() && d.iter().all(|i| i["url"].is_string() || i["b64_json"].is_string())
        })
    }

    fn unbase64(text: &str) -> Vec<u8> {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.decode(text).unwrap()
    }

    #[tokio::test]
    async fn answers_an_images_response_billed_under_the_input_hash() {
        let sim = start(SimConfig::default()).await;
        let (status, _, body) = post(&sim, &json!({"model": "dall-e-2", "prompt": "a cat", "n": 2}), None).await;
        assert_eq!(status, StatusCode::OK);
        let v = json_of(&body);
        assert_eq!(v["created"], IMAGES_CREATED);
        let data = v["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert!(data[0]["url"].as_str().unwrap().starts_with(CDN_BASE));
        assert_ne!(data[0]["url"], data[1]["url"]);
        assert!(v.get("usage").is_none(), "usage is for GPT image models");

        let stats = sim.sim.stats();
        assert_eq!((stats.image_calls, stats.items, stats.by_model["dall-e-2"]), (1, 2, 2));
        assert_eq!(stats.batches, 0);
        let hash = input_hash("dall-e-2", &json!({"prompt": "a cat", "n": 2}));
        assert_eq!(sim.sim.billed_inputs(), [(hash, 1)].into_iter().collect());

        // The same request again (no key): the same answer, billed again.
        let (_, _, again) = post(&sim, &json!({"n": 2, "prompt": "a cat", "model": "dall-e-2"}), None).await;
        assert_eq!(again, body);
        assert_eq!(sim.sim.stats().max_billed_per_input, 2);
    }

    #[tokio::test]
    async fn b64_json_and_gpt_image_models_carry_base64_data() {
        let sim = start(SimConfig::default()).await;
        let request = json!({"model": "dall-e-3", "prompt": "a cat", "response_format": "b64_json"});
        let (status, _, body) = post(&sim, &request, None).await;
        assert_eq!(status, StatusCode::OK);
        let v = json_of(&body);
        let digest = digest_of("dall-e-3", br#"{"prompt":"a cat","response_format":"b64_json"}"#);
        assert_eq!(unbase64(v["data"][0]["b64_json"].as_str().unwrap()), image_bytes(&digest, 0));
        assert!(v["data"][0]["revised_prompt"].is_string());

        let (_, _, body) = post(&sim, &json!({"model": "gpt-image-1", "prompt": "two cats", "quality": "low"}), None).await;
        let v = json_of(&body);
        assert!(v["data"][0]["b64_json"].is_string() && v["data"][0].get("url").is_none());
        assert_eq!((v["quality"].as_str(), v["size"].as_str(), v["output_format"].as_str()), (Some("low"), Some("1024x1024"), Some("png")));
        assert_eq!(v["usage"]["input_tokens"], 2);
        assert_eq!(v["usage"]["total_tokens"], 2 + 1056);
    }

    #[tokio::test]
    async fn a_replayed_key_answers_the_stored_bytes_unbilled() {
        let sim = start(SimConfig { seed: Some(1), ..SimConfig::default() }).await;
        let request = json!({"model": "gpt-image-1", "prompt": "a cat"});
        let (_, h1, first) = post(&sim, &request, Some("job-1")).await;
        assert!(h1.get(IDEMPOTENT_REPLAYED).is_none());
        let (status, h2, second) = post(&sim, &request, Some("job-1")).await;
        assert_eq!((status, second), (StatusCode::OK, first));
        assert_eq!(h2.get(IDEMPOTENT_REPLAYED).unwrap(), "true");
        let (status, _, body) = post(&sim, &json!({"model": "gpt-image-1", "prompt": "a dog"}), Some("job-1")).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(json_of(&body)["error"]["code"], "idempotency_mismatch");
        let stats = sim.sim.stats();
        assert_eq!((stats.image_calls, stats.items, stats.replays, stats.max_billed_per_input), (3, 1, 1, 1));

        // Concurrent calls with one key: billed once.
        let fox = json!({"model": "gpt-image-1", "prompt": "a fox"});
        let calls = (0..5).map(|_| post(&sim, &fox, Some("job-2")));
        let answers = futures_util::future::join_all(calls).await;
        assert!(answers.iter().all(|(s, _, b)| *s == StatusCode::OK && *b == answers[0].2));
        assert_eq!(sim.sim.stats().items, 2);
    }

    #[tokio::test]
    async fn invalid_requests_are_400_naming_the_param() {
        let sim = start(SimConfig::default()).await;
        for (body, param, code) in [
            (json!({"model": "gpt-image-1"}), Some("prompt"), None),
            (json!({"model": "gpt-image-1", "prompt": ""}), Some("prompt"), None),
            (json!({"model": "gpt-image-1", "prompt": 7}), Some("prompt"), None),
            (json!({"model": "gpt-image-1", "prompt": "x", "seed": 7}), Some("seed"), Some("unknown_parameter")),
            (json!({"model": "gpt-image-1", "prompt": "x", "n": 11}), Some("n"), None),
            (json!({"model": "dall-e-3", "prompt": "x", "n": 2}), Some("n"), None),
            (json!({"model": "gpt-image-1", "prompt": "x", "size": "1000x1000"}), Some("size"), None),
            (json!({"model": "dall-e-2", "prompt": "x", "response_format": "png"}), Some("response_format"), None),
            (json!({"model": "gpt-image-1", "prompt": "x", "quality": "ultra"}), Some("quality"), None),
            (json!({"model": "gpt-image-1", "prompt": "x", "stream": true}), Some("stream"), None),
            (json!({"model": "", "prompt": "x"}), Some("model"), None),
            (json!({"model": "dall-e-2", "prompt": "x".repeat(1001)}), Some("prompt"), None),
            (json!(["not", "an", "object"]), None, None),
        ] {
            let (status, _, answer) = post(&sim, &body, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
            let e = &json_of(&answer)["error"];
            assert_eq!(e["type"], "invalid_request_error", "{body}");
            assert_eq!(e["param"].as_str(), param, "{body}");
            assert_eq!(e["code"].as_str(), code, "{body}");
            assert!(e["message"].is_string());
        }
        // Nullable fields may be null; gpt-image-2 takes free sizes.
        let ok = json!({"model": "gpt-image-2", "prompt": "x", "n": null, "size": "2048x1152", "user": "u1"});
        assert_eq!(post(&sim, &ok, None).await.0, StatusCode::OK);
        let stats = sim.sim.stats();
        assert_eq!((stats.rejected, stats.items), (13, 1));
    }

    #[tokio::test]
    async fn a_wrong_or_missing_key_is_401_in_openai_shape() {
        let sim = start(SimConfig::default()).await;
        let url = format!("{}/v1/images/generations", sim.url);
        let http = reqwest::Client::new();
        let resp = http.post(&url).bearer_auth("sk-wrong").json(&json!({"prompt": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        let v: Value = resp.json().await.unwrap();
        assert_eq!((v["error"]["type"].as_str(), v["error"]["code"].as_str()), (Some("invalid_request_error"), Some("invalid_api_key")));
        assert!(!v.to_string().contains("sk-wrong"), "the key is not echoed");
        let resp = http.post(&url).json(&json!({"prompt": "x"})).send().await.unwrap();
        assert_eq!(resp.status(), 401);
        assert_eq!(sim.sim.stats().items, 0);
    }

    #[tokio::test]
    async fn faults_are_drawn_and_never_billed() {
        let sim = start(SimConfig { error_rate: 1.0, seed: Some(3), ..SimConfig::default() }).await;
        let request = json!({"model": "gpt-image-1", "prompt": "a cat"});
        for _ in 0..6 {
            let (status, _, body) = post(&sim, &request, Some("k")).await;
            assert!(status == StatusCode::INTERNAL_SERVER_ERROR || status == StatusCode::SERVICE_UNAVAILABLE, "{status}");
            assert_eq!(json_of(&body)["error"]["type"], "server_error");
        }

        sim.sim.set_config(SimConfig { rate_limit_rate: 1.0, api_key: Some(KEY.into()), ..SimConfig::default() });
        let (status, h, body) = post(&sim, &request, Some("k")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(json_of(&body)["error"]["code"], "rate_limit_exceeded");
        assert_eq!(h.get("retry-after").unwrap(), "1");
        assert_eq!(h.get("x-ratelimit-limit-requests").unwrap(), "50");
        assert_eq!(h.get("x-ratelimit-remaining-requests").unwrap(), "0");
        assert_eq!(h.get("x-ratelimit-reset-requests").unwrap(), "1s");

        sim.sim.set_config(SimConfig { item_error_rate: 1.0, api_key: Some(KEY.into()), ..SimConfig::default() });
        let (status, _, body) = post(&sim, &request, Some("k")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let e = &json_of(&body)["error"];
        assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("invalid_request_error"), Some(CONTENT_POLICY_VIOLATION)));

        sim.sim.set_config(SimConfig { garbage_rate: 1.0, seed: Some(5), api_key: Some(KEY.into()), ..SimConfig::default() });
        for _ in 0..40 {
            let (status, _, body) = post(&sim, &request, Some("k")).await;
            assert_eq!(status, StatusCode::OK);
            assert!(!well_formed(&body), "{}", String::from_utf8_lossy(&body));
        }
        let stats = sim.sim.stats();
        assert_eq!((stats.errors, stats.rate_limited, stats.item_errors, stats.garbage), (6, 1, 1, 40));
        assert_eq!((stats.items, stats.max_billed_per_input, stats.image_calls), (0, 0, 48));

        // Nothing was stored: the key now gets a fresh, billed answer.
        sim.sim.set_config(SimConfig { api_key: Some(KEY.into()), ..SimConfig::default() });
        let (status, _, body) = post(&sim, &request, Some("k")).await;
        assert!(status == StatusCode::OK && well_formed(&body));
        assert_eq!(sim.sim.stats().items, 1);
    }

    #[tokio::test]
    async fn a_slow_call_outlasts_a_client_timeout_unbilled() {
        let sim = start(SimConfig { slow_rate: 1.0, slow: Duration::from_secs(5), ..SimConfig::default() }).await;
        let sent = reqwest::Client::new()
            .post(format!("{}/v1/images/generations", sim.url))
            .bearer_auth(KEY)
            .timeout(Duration::from_millis(200))
            .json(&json!({"prompt": "x"}))
            .send()
            .await;
        assert!(sent.unwrap_err().is_timeout());
        let stats = sim.sim.stats();
        assert_eq!((stats.slow, stats.items), (1, 0));
    }

    #[tokio::test]
    async fn images_draws_do_not_shift_seeded_batch_draws() {
        let sim = start(SimConfig { seed: Some(9), ..SimConfig::default() }).await;
        let before = lock(&sim.sim.inner.rng).gen::<u64>();
        sim.sim.reset();
        post(&sim, &json!({"prompt": "x"}), None).await;
        assert_eq!(lock(&sim.sim.inner.rng).gen::<u64>(), before);
    }
}
