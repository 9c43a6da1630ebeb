#!/usr/bin/env bash
# BENCHMARKS.md step 36: the release round's claim and move as today
# (`store::release::claim_due`, then `mark_queued_many`'s DELETE and member
# rows) against a claim that deletes the held rows it claims in the same
# statement (by ctid, for jobs without a cache step), alone, one backend,
# warm, commits asynchronous, on one database of 2,000,000 held jobs of
# 1,000 tenants; 300,000 released first so the claim's index carries the
# dead entries a burst leaves; then the variants interleaved, rounds of
# 5,000 and of 10,000.
#
#   deploy/experiments/claim-delete/run.sh [SCHEDULER_BINARY] [PASSES]
#
# Needs psql and the local PostgreSQL; creates and drops claim_delete_exp.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
scheduler="${1:-../../../target/release/offpeak-scheduler}"
passes="${2:-3}"
psql=(psql -h 127.0.0.1 -U postgres -v ON_ERROR_STOP=1)
db=claim_delete_exp
"${psql[@]}" -d postgres -qc "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
DATABASE_URL=postgres://postgres@127.0.0.1/$db "$scheduler" migrate >/dev/null
"${psql[@]}" -d $db -q -f setup.sql
call() { "${psql[@]}" -d $db -c "SET synchronous_commit = off" -c "CALL probe_rounds('$1', $2, $3)" 2>&1 | grep NOTICE; }
call today 60 5000 >/dev/null
for _ in $(seq "$passes"); do
    call today 10 5000; call fused 10 5000; call fused 5 10000; call today 5 10000
done
"${psql[@]}" -d postgres -qc "DROP DATABASE $db"
