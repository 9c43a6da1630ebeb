//! The command line: `serve`, `migrate`, and operator commands. Every flag
//! is also an environment variable.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use sqlx::migrate::MigrateDatabase;

use offpeak_shared::broker::{self, Topology};
use offpeak_shared::clock::{SharedClock, SystemClock};
use offpeak_shared::config::{BrokerArgs, DatabaseArgs, PriceArgs};
use offpeak_shared::db;
use offpeak_shared::shutdown::{self, Shutdown};
use offpeak_shared::window::{parse_timezone, WindowSpec};

use crate::api::{ApiConfig, Limits};
use crate::release::{self, ReleaseConfig};
use crate::rescue::{self, RescueConfig};
use crate::startup::Loops;

#[derive(Debug, Parser)]
#[command(name = "offpeak-scheduler", version, about = "offpeak's HTTP API, release loop and operator commands")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if needed, apply pending migrations, and exit.
    Migrate(MigrateArgs),
    /// Run the HTTP API and the release loop.
    Serve(Box<ServeArgs>),
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Operate on jobs.
    #[command(subcommand)]
    Jobs(JobsCommand),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    #[command(flatten)]
    pub broker: BrokerArgs,
    #[command(flatten)]
    pub prices: PriceArgs,
    /// Address the HTTP API listens on.
    #[arg(long, env = "OFFPEAK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// The off-peak window in local wall-clock time, START-END (may wrap midnight).
    #[arg(long, env = "OFFPEAK_WINDOW", default_value = "02:00-06:00")]
    pub window: WindowSpec,
    /// Provider attempts a job gets before it is dead.
    #[arg(long, env = "OFFPEAK_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub max_attempts: i32,
    /// Most jobs per batch message.
    #[arg(long, env = "OFFPEAK_BATCH_MAX", default_value_t = release::BATCH_MAX_DEFAULT)]
    pub batch_max: usize,
    /// Most jobs one tenant gets released per round (fairness).
    #[arg(long, env = "OFFPEAK_RELEASE_PER_TENANT", default_value_t = release::PER_TENANT_DEFAULT)]
    pub release_per_tenant: i64,
    /// Most jobs released per round.
    #[arg(long, env = "OFFPEAK_RELEASE_ROUND_MAX", default_value_t = release::ROUND_MAX_DEFAULT)]
    pub release_round_max: i64,
    /// Pause between release rounds when nothing more is due, in milliseconds.
    #[arg(long, env = "OFFPEAK_RELEASE_INTERVAL_MS", default_value_t = release::RELEASE_INTERVAL_DEFAULT.as_millis() as u64)]
    pub release_interval_ms: u64,
    /// Ready batch messages in RabbitMQ above which release pauses (backpressure).
    #[arg(long, env = "OFFPEAK_MAX_QUEUE_DEPTH", default_value_t = release::MAX_QUEUE_DEPTH_DEFAULT)]
    pub max_queue_depth: u32,
    /// Seconds a batch with unfinished jobs may go untouched by any worker
    /// before the rescuer publishes it again (same batch id).
    #[arg(long, env = "OFFPEAK_VISIBILITY_TIMEOUT_SECS", default_value_t = rescue::VISIBILITY_TIMEOUT_DEFAULT.as_secs())]
    pub visibility_timeout_secs: u64,
    /// Seconds between rescue passes.
    #[arg(long, env = "OFFPEAK_RESCUE_INTERVAL_SECS", default_value_t = rescue::RESCUE_INTERVAL_DEFAULT.as_secs())]
    pub rescue_interval_secs: u64,
    /// Run only the API, not the release loop and the rescuer.
    #[arg(long, env = "OFFPEAK_NO_RELEASE", default_value_t = false)]
    pub no_release: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; its API key is printed alone on the last line (shown only this once).
    Create(TenantCreateArgs),
    /// List tenants.
    List(MigrateArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Give dead (or failed) jobs another chance: back to `held` with fresh
    /// attempts, in their next window (or at once with --now).
    Retry(JobsRetryArgs),
}

#[derive(Debug, Args)]
pub struct JobsRetryArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Which finished jobs: dead or failed.
    #[arg(long, default_value = "dead")]
    pub state: String,
    /// Only this tenant's jobs (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only jobs of this model.
    #[arg(long)]
    pub model: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 10_000)]
    pub limit: i64,
    /// Release at once instead of in each job's next off-peak window.
    #[arg(long)]
    pub now: bool,
    /// The off-peak window used for low-priority jobs.
    #[arg(long, env = "OFFPEAK_WINDOW", default_value = "02:00-06:00")]
    pub window: WindowSpec,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TenantCreateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Unique name.
    #[arg(long)]
    pub name: String,
    /// Default IANA timezone of the tenant's jobs.
    #[arg(long, default_value = "UTC")]
    pub timezone: String,
    /// Daily credit limit (none by default).
    #[arg(long)]
    pub daily_credits: Option<i64>,
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever stops the command; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(a) => migrate(&a.db).await,
        Command::Serve(a) => serve(*a).await,
        Command::Tenant(TenantCommand::Create(a)) => tenant_create(a).await,
        Command::Tenant(TenantCommand::List(a)) => tenant_list(a).await,
        Command::Jobs(JobsCommand::Retry(a)) => jobs_retry(a).await,
    }
}

async fn migrate(db_args: &DatabaseArgs) -> anyhow::Result<()> {
    if !sqlx::Postgres::database_exists(&db_args.database_url).await.unwrap_or(false) {
        sqlx::Postgres::create_database(&db_args.database_url).await?;
        tracing::info!("created the database");
    }
    let pool = db::connect(&db_args.database_url, 2, db_args.connect_timeout()).await?;
    db::migrate(&pool).await?;
    tracing::info!("migrations applied");
    Ok(())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if a.batch_max == 0 || a.release_per_tenant < 1 || a.release_round_max < 1 || a.max_queue_depth == 0 {
        anyhow::bail!("--batch-max, --release-per-tenant, --release-round-max and --max-queue-depth must be at least 1");
    }
    let prices = a.prices.table()?;
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    let pool = db::connect(&a.db.database_url, a.db.db_max_connections, a.db.connect_timeout()).await?;
    let publisher =
        broker::Publisher::connect(&a.broker.amqp_url, "offpeak-scheduler", Topology::new(&a.broker.queue), a.db.connect_timeout())
            .await?;
    let clock: SharedClock = std::sync::Arc::new(SystemClock);
    let api = ApiConfig { window: a.window, prices, max_attempts: a.max_attempts, limits: Limits::default() };
    let release = (!a.no_release).then(|| ReleaseConfig {
        interval: Duration::from_millis(a.release_interval_ms),
        batch_max: a.batch_max,
        per_tenant: a.release_per_tenant,
        round_max: a.release_round_max,
        max_queue_depth: a.max_queue_depth,
        window: a.window,
    });
    let rescue = (!a.no_release).then(|| RescueConfig {
        interval: Duration::from_secs(a.rescue_interval_secs.max(1)),
        visibility_timeout: Duration::from_secs(a.visibility_timeout_secs),
        limit: rescue::RESCUE_LIMIT_DEFAULT,
    });
    let loops = Loops { release, rescue };
    let (trigger, signal) = Shutdown::new();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        tracing::info!("shutdown requested; draining");
        trigger.trigger();
    });
    crate::startup::serve(listener, pool, publisher.clone(), clock, api, loops, signal).await?;
    publisher.close().await;
    Ok(())
}

async fn tenant_create(a: TenantCreateArgs) -> anyhow::Result<()> {
    parse_timezone(&a.timezone)?;
    if a.daily_credits.is_some_and(|c| c < 0) {
        anyhow::bail!("--daily-credits must not be negative");
    }
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let (tenant, key) = db::tenants::create(&pool, &a.name, &a.timezone, a.daily_credits).await?;
    println!("created tenant '{}' ({}) in {}", tenant.name, tenant.id, tenant.timezone);
    println!("its API key follows; it is shown only now, store it:");
    println!("{key}");
    Ok(())
}

async fn tenant_list(a: MigrateArgs) -> anyhow::Result<()> {
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let tenants = db::tenants::list(&pool).await?;
    println!("{:<36}  {:<24}  {:<24}  {:>13}", "ID", "NAME", "TIMEZONE", "DAILY_CREDITS");
    for t in tenants {
        let limit = t.daily_credits.map_or_else(|| "-".to_owned(), |c| c.to_string());
        println!("{:<36}  {:<24}  {:<24}  {:>13}", t.id, t.name, t.timezone, limit);
    }
    Ok(())
}

async fn jobs_retry(a: JobsRetryArgs) -> anyhow::Result<()> {
    use offpeak_shared::db::jobs::{self as jobs_db, RetryFilter};
    use offpeak_shared::job::JobState;
    let state: JobState = a.state.parse()?;
    if !matches!(state, JobState::Dead | JobState::Failed) {
        anyhow::bail!("--state must be dead or failed");
    }
    let pool = db::connect(&a.db.database_url, 2, a.db.connect_timeout()).await?;
    let tenant_id = match &a.tenant {
        Some(name) => Some(
            db::tenants::by_name(&pool, name).await?.ok_or_else(|| anyhow::anyhow!("no tenant named '{name}'"))?.id,
        ),
        None => None,
    };
    let filter = RetryFilter { state, tenant_id, model: a.model.clone(), limit: a.limit };
    let now = chrono::Utc::now();
    let mut moved: Vec<(String, uuid::Uuid, chrono::DateTime<chrono::Utc>)> = Vec::new();
    for tz_name in jobs_db::retry_timezones(&pool, &filter).await? {
        let (release_at, closes) = if a.now {
            (now, None)
        } else {
            let w = offpeak_shared::window::next_window(parse_timezone(&tz_name)?, now, &a.window);
            (w.opens_at, Some(w.closes_at))
        };
        let left = filter.limit - moved.len() as i64;
        if left <= 0 {
            break;
        }
        let ids = jobs_db::retry(&pool, &RetryFilter { limit: left, ..filter.clone() }, &tz_name, release_at, closes, now).await?;
        moved.extend(ids.into_iter().map(|id| (tz_name.clone(), id, release_at)));
    }
    if a.json {
        let out: Vec<_> = moved
            .iter()
            .map(|(tz, id, at)| serde_json::json!({"id": id, "timezone": tz, "release_at": at}))
            .collect();
        println!("{}", serde_json::json!({"retried": out.len(), "jobs": out}));
    } else {
        println!("{:<36}  {:<24}  RELEASE_AT", "JOB", "TIMEZONE");
        for (tz, id, at) in &moved {
            println!("{id:<36}  {tz:<24}  {}", at.to_rfc3339());
        }
        println!("{} {} job(s) back to held", moved.len(), state);
    }
    Ok(())
}
