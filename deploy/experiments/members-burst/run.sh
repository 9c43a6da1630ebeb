#!/usr/bin/env bash
# BENCHMARKS.md step 34: step 34's members release measured in the real
# burst. Applies prototype.patch to a worktree of the current commit, builds
# its release binaries, and runs run 3 (1,000,000 jobs without cache keys)
# in pairs: the current commit's binaries, then the prototype's, and back.
#
#   deploy/experiments/members-burst/run.sh [PAIRS]
#
# The patch is a measuring instrument, not a design to merge: it moves only
# what the burst's path touches (held work in `held_jobs`, the release's
# `DELETE` and `batch_members`, the worker's start and finish through them,
# the benchmark's load and watch). A cancel, cache keys and coalescing, the
# rescuer, roll-overs, requeues and every read but `job_view`'s state are
# not carried over, and its schema is not migrated from main's data.
# Leaves the worktree in /tmp/offpeak-members-burst; needs the local
# PostgreSQL and RabbitMQ (deploy/local-services.sh).
#
# Since ebb3762 the design is built whole on main (BENCHMARKS.md step 35),
# and the patch applies only to a checkout from before it: run this from
# `git worktree add /tmp/offpeak-165acd7 165acd7`.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(git -C "$here" rev-parse --show-toplevel)"
if [ -e "$repo/migrations/20261212000000_held_and_members.sql" ]; then
    echo "this checkout has the members design built whole (ebb3762); run this from a checkout of 165acd7" >&2
    exit 2
fi
pairs="${1:-3}"
tree=/tmp/offpeak-members-burst
base_bin="$repo/target/release"
proto_target="$tree/target"
( cd "$repo" && cargo build --release --workspace --bins )
rm -rf "$tree"; git -C "$repo" worktree prune
git -C "$repo" worktree add --detach "$tree" HEAD
git -C "$tree" apply "$here/prototype.patch"
( cd "$tree" && SQLX_OFFLINE=true CARGO_TARGET_DIR="$proto_target" cargo build --release \
    --workspace --bins )
for i in $(seq "$pairs"); do
    for side in base proto; do
        bin="$base_bin"; [ "$side" = proto ] && bin="$proto_target/release"
        echo "== $side $(date -u +%H:%M:%S)"
        "$bin/offpeak-bench" --only burst --no-write 2>&1 | grep -E "^\| 3 .*(all published|all finished|CPU µs|bare)"
    done
done
