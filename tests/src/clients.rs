//! What the clients in `clients/` are generated from and tested against: a
//! real offpeak (the simulator, `offpeak-scheduler serve` and two workers, as
//! [`Stack`] starts them) with three tenants, and the API's OpenAPI document in
//! the portable form the clients are generated from.
//!
//! `offpeak-client-stack` (tests/src/bin) runs a command against such a
//! stack; `tests/tests/api/clients.rs` runs each client's generation check
//! and test suite through it, so `tests/run.sh` does both.

use std::time::Duration;

use serde_json::{json, Value};

use crate::bench::stack::{Stack, StackConfig};
use crate::harness::{amqp_url, database_url};

/// The environment a client's test suite reads.
pub const URL_VAR: &str = "OFFPEAK_URL";
/// The API key of the tenant `bench` (UTC), the one the stack starts with.
pub const KEY_VAR: &str = "OFFPEAK_API_KEY";
/// The API key of a second tenant, `rival`, that must never see the first one's objects.
pub const RIVAL_KEY_VAR: &str = "OFFPEAK_RIVAL_API_KEY";
/// The API key of a third tenant, `frugal`, with a daily limit of 10 credits
/// (a `flux-pro` job costs 5): its third such job is a 429 `quota_exceeded`
/// whose `Retry-After` is the hours until the day resets.
pub const FRUGAL_KEY_VAR: &str = "OFFPEAK_FRUGAL_API_KEY";
/// The simulator's base URL (`GET /v1/stats` counts what the provider billed).
pub const SIM_URL_VAR: &str = "OFFPEAK_SIM_URL";

/// A running stack for the clients' tests.
pub struct ClientStack {
    pub stack: Stack,
    pub rival_key: String,
    pub frugal_key: String,
}

impl ClientStack {
    /// Starts the simulator, the scheduler and two workers on a database and
    /// a queue of their own, with webhooks allowed to loopback receivers and
    /// delivered promptly, and creates the tenants `rival` and `frugal` beside its `bench`.
    ///
    /// # Errors
    /// Services unreachable, a binary that does not start.
    pub async fn start() -> anyhow::Result<Self> {
        let env = [
            // The clients' tests receive webhooks on 127.0.0.1.
            ("OFFPEAK_WEBHOOK_ALLOW_PRIVATE", "true"),
            ("OFFPEAK_RELEASE_INTERVAL_MS", "50"),
        ];
        let config = StackConfig {
            database_url: database_url(),
            amqp_url: amqp_url(),
            workers: 2,
            sim_latency: Duration::from_millis(5),
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            keep: false,
        };
        let stack = Stack::start("clients", config).await?;
        let (_, rival_key) = offpeak_store::tenants::create(&stack.pool, "rival", chrono_tz::UTC, None).await?;
        let (_, frugal_key) = offpeak_store::tenants::create(&stack.pool, "frugal", chrono_tz::UTC, Some(10)).await?;
        Ok(Self { stack, rival_key, frugal_key })
    }

    /// The variables a client's test suite reads: [`URL_VAR`], [`KEY_VAR`],
    /// [`RIVAL_KEY_VAR`], [`FRUGAL_KEY_VAR`] and [`SIM_URL_VAR`].
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            (URL_VAR, self.stack.api.clone()),
            (KEY_VAR, self.stack.key.clone()),
            (RIVAL_KEY_VAR, self.rival_key.clone()),
            (FRUGAL_KEY_VAR, self.frugal_key.clone()),
            (SIM_URL_VAR, self.stack.sim_url.clone()),
        ]
    }

    /// The served `/openapi.json`.
    ///
    /// # Errors
    /// The scheduler does not answer, or not with JSON.
    pub async fn document(&self) -> anyhow::Result<Value> {
        let url = format!("{}/openapi.json", self.stack.api);
        Ok(self.stack.http.get(url).send().await?.error_for_status()?.json().await?)
    }

    /// Stops the processes and drops the database and queues.
    pub async fn stop(self) {
        self.stack.stop().await;
    }
}

/// The served document made independent of the deployment it was read from,
/// which is what the clients are generated from (`clients/openapi.json`).
///
/// A served document describes one deployment exactly (see the scheduler's
/// `api::openapi::document`): `Model` is an enum of its price table, `UseCase`
/// of its routes, `Timezone` of the IANA names its build knows, and the bulk
/// limit is its configured one. A client generated from that would refuse a
/// model another deployment offers, or fail to read a job of one. Here those
/// become what any deployment accepts: strings (and no `maxItems` on bulk
/// inputs), each with a description that says where the values come from.
/// Everything else is left as served, so the clients' types are the API's.
pub fn portable_document(mut doc: Value) -> Value {
    let schemas = &mut doc["components"]["schemas"];
    let relaxed = [
        ("Model", "A model of the deployment's price table (`OFFPEAK_PRICES`), or `auto` with a `use_case`."),
        ("UseCase", "A use case of the deployment's routing table (`OFFPEAK_ROUTES`), for `\"model\": \"auto\"`."),
        ("Timezone", "An IANA timezone name, such as `Europe/Berlin`."),
    ];
    for (name, description) in relaxed {
        if schemas.get(name).is_some() {
            schemas[name] = json!({"type": "string", "description": description});
        }
    }
    if let Some(inputs) = schemas.pointer_mut("/BulkRequest/properties/inputs").and_then(Value::as_object_mut) {
        inputs.remove("maxItems");
    }
    // The tie between `model: "auto"` and `use_case` (a `oneOf` beside the
    // properties, and `anyOf: [Model, {"const": "auto"}]`) names the
    // deployment's tables; with `Model` a string, `auto` is one of its
    // values and the server checks the tie (a 422 naming the field).
    if let Some(schemas) = schemas.as_object_mut() {
        for schema in schemas.values_mut().filter_map(Value::as_object_mut) {
            let ties_model = schema.get("oneOf").and_then(Value::as_array).is_some_and(|branches| {
                branches.iter().all(|b| b["properties"].as_object().is_some_and(|p| p.keys().all(|k| k == "model" || k == "use_case")))
            });
            if ties_model {
                schema.remove("oneOf");
            }
            if let Some(model) = schema.get_mut("properties").and_then(|p| p.get_mut("model")).and_then(Value::as_object_mut) {
                let branches = model.get("anyOf").and_then(Value::as_array).map(|branches| {
                    branches.iter().filter(|b| b.get("const") != Some(&json!("auto"))).cloned().collect::<Vec<_>>()
                });
                match branches {
                    Some(mut one) if one.len() == 1 => {
                        model.remove("anyOf");
                        if let Some(only) = one.pop().and_then(|o| o.as_object().cloned()) {
                            model.extend(only);
                        }
                    }
                    Some(several) => {
                        model.insert("anyOf".into(), Value::Array(several));
                    }
                    None => {}
                }
            }
        }
    }
    doc
}
