#!/usr/bin/env bash
# BENCHMARKS.md step 27: the finish's statement and its alternatives, each
# alone, one backend, warm, on a database of 1,000,000 jobs as in the middle
# of the 02:00 burst; then the release's two statements alone.
#
#   deploy/experiments/finish-alone/run.sh [SCHEDULER_BINARY]
#
# Needs psql and the local PostgreSQL (deploy/local-services.sh starts it);
# creates and leaves the database `finish_exp` (drop it when done).
# Commits are asynchronous (synchronous_commit = off): what is measured is
# the statements' CPU, not the WAL flush. For CPU by process kind through a
# real burst, run `python3 cpu_by_process.py OUT.jsonl` beside
# `offpeak-bench --only burst --no-write`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scheduler="${1:-../../../target/release/offpeak-scheduler}"
psql=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
"${psql[@]}" -d postgres -qc "DROP DATABASE IF EXISTS finish_exp" -c "CREATE DATABASE finish_exp"
DATABASE_URL=postgres://postgres@127.0.0.1/finish_exp "$scheduler" migrate
"${psql[@]}" -d finish_exp -q -f setup.sql
"${psql[@]}" -d finish_exp -q -f variants.sql
lo=5030
for order in "full update update+ledger ledger results results+ledger noop" "noop results+ledger results ledger update+ledger update full"; do
    for v in $order; do
        hi=$((lo + 300))
        "${psql[@]}" -d finish_exp -c "SET synchronous_commit = off" -c "CALL run('$v', $lo, $hi)" 2>&1 | grep NOTICE
        lo=$hi
    done
done
"${psql[@]}" -d finish_exp -q -f release.sql 2>&1 | grep NOTICE
