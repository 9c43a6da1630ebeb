#!/usr/bin/env bash
# BENCHMARKS.md step 34: the release round alone in three designs, one
# backend, warm, each on its own database of 1,000,000 jobs (setup.sql,
# variants.sql); rounds of 5,000 jobs, in one order and then the reverse.
#
#   deploy/experiments/release-alone/run.sh [SCHEDULER_BINARY] [ROUNDS] [KEYS]
#
# KEYS=1 gives every job a cache key and a quota day (a default job).
# Needs psql and the local PostgreSQL (deploy/local-services.sh starts it);
# creates the databases release_exp_{update,members,hot} and drops them at
# the end. Commits are asynchronous (synchronous_commit = off): what is
# measured is the statements' CPU, not the WAL flush.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scheduler="${1:-../../../target/release/offpeak-scheduler}"
rounds="${2:-20}"
keys="${3:-0}"
psql=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
variants="update members hot"
for v in $variants; do
    "${psql[@]}" -d postgres -qc "DROP DATABASE IF EXISTS release_exp_$v" -c "CREATE DATABASE release_exp_$v"
    DATABASE_URL=postgres://postgres@127.0.0.1/release_exp_$v "$scheduler" migrate >/dev/null
    "${psql[@]}" -d release_exp_$v -q -v keys=$keys -f setup.sql
    "${psql[@]}" -d release_exp_$v -q -v variant=$v -f variants.sql
done
# A warm-up round each, then the measured runs: forwards, then backwards.
for v in $variants; do
    "${psql[@]}" -d release_exp_$v -c "SET synchronous_commit = off" -c "CALL release_rounds('$v', 2)" >/dev/null 2>&1
done
for order in "$variants" "$(echo $variants | tr ' ' '\n' | tac | tr '\n' ' ')"; do
    for v in $order; do
        "${psql[@]}" -d release_exp_$v -c "SET synchronous_commit = off" -c "CALL release_rounds('$v', $rounds)" 2>&1 | grep NOTICE | sed "s/\$/ (keys=$keys)/"
    done
done
for v in $variants; do
    "${psql[@]}" -d release_exp_$v -Atc "SELECT 'jobs of $v: ' || n_tup_upd || ' updated, ' || n_tup_hot_upd || ' of them HOT; heap ' || pg_size_pretty(pg_relation_size('jobs')) FROM pg_stat_user_tables WHERE relname = 'jobs'"
    "${psql[@]}" -d postgres -qc "DROP DATABASE release_exp_$v"
done
