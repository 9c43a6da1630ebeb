//! `tenant create`, `tenant update`, `tenant list`.

use offpeak_core::tz::parse as parse_timezone;
use offpeak_store as db;

use crate::cli::{MigrateArgs, TenantCreateArgs, TenantUpdateArgs};

pub async fn create(a: TenantCreateArgs) -> anyhow::Result<()> {
    let tz = parse_timezone(&a.timezone)?;
    if a.daily_credits.is_some_and(|c| c < 0) {
        anyhow::bail!("--daily-credits must not be negative");
    }
    if a.user_daily_credits.is_some_and(|c| c < 0) {
        anyhow::bail!("--user-daily-credits must not be negative");
    }
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let (mut tenant, key) = db::tenants::create(&pool, &a.name, tz, a.daily_credits).await?;
    if a.user_daily_credits.is_some() || a.window.is_some() {
        let update = db::tenants::TenantUpdate {
            user_daily_credits: a.user_daily_credits.map(Some),
            window: a.window.map(Some),
            ..Default::default()
        };
        tenant = db::tenants::update(&pool, &tenant.name, &update).await?.unwrap_or(tenant);
    }
    println!("created tenant '{}' ({}) in {}", tenant.name, tenant.id, tenant.tz.name());
    println!("its API key follows; it is shown only now, store it:");
    println!("{key}");
    Ok(())
}

pub async fn update(a: TenantUpdateArgs) -> anyhow::Result<()> {
    let update = db::tenants::TenantUpdate {
        tz: a.timezone.as_deref().map(parse_timezone).transpose()?,
        daily_credits: a.daily_credits.map(|l| l.0),
        user_daily_credits: a.user_daily_credits.map(|l| l.0),
        window: a.window.map(|w| w.0),
        cache: a.cache,
    };
    if update.tz.is_none() && update.daily_credits.is_none() && update.user_daily_credits.is_none() && update.window.is_none()
        && update.cache.is_none()
    {
        anyhow::bail!("nothing to change: give --timezone, --daily-credits, --user-daily-credits, --window or --cache");
    }
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let t = db::tenants::update(&pool, &a.name, &update).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{}'", a.name))?;
    let window = t.window.map_or_else(|| "default".to_owned(), |w| w.to_string());
    if a.json {
        println!("{}", serde_json::json!({
            "id": t.id, "name": t.name, "timezone": t.tz.name(), "daily_credits": t.daily_credits,
            "user_daily_credits": t.user_daily_credits, "window": window, "cache": t.cache.as_str(),
        }));
    } else {
        let limit = |c: Option<i64>| c.map_or_else(|| "none".to_owned(), |c| c.to_string());
        println!(
            "tenant '{}': timezone {}, daily credits {}, per-user daily credits {}, window {window}, cache {}",
            t.name, t.tz.name(), limit(t.daily_credits), limit(t.user_daily_credits), t.cache
        );
    }
    Ok(())
}

pub async fn list(a: MigrateArgs) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let tenants = db::tenants::list(&pool).await?;
    println!("{:<36}  {:<24}  {:<24}  {:>13}  {:>18}  WINDOW", "ID", "NAME", "TIMEZONE", "DAILY_CREDITS", "USER_DAILY_CREDITS");
    for t in tenants {
        let limit = |c: Option<i64>| c.map_or_else(|| "-".to_owned(), |c| c.to_string());
        let window = t.window.map_or_else(|| "default".to_owned(), |w| w.to_string());
        println!(
            "{:<36}  {:<24}  {:<24}  {:>13}  {:>18}  {window}",
            t.id, t.name, t.tz.name(), limit(t.daily_credits), limit(t.user_daily_credits)
        );
    }
    Ok(())
}

