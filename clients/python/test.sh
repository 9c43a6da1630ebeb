#!/usr/bin/env bash
# Run the Python client's tests against a real offpeak (sync and async, every operation),
# plus the client's own logic against local servers. Extra arguments go to pytest.
#
#   ../../target/debug/offpeak-client-stack -- ./test.sh
#
# The stack sets OFFPEAK_URL, OFFPEAK_API_KEY, OFFPEAK_RIVAL_API_KEY,
# OFFPEAK_FRUGAL_API_KEY and OFFPEAK_SIM_URL. Exits non-zero when a test fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

# shellcheck source=scripts/venv.sh
. "$here/scripts/venv.sh"

missing=()
for name in OFFPEAK_URL OFFPEAK_API_KEY OFFPEAK_RIVAL_API_KEY OFFPEAK_FRUGAL_API_KEY OFFPEAK_SIM_URL; do
    [ -n "${!name:-}" ] || missing+=("$name")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "test.sh: ${missing[*]} not set; run it against a stack:" >&2
    echo "  ../../target/debug/offpeak-client-stack -- $0" >&2
    exit 2
fi

# No bytecode next to the sources: the generated tree must stay byte-identical to what
# generate.sh makes (the drift check diffs it).
export PYTHONDONTWRITEBYTECODE=1

# The package itself, editable, on the pinned tools (no build isolation: setuptools is pinned
# too); again only when pyproject.toml changed or the venv was rebuilt.
stamp="$VENV/.offpeak-client-installed"
want="$(cat "$here/pyproject.toml" "$VENV/.requirements.sha256" | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    python -m pip install --quiet --disable-pip-version-check --no-input \
        --no-deps --no-build-isolation --editable "$here"
    echo "$want" > "$stamp"
fi

exec python -m pytest "$@"
