#!/usr/bin/env bash
# deploy/bench.sh: the benchmark of the whole pipeline (issue #5), one command.
#
#     deploy/bench.sh                         # every run at full size (≈ 15 min), writes BENCHMARKS.md
#     deploy/bench.sh --only burst,memory     # some runs: bulk, single, burst, burst-keys, slow, memory, window, semantic, savings, immediate
#     deploy/bench.sh --scale 0.1             # a tenth of every size
#     deploy/bench.sh --help                  # every option
#
# Finds or starts PostgreSQL and RabbitMQ like tests/run.sh does
# (deploy/local-services.sh), builds the release binaries, and runs
# target/release/offpeak-bench, which starts the simulator, the scheduler and
# two workers per run on a database and queue of their own, prints the table
# and replaces the generated section of BENCHMARKS.md. Raw results go to
# target/bench/results-*.json. Set DATABASE_URL / AMQP_URL to use your own
# services (the user must be allowed to create databases).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/local-services.sh
source deploy/local-services.sh

ensure_build_tools
ensure_postgres
ensure_rabbitmq
echo "== building the release binaries" >&2
cargo build --release -p offpeak-scheduler -p offpeak-worker -p offpeak-provider-sim -p offpeak-tests --bins
export OFFPEAK_BENCH_COMMAND="deploy/bench.sh${*:+ $*}"
exec target/release/offpeak-bench "$@"
