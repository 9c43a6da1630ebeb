#!/usr/bin/env bash
# Regenerate the generated subpackage of offpeak_client from ../openapi.json.
#
#   ./generate.sh               # into offpeak_client/_generated (the committed copy)
#   ./generate.sh DEST          # into DEST instead (drift check: diff -r DEST offpeak_client/_generated)
#   ./generate.sh DEST SPEC     # from another copy of the document, e.g. the one a running
#                               # server serves (offpeak-client-stack --openapi SPEC)
#
# Same document, same pinned tools (requirements-dev.txt) -> byte-identical output.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dest="${1:-$here/offpeak_client/_generated}"
spec="$(realpath "${2:-$here/../openapi.json}")"
[ -f "$spec" ] || { echo "generate.sh: no OpenAPI document at $spec" >&2; exit 1; }

# shellcheck source=scripts/venv.sh
. "$here/scripts/venv.sh"

# Refuse to wipe a directory that is neither empty nor an earlier generation.
if [ -e "$dest" ]; then
    [ -d "$dest" ] || { echo "generate.sh: $dest is not a directory" >&2; exit 1; }
    if [ -n "$(ls -A "$dest")" ] && ! { [ -f "$dest/client.py" ] && [ -d "$dest/models" ]; }; then
        echo "generate.sh: $dest is not empty and does not look like generated code; not touching it" >&2
        exit 1
    fi
fi

# Generate in a scratch directory of a fixed shape (ruff runs there, isolated from
# any configuration around DEST), then replace DEST's contents.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(
    cd "$work"
    export PYTHONDONTWRITEBYTECODE=1
    openapi-python-client generate \
        --path "$spec" \
        --config "$here/generator-config.yaml" \
        --meta none \
        --output-path "$work/_generated" \
        --fail-on-warning 2>"$work/log" || {
            # The only warning expected: the JSON Lines response of
            # GET /v1/groups/{id}/results, which the hand-written layer streams itself.
            if grep -q "Unsupported content_type application/jsonl" "$work/log" \
                && [ "$(grep -c '^WARNING' "$work/log")" = 1 ] && ! grep -q '^ERROR' "$work/log" \
                && [ -f "$work/_generated/client.py" ]; then
                :
            else
                cat "$work/log" >&2
                exit 1
            fi
        }
)
find "$work/_generated" -name __pycache__ -prune -exec rm -rf {} +
mkdir -p "$dest"
find "$dest" -mindepth 1 -delete
cp -R "$work/_generated/." "$dest/"
echo "generated $(find "$dest" -name '*.py' | wc -l) files into $dest" >&2
