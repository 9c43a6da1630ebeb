use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    offpeak_shared::telemetry::init(offpeak_shared::telemetry::json_requested());
    let cli = offpeak_scheduler::cli::Cli::parse();
    match offpeak_scheduler::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "offpeak-scheduler failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
