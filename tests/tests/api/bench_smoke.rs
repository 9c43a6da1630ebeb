//! The benchmark (`offpeak-bench`, `deploy/bench.sh`) at a thousandth of its
//! size, so that it keeps working as the code changes. It checks that every
//! run completes and reports; it asserts nothing about speed.

use offpeak_tests::harness::{amqp_url, database_url};
use offpeak_tests::procs::binary;

#[tokio::test]
async fn every_run_of_the_benchmark_completes_at_a_thousandth_of_its_size() {
    let out = tokio::process::Command::new(binary("offpeak-bench"))
        .args(["--scale", "0.001", "--no-write"])
        .env("DATABASE_URL", database_url())
        .env("AMQP_URL", amqp_url())
        .output()
        .await
        .expect("run offpeak-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "offpeak-bench failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for run in ["bulk ingest", "single submission", "02:00 burst", "slow provider", "memory", "window precision", "immediate path"] {
        assert!(stdout.contains(run), "no '{run}' row in:\n{stdout}");
    }
}
