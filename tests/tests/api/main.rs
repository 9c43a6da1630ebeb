//! offpeak's end-to-end tests, one module per capability, built as **one
//! test binary** (issue #16, the layout of zero2prod's `tests/api/`).
//!
//! Each `tests/*.rs` file used to be a test binary of its own. Every one of
//! them linked the whole workspace (scheduler, worker, store, sqlx, lapin,
//! axum, ...) with full debug info, so a change to the harness relinked
//! about twenty large executables, and cargo ran the binaries one after
//! another, each starting its own thread pool. Here the modules are linked
//! once and libtest schedules all their tests on one pool
//! (`RUST_TEST_THREADS`, one thread per core by default).
//!
//! Measured on the 2-core machine (2026-12-04), after touching
//! `src/harness.rs`: `cargo test -p offpeak-tests --no-run` took 13-14 s
//! (about 9 s of CPU) instead of 50-56 s (about 48 s of CPU) for the twenty
//! binaries. The whole run was not measurably slower: 9m, 5m10, 4m02 against
//! 10m55, 6m56, 3m45, interleaved, on a machine whose load swung from 3 to 11.
//! A long single-test module (the benchmark's smoke test, the browser test)
//! now overlaps other tests instead of leaving a thread idle.
//!
//! Run one capability or one test with a filter on the module path. The
//! filter is a substring of `module::test_name`, so `faults::` also matches
//! `provider_faults::`; `--skip` or `--exact` narrows it:
//!
//! ```text
//! cargo build --workspace --bins                  # the tests spawn them
//! cargo test -p offpeak-tests --test api          # every module
//! cargo test -p offpeak-tests --test api hostile_input::
//! cargo test -p offpeak-tests --test api faults:: -- --skip provider_faults
//! cargo test -p offpeak-tests --test api -- --exact prune::<test name>
//! ```
//!
//! Sharing a process means a test must not rely on being alone in it. Each
//! test builds its own [`offpeak_tests::harness::TestEnv`] (database,
//! vhost and queues, simulator, clock) or its own processes
//! ([`offpeak_tests::procs::System`]); it never calls `std::env::set_var`
//! (children get their environment through `Command::env`), takes ports
//! from [`offpeak_tests::procs::free_port`] rather than fixed numbers or
//! ephemeral probes, and never asserts on the in-process Prometheus
//! registry, which every test's scheduler shares (the metrics test scrapes
//! the real binaries instead). A lock a module needs for its own tests
//! stays in that module (`faults::SERIAL`).
//!
//! To add a capability: put the file in this folder (`tests/tests/api/`),
//! add its `mod` line below, in alphabetical order, and keep its `//!`
//! module doc; helper functions may repeat another module's names, since
//! each module is its own namespace.

mod api_errors;
mod bench_smoke;
mod binaries;
mod cache_and_quotas;
mod cancel_and_list;
mod clients;
mod clock;
mod config_file;
mod costs;
mod faults;
mod group_commit;
mod groups;
mod hostile_input;
mod openai_images;
mod openai_batch;
mod openapi;
mod operator_cli;
mod outcomes;
mod pipeline;
mod preview;
mod provider_faults;
mod prune;
mod races;
mod rate_limits;
mod recovery;
mod release_at_submit;
mod release_loop;
mod retry_window;
mod round_trip;
mod rust_client;
mod schedules;
mod schemathesis;
mod semantic;
mod ui;
mod ui_browser;
mod webhooks;
mod windows_api;
mod upgrade;
mod workers;
