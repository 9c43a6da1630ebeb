//! The command line: `serve`, `migrate`, and operator commands. Every flag
//! is also an environment variable.

use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};

use offpeak_runtime::broker::{self, Topology};
use offpeak_core::clock::SharedClock;
use offpeak_runtime::config::{BrokerArgs, DatabaseArgs, PriceArgs};
use offpeak_store as db;
use offpeak_runtime::shutdown::{self, Shutdown};
use offpeak_core::window::WindowSpec;

use crate::api::{ApiConfig, Limits};
use crate::ops;
use crate::firing::{self, FiringConfig};
use crate::prune::{self, PruneConfig};
use crate::release::{self, ReleaseConfig};
use crate::rescue::{self, RescueConfig};
use crate::startup::Loops;
use crate::operator_token::OperatorToken;

#[derive(Debug, Parser)]
#[command(
    name = "offpeak-scheduler",
    version,
    about = "offpeak's HTTP API, release loop and operator commands",
    after_help = "Every flag is also an environment variable. Providers, models, prices and routes can come from one \
                  configuration file: `serve --config FILE` (OFFPEAK_CONFIG), checked at start; see docs/configuration.md."
)]
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
    /// Operate on recurring schedules.
    #[command(subcommand)]
    Schedules(SchedulesCommand),
    /// Webhook endpoints of every tenant: their health and deliveries.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Delete finished jobs older than the retention period.
    Prune(PruneArgs),
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
    #[command(flatten)]
    pub limits: crate::api::LimitArgs,
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
    /// Most jobs one tenant gets released per round (fairness); a round is
    /// split evenly between the tenants with due jobs, up to this many each.
    #[arg(long, env = "OFFPEAK_RELEASE_PER_TENANT", default_value_t = release::PER_TENANT_DEFAULT)]
    pub release_per_tenant: i64,
    /// Most jobs released per round.
    #[arg(long, env = "OFFPEAK_RELEASE_ROUND_MAX", default_value_t = release::ROUND_MAX_DEFAULT)]
    pub release_round_max: i64,
    /// Longest pause between release rounds when nothing more is due, in milliseconds: the poll
    /// for work nobody announced. The loop wakes earlier at the next instant a held job becomes due
    /// or its window closes, and when a job due now is announced (LISTEN offpeak_release).
    #[arg(long, env = "OFFPEAK_RELEASE_INTERVAL_MS", default_value_t = release::RELEASE_INTERVAL_DEFAULT.as_millis() as u64)]
    pub release_interval_ms: u64,
    /// Least time from the start of a release round to a round that an announcement of due jobs
    /// starts, in milliseconds: under a stream of jobs due now, at most one round per this.
    #[arg(long, env = "OFFPEAK_RELEASE_NOTIFY_GAP_MS", default_value_t = release::NOTIFY_GAP_DEFAULT.as_millis() as u64)]
    pub release_notify_gap_ms: u64,
    /// Let a bulk submission due at once publish its own jobs, stored `queued` in their batches, while
    /// this replica's release loop leaves nothing due behind and the queue has room (`true`/`false`).
    /// Each job row is then written twice instead of three times, and no round is waited for.
    #[arg(long, env = "OFFPEAK_RELEASE_AT_SUBMIT", default_value_t = true, action = clap::ArgAction::Set)]
    pub release_at_submit: bool,
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
    /// Pause between firing rounds (recurring schedules) when nothing more is due, in milliseconds.
    #[arg(long, env = "OFFPEAK_FIRING_INTERVAL_MS", default_value_t = firing::FIRING_INTERVAL_DEFAULT.as_millis() as u64)]
    pub firing_interval_ms: u64,
    /// Seconds after its fire time a schedule's firing is still on time; older ones were missed and follow the schedule's catch_up.
    #[arg(long, env = "OFFPEAK_MISFIRE_GRACE_SECS", default_value_t = firing::MISFIRE_GRACE_DEFAULT.as_secs())]
    pub misfire_grace_secs: u64,
    /// Most missed firings a `catch_up: all` schedule makes after an outage (the most recent ones).
    #[arg(long, env = "OFFPEAK_MAX_CATCH_UP", default_value_t = firing::MAX_CATCH_UP_DEFAULT)]
    pub max_catch_up: usize,
    /// Finished jobs older than this many days are deleted by the pruner (usage is kept).
    #[arg(long, env = "OFFPEAK_RETENTION_DAYS", default_value_t = prune::RETENTION_DAYS_DEFAULT, value_parser = clap::value_parser!(i64).range(0..))]
    pub retention_days: i64,
    /// Seconds between pruner passes.
    #[arg(long, env = "OFFPEAK_PRUNE_INTERVAL_SECS", default_value_t = prune::PRUNE_INTERVAL_DEFAULT.as_secs())]
    pub prune_interval_secs: u64,
    /// Do not run the pruner on this replica (prune with `offpeak-scheduler prune` instead).
    #[arg(long, env = "OFFPEAK_NO_PRUNE", default_value_t = false)]
    pub no_prune: bool,
    /// Seconds a replica trusts an API key it has looked up: a revoked key or
    /// a changed tenant takes effect within this time (0: look up every request).
    #[arg(long, env = "OFFPEAK_AUTH_CACHE_SECS", default_value_t = crate::api::auth::AUTH_CACHE_TTL_DEFAULT.as_secs())]
    pub auth_cache_secs: u64,
    /// Transactions that commit single submissions (`POST /v1/jobs` without an Idempotency-Key)
    /// in groups: each takes whatever submissions are waiting and commits them with one WAL flush.
    /// Each holds a database connection while it commits; keep it below OFFPEAK_DB_MAX_CONNECTIONS.
    /// 0 commits each submission in its own transaction.
    #[arg(long, env = "OFFPEAK_SUBMIT_LANES", default_value_t = crate::group_commit::LANES_DEFAULT)]
    pub submit_lanes: usize,
    /// The most single submissions one group commit takes.
    #[arg(long, env = "OFFPEAK_SUBMIT_GROUP_MAX", default_value_t = crate::group_commit::MAX_GROUP_DEFAULT)]
    pub submit_group_max: usize,
    /// Do not run the firing loop of recurring schedules on this replica.
    #[arg(long, env = "OFFPEAK_NO_FIRING", default_value_t = false)]
    pub no_firing: bool,
    /// Allow webhook URLs with `http://` and loopback, private and link-local destinations
    /// (tests, the demo, a private network). Off: only `https://` to public addresses.
    #[arg(long, env = "OFFPEAK_WEBHOOK_ALLOW_PRIVATE", default_value_t = false)]
    pub webhook_allow_private: bool,
    /// Seconds a webhook receiver has to answer one delivery.
    #[arg(long, env = "OFFPEAK_WEBHOOK_TIMEOUT_SECS", default_value_t = crate::webhooks::http::DEFAULT_TIMEOUT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub webhook_timeout_secs: u64,
    /// Hours an endpoint may fail every delivery before it is disabled.
    #[arg(long, env = "OFFPEAK_WEBHOOK_DISABLE_AFTER_HOURS", default_value_t = crate::webhooks::DISABLE_AFTER_DEFAULT.as_secs() / 3600,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub webhook_disable_after_hours: u64,
    /// Most webhook deliveries in flight at once for one endpoint.
    #[arg(long, env = "OFFPEAK_WEBHOOK_PER_ENDPOINT", default_value_t = crate::webhooks::PER_ENDPOINT_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub webhook_per_endpoint: usize,
    /// Most webhook deliveries in flight at once on this replica while the jobs' pipeline is busy
    /// (batches waiting in the queue, jobs being released); 0 pauses deliveries until it is not.
    #[arg(long, env = "OFFPEAK_WEBHOOK_BUSY_IN_FLIGHT", default_value_t = crate::webhooks::BUSY_IN_FLIGHT_DEFAULT)]
    pub webhook_busy_in_flight: usize,
    /// Longest, in seconds, deliveries hold back for one busy spell of the jobs' pipeline; then
    /// they run beside it at full size.
    #[arg(long, env = "OFFPEAK_WEBHOOK_MAX_PAUSE_SECS", default_value_t = crate::webhooks::MAX_PAUSE_DEFAULT.as_secs())]
    pub webhook_max_pause_secs: u64,
    /// Do not run the webhook delivery loop (and group completion) on this replica.
    #[arg(long, env = "OFFPEAK_NO_WEBHOOKS", default_value_t = false)]
    pub no_webhooks: bool,
    /// Seconds a provider result answers identical jobs (same tenant, model and input) for 0 credits;
    /// 0 turns the exact cache and the coalescing of identical jobs off.
    #[arg(long, env = "OFFPEAK_CACHE_TTL_SECS", default_value_t = crate::admission::CACHE_TTL_DEFAULT.as_secs())]
    pub cache_ttl_secs: u64,
    /// Base URL of an OpenAI-compatible embeddings endpoint (`POST {url}/v1/embeddings`) for the semantic
    /// cache; unset, jobs that ask for `"cache": "semantic"` get the exact cache only.
    #[arg(long, env = "OFFPEAK_EMBEDDINGS_URL")]
    pub embeddings_url: Option<String>,
    /// The embeddings model named in each call.
    #[arg(long, env = "OFFPEAK_EMBEDDINGS_MODEL", default_value = crate::semantic::embeddings::MODEL_DEFAULT)]
    pub embeddings_model: String,
    /// Bearer key of the embeddings endpoint (never logged).
    #[arg(long, env = "OFFPEAK_EMBEDDINGS_API_KEY", hide_env_values = true)]
    pub embeddings_api_key: Option<String>,
    /// Deadline of one embeddings call, retries included, in milliseconds; past it the jobs are misses.
    #[arg(long, env = "OFFPEAK_EMBEDDINGS_TIMEOUT_MS", default_value_t = crate::semantic::embeddings::TIMEOUT_DEFAULT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub embeddings_timeout_ms: u64,
    /// `dimensions` to ask the embeddings model for (text-embedding-3 models shorten their vectors on request).
    #[arg(long, env = "OFFPEAK_EMBEDDINGS_DIMENSIONS", value_parser = clap::value_parser!(u32).range(1..))]
    pub embeddings_dimensions: Option<u32>,
    /// Least cosine similarity of two prompts for one job's result to answer the other (0 < t <= 1).
    #[arg(long, env = "OFFPEAK_SEMANTIC_THRESHOLD", default_value_t = crate::semantic::THRESHOLD_DEFAULT, value_parser = parse_threshold)]
    pub semantic_threshold: f32,
    /// JSON pointer to the prompt in a job's input; every other field must be equal for a semantic hit.
    #[arg(long, env = "OFFPEAK_SEMANTIC_FIELD", default_value = "/prompt", value_parser = offpeak_core::semantic::PromptField::parse)]
    pub semantic_field: offpeak_core::semantic::PromptField,
    /// Longest a release round searches the semantic index, in milliseconds; the semantic jobs it has no
    /// time for stay held and lead the next round (at least one is searched per round).
    #[arg(long, env = "OFFPEAK_SEMANTIC_SEARCH_BUDGET_MS", default_value_t = crate::semantic::SEARCH_BUDGET_DEFAULT.as_millis() as u64)]
    pub semantic_search_budget_ms: u64,
    /// Token of the operator dashboard at /ui (16 to 256 visible ASCII
    /// characters); unset or empty, the dashboard is disabled.
    #[arg(long, env = "OFFPEAK_OPERATOR_TOKEN", hide_env_values = true)]
    pub operator_token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; its API key is printed alone on the last line (shown only this once).
    Create(TenantCreateArgs),
    /// Change a tenant's timezone, daily credit limits or off-peak window.
    Update(TenantUpdateArgs),
    /// List tenants.
    List(MigrateArgs),
}

#[derive(Debug, Subcommand)]
pub enum JobsCommand {
    /// Counts by state, model and tenant, and the releases due in the next 24 hours by hour.
    Stats(JsonArgs),
    /// Give dead (or failed) jobs another chance: back to `held` with fresh
    /// attempts, in their next window (or at once with --now).
    Retry(JobsRetryArgs),
    /// Cancel held or queued jobs matching the filters.
    Cancel(JobsCancelArgs),
}

#[derive(Debug, Args)]
pub struct JsonArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsCancelArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// held or queued (default: both).
    #[arg(long)]
    pub state: Option<String>,
    #[command(flatten)]
    pub filter: JobFilterArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Which jobs an operator command touches, besides their state.
#[derive(Debug, Args)]
pub struct JobFilterArgs {
    /// Only this tenant's jobs (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Only jobs of this model.
    #[arg(long)]
    pub model: Option<String>,
    /// At most this many jobs.
    #[arg(long, default_value_t = 10_000)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Delete jobs that finished more than this many days ago.
    #[arg(long, env = "OFFPEAK_RETENTION_DAYS", default_value_t = crate::prune::RETENTION_DAYS_DEFAULT)]
    pub older_than_days: i64,
    /// Rows deleted per statement.
    #[arg(long, default_value_t = 5_000)]
    pub chunk: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct JobsRetryArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Which finished jobs: dead or failed.
    #[arg(long, default_value = "dead")]
    pub state: String,
    #[command(flatten)]
    pub filter: JobFilterArgs,
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
    /// Daily credit limit of the whole tenant, in the tenant's timezone's day (none by default).
    #[arg(long)]
    pub daily_credits: Option<i64>,
    /// Daily credit limit of each user_id of the tenant (none by default).
    #[arg(long)]
    pub user_daily_credits: Option<i64>,
    /// The tenant's own off-peak window, START-END local time (default: the deployment's OFFPEAK_WINDOW).
    #[arg(long)]
    pub window: Option<WindowSpec>,
}

#[derive(Debug, Args)]
pub struct TenantUpdateArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The tenant's name.
    pub name: String,
    /// New default IANA timezone (also the day quotas and usage days are counted in).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Daily credit limit of the whole tenant; `none` removes it.
    #[arg(long, value_parser = parse_limit)]
    pub daily_credits: Option<Limit>,
    /// Daily credit limit of each user_id; `none` removes it.
    #[arg(long, value_parser = parse_limit)]
    pub user_daily_credits: Option<Limit>,
    /// The tenant's own off-peak window, START-END local time; `default` returns to the deployment's.
    #[arg(long, value_parser = parse_window)]
    pub window: Option<TenantWindow>,
    /// The cache of the tenant's jobs that do not name one: `exact`, or `semantic` (the exact cache first,
    /// then rewordings of prompts that succeeded; needs OFFPEAK_EMBEDDINGS_URL on the scheduler).
    #[arg(long, value_parser = parse_tenant_cache)]
    pub cache: Option<offpeak_core::semantic::CacheMode>,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}

/// A similarity threshold: in (0, 1].
fn parse_threshold(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(t) if t > 0.0 && t <= 1.0 => Ok(t),
        _ => Err(format!("'{s}' is not a cosine similarity in (0, 1]")),
    }
}

/// `--cache`: `exact` or `semantic` (`off` is a job's choice, `"cache": false`).
fn parse_tenant_cache(s: &str) -> Result<offpeak_core::semantic::CacheMode, String> {
    match s.parse::<offpeak_core::semantic::CacheMode>()? {
        offpeak_core::semantic::CacheMode::Off => Err("a tenant's cache is exact or semantic; a job turns it off with \"cache\": false".into()),
        m => Ok(m),
    }
}

/// A limit flag's value: credits, or `none`.
#[derive(Debug, Clone, Copy)]
pub struct Limit(pub Option<i64>);

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s.eq_ignore_ascii_case("none") {
        return Ok(Limit(None));
    }
    match s.parse::<i64>() {
        Ok(n) if n >= 0 => Ok(Limit(Some(n))),
        _ => Err(format!("'{s}' is not a number of credits (0 or more) or 'none'")),
    }
}

/// A window flag's value: a window, or `default`.
#[derive(Debug, Clone, Copy)]
pub struct TenantWindow(pub Option<WindowSpec>);

fn parse_window(s: &str) -> Result<TenantWindow, String> {
    if s.eq_ignore_ascii_case("default") {
        return Ok(TenantWindow(None));
    }
    s.parse::<WindowSpec>().map(|w| TenantWindow(Some(w))).map_err(|e| e.to_string())
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever stops the command; `main` prints it and exits non-zero.
/// Runs the command the flags name.
///
/// # Errors
/// Whatever the command fails with; `main` prints it and exits non-zero.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Migrate(a) => ops::migrate(&a.db).await,
        Command::Serve(a) => serve(*a).await,
        Command::Tenant(TenantCommand::Create(a)) => ops::tenants::create(a).await,
        Command::Tenant(TenantCommand::List(a)) => ops::tenants::list(a).await,
        Command::Tenant(TenantCommand::Update(a)) => ops::tenants::update(a).await,
        Command::Jobs(JobsCommand::Stats(a)) => ops::jobs::run_stats(a).await,
        Command::Jobs(JobsCommand::Retry(a)) => ops::jobs::run_retry(a).await,
        Command::Jobs(JobsCommand::Cancel(a)) => ops::jobs::run_cancel(a).await,
        Command::Schedules(c) => ops::schedules::run(c).await,
        Command::Webhooks(c) => ops::webhooks::run(c).await,
        Command::Prune(a) => ops::prune::run(a).await,
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if a.batch_max == 0 || a.release_per_tenant < 1 || a.release_round_max < 1 || a.max_queue_depth == 0 {
        anyhow::bail!("--batch-max, --release-per-tenant, --release-round-max and --max-queue-depth must be at least 1");
    }
    // The API needs the prices and routes only; the catalog's providers are
    // the workers' to call, so without a file the default provider's URL
    // (the workers' --provider-url) does not matter here.
    let deployment = a.prices.deployment(offpeak_runtime::config::PROVIDER_URL_DEFAULT)?;
    let (prices, routes) = (deployment.prices, deployment.routes);
    let listener = tokio::net::TcpListener::bind(&a.listen).await?;
    let pool = db::connect(&a.db.database_url, a.db.db_max_connections, a.db.connect_timeout()).await?;
    let publisher =
        broker::Publisher::connect(&a.broker.amqp_url, "offpeak-scheduler", Topology::new(&a.broker.queue), a.db.connect_timeout())
            .await?;
    // Every decision is taken by PostgreSQL's time, measured before anything is served (clock.rs).
    let clock_sync = offpeak_store::retry_unreachable(a.db.connect_timeout(), || {
        crate::clock::ClockSync::start(pool.clone(), crate::clock::ClockSyncConfig::default())
    })
    .await?;
    let clock: SharedClock = std::sync::Arc::new(clock_sync.clock());
    let cache = crate::admission::CacheConfig { ttl: Duration::from_secs(a.cache_ttl_secs) };
    let operator_token = a.operator_token.as_deref().filter(|t| !t.is_empty()).map(OperatorToken::new).transpose()?;
    if operator_token.is_none() {
        tracing::info!("dashboard disabled: OFFPEAK_OPERATOR_TOKEN is not set");
    }
    let api = ApiConfig {
        window: a.window,
        prices: prices.clone(),
        routes,
        max_attempts: a.max_attempts,
        limits: Limits::from(&a.limits),
        cache,
        operator_token,
        auth_cache_ttl: Duration::from_secs(a.auth_cache_secs),
        group_commit: crate::group_commit::GroupCommitConfig { lanes: a.submit_lanes, max_group: a.submit_group_max },
        webhooks_allow_private: a.webhook_allow_private,
    };
    let release = (!a.no_release).then(|| ReleaseConfig {
        interval: Duration::from_millis(a.release_interval_ms),
        notify_gap: Duration::from_millis(a.release_notify_gap_ms),
        batch_max: a.batch_max,
        per_tenant: a.release_per_tenant,
        round_max: a.release_round_max,
        max_queue_depth: a.max_queue_depth,
        at_submit: a.release_at_submit,
        window: a.window,
        cache,
        prices: prices.clone(),
        semantic: crate::semantic::SemanticConfig {
            embeddings: a.embeddings_url.clone().filter(|u| !u.is_empty()).map(|url| crate::semantic::EmbeddingsConfig {
                url,
                model: a.embeddings_model.clone(),
                api_key: a.embeddings_api_key.clone().filter(|k| !k.is_empty()),
                timeout: Duration::from_millis(a.embeddings_timeout_ms),
                dimensions: a.embeddings_dimensions,
            }),
            threshold: a.semantic_threshold,
            field: a.semantic_field.clone(),
            search_budget: Duration::from_millis(a.semantic_search_budget_ms),
        },
    });
    let rescue = (!a.no_release).then(|| RescueConfig {
        interval: Duration::from_secs(a.rescue_interval_secs.max(1)),
        visibility_timeout: Duration::from_secs(a.visibility_timeout_secs),
        limit: rescue::RESCUE_LIMIT_DEFAULT,
    });
    let firing = (!a.no_firing).then(|| FiringConfig {
        interval: Duration::from_millis(a.firing_interval_ms.max(1)),
        claim_limit: firing::CLAIM_LIMIT_DEFAULT,
        max_catch_up: a.max_catch_up,
        misfire_grace: Duration::from_secs(a.misfire_grace_secs),
        window: a.window,
        max_attempts: a.max_attempts,
        cache,
        prices,
        limits: Limits::from(&a.limits).submission(),
    });
    let prune = (!a.no_prune).then(|| PruneConfig {
        interval: Duration::from_secs(a.prune_interval_secs.max(1)),
        retention: chrono::Duration::days(a.retention_days),
        ..PruneConfig::default()
    });
    let webhooks = (!a.no_webhooks).then(|| crate::webhooks::DeliveryConfig {
        sender: crate::webhooks::http::SenderConfig {
            timeout: Duration::from_secs(a.webhook_timeout_secs),
            allow_private: a.webhook_allow_private,
            ..crate::webhooks::http::SenderConfig::default()
        },
        per_endpoint: a.webhook_per_endpoint,
        busy_in_flight: a.webhook_busy_in_flight,
        max_pause: Duration::from_secs(a.webhook_max_pause_secs),
        disable_after: Duration::from_secs(a.webhook_disable_after_hours * 3600),
        ..crate::webhooks::DeliveryConfig::default()
    });
    if a.webhook_allow_private {
        tracing::warn!("OFFPEAK_WEBHOOK_ALLOW_PRIVATE is set: webhooks may be sent over http:// and to private addresses");
    }
    let loops = Loops { release, rescue, firing, prune, webhooks, room: Default::default() };
    let (trigger, signal) = Shutdown::new();
    tokio::spawn(async move {
        shutdown::os_signal().await;
        tracing::info!("shutdown requested; draining");
        trigger.trigger();
    });
    tokio::spawn(clock_sync.run(signal.clone()));
    crate::startup::serve(listener, pool, publisher.clone(), clock, api, loops, signal).await?;
    publisher.close().await;
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum SchedulesCommand {
    /// List recurring schedules (every tenant's, or one's).
    List(SchedulesListArgs),
    /// Pause a schedule: it stops firing until resumed.
    Pause(ScheduleIdArgs),
    /// Resume a paused schedule from now on (missed firings are not made).
    Resume(ScheduleIdArgs),
}

#[derive(Debug, Args)]
pub struct SchedulesListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Only this tenant's schedules (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// At most this many schedules.
    #[arg(long, default_value_t = 1_000)]
    pub limit: i64,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ScheduleIdArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The schedule's id.
    pub id: uuid::Uuid,
    /// Print JSON instead of a line of text.
    #[arg(long)]
    pub json: bool,
}


#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// List webhook endpoints (every tenant's, or one's) with their deliveries by state and health.
    List(WebhooksListArgs),
    /// Enable a disabled endpoint (it gets new events again, and its failures are forgotten).
    Enable(WebhookIdArgs),
    /// Disable an endpoint: it gets no new events until enabled.
    Disable(WebhookIdArgs),
}

#[derive(Debug, Args)]
pub struct WebhooksListArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// Only this tenant's endpoints (by name).
    #[arg(long)]
    pub tenant: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct WebhookIdArgs {
    #[command(flatten)]
    pub db: DatabaseArgs,
    /// The endpoint's id.
    pub id: uuid::Uuid,
}
