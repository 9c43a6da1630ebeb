//! `offpeak-client-stack`: a real offpeak for the clients in `clients/`.
//!
//!     offpeak-client-stack --openapi clients/openapi.json   # write the portable document and stop
//!     offpeak-client-stack -- npm test --prefix clients/typescript
//!
//! Starts the simulator, the scheduler and two workers on a database and a
//! queue of their own (see `offpeak_tests::clients`), optionally writes the
//! served OpenAPI document in its portable form, then runs the command with
//! `OFFPEAK_URL`, `OFFPEAK_API_KEY`, `OFFPEAK_RIVAL_API_KEY`,
//! `OFFPEAK_FRUGAL_API_KEY` and `OFFPEAK_SIM_URL` set, stops everything and exits with the command's
//! status. Needs `DATABASE_URL` and `AMQP_URL` (or the local defaults) and
//! the workspace's binaries built next to it.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use offpeak_tests::clients::{portable_document, ClientStack};

#[derive(Debug, Parser)]
#[command(about = "Run a command against a real offpeak with three tenants (for the clients' tests)")]
struct Args {
    /// Write the served /openapi.json, made portable, to this file.
    #[arg(long)]
    openapi: Option<PathBuf>,
    /// The command to run, after `--`.
    #[arg(last = true)]
    command: Vec<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let stack = match ClientStack::start().await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("offpeak-client-stack: starting the stack: {e:#}");
            return ExitCode::from(2);
        }
    };
    let status = run(&stack, &args).await;
    stack.stop().await;
    match status {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("offpeak-client-stack: {e:#}");
            ExitCode::from(2)
        }
    }
}

async fn run(stack: &ClientStack, args: &Args) -> anyhow::Result<u8> {
    if let Some(path) = &args.openapi {
        let doc = portable_document(stack.document().await?);
        std::fs::write(path, format!("{}\n", serde_json::to_string_pretty(&doc)?))?;
    }
    let Some((program, rest)) = args.command.split_first() else { return Ok(0) };
    let status = tokio::process::Command::new(program).args(rest).envs(stack.env()).status().await?;
    Ok(status.code().map_or(1, |c| u8::try_from(c).unwrap_or(1)))
}
