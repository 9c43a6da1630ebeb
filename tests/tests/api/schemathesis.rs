//! Issue 16 (bug 3): the API keeps every promise its OpenAPI document makes,
//! as schemathesis (<https://schemathesis.readthedocs.io>) sees it.
//!
//! Schemathesis reads `/openapi.json` from an API the harness serves and, for
//! a bounded time, sends the requests the document describes (examples,
//! boundary values of every constraint, random valid and invalid data,
//! sequences that create, read, change and delete): every check it has is on
//! (tests/schemathesis/schemathesis.toml says which exceptions the document
//! itself states and why). A 5xx, a status, body, header or content type the
//! document does not give for the operation, a request the document calls
//! valid that is refused, an invalid one that is accepted, a second tenant
//! that reads the first one's objects: any of them fails this test, with
//! schemathesis's report (each failure with a curl line to reproduce it).
//!
//! `tests/run.sh` installs schemathesis (the version pinned in
//! tests/schemathesis/requirements.txt) into `target/schemathesis`; set
//! `SCHEMATHESIS` to use another `st`. Without one, the test fails and says
//! so. `OFFPEAK_SCHEMATHESIS_SECONDS` (default 60) sets the time budget and
//! `OFFPEAK_SCHEMATHESIS_SEED` the seed (a fixed default, so a run repeats
//! what the one before tried first).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};

use offpeak_scheduler::api::{ApiConfig, Limits};
use offpeak_tests::harness::{EnvOptions, TestEnv};

/// Seconds schemathesis gets unless `OFFPEAK_SCHEMATHESIS_SECONDS` says otherwise.
const DEFAULT_SECONDS: u64 = 60;
/// The seed unless `OFFPEAK_SCHEMATHESIS_SEED` says otherwise.
const DEFAULT_SEED: u64 = 16;
/// Past its budget, schemathesis finishes the case in hand and reports;
/// this long past it, the run is taken to hang.
const GRACE: Duration = Duration::from_secs(120);
/// A bulk limit well below the default, so the boundary cases of `maxItems`
/// (which schemathesis sends, at the limit and one past it) are cheap, and so
/// the limit checked is the running configuration's, not a constant.
const MAX_BULK_INPUTS: usize = 100;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_path_buf()
}

/// `target/`, found from this test executable (`target/<profile>/deps/`).
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// The `st` to run: `$SCHEMATHESIS`, or the one tests/run.sh installs.
fn schemathesis() -> PathBuf {
    let st = std::env::var_os("SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("schemathesis/bin/st"));
    assert!(
        st.exists() || std::env::var_os("SCHEMATHESIS").is_some(),
        "schemathesis is not installed at {}: run tests/run.sh (it installs tests/schemathesis/requirements.txt into \
         target/schemathesis), or set SCHEMATHESIS to an `st` binary",
        st.display()
    );
    st
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

/// The number after `label` on a line of schemathesis's summary.
fn summary_number(output: &str, label: &str) -> Option<u64> {
    output.lines().find_map(|l| l.trim().strip_prefix(label)?.trim().split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_the_document_does_not_allow() {
    let st = schemathesis();
    let limits = Limits { max_bulk_inputs: MAX_BULK_INPUTS, ..Limits::default() };
    let env = TestEnv::with(EnvOptions { api: ApiConfig { limits, ..ApiConfig::default() }, ..EnvOptions::default() }).await;
    // Timezones with odd offsets on either side of UTC, so days and windows
    // are not UTC's.
    let acme = env.tenant("acme", "Pacific/Chatham").await;
    let rival = env.tenant("rival", "America/St_Johns").await;

    let doc: Value = env.http.get(env.url("/openapi.json")).send().await.expect("the API answers").json().await.expect("JSON");
    assert_eq!(
        doc.pointer("/components/schemas/BulkRequest/properties/inputs/maxItems"),
        Some(&json!(MAX_BULK_INPUTS)),
        "the document states the running bulk limit"
    );
    // Every documented operation but `GET /openapi.json`, which schemathesis
    // leaves out when it reads the document from there (tests/tests/openapi.rs
    // checks that one).
    let methods = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];
    let operations = doc["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .filter(|(path, _)| *path != "/openapi.json")
        .flat_map(|(_, item)| item.as_object().into_iter().flat_map(|o| o.keys()))
        .filter(|k| methods.contains(&k.as_str()))
        .count() as u64;

    // A directory of its own for schemathesis's files (its example database,
    // the cache `st replay` reads), kept when the run fails.
    let dir = target_dir().join("schemathesis-runs").join(&env.id);
    std::fs::create_dir_all(&dir).expect("create the run directory");
    let auth = dir.join("auth.json");
    let users = json!({"auth": [
        {"name": "acme", "fixedHeaders": [{"name": "Authorization", "value": format!("Bearer {acme}")}]},
        {"name": "rival", "fixedHeaders": [{"name": "Authorization", "value": format!("Bearer {rival}")}]},
    ]});
    std::fs::write(&auth, users.to_string()).expect("write the API keys");

    let seconds = env_number("OFFPEAK_SCHEMATHESIS_SECONDS", DEFAULT_SECONDS);
    let seed = env_number("OFFPEAK_SCHEMATHESIS_SEED", DEFAULT_SEED);
    let config = repo().join("tests/schemathesis/schemathesis.toml");
    let run = || {
        let mut command = tokio::process::Command::new(&st);
        command
            .arg("--config-file")
            .arg(&config)
            .arg("run")
            .arg(env.url("/openapi.json"))
            .args(["--max-time", &seconds.to_string(), "--seed", &seed.to_string(), "--workers", "2", "--no-color"])
            .env("SCHEMATHESIS_HOOKS", repo().join("tests/schemathesis/hooks.py"))
            .env("OFFPEAK_WFC_AUTH", &auth)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command.output()
    };
    let mut attempt = 0;
    let (output, report) = loop {
        attempt += 1;
        let output = match tokio::time::timeout(Duration::from_secs(seconds) + GRACE, run()).await {
            Err(_) => panic!("schemathesis ({}) did not finish within {seconds} s and {} s of grace", st.display(), GRACE.as_secs()),
            Ok(Err(e)) => panic!("cannot run schemathesis ({}): {e}; tests/run.sh installs it", st.display()),
            Ok(Ok(output)) => output,
        };
        let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        // CPython 3.11's `ast.parse` (Debian 12's 3.11.2, this machine's
        // 3.11.7) can raise this spurious SystemError in threaded code
        // (CPython gh-106905); hypothesis parses its own source with it
        // while it names a strategy. That is a "Runtime Error" of the
        // fuzzer itself, not a finding about the API. Seen once, under the
        // full suite's load; the run is then repeated once, whole, with the
        // same seed, so a real finding fails the repeat as well.
        if !output.status.success() && attempt == 1 && report.contains("SystemError: AST constructor recursion depth mismatch") {
            println!("schemathesis hit CPython's ast.parse bug (gh-106905); running it once more:\n{report}");
            continue;
        }
        break (output, report);
    };
    // Shown with `--nocapture`, or by cargo when an assertion below fails.
    println!("{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems (exit {:?}; seed {seed}; replay a case with `st replay ID` in {}):\n{report}",
        output.status.code(),
        dir.display()
    );
    // A run that tried nothing would pass too: every documented operation
    // is tested, and valid submissions were accepted.
    assert_eq!(summary_number(&report, "Tested:"), Some(operations), "every documented operation is tested:\n{report}");
    assert!(env.count_jobs().await > 0, "schemathesis's valid submissions were accepted:\n{report}");
    std::fs::remove_dir_all(&dir).ok();
}
