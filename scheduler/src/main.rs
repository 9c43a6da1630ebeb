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
/// throughput (BENCHMARKS.md, step 4).
///
/// And blocks of 256 KiB or more mapped of their own, unless
/// `MALLOC_MMAP_THRESHOLD_` (or `GLIBC_TUNABLES`) says otherwise: glibc
/// raises that threshold to the largest block freed so far (up to 32 MiB),
/// so after the first bulk request its bodies and bind buffers came from
/// the heap, where the four requests' blocks interleave and the heap cannot
/// shrink under the last one. Fixed, they go back to the system when freed:
/// peak RSS in run 1 56.0–59.6 MiB against 60.4–62.4 at the same throughput
/// (BENCHMARKS.md, step 29). Called before any thread exists.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = |name: &str| std::env::var_os(name).is_some();
        // SAFETY: mallopt only changes an allocator setting; it is called
        // before the runtime starts any other thread.
        unsafe {
            if !tuned("MALLOC_ARENA_MAX") {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
            if !tuned("MALLOC_MMAP_THRESHOLD_") && !tuned("GLIBC_TUNABLES") {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
            }
        }
    }
}
