#!/usr/bin/env bash
# BENCHMARKS.md step 31: what a results table would save at the finish,
# with the indexes that would move with the terminal columns, without and
# with cache keys; one backend, warm, commits asynchronous, each variant
# over 300 batches of 100 in one order and then the reverse.
#
#   deploy/experiments/results-table/run.sh [SCHEDULER_BINARY]
#
# Needs psql and the local PostgreSQL (deploy/local-services.sh starts it);
# creates and leaves the databases `results_exp0` and `results_exp1` (drop
# them when done). Also reports the WAL records and bytes a job of each.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scheduler="${1:-../../../target/release/offpeak-scheduler}"
psql=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
for keys in 0 1; do
    db=results_exp$keys
    "${psql[@]}" -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
    DATABASE_URL=postgres://postgres@127.0.0.1/$db "$scheduler" migrate >/dev/null
    "${psql[@]}" -d $db -q -v keys=$keys -f ../finish-alone/setup.sql -f setup.sql
    "${psql[@]}" -d $db -q -f ../finish-alone/variants.sql -f variants.sql
    echo "keys=$keys"
    lo=5030
    for order in "update+ledger results-moved outcomes noop" "noop outcomes results-moved update+ledger"; do
        for v in $order; do
            hi=$((lo + 300))
            wal0=$("${psql[@]}" -d $db -Atc "SELECT wal_records || ' ' || wal_bytes FROM pg_stat_wal")
            "${psql[@]}" -d $db -c "SET synchronous_commit = off" -c "CALL run('$v', $lo, $hi)" 2>&1 | grep NOTICE | tr -d '\n'
            wal1=$("${psql[@]}" -d $db -Atc "SELECT wal_records || ' ' || wal_bytes FROM pg_stat_wal")
            read -r r0 b0 <<<"$wal0"; read -r r1 b1 <<<"$wal1"
            awk -v r="$((r1 - r0))" -v b="$((b1 - b0))" 'BEGIN { printf "; WAL a job: %.1f records, %.0f bytes\n", r / 30000, b / 30000 }'
            lo=$hi
        done
    done
done
