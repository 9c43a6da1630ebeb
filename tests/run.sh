#!/usr/bin/env bash
# tests/run.sh: the whole test suite, on a machine with only Rust installed.
#
#     tests/run.sh                      # everything
#     tests/run.sh -- --nocapture       # extra arguments go to `cargo test`
#     tests/run.sh -p offpeak-core      # one crate
#
# Finds or starts PostgreSQL and RabbitMQ (installing them from Debian
# packages if missing; see deploy/local-services.sh), installs what the
# dashboard's browser test needs (Debian's chromium, Node.js and npm, and
# `npm ci` in tests/ui) and the API fuzzer (schemathesis, pinned in
# tests/schemathesis/requirements.txt, into a virtualenv at
# target/schemathesis; see ensure_schemathesis), checks what the clients in
# clients/ need (ensure_clients), installs Debian's faketime (libfaketime, for
# the clock test), builds the binaries the
# end-to-end tests spawn from target/debug, then runs `cargo test --workspace`
# with DATABASE_URL and AMQP_URL exported. Tests create and drop their own
# databases (offpeak_test_*) and queues beside those URLs, so the URL's user
# must be allowed to create databases. Set DATABASE_URL / AMQP_URL to use
# services of your own; then nothing is installed or started.
#
# Exits with cargo test's status.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=deploy/local-services.sh
source deploy/local-services.sh

# ensure_schemathesis: schemathesis, as tests/schemathesis/requirements.txt
# pins it, in a virtualenv at $target/schemathesis (with Debian's python3 and
# python3-venv if they are missing), for tests/tests/api/schemathesis.rs, which
# runs its `st` (exported as SCHEMATHESIS). Installs only when the
# requirements changed since the last install (the virtualenv keeps a copy of
# those it holds); pip's output is shown only if it fails.
ensure_schemathesis() {
    local venv="${CARGO_TARGET_DIR:-target}/schemathesis" requirements=tests/schemathesis/requirements.txt log
    if cmp -s "$requirements" "$venv/installed-requirements.txt" && [[ -x "$venv/bin/st" ]]; then
        :
    else
        ensure_commands python3 || return 1
        python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv || return 1
        echo "   installing schemathesis ($requirements) into $venv" >&2
        rm -rf "$venv"
        log=$(mktemp)
        if ! { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"; } >"$log" 2>&1; then
            cat "$log" >&2
            rm -f "$log"
            echo "   installing schemathesis failed" >&2
            return 1
        fi
        rm -f "$log"
        cp "$requirements" "$venv/installed-requirements.txt"
    fi
    SCHEMATHESIS="$(cd "$venv/bin" && pwd)/st"
    export SCHEMATHESIS
    echo "   SCHEMATHESIS=$SCHEMATHESIS ($("$SCHEMATHESIS" --version))" >&2
}

# ensure_clients: what the clients' suites (tests/tests/api/clients.rs) need
# beyond ensure_browser's Node.js and npm: Node.js 18.17 or newer for
# clients/typescript, and Python 3.11 or newer with venv for clients/python
# (Debian 12's python3 is 3.11). Their packages are installed by the
# clients' own scripts, from clients/typescript/package-lock.json (npm ci)
# and clients/python/requirements-dev.txt (a virtualenv at
# clients/python/.venv), each only when missing or changed.
ensure_clients() {
    ensure_commands python3 || return 1
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_install python3-venv || return 1
    if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "   clients/python needs Python 3.11 or newer; found $(python3 --version)" >&2
        return 1
    fi
    if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 17) ? 0 : 1)'; then
        echo "   clients/typescript needs Node.js 18.17 or newer; found $(node --version)" >&2
        return 1
    fi
}

echo "== offpeak tests: checking PostgreSQL and RabbitMQ" >&2
ensure_build_tools
ensure_postgres
ensure_rabbitmq
ensure_browser tests/ui   # the dashboard's browser test: node, npm, chromium, playwright-core
ensure_schemathesis       # the API fuzzer of tests/tests/api/schemathesis.rs
ensure_clients            # the TypeScript and Python clients' suites (tests/tests/api/clients.rs)
ensure_commands faketime   # libfaketime: a scheduler replica with a wrong clock (tests/tests/api/clock.rs)
echo "   DATABASE_URL=$DATABASE_URL" >&2
echo "   AMQP_URL=$AMQP_URL" >&2
deploy/validate.sh   # Dockerfile, compose file, Kubernetes manifests, dashboard and alerts, offline

# Two-core machines: cargo builds with one job per core by default, and the
# test harness runs one test thread per core; both can be overridden with
# CARGO_BUILD_JOBS / RUST_TEST_THREADS.
echo "== building the binaries (cargo build --workspace --bins)" >&2
cargo build --workspace --bins

# The whole workspace unless packages are chosen (`-p NAME` / `--package`);
# --no-fail-fast: run every test binary and report all failures, not just
# the first binary's.
scope=(--workspace)
for arg in "$@"; do
    [[ "$arg" == -- ]] && break
    case "$arg" in
        -p | -p* | --package | --package=*) scope=() ;;
    esac
done
echo "== running the tests (cargo test ${scope[*]} --no-fail-fast $*)" >&2
status=0
cargo test "${scope[@]}" --no-fail-fast "$@" || status=$?

if [[ $status -eq 0 ]]; then
    echo "== tests passed" >&2
else
    echo "== tests FAILED (cargo test exited with $status)" >&2
fi
exit "$status"
