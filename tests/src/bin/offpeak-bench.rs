//! `offpeak-bench`: the benchmark of the whole pipeline. Run it with
//! `deploy/bench.sh` (which finds the services and builds the release
//! binaries); see `offpeak_tests::bench` for what it measures.

use clap::Parser;
use sqlx::{ConnectOptions, Connection};

use offpeak_tests::bench::{self, Options};

/// Benchmarks the real binaries against the issue #5 targets and writes BENCHMARKS.md.
#[derive(Debug, Parser)]
#[command(name = "offpeak-bench", version)]
struct Cli {
    #[command(flatten)]
    options: Options,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let opts = Cli::parse().options;
    let command = std::env::var("OFFPEAK_BENCH_COMMAND")
        .unwrap_or_else(|_| std::env::args().collect::<Vec<_>>().join(" "));
    let services = services(&opts).await;
    let results = bench::run(&opts).await?;
    let section = bench::section(&results, &command, &services);
    println!("\n{section}");
    let json_dir = bench::stack::target_dir().join("bench");
    std::fs::create_dir_all(&json_dir)?;
    let json_path = json_dir.join(format!("results-{}.json", chrono::Utc::now().format("%Y%m%dT%H%M%S")));
    std::fs::write(&json_path, serde_json::to_string_pretty(&results)?)?;
    eprintln!("bench: raw results in {}", json_path.display());
    if !opts.no_write {
        bench::write_section(&opts.out, &section)?;
        eprintln!("bench: wrote {}", opts.out.display());
    }
    Ok(())
}

/// "PostgreSQL 15.x, RabbitMQ" as far as we can tell from here.
async fn services(opts: &Options) -> String {
    let pg = async {
        let o: sqlx::postgres::PgConnectOptions = opts.database_url.parse().ok()?;
        let mut c = o.database("postgres").connect().await.ok()?;
        let v: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut c).await.ok()?;
        let _ = c.close().await;
        Some(v)
    }
    .await
    .unwrap_or_else(|| "?".into());
    // AMQP does not tell a client the broker's version; ask the local CLI if there is one.
    let rabbit = tokio::process::Command::new("rabbitmqctl")
        .arg("version")
        .output()
        .await
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "?".into());
    format!("PostgreSQL {pg}, RabbitMQ {rabbit}")
}
