//! `webhooks list`, `webhooks enable`, `webhooks disable`: the operator's
//! view of every tenant's endpoints (the dashboard's webhooks panel reads
//! the same query).

use offpeak_store as db;
use offpeak_store::webhooks::{self as hooks, EndpointUpdate};

use crate::cli::{WebhookIdArgs, WebhooksCommand};

/// An endpoint as the operator sees it, with its deliveries counted by
/// state: `webhooks list --json` prints these, the dashboard's webhooks
/// panel shows them.
#[derive(Debug, serde::Serialize)]
pub struct EndpointView {
    pub id: uuid::Uuid,
    pub tenant: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub enabled: bool,
    pub disabled_at: Option<chrono::DateTime<chrono::Utc>>,
    pub disabled_reason: Option<String>,
    pub failing_since: Option<chrono::DateTime<chrono::Utc>>,
    pub pending: i64,
    pub delivered: i64,
    pub failed: i64,
    pub last_error: Option<String>,
}

impl From<hooks::OperatorEndpoint> for EndpointView {
    fn from(r: hooks::OperatorEndpoint) -> Self {
        Self {
            id: r.id,
            tenant: r.tenant,
            url: r.url,
            events: r.events,
            description: r.description,
            created_at: r.created_at,
            enabled: r.disabled_at.is_none(),
            disabled_at: r.disabled_at,
            disabled_reason: r.disabled_reason,
            failing_since: r.failing_since,
            pending: r.pending,
            delivered: r.delivered,
            failed: r.failed,
            last_error: r.last_error,
        }
    }
}

/// Runs one `webhooks` subcommand.
///
/// # Errors
/// An unknown tenant or endpoint, or database errors.
pub async fn run(c: WebhooksCommand) -> anyhow::Result<()> {
    match c {
        WebhooksCommand::List(a) => {
            let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
            if let Some(name) = &a.tenant {
                db::tenants::by_name(&pool, name).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{name}'"))?;
            }
            let rows = hooks::operator_list(&pool, a.tenant.as_deref()).await?;
            if a.json {
                let out: Vec<EndpointView> = rows.into_iter().map(EndpointView::from).collect();
                println!("{}", serde_json::json!({ "webhooks": out }));
            } else {
                println!("{:<36}  {:<16}  {:<9}  {:>8}  {:>9}  {:>6}  {:<20}  URL", "ID", "TENANT", "STATE", "PENDING", "DELIVERED", "FAILED", "FAILING_SINCE");
                for r in rows {
                    let state = if r.disabled_at.is_some() { "disabled" } else if r.failing_since.is_some() { "failing" } else { "ok" };
                    let since = r.failing_since.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
                    println!(
                        "{:<36}  {:<16}  {:<9}  {:>8}  {:>9}  {:>6}  {:<20}  {}",
                        r.id, r.tenant, state, r.pending, r.delivered, r.failed, since, r.url
                    );
                    if let Some(reason) = &r.disabled_reason {
                        println!("    disabled: {reason}");
                    }
                }
            }
            Ok(())
        }
        WebhooksCommand::Enable(a) => set_enabled(a, true).await,
        WebhooksCommand::Disable(a) => set_enabled(a, false).await,
    }
}

async fn set_enabled(a: WebhookIdArgs, enabled: bool) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let tenant_id = hooks::tenant_of(&pool, a.id)
        .await?.ok_or_else(|| anyhow::anyhow!("no webhook endpoint with id {}", a.id))?;
    let update = EndpointUpdate { enabled: Some(enabled), ..EndpointUpdate::default() };
    hooks::update(&pool, tenant_id, a.id, &update, offpeak_store::clock::database_now(&pool).await?).await?;
    println!("{} {}", a.id, if enabled { "enabled" } else { "disabled" });
    Ok(())
}
