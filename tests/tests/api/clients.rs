//! Issue #21: the clients in `clients/` cannot drift from the API.
//!
//! - `clients/openapi.json` is what a running scheduler serves at
//!   `/openapi.json`, in the portable form the clients are generated from
//!   (`offpeak_tests::clients::portable_document`);
//! - each client's generated code is what its generator makes of that
//!   document today (the Rust types by `offpeak-client-codegen`, the
//!   TypeScript ones by `clients/typescript/generate.sh`, the Python ones by
//!   `clients/python/generate.sh`, each into a scratch directory, compared
//!   file by file);
//! - each client's own test suite passes against a real offpeak
//!   (`offpeak_tests::clients::ClientStack`: the scheduler, two workers and
//!   the simulator as processes, three tenants).
//!
//! A stale file fails with the command that regenerates it:
//! `clients/generate.sh`. The TypeScript and Python suites install what they
//! need (npm packages from the committed lockfile, a virtualenv from the
//! pinned requirements) on their first run.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use offpeak_tests::clients::{portable_document, ClientStack};

/// A client's generation and test suite take well under this; past it, one hangs.
const SUITE_TIMEOUT: Duration = Duration::from_secs(900);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("offpeak-clients-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    dir
}

/// Runs a command to the end (or the timeout), and fails the test with its
/// output unless it succeeded.
async fn run(what: &str, command: &mut tokio::process::Command) -> Output {
    command.kill_on_drop(true).stdin(std::process::Stdio::null());
    let output = tokio::time::timeout(SUITE_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {SUITE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("{what} could not start: {e}"));
    assert!(
        output.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `diff -r` of a freshly generated directory against the committed one.
async fn assert_same_tree(fresh: &Path, committed: &Path, client: &str) {
    let output = tokio::process::Command::new("diff")
        .args(["-r", "-x", "__pycache__"])
        .arg(committed)
        .arg(fresh)
        .output()
        .await
        .expect("diff runs");
    assert!(
        output.status.success(),
        "the {client} client's generated code in {} is not what clients/openapi.json generates: run clients/generate.sh \
         and commit the result\n{}",
        committed.display(),
        String::from_utf8_lossy(&output.stdout).chars().take(6000).collect::<String>()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_committed_document_is_the_one_the_scheduler_serves() {
    let stack = ClientStack::start().await.expect("the stack starts");
    let served = portable_document(stack.document().await.expect("/openapi.json"));
    stack.stop().await;
    let committed = std::fs::read_to_string(repo().join("clients/openapi.json")).expect("clients/openapi.json");
    let served = format!("{}\n", serde_json::to_string_pretty(&served).expect("JSON"));
    assert!(
        served == committed,
        "clients/openapi.json is not what the scheduler serves (made portable): run clients/generate.sh and commit the result"
    );
}

#[tokio::test]
async fn the_rust_client_is_generated_from_the_committed_document() {
    let dir = scratch("rust");
    let out = dir.join("types.rs");
    run(
        "offpeak-client-codegen",
        tokio::process::Command::new(offpeak_tests::procs::binary("offpeak-client-codegen"))
            .arg(repo().join("clients/openapi.json"))
            .arg(&out),
    )
    .await;
    let fresh = std::fs::read_to_string(&out).expect("the generated types");
    let committed = std::fs::read_to_string(repo().join("clients/rust/src/types.rs")).expect("clients/rust/src/types.rs");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        fresh == committed,
        "clients/rust/src/types.rs is not what clients/openapi.json generates: run clients/generate.sh and commit the result"
    );
}

/// Regenerates a client into a scratch directory and compares it with the
/// committed code, then runs its test suite against a real offpeak.
async fn check_client(name: &str, generated: &str) {
    let client = repo().join("clients").join(name);
    let dir = scratch(name);
    run(&format!("clients/{name}/generate.sh"), tokio::process::Command::new(client.join("generate.sh")).arg(&dir).current_dir(&client))
        .await;
    assert_same_tree(&dir, &client.join(generated), name).await;
    let _ = std::fs::remove_dir_all(&dir);

    let stack = ClientStack::start().await.expect("the stack starts");
    let mut suite = tokio::process::Command::new(client.join("test.sh"));
    suite.current_dir(&client).envs(stack.env());
    let output = run(&format!("clients/{name}/test.sh"), &mut suite).await;
    stack.stop().await;
    // The suite's own summary, for the log of a passing run.
    let text = String::from_utf8_lossy(&output.stdout);
    eprintln!("clients/{name}: {}", text.lines().rev().take(12).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_typescript_client_is_current_and_passes_its_tests_against_a_real_server() {
    check_client("typescript", "src/generated").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_client_is_current_and_passes_its_tests_against_a_real_server() {
    check_client("python", "offpeak_client/_generated").await;
}
