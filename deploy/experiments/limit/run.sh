#!/usr/bin/env bash
# BENCHMARKS.md step 37: where the 02:00 burst's limit is, measured with the
# benchmark's own run 3 (and run 9), nothing in the code changed:
#
#   cores     the burst, then the immediate path, with every process on two
#             cores and on one (PostgreSQL's postmaster and backends,
#             RabbitMQ's VM, the bench and the stack it starts), in pairs:
#             how the burst's time and CPU a job follow the cores;
#   release   the release alone: the workers' provider is a socket that
#             accepts and never answers, so each worker holds its batches
#             and waits, and the queue has room for every batch
#             (OFFPEAK_MAX_QUEUE_DEPTH=20000): how soon the release
#             publishes 1,000,000 jobs when it does not share the cores;
#   indexes   the burst as migrated, and with the outcome's two secondary
#             indexes (job_outcomes_finished, job_outcomes_tenant_time)
#             dropped once the backlog is loaded and analysed, before the
#             window opens, in pairs: what two index entries a job cost.
#
#   deploy/experiments/limit/run.sh BENCH_BINARY [cores|release|indexes ...]
#
# BENCH_BINARY is offpeak-bench of a release build, beside the binaries it
# starts (target/release/offpeak-bench, or a copy of that directory). Needs
# psql, taskset, python3 and the local PostgreSQL and RabbitMQ; pinning
# needs the right to change their processes' affinity (root here), and
# restores both cores at the end. Prints each run's lines of the table.
set -euo pipefail
bench="${1:?usage: run.sh BENCH_BINARY [cores|release|indexes ...]}"
shift
parts=("${@:-cores release indexes}")
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/offpeak_bench}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
psql=(psql -h 127.0.0.1 -U postgres -At)
"${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname = 'offpeak_bench'" | grep -q 1 \
    || "${psql[@]}" -d postgres -qc "CREATE DATABASE offpeak_bench"

# Every process of the services, and the threads of each, on these CPUs.
pin() {
    local p
    for p in $(pgrep -f postgres) $(pgrep beam.smp) $(pgrep epmd) $(pgrep erl_child_setup); do
        taskset -a -cp "$1" "$p" >/dev/null 2>&1 || true
    done
}
trap 'pin "$(cat /sys/fs/cgroup/cpuset.cpus.effective 2>/dev/null || echo 0-$(($(nproc) - 1)))"' EXIT

# The newest bench database created after $1 (epoch seconds), once its
# backlog is loaded and analysed (`held_jobs` counted by ANALYZE).
loaded_db() {
    local db ts n
    while true; do
        db=$("${psql[@]}" -d postgres -c "SELECT datname FROM pg_database WHERE datname LIKE 'offpeak_test_%bench%' ORDER BY oid DESC LIMIT 1")
        ts=${db#offpeak_test_}; ts=${ts%%_*}
        if [[ -n "$db" && "$ts" -ge "$1" ]]; then
            n=$("${psql[@]}" -d "$db" -c "SELECT coalesce(max(n_live_tup), 0) FROM pg_stat_user_tables
                                          WHERE relname = 'held_jobs' AND last_analyze IS NOT NULL" 2>/dev/null || echo 0)
            if [[ "${n:-0}" -ge 900000 ]]; then echo "$db"; return; fi
        fi
        sleep 0.2
    done
}

table_lines() { grep -E "^\| (3|9) " | sed 's/^| [39] | [^|]* workers |/ /'; }

cores() {
    local pair cpus
    for pair in 1 2; do
        for cpus in 0,1 0; do
            pin "$cpus"
            echo "== burst, cpus $cpus, $(date -u +%H:%M:%S) UTC"
            taskset -c "$cpus" "$bench" --only burst --no-write 2>&1 | table_lines | grep -E "published|CPU"
        done
    done
    for pair in 1 2; do
        for cpus in 0,1 0; do
            pin "$cpus"
            echo "== immediate, cpus $cpus, $(date -u +%H:%M:%S) UTC"
            taskset -c "$cpus" "$bench" --only immediate --no-write 2>&1 | table_lines
        done
    done
    pin 0,1
}

release() {
    local hole start db first now n run
    python3 -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 18999)); s.listen(1024); held = []
while True: held.append(s.accept()[0])' &
    hole=$!
    start=$(date +%s)
    echo "== the release alone, $(date -u +%H:%M:%S) UTC"
    "$bench" --only burst --no-write --burst-timeout-secs 90 \
        --env PROVIDER_URL=http://127.0.0.1:18999 --env OFFPEAK_MAX_QUEUE_DEPTH=20000 2>&1 \
        | table_lines | grep -E "published" &
    run=$!
    db=$(loaded_db "$start")
    first=""
    while true; do
        n=$("${psql[@]}" -d "$db" -c "SELECT count(*) FROM held_jobs")
        now=$(date +%s.%N)
        [[ -z "$first" && "$n" -lt 1000000 ]] && first=$now
        if [[ -n "$first" && "$n" -eq 0 ]]; then
            echo "held_jobs empty $(echo "$now - $first" | bc) s after the first release seen (polled every 100 ms)"
            break
        fi
        sleep 0.1
    done
    wait "$run" || true
    kill "$hole"
}

indexes() {
    local pair start db run
    for pair in 1 2 3; do
        echo "== burst as migrated, $(date -u +%H:%M:%S) UTC"
        "$bench" --only burst --no-write 2>&1 | table_lines | grep -E "published|CPU"
        start=$(date +%s)
        echo "== burst without job_outcomes_finished and job_outcomes_tenant_time, $(date -u +%H:%M:%S) UTC"
        "$bench" --only burst --no-write 2>&1 | table_lines | grep -E "published|CPU" &
        run=$!
        db=$(loaded_db "$start")
        "${psql[@]}" -d "$db" -qc "DROP INDEX job_outcomes_finished" -c "DROP INDEX job_outcomes_tenant_time"
        wait "$run"
    done
}

for part in ${parts[*]}; do "$part"; done
