use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    offpeak_runtime::telemetry::init(offpeak_runtime::telemetry::json_requested());
    match offpeak_worker::cli::run(offpeak_worker::cli::Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "offpeak-worker failed");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
