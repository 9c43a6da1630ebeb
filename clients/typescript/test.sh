#!/usr/bin/env bash
# Installs what is needed (npm ci when node_modules is missing or stale),
# type-checks (strict), compiles, and runs every test with Node's test
# runner. Against a real server:
#   ../../target/debug/offpeak-client-stack -- ./test.sh
# which sets OFFPEAK_URL, OFFPEAK_API_KEY, OFFPEAK_RIVAL_API_KEY,
# OFFPEAK_FRUGAL_API_KEY and OFFPEAK_SIM_URL. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

if [ ! -f node_modules/.package-lock.json ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi

# One tsc pass is the strict type-check of src/ and test/ (tsconfig.json:
# "strict": true) and, only when it finds no error, the compilation to build/
# that node runs (`npm run typecheck` is the same check without output).
rm -rf build
npx --no-install tsc -p tsconfig.json --noEmitOnError --sourceMap false --declaration false
# Each file runs in its own process, in parallel: the tests isolate themselves
# (--test-concurrency is Node 20.10's; Node 18, Debian 12's, runs them as it
# does by default).
concurrency=()
if node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 10) ? 0 : 1)'; then
  concurrency=(--test-concurrency=8)
fi
node --test "${concurrency[@]}" build/test/*.test.js
