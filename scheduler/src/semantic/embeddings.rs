//! The embeddings client: any OpenAI-compatible endpoint (OpenAI, Azure,
//! text-embeddings-inference, Ollama, vLLM, LiteLLM, and our simulator).
//!
//! `POST {url}/v1/embeddings` with `{"model", "input": [texts],
//! "encoding_format": "float"}` (and `"dimensions"` when configured);
//! the answer's `data` holds one `{"index", "embedding"}` per text.
//!
//! Every call has a deadline (2 s by default) covering its retries: the
//! semantic cache fails open, so a slow or broken endpoint costs a round
//! at most the deadline and then the jobs go to the provider as misses.
//! A 429, a 5xx or a connection error is retried once, after 100 ms, if
//! the deadline leaves room; anything else (another 4xx, an answer that
//! breaks the contract) is not. Redirects are not followed, so the call
//! reaches only the address the operator configured. The API key is sent
//! as a bearer token and never logged; error messages carry the status
//! and at most 200 characters of the endpoint's body.

use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::json;

use crate::metrics;

/// Default deadline of one embeddings call, retries included.
pub const TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);
/// Default embeddings model (`OFFPEAK_EMBEDDINGS_MODEL`).
pub const MODEL_DEFAULT: &str = "text-embedding-3-small";
/// Texts per call: OpenAI takes at most 2048 inputs per request.
pub const MAX_TEXTS_PER_CALL: usize = 256;

/// Where and how to embed.
#[derive(Clone)]
pub struct EmbeddingsConfig {
    /// The base URL; `/v1/embeddings` is appended.
    pub url: String,
    pub model: String,
    pub api_key: Option<String>,
    pub timeout: Duration,
    /// `dimensions` to ask for (text-embedding-3 models shorten their
    /// vectors on request); `None` takes the model's own.
    pub dimensions: Option<u32>,
}

// By hand, so that logging the configuration never prints the key.
impl std::fmt::Debug for EmbeddingsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddingsConfig")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout", &self.timeout)
            .field("dimensions", &self.dimensions)
            .finish()
    }
}

/// Why a call gave no vectors.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    #[error("embeddings call timed out after {0} ms")]
    Timeout(u128),
    #[error("embeddings endpoint unreachable: {0}")]
    Connect(String),
    #[error("embeddings endpoint answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("embeddings answer breaks the contract: {0}")]
    Garbage(String),
}

impl EmbedError {
    /// The metric label of the outcome.
    pub fn kind(&self) -> &'static str {
        match self {
            EmbedError::Timeout(_) => "timeout",
            EmbedError::Connect(_) => "unreachable",
            EmbedError::Status { .. } => "error_status",
            EmbedError::Garbage(_) => "garbage",
        }
    }

    fn transient(&self) -> bool {
        match self {
            EmbedError::Connect(_) => true,
            EmbedError::Status { status, .. } => *status == 429 || *status >= 500,
            EmbedError::Timeout(_) | EmbedError::Garbage(_) => false,
        }
    }
}

#[derive(Deserialize)]
struct Answer {
    data: Vec<Item>,
}

#[derive(Deserialize)]
struct Item {
    index: usize,
    embedding: Vec<f32>,
}

/// The client, built once.
#[derive(Clone)]
pub struct Embeddings {
    client: reqwest::Client,
    endpoint: String,
    cfg: EmbeddingsConfig,
}

impl Embeddings {
    /// # Errors
    /// The HTTP client cannot be built (TLS backend).
    pub fn new(cfg: EmbeddingsConfig) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(cfg.timeout)
            .user_agent(concat!("offpeak/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let endpoint = format!("{}/v1/embeddings", cfg.url.trim_end_matches('/'));
        Ok(Self { client, endpoint, cfg })
    }

    /// The embeddings model: vectors of different models are never compared.
    pub fn model(&self) -> &str {
        &self.cfg.model
    }

    /// The unit vectors of `texts`, in their order; all of one length.
    ///
    /// # Errors
    /// See the module docs: the caller treats any error as a miss.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let started = Instant::now();
        let deadline = started + self.cfg.timeout;
        let mut attempt = 0;
        let outcome = loop {
            attempt += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let r = match tokio::time::timeout(left, self.call(texts)).await {
                Ok(r) => r,
                Err(_) => Err(EmbedError::Timeout(self.cfg.timeout.as_millis())),
            };
            match r {
                Err(e) if e.transient() && attempt < 2 && deadline.saturating_duration_since(Instant::now()) > Duration::from_millis(200) => {
                    metrics::EMBEDDINGS_CALLS.with_label_values(&[e.kind()]).inc();
                    tracing::warn!(error = %e, texts = texts.len(), "embeddings call failed; retrying once");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                r => break r,
            }
        };
        metrics::EMBEDDINGS_SECONDS.observe(started.elapsed().as_secs_f64());
        match &outcome {
            Ok(_) => {
                metrics::EMBEDDINGS_CALLS.with_label_values(&["ok"]).inc();
                metrics::EMBEDDED_TEXTS.inc_by(texts.len() as u64);
            }
            Err(e) => metrics::EMBEDDINGS_CALLS.with_label_values(&[e.kind()]).inc(),
        }
        outcome
    }

    async fn call(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let mut body = json!({"model": self.cfg.model, "input": texts, "encoding_format": "float"});
        if let Some(d) = self.cfg.dimensions {
            body["dimensions"] = json!(d);
        }
        let mut req = self.client.post(&self.endpoint).json(&body);
        if let Some(key) = &self.cfg.api_key {
            req = req.bearer_auth(key);
        }
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(EmbedError::Status { status: status.as_u16(), body: text.chars().take(200).collect() });
        }
        parse(&bytes, texts.len())
    }

    /// A failure to send or to read the answer: a timeout, or the
    /// connection's error without the URL (reqwest's message names it, and
    /// an operator's URL may carry credentials).
    fn transport_error(&self, e: reqwest::Error) -> EmbedError {
        if e.is_timeout() {
            EmbedError::Timeout(self.cfg.timeout.as_millis())
        } else {
            EmbedError::Connect(e.without_url().to_string())
        }
    }
}

/// An answer's vectors, checked against the contract: one per text, each
/// index once, all of one non-zero length, finite, and normalised here
/// (some endpoints do not normalise).
fn parse(bytes: &[u8], texts: usize) -> Result<Vec<Vec<f32>>, EmbedError> {
    let answer: Answer = serde_json::from_slice(bytes).map_err(|e| EmbedError::Garbage(e.to_string()))?;
    if answer.data.len() != texts {
        return Err(EmbedError::Garbage(format!("{} embeddings for {texts} texts", answer.data.len())));
    }
    let mut out: Vec<Option<Vec<f32>>> = vec![None; texts];
    let mut dim = None;
    for item in answer.data {
        let slot = out.get_mut(item.index).ok_or_else(|| EmbedError::Garbage(format!("index {} out of range", item.index)))?;
        if slot.is_some() {
            return Err(EmbedError::Garbage(format!("index {} twice", item.index)));
        }
        if *dim.get_or_insert(item.embedding.len()) != item.embedding.len() {
            return Err(EmbedError::Garbage("embeddings of different lengths".into()));
        }
        let v = offpeak_core::semantic::normalize(item.embedding)
            .ok_or_else(|| EmbedError::Garbage(format!("embedding {} is empty, zero or not finite", item.index)))?;
        *slot = Some(v);
    }
    // Every slot is filled: `data` had `texts` items, each index once.
    Ok(out.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn answers_that_break_the_contract_are_refused() {
        let ok = br#"{"object": "list", "data": [{"object": "embedding", "index": 1, "embedding": [0, 2]},
                                                {"object": "embedding", "index": 0, "embedding": [3, 4]}]}"#;
        let v = parse(ok, 2).unwrap();
        assert_eq!(v, vec![vec![0.6, 0.8], vec![0.0, 1.0]], "in index order, normalised");
        for bad in [
            &br#"{"data": [{"index": 0, "embedding": [1, 0]}]}"#[..],
            br#"{"data": [{"index": 0, "embedding": [1, 0]}, {"index": 0, "embedding": [1, 0]}]}"#,
            br#"{"data": [{"index": 0, "embedding": [1, 0]}, {"index": 2, "embedding": [1, 0]}]}"#,
            br#"{"data": [{"index": 0, "embedding": [1, 0]}, {"index": 1, "embedding": [1, 0, 0]}]}"#,
            br#"{"data": [{"index": 0, "embedding": [0, 0]}, {"index": 1, "embedding": [1, 0]}]}"#,
            br#"{"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1]}]}"#,
            br#"<html>"#,
            br#"{"data": [{"index": 0, "embedding": [1, 0]}"#,
        ] {
            assert!(parse(bad, 2).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
