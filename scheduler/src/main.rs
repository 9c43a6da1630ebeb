use clap::Parser;

fn main() -> std::process::ExitCode {
    limit_malloc_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        offpeak_runtime::telemetry::init(offpeak_runtime::telemetry::json_requested());
        let cli = offpeak_scheduler::cli::Cli::parse();
        match offpeak_scheduler::cli::run(cli).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "offpeak-scheduler failed");
                eprintln!("error: {e:#}");
                std::process::ExitCode::FAILURE
            }
        }
    })
}

/// One glibc malloc arena for the whole process, unless `MALLOC_ARENA_MAX`
/// says otherwise. glibc gives threads their own arenas, and memory freed
/// into one arena is not reused by a thread on another: a bulk request's
/// short-lived buffers, parsed on one runtime thread and dropped on
/// another, left the scheduler's peak RSS at 64–68 MiB under the
/// benchmark's bulk ingest; with one arena it was 52 MiB at the same
/// throughput (BENCHMARKS.md, step 4). Called before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only changes an allocator setting; it is called
        // before the runtime starts any other thread.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 1);
        }
    }
}
